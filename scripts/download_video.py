#!/usr/bin/env python3
"""Download the blurred frames of a finished face-blur job and assemble the video.

    python scripts/download_video.py --job JOB -o anonymised.mp4
    python scripts/download_video.py --job JOB --frames-dir blurred/      (frames only)

Refuses an unfinished job (no ``output/<job>/face-blur-complete.json``) unless ``--force``.
Frames come from ``output/<job>/``, the sidecar (timestamps, colour, metadata, audio) from
``audio/<job>/``; :func:`faceblur.video.assemble_video` re-encodes the frames with the original
timing and copies the audio back. Exit 0 on success, 1 on an error (one line), 2 for usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from deployment import (
    IMAGE_SUFFIXES,
    Deployment,
    add_deployment_arguments,
    add_progress_argument,
    download_files,
    list_keys,
    run_script,
)

log = logging.getLogger("download_video")

FRAME_PATTERN = "img{:07d}.png"


def download_frames(dep: Deployment, s3, job: str, frames_dir: Path, force: bool = False, workers: int = 16,
                    progress: bool = False) -> int:
    """Download the output frames (images directly under ``output/<job>/``); returns how many."""
    from faceblur.progress import progress_bar
    from postprocess.run import MARKER_NAME

    prefix = dep.key("output", job)
    keys = list_keys(s3, dep.bucket, prefix)
    if prefix + MARKER_NAME not in keys and not force:
        raise RuntimeError(f"s3://{dep.bucket}/{prefix} has no {MARKER_NAME}: the job is not finished "
                           "(wait_job.py waits for it; --force downloads what is there)")
    frames = [k for k in keys if "/" not in k[len(prefix):] and k.lower().endswith(IMAGE_SUFFIXES)]
    if not frames:
        raise RuntimeError(f"no frames under s3://{dep.bucket}/{prefix}")
    with progress_bar(len(frames), "download", progress) as bar:
        count = download_files(s3, dep.bucket, [(k, frames_dir / k[len(prefix):]) for k in frames], workers,
                               progress=bar.update)
    log.info("downloaded %d frames from s3://%s/%s to %s", count, dep.bucket, prefix, frames_dir)
    return count


def download_sidecar(dep: Deployment, s3, job: str, sidecar_dir: Path) -> int:
    prefix = dep.key("audio", job)
    keys = [k for k in list_keys(s3, dep.bucket, prefix) if "/" not in k[len(prefix):]]
    if not keys:
        raise RuntimeError(f"no video sidecar under s3://{dep.bucket}/{prefix}: was the video uploaded with "
                           "upload_video.py? (--frames-dir downloads the frames alone)")
    return download_files(s3, dep.bucket, [(k, sidecar_dir / k[len(prefix):]) for k in keys])


def download_video(dep: Deployment, s3, job: str, output: Path, overwrite: bool = False, force: bool = False,
                   workers: int = 16, scratch: Path | None = None, progress: bool = False) -> Path:
    """Download frames and sidecar of ``job`` and write the video to ``output`` (``progress``: a bar
    for the download and one for the encoding)."""
    from faceblur.progress import progress_bar
    from faceblur.video import assemble_video

    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (--overwrite replaces it)")
    with tempfile.TemporaryDirectory(prefix="face-blur-download-", dir=scratch) as tmp:
        frames_dir, sidecar_dir = Path(tmp) / "frames", Path(tmp) / "sidecar"
        count = download_frames(dep, s3, job, frames_dir, force, workers, progress)
        download_sidecar(dep, s3, job, sidecar_dir)
        with progress_bar(count, "encode", progress) as bar:
            assemble_video(frames_dir, sidecar_dir, output, pattern=FRAME_PATTERN, overwrite=overwrite,
                           progress=bar.update)
    log.info("wrote %s", output)
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="download_video.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path, help="video file to write (.mp4, .mov, .mkv, .webm)")
    out.add_argument("--frames-dir", type=Path, help="only download the blurred frames into this folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output video")
    parser.add_argument("--force", action="store_true", help="download even without the completion marker")
    parser.add_argument("--workers", type=int, default=16, help="parallel downloads")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for temporary files")
    add_progress_argument(parser)
    add_deployment_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work(dep: Deployment) -> None:
        s3 = dep.session().client("s3")
        if args.frames_dir:
            download_frames(dep, s3, args.job, args.frames_dir, args.force, args.workers, args.progress)
        else:
            download_video(dep, s3, args.job, args.output, args.overwrite, args.force, args.workers, args.scratch,
                           args.progress)

    return run_script("download_video.py", args, work)


if __name__ == "__main__":
    sys.exit(main())
