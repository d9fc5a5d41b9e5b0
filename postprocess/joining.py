"""Joining: sequences of one shot that a short gap split (an occlusion, a turned head, missed
detections) joined again when their ends match (:func:`join_tracks`), after
:class:`postprocess.tracking.FaceLinker` has linked the frames."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from contract import FrameFaces
from postprocess.tracking import _END_SAMPLES, CostFunction, FaceTrack, make_cost, match

logger = logging.getLogger(__name__)


def _end_state(track: FaceTrack, head: bool,
               known: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box, velocity per frame and mean embedding at the start (head) or end of a track; the
    embedding from ``known`` (head, tail) when given, else from the track's own embeddings."""
    det = np.flatnonzero(track.detected)
    pick = det[:_END_SAMPLES] if head else det[-_END_SAMPLES:]
    box = track.xyxy[pick[0] if head else pick[-1]].astype(np.float64)
    vel = np.zeros(4)
    if len(pick) > 1:
        span = track.frames[pick[-1]] - track.frames[pick[0]]
        vel = (track.xyxy[pick[-1]] - track.xyxy[pick[0]]).astype(np.float64) / max(span, 1)
    if known is not None:
        return box, vel, np.asarray(known[0 if head else 1], np.float32)
    emb = np.zeros(track.dim, np.float32)
    if track.dim:
        mean = track.embeddings[pick].mean(axis=0)
        emb = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return box, vel, emb


def join_tracks(tracks: Sequence[FaceTrack], max_gap: int = 15, max_cost: float = 0.5,
                cost: CostFunction | None = None,
                end_embeddings: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None) -> list[FaceTrack]:
    """Join sequences of one person split by missed detections: a sequence ending and another
    starting 1..``max_gap`` frames later in the same shot, linked by minimum-cost matching of ends
    to starts (the ending box moved on at its recent velocity; the mean embedding of each end).
    Chains (A then B then C) join into one track with A's id. Returns new tracks ordered by id.

    ``end_embeddings`` (track id -> (head, tail) unit vectors, e.g. ``FaceLinker.end_embeddings``)
    stands in for tracks that carry no embeddings. Only nearby pairs are scored (sorted starts), and
    the matching is solved per connected group of candidate pairs, so long videos stay fast."""
    tracks = list(tracks)
    if len(tracks) < 2 or max_gap <= 0:
        return tracks
    cost = cost or make_cost()
    known = end_embeddings or {}
    dim = max([t.dim for t in tracks] + [len(v[0]) for v in known.values()])
    last = np.array([t.last for t in tracks])
    first = np.array([t.first for t in tracks])
    shot = np.array([t.shot for t in tracks])
    by_start = np.argsort(first, kind="stable")
    lo = np.searchsorted(first[by_start], last + 1, side="left")
    hi = np.searchsorted(first[by_start], last + max_gap + 1, side="right")
    pairs_a, pairs_b, pairs_c = [], [], []
    heads: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for a in np.flatnonzero(hi > lo):
        cand = by_start[lo[a]:hi[a]]
        cand = cand[shot[cand] == shot[a]]
        if not len(cand):
            continue
        box, vel, emb = _end_state(tracks[a], False, known.get(tracks[a].track_id))
        for b in cand.tolist():
            if b not in heads:
                heads[b] = _end_state(tracks[b], True, known.get(tracks[b].track_id))
        gap = (first[cand] - last[a]).astype(np.float64)
        moved = box[None, :] + vel[None, :] * gap[:, None]
        b_emb = np.stack([heads[b][2] if len(heads[b][2]) == dim else np.zeros(dim, np.float32) for b in cand])
        a_emb = emb[None, :] if len(emb) == dim else np.zeros((1, dim), np.float32)
        faces = FrameFaces(np.stack([heads[b][0] for b in cand]), np.ones(len(cand)),
                           np.zeros((len(cand), 5, 2)), b_emb)
        # row k: the end moved on to candidate k's start, against candidate k
        c = np.diagonal(np.asarray(cost(moved, np.repeat(a_emb, len(cand), 0), faces), np.float64))
        if np.isnan(c).any():
            raise ValueError("link cost function returned NaN")
        ok = c <= max_cost
        pairs_a += [a] * int(ok.sum())
        pairs_b += cand[ok].tolist()
        pairs_c += c[ok].tolist()
    if not pairs_a:
        return tracks
    successor = _solve_pairs(np.array(pairs_a), np.array(pairs_b), np.array(pairs_c), len(tracks), max_cost)
    has_pred = set(successor.values())
    joined = []
    for start in range(len(tracks)):
        if start in has_pred:
            continue
        chain = [start]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        if len(chain) > 1:
            logger.debug("joined sequences %s", [tracks[c].track_id for c in chain])
        joined.append(tracks[start] if len(chain) == 1 else FaceTrack.concat([tracks[c] for c in chain]))
    return sorted(joined, key=lambda t: t.track_id)


def _solve_pairs(a: np.ndarray, b: np.ndarray, c: np.ndarray, n: int, max_cost: float) -> dict[int, int]:
    """Minimum-cost one-to-one choice among candidate pairs (a ends -> b starts), solved per
    connected group of pairs. Returns {a: b}."""
    graph = coo_matrix((np.ones(len(a)), (a, b + n)), shape=(2 * n, 2 * n))
    _, label = connected_components(graph, directed=False)
    successor: dict[int, int] = {}
    group = label[a]
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        idx = order[s:e]
        ua, ia = np.unique(a[idx], return_inverse=True)
        ub, ib = np.unique(b[idx], return_inverse=True)
        costs = np.full((len(ua), len(ub)), np.inf)
        costs[ia, ib] = c[idx]
        rows, cols = match(costs, max_cost)
        successor.update({int(ua[r]): int(ub[k]) for r, k in zip(rows, cols, strict=True)})
    return successor
