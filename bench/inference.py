"""Per-frame inference costs: detection per backend, each embedder per face, the whole pipeline
(detection + embedding + signature) per frame, and the same frames through the HTTP server.

The loaders here return ready objects; ``bench.__main__`` times them frame by frame with
``report.paired_median_ms``, every contender called in turn within each repetition, so that load
from elsewhere on a shared machine hits all columns of a row alike.

Models: the detectors use their usual files (``<model_dir>`` or the installed packages). The
embedders run from a benchmark model folder (``~/.cache/face-blur/bench/models``) of symbolic links:
``arcfaceresnet100-8.onnx`` points to the real zoo file when the model folder has it, else to the
architecture-equivalent random-weight network of :mod:`bench.arcface_r100`; ``mobilefacenet.onnx``
to the model folder's or the shared test copy. That folder exists only for timing: the random R100
never lands where the CLI or the server look for models.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.arcface_r100 import CACHE_DIR, ZOO_FILE, R100Model, locate_r100
from bench.frames import BenchFrame
from bench.report import Budget, median_ms, paired_median_ms
from handler.detector import DetectorConfig

log = logging.getLogger(__name__)

EMBEDDERS = ("arcface-r100", "mobilefacenet", "dlib")
MOBILEFACENET_FILE = "mobilefacenet.onnx"
SHARED_MODELS = Path(os.environ.get(
    "FACE_BLUR_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "testdata" / "models"


@dataclass
class BenchModels:
    """The folder the benchmark loads embedders from, and what its R100 is."""

    model_dir: Path
    r100: R100Model
    notes: list[str] = field(default_factory=list)


def _link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target``, replacing whatever was there in one step (safe against a
    concurrent run doing the same)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def prepare_models(real_dir: Path, cache_dir: Path = CACHE_DIR, build_r100: bool = True) -> BenchModels:
    """Fill ``cache_dir/models`` with links to the embedder files to time (see the module docstring)."""
    folder = Path(cache_dir) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    r100 = locate_r100(real_dir, cache_dir, build=build_r100)
    notes = []
    if r100.path is not None:
        _link(folder / ZOO_FILE, r100.path)
    elif (folder / ZOO_FILE).is_symlink():
        (folder / ZOO_FILE).unlink()
    mfn = Path(real_dir) / MOBILEFACENET_FILE
    if not mfn.is_file():
        mfn = SHARED_MODELS / MOBILEFACENET_FILE
    if mfn.is_file():
        _link(folder / MOBILEFACENET_FILE, mfn.resolve())
    else:
        notes.append(f"mobilefacenet.onnx not found in {real_dir} or {SHARED_MODELS}")
    return BenchModels(folder, r100, notes)


def _providers() -> list[str]:
    from handler.runtime import select_providers

    return select_providers("cpu")


BACKENDS = ("centerface", "mtcnn", "ensemble")
DEFAULT_DETECTOR = DetectorConfig().backend


def load_detectors(model_dir: Path | None, backends: tuple[str, ...] = BACKENDS) -> dict[str, object]:
    """Each backend at its defaults, on the CPU."""
    from handler.detector import DetectorConfig
    from handler.detector_factory import create_detector

    return {b: create_detector(DetectorConfig(backend=b), model_dir, _providers()) for b in backends}


@dataclass(frozen=True)
class EmbedderTiming:
    name: str  # what was asked for
    label: str  # the model as loaded, or why it was not
    dim: int
    single_ms: float | None  # one face per call
    batched_ms: float | None  # per face, all faces of the frame in one call
    faces: int


def time_embedders(frame: BenchFrame, budget: Budget, models: BenchModels,
                   names: tuple[str, ...] = EMBEDDERS) -> list[EmbedderTiming]:
    """ms per face of each embedder, single and batched, on the faces the default detector finds."""
    from handler.detector import DetectorConfig
    from handler.detector_factory import create_detector
    from handler.embedder import create_embedder

    faces = create_detector(DetectorConfig(), None, _providers()).detect(frame.image)
    n = len(faces)
    out = []
    for name in names:
        label = name
        if name == "arcface-r100":
            label = f"arcface-r100, {models.r100.label}"
            if models.r100.path is None:
                out.append(EmbedderTiming(name, label, 0, None, None, n))
                continue
        try:
            embedder = create_embedder(name, models.model_dir, _providers())
        except Exception as exc:  # a missing model is a row in the table, not a failed run
            out.append(EmbedderTiming(name, f"{label}: not loaded ({exc})", 0, None, None, n))
            continue
        if n == 0:
            out.append(EmbedderTiming(name, f"{label}: no faces found to embed", embedder.dim, None, None, 0))
            continue
        single = median_ms(lambda e=embedder: e.embed(frame.image, faces.landmarks[:1], faces.xyxy[:1]), budget)
        batched = median_ms(lambda e=embedder: e.embed(frame.image, faces.landmarks, faces.xyxy), budget) / n
        out.append(EmbedderTiming(name, label, embedder.dim, single, batched, n))
    return out


def load_bench_pipeline(models: BenchModels, embedder: str, backend: str = DEFAULT_DETECTOR):
    from handler.detector import DetectorConfig
    from handler.pipeline import PipelineConfig, load_pipeline

    return load_pipeline(PipelineConfig(model_dir=models.model_dir, detector=DetectorConfig(backend=backend),
                                        embedder=embedder, device="cpu"))


def load_pipelines(models: BenchModels, embedders: tuple[str, ...]) -> dict[str, object]:
    """Embedder name -> the default-detector pipeline with it, or a string saying why it is absent."""
    out: dict[str, object] = {}
    for name in embedders:
        if name == "arcface-r100" and models.r100.path is None:
            out[name] = models.r100.label
            continue
        try:
            out[name] = load_bench_pipeline(models, name)
        except Exception as exc:  # a model that will not load is a note in the table, not a crash
            out[name] = f"not loaded: {exc}"
    return out


# -- through the HTTP server -------------------------------------------------------------------------

MMS_SOCKET = Path("/tmp/.mms.sock.9000")  # multi-model-server's fixed worker socket: one server per machine


def mms_busy() -> bool:
    """True when another multi-model-server already listens on the machine's fixed socket."""
    import socket

    if not MMS_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(MMS_SOCKET))
        except OSError:
            return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """``python -m handler.serve`` on a loopback port with one worker; stopped by its PID."""

    def __init__(self, models: BenchModels, embedder: str, detector: str = DEFAULT_DETECTOR,
                 startup_s: float = 240.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), "--model-dir", str(models.model_dir),
                     "--workers", "1", "--detector", detector, "--embedder", embedder, "--device", "cpu"]
        self.startup_s = startup_s
        self.proc = None
        self.log = b""

    def __enter__(self) -> LocalServer:
        import subprocess
        import sys
        import tempfile
        import time
        import urllib.request

        self._log_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "handler.serve", *self.args],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode} at start: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the server was not ready within {self.startup_s:.0f} s: {self.tail()}")

    def tail(self) -> str:
        self._log_file.seek(0)
        lines = self._log_file.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log_file.close()

    def invoke(self, body: bytes, connection) -> bytes:
        connection.request("POST", "/invocations", body=body,
                           headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
        resp = connection.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST /invocations answered {resp.status}: {data[:200]!r}")
        return data


@dataclass(frozen=True)
class ServingTiming:
    frame: str
    faces: int
    found_local: int
    found_http: int
    local_ms: float  # decode the JPEG + analyse + JSON, in this process
    http_ms: float  # the same JPEG POSTed to /invocations, response read


def time_serving(frames: list[BenchFrame], budget: Budget, models: BenchModels, embedder: str,
                 quality: int = 90) -> list[ServingTiming]:
    """The same JPEG frames in-process and through the real server (one worker, keep-alive). A
    64x64 frame without faces comes first: its inference is nearly free, so its difference is the
    fixed cost per request, which the large frames' noise would hide."""
    import http.client

    from bench.frames import scene
    from contract import dumps, loads
    from handler.serving.decode import decode_image

    pipeline = load_bench_pipeline(models, embedder)
    tiny = BenchFrame("64x64 0 faces", scene(64, 64, seed=3), 0, np.zeros((0, 4), np.float32))
    bodies = [(fr, fr.jpeg(quality)) for fr in (tiny, *frames)]
    out = []
    with LocalServer(models, embedder) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            for fr, body in bodies:
                def local(body=body):
                    return dumps(pipeline.analyse(decode_image(body, "image/jpeg")))

                def remote(body=body, conn=conn, server=server):
                    return server.invoke(body, conn)

                found_local = len(loads(local()).faces)  # these calls are the warm-up
                found_http = len(loads(remote()).faces)
                local_ms, http_ms = paired_median_ms([local, remote], replace(budget, warmup=0))
                out.append(ServingTiming(fr.name, fr.faces, found_local, found_http, local_ms, http_ms))
        finally:
            conn.close()
    return out
