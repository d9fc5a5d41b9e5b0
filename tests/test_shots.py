"""Shot cuts from frame signatures: the real signature of real photos, and synthetic sequences."""

from __future__ import annotations

import numpy as np
import pytest
from decisions_helpers import build_results
from PIL import Image

from handler.signature import frame_signature
from postprocess.shots import CutDetector, confirm_cuts, detect_cuts, shot_ids, shot_ranges, signature_distances


def pan(image: np.ndarray, steps: int, step: int = 4) -> list[np.ndarray]:
    """``steps`` frames of a slow pan across a real photo (a crop moving ``step`` pixels a frame)."""
    h, w = image.shape[:2]
    ch, cw = int(h * 0.8), int(w * 0.8)
    return [image[(h - ch) // 2:(h - ch) // 2 + ch, x:x + cw] for x in range(0, steps * step, step)]


def test_cut_between_two_real_photos_and_no_cut_while_panning(faces_dir):
    a = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB"))
    b = np.asarray(Image.open(faces_dir / "kit_with_rose.jpg").convert("RGB"))
    frames = pan(a, 12) + pan(b, 12)
    shots = shot_ids([frame_signature(f) for f in frames])
    assert shots.tolist() == [0] * 12 + [1] * 12


@pytest.mark.parametrize("cuts", [[], [10], [1, 25], [5, 6, 30]])
def test_shot_ids_change_exactly_at_the_cuts(cuts):
    results = build_results([], 40, cuts=cuts)
    shots = shot_ids([results[f].signature for f in range(40)])
    assert np.flatnonzero(np.diff(shots)).tolist() == [c - 1 for c in cuts]
    ranges = shot_ranges(np.arange(40), shots)
    assert ranges[:, 0].tolist() == [0, *cuts] and ranges[-1, 1] == 39


def test_a_frame_without_signature_never_starts_a_shot():
    results = build_results([], 20, cuts=[10])
    sigs = [results[f].signature for f in range(20)]
    sigs[10] = np.zeros(0, np.float32)  # the first frame of shot 2 has no signature
    shots = shot_ids(sigs)
    assert np.flatnonzero(np.diff(shots)).tolist() == [10], "the cut moves to the next frame with one"


def test_cut_between_similar_shots_is_found_by_the_spike_rule():
    d = np.full(60, 0.02, np.float32)
    d[30] = 0.3  # below the absolute threshold, far above the motion around it
    assert np.flatnonzero(detect_cuts(d, threshold=0.5, spike_ratio=4.0)).tolist() == [30]
    assert not detect_cuts(d, threshold=0.5, spike_ratio=0).any()


def test_steady_fast_motion_is_not_a_cut():
    d = np.full(60, 0.3, np.float32)  # a fast pan: every frame changes as much
    assert not detect_cuts(d, threshold=0.5).any()


def test_distances_accept_a_stacked_array():
    sigs = np.eye(4, dtype=np.float32)
    assert signature_distances(sigs).tolist() == [0, 2, 2, 2]


@pytest.mark.parametrize("spike_ratio", [0.0, 4.0])
def test_streaming_cut_detector_agrees_with_the_batch_one(spike_ratio):
    rng = np.random.default_rng(1)
    results = build_results([], 300, cuts=[40, 41, 90, 200, 290])
    sigs = [results[f].signature for f in range(300)]
    for f in rng.choice(300, 20, replace=False):  # some frames without signature
        sigs[f] = np.zeros(0, np.float32)
    sigs[150] = 0.6 * sigs[149] + 0.4 * sigs[200]  # a softer cut, found by the spike rule
    detector = CutDetector(spike_ratio=spike_ratio)
    streamed = []
    for k, s in enumerate(sigs):
        streamed += detector.push(s)
        assert len(streamed) >= k + 1 - detector.half
    streamed += detector.flush()
    batch = confirm_cuts(detect_cuts(signature_distances(sigs), spike_ratio=spike_ratio), sigs)
    assert streamed == batch.tolist()
    assert batch.sum() >= 4


@pytest.mark.parametrize("length", [1, 2])
def test_a_camera_flash_starts_no_shot_but_a_real_cut_does(faces_dir, length):
    """A press photographer's flash: one or two overexposed frames, then the same picture again. It
    is no cut (a cut would end every face sequence there, and a face missed on the flash frame would
    show); a real cut two frames later still is one. Batch and streaming agree."""
    a = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB"))
    b = np.asarray(Image.open(faces_dir / "kit_with_rose.jpg").convert("RGB"))
    frames = pan(a, 12) + pan(b, 12)
    for k in range(length):
        frames[5 + k] = np.clip(frames[5 + k].astype(np.int32) * 3 + 60, 0, 255).astype(np.uint8)
    sigs = [frame_signature(f) for f in frames]
    assert detect_cuts(signature_distances(sigs))[5], "the flash looks like a cut frame to frame"
    shots = shot_ids(sigs)
    assert shots.tolist() == [0] * 12 + [1] * 12
    detector = CutDetector()
    streamed = [d for s in sigs for d in detector.push(s)] + detector.flush()
    assert np.flatnonzero(streamed).tolist() == [12]
