"""Adaptive analysis: which frames get full analysis, over plain data (no model, no video).

The thesis behind the project got its speed from video: analyse frames at an interval, always on
both sides of a shot cut, and where two analysed frames disagree, analyse the frames between them
(binary search); boxes in between come from the sequences (``postprocess/interpolate.py``). Its
weakness, a face that enters and leaves between two analysed frames, is closed here by a cheap
detection pass on every frame (the *net*, ``faceblur/adaptive.py``): a net candidate that the
sequences between two analysed frames do not explain gets its frame fully analysed.

Two analysed frames ``a < b`` of one shot **agree** when every face of one is paired with a face of
the other by the plan's own link cost (``postprocess.tracking.make_cost``: box overlap, centre
distance, and the embedding distance where both carry embeddings, so an identity change
disagrees) at or below ``max_cost``, directly: so the plan's linker, which matches the same two
frames with the same cost (and a motion prediction), links them too. (Following each face through
the net's candidates frame by frame was tried: it let a face that moves more than its size between
``a`` and ``b`` count as paired, but the plan then did not link it, and a development clip lost
14% of its faces. Moving faces are therefore analysed more densely.) A candidate scoring under
``hold_below`` that one frame lacks is still paired where that frame's full analysis has a *weak*
response there (``Look.weak``: the detector's responses under the candidate score): such
candidates flicker over and under the candidate score frame by frame, and searching each crossing
analysed a still clip on half its frames (:func:`holds`). **Off by default** (``hold_below`` 0):
the plan never sees the weak responses, so it ended a held dim face's sequence after ``max_gap``
analysed frames where the scheduler kept it and left frames uncovered; giving the plan those
responses instead diluted the dim faces' sequences on the development set's hardest dim clip
(recall 0.951 -> 0.886). Recall first, so low candidates are searched; the mechanism stays as a
config knob. A window
``a..b`` is settled when

* ``b = a + 1`` (nothing in between), or
* ``a`` and ``b`` agree, and every net candidate on every frame between is explained: paired (cost
  ``net_cost``) with a box interpolated between the paired faces of ``a`` and ``b``, or with a net
  candidate that a full analysis at ``a`` or ``b`` rejected (a net false positive that stays put).

Otherwise :func:`next_frame` names the frame to analyse: on disagreement, next to the change in the
number of net candidates nearest the middle, else the middle (:func:`split_point`); else the frame
with the most unexplained candidates (``net``). :func:`resolve` repeats that until every window is
settled. :class:`IntervalPolicy` adapts the interval: halved after a window that needed extra
analysis, doubled after one that did not, within ``min_interval .. max_interval``.
:func:`is_cut_candidate` marks frames to analyse on both sides: any frame whose softened signature
distance reaches half the plan's cut threshold (the plan cuts only at such frames, see
``postprocess/shots.py``), so no sequence of the plan starts or ends in a frame nobody analysed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from contract import FrameFaces
from postprocess.tracking import CostFunction, make_cost, match

log = logging.getLogger(__name__)

#: why a frame was fully analysed (the run summary counts them)
REASONS = ("start", "interval", "cut", "end", "disagreement", "net")


@dataclass(frozen=True)
class ScheduleConfig:
    """The scheduler's knobs (``face-blur run --help``)."""

    min_interval: int = 2
    max_interval: int = 16
    max_cost: float = 0.5  # faces of two analysed frames are one face at this link cost (PlanConfig.max_cost)
    net_cost: float = 0.5  # a net candidate is explained by an expected box at this cost (box + distance)
    cut_threshold: float = 0.5  # PlanConfig.cut_threshold; candidates at half of it
    hold_below: float = 0.0  # (off) a candidate scoring under this is still there where a weak response is

    def __post_init__(self) -> None:
        if not 1 <= self.min_interval <= self.max_interval <= 250:
            raise ValueError("analysis intervals need 1 <= min_interval <= max_interval <= 250, got "
                             f"{self.min_interval}, {self.max_interval}")
        if not 0 < self.max_cost <= 1:
            raise ValueError(f"max_cost must be in (0, 1], got {self.max_cost}")
        if not 0 < self.net_cost <= 1:
            raise ValueError(f"net_cost must be in (0, 1], got {self.net_cost}")
        if not 0 <= self.hold_below <= 1:
            raise ValueError(f"hold_below must be in [0, 1], got {self.hold_below}")
        if not self.cut_threshold > 0:
            raise ValueError(f"cut_threshold must be > 0, got {self.cut_threshold}")


@dataclass
class Look:
    """What a full analysis found at ``frame``: its faces (the candidates the plan gets), the net's
    candidates on that frame (to learn which candidates are net false positives), and ``weak``: the
    detector's responses under the candidate score (only to tell a candidate that dipped under it
    from one that is gone; the plan never sees them)."""

    frame: int
    faces: FrameFaces
    net: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    weak: FrameFaces = field(default_factory=FrameFaces.empty)

    def __post_init__(self) -> None:
        self.net = np.asarray(self.net, np.float32).reshape(-1, 4)


def _faces(boxes: np.ndarray) -> FrameFaces:
    n = len(boxes)
    return FrameFaces(np.asarray(boxes, np.float32).reshape(n, 4), np.ones(n), np.zeros((n, 5, 2)), np.zeros((n, 0)))


def pair(a: Look, b: Look, cost: CostFunction, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Faces of ``a`` (rows) paired one-to-one with faces of ``b`` (cols) at cost <= ``max_cost``."""
    if not len(a.faces) or not len(b.faces):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return match(cost(a.faces.xyxy, a.faces.embedding, b.faces), max_cost)


def agree(a: Look, b: Look, cost: CostFunction, max_cost: float, hold_below: float = 0.0) -> bool:
    """Every face of ``a`` paired with one of ``b`` and the other way round; a face scoring under
    ``hold_below`` may pair with a weak response of the other frame instead (see :func:`holds`)."""
    rows, cols = pair(a, b, cost, max_cost)
    if len(rows) == len(a.faces) == len(b.faces):
        return True
    return holds(a, b, rows, cols, cost, max_cost, hold_below)


def holds(a: Look, b: Look, rows: np.ndarray, cols: np.ndarray, cost: CostFunction, max_cost: float,
          hold_below: float) -> bool:
    """Whether every face of ``a`` and ``b`` left unpaired by (``rows``, ``cols``) scores under
    ``hold_below`` and is paired with a weak response of the other frame: a low candidate that
    dipped under the candidate score (its score flickers around it frame by frame), not one that
    appeared or left. Such a candidate is seen again at the next analysed frames, where the plan
    bridges the gap; one that really leaves is gone from the weak responses too, and disagrees."""
    for here, there, paired in ((a, b, rows), (b, a, cols)):
        left = np.setdiff1d(np.arange(len(here.faces)), paired)
        if not len(left):
            continue
        if not len(there.weak) or (here.faces.confidence[left] >= hold_below).any():
            return False
        r, _ = match(cost(here.faces.xyxy[left], np.zeros((len(left), 0)), there.weak), max_cost)
        if len(r) < len(left):
            return False
    return True


def split_point(a: Look, b: Look, net: Mapping[int, np.ndarray]) -> int:
    """Where to analyse between two disagreeing frames: on either side of the change nearest the
    middle in the number of net candidates (where a face most likely appears or leaves), else the
    middle (plain binary search)."""
    middle = (a.frame + b.frame) / 2
    counts = [len(a.net)] + [len(net.get(f, ())) for f in range(a.frame + 1, b.frame)] + [len(b.net)]
    best, best_distance = (a.frame + b.frame) // 2, np.inf
    for k in range(1, len(counts)):
        if counts[k] == counts[k - 1]:
            continue
        for frame in (a.frame + k - 1, a.frame + k):
            if a.frame < frame < b.frame and abs(frame - middle) < best_distance:
                best, best_distance = frame, abs(frame - middle)
    return best


def expected_boxes(a: Look, b: Look, rows: np.ndarray, cols: np.ndarray, frame: int) -> np.ndarray:
    """Boxes of the paired faces linearly interpolated to ``frame`` (between ``a`` and ``b``)."""
    t = (frame - a.frame) / max(b.frame - a.frame, 1)
    return ((1 - t) * a.faces.xyxy[rows] + t * b.faces.xyxy[cols]).astype(np.float32)


def rejected(look: Look, position: CostFunction, net_cost: float) -> np.ndarray:
    """Net candidates at an analysed frame that the full analysis did not confirm."""
    if not len(look.net):
        return look.net
    if not len(look.faces):
        return look.net
    rows, _ = match(position(look.net, np.zeros((len(look.net), 0)), _faces(look.faces.xyxy)), net_cost)
    keep = np.ones(len(look.net), bool)
    keep[rows] = False
    return look.net[keep]


def unexplained(candidates: np.ndarray, expected: np.ndarray, known_false: np.ndarray,
                position: CostFunction, net_cost: float) -> int:
    """How many net candidates neither an expected box (one-to-one) nor a known net false positive
    (any number) explains."""
    candidates = np.asarray(candidates, np.float32).reshape(-1, 4)
    if not len(candidates):
        return 0
    left = np.ones(len(candidates), bool)
    if len(expected):
        rows, _ = match(position(candidates, np.zeros((len(candidates), 0)), _faces(expected)), net_cost)
        left[rows] = False
    if left.any() and len(known_false):
        c = position(candidates[left], np.zeros((int(left.sum()), 0)), _faces(known_false))
        hit = (np.asarray(c) <= net_cost).any(axis=1)
        idx = np.flatnonzero(left)
        left[idx[hit]] = False
    return int(left.sum())


@dataclass
class Scheduler:
    """The decisions over plain data; ``cost`` is the plan's link cost (default: its defaults)."""

    config: ScheduleConfig = field(default_factory=ScheduleConfig)
    cost: CostFunction | None = None

    def __post_init__(self) -> None:
        self.cost = self.cost or make_cost()
        self.position = make_cost(1.0, 1.0, 0.0)  # net candidates carry no embedding

    def next_frame(self, a: Look, b: Look, net: Mapping[int, np.ndarray]) -> tuple[int, str] | None:
        """The frame between ``a`` and ``b`` to analyse next and why, or None: the window is settled."""
        if b.frame - a.frame <= 1:
            return None
        rows, cols = pair(a, b, self.cost, self.config.max_cost)
        if not len(rows) == len(a.faces) == len(b.faces) and \
                not holds(a, b, rows, cols, self.cost, self.config.max_cost, self.config.hold_below):
            log.debug("frames %d and %d disagree: %d and %d faces, %d paired", a.frame, b.frame, len(a.faces),
                      len(b.faces), len(rows))
            return split_point(a, b, net), "disagreement"
        known = np.concatenate([rejected(a, self.position, self.config.net_cost),
                                rejected(b, self.position, self.config.net_cost)])
        best, best_count = -1, 0
        for frame in range(a.frame + 1, b.frame):
            candidates = net.get(frame)
            if candidates is None or not len(candidates):
                continue
            n = unexplained(candidates, expected_boxes(a, b, rows, cols, frame), known, self.position,
                            self.config.net_cost)
            if n > best_count:
                best, best_count = frame, n
        return (best, "net") if best_count else None

    def resolve(self, a: Look, b: Look, net: Mapping[int, np.ndarray],
                analyse: Callable[[int, str], Look]) -> list[Look]:
        """Analyse frames between ``a`` and ``b`` (``analyse(frame, reason)``) until every window is
        settled; returns the new looks in frame order."""
        found: list[Look] = []
        todo = [(a, b)]
        while todo:
            lo, hi = todo.pop()
            step = self.next_frame(lo, hi, net)
            if step is None:
                continue
            look = analyse(*step)
            found.append(look)
            todo += [(look, hi), (lo, look)]
        return sorted(found, key=lambda look: look.frame)


@dataclass
class IntervalPolicy:
    """The adaptive interval: halved after a window that needed extra analysis, doubled after one
    that did not (the thesis: adapted to how often the interval has to be reprocessed)."""

    config: ScheduleConfig = field(default_factory=ScheduleConfig)
    interval: int = 0

    def __post_init__(self) -> None:
        self.interval = self.interval or self.config.min_interval

    def after(self, extra: int) -> int:
        """Record a settled window that needed ``extra`` analyses; returns the next interval."""
        c = self.config
        self.interval = max(c.min_interval, self.interval // 2) if extra else min(c.max_interval, self.interval * 2)
        return self.interval


def is_cut_candidate(distance: float, config: ScheduleConfig) -> bool:
    """A frame whose softened signature distance to the previous one could start a shot in the plan
    (``postprocess.shots``: a cut needs at least half the threshold)."""
    return distance >= config.cut_threshold / 2


@dataclass
class Tally:
    """How many frames were fully analysed, and why."""

    frames: int = 0
    reasons: Counter = field(default_factory=Counter)
    closeups_reused: int = 0  # full analyses whose close-up pass was the net's (faceblur/adaptive.py)

    @property
    def analysed(self) -> int:
        return sum(self.reasons.values())

    def to_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "analysed": self.analysed} | {r: self.reasons.get(r, 0) for r in REASONS}

    def line(self) -> str:
        share = f" ({100 * self.analysed / self.frames:.0f}%)" if self.frames else ""
        why = ", ".join(f"{r} {self.reasons[r]}" for r in REASONS if self.reasons.get(r))
        return f"analysis adaptive: {self.analysed} of {self.frames} frames fully analysed{share}: {why or '-'}"
