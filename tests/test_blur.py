"""postprocess.blur: every style hides real faces (measured, and by the real recogniser), changes
nothing outside the region, scales with the face, and never crashes on odd boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import load_rgb
from PIL import Image
from postprocess_helpers import face_hidden

from postprocess.blur import SHAPES, STYLES, Blurrer, RenderConfig

# Face boxes in two_people.jpg (1126x661), measured with CenterFace and checked by eye.
TWO_PEOPLE_FACES = np.array([[230, 24, 390, 231], [782, 40, 949, 262]], np.float32)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] / factor), round(image.shape[0] / factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


@pytest.fixture(scope="module")
def photo(faces_dir):
    """two_people.jpg at half size (faces about 80x105 px) and its face boxes."""
    return _resize(load_rgb(faces_dir / "two_people.jpg"), 2), TWO_PEOPLE_FACES / 2


def _outside(shape: tuple[int, ...], rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in rects:
        mask[y0:y1, x0:x1] = False
    return mask


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("style", STYLES)
def test_each_style_hides_the_faces_and_changes_nothing_else(photo, style, shape):
    image, boxes = photo
    out = image.copy()
    blurrer = Blurrer(RenderConfig(style=style, shape=shape))
    blurrer.blur_in_place(out, boxes)
    for box in boxes:
        hidden, how = face_hidden(image, out, tuple(box))
        assert hidden, f"{style}/{shape}: face {box} not hidden ({how})"
    outside = _outside(image.shape, blurrer.footprint(boxes, image.shape[1], image.shape[0]))
    assert np.array_equal(out[outside], image[outside])
    # and what is processed is the faces' neighbourhood, not the frame
    face_area = float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum())
    assert (~outside).sum() < 5 * face_area


@pytest.fixture(scope="module")
def pipeline(test_model_dir):
    from handler.pipeline import PipelineConfig, load_pipeline

    return load_pipeline(PipelineConfig(model_dir=test_model_dir, embedder="mobilefacenet"))


@pytest.mark.parametrize("style", STYLES)
def test_hidden_faces_are_not_recognised_at_any_frame_size(photo, pipeline, style):
    """The real embedder, given the true landmarks, no longer matches the person (cosine similarity
    under the bottom of the identity zone of doubt, so not even "borderline"), with faces of about
    80 px and of about 30 px."""
    from postprocess.identity import resolve_margin, resolve_threshold

    threshold = resolve_threshold("mobilefacenet") - resolve_margin("mobilefacenet")
    for factor in (1, 2.5):
        image = _resize(photo[0], factor)
        clear = pipeline.analyse(image)
        faces = clear.faces[[_best_match(box, clear.faces.xyxy) for box in photo[1] / factor]]
        out = image.copy()
        Blurrer(RenderConfig(style=style)).blur_in_place(out, faces.xyxy)
        after = pipeline.embedder.embed(out, faces.landmarks, faces.xyxy)
        similarity = (after * faces.embedding).sum(axis=1)
        assert (similarity < threshold).all(), f"{style} at 1/{factor}: similarity {similarity} >= {threshold}"
        if factor == 1 and style != "pixelate":  # a mosaic may still look like *a* face, never whose
            # no detection at the face score (0.3); a low candidate may remain, which only blurs it again
            found = pipeline.detector.detect(out)
            found = found.xyxy[found.confidence >= 0.3]
            assert not any(_iou(box, f) > 0.3 for box in faces.xyxy for f in found), f"{style}: face found"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def _best_match(box: np.ndarray, found: np.ndarray) -> int:
    """Index of the detection on the known face ``box`` (the test needs the detector to find it)."""
    ious = [_iou(box, f) for f in found]
    assert ious and max(ious) > 0.4, f"the detector should find the face at {box.round()} (found {found.round()})"
    return int(np.argmax(ious))


@pytest.mark.parametrize("style", STYLES)
def test_strength_follows_the_face_size(photo, style):
    """Blurring a face then halving the frame looks like halving then blurring: a small face is hidden
    as much as a large one. A fixed kernel (same pixels at both sizes) fails this."""
    image, boxes = photo
    small = _resize(image, 2)

    def mismatch(config: RenderConfig) -> float:
        big_out, small_out = image.copy(), small.copy()
        Blurrer(config).blur_in_place(big_out, boxes)
        Blurrer(config).blur_in_place(small_out, boxes / 2)
        shrunk = _resize(big_out, 2)
        diffs = [np.abs(shrunk[y1:y2, x1:x2].astype(float) - small_out[y1:y2, x1:x2]).mean()
                 for x1, y1, x2, y2 in (boxes / 2).astype(int)]
        return max(diffs)

    scaled = mismatch(RenderConfig(style=style))
    assert scaled < 4.0
    if style != "solid":
        fixed = mismatch(RenderConfig(style=style, strength=0.02, min_kernel=10))
        assert fixed > 2 * scaled


@pytest.mark.parametrize(("face", "kernel"), [(200.0, 40.0), (100.0, 20.0), (5.0, 3.0), (0.0, 3.0)])
def test_kernel_is_a_fraction_of_the_face_with_a_minimum(face, kernel):
    assert Blurrer(RenderConfig(strength=0.2, min_kernel=3)).kernel(face) == pytest.approx(kernel)


def _changed_bbox(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((before != after).any(axis=2))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("scale", [1.0, 1.3, 2.0])
def test_mask_scale_is_the_exact_width_and_height_factor(scale):
    frame = np.full((300, 400, 3), 128, np.uint8)
    box = (150.0, 100.0, 250.0, 160.0)  # 100 x 60, centre (200, 130)
    out = frame.copy()
    Blurrer(RenderConfig(style="solid", shape="rect", mask_scale=scale, fill=(0, 0, 0))).blur_in_place(
        out, np.array([box]))
    x0, y0, x1, y1 = _changed_bbox(frame, out)
    assert x1 - x0 == pytest.approx(100 * scale, abs=2)
    assert y1 - y0 == pytest.approx(60 * scale, abs=2)
    assert (x0 + x1) / 2 == pytest.approx(200, abs=1) and (y0 + y1) / 2 == pytest.approx(130, abs=1)


def test_extend_head_grows_the_region_upward_only():
    frame = np.full((300, 400, 3), 128, np.uint8)
    out = frame.copy()
    config = RenderConfig(style="solid", shape="rect", mask_scale=1.0, extend_head=0.5)
    Blurrer(config).blur_in_place(out, np.array([[150.0, 100.0, 250.0, 160.0]]))
    assert _changed_bbox(frame, out) == pytest.approx((150, 70, 250, 160), abs=1)


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_a_face_cut_by_the_border_is_hidden_up_to_the_border(photo, side):
    """The plan clamps a half-visible face's box to the frame; the mask then reaches the border."""
    image, boxes = photo
    x1, y1, x2, y2 = boxes[0]
    w, h = x2 - x1, y2 - y1
    # crop the photo so that the face leaves the frame by 60% on one side
    if side == "left":
        frame = image[:, int(x1 + 0.6 * w):]
    elif side == "right":
        frame = image[:, :int(x2 - 0.6 * w)]
    elif side == "top":
        frame = image[int(y1 + 0.6 * h):]
    else:
        frame = image[:int(y2 - 0.6 * h)]
    frame = np.ascontiguousarray(frame)
    left = int(x1 + 0.6 * w) if side == "left" else 0
    top = int(y1 + 0.6 * h) if side == "top" else 0
    box = np.clip([x1 - left, y1 - top, x2 - left, y2 - top], 0, [frame.shape[1], frame.shape[0]] * 2)
    out = frame.copy()
    Blurrer(RenderConfig(style="solid", fill=(255, 0, 255))).blur_in_place(out, box[None])
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    edge = {"left": out[cy, 0], "right": out[cy, -1], "top": out[0, cx], "bottom": out[-1, cx]}[side]
    assert tuple(edge) == (255, 0, 255)
    blurred = frame.copy()
    Blurrer(RenderConfig()).blur_in_place(blurred, box[None])
    hidden, how = face_hidden(frame, blurred, tuple(box), fraction=1.0)
    assert hidden, how


@pytest.mark.parametrize("box", [
    (10.0, 10.0, 10.0, 10.0),  # 0 px
    (10.0, 10.0, 11.0, 11.0),  # 1 px
    (10.0, 10.0, 10.4, 30.0),  # sub-pixel wide
    (-50.0, -50.0, -5.0, -5.0),  # off the frame (above left)
    (500.0, 20.0, 560.0, 80.0),  # off the frame (right)
    (20.0, 300.0, 60.0, 400.0),  # off the frame (below)
    (-1000.0, -1000.0, 2000.0, 2000.0),  # larger than the frame
    (60.0, 60.0, 20.0, 20.0),  # reversed
    (math.nan, 10.0, 20.0, 20.0),
    (math.inf, 10.0, 20.0, 20.0),
])
@pytest.mark.parametrize("style", STYLES)
def test_odd_boxes_never_crash_and_touch_only_their_footprint(style, box):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = frame.copy()
    blurrer = Blurrer(RenderConfig(style=style))
    blurrer.blur_in_place(out, np.array([box]))
    footprint = blurrer.footprint(np.array([box]), 160, 120)
    assert np.array_equal(out[_outside(frame.shape, footprint)], frame[_outside(frame.shape, footprint)])
    x1, y1, x2, y2 = box
    if not all(map(math.isfinite, box)) or x2 <= x1 or y2 <= y1 or x2 <= 0 or y2 <= 0 or x1 >= 160 or y1 >= 120:
        assert np.array_equal(out, frame)  # empty or entirely off the frame: nothing to do


def test_no_boxes_changes_nothing(photo):
    image, _ = photo
    out = image.copy()
    Blurrer().blur_in_place(out, np.zeros((0, 4), np.float32))
    assert np.array_equal(out, image)


@pytest.mark.parametrize("style", STYLES)
def test_blur_whole_hides_every_face(photo, style):
    image, boxes = photo
    out = image.copy()
    Blurrer(RenderConfig(style=style)).blur_whole(out)
    for box in boxes:
        hidden, how = face_hidden(image, out, tuple(box))
        assert hidden, f"{style}: {how}"


@pytest.mark.parametrize(("options", "field"), [
    ({"style": "gaussian"}, "style"),
    ({"shape": "circle"}, "shape"),
    ({"mask_scale": 0.5}, "mask_scale"),
    ({"mask_scale": "1.3"}, "mask_scale"),
    ({"extend_head": -0.1}, "extend_head"),
    ({"strength": 0.0}, "strength"),
    ({"min_kernel": 0}, "min_kernel"),
    ({"min_kernel": 2.5}, "min_kernel"),
    ({"feather": 1.5}, "feather"),
    ({"fill": (0, 0)}, "fill"),
    ({"fill": (0, 0, 256)}, "fill"),
    ({"jpeg_quality": 30}, "jpeg_quality"),
    ({"png_compress_level": 10}, "png_compress_level"),
])
def test_render_config_names_the_bad_field(options, field):
    with pytest.raises(ValueError, match=field):
        RenderConfig(**options)


@pytest.mark.parametrize(("frame", "error"), [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10), np.uint8), "HxWx3"),
    (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
])
def test_bad_frames_are_refused(frame, error):
    with pytest.raises(ValueError, match=error):
        Blurrer().blur_in_place(frame, np.array([[1.0, 1.0, 5.0, 5.0]]))


def test_read_only_frames_are_refused():
    frame = np.zeros((10, 10, 3), np.uint8)
    frame.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        Blurrer().blur_in_place(frame, np.array([[1.0, 1.0, 5.0, 5.0]]))
