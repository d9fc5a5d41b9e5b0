"""``python -m bench.serving_memory``: memory of the real server against frame size, under
concurrent load.

Starts ``python -m handler.serve`` (from ``--repo``, default this checkout, so an older checkout can
be measured the same way) with ``--workers`` workers on a loopback port, then for each frame size
sends ``--per-size`` noisy JPEGs of that size at once (each on its own connection), waits for every
answer, and samples the RSS of every process of the server's tree every 0.1 s: the supervisor
(which holds the gate), the JVM (multi-model-server's front end) and each Python worker. Prints a
markdown table: per size, the largest worker's peak and its RSS once the size is done, the JVM's
and the whole tree's peak, and how many requests got an HTTP 200. The worker figure is what
``handler.serving.machine.WORKER_BASE_BYTES`` is set from (README: "Reliability", "Serving limits").

Run it under the server lock (one multi-model-server per machine):
``flock /tmp/face-blur-mms.lock python -m bench.serving_memory --model-dir DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from bench import sysinfo

REPO = Path(__file__).resolve().parents[1]
SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
MIB = 2**20


def frame_jpeg(size: tuple[int, int], seed: int, faces_dir: Path) -> bytes:
    """A real photo with people, resized to ``size`` with sensor-like noise (JPEG quality 92)."""
    with Image.open(faces_dir / "two_people.jpg") as im:
        base = np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR)).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, base.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


class TreeSampler:
    """Peak RSS per process of a tree, sampled on a thread; roles: supervisor, jvm, worker."""

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)
        self.peak: dict[int, int] = {}
        self.tree_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def processes(self) -> dict[int, tuple[str, int]]:
        found = {}
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(proc.cmdline())
                role = "supervisor" if proc.pid == self.root.pid else "jvm" if "java" in cmd else "worker"
                found[proc.pid] = (role, proc.memory_info().rss)
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = self.processes()
            self.tree_peak = max(self.tree_peak, sum(rss for _, rss in now.values()))
            for pid, (_, rss) in now.items():
                self.peak[pid] = max(self.peak.get(pid, 0), rss)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def reset(self) -> None:
        self.peak, self.tree_peak = {}, 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, model_dir: Path, workers: int, log_path: Path,
                 detector: str | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACE_BLUR_", "SAGEMAKER_"))}
    env["PYTHONPATH"] = str(repo)
    if detector:
        env["FACE_BLUR_DETECTOR"] = detector
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "handler.serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--model-dir", str(model_dir), "--workers", str(workers)], cwd=repo, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return proc, port
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError("server not ready in 300 s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def burst(port: int, bodies: list[bytes]) -> list[int | str]:
    """Send every body at once, each on its own connection; the status of each (or the error)."""
    answers: list[int | str] = [""] * len(bodies)
    start = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        try:
            start.wait()
            conn.request("POST", "/invocations", body=bodies[i], headers={"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            response.read()
            answers[i] = response.status
        except OSError as exc:
            answers[i] = type(exc).__name__
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def measure(repo: Path, model_dir: Path, workers: int, per_size: int, faces_dir: Path,
            detector: str | None = None) -> list[str]:
    rows = ["| frames | worker peak MiB | worker after MiB | JVM peak MiB | supervisor peak MiB | tree peak MiB "
            "| answered 200 | seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory(prefix="bench-serving-memory-") as tmp:
        proc, port = start_server(repo, model_dir, workers, Path(tmp) / "serve.log", detector)
        try:
            sampler = TreeSampler(proc.pid).start()
            time.sleep(1)
            idle = sampler.processes()
            worker_idle = max(rss for role, rss in idle.values() if role == "worker")
            rows.append(f"| after start-up | {worker_idle / MIB:.0f} | {worker_idle / MIB:.0f} | "
                        f"{max(r for role, r in idle.values() if role == 'jvm') / MIB:.0f} | "
                        f"{max(r for role, r in idle.values() if role == 'supervisor') / MIB:.0f} | "
                        f"{sum(r for _, r in idle.values()) / MIB:.0f} | | |")
            for size in SIZES:
                bodies = [frame_jpeg(size, seed, faces_dir) for seed in range(per_size)]
                sampler.reset()
                started = time.monotonic()
                answers = burst(port, bodies)
                seconds = time.monotonic() - started
                time.sleep(0.5)
                now = sampler.processes()
                peaks = {role: max((sampler.peak.get(pid, rss) for pid, (r, rss) in now.items() if r == role),
                                   default=0) for role in ("worker", "jvm", "supervisor")}
                after = max(rss for role, rss in now.values() if role == "worker")
                rows.append(f"| {per_size} x {size[0]}x{size[1]} at once | {peaks['worker'] / MIB:.0f} | "
                            f"{after / MIB:.0f} | {peaks['jvm'] / MIB:.0f} | {peaks['supervisor'] / MIB:.0f} | "
                            f"{sampler.tree_peak / MIB:.0f} | {answers.count(200)}/{len(answers)} | "
                            f"{seconds:.0f} |")
            sampler.stop()
        finally:
            stop(proc)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repo", type=Path, default=REPO, help="checkout whose handler.serve is started")
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get(
        "FACE_BLUR_MODEL_DIR", "~/.cache/face-blur/models")).expanduser(), help="model directory")
    p.add_argument("--workers", type=int, default=2, help="server workers")
    p.add_argument("--per-size", type=int, default=8, help="frames of each size sent at once")
    p.add_argument("--detector", default=None, help="FACE_BLUR_DETECTOR for the server (default: its default)")
    p.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "testdata" / "faces",
                   help="folder with two_people.jpg")
    args = p.parse_args(argv)
    rows = measure(args.repo.resolve(), args.model_dir, args.workers, args.per_size, args.faces, args.detector)
    print(f"Server memory under load ({args.repo.resolve()}, {args.workers} workers, detector "
          f"{args.detector or 'default'}, the embedder found in the model dir)\n")
    print("\n".join(rows))
    print(f"\n{sysinfo.one_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
