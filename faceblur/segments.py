"""Adaptive analysis on AWS: one child of an AWS Batch array job over segments of a video's frames.

    python -m faceblur.segments --options s3://<bucket>/results/<job>/face-blur-options.json \\
        --segment-frames 3000 [--index I]

The child reads the job options (``postprocess.run.JobOptions``, written by scripts/start_job.py),
lists the frames (``postprocess.reading.list_frames``, in frame-number order) and takes segment
``I`` (default ``$AWS_BATCH_JOB_ARRAY_INDEX``, else 0): the I-th run of ``--segment-frames``
frames. It runs ``face-blur run``'s adaptive analysis over it (``faceblur.adaptive.AdaptiveAnalyser``
linking and cutting with the job's own plan options, the pipeline loaded as the inference server
loads it from its environment) and writes one ``face-blur/frame/v1`` result per frame where the
transform job writes them (``<results>/<frame key><results_suffix>``; skipped frames
``"analysed": false``), so the post-processing reads them unchanged. Every object is written whole,
so a child run again overwrites the same keys. The child with index 0 also analyses every reference
photo (no schedule) when the options name references. An index past the last segment does nothing.

Segment ends: the first frame of a segment is analysed (``start``) and the last (``end``), so the
plan links sequences across the boundary; the plan's cut detector sees the signatures of
``CutDetector.half + 1`` frames before the segment and ``CutDetector.half`` after it (decoded, never
analysed or stored), so the child cuts where the plan will. Frames of one segment must share one
size (``PipelineConfig.fixed_size``; one video's frames do). Exit 0 done, 1 an error (one line on
stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from contract import FrameResult, dumps
from postprocess.options import HelpFormatter, number_argument
from postprocess.storage import StorageError, Store, folder, join

if TYPE_CHECKING:
    from faceblur.schedule import Tally
    from handler.pipeline import FacePipeline
    from handler.serving.decode import DecodeLimits
    from postprocess.reading import FrameRef
    from postprocess.run import JobOptions

log = logging.getLogger("faceblur.segments")  # not __main__ under -m

DEFAULT_SEGMENT_FRAMES = 3000
MAX_SEGMENT_FRAMES = 1_000_000
PROGRESS_EVERY = 250  # frames between progress lines (the Batch log has no progress bar)
IO_THREADS = 8  # concurrent S3 reads, and writes


class SegmentError(RuntimeError):
    """What stops a child; the message names the object and what is wrong with it."""


@dataclass(frozen=True)
class Frame:
    """A decoded frame as ``AdaptiveAnalyser.run`` takes it: number and upright RGB pixels."""

    index: int
    image: np.ndarray


def segment_bounds(count: int, index: int, size: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of segment ``index`` in a list of ``count`` frames (empty past the end)."""
    start = min(index * size, count)
    return start, min(start + size, count)


def reference_photos(options: JobOptions) -> str:
    """Where the reference photos lie. The transform job reads one input folder and writes below the
    results folder keeping relative paths (``input/<job>/frames/x.png`` ->
    ``results/<job>/frames/x.png.out``, ``input/<job>/refs/`` -> ``results/<job>/refs/``): the frames
    and their results share a tail, the rest of each is the two roots, and the references' results
    lie under the results root as the photos lie under the input root."""
    frames, results = folder(options.frames).rstrip("/").split("/"), folder(options.results).rstrip("/").split("/")
    refs = folder(str(options.references)).rstrip("/").split("/")
    tail = 0
    while tail < min(len(frames), len(results)) - 1 and frames[-1 - tail] == results[-1 - tail]:
        tail += 1
    root_in, root_out = frames[:len(frames) - tail], results[:len(results) - tail]
    if not tail or refs[:len(root_out)] != root_out or len(refs) == len(root_out):
        raise SegmentError(f"cannot tell where the reference photos are: references {options.references} does not "
                           f"lie under {'/'.join(root_out)}/ as the frames' results {options.results} mirror the "
                           f"frames {options.frames}")
    return "/".join(root_in + refs[len(root_out):]) + "/"


class Reader:
    """Frames read from storage and decoded as the inference server decodes a request body
    (``handler.serving.decode.decode_image``), on ``IO_THREADS`` threads ahead of the analysis."""

    def __init__(self, store: Store, frames_uri: str, limits: DecodeLimits, what: str = "frame") -> None:
        self.store, self.frames_uri, self.limits, self.what = store, frames_uri, limits, what

    def decode(self, ref: FrameRef) -> Frame:
        from handler.serving.decode import decode_image
        from handler.serving.errors import RequestError

        uri = join(self.frames_uri, ref.key)
        body = self.store.read(uri)  # a short read raises (botocore checks the length), never silent
        try:
            return Frame(ref.number, decode_image(body, "application/x-image", self.limits))
        except RequestError as exc:
            raise SegmentError(f"{self.what} {uri}: not a usable image ({exc})") from None

    def frames(self, refs: Sequence[FrameRef]) -> Iterator[Frame]:
        """The frames in order; all of one size (:class:`SegmentError` naming the first that is not)."""
        from postprocess.parallel import ordered_map

        size = None
        for ref, frame in ordered_map(self.decode, refs, IO_THREADS, window=2 * IO_THREADS):
            shape = frame.image.shape[:2]
            if size is not None and shape != size:
                raise SegmentError(f"frame {join(self.frames_uri, ref.key)} is {shape[1]}x{shape[0]}, the segment's "
                                   f"first frame {size[1]}x{size[0]}: frames of one segment must share one size")
            size = shape
            yield frame

    def signatures(self, refs: Sequence[FrameRef]) -> Iterator[np.ndarray]:
        from handler.signature import frame_signature
        from postprocess.parallel import ordered_map

        for _, signature in ordered_map(lambda ref: frame_signature(self.decode(ref).image), refs, IO_THREADS):
            yield signature


class ResultWriter:
    """A result store (``add(frame, result)``) that PUTs each result whole to
    ``<results>/<frame key><suffix>`` on threads, at most ``2 * IO_THREADS`` pending; :meth:`close`
    waits for the rest and raises the first failure."""

    def __init__(self, store: Store, results_uri: str, keys: Mapping[int, str], suffix: str) -> None:
        self.store, self.results_uri, self.keys, self.suffix = store, results_uri, keys, suffix
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="face-blur-write")
        self._pending: deque[Future[None]] = deque()
        self.written = 0

    def add(self, frame: int, result: FrameResult) -> None:
        uri = join(self.results_uri, self.keys[frame] + self.suffix)
        self._pending.append(self._pool.submit(self.store.write, uri, dumps(result)))
        while len(self._pending) > 2 * IO_THREADS:
            self._pending.popleft().result()
            self.written += 1

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
                self.written += 1
        finally:
            self.abort()

    def abort(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True)


def analyse_references(pipeline: FacePipeline, store: Store, options: JobOptions, limits: DecodeLimits) -> int:
    """Every reference photo analysed as the transform job analyses it, its result written where
    ``postprocess.reading.read_references`` reads it; returns how many."""
    from postprocess.reading import FRAME_SUFFIXES, FrameRef

    photos_uri = reference_photos(options)
    reader = Reader(store, photos_uri, limits, "reference photo")
    photos = [obj.key for obj in store.list(photos_uri) if os.path.splitext(obj.key)[1].lower() in FRAME_SUFFIXES]
    if not photos:
        raise SegmentError(f"no reference photos ({', '.join(FRAME_SUFFIXES)}) under {photos_uri}")
    for key in photos:
        image = reader.decode(FrameRef(0, key)).image
        store.write(join(str(options.references), key + options.config.results_suffix), dumps(pipeline.analyse(image)))
    log.info("%d reference photos under %s analysed", len(photos), photos_uri)
    return len(photos)


def run_segment(options_uri: str, index: int, segment_frames: int, workers: int,
                env: Mapping[str, str] | None = None) -> Tally | None:
    """Analyse segment ``index``; None when it lies past the last frame (see the module docstring)."""
    from faceblur.adaptive import AdaptiveAnalyser, AdaptiveConfig
    from faceblur.analyse import adaptive_pipeline, make_net
    from faceblur.inputs import MAX_IMAGE_BYTES
    from handler.pipeline import load_pipeline
    from handler.serving.config import ServingConfig
    from handler.serving.decode import DecodeLimits
    from postprocess.reading import list_frames
    from postprocess.run import JobOptions

    store = Store()
    try:
        options = JobOptions.load(store, options_uri)
    except StorageError as exc:
        raise SegmentError(f"options {options_uri}: no such object" if exc.missing else f"options: {exc}") from None
    config = options.config
    refs = list_frames(store, options.frames, config.frame_pattern)
    start, stop = segment_bounds(len(refs), index, segment_frames)
    if start == stop:
        log.info("segment %d: starts past the last of %d frames (%d a segment): nothing to do", index, len(refs),
                 segment_frames)
        return None
    part = refs[start:stop]
    log.info("segment %d: frames %d-%d (%d of %d), mode %s", index, part[0].number, part[-1].number, len(part),
             len(refs), config.plan.mode)
    serving = ServingConfig.from_env(env)
    pipeline_config = adaptive_pipeline(replace(serving.pipeline, fixed_size=True), config.plan.mode)
    pipeline = load_pipeline(pipeline_config)
    adaptive = AdaptiveConfig()
    analyser = AdaptiveAnalyser(pipeline, make_net(pipeline, pipeline_config, adaptive), adaptive,
                                config.plan.mode != "all", config.plan)
    limits = DecodeLimits(max_bytes=MAX_IMAGE_BYTES, max_pixels=serving.max_pixels)
    reader = Reader(store, options.frames, limits)
    half = analyser.cutter.half
    writer = ResultWriter(store, options.results, {ref.number: ref.key for ref in part}, config.results_suffix)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % PROGRESS_EVERY == 0 or done == len(part):
            log.info("segment %d: %d of %d frames", index, done, len(part))

    try:
        tally = analyser.run(reader.frames(part), writer, workers, progress,
                             before=reader.signatures(refs[max(0, start - half - 1):start]),
                             after=reader.signatures(refs[stop:stop + half]))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    log.info("segment %d: %s; %d results under %s", index, tally.line(), writer.written, options.results)
    if index == 0 and options.references:
        analyse_references(pipeline, store, options, limits)
    return tally


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceblur.segments", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--options", required=True,
                        help="URI of the job's face-blur-options.json (face-blur/options/v1)")
    parser.add_argument("--segment-frames", type=number_argument(int, 1, MAX_SEGMENT_FRAMES),
                        default=DEFAULT_SEGMENT_FRAMES,
                        help="frames per segment (segment I: the I-th run of this many frames, in frame order)")
    parser.add_argument("--index", type=number_argument(int, 0, 9_999), default=None,
                        help="the segment (default: $AWS_BATCH_JOB_ARRAY_INDEX, else 0)")
    parser.add_argument("--workers", type=number_argument(int, 1, 64), default=None,
                        help="threads of the cheap per-frame pass (default: the cores, at most 8)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    from contract.env import env_int
    from faceblur.malloc import map_large_blocks
    from handler.serving.machine import cpu_count

    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        index = args.index if args.index is not None else env_int(env, "AWS_BATCH_JOB_ARRAY_INDEX", 0, 0, 9_999)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("botocore").setLevel(logging.WARNING)  # not a line per client about its credentials
    map_large_blocks()  # a smaller peak, the same CPU (faceblur/malloc.py), as face-blur run
    try:
        run_segment(args.options, index, args.segment_frames, args.workers or min(8, cpu_count()), env)
    except Exception as exc:  # one line for the job log; non-zero so Batch retries or fails the child
        log.debug("segment failed", exc_info=True)
        kind = "" if isinstance(exc, SegmentError) else f"{type(exc).__name__}: "
        print(f"face-blur segment {index}: {kind}{exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
