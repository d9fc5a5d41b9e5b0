"""postprocess.storage (one interface over local folders and S3 via a moto server: retries, errors)
and postprocess.reading (frames, results and references found through it)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from postprocess_helpers import new_bucket

from postprocess.parallel import bounded_map, ordered_map
from postprocess.reading import (
    DEFAULT_FRAME_PATTERN,
    FrameListError,
    ReferenceLayoutError,
    compile_frame_pattern,
    describe_unusable,
    list_frames,
    read_references,
    read_results,
)
from postprocess.storage import StorageError, Store, folder, join, overlaps


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test case (shadows conftest's, which parametrised cases would share)."""
    return new_bucket(s3)


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """(store, base URI) on a local folder or a moto S3 bucket."""
    if request.param == "local":
        return Store(), str(tmp_path / "base")
    s3 = request.getfixturevalue("s3")
    bucket = request.getfixturevalue("bucket")
    return Store(s3), f"s3://{bucket}/base"


def test_write_read_list_copy_head_delete(where):
    store, base = where
    store.write(join(base, "frames/img1.png"), b"one")
    store.write(join(base, "frames/sub/img2.png"), b"two")
    store.write(join(base, "frames2/other.png"), b"not under frames/")
    assert store.read(join(base, "frames/img1.png")) == b"one"
    listed = list(store.list(join(base, "frames")))
    assert [(o.key, o.size) for o in listed] == [("img1.png", 3), ("sub/img2.png", 3)]
    store.copy(join(base, "frames/sub/img2.png"), join(base, "out/sub/img2.png"), {"face-blur-digest": "abc"})
    assert store.read(join(base, "out/sub/img2.png")) == b"two"
    head = store.head(join(base, "out/sub/img2.png"))
    assert head is not None and head["size"] == 3
    if base.startswith("s3://"):
        assert head["metadata"] == {"face-blur-digest": "abc"}
    assert store.head(join(base, "out/absent.png")) is None
    assert not store.exists(join(base, "out/absent.png"))
    store.delete(join(base, "out/sub/img2.png"))
    assert not store.exists(join(base, "out/sub/img2.png"))
    store.delete(join(base, "out/sub/img2.png"))  # absent: fine


def test_create_writes_once_and_never_replaces(where):
    store, base = where
    uri = join(base, "claims/job-1.json")
    assert store.create(uri, b"first") is True
    assert store.create(uri, b"second") is False
    assert store.read(uri) == b"first"


def test_listing_an_empty_or_absent_prefix_is_empty(where):
    store, base = where
    assert list(store.list(join(base, "nothing-here"))) == []


def test_missing_object_names_the_uri(where):
    store, base = where
    uri = join(base, "frames/absent.png")
    with pytest.raises(StorageError) as err:
        store.read(uri)
    assert err.value.missing
    assert "absent.png" in str(err.value)


def test_local_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    store = Store()
    target = tmp_path / "out" / "img1.png"
    for body in (b"first", b"second version"):
        store.write(str(target), body)
    assert target.read_bytes() == b"second version"
    assert [p.name for p in target.parent.iterdir()] == ["img1.png"]


def test_s3_listing_paginates_past_1000_objects(s3, bucket):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"frames/img{i:05d}.png", Body=b"x"), range(1005)))
    keys = [o.key for o in Store(s3).list(f"s3://{bucket}/frames")]
    assert len(keys) == 1005
    assert keys[0] == "img00000.png" and keys[-1] == "img01004.png"


def test_s3_client_from_environment_reaches_the_endpoint(s3_env, s3, bucket):
    """No client injected: the store makes its own, honouring AWS_ENDPOINT_URL."""
    Store().write(f"s3://{bucket}/a/b.json", b"{}")
    assert s3.get_object(Bucket=bucket, Key="a/b.json")["Body"].read() == b"{}"


def test_s3_permanent_error_stops_and_names_the_bucket(s3_env):
    store = Store()
    with pytest.raises(StorageError) as err:
        list(store.list("s3://no-such-bucket-face-blur/frames"))
    assert "no-such-bucket-face-blur" in str(err.value)
    assert "NoSuchBucket" in str(err.value)


class _ThrottlingS3(BaseHTTPRequestHandler):
    """Answers GET with 503 SlowDown ``throttle`` times, then 200; 403 for keys named 'denied'."""

    throttle = 0
    requests = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        with self.lock:
            type(self).requests += 1
            throttled = type(self).throttle > 0
            if throttled:
                type(self).throttle -= 1
        if "denied" in self.path:
            self._reply(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
        elif throttled:
            self._reply(503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
        else:
            self._reply(200, b"frame bytes", "application/octet-stream")

    def _reply(self, status, body, kind="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def throttling_endpoint(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ThrottlingS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    _ThrottlingS3.requests = 0
    yield _ThrottlingS3
    server.shutdown()
    server.server_close()


def test_throttling_is_retried_until_the_read_succeeds(throttling_endpoint):
    throttling_endpoint.throttle = 2
    store = Store(retry_mode="standard", max_attempts=5)
    assert store.read("s3://bucket/frames/img1.png") == b"frame bytes"
    assert throttling_endpoint.requests == 3


def test_throttling_beyond_the_attempts_is_an_error_naming_the_key(throttling_endpoint):
    throttling_endpoint.throttle = 10
    store = Store(retry_mode="standard", max_attempts=2)
    with pytest.raises(StorageError) as err:
        store.read("s3://bucket/frames/img7.png")
    assert "frames/img7.png" in str(err.value) and "SlowDown" in str(err.value)
    assert throttling_endpoint.requests == 2


def test_access_denied_is_not_retried(throttling_endpoint):
    store = Store(retry_mode="adaptive", max_attempts=5)
    with pytest.raises(StorageError) as err:
        store.read("s3://bucket/denied/img1.png")
    assert "AccessDenied" in str(err.value) and "denied/img1.png" in str(err.value)
    assert throttling_endpoint.requests == 1


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("s3://b/frames", "s3://b/frames/", True),
    ("s3://b/frames", "s3://b/frames/blurred", True),
    ("s3://b/frames/blurred", "s3://b/frames", True),
    ("s3://b/frames", "s3://b/frames2", False),
    ("s3://b/job/in/frames", "s3://b/job/out", False),
    ("s3://b/x", "s3://c/x", False),
    ("/data/frames", "/data/frames/out", True),
    ("/data/frames", "/data/frames-out", False),
    ("s3://b/frames", "/b/frames", False),
])
def test_overlaps_is_by_folder(a, b, expected):
    assert overlaps(a, b) is expected


@pytest.mark.parametrize(("uri", "rel", "expected"), [
    ("s3://b/out", "img1.png", "s3://b/out/img1.png"),
    ("s3://b/out/", "sub/img1.png", "s3://b/out/sub/img1.png"),
    ("s3://b", "img1.png", "s3://b/img1.png"),
])
def test_join_s3(uri, rel, expected):
    assert join(uri, rel) == expected


@pytest.mark.parametrize(("uri", "error"), [
    ("s3://", "without a bucket"),
    ("gs://bucket/x", "unsupported URI scheme"),
])
def test_bad_uris_are_refused(uri, error):
    with pytest.raises(ValueError, match=error):
        folder(uri)


def test_bounded_map_returns_every_item_and_reraises_the_first_error():
    assert sorted(bounded_map(lambda i: i * i, range(50), workers=4)) == [(i, i * i) for i in range(50)]

    def fail_on_7(i):
        if i == 7:
            raise ValueError("item 7")
        return i

    with pytest.raises(ValueError, match="item 7"):
        list(bounded_map(fail_on_7, range(50), workers=4))


def test_ordered_map_keeps_the_items_order_reads_at_most_a_window_ahead_and_reraises_the_first_error():
    import threading

    first_done = threading.Event()

    def late_first(i):  # item 0 finishes only after item 1 has
        if i == 0:
            first_done.wait(5)
        elif i == 1:
            first_done.set()
        return i * i

    assert list(ordered_map(late_first, range(20), workers=4)) == [(i, i * i) for i in range(20)]
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    results = ordered_map(lambda i: i, items(), workers=2, window=3)
    assert next(results) == (0, 0) and len(pulled) == 3
    results.close()

    def fail_on_7(i):
        if i == 7:
            raise ValueError("item 7")
        return i

    with pytest.raises(ValueError, match="item 7"):
        list(ordered_map(fail_on_7, range(50), workers=4))


# -- postprocess.reading: frames, results and references found through the store -----------------

def _result(width: int = 64, height: int = 48, faces: int = 1) -> bytes:
    import numpy as np

    from contract import FrameFaces, FrameResult, dumps

    face = FrameFaces(np.array([[10, 10, 30, 34]] * faces, np.float32).reshape(faces, 4), np.full(faces, 0.9),
                      np.zeros((faces, 5, 2)), np.ones((faces, 4), np.float32) / 2)
    return dumps(FrameResult(width, height, face, "centerface", "mobilefacenet", np.zeros(4, np.float32)))


@pytest.mark.parametrize(("names", "pattern", "expected"), [
    (["img0000002.png", "img0000001.png", "img0000010.png"], DEFAULT_FRAME_PATTERN, [1, 2, 10]),
    (["shot2_0007.jpg", "shot2_0008.jpeg"], DEFAULT_FRAME_PATTERN, [7, 8]),
    (["frame-12-final.png", "frame-3-final.png"], r"frame-(\d+)-", [3, 12]),
    (["a/img1.png", "b/img2.PNG", "notes.txt", "img3.png.out"], DEFAULT_FRAME_PATTERN, [1, 2]),
])
def test_frames_are_numbered_by_their_file_names(where, names, pattern, expected):
    store, base = where
    for name in names:
        store.write(join(base, "frames/" + name), b"x")
    frames = list_frames(store, join(base, "frames"), pattern)
    assert [f.number for f in frames] == expected
    assert all(f.key in names for f in frames)


@pytest.mark.parametrize(("names", "pattern", "error"), [
    (["img1.png", "x/img001.png"], DEFAULT_FRAME_PATTERN, "'img1.png' and 'x/img001.png' both have number 1"),
    (["cover.png"], DEFAULT_FRAME_PATTERN, "'cover.png' has no frame number"),
    (["notes.txt"], DEFAULT_FRAME_PATTERN, "no frames"),
])
def test_frames_that_cannot_be_numbered_are_named(tmp_path, names, pattern, error):
    store = Store()
    for name in names:
        store.write(str(tmp_path / "frames" / name), b"x")
    with pytest.raises(FrameListError, match=error):
        list_frames(store, str(tmp_path / "frames"), pattern)


@pytest.mark.parametrize(("pattern", "error"), [(r"\d+", "exactly one group"), (r"(\d+", "not a valid regex")])
def test_bad_frame_patterns_are_refused(pattern, error):
    with pytest.raises(ValueError, match=error):
        compile_frame_pattern(pattern)


def test_results_are_read_and_the_unusable_ones_reported(where):
    store, base = where
    frames = []
    for i in range(1, 9):
        store.write(join(base, f"frames/img{i:03d}.png"), b"x")
    for i in (1, 2, 3, 5, 6):
        store.write(join(base, f"results/img{i:03d}.png.out"), _result(faces=i % 3))
    store.write(join(base, "results/img004.png.out"), b"not json")
    store.write(join(base, "results/img007.png.out"), b'{"schema": "face-blur/frame/v0"}')
    frames = list_frames(store, join(base, "frames"))
    found = read_results(store, frames, join(base, "results"), workers=4)
    assert sorted(found.results) == [1, 2, 3, 5, 6]
    assert [len(found.results[i].faces) for i in (1, 2, 3)] == [1, 2, 0]
    assert found.results[2].faces.frame_index == 2
    assert [f.number for f in found.missing] == [8]
    assert [f.number for f, _ in found.unreadable] == [4, 7]
    assert found.unusable == [4, 7, 8]
    text = describe_unusable(found, join(base, "results"))
    assert "1 missing" in text and "img008.png.out" in text
    assert "2 unreadable" in text and "img004.png.out: frame result is not JSON" in text


def test_unusable_results_are_summarised_first_few_and_a_count(tmp_path):
    store = Store()
    for i in range(1, 21):
        store.write(str(tmp_path / "frames" / f"img{i:03d}.png"), b"x")
    found = read_results(store, list_frames(store, str(tmp_path / "frames")), str(tmp_path / "results"))
    text = describe_unusable(found, str(tmp_path / "results"))
    assert "20 missing" in text and "img005.png.out" in text and "and 15 more" in text
    assert "img006.png.out" not in text


def test_references_are_read_per_person_and_photo(where):
    store, base = where
    for key in ("alice/a1.jpg.out", "alice/a2.png.out", "bob/b.jpg.out"):
        store.write(join(base, "refs/" + key), _result())
    store.write(join(base, "refs/alice/a1.jpg"), b"the photo itself, ignored")
    refs = read_references(store, join(base, "refs"))
    assert {p: sorted(photos) for p, photos in refs.items()} == {"alice": ["a1.jpg", "a2.png"], "bob": ["b.jpg"]}
    assert refs["bob"]["b.jpg"].embedder == "mobilefacenet"


@pytest.mark.parametrize(("key", "body", "error"), [
    ("loose.jpg.out", None, "not laid out <person>/<photo>.out"),
    ("alice/deep/a.jpg.out", None, "not laid out"),
    ("alice/a.jpg.out", b"[]", "alice/a.jpg.out is unreadable"),
])
def test_bad_references_are_named(tmp_path, key, body, error):
    store = Store()
    store.write(str(tmp_path / "refs" / key), body if body is not None else _result())
    with pytest.raises(ReferenceLayoutError, match=error):
        read_references(store, str(tmp_path / "refs"))


def test_no_references_is_an_error(tmp_path):
    with pytest.raises(ReferenceLayoutError, match="no reference results"):
        read_references(Store(), str(tmp_path / "refs"))
