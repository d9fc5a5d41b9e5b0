"""Where the CPU of adaptive analysis goes, per frame, by part (issue 17).

    python -m bench.adaptive_parts CLIP.mp4 [CLIP.mp4 ...] [--frames 12]

Per clip: decode (PyAV, the whole clip), signature, the net (``faceblur.adaptive.Net``: its own
one-thread CenterFace session), the full analysis' fine pass and, where the frame gets one, the
close-up pass (the detector's session), each over ``--frames`` frames spread over the clip, as wall
and CPU milliseconds per frame of this process (user + system, every thread). On a shared machine
the CPU column is the one to compare.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def per_frame(fn: Callable, items: list) -> tuple[float, float]:
    """(wall ms, CPU ms) per item of ``fn`` over ``items``."""
    wall, cpu = time.perf_counter(), _cpu()
    for item in items:
        fn(item)
    n = max(len(items), 1)
    return (time.perf_counter() - wall) / n * 1000, (_cpu() - cpu) / n * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive_parts", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, help="video files")
    parser.add_argument("--frames", type=int, default=12, help="frames timed per part")
    args = parser.parse_args(argv)
    from faceblur.adaptive import AdaptiveConfig, Net
    from faceblur.video import iter_frames
    from handler.pipeline import PipelineConfig, load_pipeline
    from handler.signature import frame_signature

    pipeline = load_pipeline(PipelineConfig(embedder="none"))
    detector = pipeline.detector
    net = Net(pipeline, None, ["CPUExecutionProvider"], AdaptiveConfig())
    print("| clip | part | wall ms / frame | CPU ms / frame |\n| --- | --- | --- | --- |")
    for video in args.videos:
        wall, cpu = time.perf_counter(), _cpu()
        frames = [f.image for f in iter_frames(video)]
        n = max(len(frames), 1)
        parts = {"decode": ((time.perf_counter() - wall) / n * 1000, (_cpu() - cpu) / n * 1000)}
        sample = frames[:: max(1, n // args.frames)][: args.frames]
        h, w = sample[0].shape[:2]
        scale = detector.detection_scale(h, w)
        parts["signature"] = per_frame(frame_signature, sample)
        parts[f"net ({net.side} px)"] = per_frame(net.detect, sample)
        parts[f"fine pass (x{scale:.2f})"] = per_frame(
            lambda image, s=scale: detector._detect_at(image, s, detector.backend.native_min_face), sample)
        if detector.wants_coarse(h, w):
            coarse = detector.coarse_side / max(h, w)
            parts[f"close-up pass ({detector.coarse_side} px)"] = per_frame(
                lambda image, s=coarse: detector._detect_at(image, s, detector.backend.native_min_face), sample)
        for part, (ms_wall, ms_cpu) in parts.items():
            print(f"| {video.stem} {w}x{h} | {part} | {ms_wall:.0f} | {ms_cpu:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
