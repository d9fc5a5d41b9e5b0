"""Who is in a sequence: robust per-sequence scores against reference people, and the decisions.

Single frames mislead (measured on real footage: a different person's best single frame scored
0.30 against a reference, the person's own best 0.29; sequence medians 0.23 against <= 0.13), so
no decision rests on one frame:

1. Samples: up to ``max_samples`` detections spread over the sequence (the sequence is cut into
   equal parts and each part gives its best-quality detection). Quality = face size x detector
   score x frontality (from the landmarks).
2. Per sample and person: the mean cosine similarity to the better half of that person's
   reference embeddings (all of them for one photo; the best of two; the best 2 of 3 or 4, ...).
3. Per person: the quality-weighted median over the samples is the sequence's score.
4. Fail safe: the sequence *is* the person ("match") only when the score is at least
   threshold + margin AND at least ``min_samples`` samples reach threshold + margin. A score within
   the margin of the threshold, or fewer than ``min_samples`` samples, is "borderline": always
   blurred and flagged. Otherwise it is not the person.
5. Mixed sequences: with at least 2 x ``min_samples`` samples, the earlier and later half are
   scored too. A match with a half below threshold - margin, or a non-match with a half at
   threshold + margin or more, is borderline (tracking may have joined two people), so blurred.

Thresholds are cosine similarities per embedder in :data:`DEFAULT_THRESHOLDS` (one dict to update
as measurements come in); ``PlanConfig.identity_threshold`` overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from contract import FrameFaces, FrameResult
from postprocess.tracking import FaceTrack

#: Per embedder, the centre ``T`` and half-width ``M`` of the zone of doubt on the per-sequence score
#: (cosine similarity). Keeping a face clear needs a score >= T + M; a score >= T - M already counts
#: as "maybe this person" and is blurred in modes that blur the person (known, select/blur). Chosen
#: by measurement (README "Identity thresholds", ``python -m bench.identity_thresholds``):
#: mobilefacenet - sequence medians on the shared photos, degraded: same person >= 0.60, different
#: people <= 0.53 (two strangers in one photo); on real concert footage (issue 9) the same person's
#: sequence scored 0.23-0.37 and others <= 0.13. No single number separates both, so the zone spans
#: them: [0.22, 0.58]: a stranger is never kept clear as the reporter, and a witness at 0.23 is blurred.
#: dlib-resnet - same >= 0.94, different <= 0.90 on stills; it cannot separate real footage.
#: arcface-r100 - PROVISIONAL (weights not available where this was measured): usual IR-100 values.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "arcface-r100": 0.35,
    "arcface-r100-int8": 0.35,
    "mobilefacenet": 0.40,
    "dlib-resnet": 0.91,
}
DEFAULT_MARGINS: dict[str, float] = {
    "arcface-r100": 0.12,
    "arcface-r100-int8": 0.12,
    "mobilefacenet": 0.18,
    "dlib-resnet": 0.03,
}

MATCH, BORDERLINE, NO_MATCH = "match", "borderline", "no"
FULL_QUALITY_SIZE = 64.0  # face side (pixels) from which size no longer lowers a sample's weight


class IdentityInputError(ValueError):
    """Identity decisions cannot be made with these inputs; the message names what is wrong."""


def resolve_threshold(embedder: str, override: float | None = None) -> float:
    """``override`` if given, else the embedder's default; unknown embedders need an override."""
    if override is not None:
        return float(override)
    if embedder not in DEFAULT_THRESHOLDS:
        known = ", ".join(sorted(DEFAULT_THRESHOLDS))
        raise IdentityInputError(f"no default identity threshold for embedder {embedder!r} (known: {known}); "
                                 "set identity_threshold")
    return DEFAULT_THRESHOLDS[embedder]


def resolve_margin(embedder: str, override: float | None = None) -> float:
    """``override`` if given, else the embedder's default zone half-width (0.05 for unknown embedders)."""
    if override is not None:
        return float(override)
    return DEFAULT_MARGINS.get(embedder, 0.05)


def border_weights(xyxy: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray:
    """(m,) in [0.05, 1]: how whole a face is. A box reaching past the frame keeps the fraction of it
    inside; a box touching the border (within 1% of the frame) is a partial face, weighted 0.25 at
    most: its embedding describes half a face, so it must not dominate its sequence's score.
    ``frame_size`` None (unknown): all 1."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if frame_size is None or not frame_size[0] or not frame_size[1]:
        return np.ones(len(xyxy))
    w, h = float(frame_size[0]), float(frame_size[1])
    area = np.maximum((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), 1e-6)
    cx = np.clip(xyxy[:, [0, 2]], 0, w)
    cy = np.clip(xyxy[:, [1, 3]], 0, h)
    inside = np.clip((cx[:, 1] - cx[:, 0]) * (cy[:, 1] - cy[:, 0]) / area, 0, 1)
    tol = 0.01 * max(w, h)
    touching = (xyxy[:, 0] <= tol) | (xyxy[:, 1] <= tol) | (xyxy[:, 2] >= w - tol) | (xyxy[:, 3] >= h - tol)
    return np.clip(np.where(touching, np.minimum(inside, 0.25), inside), 0.05, 1.0)


def quality_weights(xyxy: np.ndarray, confidence: np.ndarray, landmarks: np.ndarray,
                    frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """(m,) weights in (0, 1]: size (smaller side / 64 px, capped) x score x frontality x wholeness
    (:func:`border_weights`, when ``frame_size`` is given).

    Frontality uses the nose's horizontal offset from the eyes' midpoint relative to the eye
    distance, and the eye distance relative to the box width (both collapse in profile). Rows
    without landmarks (all zero) count as frontal."""
    xyxy = np.asarray(xyxy, np.float64)
    lm = np.asarray(landmarks, np.float64)
    side = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    size_w = np.clip(side / FULL_QUALITY_SIZE, 0.05, 1.0)
    score_w = np.clip(np.asarray(confidence, np.float64), 0.05, 1.0)
    eye_mid = (lm[:, 0] + lm[:, 1]) / 2
    eye_dist = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
    offset = np.abs(lm[:, 2, 0] - eye_mid[:, 0]) / np.maximum(eye_dist, 1e-6)
    spread = eye_dist / np.maximum(xyxy[:, 2] - xyxy[:, 0], 1e-6)
    front = np.clip(np.minimum(1.0 - 1.5 * offset, spread / 0.3), 0.05, 1.0)
    front = np.where(np.abs(lm).reshape(len(lm), -1).sum(axis=1) == 0, 1.0, front)
    return size_w * score_w * front * border_weights(xyxy, frame_size)


def choose_samples(track: FaceTrack, max_samples: int = 16, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Row indices of up to ``max_samples`` detections, spread over the sequence: the best-quality
    detection of each of ``max_samples`` equal parts. Rows with a zero embedding are skipped; a
    track without embeddings offers every detection that has a ``face_index`` to look it up."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    usable = (np.abs(track.embeddings).sum(axis=1) > 0) if track.dim else track.face_index >= 0
    rows = np.flatnonzero(track.detected & usable)
    if len(rows) <= max_samples:
        return rows
    weight = quality_weights(track.xyxy[rows], track.confidence[rows], track.landmarks[rows], frame_size)
    parts = np.array_split(np.arange(len(rows)), max_samples)
    return np.array([rows[p[np.argmax(weight[p])]] for p in parts], np.int64)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The lower weighted median (the smallest value with at least half the weight at or below it)."""
    values = np.asarray(values, np.float64)
    if not len(values):
        return float("nan")
    weights = np.asarray(weights, np.float64)
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class PersonScore:
    """A sequence scored against one person: ``score`` (weighted median similarity), ``samples`` used,
    ``above``: how many samples reach threshold + margin, and ``halves``: the weighted median of the
    earlier and of the later half of the samples (a sequence in which tracking switched people
    scores differently in its two halves)."""

    person: str
    score: float
    samples: int
    above: int
    halves: tuple[float, float] = (float("nan"), float("nan"))


def sample_similarities(samples: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(s,d) x (p,d) -> (s,): per sample, the mean similarity to the better half of the references."""
    sims = _unit(samples) @ _unit(references).T
    top = -np.sort(-sims, axis=1)[:, : (sims.shape[1] + 1) // 2]
    return top.mean(axis=1)


def score_person(person: str, samples: np.ndarray, weights: np.ndarray, references: np.ndarray,
                 bar: float) -> PersonScore:
    """``samples`` (s,d) of a sequence, in time order, against ``references`` (p,d) of one person;
    ``bar`` is threshold + margin."""
    if not len(samples) or not len(references):
        return PersonScore(person, float("nan"), 0, 0)
    per_sample = sample_similarities(samples, references)
    mid = len(per_sample) // 2
    halves = (weighted_median(per_sample[:mid], weights[:mid]), weighted_median(per_sample[mid:], weights[mid:]))
    return PersonScore(person, weighted_median(per_sample, weights), len(per_sample),
                       int((per_sample >= bar).sum()), halves)


def assess(score: PersonScore, threshold: float, margin: float, min_samples: int) -> tuple[str, str]:
    """(``MATCH`` | ``BORDERLINE`` | ``NO_MATCH``, why) by the fail-safe rule of the module docstring.

    With at least 2 x ``min_samples`` samples the halves count too: a match whose other half clearly
    does not match, or a non-match whose one half clearly matches, is borderline."""
    hi, lo = threshold + margin, threshold - margin
    if score.samples < min_samples:
        return BORDERLINE, f"only {score.samples} samples (need {min_samples})"
    halves = score.halves if score.samples >= 2 * min_samples else (score.score, score.score)
    if score.score >= hi and score.above >= min_samples:
        if min(halves) < lo:
            return BORDERLINE, (f"score {score.score:.3f} but one half of the sequence only {min(halves):.3f} "
                                "(tracking may have joined two people)")
        return MATCH, f"score {score.score:.3f} >= {hi:.3f} on {score.above}/{score.samples} samples"
    if score.score >= hi:
        return BORDERLINE, f"only {score.above} samples reach {hi:.3f} (need {min_samples})"
    if score.score >= lo:
        return BORDERLINE, f"score {score.score:.3f} within {lo:.3f}..{hi:.3f}"
    if max(halves) >= hi:
        return BORDERLINE, (f"score {score.score:.3f} but one half of the sequence {max(halves):.3f} "
                            "(tracking may have joined two people)")
    return NO_MATCH, f"score {score.score:.3f} < {lo:.3f}"


def verdict(score: PersonScore, threshold: float, margin: float, min_samples: int) -> str:
    """``MATCH``, ``BORDERLINE`` or ``NO_MATCH`` (see :func:`assess`)."""
    return assess(score, threshold, margin, min_samples)[0]


@dataclass(frozen=True)
class Decision:
    """What to do with one sequence: ``decision`` blur | keep | drop, a reason a person can read,
    whether it was borderline and which person it matched (if any)."""

    decision: str
    reason: str
    borderline: bool = False
    person: str | None = None


def decide(mode: str, scores: Mapping[str, PersonScore], threshold: float, margin: float,
           min_samples: int, pick_action: str = "blur",
           assessed: Mapping[str, tuple[str, str]] | None = None) -> Decision:
    """The decision for one sequence in ``mode`` (all | unknown | known | select) from its scores
    against every person (reference people, or picked sequences in select mode). ``assessed``:
    verdicts already made per person (``postprocess.persons`` revises them across the video);
    default :func:`assess` of each score."""
    if mode == "all":
        return Decision("blur", "mode all blurs every face")
    if not scores:
        return Decision("blur", "no identity scores (no samples): blurred to be safe", borderline=True)
    if assessed is None:
        assessed = {p: assess(s, threshold, margin, min_samples) for p, s in scores.items()}
    what = "picked person" if mode == "select" else "reference"
    clear_matches = mode == "unknown" or (mode == "select" and pick_action == "keep")
    matches = [p for p, (v, _) in assessed.items() if v == MATCH]
    if matches:
        top = max(matches, key=lambda p: scores[p].score)
        return Decision("keep" if clear_matches else "blur", f"matches {what} {top!r}: {assessed[top][1]}",
                        person=top)
    borderline = [p for p, (v, _) in assessed.items() if v == BORDERLINE]
    if borderline:
        b = max(borderline, key=lambda p: -np.inf if np.isnan(scores[p].score) else scores[p].score)
        return Decision("blur", f"borderline for {what} {b!r}: {assessed[b][1]}; blurred to be safe",
                        borderline=True)
    best = max(scores, key=lambda p: scores[p].score)
    return Decision("blur" if clear_matches else "keep",
                    f"matches no {what} (best {best!r}: {assessed[best][1]})")


#: A reference photo is judged alone, with no time to confirm candidates: its faces are the
#: detections scoring this (the per-frame threshold from before candidates, issue 14).
REFERENCE_MIN_SCORE = 0.3


def photo_faces(result: FrameResult) -> FrameFaces:
    """The faces of a photo's result: detections scoring ``REFERENCE_MIN_SCORE`` or more (the
    detector also lists low-score candidates, which only a video's sequences can confirm)."""
    return result.faces[result.faces.confidence >= REFERENCE_MIN_SCORE]


def reference_embeddings(references: Mapping[str, Mapping[str, FrameResult]],
                         embedder: str) -> dict[str, np.ndarray]:
    """Each person's reference embeddings (p,d), checked: every photo has exactly one face with an
    embedding from ``embedder`` (the video's). Raises :class:`IdentityInputError` naming the photo."""
    people: dict[str, np.ndarray] = {}
    dim = None
    for person, photos in references.items():
        if not photos:
            raise IdentityInputError(f"reference person {person!r} has no photos")
        rows = []
        for photo, result in photos.items():
            where = f"reference photo {photo!r} of {person!r}"
            faces = photo_faces(result)
            n = len(faces)
            if n != 1:
                raise IdentityInputError(f"{where} has {n} faces; it must show exactly one face")
            if not result.faces.dim or not result.embedder:
                raise IdentityInputError(f"{where} has no face embedding (embedder {result.embedder!r})")
            if result.embedder != embedder:
                raise IdentityInputError(f"{where} was embedded with {result.embedder!r} but the video with "
                                         f"{embedder!r}; embeddings of different models cannot be compared")
            if dim is not None and result.faces.dim != dim:
                raise IdentityInputError(f"{where} has a {result.faces.dim}-value embedding, others {dim}")
            dim = result.faces.dim
            rows.append(faces.embedding[0])
        people[person] = _unit(np.stack(rows))
    return people
