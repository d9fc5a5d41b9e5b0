"""The public port: ``GET /ping``, ``POST /invocations`` (and ``GET /execution-parameters``).

multi-model-server 1.1.11 answers its own /ping with HTTP 200 whatever its workers do: "Healthy"
while they are still loading their models (a loading worker counts as running), "Unhealthy" when
every one has failed. SageMaker reads only the status code, so it would send frames to a server
that cannot serve them. This gate owns the public port instead and:

- answers /ping 200 only while every configured worker has its models loaded, else 503 (the
  supervisor's ``ready()``: each worker reports once its models are loaded and a warm-up frame has
  run; MMS's own worker status says READY as soon as a worker has connected, before it loads);
- refuses a body over the payload limit with 413 from its Content-Length, before reading it;
- forwards /invocations unchanged (body, Content-Type, Accept) to MMS on loopback and relays the
  answer (status, Content-Type, body);
- answers anything else with a JSON 404/405.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from handler.serving.errors import error_body

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, str]]
DRAIN_LIMIT = 1 << 30  # refused bodies up to 1 GiB are read and dropped before the 413


class Gate(ThreadingHTTPServer):
    """``Gate((host, port), upstream_port, ready, max_body, timeout_s)``; ``ready()`` returns
    (ready, detail). Bind happens in the constructor, so a taken port fails at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], upstream_port: int, ready: Readiness, max_body: int,
                 timeout_s: float, execution_parameters: dict | None = None) -> None:
        self.upstream_port = upstream_port
        self.ready = ready
        self.max_body = max_body
        self.timeout_s = timeout_s
        self.execution_parameters = execution_parameters or {}
        self._busy = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        super().__init__(address, _GateHandler)

    @contextlib.contextmanager
    def busy(self):
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """After ``shutdown()``: wait for the frames in flight to be answered (True if they were)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="face-blur-gate", daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def stop(self, drain_s: float) -> bool:
        """Stop accepting, close the socket, and wait up to ``drain_s`` for the frames in flight
        (True when none is left)."""
        if self._thread is not None:
            self.shutdown()  # only returns once serve_forever has run and stopped
        self.server_close()
        return self.wait_idle(drain_s)


class _GateHandler(BaseHTTPRequestHandler):
    # Headers and body go out as separate small writes; with Nagle's algorithm on, the second waits
    # for the client's delayed ACK: 44 ms added to every keep-alive request (measured in bench/).
    disable_nagle_algorithm = True
    server: Gate
    protocol_version = "HTTP/1.1"
    server_version = "face-blur"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str = "", close: bool = False) -> None:
        self._send(status, error_body(status, message, kind), close=close)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            ready, detail = self.server.ready()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            body = json.dumps({"status": "Healthy" if ready else "Unhealthy", "workers": detail})
            self._send(status, body.encode())
        elif path == "/execution-parameters":
            self._send(HTTPStatus.OK, json.dumps(self.server.execution_parameters).encode())
        elif path == "/invocations":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST /invocations with one frame image as the body")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource {path!r}; this server has /ping and /invocations")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != "/invocations":
            self._discard(self._content_length() or 0)
            self._error(HTTPStatus.NOT_FOUND, f"no such resource {path!r}; POST frames to /invocations",
                        close=True)
            return
        with self.server.busy():
            body = self._read_body()
            if body is None:
                return
            ready, detail = self.server.ready()
            if not ready:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"models are not loaded (workers: {detail})",
                            "ServerNotReady")
                return
            self._forward(body)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (curl sends it for bodies over 1 MB): refuse an oversized body
        before the client sends it."""
        length = self._content_length()
        if length is not None and length > self.server.max_body:
            self._too_large(length)
            return False
        return super().handle_expect_100()

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _discard(self, length: int) -> None:
        """Read and drop a body we refuse, so the client reads our answer rather than a reset
        connection (up to DRAIN_LIMIT; beyond that the connection is just closed)."""
        if length > DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _read_body(self) -> bytes | None:
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        if self.headers.get("Content-Length") is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the frame with a Content-Length", close=True)
            return None
        length = self._content_length()
        if length is None:
            self._error(HTTPStatus.BAD_REQUEST, "Content-Length is not a byte count", close=True)
            return None
        if length > limit:
            self._discard(length)
            self._too_large(length)
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        parts, total = [], 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, "malformed chunked body", close=True)
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self._too_large(total, exact=False)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _too_large(self, length: int, exact: bool = True) -> None:
        size = f"{length:,} bytes" if exact else f"over {length:,} bytes"
        self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"request body is {size}, over the limit of {self.server.max_body:,} bytes "
                    "(raise it with SAGEMAKER_MAX_PAYLOAD_IN_MB)", "PayloadTooLargeError", close=True)

    def _forward(self, body: bytes) -> None:
        headers = {"Content-Length": str(len(body))}
        for name in ("Content-Type", "Accept"):
            if self.headers.get(name) is not None:
                headers[name] = self.headers[name]
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=self.server.timeout_s)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            content_type = response.getheader("Content-Type", "application/json")
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            log.error("model server did not answer: %s", exc)
            self._error(HTTPStatus.BAD_GATEWAY, "the model server did not answer; see the server log")
            return
        finally:
            conn.close()
        self._send(status, payload, content_type)
