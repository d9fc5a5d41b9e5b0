"""Filling gaps, dropping false positives, smoothing and anti-flicker padding."""

from __future__ import annotations

import numpy as np
import pytest
from decisions_helpers import Appearance, box_at, build_results, people

from postprocess.config import PlanConfig
from postprocess.filtering import filter_tracks, is_false_positive
from postprocess.interpolate import interpolate_gaps, pad_track
from postprocess.plan import make_plan
from postprocess.smoothing import smooth_boxes, smooth_track
from postprocess.tracking import FaceTrack


def track(frames, boxes, confidence=0.9, dim=0):
    frames = np.asarray(frames)
    m = len(frames)
    return FaceTrack(3, 0, frames, np.asarray(boxes, np.float32).reshape(m, 4), np.full(m, confidence),
                     np.zeros((m, 5, 2)), np.ones((m, dim)))


def contains(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    return (outer[:, 0] <= inner[:, 0]) & (outer[:, 1] <= inner[:, 1]) & \
        (outer[:, 2] >= inner[:, 2]) & (outer[:, 3] >= inner[:, 3])


@pytest.mark.parametrize("method", ["pchip", "linear"])
def test_every_frame_inside_a_sequence_gets_a_box(method):
    frames = [0, 1, 2, 8, 9, 10]
    boxes = [box_at(100 + 10 * f, 100, 50) for f in frames]
    out = interpolate_gaps(track(frames, boxes, dim=8), method)
    assert out.frames.tolist() == list(range(11))
    assert out.interpolated.tolist() == [f not in frames for f in range(11)]
    assert np.allclose(out.xyxy[frames], boxes), "detections stay as found"
    # steady motion: the filled boxes continue it
    assert np.allclose(out.xyxy[5], box_at(150, 100, 50), atol=0.5)
    assert np.all(out.embeddings[~out.detected] == 0) and np.all(out.confidence[~out.detected] == 0)


def test_pchip_does_not_overshoot_between_detections():
    frames = [0, 1, 2, 10, 11, 12]
    xs = [100, 100, 100, 200, 200, 200]
    out = interpolate_gaps(track(frames, [box_at(x, 100, 40) for x in xs]), "pchip")
    centres = (out.xyxy[:, 0] + out.xyxy[:, 2]) / 2
    assert centres.min() >= 100 - 1e-3 and centres.max() <= 200 + 1e-3
    assert np.all(np.diff(centres) >= -1e-4)


def test_unknown_interpolation_is_refused():
    with pytest.raises(ValueError, match="pchip"):
        interpolate_gaps(track([0, 2], [box_at(1, 1, 1)] * 2), "cubic")


@pytest.mark.parametrize("window", [1, 3, 5, 9])
def test_smoothing_never_shrinks_below_the_raw_box(window):
    rng = np.random.default_rng(window)
    raw = np.stack([box_at(200 + 3 * f + rng.normal(0, 4), 150 + rng.normal(0, 4), 60 + rng.normal(0, 5))
                    for f in range(50)])
    smooth = smooth_boxes(raw, window)
    assert contains(smooth, raw).all()


def test_smoothing_removes_jitter_and_keeps_the_motion():
    rng = np.random.default_rng(0)
    truth = np.stack([box_at(200 + 3 * f, 150, 60) for f in range(60)])
    raw = truth + rng.normal(0, 4, truth.shape).astype(np.float32)
    smooth = smooth_boxes(raw, 7)
    centre = (smooth[:, :2] + smooth[:, 2:]) / 2
    raw_centre = (raw[:, :2] + raw[:, 2:]) / 2
    assert np.std(np.diff(centre[:, 1])) < np.std(np.diff(raw_centre[:, 1])) / 2
    width, raw_width = smooth[:, 2] - smooth[:, 0], raw[:, 2] - raw[:, 0]
    assert np.std(np.diff(width)) < np.std(np.diff(raw_width)) / 2
    assert np.median(width / raw_width) < 1.5, "the cover is not much larger than the face"
    assert abs((centre[-1, 0] - centre[0, 0]) - 3 * 59) < 20, "the overall motion is kept"


def test_smoothing_needs_a_gap_free_track():
    with pytest.raises(ValueError, match="interpolate"):
        smooth_track(track([0, 3], [box_at(10, 10, 5)] * 2))


@pytest.mark.parametrize(("first", "last", "shot", "before", "after"), [
    (10, 20, (0, 100), 3, 3),
    (1, 20, (0, 100), 1, 3),    # clamped to the shot start
    (10, 98, (0, 99), 3, 1),    # clamped to the shot end
    (10, 20, (10, 20), 0, 0),   # the sequence fills its shot
])
def test_padding_extends_both_ends_within_the_shot(first, last, shot, before, after):
    frames = np.arange(first, last + 1)
    out = pad_track(track(frames, [box_at(100, 100, 40)] * len(frames)), 3, *shot, growth=0.1)
    assert out.first == first - before and out.last == last + after
    assert out.padded.sum() == before + after
    assert contains(out.xyxy[out.padded], np.repeat(box_at(100, 100, 40)[None], before + after, 0)).all()


@pytest.mark.parametrize(("detections", "score", "dropped"), [
    (2, 0.45, True),    # a weak two-frame detection: a false positive
    (1, 0.3, True),
    (2, 0.95, False),   # privacy first: a confident face seen for two frames is blurred
    (3, 0.45, False),   # long enough
    (10, 0.3, False),
])
def test_short_weak_sequences_are_dropped_short_confident_ones_kept(detections, score, dropped):
    t = track(np.arange(detections), [box_at(50, 50, 20)] * detections, confidence=score)
    assert is_false_positive(t, min_length=3, keep_score=0.6) is dropped
    kept, gone = filter_tracks([t], min_length=3, keep_score=0.6)
    assert (len(gone), len(kept)) == ((1, 0) if dropped else (0, 1))


def test_a_two_frame_false_positive_is_not_blurred():
    (a,) = people(1, seed=2)
    fp = Appearance(a, [10, 11], lambda f: box_at(500, 60, 20), score=0.45)
    face = Appearance(a, range(0, 40), lambda f: box_at(200, 180, 70))
    plan = make_plan(build_results([fp, face], 40), PlanConfig())
    assert all(len(plan.boxes(f)) == 1 for f in range(40))
    assert plan.summary["dropped"] == 1


def test_a_face_the_detector_misses_in_single_frames_is_blurred_in_every_frame():
    (a,) = people(1, seed=3)
    frames = range(20, 80)
    app = Appearance(a, frames, lambda f: box_at(150 + 2 * f, 180, 60), missed={25, 31, 40, 41, 57, 70, 78})
    config = PlanConfig(pad_frames=5)
    plan = make_plan(build_results([app], 100), config)
    for f in range(15, 85):  # every frame of the face, plus the padding at both ends
        boxes = plan.boxes(f)
        assert len(boxes) == 1, f"frame {f} has {len(boxes)} boxes"
        truth = app.path(min(max(f, 20), 79))[None]
        assert contains(boxes, truth).all(), f"frame {f}: the face is not fully covered"
    assert len(plan.boxes(14)) == 0 and len(plan.boxes(85)) == 0


def test_steady_motion_is_followed_to_both_ends_without_lag():
    truth = np.stack([box_at(200 + 3 * f, 150 - f, 60 + 0.5 * f) for f in range(30)])
    assert np.allclose(smooth_boxes(truth, 9), truth, atol=1e-3)
