"""Is a sequence a face? Decided from its evidence over time, not frame by frame (issue 14).

The detector emits low-score *candidates* (``handler.detector.CANDIDATE_THRESHOLD``): on dim, noisy,
compressed video a visible face often scores 0.05-0.2 on every frame, well under any per-frame
threshold that keeps noise out, while most noise candidates flicker (1-3 frames, here and there).
Time separates them. A sequence is a face when any of these holds (first match gives the reason):

1. **one confident detection**: its best score reaches ``keep_score`` (one confident frame is
   blurred, as before candidates existed);
2. **confident detections**: at least ``min_length`` detections score ``face_score`` or more (the
   old per-frame rule: three detections above the old threshold);
3. **confirmed candidates**: the candidates persist like a face does: at least ``min_candidates``
   detections, mean score at least ``min_mean_score``, detected on at least ``min_density`` of the
   frames it spans (scattered flicker is not), a steady box (median step of centre and size between
   consecutive detections at most ``max_jitter`` face sizes per frame), and landmarks placed like a
   face's on at least ``min_plausible`` of its detections (eyes above the mouth, inside the box),
   and, with the light rule (``dim_below`` under 1.01; off by default), the median brightness of
   the frames it was detected on under ``dim_below`` (faces smaller than ``lit_below_size`` px are
   exempt: CenterFace scores a small face low even in light: a 12x16 px face in 1080p is found only
   as a low candidate).

The light rule, and why it is off by default: the low scores this rule is for come mostly from low
light and sensor noise (issue 14: a visible face at 0.05-0.2 on dim, noisy, compressed video), and
on the dev set every persistent low candidate in lit frames was texture (below); but a face in
light can score low too (turned away, in motion, in shade, small: the rule cost the 12 px face
until the size exception), and the dev set's faces are photos, mostly frontal. A face left
unblurred is the worst outcome, so candidates are confirmed in any light unless ``dim_below`` says
otherwise (0.3: less stray blur on lit texture). What persisted in lit frames at low scores was
texture on the dev set (a bicycle saddle, a dark sleeve, lace, a
picture frame, all steady, all with face-like CenterFace landmarks, mean scores 0.08-0.24), which
the other evidence cannot tell from a dim face. Brightness is the frame signature's (an HSV
histogram, ``handler/signature.py``): unknown (no signature) counts as dim, recall first.

Anything else is rejected, and stays in the plan as ``drop`` with :func:`confirm`'s reason, so a
reviewer can flip it to ``blur``. Pure numpy on :class:`~postprocess.tracking.FaceTrack`; embeddings
are not used (candidates under the pipeline's ``embed_min_score`` carry none, which is exactly where
the question arises).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from postprocess.config import PlanConfig
from postprocess.shots import HSV_BINS
from postprocess.tracking import FaceTrack


@dataclass(frozen=True)
class ConfirmRule:
    """The knobs of the rule above (README "Detection"; defaults chosen on the video dev set). The
    defaults are ``PlanConfig``'s, the options a user sets and the plan records, so they have one home."""

    keep_score: float = PlanConfig.short_keep_score
    face_score: float = PlanConfig.face_score
    min_length: int = PlanConfig.min_length
    min_candidates: int = PlanConfig.min_candidates
    min_mean_score: float = PlanConfig.min_mean_score
    min_density: float = PlanConfig.min_density
    max_jitter: float = PlanConfig.max_jitter
    min_plausible: float = PlanConfig.min_plausible
    dim_below: float = PlanConfig.dim_below
    lit_below_size: float = PlanConfig.lit_below_size

    @classmethod
    def of(cls, config: PlanConfig) -> ConfirmRule:
        """The rule a plan made with ``config`` confirms by."""
        return cls(keep_score=min(config.short_keep_score, 1.01), face_score=config.face_score,
                   min_length=config.min_length, min_candidates=config.min_candidates,
                   min_mean_score=config.min_mean_score, min_density=config.min_density,
                   max_jitter=config.max_jitter, min_plausible=config.min_plausible, dim_below=config.dim_below,
                   lit_below_size=config.lit_below_size)

    def __post_init__(self) -> None:
        for name in ("keep_score", "face_score", "min_mean_score", "min_density", "min_plausible", "dim_below"):
            value = getattr(self, name)
            if not 0 <= value <= 1.01:
                raise ValueError(f"ConfirmRule.{name} must be in [0, 1.01], got {value}")
        for name in ("min_length", "min_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConfirmRule.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lit_below_size >= 0:
            raise ValueError(f"ConfirmRule.lit_below_size must be >= 0, got {self.lit_below_size}")
        if not self.max_jitter > 0:
            raise ValueError(f"ConfirmRule.max_jitter must be > 0, got {self.max_jitter}")


@dataclass(frozen=True)
class Evidence:
    """What a sequence's detections say, over its whole length."""

    detections: int
    span: int  # frames first..last detection
    best: float
    confident: int  # detections scoring face_score or more
    mean_score: float
    density: float  # detections / span
    jitter: float  # median per-frame step of centre and size, in face sizes (0 with one detection)
    plausible: float  # share of detections with face-like landmarks
    size: float = 0.0  # median larger side of the detected boxes, pixels

    def describe(self) -> str:
        return (f"{self.detections} detections over {self.span} frames (density {self.density:.2f}), best score "
                f"{self.best:.2f}, mean {self.mean_score:.3f}, {self.confident} confident, jitter "
                f"{self.jitter:.2f}, landmarks plausible on {self.plausible:.0%}")


#: layout of the frame signature (``handler/signature.py``): one home, the shot detector's
SIGNATURE_BINS = HSV_BINS


def signature_brightness(signature: np.ndarray) -> float:
    """Mean brightness (HSV value, 0-1, from the value bins' centres) of a frame, from its
    signature; NaN when the signature is missing or of another layout. Coarse (4 bins: a black
    frame reads 0.125, a white one 0.875), enough to tell a dark scene from a lit one."""
    sig = np.asarray(signature, np.float64).reshape(-1)
    if sig.size != int(np.prod(SIGNATURE_BINS)) or not sig.sum() > 0:
        return float("nan")
    values = sig.reshape(SIGNATURE_BINS).sum(axis=(0, 1))
    centres = (np.arange(SIGNATURE_BINS[2]) + 0.5) / SIGNATURE_BINS[2]
    return float((values * centres).sum() / values.sum())


def plausible_landmarks(xyxy: np.ndarray, landmarks: np.ndarray, slack: float = 0.15) -> np.ndarray:
    """(m,) bool: the five points lie within the box grown by ``slack`` of its size, and both eyes
    lie above both mouth corners (a face up to about 90 degrees of roll). All-zero landmarks (a
    detector that gives none) count as plausible."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    points = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3)
    lo = boxes[:, None, :2] - slack * size[:, None, :]
    hi = boxes[:, None, 2:] + slack * size[:, None, :]
    inside = ((points >= lo) & (points <= hi)).all(axis=(1, 2))
    upright = points[:, :2, 1].max(axis=1) < points[:, 3:, 1].min(axis=1)
    none = ~points.reshape(len(points), -1).any(axis=1)
    return none | (inside & upright)


def evidence(track: FaceTrack, face_score: float = 0.3) -> Evidence:
    """The evidence of ``track``'s real detections (interpolated and padded rows are not evidence)."""
    det = track.detected
    frames = track.frames[det]
    score = track.confidence[det].astype(np.float64)
    boxes = track.xyxy[det].astype(np.float64)
    n = len(frames)
    if not n:
        return Evidence(0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0)
    span = int(frames[-1] - frames[0] + 1)
    jitter = 0.0
    if n > 1:
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = np.maximum((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 1.0)
        gap = np.diff(frames).astype(np.float64)
        mean_size = (size[1:] + size[:-1]) / 2
        moved = np.hypot(*np.diff(centre, axis=0).T) / mean_size
        grew = np.abs(np.diff(np.log(size)))
        jitter = float(np.median((moved + grew) / gap))
    plausible = float(plausible_landmarks(boxes, track.landmarks[det]).mean())
    side = float(np.median((boxes[:, 2:] - boxes[:, :2]).max(axis=1)))
    return Evidence(n, span, float(score.max()), int((score >= face_score).sum()), float(score.mean()),
                    n / span, jitter, plausible, side)


def confirm(track: FaceTrack, rule: ConfirmRule | None = None, unseen: int = 0,
            brightness: float = float("nan")) -> tuple[bool, str]:
    """(is a face, why) for one sequence by :class:`ConfirmRule` (see the module docstring).

    ``unseen``: frames inside the sequence that adaptive analysis did not analyse. They count as
    the detections they would have been had every frame been analysed (as confident ones where the
    sequence has a confident detection), so a face seen on few analysed frames is not rejected for
    the frames nobody looked at: recall first. ``brightness``: median brightness of the frames it was
    detected on (:func:`signature_brightness`; NaN: unknown, counts as dim)."""
    rule = rule or ConfirmRule()
    ev = evidence(track, rule.face_score)
    if unseen > 0 and ev.detections:
        n = ev.detections + int(unseen)
        ev = replace(ev, detections=n, density=min(1.0, n / max(ev.span, 1)),
                     confident=ev.confident + (int(unseen) if ev.confident else 0))
    if ev.best >= rule.keep_score:
        return True, f"a confident detection (score {ev.best:.2f} >= keep_score {rule.keep_score})"
    if ev.confident >= rule.min_length:
        return True, (f"{ev.confident} detections scoring >= face_score {rule.face_score} "
                      f"(>= min_length {rule.min_length})")
    failed = []
    if ev.detections < rule.min_candidates:
        failed.append(f"{ev.detections} detections < min_candidates {rule.min_candidates}")
    if ev.mean_score < rule.min_mean_score:
        failed.append(f"mean score {ev.mean_score:.3f} < min_mean_score {rule.min_mean_score}")
    if ev.density < rule.min_density:
        failed.append(f"density {ev.density:.2f} < min_density {rule.min_density}")
    if ev.jitter > rule.max_jitter:
        failed.append(f"jitter {ev.jitter:.2f} > max_jitter {rule.max_jitter}")
    if ev.plausible < rule.min_plausible:
        failed.append(f"landmarks plausible on {ev.plausible:.0%} < min_plausible {rule.min_plausible:.0%}")
    if np.isfinite(brightness) and brightness >= rule.dim_below and ev.size >= rule.lit_below_size:
        failed.append(f"frames lit (brightness {brightness:.2f} >= dim_below {rule.dim_below:g}: a visible face "
                      f"scores face_score there)")
    if not failed:
        return True, f"confirmed over time: {ev.describe()}"
    return False, f"not a face: {'; '.join(failed)} ({ev.describe()})"


def confirm_tracks(tracks: Sequence[FaceTrack], rule: ConfirmRule | None = None,
                   brightness: Sequence[float] | None = None
                   ) -> tuple[list[FaceTrack], list[tuple[FaceTrack, str]]]:
    """Split into (faces, [(rejected, reason), ...]); the tracks themselves are unchanged.
    ``brightness``: per track, as :func:`confirm` takes it (default: unknown)."""
    faces, rejected = [], []
    for k, t in enumerate(tracks):
        ok, why = confirm(t, rule, 0, float("nan") if brightness is None else float(brightness[k]))
        if ok:
            faces.append(t)
        else:
            rejected.append((t, why))
    return faces, rejected
