"""Faces found from time (issue 14): the detector emits low-score candidates, post-processing keeps
the sequences that persist like faces do and drops the flicker.

The video tests run ``face-blur run`` on clips made from the shared photos, degraded as a camera in
poor light does (gamma darker, sensor noise, JPEG, then H.264), and check the blurred output and the
plan. Each clip first checks, on its decoded frames with the real detector, that it shows what the
test is about (a dim face scoring 0.05-0.2, flickering candidates, a face cut by the border), so a
test cannot pass because its clip lost the difficulty.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from video_helpers import ClipSpec, detail, face_patch, make_clip, paste, read_frames

from contract import FrameFaces
from contract.boxes import iou_matrix
from faceblur.cli import main
from handler.detector import DetectorConfig
from handler.detector_factory import create_detector
from postprocess.confirm import (
    ConfirmRule,
    confirm,
    confirm_tracks,
    evidence,
    plausible_landmarks,
    signature_brightness,
)
from postprocess.plan import Plan
from postprocess.tracking import FaceLinker, FaceTrack

CPU = ["CPUExecutionProvider"]
SIZE = (640, 360)
RUN = ["--detector", "centerface", "--embedder", "none", "--no-progress"]

# ---------------------------------------------------------------------------------------------- the rule


def _track(scores, frames=None, boxes=None, jitter: float = 0.0, seed: int = 0) -> FaceTrack:
    """A sequence of detections: a 30 px face drifting right, optionally jittering."""
    scores = np.asarray(scores, np.float32)
    m = len(scores)
    frames = np.arange(1, m + 1) if frames is None else np.asarray(frames)
    rng = np.random.default_rng(seed)
    if boxes is None:
        x = 100 + 2.0 * (frames - frames[0]) + jitter * 30 * rng.standard_normal(m)
        size = 30 * np.exp(jitter * rng.standard_normal(m))
        boxes = np.stack([x, np.full(m, 80.0), x + size, 80 + 1.2 * size], axis=1)
    boxes = np.asarray(boxes, np.float32)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    landmarks = boxes[:, None, :2] + rel[None] * np.stack([w, h], axis=1)[:, None, :]
    return FaceTrack(0, 0, frames, boxes, scores, landmarks, np.zeros((m, 0)))


@pytest.mark.parametrize("scores, face, why", [
    ([0.9], True, "confident detection"),  # one confident frame is blurred, as before candidates
    ([0.35, 0.4, 0.32], True, "detections scoring >= face_score"),
    (np.linspace(0.05, 0.2, 40), True, "confirmed over time"),  # the dim face
    ([0.12], False, "min_candidates"),
    ([0.1, 0.15, 0.2], False, "min_candidates"),  # a 3-frame flicker
    ([0.04] * 30, False, "min_mean_score"),  # persistent but weak: texture, not a face
])
def test_rule_on_scores(scores, face, why):
    ok, reason = confirm(_track(scores))
    assert ok is face and why in reason


def test_scattered_candidates_are_not_a_face():
    """Six candidates spread over 30 frames (linked through gaps) flicker, they do not persist."""
    t = _track([0.15] * 6, frames=[1, 6, 12, 17, 23, 30])
    ok, reason = confirm(t)
    assert not ok and "density" in reason
    assert confirm(t, ConfirmRule(min_density=0.1))[0]  # the knob decides


def test_a_jumping_box_is_not_a_face():
    ok, reason = confirm(_track([0.15] * 12, jitter=0.8))
    assert not ok and "jitter" in reason
    assert confirm(_track([0.15] * 12, jitter=0.02))[0]


def test_landmarks_out_of_place_count_against_a_sequence():
    t = _track([0.15] * 10)
    flipped = t.landmarks.copy()
    flipped[:, :, 1] = t.xyxy[:, None, 1] + t.xyxy[:, None, 3] - t.landmarks[:, :, 1]  # mouth above the eyes
    bad = FaceTrack(0, 0, t.frames, t.xyxy, t.confidence, flipped, t.embeddings)
    assert plausible_landmarks(t.xyxy, t.landmarks).all() and not plausible_landmarks(bad.xyxy, flipped).any()
    ok, reason = confirm(bad)
    assert not ok and "landmarks" in reason


def test_evidence_ignores_filled_rows_and_split_keeps_the_reason():
    t = _track(np.full(8, 0.15))
    t.interpolated[2:4] = True
    ev = evidence(t)
    assert ev.detections == 6 and ev.span == 8 and ev.density == pytest.approx(0.75)
    faces, rejected = confirm_tracks([t, _track([0.1])])
    assert faces == [t] and len(rejected) == 1 and "not a face" in rejected[0][1]


def test_candidates_are_confirmed_in_any_light_by_default_and_only_in_dim_frames_with_the_light_rule(faces_dir):
    """The brightness comes from the frame signature the handler sends: a lit photo reads bright,
    the same photo in poor light dim. By default persistent candidates count in both (recall
    first); with ``dim_below`` 0.3 in the dim one only, one confident detection in both, and
    without a signature (unknown) they count."""
    from handler.signature import frame_signature

    photo = np.asarray(Image.open(faces_dir / "two_people.jpg").convert("RGB").resize(SIZE))
    lit = signature_brightness(frame_signature(photo))
    dark = signature_brightness(frame_signature(_camera(photo, np.random.default_rng(0), gain=0.2)))
    rule = ConfirmRule(dim_below=0.3)
    assert dark < rule.dim_below <= lit, (dark, lit)
    dim_face = _track(np.linspace(0.05, 0.2, 40))
    assert confirm(dim_face, brightness=lit)[0] and confirm(dim_face, brightness=dark)[0]  # the default
    assert confirm(dim_face, rule, brightness=dark)[0]
    ok, reason = confirm(dim_face, rule, brightness=lit)
    assert not ok and "frames lit" in reason
    assert confirm(dim_face, rule)[0] and np.isnan(signature_brightness(np.zeros(0)))
    assert confirm(_track([0.9]), rule, brightness=lit)[0]  # one confident frame, lit or not
    assert confirm(dim_face, ConfirmRule(dim_below=0.3, lit_below_size=40.0), brightness=lit)[0]  # under 40 px


@pytest.mark.parametrize("change", [{"min_candidates": 0}, {"min_density": 1.5}, {"max_jitter": 0.0},
                                    {"dim_below": 2.0}, {"lit_below_size": -1.0}])
def test_rule_validation(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        ConfirmRule(**change)


def test_noise_next_to_a_confident_face_does_not_take_its_sequence():
    """A face detected at 0.9, missed on frames 5 and 9, where a noise candidate overlaps it
    partly: the face stays one sequence, and the noise is not part of it."""
    linker = FaceLinker(weak_score=0.3, weak_max_cost=0.3)
    face_ids, noise_ids = [], []
    for f in range(1, 15):
        x = 100 + 3 * f
        face = [x, 80, x + 40, 130]
        boxes, scores = [], []
        if f in (5, 9):
            boxes.append([x + 10, 90, x + 48, 136])  # noise: a box half on the face (cost 0.39)
            scores.append(0.06)
        else:
            boxes.append(face)
            scores.append(0.9)
        faces = FrameFaces(np.array(boxes, np.float32), np.array(scores, np.float32),
                           np.zeros((len(boxes), 5, 2), np.float32), np.zeros((len(boxes), 0)), frame_index=f)
        ids = linker.update(faces).track_id
        (noise_ids if f in (5, 9) else face_ids).append(int(ids[0]))
    assert len(set(face_ids)) == 1 and not set(noise_ids) & set(face_ids)
    # without the guard the noise takes the face's sequence on those frames
    plain = FaceLinker()
    for f in range(1, 7):
        x = 100 + 3 * f
        box = [x + 10, 90, x + 48, 136] if f == 5 else [x, 80, x + 40, 130]
        ids = plain.update(FrameFaces(np.array([box], np.float32), np.array([0.06 if f == 5 else 0.9], np.float32),
                                    np.zeros((1, 5, 2), np.float32), np.zeros((1, 0)), frame_index=f)).track_id
        if f == 1:
            first = int(ids[0])
        if f == 5:
            assert int(ids[0]) == first


def test_dim_candidates_still_link_into_one_sequence():
    """A sequence of candidates only (nothing confident) links at the normal cost: a dim face moving
    at 4 px a frame stays one sequence."""
    linker = FaceLinker(weak_score=0.3, weak_max_cost=0.3)
    ids = set()
    for f in range(1, 30):
        x = 100 + 4 * f
        faces = FrameFaces(np.array([[x, 80, x + 28, 114]], np.float32), np.array([0.1], np.float32),
                           np.zeros((1, 5, 2), np.float32), np.zeros((1, 0)), frame_index=f)
        ids |= set(linker.update(faces).track_id.tolist())
    assert len(ids) == 1


# ---------------------------------------------------------------------------------------------- video

def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    low = rng.integers(0, 255, (h // 10, w // 10, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC))


def _camera(frame: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """What a camera makes of a scene in poor light: gamma 1.4 darker (times ``gain``), sensor noise
    sigma 4, JPEG q50 (the clip is then encoded as H.264 too)."""
    x = 255.0 * (frame / 255.0) ** 1.4 * gain + rng.normal(0, 4, frame.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=50)
    return np.asarray(Image.open(buf).convert("RGB"))


def _cartoon(size: int) -> np.ndarray:
    """A drawn oval with two eyes, a nose and a mouth: no person, but CenterFace gives it a
    candidate score (0.03-0.3 at 20-32 px, blended at 58% into the scene)."""
    im = Image.new("RGB", (size, int(size * 1.3)), (60, 60, 60))
    d = ImageDraw.Draw(im)
    w, h = im.size
    d.ellipse((0, 0, w - 1, h - 1), fill=(200, 160, 130))
    d.ellipse((w * 0.22, h * 0.33, w * 0.4, h * 0.45), fill=(40, 30, 30))
    d.ellipse((w * 0.6, h * 0.33, w * 0.78, h * 0.45), fill=(40, 30, 30))
    d.line((w * 0.5, h * 0.45, w * 0.45, h * 0.62), fill=(120, 80, 70), width=2)
    d.line((w * 0.33, h * 0.75, w * 0.67, h * 0.75), fill=(120, 50, 50), width=3)
    return np.asarray(im.filter(ImageFilter.GaussianBlur(1)))


def _covered(plan: Plan, frame: int, box) -> bool:
    """A blur box of the plan covers most of ``box`` in this frame."""
    boxes = plan.boxes(frame)
    if not len(boxes):
        return False
    x1, y1, x2, y2 = box
    ix = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
    return bool((ix * iy / max((x2 - x1) * (y2 - y1), 1e-6)).max() >= 0.6)


def _run(tmp_path: Path, frames: list[np.ndarray], *options: str) -> tuple[list[np.ndarray], list[np.ndarray], Plan]:
    """Encode ``frames``, run ``face-blur run`` on the clip; (decoded input, output frames, plan)."""
    src = make_clip(tmp_path / "clip.mp4", ClipSpec(width=SIZE[0], height=SIZE[1], frames=len(frames)),
                    lambda i: frames[i])
    plan_path = tmp_path / "plan.json"
    out = tmp_path / "out.mp4"
    assert main(["run", str(src), "-o", str(out), "--plan", str(plan_path), *RUN, *options]) == 0
    return read_frames(src), read_frames(out), Plan.from_dict(json.loads(plan_path.read_text()))


@pytest.fixture(scope="module")
def candidates():
    """The default detector with candidates down to 0.02: what a face scores on a frame."""
    det = create_detector(DetectorConfig(candidate_threshold=0.02), None, CPU)

    def best(frame: np.ndarray, box) -> float:
        faces = det.detect(frame)
        if not len(faces):
            return 0.0
        iou = iou_matrix(faces.xyxy, np.array([box], np.float32))[:, 0]
        return float(faces.confidence[iou >= 0.4].max(initial=0.0))

    return best


@pytest.mark.parametrize("seed", [1, 5, 7])
def test_a_dim_face_scoring_005_to_02_for_40_frames_is_blurred_on_every_frame(tmp_path, faces_dir, candidates, seed,
                                                                               caplog):
    """Three draws of noise and background (adaptive analysis left 27 frames of draw 5 clear before
    the interval was held for low candidates; bench/dim_face_seeds.py runs 8)."""
    caplog.set_level(logging.INFO, logger="faceblur")
    rng = np.random.default_rng(seed)
    bg = _background(seed)
    patch, box = face_patch(faces_dir, "obama", 22)
    frames, truth = [], []
    for i in range(40):
        frame = bg.copy()
        truth.append(paste(frame, patch, box, 200 + 2 * i, 150 + i % 5))
        frames.append(_camera(frame, rng, gain=0.11))
    decoded, out, plan = _run(tmp_path, frames)
    scores = np.array([candidates(f, t) for f, t in zip(decoded, truth, strict=True)])
    # the clip is what the test is about: a visible face that a per-frame threshold of 0.3 loses
    assert 0.05 <= np.median(scores) <= 0.2 and (scores >= 0.3).mean() <= 0.2, np.round(scores, 2)
    for i, (src, got, t) in enumerate(zip(decoded, out, truth, strict=True), start=1):
        assert _covered(plan, i, t), f"frame {i}: the dim face is not in the plan's blur boxes"
        assert detail(got, t) < 0.6 * detail(src, t), f"frame {i}: the dim face is not blurred"
    faces = [s for s in plan.sequences if s.decision == "blur"]
    assert any("a face:" in s.reason for s in faces)
    # the summary says which analyses came early for a low candidate whose evidence was in question
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("analysis adaptive:"))
    assert " held " in line, line


def test_flickering_candidates_are_not_blurred(tmp_path, candidates):
    """Drawn faces flash for 1-3 frames at scattered places: candidates, never a sequence that
    persists. None is blurred; each is in the plan as dropped, with the reason."""
    rng = np.random.default_rng(2)
    bg = _background(2)
    place = np.random.default_rng(7)
    flashes = []  # (first frame index, frames, box)
    for k in range(10):
        size = int(place.integers(20, 33))
        x, y = int(place.integers(10, SIZE[0] - 50)), int(place.integers(10, SIZE[1] - 60))
        flashes.append((3 * k + int(place.integers(0, 2)), 1 + k % 3, (x, y, size)))
    frames, boxes = [], {}
    for i in range(34):
        frame = bg.copy()
        for start, n, (x, y, size) in flashes:
            if start <= i < start + n:
                c = _cartoon(size)
                region = frame[y:y + c.shape[0], x:x + c.shape[1]].astype(np.float32)
                frame[y:y + c.shape[0], x:x + c.shape[1]] = (0.58 * c + 0.42 * region).astype(np.uint8)
                boxes.setdefault(i, []).append((x, y, x + c.shape[1], y + c.shape[0]))
        frames.append(_camera(frame, rng))
    decoded, out, plan = _run(tmp_path, frames)
    seen = [candidates(decoded[i], b) for i, bs in boxes.items() for b in bs]
    # candidates on most flashes, none reaching the confident score (0.3)
    assert sum(s >= 0.05 for s in seen) >= 8 and max(seen) < 0.3, np.round(seen, 2)
    # adaptive analysis (the default) looks at some of the flashes' frames only: every frame, so
    # that every flash reaches the plan
    (tmp_path / "every").mkdir()
    _, every_out, every = _run(tmp_path / "every", frames, "--analysis", "every")
    assert every.summary["dropped"] >= 5 and every.summary["blurred"] == 0
    for p in (plan, every):
        assert p.summary["blurred"] == 0 and all("not a face" in s.reason for s in p.sequences)
    for i, bs in boxes.items():
        for b in bs:  # re-encoding a noisy clip softens it a little; a blur takes most detail away
            for got in (out, every_out):
                assert detail(got[i], b) > 0.8 * detail(decoded[i], b), f"frame {i + 1}: a flicker was blurred"


def test_a_face_cut_by_the_frame_border_is_blurred(tmp_path, faces_dir):
    """A face enters from the right edge: 25% of it visible at first, whole at the end."""
    bg = _background(3)
    rng = np.random.default_rng(3)
    patch, box = face_patch(faces_dir, "rose_leslie", 110)
    fw = box[2] - box[0]
    frames, truth = [], []
    for i in range(24):
        visible = 0.25 + 0.75 * i / 23
        frame = bg.copy()
        truth.append(paste(frame, patch, box, int(SIZE[0] - box[0] - visible * fw), 100))
        frames.append(_camera(frame, rng, gain=1.0))
    decoded, out, plan = _run(tmp_path, frames)
    for i, (src, got, t) in enumerate(zip(decoded, out, truth, strict=True), start=1):
        assert _covered(plan, i, t), f"frame {i}: the cut face is not in the plan's blur boxes"
        assert detail(got, t) < 0.6 * detail(src, t), f"frame {i}: the cut face is not blurred"


def test_one_confident_frame_is_blurred(tmp_path, faces_dir):
    bg = _background(4)
    patch, box = face_patch(faces_dir, "biden", 80)
    frames = [bg.copy() for _ in range(12)]
    truth = paste(frames[6], patch, box, 300, 90)
    decoded, out, plan = _run(tmp_path, frames)
    assert _covered(plan, 7, truth)
    assert detail(out[6], truth) < 0.5 * detail(decoded[6], truth)
    (face,) = [s for s in plan.sequences if s.decision == "blur"]
    assert "confident detection" in face.reason


def test_the_rule_a_plan_confirms_with_is_the_rule_of_its_options():
    """``PlanConfig`` (what a user sets and the plan records) and ``ConfirmRule`` share their
    defaults, and a changed option reaches the rule."""
    from postprocess.config import PlanConfig

    assert ConfirmRule.of(PlanConfig()) == ConfirmRule()
    assert ConfirmRule.of(PlanConfig(min_candidates=9, face_score=0.4)) == ConfirmRule(min_candidates=9, face_score=0.4)
