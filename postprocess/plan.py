"""Making the plan: :func:`make_plan` runs the decision steps over the per-frame results: shots
(shots.py), sequences (tracking.py: link, then join), gap filling (interpolate.py), false positives
(filtering.py), smoothing (smoothing.py), anti-flicker padding (interpolate.py), identity
(identity.py). The result is a :class:`postprocess.plan_format.Plan` (the file format, JSON layout
and the rules of an edited plan are described there). The plan never contains embeddings.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from contract import FrameFaces, FrameResult
from postprocess.config import Pick, PlanConfig
from postprocess.filtering import is_false_positive
from postprocess.identity import (
    DEFAULT_THRESHOLDS,
    Decision,
    IdentityInputError,
    PersonScore,
    choose_samples,
    decide,
    quality_weights,
    reference_embeddings,
    resolve_margin,
    resolve_threshold,
    score_person,
)
from postprocess.interpolate import interpolate_gaps, pad_track
from postprocess.plan_format import ROW_KIND, Plan, SequencePlan
from postprocess.shots import CutDetector, shot_ranges
from postprocess.smoothing import smooth_track
from postprocess.tracking import FaceLinker, FaceTrack, join_tracks

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


def _scan(results: Mapping[int, FrameResult], frames: np.ndarray, first: FrameResult | None,
          config: PlanConfig) -> _Scan:
    """Read every frame result exactly once (a lazy mapping may parse it from disk on each access):
    collect the video facts, detect cuts on the fly (settled ``CutDetector.half`` frames later, so
    only that many frames' faces wait in memory) and link faces into sequences (without keeping
    their embeddings), then join sequences split by missed detections."""
    hint = first.embedder if first is not None else ""
    threshold = config.identity_threshold if config.identity_threshold is not None else \
        DEFAULT_THRESHOLDS.get(hint, 0.3)
    linker = FaceLinker(max_cost=config.max_cost, max_gap=config.max_gap, iou_weight=config.iou_weight,
                        distance_weight=config.distance_weight, embedding_weight=config.embedding_weight,
                        embedding_scale=max(1.0 - threshold, 0.05), keep_embeddings=False)
    cutter = CutDetector(config.cut_threshold, config.cut_spike_ratio)
    sizes: set[tuple[int, int]] = set()
    embedders: set[str] = set()
    detectors: set[str] = set()
    waiting: deque[tuple[int, FrameFaces]] = deque()
    shots = np.zeros(len(frames), np.int64)
    settled = shot = 0

    def settle(cuts: list[bool]) -> None:
        nonlocal settled, shot
        for cut in cuts:
            frame, faces = waiting.popleft()
            if cut:
                shot += 1
                linker.new_shot(shot)
            shots[settled] = shot
            settled += 1
            if len(faces):
                linker.link(faces, frame_index=frame)

    for k, frame in enumerate(frames.tolist()):
        result = first if k == 0 and first is not None else results[frame]
        sizes.add((result.width, result.height))
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
    tracks = join_tracks(linker.finish(), config.join_gap, config.max_cost, linker.cost, linker.end_embeddings)
    return _Scan(width, height, ",".join(sorted(detectors)), embedders.pop() if embedders else "", shots, tracks)


def _check_identity_inputs(config: PlanConfig, references: Mapping[str, Mapping[str, FrameResult]] | None,
                           embedder: str, early: bool = False) -> None:
    """Refuse identity modes that cannot work: before the pass over the results with the first
    frame's embedder (``early``: an empty name may still change), and after it with the video's."""
    mode = config.mode
    if mode == "all":
        return
    if mode in ("unknown", "known") and not references:
        raise IdentityInputError(f"mode {mode!r} needs reference photos of at least one person")
    if early and not embedder:
        return
    if not embedder:
        raise IdentityInputError(f"mode {mode!r} needs face embeddings, but the frame results have none "
                                 "(embedder ''); run inference with an embedder or use mode 'all'")
    resolve_threshold(embedder, config.identity_threshold)
    if mode in ("unknown", "known"):
        reference_embeddings(references or {}, embedder)


def _shape(track: FaceTrack, config: PlanConfig, shot_bounds: np.ndarray) -> FaceTrack:
    track = interpolate_gaps(track, config.interpolation)
    track = smooth_track(track, config.smooth_window)
    lowest, highest = shot_bounds[track.shot]
    return pad_track(track, config.pad_frames, int(lowest), int(highest), config.pad_growth)


def _samples(results: Mapping[int, FrameResult], track: FaceTrack,
             config: PlanConfig) -> tuple[np.ndarray, np.ndarray]:
    """The sequence's sample embeddings, looked up in the frame results, and their quality weights."""
    rows = choose_samples(track, config.max_samples)
    found = []
    for r in rows.tolist():
        faces = results[int(track.frames[r])].faces
        if faces.dim:
            found.append((r, faces.embedding[track.face_index[r]]))
    if not found:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    rows = np.array([r for r, _ in found])
    weights = quality_weights(track.xyxy[rows], track.confidence[rows], track.landmarks[rows])
    return np.stack([e for _, e in found]), weights


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


def _decide(results: Mapping[int, FrameResult], tracks: list[FaceTrack], dropped: list[bool], config: PlanConfig,
            people: dict[str, np.ndarray], threshold: float | None, margin: float,
            ) -> tuple[dict[int, Decision], dict[int, dict[str, PersonScore]], dict[str, int]]:
    """Decisions and identity scores per track id, and which sequence each pick chose."""
    decisions: dict[int, Decision] = {}
    scores: dict[int, dict[str, PersonScore]] = {}
    picked: dict[str, int] = {}
    people = dict(people)
    for pick in config.picks:
        i = _find_pick(pick, tracks)
        if i < 0:
            raise IdentityInputError(f"pick {pick} hits no face in frame {pick.frame}")
        dropped[i] = False
        t = tracks[i]
        picked[str(pick)] = t.track_id
        if t.track_id not in decisions:
            people[f"pick {pick}"] = _samples(results, t, config)[0]
            decisions[t.track_id] = Decision(config.pick_action, f"picked at {pick} ({config.pick_action})",
                                             person=f"pick {pick}")
    for t, drop in zip(tracks, dropped, strict=True):
        if t.track_id in decisions:
            continue
        if drop:
            best = float(t.confidence[t.detected].max()) if t.detected.any() else 0.0
            decisions[t.track_id] = Decision("drop", f"likely false positive: {int(t.detected.sum())} detections "
                                             f"< min_length {config.min_length} and best score {best:.2f} < "
                                             f"short_keep_score {config.short_keep_score}")
            continue
        if people and threshold is not None:
            samples, weights = _samples(results, t, config)
            scores[t.track_id] = {p: score_person(p, samples, weights, refs, threshold + margin)
                                  for p, refs in people.items() if len(refs)}
        decisions[t.track_id] = decide(config.mode, scores.get(t.track_id, {}), threshold or 0.0, margin,
                                       config.min_samples, config.pick_action)
    return decisions, scores, picked


#: Embedders measured unable to separate people on real footage (README "Choosing who is blurred").
WEAK_EMBEDDERS = frozenset({"dlib-resnet"})


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
    if config.mode != "all":
        _check_identity_inputs(config, references, embedder)
        threshold = resolve_threshold(embedder, config.identity_threshold)
        if config.mode in ("unknown", "known"):
            people = reference_embeddings(references or {}, embedder)
        blurs_the_person = config.mode == "known" or (config.mode == "select" and config.pick_action == "blur")
        if embedder in WEAK_EMBEDDERS and blurs_the_person:
            logger.warning("embedder %s cannot tell people apart reliably on real footage (profiles, dim light): "
                           "in mode %s the person to hide may be judged someone else and left clear. Use "
                           "arcface-r100 or mobilefacenet (python -m model.fetch), or mode all", embedder,
                           config.mode)
    elif references:
        logger.warning("reference photos are only used in modes unknown and known; mode is all")
    bounds = shot_ranges(frames, scan.shots)
    # 3-6: fill, filter, smooth, pad
    shaped = [_shape(t, config, bounds) for t in scan.tracks]
    dropped = [is_false_positive(t, config.min_length, config.short_keep_score) for t in scan.tracks]

    # 7: identity
    margin = resolve_margin(embedder, config.identity_margin)
    decisions, scores, picked = _decide(results, shaped, dropped, config, people, threshold, margin)

    # 8: the plan
    width, height = scan.width, scan.height
    size = np.array([width, height, width, height], np.float32)
    sequences = []
    for t in shaped:
        d = decisions[t.track_id]
        kinds = np.where(t.padded, 2, np.where(t.interpolated, 1, 0))
        boxes = np.clip(t.xyxy, 0, size) if width and height else t.xyxy
        sc = scores.get(t.track_id, {})
        sequences.append(SequencePlan(
            id=t.track_id, shot=t.shot, first=t.first, boxes=boxes, decision=d.decision, reason=d.reason,
            borderline=d.borderline, rows="".join(ROW_KIND[kinds]),
            samples=max((s.samples for s in sc.values()), default=0),
            scores={p: float(s.score) for p, s in sc.items() if np.isfinite(s.score)}, person=d.person,
            threshold=threshold if sc else None, margin=margin if sc else None, confidence=t.confidence))
    identity = {"threshold": threshold, "margin": margin, "min_samples": config.min_samples,
                "references": {p: list(photos) for p, photos in (references or {}).items()}
                if config.mode in ("unknown", "known") else {},
                "picks": picked}
    plan = Plan(width, height, np.union1d(frames, full), sequences, full, bounds, scan.detector, embedder,
                config.to_dict(), identity)
    logger.info("plan: %s", plan.summary)
    return plan
