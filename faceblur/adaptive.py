"""``face-blur run --analysis adaptive``: the driver around ``faceblur/schedule.py``.

One decode of the video. For every frame, on ``workers`` threads: the signature (shot cuts, as
every frame result has) and the *net*, a cheap CenterFace pass on a copy whose longer side is
``net_side`` pixels (with the full detector's dark-frame step; see :class:`Net`, which is also the
close-up pass of a fully analysed 1080p frame). Frames wait in a
small buffer (at most ``max_interval`` of them) until the scheduler has settled their window; the
full analysis (the detector at full resolution with its landmarks, and embeddings in the identity
modes only; its responses under the candidate score kept apart for the scheduler,
:class:`WeakDetector`) runs on the frames the scheduler names. Every frame then goes to the result store:
analysed frames with their faces, the others marked ``analysed=False`` with their signature, so
``make_plan`` covers them by interpolating along the sequences instead of reading "no face".

Embeddings: none in mode ``all`` (linking between analysed frames is by motion and box, and the
embedder is not even loaded); in the identity modes, every face of every analysed frame is embedded
(a small fraction of the frames, spread by the interval, which identity samples from: at most
``PlanConfig.max_samples`` per sequence).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import FrameFaces, FrameResult
from faceblur.schedule import IntervalPolicy, Look, ScheduleConfig, Scheduler, Tally, is_cut_candidate

log = logging.getLogger(__name__)

ANALYSES = ("adaptive", "every")


@dataclass(frozen=True)
class AdaptiveConfig:
    """``--analysis adaptive`` knobs (``face-blur run --help``); see the module docstrings."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    net_side: int = 480  # longer side of the net's copy of each frame, pixels
    net_threshold: float = 0.3  # CenterFace score a net candidate needs
    weak_floor: float = 0.02  # full analysis also keeps responses down to this score (Look.weak)

    def __post_init__(self) -> None:
        if not 64 <= self.net_side <= 4096:
            raise ValueError(f"net_side must be 64..4096 pixels, got {self.net_side}")
        if not 0 < self.net_threshold < 1:
            raise ValueError(f"net_threshold must be in (0, 1), got {self.net_threshold}")
        if not 0 < self.weak_floor < 1:
            raise ValueError(f"weak_floor must be in (0, 1), got {self.weak_floor}")


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

    def __init__(self, pipeline, model_dir: Path | None, providers: list[str], config: AdaptiveConfig) -> None:
        from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
        from handler.detector import CANDIDATE_THRESHOLD, FrameDetector
        from handler.detector_factory import centerface_path

        detector = pipeline.detector
        backend = getattr(detector, "backend", None)
        full = isinstance(detector, FrameDetector) and isinstance(backend, CenterfaceDetector)
        floor = min(backend.options.threshold if full else CANDIDATE_THRESHOLD, config.weak_floor)
        session = load_centerface(centerface_path(model_dir), providers, threads=1)
        self.backend = CenterfaceDetector(session, CenterfaceOptions(threshold=min(floor, config.net_threshold)))
        self.enhancer = getattr(detector, "enhancer", None)
        self.side = config.net_side
        self.threshold = config.net_threshold
        #: the net's faces serve as the full detector's close-up pass
        self.closeup = full and detector.border_pad == 0 and 0 < self.side <= detector.coarse_side
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


class WeakDetector:
    """The full detector with its responses under the candidate score kept apart (``Look.weak``):
    the same CenterFace session and passes at a lower score, each pass split at the candidate score
    before the passes are merged, so the faces are exactly the full detector's (greedy NMS keeps a
    box by the higher-scored boxes alone, so dropping the lower ones after it changes nothing)."""

    def __init__(self, detector, low) -> None:
        self.detector, self.low = detector, low
        self.threshold = detector.backend.options.threshold

    def detect(self, image: np.ndarray, coarse: FrameFaces | None = None) -> tuple[FrameFaces, FrameFaces]:
        """(faces, weak responses) of ``image``; ``coarse`` as ``FrameDetector.passes`` takes it."""
        from handler.detector import merge_scales

        parts = self.low.passes(image, coarse)
        kept = [part[part.confidence >= self.threshold] for part in parts]
        faces = kept[0]
        for part in kept[1:]:
            faces = merge_scales(faces, part)
        weak = FrameFaces.concat([part[part.confidence < self.threshold] for part in parts])
        return faces, weak


def weak_detector(detector, floor: float) -> WeakDetector | None:
    """A :class:`WeakDetector` for a CenterFace ``FrameDetector``; None for other detectors (their
    candidates then pair directly or disagree)."""
    from dataclasses import replace

    from handler.centerface import CenterfaceDetector
    from handler.detector import FrameDetector

    backend = getattr(detector, "backend", None)
    if not (isinstance(detector, FrameDetector) and isinstance(backend, CenterfaceDetector)):
        return None
    low = CenterfaceDetector(backend.session, replace(backend.options, threshold=min(floor, backend.options.threshold)))
    return WeakDetector(detector, FrameDetector(low, detector.min_face, detector.max_side, detector.enhancer,
                                                detector.coarse_side, detector.border_pad, detector.native_pass))


@dataclass
class _Pending:
    index: int
    image: np.ndarray
    signature: np.ndarray
    net: np.ndarray  # boxes of the net's candidates the scheduler considers
    net_faces: FrameFaces = field(default_factory=FrameFaces.empty)  # every candidate of the net


def _in_order(fn: Callable, frames: Iterator, workers: int) -> Iterator[_Pending]:
    """``fn`` (signature, net) over ``frames`` on ``workers`` threads, handed on in frame order
    (``bounded_map`` yields in completion order; the scheduler needs frame order)."""
    from postprocess.parallel import bounded_map

    submitted: deque[int] = deque()

    def tagged() -> Iterator:
        for frame in frames:
            submitted.append(frame.index)
            yield frame

    waiting: dict[int, _Pending] = {}
    for frame, prepared in bounded_map(fn, tagged(), workers, window=workers * 2):
        waiting[frame.index] = _Pending(frame.index, frame.image, *prepared)
        while submitted and submitted[0] in waiting:
            yield waiting.pop(submitted.popleft())


class AdaptiveAnalyser:
    """Runs the schedule over one video's frames and fills a result store (see the module docstring)."""

    def __init__(self, pipeline, net: Net, config: AdaptiveConfig, embed: bool, cost=None) -> None:
        self.pipeline = pipeline
        self.net = net
        self.config = config
        self.embed = embed and pipeline.embedder is not None
        self.weak = weak_detector(pipeline.detector, config.weak_floor)
        self.scheduler = Scheduler(config.schedule, cost)
        self.policy = IntervalPolicy(config.schedule)
        self.tally = Tally()

    def _full(self, item: _Pending, reason: str) -> tuple[FrameResult, Look]:
        """Full analysis of one frame: detection at full resolution, embeddings where wanted."""
        p = self.pipeline
        weak = FrameFaces.empty()
        closeup = self.net.closeup and p.detector.wants_coarse(*item.image.shape[:2])
        self.tally.closeups_reused += closeup
        if self.weak is not None:
            faces, weak = self.weak.detect(item.image, item.net_faces if closeup else None)
        elif closeup:
            faces = p.detector.detect(item.image, coarse=item.net_faces)
        else:
            faces = p.detector.detect(item.image)
        faces.frame_index = item.index
        embedder = ""
        if self.embed:
            dim = p.embedder.dim
            faces = faces.with_embedding(p.embedder.embed(item.image, faces.landmarks, faces.xyxy) if len(faces)
                                         else np.zeros((0, dim), np.float32))
            embedder = p.embedder.name
        self.tally.reasons[reason] += 1
        log.debug("frame %d analysed (%s): %d faces %s, net %d", item.index, reason, len(faces),
                  np.round(faces.xyxy).astype(int).tolist(), len(item.net))
        result = FrameResult(int(item.image.shape[1]), int(item.image.shape[0]), faces, p.detector.name, embedder,
                             item.signature)
        return result, Look(item.index, faces, item.net, weak)

    def run(self, frames: Iterator, store, workers: int, progress: Callable[[int], object]) -> Tally:
        from handler.signature import frame_signature
        from postprocess.shots import soften

        def prepare(frame) -> tuple[np.ndarray, np.ndarray, FrameFaces]:
            faces = self.net.detect(frame.image)
            return frame_signature(frame.image), self.net.boxes(faces), faces

        window: list[_Pending] = []  # frames after the last analysed one, in order
        results: dict[int, FrameResult] = {}
        last: Look | None = None
        previous: np.ndarray | None = None

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
                extra += 1
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

        for item in _in_order(prepare, frames, workers):
            soft = soften(item.signature.reshape(1, -1))[0]
            distance = float(np.abs(soft - previous).sum()) if previous is not None and previous.size == soft.size \
                else 0.0
            previous = soft
            if last is None:
                last = analyse(item, "start")
                emit(item)
                continue
            if is_cut_candidate(distance, self.config.schedule):
                if window:  # the last frame before the cut, then the first after it
                    settle("cut")
                last = analyse(item, "cut")
                emit(item)
                continue
            window.append(item)
            if item.index - last.frame >= self.policy.interval:
                settle("interval")
        if window:
            settle("end")
        return self.tally


def analyse_adaptive(pipeline, path: Path, store, config: AdaptiveConfig, embed: bool, net: Net,
                     workers: int, progress: Callable[[int], object], cost=None, seen=None) -> Tally:
    """Pass 1 of ``face-blur run`` with adaptive analysis; returns the tally of analysed frames.
    ``seen`` (a ``faceblur.truncation.FrameTally``) counts every decoded frame, for the check that
    the video was not cut short."""
    from faceblur.video import VideoError, iter_frames

    def frames():
        for frame in iter_frames(path):
            if seen is not None:
                seen.see(frame)
            yield frame

    tally = AdaptiveAnalyser(pipeline, net, config, embed, cost).run(frames(), store, workers, progress)
    if tally.frames == 0:
        raise VideoError(f"{path}: no frames decoded")
    return tally
