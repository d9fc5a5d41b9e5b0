"""``face-blur run --analysis adaptive``: the driver around ``faceblur/schedule.py``.

One decode of the video. For every frame, on ``workers`` threads: the signature (shot cuts, as
every frame result has) and the *net*, a cheap CenterFace pass on a copy whose longer side is
``net_side`` pixels (with the full detector's dark-frame step; see :class:`Net`, which is also the
close-up pass of a fully analysed 1080p frame). Frames wait in a
small buffer (at most ``max_interval`` of them) until the scheduler has settled their window; the
full analysis (the detector at full resolution with its landmarks, and embeddings in the identity
modes only) runs on the frames the scheduler names. The plan's cut detector runs over every
signature here too: after a frame that may start a shot, frames wait until the detector has decided
(``CutDetector.half`` frames later), so that the scheduler's linker starts a shot exactly where the
plan's will. Every frame then goes to the result store:
analysed frames with their faces, the others marked ``analysed=False`` with their signature, so
``make_plan`` covers them by interpolating along the sequences instead of reading "no face".

Embeddings: none in mode ``all`` (linking between analysed frames is by motion and box, and the
embedder is not even loaded); in the identity modes, every face of every analysed frame that scores
the pipeline's ``embed_min_score`` is embedded, by ``FacePipeline.embed_faces`` as on every other
path (a small fraction of the frames, spread by the interval, which identity samples from: at most
``PlanConfig.max_samples`` per sequence).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import FrameFaces, FrameResult
from faceblur.schedule import IntervalPolicy, Look, ScheduleConfig, Scheduler, Tally

log = logging.getLogger(__name__)

ANALYSES = ("adaptive", "every")


@dataclass(frozen=True)
class AdaptiveConfig:
    """``--analysis adaptive`` knobs (``face-blur run --help``); see the module docstrings."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    net_side: int = 480  # longer side of the net's copy of each frame, pixels
    net_threshold: float = 0.3  # CenterFace score a net candidate needs
    still_below: float = 4.0  # grey levels: a frame whose block means all moved less is still (0: off)
    still_span: int = 8  # frames at most that reuse one net pass

    def __post_init__(self) -> None:
        if not 64 <= self.net_side <= 4096:
            raise ValueError(f"net_side must be 64..4096 pixels, got {self.net_side}")
        if not 0 < self.net_threshold < 1:
            raise ValueError(f"net_threshold must be in (0, 1), got {self.net_threshold}")
        if not 0 <= self.still_below <= 255:
            raise ValueError(f"still_below must be 0..255 grey levels, got {self.still_below}")
        if not 0 <= self.still_span <= 250:
            raise ValueError(f"still_span must be 0..250 frames, got {self.still_span}")


#: cells along the longer side of the grey copy that tells a still frame (a 640x360 frame: 20 px cells)
STILL_CELLS = 32


def block_means(image: np.ndarray) -> np.ndarray:
    """Mean grey level of each cell of a grid ``STILL_CELLS`` cells long (about 20 px cells at
    640x360, 60 px at 1080p): sensor noise averages out over a cell (sigma 8 per pixel is about 0.4
    on a 20 px cell), a face that moves or enters does not (a face the net sees reliably, 32 px at
    640x360, covers at least two thirds of one cell)."""
    from PIL import Image

    h, w = image.shape[:2]
    cells = (STILL_CELLS, max(1, round(STILL_CELLS * h / w))) if w >= h else \
        (max(1, round(STILL_CELLS * w / h)), STILL_CELLS)
    return np.asarray(Image.fromarray(image).convert("L").resize(cells, Image.Resampling.BOX), np.float32)


@dataclass
class StillFrames:
    """Which frames the net may skip: a frame whose block means (:func:`block_means`) all lie within
    ``below`` grey levels of those of the last frame the net ran on, at most ``span`` frames back,
    reuses that frame's net candidates. Measured on the development videos (2026-12-02): the still
    clip's frames differ by at most 1 grey level, the dim still clip's (sensor noise, H.264) by 2;
    moving cameras and walking people by 50 or more; a threshold of 4 skips the net on 88% and 75%
    of those and never on the moving clips."""

    below: float = 4.0
    span: int = 8
    _ref: np.ndarray | None = None
    _ref_index: int = -(10**9)

    def fresh(self, index: int, image: np.ndarray) -> bool:
        """Whether the net must run on this frame (frames come in order)."""
        if not self.below or not self.span:
            return True
        means = block_means(image)
        if self._ref is not None and self._ref.shape == means.shape and index - self._ref_index <= self.span \
                and float(np.abs(means - self._ref).max()) < self.below:
            return False
        self._ref, self._ref_index = means, index
        return True


class Net:
    """The cheap detection pass: CenterFace on a downscaled copy, faces in frame pixels.

    Its own CenterFace session with one intra-op thread: the net runs on ``workers`` threads at once
    (frames in parallel, which costs less CPU per frame than threads inside one pass), while the
    full analysis keeps the detector's session. It sees what the full detector sees (the same
    dark-frame step, none by default) and keeps every candidate down to the detector's candidate
    score, so that where the full detector is CenterFace with a close-up pass (``coarse_side``, a
    1080p frame), the net's faces of a fully analysed frame *are* that pass (``closeup``): the
    frame gets one CenterFace pass less. The scheduler looks only at candidates scoring
    ``net_threshold`` or more (:meth:`boxes`)."""

    def __init__(self, pipeline, model_dir: Path | None, providers: list[str], config: AdaptiveConfig,
                 fixed_size: bool = False) -> None:
        from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
        from handler.detector import CANDIDATE_THRESHOLD, FrameDetector
        from handler.detector_factory import centerface_path

        detector = pipeline.detector
        backend = getattr(detector, "backend", None)
        full = isinstance(detector, FrameDetector) and isinstance(backend, CenterfaceDetector)
        floor = backend.options.threshold if full else CANDIDATE_THRESHOLD
        session = load_centerface(centerface_path(model_dir), providers, threads=1,
                                  fixed_size=fixed_size)  # PipelineConfig.fixed_size: one copy size per run
        self.backend = CenterfaceDetector(session, CenterfaceOptions(threshold=min(floor, config.net_threshold)))
        self.enhancer = getattr(detector, "enhancer", None)
        self.side = config.net_side
        self.threshold = config.net_threshold
        #: the net's faces serve as the full detector's close-up pass
        self.closeup = full and detector.border_pad == 0 and 0 < self.side <= detector.coarse_side
        #: the net's candidates guide the full detector's guided fine pass (README "Detection")
        self.guides = full and getattr(detector, "guide", None) is not None
        self._detectors: dict[tuple[int, int], object] = {}

    def detect(self, image: np.ndarray) -> FrameFaces:
        """Every candidate in ``image``'s pixels, with scores and landmarks."""
        from handler.detector import FrameDetector

        h, w = image.shape[:2]
        detector = self._detectors.get((h, w))
        if detector is None:  # min_face 4: the scale is set by max_side alone, never an enlargement
            detector = FrameDetector(self.backend, min_face=4, max_side=max(64, min(self.side, max(h, w))),
                                     enhancer=self.enhancer)
            self._detectors[(h, w)] = detector
        return detector.detect(image)  # type: ignore[attr-defined]

    def boxes(self, faces: FrameFaces) -> np.ndarray:
        """(m,4) boxes of the candidates the scheduler considers."""
        return faces.xyxy[faces.confidence >= self.threshold]


@dataclass
class _Pending:
    index: int
    image: np.ndarray
    signature: np.ndarray
    net: np.ndarray | None  # boxes of the net's candidates the scheduler considers (None: not run)
    net_faces: FrameFaces | None = field(default_factory=FrameFaces.empty)  # every candidate of the net
    fresh: bool = True  # the net ran on this frame (else its candidates are a still frame's before it)


def _in_order(fn: Callable, frames: Iterator, workers: int) -> Iterator[_Pending]:
    """``fn`` (signature, net) over ``frames`` on ``workers`` threads, handed on in frame order
    (the scheduler needs frame order)."""
    from postprocess.parallel import ordered_map

    for frame, prepared in ordered_map(fn, frames, workers, window=workers * 2):
        yield _Pending(frame.index, frame.image, *prepared)


class AdaptiveAnalyser:
    """Runs the schedule over one video's frames and fills a result store (see the module docstring).
    ``plan``: the options the plan will be made with (its linker and cut detector are the
    scheduler's; default: the plan's defaults)."""

    def __init__(self, pipeline, net: Net, config: AdaptiveConfig, embed: bool, plan=None) -> None:
        from postprocess.config import PlanConfig
        from postprocess.plan import plan_cutter, plan_linker

        self.pipeline = pipeline
        self.net = net
        self.config = config
        self.embed = embed and pipeline.embedder is not None
        plan = plan or PlanConfig()
        self.cutter = plan_cutter(plan)
        self._cuts: set[int] = set()  # frames where the plan will start a shot
        self._undecided: set[int] = set()  # frames that may start one, not decided yet
        linker = plan_linker(plan, pipeline.embedder.name if self.embed else "")
        self.scheduler = Scheduler(config.schedule, linker, self._cut_at, plan.pad_frames)
        self.policy = IntervalPolicy(config.schedule)
        self.tally = Tally()

    @property
    def cuts(self) -> frozenset[int]:
        """The frames where the plan's cut detector starts a shot, as decided so far."""
        return frozenset(self._cuts)

    def _cut_at(self, frame: int) -> bool:
        if frame in self._undecided:
            raise RuntimeError(f"frame {frame}: the scheduler's linker reached it before the cut was decided")
        return frame in self._cuts

    def _full(self, item: _Pending, reason: str) -> tuple[FrameResult, Look]:
        """Full analysis of one frame: detection at full resolution, embeddings where wanted."""
        p = self.pipeline
        closeup = self.net.closeup and item.fresh and p.detector.wants_coarse(*item.image.shape[:2])
        self.tally.closeups_reused += closeup
        extra = {"coarse": item.net_faces} if closeup else {}
        if getattr(self.net, "guides", False) and item.fresh and item.net_faces is not None:
            extra["hints"] = item.net_faces
        faces = p.detector.detect(item.image, **extra)
        faces.frame_index = item.index
        embedder = ""
        if self.embed:  # the pipeline's rule: candidates under its embed_min_score get no vector
            faces = p.embed_faces(item.image, faces)
            embedder = p.embedder.name
        self.tally.reasons[reason] += 1
        log.debug("frame %d analysed (%s): %d faces %s, net %d", item.index, reason, len(faces),
                  np.round(faces.xyxy).astype(int).tolist(), len(item.net))
        result = FrameResult(int(item.image.shape[1]), int(item.image.shape[0]), faces, p.detector.name, embedder,
                             item.signature)
        return result, Look(item.index, faces, item.net)

    def run(self, frames: Iterator, store, workers: int, progress: Callable[[int], object],
            before: Iterable[np.ndarray] = (), after: Iterable[np.ndarray] = ()) -> Tally:
        """``frames`` (``.index``, ``.image``) in frame order into ``store`` (``add(index, result)``).
        ``before`` / ``after``: the signatures of the frames just before and just after ``frames``
        (a segment of a longer video, ``faceblur/segments.py``): the cut detector sees them as the
        plan's does (``CutDetector.half`` frames after, one more before), so it decides the cuts
        near the segment's ends as the plan will; those frames are neither analysed nor stored."""
        from handler.signature import frame_signature

        still = StillFrames(self.config.still_below, self.config.still_span)
        fresh: set[int] = set()

        def marked(frames: Iterator) -> Iterator:  # in order, before the frames go to the threads
            for frame in frames:
                if still.fresh(frame.index, frame.image):
                    fresh.add(frame.index)
                yield frame

        def prepare(frame) -> tuple[np.ndarray, np.ndarray | None, FrameFaces | None]:
            if frame.index not in fresh:
                return frame_signature(frame.image), None, None
            fresh.discard(frame.index)
            faces = self.net.detect(frame.image)
            return frame_signature(frame.image), self.net.boxes(faces), faces

        window: list[_Pending] = []  # frames after the last analysed one, in order
        results: dict[int, FrameResult] = {}
        last: Look | None = None
        pushed: deque[int | None] = deque()  # frames given to the cut detector and not decided yet
        # (None: a frame just before or after ours, there for the detector's context only)
        held: deque[tuple[_Pending, bool]] = deque()  # (frame, may start a shot), not yet scheduled
        blocker = -1  # the last scheduled frame that may start a shot

        def analyse(item: _Pending, reason: str) -> Look:
            result, look = self._full(item, reason)
            results[item.index] = result
            return look

        def settle(reason: str) -> None:
            """Analyse the window's last frame for ``reason``, settle the window between it and the
            last analysed frame, and hand the window's frames over."""
            nonlocal last
            assert last is not None and window
            by_index = {w.index: w for w in window}
            b = analyse(window[-1], reason)
            extra = 0

            def more(frame: int, why: str) -> Look:
                nonlocal extra
                extra += why != "flicker"  # low candidates flicker at any interval: it stays
                return analyse(by_index[frame], why)

            self.scheduler.resolve(last, b, {w.index: w.net for w in window[:-1]}, more)
            self.policy.after(extra)
            last = b
            for w in window:
                emit(w)
            window.clear()

        def emit(item: _Pending) -> None:
            result = results.pop(item.index, None)
            if result is None:
                result = FrameResult(int(item.image.shape[1]), int(item.image.shape[0]),
                                     FrameFaces.empty(frame_index=item.index), signature=item.signature,
                                     analysed=False)
            store.add(item.index, result)
            self.tally.frames += 1
            progress(1)

        def schedule(item: _Pending, may_cut: bool) -> None:
            nonlocal last
            if last is None or may_cut:
                if may_cut and window:  # the last frame before the cut, then the first after it
                    settle("cut")
                last = analyse(item, "cut" if may_cut else "start")
                self.scheduler.begin(last)
                emit(item)
                return
            window.append(item)
            gap = item.index - last.frame
            if gap >= self.policy.interval:
                settle("interval")
            elif gap >= self.config.schedule.held_interval and self.scheduler.holding():
                settle("held")  # early: a low candidate's evidence is in question

        def decided(cuts: list[bool]) -> None:
            """The cut detector's decisions, one per frame pushed, oldest first."""
            nonlocal blocker
            for cut in cuts:
                frame = pushed.popleft()
                if frame is None:  # a frame around ours: its decision is not ours
                    continue
                self._undecided.discard(frame)
                if cut:
                    self._cuts.add(frame)
            while held and blocker not in self._undecided:  # frames after a possible cut wait for its decision
                item, may_cut = held.popleft()
                schedule(item, may_cut)
                if may_cut:
                    blocker = item.index

        for signature in before:
            pushed.append(None)
            decided(self.cutter.push(signature))
        ran: _Pending | None = None  # the last frame the net ran on
        for item in _in_order(prepare, marked(frames), workers):
            if item.net is None and ran is not None:
                item.net, item.net_faces, item.fresh = ran.net, ran.net_faces, False
                self.tally.nets_reused += 1
            else:
                ran = item
            pushed.append(item.index)
            cuts = self.cutter.push(item.signature)
            may_cut = self.cutter.could_cut()
            if may_cut:
                self._undecided.add(item.index)
            held.append((item, may_cut))
            decided(cuts)
        for signature in after:
            pushed.append(None)
            decided(self.cutter.push(signature))
        decided(self.cutter.flush())
        if window:
            settle("end")
        return self.tally


def analyse_adaptive(pipeline, path: Path, store, config: AdaptiveConfig, embed: bool, net: Net,
                     workers: int, progress: Callable[[int], object], plan=None, seen=None) -> Tally:
    """Pass 1 of ``face-blur run`` with adaptive analysis; returns the tally of analysed frames.
    ``plan``: the ``PlanConfig`` the plan will be made with (default: its defaults). ``seen`` (a
    ``faceblur.truncation.FrameTally``) counts every decoded frame, for the check that the video was
    not cut short."""
    from faceblur.video import VideoError, iter_frames

    def frames():
        for frame in iter_frames(path):
            if seen is not None:
                seen.see(frame)
            yield frame

    tally = AdaptiveAnalyser(pipeline, net, config, embed, plan).run(frames(), store, workers, progress)
    if tally.frames == 0:
        raise VideoError(f"{path}: no frames decoded")
    return tally
