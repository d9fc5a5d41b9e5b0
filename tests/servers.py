"""The real inference server for tests: started through our own entry point
(``python -m handler.serve``) on a free loopback port, driven over HTTP, stopped by its PID.

    with serving(model_dir, workers=1) as server:
        status, headers, body = server.invoke(jpeg_bytes, "image/jpeg")

multi-model-server runs inside it (a JVM and Python workers, all in the server's process group),
so ``stop_pid`` stops the lot. Start one at a time: two servers fit in memory, but not on two cores
shared with the rest of the suite.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO, free_port, stop_pid

START_TIMEOUT_S = 180


class ServerStartError(RuntimeError):
    """The server exited or did not answer /ping 200 in time; the message holds its log's tail."""


@dataclass
class RunningServer:
    proc: subprocess.Popen
    host: str
    port: int
    log_path: Path
    startup_pings: list[tuple[int, bytes]] = field(default_factory=list)  # what /ping said while starting

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        """The log once it contains ``text`` (lines from the JVM and the supervisor arrive on
        their own schedule); the log as it is after ``timeout`` otherwise."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return log

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float = 120
                ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a fresh connection: (status, headers lower-cased, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def ping(self, timeout: float = 5) -> int:
        return self.request("GET", "/ping", timeout=timeout)[0]

    def invoke(self, body: bytes, content_type: str | None = "image/jpeg", accept: str | None = None,
               timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        return self.request("POST", "/invocations", body, headers, timeout)


ENTRY_POINT = (sys.executable, "-m", "handler.serve")


def _command(entry: Sequence[str] | None, model_dir: Path, port: int, workers: int, args: tuple[str, ...]
             ) -> list[str]:
    return [*(entry or ENTRY_POINT), "--host", "127.0.0.1", "--port", str(port),
            "--model-dir", str(model_dir), "--workers", str(workers), *args]


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACE_BLUR_", "SAGEMAKER_"))}  # the caller's settings only
    env.update(extra or {})
    return env


def _launch(model_dir: Path, log_path: Path, workers: int, env: Mapping[str, str] | None,
            args: tuple[str, ...], entry: Sequence[str] | None) -> RunningServer:
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_command(entry, model_dir, port, workers, args), cwd=REPO, env=_env(env),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return RunningServer(proc, "127.0.0.1", port, Path(log_path))


def start_server(model_dir: Path, log_path: Path, *, workers: int = 1, env: Mapping[str, str] | None = None,
                 args: tuple[str, ...] = (), timeout: float = START_TIMEOUT_S,
                 entry: Sequence[str] | None = None) -> RunningServer:
    """Start the server and wait until /ping is 200; raise :class:`ServerStartError` otherwise.

    ``entry`` is the command before the options (default ``python -m handler.serve``; the CLI's
    tests pass e.g. ``[sys.executable, "-m", "faceblur.cli", "serve"]``); ``args`` come after them.
    """
    server = _launch(model_dir, log_path, workers, env, args, entry)
    proc = server.proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"server exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, body = server.request("GET", "/ping", timeout=2)
            server.startup_pings.append((status, body))
            if status == 200:
                return server
        time.sleep(0.2)
    stop_pid(proc)
    raise ServerStartError(f"server did not answer /ping 200 in {timeout:.0f} s:\n{server.log_text()[-4000:]}")


@contextlib.contextmanager
def serving(model_dir: Path, log_path: Path, **kwargs) -> Iterator[RunningServer]:
    """:func:`start_server`, stopped by PID (its whole process group) on exit."""
    server = start_server(model_dir, log_path, **kwargs)
    try:
        yield server
    finally:
        stop_pid(server.proc)


def run_to_exit(model_dir: Path, log_path: Path, *, workers: int = 1, env: Mapping[str, str] | None = None,
                args: tuple[str, ...] = (), timeout: float = START_TIMEOUT_S,
                entry: Sequence[str] | None = None) -> tuple[int | None, str]:
    """Run a server that should refuse to start: (its exit code, its output). One that answers
    /ping 200 instead is stopped and reported with exit code None."""
    server = _launch(model_dir, log_path, workers, env, args, entry)
    proc = server.proc
    deadline = time.monotonic() + timeout
    code: int | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            code = proc.returncode
            break
        with contextlib.suppress(OSError, http.client.HTTPException):
            if server.ping(timeout=2) == 200:
                break
        time.sleep(0.3)
    stop_pid(proc)
    return code, server.log_text()
