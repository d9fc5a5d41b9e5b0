"""Start the inference server: ``python -m handler.serve [serve] [--host H] [--port P] ...``
(the entry point ``handler/serve.py`` and ``face-blur serve`` call :func:`main`; SageMaker runs the
container with the argument ``serve``).

What runs:
- this process, the supervisor: reads :class:`ServingConfig` (environment, then options), owns the
  public port through :class:`handler.serving.gate.Gate`, and stops everything on SIGTERM/SIGINT;
- multi-model-server (a JVM, our child) on loopback ports, configured by :mod:`handler.serving.mms`, whose
  Python workers each load the models once (``handler.serving.service``) and report ready or failed.

Start-up fails (exit 1, the reason in the log) when the port is taken, Java is missing, a worker
cannot load a model (the message names the file) or refuses a missing GPU
(``FACE_BLUR_GPU_FALLBACK=false``), or the workers are not ready within
``SAGEMAKER_STARTUP_TIMEOUT``. /ping answers 200 only while every worker has its models loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import handler
from handler.detector import BACKENDS, DetectorConfig
from handler.embedder import embedder_choices
from handler.runtime import DEVICES
from handler.serving import mms
from handler.serving.config import RUN_DIR_ENV, ConfigError, ServingConfig
from handler.serving.gate import Gate
from handler.serving.machine import cpu_count, default_workers, gpu_count, memory_bytes, worker_bytes

log = logging.getLogger("handler.serving.serve")

POLL_S = 0.25
STOP_TIMEOUT_S = 20
DRAIN_S = 10  # docker stop waits 10 s before SIGKILL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="face-blur serve",
        description="Serve GET /ping and POST /invocations (one frame image in, face-blur/frame/v1 JSON "
                    "out) on multi-model-server. Options override the environment variables named "
                    "in handler/serving/config.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS)  # unset options leave the environment's value
    parser.add_argument("command", nargs="?", choices=["serve"], default="serve",
                        help="SageMaker starts serving containers with the argument 'serve'")
    parser.add_argument("--host", help="listen address (default: $FACE_BLUR_BIND_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--model-dir", type=Path, help="model directory (default: $FACE_BLUR_MODEL_DIR, "
                        "/opt/ml/model if present, else ~/.cache/face-blur/models)")
    parser.add_argument("--workers", type=int, help="worker processes (default: from memory and GPUs)")
    parser.add_argument("--detector", choices=BACKENDS, help="detector backend (default: $FACE_BLUR_DETECTOR or "
                        f"{DetectorConfig().backend})")
    parser.add_argument("--embedder", choices=embedder_choices(),
                        help="embedder (default: $FACE_BLUR_EMBEDDER or auto)")
    parser.add_argument("--device", choices=DEVICES, help="execution device (default: $FACE_BLUR_DEVICE or auto)")
    parser.add_argument("--max-payload-mb", type=int, help="largest request body in MiB "
                        "(default: $SAGEMAKER_MAX_PAYLOAD_IN_MB or 6)")
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="debug logging")
    return parser


def config_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> ServingConfig:
    """The environment's config with the given options on top."""
    config = ServingConfig.from_env(env)
    pipeline = {name: getattr(args, name) for name in ("model_dir", "embedder", "device") if hasattr(args, name)}
    if hasattr(args, "detector"):
        pipeline["detector"] = replace(config.pipeline.detector, backend=args.detector)
    changes = {name: getattr(args, name) for name in ("host", "port", "workers", "max_payload_mb")
               if hasattr(args, name)}
    return replace(config, pipeline=replace(config.pipeline, **pipeline), **changes)


def _free_port(taken: tuple[int, ...] = ()) -> int:
    """A free loopback port below 32767: multi-model-server 1.1.11 refuses higher port numbers
    ("Invalid port number"), and the kernel's ephemeral range starts above it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32767)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free loopback port below 32767 for multi-model-server")


def _worker_path() -> str:
    """PYTHONPATH for the workers: the folder this ``handler`` package was imported from first, so
    that they run the same code as this process (MMS starts them in its run directory, where a
    source checkout is not on the path and another installed copy could be found instead)."""
    root = str(Path(handler.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reports(run_dir: Path, kind: str) -> list[dict]:
    found = []
    for path in sorted(run_dir.glob(f"{kind}-*.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return found


class Supervisor:
    """Runs one server: the gate on the public port, MMS behind it, until stopped."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.stop_requested = threading.Event()
        self.run_dir = Path(tempfile.mkdtemp(prefix="face-blur-serve-"))
        self.gpus = gpu_count(config.pipeline.device)
        self.workers = config.workers or default_workers(
            cpu_count(), memory_bytes(), self.gpus, worker_bytes(config.model_dir))
        self.mms: subprocess.Popen | None = None
        self.gate: Gate | None = None
        self.failure = ""  # why start-up failed, logged once everything is stopped

    # --- readiness -------------------------------------------------------------------------------
    def loaded_workers(self) -> list[dict]:
        return [r for r in _reports(self.run_dir, "ready") if _alive(int(r.get("pid", -1)))]

    def ready(self) -> tuple[bool, str]:
        if self.mms is None or self.mms.poll() is not None:
            return False, "model server not running"
        loaded = len(self.loaded_workers())
        return loaded >= self.workers, f"{loaded}/{self.workers} loaded"

    # --- life cycle ------------------------------------------------------------------------------
    def run(self) -> int:
        started = time.monotonic()
        config = self.config
        try:
            self.gate = Gate((config.host, config.port), upstream_port=_free_port(), ready=self.ready,
                             max_body=config.max_payload_bytes, timeout_s=config.response_timeout_s + 30,
                             execution_parameters={"MaxConcurrentTransforms": self.workers,
                                                   "BatchStrategy": "SINGLE_RECORD",
                                                   "MaxPayloadInMB": config.max_payload_mb})
        except OSError as exc:
            self.failure = f"cannot listen on {config.host}:{config.port}: {exc}"
            return 1
        settings = mms.MmsSettings(
            model_dir=self._mms_model_dir(), inference_port=self.gate.upstream_port,
            management_port=_free_port(taken=(self.gate.upstream_port,)), workers=self.workers, gpus=self.gpus,
            max_request_bytes=config.max_payload_bytes, response_timeout_s=config.response_timeout_s,
            vmargs=config.vmargs)
        env = {**os.environ, **config.to_env(), RUN_DIR_ENV: str(self.run_dir), "PYTHONPATH": _worker_path()}
        try:
            self.mms = mms.start(settings, self.run_dir, env)
        except (mms.ModelServerError, OSError) as exc:
            self.failure = str(exc)
            return 1
        self.gate.serve_in_thread()
        log.info("listening on http://%s:%d (/ping is 503 until the models are loaded)",
                 config.host, self.gate.server_address[1])
        if not self._wait_until_ready(started):
            return 0 if self.stop_requested.is_set() else 1
        self._log_ready(time.monotonic() - started)
        while not self.stop_requested.wait(1.0):
            if self.mms.poll() is not None:
                log.error("multi-model-server exited with code %s; stopping", self.mms.returncode)
                return 1
            for failure in _reports(self.run_dir, "error"):
                log.error("a restarted worker could not load its models: %s", failure.get("message"))
                (self.run_dir / f"error-{failure.get('pid')}.json").unlink(missing_ok=True)
        log.info("stopping")
        return 0

    def _mms_model_dir(self) -> Path:
        """MMS needs an existing directory to register; the workers read config.model_dir themselves
        (a missing one is reported by the model loader, naming the file it needs)."""
        if self.config.model_dir.is_dir():
            return self.config.model_dir
        log.warning("model directory %s does not exist; only models installed with Python packages "
                    "can be found", self.config.model_dir)
        empty = self.run_dir / "model"
        empty.mkdir(exist_ok=True)
        return empty

    def _wait_until_ready(self, started: float) -> bool:
        """Wait for every worker to report ready; on failure keep the reason in ``self.failure``."""
        deadline = started + self.config.startup_timeout_s
        while not self.stop_requested.wait(POLL_S):
            failures = _reports(self.run_dir, "error")
            if failures:
                self.failure = f"a worker could not load its models: {failures[0].get('message')}"
                return False
            if self.mms.poll() is not None:
                self.failure = f"multi-model-server exited with code {self.mms.returncode}"
                return False
            if self.ready()[0]:
                return True
            if time.monotonic() > deadline:
                self.failure = (f"{self.ready()[1]} after {self.config.startup_timeout_s} s "
                                "(SAGEMAKER_STARTUP_TIMEOUT)")
                return False
        return False

    def _log_ready(self, seconds: float) -> None:
        workers = self.loaded_workers()
        first = workers[0] if workers else {}
        rss = [w.get("rss_bytes", 0) / 2**20 for w in workers]
        log.info("ready in %.1f s: %d worker(s), detector=%s, embedder=%s, execution provider=%s, "
                 "worker RSS %s MiB", seconds, len(workers), first.get("detector"), first.get("embedder"),
                 first.get("provider"), "/".join(f"{r:.0f}" for r in rss))
        if self.config.pipeline.device == "gpu" and "CUDAExecutionProvider" not in str(first.get("provider")):
            log.error("FACE_BLUR_DEVICE=gpu, BUT THE WORKERS RUN ON %s (FACE_BLUR_GPU_FALLBACK=true); "
                      "frames will be slow", first.get("provider"))

    def stop(self) -> None:
        """Stop taking frames, let those in flight finish (up to DRAIN_S), then stop MMS."""
        if self.gate is not None and not self.gate.stop(DRAIN_S):
            log.warning("frames still in flight after %d s; stopping anyway", DRAIN_S)
        if self.mms is not None:
            stop_process_tree(self.mms)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def stop_process_tree(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the JVM and each of its descendants (by PID), then SIGKILL what is left."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if proc.poll() is None:
        proc.terminate()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


@contextlib.contextmanager
def _stop_on_signals(event: threading.Event) -> Iterator[None]:
    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        event.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from(args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    supervisor = Supervisor(config)
    with _stop_on_signals(supervisor.stop_requested):
        try:
            return supervisor.run()
        finally:
            supervisor.stop()
            if supervisor.failure:
                log.error("start-up failed: %s", supervisor.failure)
