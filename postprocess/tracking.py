"""Face sequences: link each frame's faces to the sequences of the frames before, then join
sequences of one person that a few missed detections split.

``FaceLinker(cost).update(faces)`` links one frame by minimum-cost bipartite matching
(``scipy.optimize.linear_sum_assignment``) of the live sequences (their boxes predicted at this frame
from their recent motion) against the frame's faces. The default cost (:func:`make_cost`) is a
weighted mean, in [0, 1], of

* ``1 - IoU`` of predicted and detected box,
* centre distance / face size (capped at 1), and
* embedding cosine distance / ``embedding_scale`` (capped at 1; skipped where either side has no
  embedding). ``make_plan`` sets ``embedding_scale`` to ``1 - identity threshold`` of the embedder,
  so the term reaches 1 where embeddings say "a different person" on any model's scale.

Pairs above ``max_cost`` are never linked. A sequence survives ``max_gap`` frames without a match.
``new_shot()`` ends every sequence: no sequence crosses a cut. :func:`join_tracks` afterwards joins
a sequence ending and another starting up to ``join_gap`` frames later in the same shot, with the
same cost on the extrapolated box and the mean embeddings of their ends.

For long videos ``FaceLinker(keep_embeddings=False)`` keeps memory small: detections are logged as
flat columns without embeddings (``FaceTrack.face_index`` finds them in the frame result again) and
only each sequence's head and tail embedding is kept for joining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from contract import FrameFaces
from contract.boxes import iou_matrix
from contract.faces import column

logger = logging.getLogger(__name__)

CostFunction = Callable[[np.ndarray, np.ndarray, FrameFaces], np.ndarray]
_BIG = 1e6
_END_SAMPLES = 5  # detections at each end whose mean embedding represents a sequence when joining


def _col(name: str, value: np.ndarray, shape: tuple[int | None, ...], dtype: type) -> np.ndarray:
    return column("FaceTrack", name, value, shape, dtype, rows="m")


@dataclass
class FaceTrack:
    """One face sequence: parallel rows, one per frame, frames strictly increasing.

    ``interpolated`` marks rows filled between detections, ``padded`` rows added at the ends
    (anti-flicker); such rows have confidence 0 and a zero embedding. ``embeddings`` may be (m, 0)
    (a linker that does not keep them). ``face_index``: each detection's position among its frame's
    faces (-1 for added rows or where unknown), to look its embedding up in the frame result.
    """

    track_id: int
    shot: int
    frames: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    embeddings: np.ndarray
    interpolated: np.ndarray = field(default=None)  # type: ignore[assignment]
    padded: np.ndarray = field(default=None)  # type: ignore[assignment]
    face_index: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.frames = _col("frames", self.frames, (None,), np.int64)
        m = len(self.frames)
        self.xyxy = _col("xyxy", self.xyxy, (m, 4), np.float32)
        self.confidence = _col("confidence", self.confidence, (m,), np.float32)
        self.landmarks = _col("landmarks", self.landmarks, (m, 5, 2), np.float32)
        emb = np.asarray(self.embeddings, np.float32)
        self.embeddings = _col("embeddings", emb.reshape(m, 0) if emb.size == 0 else emb, (m, None), np.float32)
        self.interpolated = _col("interpolated", np.zeros(m, bool) if self.interpolated is None
                                 else self.interpolated, (m,), bool)
        self.padded = _col("padded", np.zeros(m, bool) if self.padded is None else self.padded, (m,), bool)
        self.face_index = _col("face_index", np.full(m, -1) if self.face_index is None else self.face_index,
                               (m,), np.int64)
        if m > 1 and np.any(np.diff(self.frames) <= 0):
            raise ValueError(f"FaceTrack {self.track_id}: frames must be strictly increasing")
        self.track_id, self.shot = int(self.track_id), int(self.shot)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def first(self) -> int:
        return int(self.frames[0])

    @property
    def last(self) -> int:
        return int(self.frames[-1])

    @property
    def detected(self) -> np.ndarray:
        """Rows that are real detections."""
        return ~(self.interpolated | self.padded)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def rows(self, index: np.ndarray | slice) -> FaceTrack:
        """A new track of the selected rows (index or boolean mask)."""
        return replace(self, frames=self.frames[index], xyxy=self.xyxy[index],
                       confidence=self.confidence[index], landmarks=self.landmarks[index],
                       embeddings=self.embeddings[index], interpolated=self.interpolated[index],
                       padded=self.padded[index], face_index=self.face_index[index])

    @staticmethod
    def concat(parts: Sequence[FaceTrack]) -> FaceTrack:
        """The rows of several tracks (in time order, not overlapping) as one, with the first's id."""
        dim = max(p.dim for p in parts)

        def emb(p: FaceTrack) -> np.ndarray:
            return p.embeddings if p.dim == dim else np.zeros((len(p), dim), np.float32)

        return FaceTrack(parts[0].track_id, parts[0].shot,
                         np.concatenate([p.frames for p in parts]), np.concatenate([p.xyxy for p in parts]),
                         np.concatenate([p.confidence for p in parts]),
                         np.concatenate([p.landmarks for p in parts]), np.concatenate([emb(p) for p in parts]),
                         np.concatenate([p.interpolated for p in parts]),
                         np.concatenate([p.padded for p in parts]), np.concatenate([p.face_index for p in parts]))


def make_cost(iou_weight: float = 1.0, distance_weight: float = 1.0, embedding_weight: float = 3.0,
              embedding_scale: float = 0.7) -> CostFunction:
    """The default link cost, closed over its weights (see the module docstring)."""
    if min(iou_weight, distance_weight, embedding_weight) < 0 or iou_weight + distance_weight <= 0:
        raise ValueError("cost weights must be >= 0 with iou_weight + distance_weight > 0, got "
                         f"{iou_weight}, {distance_weight}, {embedding_weight}")
    if not embedding_scale > 0:
        raise ValueError(f"embedding_scale must be > 0, got {embedding_scale}")
    position_weight = iou_weight + distance_weight

    def cost(track_boxes: np.ndarray, track_embs: np.ndarray, faces: FrameFaces) -> np.ndarray:
        a = np.asarray(track_boxes, np.float64)[:, None, :]
        b = np.asarray(faces.xyxy, np.float64)[None, :, :]
        wh_a, wh_b = a[..., 2:] - a[..., :2], b[..., 2:] - b[..., :2]
        total = iou_weight * (1.0 - iou_matrix(track_boxes, faces.xyxy).astype(np.float64))
        if distance_weight:
            d = (a[..., :2] + a[..., 2:]) - (b[..., :2] + b[..., 2:])  # twice the centre offset
            size = wh_a.max(axis=-1) + wh_b.max(axis=-1)  # twice the mean face size
            total += distance_weight * np.minimum(np.hypot(d[..., 0], d[..., 1]) / np.maximum(size, 2.0), 1.0)
        te = np.asarray(track_embs, np.float32)
        fe = faces.embedding
        if not (embedding_weight and te.ndim == 2 and te.shape[1] and te.shape[1] == fe.shape[1]):
            return total / position_weight
        tn = np.sqrt(np.einsum("ij,ij->i", te, te))[:, None]
        fn = np.sqrt(np.einsum("ij,ij->i", fe, fe))[None, :]
        sim = (te @ fe.T) / np.maximum(tn * fn, 1e-12)
        valid = (tn > 0) & (fn > 0)
        total += embedding_weight * np.where(valid, np.minimum((1.0 - sim) / embedding_scale, 1.0), 0.0)
        return total / (position_weight + embedding_weight * valid)

    return cost


def match(costs: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one pairs (rows, cols) with cost <= max_cost. NaN raises ValueError."""
    costs = np.asarray(costs, np.float64)
    if np.isnan(costs).any():
        raise ValueError("link cost function returned NaN")
    if costs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if costs.shape[0] == 1 or costs.shape[1] == 1:  # one row or column: the optimum is its minimum
        k = int(np.argmin(costs))
        if costs.flat[k] > max_cost:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        r, c = divmod(k, costs.shape[1])
        return np.array([r]), np.array([c])
    capped = np.minimum(costs, _BIG)
    capped[capped > max_cost] = _BIG
    rows, cols = linear_sum_assignment(capped)
    keep = costs[rows, cols] <= max_cost
    return rows[keep], cols[keep]


class _RowLog:
    """Every linked detection as growing columns (amortised O(1) appends, no per-frame objects)."""

    def __init__(self, keep_embeddings: bool) -> None:
        self.keep_embeddings = keep_embeddings
        self.n = 0
        self.dim = 0
        self.cols: dict[str, np.ndarray] = {}

    def _grow(self, need: int) -> None:
        size = max(1024, need, 2 * len(self.cols.get("frame", ())))
        shapes = {"frame": (), "id": (), "index": (), "xyxy": (4,), "confidence": (), "landmarks": (5, 2),
                  "embedding": (self.dim,) if self.keep_embeddings else (0,)}
        dtypes = {"frame": np.int64, "id": np.int64, "index": np.int64}
        grown = {k: np.zeros((size, *shape), dtypes.get(k, np.float32)) for k, shape in shapes.items()}
        for k, old in self.cols.items():
            if k == "embedding":
                grown[k][: self.n, : old.shape[1]] = old[: self.n]
            else:
                grown[k][: self.n] = old[: self.n]
        self.cols = grown

    def append(self, frame: int, ids: np.ndarray, faces: FrameFaces) -> None:
        k = len(ids)
        if self.keep_embeddings and faces.dim and faces.dim != self.dim:
            self.dim = faces.dim  # the first embedded frame: widen the (zero) column
            self._grow(self.n + k)
        if not self.cols or self.n + k > len(self.cols["frame"]):
            self._grow(self.n + k)
        end = self.n + k
        c = self.cols
        c["frame"][self.n:end] = frame
        c["id"][self.n:end] = ids
        c["index"][self.n:end] = np.arange(k)
        c["xyxy"][self.n:end] = faces.xyxy
        c["confidence"][self.n:end] = faces.confidence
        c["landmarks"][self.n:end] = faces.landmarks
        if self.keep_embeddings and faces.dim:
            c["embedding"][self.n:end] = faces.embedding
        self.n = end

    def tracks(self, shot_of: dict[int, int]) -> list[FaceTrack]:
        """Group the rows by track id into tracks (vectorised)."""
        if not self.n:
            return []
        c = {k: v[: self.n] for k, v in self.cols.items()}
        order = np.lexsort((c["frame"], c["id"]))
        c = {k: v[order] for k, v in c.items()}
        ids = c["id"]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)]
        return [FaceTrack(int(ids[a]), shot_of.get(int(ids[a]), 0), c["frame"][a:b], c["xyxy"][a:b],
                          c["confidence"][a:b], c["landmarks"][a:b], c["embedding"][a:b],
                          face_index=c["index"][a:b]) for a, b in zip(starts, ends, strict=True)]


class FaceLinker:
    """Links faces frame by frame into sequences (see the module docstring).

    ``cost(track_boxes (t,4), track_embs (t,d), faces) -> (t,n)``, lower is better: by default
    :func:`make_cost` at its default weights; pass ``make_cost(...)`` with others, or any function.
    One call per frame, :meth:`update` (as norfair's ``Tracker.update``), then :meth:`finish`.
    ``keep_embeddings=False`` keeps the memory of a long video small: the tracks from :meth:`finish`
    then carry no embeddings (look them up by ``frames`` and ``face_index``), and the linker keeps
    the mean embedding of each sequence's first and last detections (:attr:`end_embeddings`).
    Frames without embeddings (width 0) may come between embedded ones.
    """

    def __init__(self, cost: CostFunction | None = None, max_cost: float = 0.5, max_gap: int = 3,
                 embedding_momentum: float = 0.5, keep_embeddings: bool = True) -> None:
        if not 0 < max_cost <= 1e5:
            raise ValueError(f"max_cost must be > 0, got {max_cost}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}")
        if not 0 <= embedding_momentum < 1:
            raise ValueError(f"embedding_momentum must be in [0, 1), got {embedding_momentum}")
        self.cost = cost or make_cost()
        self.max_cost, self.max_gap = float(max_cost), int(max_gap)
        self.momentum = float(embedding_momentum)
        self.shot = 0
        self._next_id = 0
        self._last_frame: int | None = None
        self._dim = 0
        # live tracks, parallel arrays; _emb: recent embeddings (moving average), _head: first ones
        self._ids = np.zeros(0, np.int64)
        self._box = np.zeros((0, 4), np.float64)
        self._vel = np.zeros((0, 4), np.float64)
        self._seen = np.zeros(0, np.int64)
        self._emb = np.zeros((0, 0), np.float32)
        self._head = np.zeros((0, 0), np.float32)
        self._head_n = np.zeros(0, np.int64)
        self._shot_of: dict[int, int] = {}
        self._log = _RowLog(keep_embeddings)
        #: track id -> (mean embedding of its first detections, recent embedding at its end), unit vectors
        self.end_embeddings: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def new_shot(self, shot: int | None = None) -> None:
        """A cut: end every live sequence; later sequences belong to ``shot`` (default: next)."""
        self.shot = self.shot + 1 if shot is None else int(shot)
        self._keep(np.zeros(len(self._ids), bool))

    def _keep(self, mask: np.ndarray) -> None:
        if self._dim:
            for i in np.flatnonzero(~mask).tolist():
                head = self._head[i] / max(float(np.linalg.norm(self._head[i])), 1e-12)
                self.end_embeddings[int(self._ids[i])] = (head, self._emb[i].copy())
        self._ids, self._box, self._vel = self._ids[mask], self._box[mask], self._vel[mask]
        self._seen, self._emb, self._head, self._head_n = (self._seen[mask], self._emb[mask], self._head[mask],
                                                           self._head_n[mask])

    def _widen(self, dim: int) -> None:
        """The first embedded frame: embeddings of ``dim`` values from now on."""
        self._dim = dim
        self._emb = np.zeros((len(self._ids), dim), np.float32)
        self._head = np.zeros((len(self._ids), dim), np.float32)

    def update(self, faces: FrameFaces, frame_index: int | None = None) -> FrameFaces:
        """A copy of ``faces`` with ``track_id`` filled in (the input is not changed); remembers the
        frame for :meth:`finish`. ``frame_index`` overrides ``faces.frame_index``. Frames come in
        increasing order; a frame without faces still ages the live sequences."""
        return faces.with_track_ids(self._link(faces, frame_index))

    def _link(self, faces: FrameFaces, frame_index: int | None) -> np.ndarray:
        """Track ids (n,) for this frame's faces, in order."""
        frame = faces.frame_index if frame_index is None else int(frame_index)
        if self._last_frame is not None and frame <= self._last_frame:
            raise ValueError(f"frames must come in increasing order: {frame} after {self._last_frame}")
        self._last_frame = frame
        if len(self._ids):
            alive = frame - self._seen - 1 <= self.max_gap
            if not alive.all():
                self._keep(alive)
        n = len(faces)
        ids = np.full(n, -1, np.int64)
        if n == 0:
            return ids
        if faces.dim and faces.dim != self._dim:
            if self._dim:
                raise ValueError(f"frame {frame}: embeddings have {faces.dim} values, earlier frames {self._dim}")
            self._widen(faces.dim)
        emb = faces.embedding if faces.dim else np.zeros((n, self._dim), np.float32)
        rows = cols = np.zeros(0, np.int64)
        if len(self._ids):
            predicted = self._box + self._vel * (frame - self._seen)[:, None]
            rows, cols = match(self.cost(predicted, self._emb, faces), self.max_cost)
        ids[cols] = self._ids[rows]
        boxes = faces.xyxy.astype(np.float64)
        if len(rows):
            dt = (frame - self._seen[rows])[:, None]
            self._vel[rows] = 0.5 * self._vel[rows] + 0.5 * (boxes[cols] - self._box[rows]) / dt
            self._box[rows] = boxes[cols]
            self._seen[rows] = frame
            if faces.dim:
                self._mix(rows, emb[cols])
        new = np.flatnonzero(ids < 0)
        if len(new):
            fresh = np.arange(self._next_id, self._next_id + len(new))
            self._next_id += len(new)
            ids[new] = fresh
            self._shot_of.update(dict.fromkeys(fresh.tolist(), self.shot))
            self._ids = np.concatenate([self._ids, fresh])
            self._box = np.concatenate([self._box, boxes[new]])
            self._vel = np.concatenate([self._vel, np.zeros((len(new), 4))])
            self._seen = np.concatenate([self._seen, np.full(len(new), frame)])
            self._emb = np.concatenate([self._emb, emb[new]])
            self._head = np.concatenate([self._head, emb[new]])
            self._head_n = np.concatenate([self._head_n, np.full(len(new), int(faces.dim > 0))])
        self._log.append(frame, ids, faces)
        return ids

    def _mix(self, rows: np.ndarray, emb: np.ndarray) -> None:
        """Fold matched embeddings into the tracks' moving average (a track without any yet simply
        takes the new one: its average is zero) and into the sums of their first few."""
        mixed = self.momentum * self._emb[rows] + (1 - self.momentum) * emb
        self._emb[rows] = mixed / np.maximum(np.sqrt(np.einsum("ij,ij->i", mixed, mixed)), 1e-12)[:, None]
        early = self._head_n[rows] < _END_SAMPLES
        if early.any():
            self._head[rows[early]] += emb[early]
            self._head_n[rows[early]] += 1

    def finish(self) -> list[FaceTrack]:
        """Every sequence seen so far (ordered by id); ends the live ones. Call once, at the end."""
        self._keep(np.zeros(len(self._ids), bool))
        self._last_frame = None
        tracks = self._log.tracks(self._shot_of)
        self._log = _RowLog(self._log.keep_embeddings)
        return tracks


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
