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
Low-score candidates (below ``weak_score``; most are noise, see postprocess/confirm.py) continue a
sequence whose last detection was confident only where they sit on its predicted box (cost at most
``weak_max_cost``), and never steer its motion: noise next to a face cannot hijack its sequence (the
frame becomes a gap, filled from the face's own detections).
``new_shot()`` ends every sequence: no sequence crosses a cut. :func:`join_tracks` afterwards joins
a sequence ending and another starting up to ``join_gap`` frames later in the same shot, with the
same cost on the extrapolated box and the mean embeddings of their ends.

For long videos ``FaceLinker(keep_embeddings=False)`` keeps memory small: detections are logged as
flat columns without embeddings (``FaceTrack.face_index`` finds them in the frame result again) and
only each sequence's head and tail embedding is kept for joining.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

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
                 embedding_momentum: float = 0.5, keep_embeddings: bool = True,
                 weak_score: float = 0.0, weak_max_cost: float = 0.3) -> None:
        if not 0 < max_cost <= 1e5:
            raise ValueError(f"max_cost must be > 0, got {max_cost}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}")
        if not 0 <= embedding_momentum < 1:
            raise ValueError(f"embedding_momentum must be in [0, 1), got {embedding_momentum}")
        if not 0 < weak_max_cost <= max_cost:
            raise ValueError(f"weak_max_cost must be in (0, max_cost], got {weak_max_cost}")
        self.cost = cost or make_cost()
        self.weak_score, self.weak_max_cost = float(weak_score), float(weak_max_cost)
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
        self._strong = np.zeros(0, bool)  # the track's last detection scored weak_score or more
        self._tick = np.zeros(0, np.int64)  # clock of the last match (frames, or analysed frames)
        self._emb = np.zeros((0, 0), np.float32)
        self._head = np.zeros((0, 0), np.float32)
        self._head_n = np.zeros(0, np.int64)
        self._shot_of: dict[int, int] = {}
        self._log = _RowLog(keep_embeddings)
        #: track id -> (mean embedding of its first detections, recent embedding at its end), unit vectors
        self.end_embeddings: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fork(self) -> FaceLinker:
        """A copy of the live sequences (boxes, motion, gap clocks, recent embeddings) that links on
        from here exactly as this linker would, without the detections logged so far: adaptive
        analysis (``faceblur/schedule.py``) tries the next analysed frame on a fork to see how the
        plan will link it."""
        other = copy.copy(self)
        for name in ("_ids", "_box", "_vel", "_seen", "_strong", "_tick", "_emb", "_head", "_head_n"):
            setattr(other, name, getattr(self, name).copy())
        other._shot_of, other.end_embeddings = {}, {}
        other._log = _RowLog(self._log.keep_embeddings)
        return other

    @property
    def live(self) -> np.ndarray:
        """Ids of the live sequences (those the next frame's faces may continue)."""
        return self._ids.copy()

    @property
    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """(t,4) last detected box and (t,) its frame, of each live sequence (order of :attr:`live`)."""
        return self._box.copy(), self._seen.copy()

    @property
    def strong(self) -> np.ndarray:
        """(t,) whether each live sequence (order of :attr:`live`) is a confidently detected face: its
        last detection that steered it scored ``weak_score`` or more."""
        return self._strong.copy()

    def new_shot(self, shot: int | None = None) -> None:
        """A cut: end every live sequence; later sequences belong to ``shot`` (default: next)."""
        self.shot = self.shot + 1 if shot is None else int(shot)
        self._keep(np.zeros(len(self._ids), bool))

    def _keep(self, mask: np.ndarray) -> None:
        if self._dim:
            for i in np.flatnonzero(~mask).tolist():
                head = self._head[i] / max(float(np.linalg.norm(self._head[i])), 1e-12)
                self.end_embeddings[int(self._ids[i])] = (head, self._emb[i].copy())
        self._ids, self._box, self._vel, self._strong = (self._ids[mask], self._box[mask], self._vel[mask],
                                                         self._strong[mask])
        self._seen, self._emb, self._head, self._head_n = (self._seen[mask], self._emb[mask], self._head[mask],
                                                           self._head_n[mask])
        self._tick = self._tick[mask]

    def _widen(self, dim: int) -> None:
        """The first embedded frame: embeddings of ``dim`` values from now on."""
        self._dim = dim
        self._emb = np.zeros((len(self._ids), dim), np.float32)
        self._head = np.zeros((len(self._ids), dim), np.float32)

    def update(self, faces: FrameFaces, frame_index: int | None = None, tick: int | None = None) -> FrameFaces:
        """A copy of ``faces`` with ``track_id`` filled in (the input is not changed); remembers the
        frame for :meth:`finish`. ``frame_index`` overrides ``faces.frame_index``. Frames come in
        increasing order; a frame without faces still ages the live sequences. ``tick`` (default: the
        frame number) is the clock ``max_gap`` counts in: adaptive analysis passes the number of
        analysed frames so far, so a sequence survives ``max_gap`` analysed frames without a match
        however far apart they lie; motion is still per frame."""
        return faces.with_track_ids(self._link(faces, frame_index, tick))

    def _link(self, faces: FrameFaces, frame_index: int | None, tick: int | None = None) -> np.ndarray:
        """Track ids (n,) for this frame's faces, in order."""
        frame = faces.frame_index if frame_index is None else int(frame_index)
        now = frame if tick is None else int(tick)
        if self._last_frame is not None and frame <= self._last_frame:
            raise ValueError(f"frames must come in increasing order: {frame} after {self._last_frame}")
        self._last_frame = frame
        if len(self._ids):
            alive = now - self._tick - 1 <= self.max_gap
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
            costs = np.asarray(self.cost(predicted, self._emb, faces), np.float64)
            weak = faces.confidence < self.weak_score
            if weak.any() and self._strong.any():
                # a weak candidate continues a confidently detected face only where it sits on it
                guard = self._strong[:, None] & weak[None, :] & (costs > self.weak_max_cost)
                costs = np.where(guard, np.inf, costs)
            rows, cols = match(costs, self.max_cost)
        ids[cols] = self._ids[rows]
        boxes = faces.xyxy.astype(np.float64)
        strong = faces.confidence >= self.weak_score
        if len(rows):
            dt = (frame - self._seen[rows])[:, None]
            step = 0.5 * self._vel[rows] + 0.5 * (boxes[cols] - self._box[rows]) / dt
            # a weak candidate on a strong track does not steer its motion
            steer = strong[cols] | ~self._strong[rows]
            self._vel[rows] = np.where(steer[:, None], step, self._vel[rows])
            self._box[rows] = boxes[cols]
            self._seen[rows] = frame
            self._strong[rows] = strong[cols] | (self._strong[rows] & ~steer)
            self._tick[rows] = now
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
            self._strong = np.concatenate([self._strong, strong[new]])
            self._tick = np.concatenate([self._tick, np.full(len(new), now)])
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
