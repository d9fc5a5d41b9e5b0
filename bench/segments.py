"""Adaptive analysis on AWS in segments (faceblur/segments.py) on the development videos, as users run it.

    python -m bench.segments CLIP [CLIP ...] [--segment-frames 50 100] [--devset DIR] [--out F.md]

Per clip (``bench.devset``) the frames are extracted to PNG as ``scripts/upload_video.py`` does
and put under ``input/job/frames/`` on a moto S3 server (free loopback port, stopped by PID), with
the job options as ``tests/test_segments.py`` writes them (mode all). Per segment size (the whole
clip, then each ``--segment-frames``) the children ``python -m faceblur.segments`` run one after
another with the tests' environment (wall, and CPU from ``RUSAGE_CHILDREN``), then the
post-processing as the Lambda runs it; reported: the plan's analysed frames and the rendered
frames' recall by ``bench.videometrics.measure`` (as ``bench.detection_recall --video`` scores),
beside ``face-blur run CLIP --mode all --analysis adaptive`` (one segment analyses its frames).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench import devset, sysinfo
from bench.endtoend import face_blur_command, timed_run
from bench.serving_memory import stop  # by its PID (its process group)
from bench.videometrics import VideoScore, measure

log = logging.getLogger("bench.segments")
REPO = Path(__file__).resolve().parents[1]
BUCKET = "face-blur-bench-segments"


@dataclass
class Row:
    clip: str
    frames: int
    size: int  # frames a segment
    segments: int
    analysed: list[int]  # frame numbers fully analysed (the plan's)
    wall_s: float  # the children's, summed
    cpu_s: float
    post_s: float  # the post-processing (plan and render), in this process
    score: VideoScore
    boundaries: list[int] = field(default_factory=list)  # first frame of each segment after the first


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto in server mode on a free loopback port, as tests/conftest.py starts it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("moto server did not start")


def child_env(endpoint: str, model_dir: Path) -> dict[str, str]:
    """tests/test_segments.py ``_env``: no AWS_/FACE_BLUR_ variables but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FACE_BLUR_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint, FACE_BLUR_MODEL_DIR=str(model_dir), FACE_BLUR_DEVICE="cpu")
    return env


def clear(s3: object, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def run_children(env: dict[str, str], uri: str, size: int, count: int) -> tuple[float, float]:
    """Every child of the array job in turn; (wall, CPU) seconds summed. A failing child stops the bench."""
    wall = cpu = 0.0
    for index in range(count):
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "faceblur.segments", "--options", uri, "--segment-frames",
                               str(size), "--index", str(index)], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=1800, check=False)
        wall += time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"segment {index} of {size} exited {proc.returncode}: {proc.stderr[-2000:]}")
        log.info("  %s", next((ln.split(": ", 1)[1] for ln in reversed(proc.stderr.splitlines())
                               if "analysis adaptive" in ln), "no summary line"))
    return wall, cpu


def measure_clip(s3: object, endpoint: str, model_dir: Path, video: Path, sizes: list[int], work: Path) -> list[Row]:
    from faceblur.video import extract_frames
    from postprocess.plan_format import Plan
    from postprocess.run import OPTIONS_NAME, PLAN_NAME, JobOptions, RunConfig, run
    from postprocess.storage import Store, join

    truth = devset.load_truth(video)
    frames_dir, out_dir = work / "frames", work / "out"
    extract_frames(video, frames_dir, pattern="img{:07d}.png", sidecar_dir=work / "sidecar")
    files = sorted(frames_dir.iterdir())
    clear(s3, "")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: s3.put_object(Bucket=BUCKET, Key=f"input/job/frames/{p.name}",
                                              Body=p.read_bytes()), files))
    base = f"s3://{BUCKET}"
    options = JobOptions(frames=f"{base}/input/job/frames/", results=f"{base}/results/job/frames/",
                         output=f"{base}/output/job/", references=None, config=RunConfig(workers=4))
    uri, store, env = f"{base}/results/job/{OPTIONS_NAME}", Store(s3), child_env(endpoint, model_dir)
    rows = []
    for size in sizes:
        count = math.ceil(len(files) / size)
        for prefix in ("results/job/", "output/job/"):
            clear(s3, prefix)
        s3.put_object(Bucket=BUCKET, Key=f"results/job/{OPTIONS_NAME}", Body=options.to_json())
        log.info("%s: %d frames, %d a segment: %d children", video.stem, len(files), size, count)
        wall, cpu = run_children(env, uri, size, count)
        t0 = time.perf_counter()
        run(options.frames, options.results, options.output, options.config, options.references, store=store)
        post = time.perf_counter() - t0
        plan = Plan.loads(store.read(join(options.output, PLAN_NAME)))
        analysed = [int(n) for n in plan.analysed]
        assert plan.summary["analysed_frames"] == len(analysed)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        for name in (p.name for p in files):
            (out_dir / name).write_bytes(store.read(join(options.output, name)))
        score = measure(frames_dir, out_dir, truth)
        rows.append(Row(video.stem, len(files), size, count, analysed, wall, cpu, post, score,
                        [1 + i * size for i in range(1, count)]))
    return rows


def reference_run(video: Path, model_dir: Path, work: Path) -> tuple[list[int], float, float, VideoScore | None]:
    """``face-blur run CLIP --mode all --analysis adaptive``: (analysed frames, wall, CPU, its output's score)."""
    from postprocess.plan_format import Plan

    out, plan = work / "run.mp4", work / "run-plan.json"
    wall, cpu, rc, tail = timed_run(face_blur_command(video, out, (
        "--mode", "all", "--overwrite", "--analysis", "adaptive", "--device", "cpu", "--model-dir", str(model_dir),
        "--plan", str(plan))))
    if rc != 0:
        log.warning("face-blur run on %s exited %d: %s", video.stem, rc, tail)
        return [], wall, cpu, None
    return [int(n) for n in Plan.loads(plan.read_bytes()).analysed], wall, cpu, measure(video, out)


def _near(frames: list[int] | set[int], boundaries: list[int]) -> list[int]:
    """The frames within 2 of a boundary (the segment from ``b`` and the one before it)."""
    return sorted(f for f in frames if any(b - 3 <= f <= b + 2 for b in boundaries))


def _missed(score: VideoScore, boundaries: list[int]) -> str:
    if not score.missed:
        return "-"
    near = len(_near([f for f, _t in score.missed], boundaries))
    frames = sorted({f for f, _t in score.missed})
    shown = ", ".join(map(str, frames[:8])) + (" ..." if len(frames) > 8 else "")
    return f"{len(score.missed)} (frames {shown}; {near} within 2 of a boundary)"


def report(results: list[tuple[list[Row], tuple[list[int], float, float, VideoScore | None]]], header: str) -> str:
    cols = ["clip", "frames", "segment frames", "segments", "fully analysed", "extra vs 1 segment",
            "children wall s", "children CPU s", "post s", "recall", "missed instances"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rows, (ref, r_wall, r_cpu, r_score) in results:
        one = rows[0]
        for row in rows:
            n, first = len(row.analysed), row is one
            same = ("" if not first else " (= run)" if row.analysed == ref else " (**differs from run**)")
            lines.append(f"| {row.clip} | {row.frames} | {'all' if first else row.size} | {row.segments} | "
                         f"{n} ({100 * n / row.frames:.0f}%){same} | {n - len(one.analysed):+d} | {row.wall_s:.1f} | "
                         f"{row.cpu_s:.1f} | {row.post_s:.1f} | {row.score.recall:.3f} | "
                         f"{_missed(row.score, row.boundaries)} |")
        recall, missed = (f"{r_score.recall:.3f}", _missed(r_score, [])) if r_score else ("failed", "-")
        lines.append(f"| {one.clip} | {one.frames} | face-blur run | - | {len(ref)} "
                     f"({100 * len(ref) / one.frames:.0f}%) | {len(ref) - len(one.analysed):+d} | {r_wall:.1f} | "
                     f"{r_cpu:.1f} | (incl.) | {recall} | {missed} |")
    lines += ["", "Children: `python -m faceblur.segments` one after another (model loading included in each); "
              "post: plan and render in this process against moto. Recall: `bench.videometrics.measure` on the "
              "rendered PNG frames against the uploaded ones; the `face-blur run` row scores its mp4 output "
              "against the clip and its time is the whole command (decode, analysis, plan, render, encode).", ""]
    for rows, _ref in results:  # where the segments analyse other frames than one segment does
        one = set(rows[0].analysed)
        for row in rows[1:]:
            more, fewer = set(row.analysed) - one, one - set(row.analysed)
            near, ends = _near(more, row.boundaries), {f for b in row.boundaries for f in (b - 1, b)}
            lines.append(f"- {row.clip}, {row.size} a segment (segments from {', '.join(map(str, row.boundaries))}):"
                         f" {len(more)} frames analysed that one segment leaves, {len(near)} of them within 2 of a "
                         f"boundary ({', '.join(map(str, near)) or '-'}); {len(fewer)} left that one segment analyses"
                         f"; segment ends not analysed: {sorted(ends - set(row.analysed)) or 'none'}")
    return "\n".join(lines) + "\n"


def header_line() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain") else ""
    return (f"Segmented adaptive analysis, {datetime.datetime.now():%Y-%m-%d %H:%M}, load {sysinfo.load_average()} on "
            f"{os.cpu_count()} cores, commit {git('rev-parse', '--short', 'HEAD')}{dirty}")


def main(argv: list[str] | None = None) -> int:
    import boto3

    from handler.pipeline import default_model_dir

    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="development clip (bench.devset --list)")
    parser.add_argument("--segment-frames", type=int, nargs="+", default=[50, 100], help="segment sizes besides one")
    parser.add_argument("--devset", type=Path, default=devset.DEFAULT_DIR, help="the development set's folder")
    parser.add_argument("--out", type=Path, default=None, help="markdown output (also printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("postprocess").setLevel(logging.WARNING)  # its plan and completion lines, per run
    model_dir = default_model_dir(os.environ)
    videos = sorted(devset.make_devset(args.devset, args.clips), key=lambda v: args.clips.index(v.stem))
    started, results, took, text = time.perf_counter(), [], [], ""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that moto and a running child are stopped
    proc, endpoint = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for video in videos:
            t0, frames = time.perf_counter(), devset.load_truth(video).frames
            sizes = [frames] + sorted({n for n in args.segment_frames if 0 < n < frames})
            with tempfile.TemporaryDirectory(prefix="face-blur-bench-segments-") as tmp:
                rows = measure_clip(s3, endpoint, model_dir, video, sizes, Path(tmp))
                results.append((rows, reference_run(video, model_dir, Path(tmp))))
            took.append(f"{video.stem} {time.perf_counter() - t0:.0f} s")
            text = report(results, header_line()) + f"\nTime per clip (all its runs): {', '.join(took)}; " \
                f"whole bench {time.perf_counter() - started:.0f} s.\n"
            if args.out:  # after each clip, so a run stopped early keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
    finally:
        stop(proc)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
