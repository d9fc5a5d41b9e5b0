"""Making the plan: :func:`make_plan` runs the decision steps over the per-frame results: shots
(shots.py), sequences (tracking.py: link, then join), gap filling (interpolate.py), which sequences are
faces (confirm.py), smoothing (smoothing.py), anti-flicker padding (interpolate.py), identity
(identity.py: per sequence; guard.py: fail closed without a discriminative embedder; persons.py:
revised per person across the video, and the plan's persons list). The result is a
:class:`postprocess.plan_format.Plan` (the file format, JSON layout and the rules of an edited plan
are described there). The plan never contains embeddings.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from contract import FrameFaces, FrameResult
from postprocess.config import Pick, PlanConfig
from postprocess.confirm import ConfirmRule, confirm, signature_brightness
from postprocess.guard import WEAK_EMBEDDERS, identity_blocker
from postprocess.identity import (
    DEFAULT_THRESHOLDS,
    Decision,
    IdentityInputError,
    PersonScore,
    border_weights,
    choose_samples,
    decide,
    quality_weights,
    reference_embeddings,
    resolve_margin,
    resolve_threshold,
    score_person,
)
from postprocess.interpolate import interpolate_gaps, pad_track, trim_handovers
from postprocess.joining import join_tracks
from postprocess.persons import link_persons
from postprocess.plan_format import ROW_KIND, Plan, SequencePlan
from postprocess.satellites import spare_kept_faces
from postprocess.shots import CutDetector, shot_ranges
from postprocess.smoothing import smooth_track
from postprocess.tracking import FaceLinker, FaceTrack, make_cost

logger = logging.getLogger(__name__)


@dataclass
class _Scan:
    """What one pass over the frame results gives: facts, shot per frame, joined sequences."""

    width: int
    height: int
    detector: str
    embedder: str
    shots: np.ndarray
    tracks: list[FaceTrack]
    analysed: np.ndarray  # bool per frame: fully analysed (False: adaptive analysis skipped it)
    brightness: np.ndarray  # per frame: mean brightness from its signature (NaN: unknown), for confirm.py


def plan_linker(config: PlanConfig, embedder: str) -> FaceLinker:
    """The linker :func:`make_plan` links the analysed frames with, for results embedded by
    ``embedder`` ("" without embeddings). Adaptive analysis (``faceblur/schedule.py``) runs the same
    one over the frames it analyses, so that it knows how the plan will link them."""
    threshold = config.identity_threshold if config.identity_threshold is not None else \
        DEFAULT_THRESHOLDS.get(embedder, 0.3)
    cost = make_cost(config.iou_weight, config.distance_weight, config.embedding_weight,
                     embedding_scale=max(1.0 - threshold, 0.05))
    return FaceLinker(cost, max_cost=config.max_cost, max_gap=config.max_gap, keep_embeddings=False,
                      weak_score=config.face_score, weak_max_cost=config.weak_max_cost)


def plan_cutter(config: PlanConfig) -> CutDetector:
    """The cut detector :func:`make_plan` runs over every frame's signature (adaptive analysis runs
    the same one, so that its linker starts a shot where the plan's does)."""
    return CutDetector(config.cut_threshold, config.cut_spike_ratio)


def _scan(results: Mapping[int, FrameResult], frames: np.ndarray, first: FrameResult | None,
          config: PlanConfig) -> _Scan:
    """Read every frame result exactly once (a lazy mapping may parse it from disk on each access):
    collect the video facts, detect cuts on the fly (settled ``CutDetector.half`` frames later, so
    only that many frames' faces wait in memory) and link faces into sequences (without keeping
    their embeddings), then join sequences split by missed detections.

    Frames marked ``analysed: false`` (adaptive analysis) give their signature to the cut detector
    but are not linked: they are no evidence of absence. The linker's gap clock counts analysed
    frames only, so ``max_gap`` means analysed frames without a match; boxes for the frames between
    come from interpolation along the sequences."""
    linker = plan_linker(config, first.embedder if first is not None else "")
    cost = linker.cost
    cutter = plan_cutter(config)
    sizes: set[tuple[int, int]] = set()
    embedders: set[str] = set()
    detectors: set[str] = set()
    waiting: deque[tuple[int, FrameFaces]] = deque()
    shots = np.zeros(len(frames), np.int64)
    analysed = np.ones(len(frames), bool)
    brightness = np.full(len(frames), np.nan)
    settled = shot = skipped = 0

    def settle(cuts: list[bool]) -> None:
        nonlocal settled, shot, skipped
        for cut in cuts:
            frame, faces = waiting.popleft()
            if cut:
                shot += 1
                linker.new_shot(shot)
            shots[settled] = shot
            if not analysed[settled]:
                skipped += 1
            elif len(faces):
                linker.update(faces, frame_index=frame, tick=frame - skipped)
            settled += 1

    for k, frame in enumerate(frames.tolist()):
        result = first if k == 0 and first is not None else results[frame]
        sizes.add((result.width, result.height))
        analysed[k] = result.analysed
        brightness[k] = signature_brightness(result.signature)
        if result.embedder:
            embedders.add(result.embedder)
        if result.detector:
            detectors.add(result.detector)
        waiting.append((frame, result.faces))
        settle(cutter.push(result.signature))
    settle(cutter.flush())
    if len(sizes) > 1:
        raise ValueError(f"frame results disagree on the frame size: {sorted(sizes)}")
    if len(embedders) > 1:
        raise IdentityInputError(f"frame results come from several embedders: {', '.join(sorted(embedders))}; "
                                 "their embeddings cannot be compared")
    width, height = sizes.pop() if sizes else (0, 0)
    tracks = join_tracks(linker.finish(), config.join_gap, config.max_cost, cost, linker.end_embeddings)
    return _Scan(width, height, ",".join(sorted(detectors)), embedders.pop() if embedders else "", shots, tracks,
                 analysed, brightness)


def _check_identity_inputs(config: PlanConfig, references: Mapping[str, Mapping[str, FrameResult]] | None,
                           embedder: str, early: bool = False) -> None:
    """Refuse identity modes that cannot work: before the pass over the results with the first
    frame's embedder (``early``: an empty name may still change), and after it with the video's."""
    mode = config.mode
    if mode == "all":
        return
    if mode in ("unknown", "known") and not references:
        raise IdentityInputError(f"mode {mode!r} needs reference photos of at least one person")
    if not embedder:  # no embeddings: fail closed in make_plan (postprocess/guard.py), nothing to check
        return
    resolve_threshold(embedder, config.identity_threshold)
    if mode in ("unknown", "known"):
        reference_embeddings(references or {}, embedder)


def _shape(track: FaceTrack, config: PlanConfig, shot_bounds: np.ndarray) -> FaceTrack:
    track = interpolate_gaps(track, config.interpolation)
    track = smooth_track(track, config.smooth_window)
    lowest, highest = shot_bounds[track.shot]
    return pad_track(track, config.pad_frames, int(lowest), int(highest), config.pad_growth)


def _samples(results: Mapping[int, FrameResult], track: FaceTrack, config: PlanConfig,
             size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sequence's sample embeddings, looked up in the frame results, their quality weights and
    their wholeness (``identity.border_weights``: faces cut by the frame border weigh less)."""
    rows = choose_samples(track, config.max_samples, size)
    found = []
    for r in rows.tolist():
        faces = results[int(track.frames[r])].faces
        vector = faces.embedding[track.face_index[r]] if faces.dim else None
        if vector is not None and np.any(vector):  # all zeros: a candidate that was not embedded
            found.append((r, vector))
    if not found:
        return np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0)
    rows = np.array([r for r, _ in found])
    weights = quality_weights(track.xyxy[rows], track.confidence[rows], track.landmarks[rows], size)
    return np.stack([e for _, e in found]), weights, border_weights(track.xyxy[rows], size)


def _find_pick(pick: Pick, tracks: list[FaceTrack]) -> int:
    """Index of the track whose box (a detection or interpolated row preferred) contains the pick."""
    best, best_key = -1, (2, np.inf)
    for i, t in enumerate(tracks):
        if not t.first <= pick.frame <= t.last:
            continue
        row = pick.frame - t.first
        x1, y1, x2, y2 = t.xyxy[row]
        if x1 <= pick.x <= x2 and y1 <= pick.y <= y2:
            key = (int(t.padded[row]), float((x2 - x1) * (y2 - y1)))
            if key < best_key:
                best, best_key = i, key
    return best


def _decide(results: Mapping[int, FrameResult], tracks: list[FaceTrack], dropped: list[str], config: PlanConfig,
            people: dict[str, np.ndarray], threshold: float | None, margin: float,
            size: tuple[int, int] | None = None, blocker: str = "",
            sampled: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
            ) -> tuple[dict[int, Decision], dict[int, dict[str, PersonScore]], dict[str, int]]:
    """Decisions and identity scores per track id, and which sequence each pick chose; ``dropped``:
    per track, why it is not a face ("" when it is one; a pick overrides it). ``blocker``
    (``guard.identity_blocker``): identity cannot be decided, every sequence is blurred with it as
    the reason. ``sampled`` receives each scored sequence's samples (for ``persons``)."""
    sampled = {} if sampled is None else sampled
    decisions: dict[int, Decision] = {}
    scores: dict[int, dict[str, PersonScore]] = {}
    picked: dict[str, int] = {}
    people = dict(people)
    for pick in config.picks:
        i = _find_pick(pick, tracks)
        if i < 0:
            raise IdentityInputError(f"pick {pick} hits no face in frame {pick.frame}")
        dropped[i] = ""
        t = tracks[i]
        picked[str(pick)] = t.track_id
        if t.track_id not in decisions:
            if blocker:
                decisions[t.track_id] = Decision("blur", f"picked at {pick}; {blocker}")
                continue
            sampled[t.track_id] = _samples(results, t, config, size)
            people[f"pick {pick}"] = sampled[t.track_id][0]
            decisions[t.track_id] = Decision(config.pick_action, f"picked at {pick} ({config.pick_action})",
                                             person=f"pick {pick}")
    for t, drop in zip(tracks, dropped, strict=True):
        if t.track_id in decisions:
            continue
        if drop:
            decisions[t.track_id] = Decision("drop", drop)
            continue
        if blocker:
            decisions[t.track_id] = Decision("blur", blocker)
            continue
        if people and threshold is not None:
            samples, weights, border = sampled[t.track_id] = _samples(results, t, config, size)
            scores[t.track_id] = {p: score_person(p, samples, weights, refs, threshold + margin)
                                  for p, refs in people.items() if len(refs)}
        decisions[t.track_id] = decide(config.mode, scores.get(t.track_id, {}), threshold or 0.0, margin,
                                       config.min_samples, config.pick_action)
    return decisions, scores, picked


__all__ = ["WEAK_EMBEDDERS", "make_plan", "plan_cutter", "plan_linker"]


def make_plan(results: Mapping[int, FrameResult], config: PlanConfig,
              references: Mapping[str, Mapping[str, FrameResult]] | None = None,
              missing: Iterable[int] = ()) -> Plan:
    """Decide what to blur in every frame (see the module docstring).

    ``results``: frame number -> that frame's result; ``references``: person -> {photo name: result of
    that photo} (modes unknown and known); ``missing``: frames without a usable result, blurred whole.
    Raises :class:`IdentityInputError` for unusable identity inputs, ``ValueError`` for mixed inputs.
    """
    frames = np.array(sorted(int(f) for f in results), np.int64)
    full = np.unique(np.asarray([int(m) for m in missing], np.int64))
    first = results[int(frames[0])] if len(frames) else None
    _check_identity_inputs(config, references, first.embedder if first is not None else "", early=True)
    # 1-2: shots and sequences, in one pass over the results
    scan = _scan(results, frames, first, config)
    embedder, threshold = scan.embedder, None
    people: dict[str, np.ndarray] = {}
    blocker = identity_blocker(config.mode, embedder, config.allow_weak_embedder)
    if blocker:
        logger.warning("%s", blocker)
    elif config.mode != "all":
        _check_identity_inputs(config, references, embedder)
        threshold = resolve_threshold(embedder, config.identity_threshold)
        if config.mode in ("unknown", "known"):
            people = reference_embeddings(references or {}, embedder)
        if embedder in WEAK_EMBEDDERS:
            logger.warning("embedder %s cannot tell people apart reliably on real footage (profiles, dim light), "
                           "and --allow-weak-embedder trusts it in mode %s: a person may be judged someone else",
                           embedder, config.mode)
    if config.mode == "all" and references:
        logger.warning("reference photos are only used in modes unknown and known; mode is all")
    bounds = shot_ranges(frames, scan.shots)
    # 3-6: fill, filter, smooth, pad
    shaped = [_shape(t, config, bounds) for t in scan.tracks]
    skipped = np.cumsum(~scan.analysed)  # frames not analysed up to each position of ``frames``

    def unseen(t: FaceTrack) -> int:  # frames not analysed between the sequence's first and last detection
        lo, hi = np.searchsorted(frames, [t.first, t.last])
        return int(skipped[hi] - skipped[lo]) if len(frames) else 0

    def light(t: FaceTrack) -> float:  # median brightness of the frames the sequence was detected on
        seen = scan.brightness[np.searchsorted(frames, t.frames[t.detected])]
        seen = seen[np.isfinite(seen)]
        return float(np.median(seen)) if len(seen) else float("nan")

    rule = ConfirmRule.of(config)
    dropped, found = [], {}
    for t in scan.tracks:  # confirmed from the detections alone (before filling), see postprocess/confirm.py
        face, why = confirm(t, rule, unseen(t), light(t))
        dropped.append("" if face else why)
        found[t.track_id] = why if face else ""
    shaped = trim_handovers(shaped, [not d for d in dropped])  # padding ends where another face takes over

    # 7: identity, per sequence, then revised per person across the video (persons.py)
    margin = resolve_margin(embedder, config.identity_margin)
    sampled: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    decisions, scores, picked = _decide(results, shaped, dropped, config, people, threshold, margin,
                                        (scan.width, scan.height), blocker, sampled)
    decisions, persons = link_persons(shaped, decisions, scores, sampled, config, threshold or 0.0, margin,
                                      embedder, picked, (scan.width, scan.height))
    # candidates without identity evidence do not blur a face kept clear beside them (satellites.py)
    unscored = {t.track_id for t in shaped
                if max((s.samples for s in scores.get(t.track_id, {}).values()), default=0) == 0}
    shaped, spared = spare_kept_faces(shaped, decisions, unscored, config.face_score)

    # 8: the plan
    width, height = scan.width, scan.height
    size = np.array([width, height, width, height], np.float32)
    sequences = []
    for t in shaped:
        d = decisions[t.track_id]
        kinds = np.where(t.padded, 2, np.where(t.interpolated, 1, 0))
        boxes = np.clip(t.xyxy, 0, size) if width and height else t.xyxy
        sc = scores.get(t.track_id, {})
        reason = f"{d.reason} (a face: {found[t.track_id]})" if found.get(t.track_id) else d.reason
        if t.track_id in spared:
            reason += f"; cut back from a face kept clear beside it in {spared[t.track_id]} frames"
        sequences.append(SequencePlan(
            id=t.track_id, shot=t.shot, first=t.first, boxes=boxes, decision=d.decision,
            reason=reason,
            borderline=d.borderline, rows="".join(ROW_KIND[kinds]),
            samples=max((s.samples for s in sc.values()), default=0),
            scores={p: float(s.score) for p, s in sc.items() if np.isfinite(s.score)}, person=d.person,
            threshold=threshold if sc else None, margin=margin if sc else None, confidence=t.confidence))
    identity = {"threshold": threshold, "margin": margin, "min_samples": config.min_samples,
                "references": {p: list(photos) for p, photos in (references or {}).items()}
                if config.mode in ("unknown", "known") else {},
                "picks": picked, "fail_closed": blocker or None}
    plan = Plan(width, height, np.union1d(frames, full), sequences, full, bounds, scan.detector, embedder,
                config.to_dict(), identity, persons, None if scan.analysed.all() else frames[scan.analysed])
    logger.info("plan: %s", plan.summary)
    return plan
