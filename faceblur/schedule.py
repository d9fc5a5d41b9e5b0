"""Adaptive analysis: which frames get full analysis, over plain data (no model, no video).

The thesis behind the project got its speed from video: analyse frames at an interval, always on
both sides of a shot cut, and where two analysed frames disagree, analyse the frames between them
(binary search); boxes in between come from the sequences (``postprocess/interpolate.py``). Its
weakness, a face that enters and leaves between two analysed frames, is closed here by a cheap
detection pass on every frame (the *net*, ``faceblur/adaptive.py``): a net candidate that the
sequences between two analysed frames do not explain gets its frame fully analysed.

Two analysed frames ``a < b`` of one shot **agree** when the plan will link them without a
sequence starting or ending between them. The scheduler knows how the plan will link them because
it runs the plan's own linker (``postprocess.plan.plan_linker``: the same cost, ``max_cost``,
``max_gap``, weak-candidate guard, embeddings in the identity modes, all from the plan's options)
over the analysed frames in frame order, as ``make_plan`` does: the same faces (the plan links
every face of every analysed frame; confirmation comes after linking), the same gap clock (analysed
frames), and a new shot where the plan's own cut detector (``postprocess.plan.plan_cutter``, over
every frame's signature) starts one. Windows are settled left to right, so the linker's state at
``a`` is final when ``a..b`` is decided, and a frame analysed between them is linked from ``a``'s
state exactly as the plan will link it. ``a`` and ``b`` agree when linking ``b``'s faces from ``a``'s
state gives every face of ``b`` a sequence that was live at ``a`` (nothing appeared) and continues
every sequence that had a face at ``a`` (nothing left). The linker predicts motion, so a face that
moves steadily agrees over more frames than a direct pairing of the two frames allowed. (Following
faces through the net's candidates was tried before and lost 14% of a clip's faces: the plan did
not link what the scheduler paired. Here the scheduler's links *are* the plan's.) A window
``a..b`` is settled when

* ``b = a + 1`` (nothing in between), or
* only low candidates start or end between them, within the reach of the plan's padding
  (:meth:`Scheduler._flicker`; further away, the frame one reach from that end is analysed, reason
  ``flicker``), and every net candidate is explained as below, or
* ``a`` and ``b`` agree, and every net candidate on every frame between is explained: paired (cost
  ``net_cost``) with the box the plan will interpolate for a sequence the linker continued at ``b``
  (linear from its last detection at or before ``a`` to ``b``), or with a net candidate that a full
  analysis at ``a`` or ``b`` rejected (a net false positive that stays put).

Otherwise :func:`Scheduler.next_frame` names the frame to analyse: on disagreement, next to the
change in the number of net candidates nearest the middle, else the middle (:func:`split_point`);
else the frame with the most unexplained candidates (``net``). :meth:`Scheduler.resolve` repeats
that until every window is settled. :class:`IntervalPolicy` adapts the interval: halved after a
window that needed extra analysis, doubled after one that did not, within ``min_interval ..
max_interval``, and at most ``held_interval`` while the chain holds a low candidate whose evidence
is in question: detected on fewer than ``settled_after`` analysed frames, or missing from the last
one (:meth:`Scheduler.holding`: a dim face's detections come close enough to link and confirm it,
and one that dipped is seen again before the linker lets it go; its end is not searched frame by
frame, which on texture that flickers all clip long was most of the analysis). Both sides of every
frame that may start a shot are analysed (``CutDetector.could_cut``: the plan cuts only at such
frames), so no sequence of the plan starts or ends in a frame nobody analysed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from contract import FrameFaces
from postprocess.tracking import CostFunction, FaceLinker, make_cost, match

log = logging.getLogger(__name__)

#: why a frame was fully analysed (the run summary counts them); ``held``: an interval frame that
#: came early, at ``held_interval``, because a low candidate's evidence was in question
REASONS = ("start", "interval", "held", "cut", "end", "disagreement", "flicker", "net")


@dataclass(frozen=True)
class ScheduleConfig:
    """The scheduler's knobs (``face-blur run --help``); how faces link and where shots cut are the
    plan's options (``PlanConfig``), through its linker and cut detector."""

    min_interval: int = 2
    max_interval: int = 16
    net_cost: float = 0.5  # a net candidate is explained by an expected box at this cost (box + distance)
    held_interval: int = 3  # the longest interval while a low candidate's evidence is in question
    settled_after: int = 3  # analysed frames that detect a low candidate before its evidence can wait
    still_within: float = 0.15  # a low candidate that stays within this share of its size can wait (0: never)

    def __post_init__(self) -> None:
        if not 1 <= self.min_interval <= self.max_interval <= 250:
            raise ValueError("analysis intervals need 1 <= min_interval <= max_interval <= 250, got "
                             f"{self.min_interval}, {self.max_interval}")
        if self.settled_after < 1:
            raise ValueError(f"settled_after must be >= 1 analysed frames, got {self.settled_after}")
        if not 1 <= self.held_interval <= 250:
            raise ValueError(f"held_interval must be in 1..250 frames, got {self.held_interval}")
        if not 0 <= self.still_within <= 1:
            raise ValueError(f"still_within must be in 0..1 of a box's size, got {self.still_within}")
        if not 0 < self.net_cost <= 1:
            raise ValueError(f"net_cost must be in (0, 1], got {self.net_cost}")


@dataclass
class Look:
    """What a full analysis found at ``frame``: its faces (what the plan gets), and the net's
    candidates on that frame (to learn which candidates are net false positives)."""

    frame: int
    faces: FrameFaces
    net: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def __post_init__(self) -> None:
        self.net = np.asarray(self.net, np.float32).reshape(-1, 4)


def _faces(boxes: np.ndarray) -> FrameFaces:
    n = len(boxes)
    return FrameFaces(np.asarray(boxes, np.float32).reshape(n, 4), np.ones(n), np.zeros((n, 5, 2)), np.zeros((n, 0)))


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


def _plan_linker() -> FaceLinker:
    from postprocess.config import PlanConfig
    from postprocess.plan import plan_linker

    return plan_linker(PlanConfig(), "")


def _no_cut(frame: int) -> bool:
    return False


@dataclass
class Scheduler:
    """The decisions over plain data, and the chain of the plan's linker over the analysed frames.

    ``linker``: a fresh linker as the plan builds it (``postprocess.plan.plan_linker``; default: the
    plan's defaults). ``cut_at(frame)``: whether the plan starts a shot at that frame (its cut
    detector's decision; asked only once the chain reaches the frame, so the driver must know it by
    then). Analysed frames enter the chain in frame order: those analysed outside a window (the first
    frame, both sides of a cut) through :meth:`begin`, the rest through :meth:`resolve`."""

    config: ScheduleConfig = field(default_factory=ScheduleConfig)
    linker: FaceLinker = field(default_factory=_plan_linker)
    cut_at: Callable[[int], bool] = _no_cut
    pad_frames: int = 5  # PlanConfig.pad_frames: the plan extends every sequence so far at both ends

    def __post_init__(self) -> None:
        self.position = make_cost(1.0, 1.0, 0.0)  # net candidates carry no embedding
        self._tick = 0  # analysed frames linked so far: the plan's gap clock
        self._at: Look | None = None  # the last frame linked
        self._ids = np.zeros(0, np.int64)  # its faces' sequences
        # of each live sequence: (detections so far, its first detected box)
        self._seen: dict[int, tuple[int, np.ndarray]] = {}
        self._queue: list[Look] = []

    def begin(self, look: Look) -> None:
        """A frame analysed outside a window; it is linked when a window after it is resolved."""
        self._queue.append(look)

    def _link(self, look: Look) -> tuple[FaceLinker, np.ndarray]:
        """The linker after linking ``look``'s faces (a fork of the chain's) and their sequences, as
        ``make_plan`` links an analysed frame."""
        linker = self.linker.fork()
        if self.cut_at(look.frame):
            linker.new_shot()
        if not len(look.faces):  # the plan skips faceless frames; the gap clock still counts them
            return linker, np.zeros(0, np.int64)
        return linker, linker.update(look.faces, frame_index=look.frame, tick=self._tick).track_id

    def _advance(self, look: Look, linked: tuple[FaceLinker, np.ndarray] | None = None) -> None:
        self.linker, self._ids = linked or self._link(look)
        for i, box in zip(self._ids.tolist(), look.faces.xyxy, strict=True):
            count, first = self._seen.get(i, (0, box))
            self._seen[i] = (count + 1, first)
        if len(self._seen) > 4 * len(self.linker.live) + 64:  # forget sequences that ended
            self._seen = {i: self._seen[i] for i in self.linker.live.tolist() if i in self._seen}
        self._tick += 1
        self._at = look

    def _catch_up(self, a: Look) -> None:
        while self._queue and self._queue[0].frame <= a.frame:
            self._advance(self._queue.pop(0))
        if self._at is None:
            self._advance(a)
        if self._at.frame != a.frame:
            raise ValueError(f"the chain is at frame {self._at.frame}, not at the window's start {a.frame}")

    def _expected(self, ids: np.ndarray, boxes: np.ndarray, b: int, frame: int) -> np.ndarray:
        """Boxes at ``frame`` of the sequences ``ids`` continued by ``boxes`` at frame ``b``: linear
        from each one's last detection to its box at ``b``, as the plan fills the gap."""
        if not len(ids):
            return np.zeros((0, 4), np.float32)
        box, seen = self.linker.boxes
        rows = np.searchsorted(self.linker.live, ids)  # live ids are increasing (new ones come last)
        t = ((frame - seen[rows]) / np.maximum(b - seen[rows], 1))[:, None]
        return ((1 - t) * box[rows] + t * boxes).astype(np.float32)

    def _flicker(self, a: Look, b: Look, born: np.ndarray, left: np.ndarray) -> tuple[int, str] | None:
        """Where to look when only low candidates (under the linker's ``weak_score``, the plan's
        ``face_score``; most are noise that flickers frame by frame) start (``born``, faces of
        ``b``) or end (``left``, faces of ``a``) between ``a`` and ``b``: nowhere when the plan's
        padding (``pad_frames`` at each end of every sequence) spans the window, so such a candidate,
        if it is a face, is blurred on the frames between either way; else one padding's reach from
        the end concerned (``a`` for an end, ``b`` for a start), so that where it is gone there, the
        rest is spanned. A disagreement of confident faces returns None too (not a flicker)."""
        weak = self.linker.weak_score
        if self.pad_frames < 1 or not ((b.faces.confidence[born] < weak).all() and
                                       (a.faces.confidence[left] < weak).all()):
            return None
        reach = self.pad_frames + 1
        if b.frame - a.frame <= reach:
            return -1, "flicker"  # settled
        return (a.frame + reach if left.any() else b.frame - reach), "flicker"

    def holding(self) -> bool:
        """Whether the chain holds a low candidate's sequence (not confidently detected:
        :attr:`FaceLinker.strong`) whose evidence is still in question: detected on fewer than
        ``settled_after`` analysed frames (3), or missing from the last one (a dim face that dipped
        under the candidate score, or texture). The driver keeps the interval within
        ``held_interval`` (3) while it does. A dim face (CenterFace 0.05-0.2 on most frames, 0.3 on a
        few) is confirmed over time by the plan only if its detections link into one sequence long
        enough for the rule (``min_candidates`` 5, the frames between detections counted): 22 px
        moving 2 px a frame, detections 6-10 frames apart did not link and left it clear on all 40
        frames of a clip that every-frame analysis blurs whole; 3 detections 3 frames apart span 7.
        And a face that dipped is seen again before the linker lets it go (``max_gap``).

        Except a still one (session 6): a low candidate detected on 2 analysed frames or more whose
        last detected box lies within ``still_within`` (0.15) of its size of its first, every side.
        Its linking does not depend on its motion, so it links over any interval; texture in a
        still scene (the top border of ``still``, 0.05-0.08 for 200 frames) held the interval at 3
        for the whole clip (31% of its frames analysed, 24% with the exception).

        Frames analysed outside a window (:meth:`begin`) are linked first: the driver asks once the
        plan's cut decision for them is known, and the next window starts at the last of them."""
        while self._queue:
            self._advance(self._queue.pop(0))
        if self._at is None or not len(self.linker.live):
            return False
        box, last = self.linker.boxes
        live = self.linker.live.tolist()
        counts = np.array([self._seen.get(i, (0,))[0] for i in live])
        open_ = (counts < self.config.settled_after) | (last < self._at.frame)
        if self.config.still_within:  # a still one links over any interval: its motion is not in question
            first = np.array([self._seen.get(i, (0, b))[1] for i, b in zip(live, box, strict=True)]).reshape(-1, 4)
            size = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
            open_ &= ~((counts >= 2) & (np.abs(box - first).max(axis=1) <= self.config.still_within * size))
        return bool((open_ & ~self.linker.strong).any())

    def _window(self, a: Look, b: Look, net: Mapping[int, np.ndarray]
                ) -> tuple[tuple[int, str] | None, tuple[FaceLinker, np.ndarray]]:
        """The frame between ``a`` (where the chain is) and ``b`` to analyse next and why, or None
        (settled); and the chain linked on to ``b``."""
        linked = self._link(b)
        if b.frame - a.frame <= 1:
            return None, linked
        _, ids = linked
        kept = np.isin(ids, self.linker.live)  # faces of b continuing a sequence
        left = ~np.isin(self._ids, ids)  # faces of a whose sequence b does not continue
        if not (kept.all() and not left.any()):
            log.debug("frames %d and %d disagree: %d faces appear, %d leave", a.frame, b.frame, int((~kept).sum()),
                      int(left.sum()))
            flicker = self._flicker(a, b, ~kept, left)
            if flicker is None:
                return (split_point(a, b, net), "disagreement"), linked
            if flicker[0] >= 0:
                return flicker, linked
        known = np.concatenate([rejected(a, self.position, self.config.net_cost),
                                rejected(b, self.position, self.config.net_cost)])
        best, best_count = -1, 0
        for frame in range(a.frame + 1, b.frame):
            candidates = net.get(frame)
            if candidates is None or not len(candidates):
                continue
            expected = self._expected(ids[kept], b.faces.xyxy[kept], b.frame, frame)
            n = unexplained(candidates, expected, known, self.position, self.config.net_cost)
            if n > best_count:
                best, best_count = frame, n
        return ((best, "net") if best_count else None), linked

    def next_frame(self, a: Look, b: Look, net: Mapping[int, np.ndarray]) -> tuple[int, str] | None:
        """The frame between ``a`` and ``b`` to analyse next and why, or None: the window is settled."""
        self._catch_up(a)
        return self._window(a, b, net)[0]

    def resolve(self, a: Look, b: Look, net: Mapping[int, np.ndarray],
                analyse: Callable[[int, str], Look]) -> list[Look]:
        """Analyse frames between ``a`` and ``b`` (``analyse(frame, reason)``) until every window is
        settled, left to right, linking each settled window's end; returns the new looks in frame
        order. The chain ends at ``b``."""
        self._catch_up(a)
        found: list[Look] = []
        ends, lo = [b], a
        while ends:
            step, linked = self._window(lo, ends[-1], net)
            if step is None:
                lo = ends.pop()
                self._advance(lo, linked)
                continue
            look = analyse(*step)
            found.append(look)
            ends.append(look)
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


@dataclass
class Tally:
    """How many frames were fully analysed, and why."""

    frames: int = 0
    reasons: Counter = field(default_factory=Counter)
    closeups_reused: int = 0  # full analyses whose close-up pass was the net's (faceblur/adaptive.py)
    nets_reused: int = 0  # frames that took the net's candidates of a still frame before them

    @property
    def analysed(self) -> int:
        return sum(self.reasons.values())

    def to_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "analysed": self.analysed} | {r: self.reasons.get(r, 0) for r in REASONS}

    def line(self) -> str:
        share = f" ({100 * self.analysed / self.frames:.0f}%)" if self.frames else ""
        why = ", ".join(f"{r} {self.reasons[r]}" for r in REASONS if self.reasons.get(r))
        still = f"; net skipped on {self.nets_reused} still frames" if self.nets_reused else ""
        return f"analysis adaptive: {self.analysed} of {self.frames} frames fully analysed{share}: {why or '-'}{still}"
