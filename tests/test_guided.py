"""The guided fine pass (handler/guided.py, README "Detection"): on a 640x360 frame the enlarged
pass runs only on crops around a 1.0x guide's responses, and finds the small faces the whole
enlarged pass finds, with the same boxes and scores; the crop logic is pure and checked here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_rgb

from bench.detection_set import Sample, resize_long, small_faces
from contract import FrameFaces
from contract.boxes import iou_matrix
from handler.detector import DetectorConfig, FrameDetector
from handler.detector_factory import create_detector
from handler.guided import crop_rects, detect_in_rects, guided_by, merge_rects, rect_fraction

CPU = ["CPUExecutionProvider"]


# -- the crop logic ------------------------------------------------------------------------------------

def test_a_crop_holds_its_box_with_margin_on_the_stride_grid():
    # a 20 px face at (100, 100) in frame pixels, fine image 1.5x of a 640x360 frame (960x540)
    rects = crop_rects(np.array([[100, 100, 120, 120]]), 1.5, 960, 540, margin=1.0, min_margin=32)
    assert rects.shape == (1, 4)
    x0, y0, x1, y1 = rects[0]
    assert x0 % 32 == 0 and y0 % 32 == 0 and x1 % 32 == 0 and y1 % 32 == 0
    assert x0 <= 150 - 32 and y0 <= 150 - 32 and x1 >= 180 + 32 and y1 >= 180 + 32  # 30 px margin -> 32
    assert x1 - x0 <= 30 + 2 * 32 + 2 * 31 and y1 - y0 <= 30 + 2 * 32 + 2 * 31  # no more than the grid adds


def test_crops_are_clipped_to_the_image_and_end_at_its_edge():
    rects = crop_rects(np.array([[600, 330, 640, 360], [-20, -10, 10, 20]]), 1.5, 960, 540)
    assert rects[:, 0].min() >= 0 and rects[:, 1].min() >= 0
    assert rects[0, 2] == 960 and rects[0, 3] == 540  # the frame's own edge, not the grid's
    assert crop_rects(np.zeros((0, 4)), 1.5, 960, 540).shape == (0, 4)
    with pytest.raises(ValueError, match="scale"):
        crop_rects(np.zeros((0, 4)), 0, 960, 540)


def test_overlapping_crops_merge_and_distant_ones_stay_apart():
    a, b, far = [0, 0, 128, 128], [96, 64, 224, 192], [640, 320, 768, 448]
    merged = merge_rects(np.array([a, b, far]))
    assert sorted(map(tuple, merged.tolist())) == [(0, 0, 224, 192), (640, 320, 768, 448)]
    # two neighbours whose bounding rectangle costs no more than running both become one
    near = merge_rects(np.array([[0, 0, 64, 64], [64, 0, 128, 64]]))
    assert near.tolist() == [[0, 0, 128, 64]]
    assert merge_rects(np.zeros((0, 4))).shape == (0, 4)


def test_the_crop_share_counts_padded_pixels_of_the_whole_image():
    assert rect_fraction(np.array([[0, 0, 960, 540]]), 960, 540) == pytest.approx(1.0)
    assert rect_fraction(np.array([[0, 0, 480, 544]]), 960, 540) == pytest.approx(0.5)
    assert rect_fraction(np.zeros((0, 4)), 960, 540) == 0


def test_faces_found_on_crops_come_back_in_the_image_pixels():
    def detect_at(crop, min_face):  # one face in the middle of every crop
        h, w = crop.shape[:2]
        box = np.array([[w / 2 - 5, h / 2 - 5, w / 2 + 5, h / 2 + 5]], np.float32)
        return FrameFaces(box, np.array([0.9], np.float32), np.zeros((1, 5, 2), np.float32) + [w / 2, h / 2],
                          np.zeros((1, 0), np.float32))

    image = np.zeros((540, 960, 3), np.uint8)
    faces = detect_in_rects(detect_at, image, np.array([[64, 32, 128, 96], [320, 320, 384, 416]]), 24, 0.3)
    assert faces.xyxy.round().tolist() == [[91, 59, 101, 69], [347, 363, 357, 373]]
    assert faces.landmarks[1, 0].tolist() == [352, 368]


def test_only_faces_over_a_guiding_box_count():
    """Texture at a crop's inner edge, which the network sees as a frame border, is not a face the
    guide pointed at."""
    guiding = np.array([[100, 100, 124, 124]])
    found = np.array([[98, 101, 122, 126], [150, 100, 160, 110], [123, 123, 140, 140]])
    assert guided_by(found, guiding).tolist() == [True, False, True]
    assert guided_by(found, np.zeros((0, 4))).tolist() == [False, False, False]


# -- on a real photo -----------------------------------------------------------------------------------

class Recording:
    """A real backend that also records the size of every image it is given."""

    def __init__(self, backend):
        self.backend, self.name, self.native_min_face = backend, backend.name, backend.native_min_face
        self.options = backend.options
        self.shapes: list[tuple[int, ...]] = []

    def detect_at(self, image, min_face):
        self.shapes.append(image.shape)
        return self.backend.detect_at(image, min_face)


@pytest.fixture(scope="module")
def small_frame(faces_dir) -> np.ndarray:
    """obama_and_biden.jpg shrunk so that its faces are 16 px across, in a 640x360 frame."""
    image = resize_long(load_rgb(faces_dir / "two_people.jpg"), 640)
    whole = create_detector(DetectorConfig(guide_threshold=0), None, CPU)
    faces = whole.detect(image)
    faces = faces[faces.confidence >= 0.5]
    return small_faces(Sample("two_people.jpg", image, faces.xyxy), 16.0).image


def test_the_guided_pass_finds_a_small_face_exactly_as_the_whole_enlarged_pass(small_frame):
    guided = create_detector(DetectorConfig(guide_threshold=0.05), None, CPU)
    whole = create_detector(DetectorConfig(guide_threshold=0), None, CPU)
    assert guided.guided(360, 640) and not whole.guided(360, 640)
    reference = whole.detect(small_frame)
    faces = reference[reference.confidence >= 0.3]
    assert len(faces) >= 2, "the whole enlarged pass should find the photo's 16 px faces"
    assert float((faces.xyxy[:, 2] - faces.xyxy[:, 0]).max()) < 24
    found = guided.detect(small_frame)
    overlap = iou_matrix(faces.xyxy, found.xyxy)
    best = overlap.argmax(axis=1)
    assert np.all(overlap.max(axis=1) >= 0.95), (faces.xyxy.round(), found.xyxy.round())
    assert np.allclose(found.confidence[best], faces.confidence, atol=0.03)  # context beyond the crop: 0.01-0.02
    assert np.allclose(found.landmarks[best], faces.landmarks, atol=1.0)


def test_the_guided_pass_runs_the_enlarged_pass_on_crops_only(small_frame):
    base = create_detector(DetectorConfig(guide_threshold=0.05), None, CPU)
    recorder = Recording(base.backend)
    detector = FrameDetector(recorder, 16, 1920, guide=base.guide, guide_threshold=base.guide_threshold)
    detector.detect(small_frame)
    assert recorder.shapes, "the guide found nothing to look at"
    pixels = sum(s[0] * s[1] for s in recorder.shapes)
    assert pixels < 0.5 * 960 * 540  # two small faces: a small part of the enlarged frame
    # without a guide response the whole enlarged pass is skipped; the caller's hints still count
    empty = np.full((360, 640, 3), 128, np.uint8)
    recorder.shapes.clear()
    assert len(detector.detect(empty)) == 0 and recorder.shapes == []
    hint = FrameFaces(np.array([[300, 160, 320, 180]], np.float32), np.array([0.5], np.float32),
                      np.zeros((1, 5, 2), np.float32), np.zeros((1, 0), np.float32))
    detector.detect(empty, hints=hint)
    assert len(recorder.shapes) == 1 and recorder.shapes[0][0] < 540


def test_guide_threshold_is_range_checked():
    with pytest.raises(ValueError, match="guide_threshold"):
        DetectorConfig(guide_threshold=1.0)
    with pytest.raises(ValueError, match="guide_threshold"):
        DetectorConfig(guide_threshold=-0.1)
    assert DetectorConfig(guide_threshold=0).guide_threshold == 0
