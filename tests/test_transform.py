"""``face-blur transform``: the Batch Transform stand-in's contract (one object per request, ``.out``
results, retries on 5xx, 4xx recorded as failed, MaxConcurrentTransforms, MaxPayloadInMB), against
a loopback HTTP server whose answers the test chooses, and S3 through the moto server. The real
inference server is exercised in tests/test_e2e.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faceblur.cli import main
from faceblur.transform import TransformConfig, TransformError, TransformFailedError, run_transform


class Endpoint:
    """A loopback server: /ping 200; /invocations answers by the body's first bytes:
    ``bad``: 400, ``flaky``: 503 twice then 200, ``down``: 500 always, anything else: 200 with a JSON
    description of the request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[bytes, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.content_types: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                self._send(200 if self.path == "/ping" else 404, b"{}")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.calls[body] = outer.calls.get(body, 0) + 1
                    count = outer.calls[body]
                    outer.content_types.add(self.headers.get("Content-Type", ""))
                try:
                    threading.Event().wait(0.02)
                    if self.path != "/invocations":
                        self._send(404, b'{"message": "no such path"}')
                    elif body.startswith(b"bad"):
                        self._send(400, b'{"message": "request body is not an image"}')
                    elif body.startswith(b"flaky") and count <= 2:
                        self._send(503, b'{"message": "busy"}')
                    elif body.startswith(b"down"):
                        self._send(500, b'{"message": "worker died"}')
                    else:
                        self._send(200, json.dumps({"size": len(body), "head": body[:8].decode()}).encode())
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    with Endpoint() as e:
        yield e


def _objects(root, items: dict[str, bytes]) -> None:
    for rel, body in items.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def test_every_object_becomes_one_request_and_one_out_file(tmp_path, endpoint):
    items = {f"cam{c}/img{n:07d}.png": f"frame {c}-{n}".encode() for c in (1, 2) for n in range(1, 6)}
    items["flaky.png"] = b"flaky frame"
    _objects(tmp_path / "in", items)
    summary = run_transform(TransformConfig(endpoint.url, str(tmp_path / "in"), str(tmp_path / "out"),
                                            concurrency=3, backoff_s=0.01), progress=False)
    assert summary.succeeded == summary.objects == len(items)
    assert summary.retries == 2  # the flaky object, answered 503 twice
    got = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == sorted(k + ".out" for k in items)
    for rel, body in items.items():
        answer = json.loads((tmp_path / "out" / (rel + ".out")).read_bytes())
        assert answer == {"size": len(body), "head": body[:8].decode()}
    assert endpoint.content_types == {"application/x-image"}
    assert endpoint.max_in_flight <= 3  # MaxConcurrentTransforms


def test_client_errors_are_recorded_and_named_and_the_run_fails(tmp_path, endpoint, capsys):
    _objects(tmp_path / "in", {"a.png": b"good", "b.txt": b"bad body", "c.png": b"good too", "d.png": b"down"})
    code = main(["transform", "--endpoint", endpoint.url, "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--no-progress", "--max-retries", "1"])
    assert code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("face-blur: error: 2 of 4 objects failed")
    assert "b.txt: HTTP 400: request body is not an image" in line
    assert "d.png: HTTP 500: worker died (after 1 retries)" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png.out", "c.png.out"]
    assert endpoint.calls[b"bad body"] == 1  # a 4xx is not retried
    assert endpoint.calls[b"down"] == 2  # a 5xx is: once more with --max-retries 1


def test_an_object_over_max_payload_is_not_sent(tmp_path, endpoint):
    _objects(tmp_path / "in", {"small.png": b"x" * 100, "huge.png": b"y" * (1024 * 1024 + 1)})
    with pytest.raises(TransformFailedError) as err:
        run_transform(TransformConfig(endpoint.url, str(tmp_path / "in"), str(tmp_path / "out"), max_payload_mb=1),
                      progress=False)
    assert list(err.value.failures) == ["huge.png"] and "MaxPayloadInMB" in err.value.failures["huge.png"]
    assert b"y" * 8 not in {k[:8] for k in endpoint.calls}


def test_output_inside_the_input_is_refused(tmp_path, endpoint):
    _objects(tmp_path / "in", {"a.png": b"good"})
    with pytest.raises(TransformError, match="overlaps"):
        run_transform(TransformConfig(endpoint.url, str(tmp_path / "in"), str(tmp_path / "in" / "out")),
                      progress=False)


def test_s3_to_s3_through_the_moto_server(s3, bucket, endpoint):
    for n in range(1, 4):
        s3.put_object(Bucket=bucket, Key=f"jobs/1/frames/img{n:07d}.png", Body=f"frame {n}".encode())
    s3.put_object(Bucket=bucket, Key="jobs/1/frames2/img0000001.png", Body=b"not under the prefix")
    code = main(["transform", "--endpoint", endpoint.url + "/invocations", "--input", f"s3://{bucket}/jobs/1/frames",
                 "--output", f"s3://{bucket}/jobs/1/results/", "--concurrency", "2", "--no-progress"])
    assert code == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="jobs/1/results/")["Contents"])
    assert keys == [f"jobs/1/results/img{n:07d}.png.out" for n in range(1, 4)]
    body = s3.get_object(Bucket=bucket, Key="jobs/1/results/img0000002.png.out")["Body"].read()
    assert json.loads(body) == {"size": 7, "head": "frame 2"}


@pytest.mark.parametrize(("endpoint_url", "message"), [
    ("ftp://host/", "http(s) URL"),
    ("localhost:8080", "http(s) URL"),
])
def test_bad_endpoint_urls_are_usage_errors(tmp_path, capsys, endpoint_url, message):
    code = main(["transform", "--endpoint", endpoint_url, "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert code == 2
    assert message in capsys.readouterr().err
