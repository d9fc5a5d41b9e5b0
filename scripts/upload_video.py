#!/usr/bin/env python3
"""Split a video into frames and upload them for a face-blur job; keep its audio aside.

    python scripts/upload_video.py VIDEO --job JOB [--outputs terraform/outputs.json]

Frames (upright PNG, img0000001.png ...) go to ``s3://<bucket>/input/<job>/frames/``; the sidecar
that :func:`faceblur.video.assemble_video` needs to rebuild the video (``video.json``: timestamps,
colour, metadata; ``audio.mkv``: the audio streams, copied) goes to ``s3://<bucket>/audio/<job>/``.
The post-processing never reads the audio; ``download_video.py`` puts it back. Prefixes come from
the ``s3_layout`` Terraform output. Exit 0 on success, 1 on an error (one line), 2 for usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from deployment import (
    Deployment,
    add_deployment_arguments,
    add_progress_argument,
    run_script,
    upload_files,
)

log = logging.getLogger("upload_video")

FRAME_PATTERN = "img{:07d}.png"


@dataclass(frozen=True)
class UploadedVideo:
    frames: int
    frames_uri: str
    sidecar_uri: str
    fps: float
    width: int
    height: int
    audio: bool


def upload_video(dep: Deployment, s3, video: Path, job: str, workers: int = 16,
                 scratch: Path | None = None, progress: bool = False, allow_truncated: bool = False) -> UploadedVideo:
    """Extract every frame of ``video`` and upload frames and sidecar for ``job`` (``progress``: a
    bar for each of the two long steps; ``allow_truncated``: go on with a cut-short video's frames).

    A video cut short (fewer frames than its container declares, faceblur/truncation.py) is refused
    before anything is uploaded, unless ``allow_truncated``."""
    from faceblur.progress import progress_bar
    from faceblur.truncation import check_count, check_end
    from faceblur.video import extract_frames, probe

    declared = probe(video)
    if not allow_truncated:
        check_end(video, declared, "--allow-truncated")
    with tempfile.TemporaryDirectory(prefix="face-blur-upload-", dir=scratch) as tmp:
        frames_dir, sidecar_dir = Path(tmp) / "frames", Path(tmp) / "sidecar"
        expected = declared.estimated_frames if progress else None
        with progress_bar(expected, "extract", progress) as bar:
            info = extract_frames(video, frames_dir, pattern=FRAME_PATTERN, sidecar_dir=sidecar_dir,
                                  progress=bar.update)
        runs = info.pts_runs  # where the last frame extracted ends, from the first
        end = (float((runs[-1][0] + (runs[-1][2] - 1) * runs[-1][1] + info.last_duration - runs[0][0])
                     * Fraction(info.time_base)) if runs else None)
        check_count(video, declared, info.frame_count, end, allow_truncated)
        log.info("%s: %d frames %dx%d at %.3f fps, %s", video, info.frame_count, info.width, info.height,
                 info.fps, "audio kept aside" if info.audio_file else "no audio")
        frames = sorted(frames_dir.iterdir())
        with progress_bar(len(frames), "upload", progress) as bar:
            upload_files(s3, dep.bucket, [(p, dep.key("frames", job, p.name)) for p in frames], workers,
                         progress=bar.update)
        sidecar = sorted(p for p in sidecar_dir.iterdir() if p.is_file())
        upload_files(s3, dep.bucket, [(p, dep.key("audio", job, p.name)) for p in sidecar], workers)
    result = UploadedVideo(frames=len(frames), frames_uri=dep.uri("frames", job), sidecar_uri=dep.uri("audio", job),
                           fps=info.fps, width=info.width, height=info.height, audio=bool(info.audio_file))
    log.info("uploaded %d frames to %s and the sidecar to %s", result.frames, result.frames_uri, result.sidecar_uri)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload_video.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("video", type=Path, help="video file (mp4, mov, mkv, webm)")
    parser.add_argument("--workers", type=int, default=16, help="parallel uploads")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="upload a video cut short (fewer frames than its container declares)")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the temporary frames (default: the system temp folder)")
    add_progress_argument(parser)
    add_deployment_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work(dep: Deployment) -> None:
        upload_video(dep, dep.session().client("s3"), args.video, args.job, args.workers, args.scratch,
                     progress=args.progress, allow_truncated=args.allow_truncated)

    return run_script("upload_video.py", args, work)


if __name__ == "__main__":
    sys.exit(main())
