"""postprocess.render: frames written in their own format, copies for frames with nothing to blur,
slices for array jobs, and resuming after a failure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import load_rgb
from PIL import Image
from postprocess_helpers import face_hidden, new_bucket

from postprocess.blur import Blurrer, RenderConfig
from postprocess.reading import FrameRef
from postprocess.render import METADATA_KEY, RenderError, RenderManifest, render_frames, render_image, share
from postprocess.storage import StorageError, Store, join

FACE = (40.0, 30.0, 100.0, 110.0)  # a face box in the 160x120 test frames


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test case (shadows conftest's, which parametrised cases would share)."""
    return new_bucket(s3)


class FakePlan:
    """The part of ``postprocess.plan_format.Plan`` that rendering uses, from plain dicts."""

    def __init__(self, width, height, boxes, full=()):
        self.width, self.height = width, height
        self.frame_indices = sorted(set(boxes) | set(full))
        self._boxes, self._full = boxes, set(full)

    def boxes(self, frame_index):
        return np.asarray(self._boxes.get(frame_index, np.zeros((0, 4))), np.float32).reshape(-1, 4)

    def is_full_frame(self, frame_index):
        return frame_index in self._full


@pytest.fixture(scope="module")
def face_frame(faces_dir):
    """160x120 crop of a real face (rose_leslie2.jpg) with the face at ``FACE``."""
    photo = load_rgb(faces_dir / "rose_leslie2.jpg")  # face at (176, 124, 427, 452)
    crop = Image.fromarray(photo).crop((176 - 160, 124 - 120, 427 + 250, 452 + 80))
    return np.asarray(crop.resize((160, 120), Image.Resampling.LANCZOS))


def _encode(frame: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, fmt, **options)
    return buf.getvalue()


def _decode(body: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(body))
    im.load()
    return im


def test_png_stays_png_and_lossless_outside_the_face(face_frame):
    blurrer = Blurrer()
    out = _decode(render_image(_encode(face_frame, "PNG"), "img1.png", np.array([FACE]), False, blurrer, (160, 120)))
    assert out.format == "PNG" and out.mode == "RGB"
    pixels = np.asarray(out)
    outside = np.ones((120, 160), bool)
    for x0, y0, x1, y1 in blurrer.footprint(np.array([FACE]), 160, 120):
        outside[y0:y1, x0:x1] = False
    assert np.array_equal(pixels[outside], face_frame[outside])
    assert face_hidden(face_frame, pixels, FACE)[0]


def test_jpeg_stays_jpeg_at_high_quality(face_frame):
    body = _encode(face_frame, "JPEG", quality=95)
    out = _decode(render_image(body, "img1.jpg", np.array([FACE]), False, Blurrer(), (160, 120)))
    assert out.format == "JPEG"
    pixels = np.asarray(out).astype(float)
    original = np.asarray(_decode(body)).astype(float)
    corner = (slice(0, 25), slice(120, 160))  # far from the face: only re-encoding loss
    mse = ((pixels[corner] - original[corner]) ** 2).mean()
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35
    assert face_hidden(face_frame, pixels.astype(np.uint8), FACE)[0]


def test_alpha_and_greyscale_survive(face_frame):
    rgba = np.dstack([face_frame, np.full((120, 160), 200, np.uint8)])
    out = _decode(render_image(_encode(rgba, "PNG"), "a.png", np.array([FACE]), False, Blurrer(), (160, 120)))
    assert out.mode == "RGBA" and (np.asarray(out)[..., 3] == 200).all()
    grey = np.asarray(Image.fromarray(face_frame).convert("L"))
    out = _decode(render_image(_encode(grey, "PNG"), "g.png", np.array([FACE]), False, Blurrer(), (160, 120)))
    assert out.mode == "L"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_colour_profile_is_kept_and_exif_gps_is_dropped(face_frame, fmt):
    """A wide-gamut phone photo keeps its ICC profile (its colours), but not its EXIF (GPS)."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0)}  # GPSInfo
    buf = io.BytesIO()
    Image.fromarray(face_frame).save(buf, fmt, icc_profile=icc, exif=exif.tobytes())
    out = _decode(render_image(buf.getvalue(), "p." + fmt.lower(), np.array([FACE]), False, Blurrer(), (160, 120)))
    assert out.info.get("icc_profile") == icc
    assert 0x8825 not in out.getexif()


def test_exif_rotated_jpeg_is_blurred_upright(face_frame):
    """A JPEG stored sideways with an orientation tag: the results (and boxes) are for the upright
    image, so the output is written upright."""
    sideways = Image.fromarray(face_frame).transpose(Image.Transpose.ROTATE_90)  # stored 120x160
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to view
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", quality=95, exif=exif)
    out = _decode(render_image(buf.getvalue(), "r.jpg", np.array([FACE]), False, Blurrer(), (160, 120)))
    assert out.size == (160, 120)
    assert out.getexif().get(0x0112, 1) == 1
    assert face_hidden(face_frame, np.asarray(out), FACE)[0]


@pytest.mark.parametrize(("body", "size", "error"), [
    (b"not an image", (160, 120), "img9.png cannot be decoded"),
    ("png", (320, 240), "img9.png is 160x120, the results say 320x240"),
    ("gif", (160, 120), "unsupported image format"),
])
def test_bad_frames_name_the_frame(face_frame, body, size, error):
    if body == "png":
        body = _encode(face_frame, "PNG")
    elif body == "gif":
        body = _encode(face_frame, "GIF")
    with pytest.raises(RenderError, match=error):
        render_image(body, "img9.png", np.array([FACE]), False, Blurrer(), size)


@pytest.mark.parametrize(("n", "count"), [(10, 3), (3, 5), (1000, 7), (0, 2)])
def test_slices_cover_every_frame_once_in_order(n, count):
    frames = [FrameRef(i, f"img{i}.png") for i in range(n)]
    parts = [share(frames, i, count) for i in range(count)]
    assert [f for part in parts for f in part] == frames
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(("index", "count"), [(3, 3), (-1, 3), (0, 0)])
def test_bad_slices_are_refused(index, count):
    with pytest.raises(ValueError, match="slice"):
        share([FrameRef(1, "a.png")], index, count)


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    if request.param == "local":
        return Store(), str(tmp_path / "job")
    return Store(request.getfixturevalue("s3")), f"s3://{request.getfixturevalue('bucket')}/job"


def _scene(store: Store, base: str, frame: np.ndarray, n: int = 6):
    """n PNG frames (slightly different each) under base/frames; frames 1-2 have a face to blur,
    frame 3 is blurred whole, the rest have nothing to blur."""
    frames = []
    for i in range(1, n + 1):
        shifted = np.roll(frame, i, axis=1)
        store.write(join(base, f"frames/img{i:04d}.png"), _encode(shifted, "PNG"))
        frames.append(FrameRef(i, f"img{i:04d}.png"))
    plan = FakePlan(160, 120, {i: [FACE] if i <= 2 else [] for i in range(1, n + 1)}, full=[3])
    manifest = RenderManifest(join(base, "frames/"), tuple(frames), "d1g35t", "r1")
    return plan, manifest


def _outputs(store: Store, prefix: str) -> dict[str, bytes]:
    return {o.key: store.read(join(prefix, o.key)) for o in store.list(prefix) if not o.key.startswith(".")}


def test_render_blurs_what_the_plan_says_and_copies_the_rest(where, face_frame):
    store, base = where
    plan, manifest = _scene(store, base, face_frame)
    stats = render_frames(store, plan, manifest, join(base, "out"), RenderConfig(), workers=4)
    assert (stats.frames, stats.rendered, stats.copied, stats.full_frames, stats.faces) == (6, 3, 3, 1, 2)
    out = _outputs(store, join(base, "out"))
    assert sorted(out) == [f.key for f in manifest.frames]
    for f in manifest.frames:
        src = store.read(join(base, "frames/" + f.key))
        if f.number >= 4:
            assert out[f.key] == src  # copied, byte for byte
        else:
            assert out[f.key] != src
            box = (0, 0, 160, 120) if f.number == 3 else FACE
            assert face_hidden(np.asarray(_decode(src)), np.asarray(_decode(out[f.key])), box)[0]
    if base.startswith("s3://"):
        for f in manifest.frames:
            assert store.head(join(base, "out/" + f.key))["metadata"] == {METADATA_KEY: "d1g35t"}


def test_array_slices_together_equal_one_render(where, face_frame):
    store, base = where
    plan, manifest = _scene(store, base, face_frame, n=7)
    render_frames(store, plan, manifest, join(base, "whole"), RenderConfig(), workers=2)
    total = 0
    for index in range(3):
        stats = render_frames(store, plan, manifest, join(base, "sliced"), RenderConfig(), workers=2,
                              index=index, count=3)
        total += stats.frames
    assert total == 7
    assert _outputs(store, join(base, "sliced")) == _outputs(store, join(base, "whole"))


class FailingStore(Store):
    """Fails the ``fail_at``-th write of a frame, as a lost connection would."""

    def __init__(self, inner: Store, fail_at: int) -> None:
        super().__init__()
        self.inner, self.fail_at, self.writes = inner, fail_at, 0
        self._backend = inner._backend

    def write(self, uri, data, metadata=None):
        if uri.endswith(".png"):
            self.writes += 1
            if self.writes == self.fail_at:
                raise StorageError(uri, "connection reset")
        self.inner.write(uri, data, metadata)


def test_a_rerun_resumes_after_a_failure_and_gives_the_same_bytes(where, face_frame):
    store, base = where
    plan, manifest = _scene(store, base, face_frame, n=8)
    plan._boxes = {i: [FACE] for i in range(1, 9)}  # every frame rendered (written, not copied)
    render_frames(store, plan, manifest, join(base, "clean"), RenderConfig(), workers=1)
    with pytest.raises(StorageError, match="connection reset"):
        render_frames(FailingStore(store, fail_at=5), plan, manifest, join(base, "out"), RenderConfig(), workers=1)
    stats = render_frames(store, plan, manifest, join(base, "out"), RenderConfig(), workers=2)
    assert stats.skipped == 4 and stats.rendered == 4
    assert _outputs(store, join(base, "out")) == _outputs(store, join(base, "clean"))
    # a third run has nothing left to do
    assert render_frames(store, plan, manifest, join(base, "out"), RenderConfig(), workers=2).skipped == 8


def test_another_render_id_starts_from_scratch(tmp_path, face_frame):
    store, base = Store(), str(tmp_path)
    plan, manifest = _scene(store, base, face_frame)
    render_frames(store, plan, manifest, join(base, "out"), RenderConfig())
    other = RenderManifest(manifest.frames_uri, manifest.frames, "other-digest", "r2")
    assert render_frames(store, plan, other, join(base, "out"), RenderConfig()).skipped == 0


def test_frames_missing_from_the_plan_are_an_error(tmp_path, face_frame):
    store, base = Store(), str(tmp_path)
    plan, manifest = _scene(store, base, face_frame)
    plan.frame_indices = [1, 2, 3]
    with pytest.raises(RenderError, match="not in the plan"):
        render_frames(store, plan, manifest, join(base, "out"), RenderConfig())
