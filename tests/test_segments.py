"""Adaptive analysis on AWS (faceblur/segments.py): the children of the Batch array job run as users
run them (``python -m faceblur.segments`` against a real S3 API, moto in server mode), each over its
segment of a real video's frames (real photos, a moving face, a cut), then the real post-processing
as the Lambda runs it: every frame has a result, most are not analysed, the face is blurred on every
frame it is on, across the segment boundaries too; a child run again writes the same bytes; what
cannot be done is refused with exit 1 and the object named. One segment over the whole clip analyses
the frames ``face-blur run`` analyses, and a child's cut detector cuts where the plan's does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO
from detection_helpers import background
from postprocess_helpers import decode, face_hidden, get_tree, new_bucket, plan_coverage, png_bytes, put_tree
from scenes import REFERENCES
from video_helpers import ClipSpec, face_patch, make_clip, paste

from contract import FrameFaces

W, H = 320, 180
FRAMES, CUT = 72, 44  # shot B (another room, another person) from 0-based frame CUT
SEGMENT = 26  # segments: frames 1-26, 27-52, 53-72 (frame numbers from 1)
BOUNDARIES = ((26, 27), (52, 53))
COVERED = 0.9  # of the face box measured in the photo, by the plan's box before its 1.3x mask scale


@dataclass
class Clip:
    video: Path
    frames: dict[str, bytes]  # img0000001.png -> PNG of the decoded frame, as upload_video.py leaves them
    truth: list[tuple[float, float, float, float]]  # 0-based frame -> the face box

    def image(self, number: int) -> np.ndarray:
        return decode(self.frames[f"img{number:07d}.png"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory, faces_dir) -> Clip:
    """Obama (56 px face) walks right in one room; a cut; Rose Leslie walks left in another."""
    from faceblur.video import extract_frames

    rooms = [background(W, H, seed=3), background(W, H, seed=11)[:, ::-1] // 2 + 60]
    obama, rose = face_patch(faces_dir, "obama", 56), face_patch(faces_dir, "rose_leslie", 52)
    images, truth = [], []
    for i in range(FRAMES):
        frame = rooms[int(i >= CUT)].copy()
        truth.append(paste(frame, *obama, 20 + 3 * i, 40) if i < CUT else paste(frame, *rose, 200 - 2 * (i - CUT), 30))
        images.append(frame)
    folder = tmp_path_factory.mktemp("segments")
    video = make_clip(folder / "clip.mp4", ClipSpec(width=W, height=H, frames=FRAMES), lambda i: images[i])
    extract_frames(video, folder / "frames")
    frames = {p.name: p.read_bytes() for p in sorted((folder / "frames").glob("*.png"))}
    assert len(frames) == FRAMES
    return Clip(video, frames, truth)


def _env(endpoint: str, model_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FACE_BLUR_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint, FACE_BLUR_MODEL_DIR=str(model_dir), FACE_BLUR_DEVICE="cpu", **extra)
    return env


def _not_in_the_image() -> list[str]:
    """What the ``cli`` extra adds to the inference image's packages (av, tqdm, the review page's)."""
    import re

    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in extras["cli"]} - {"face-blur"}
    return sorted(names - {re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in extras["inference"]})


def _child(env: dict[str, str], options: str, *args: str, image: bool = False) -> subprocess.CompletedProcess:
    """``python -m faceblur.segments``; ``image``: as in the inference image, without the packages
    only the command line installs (importing one fails)."""
    run = ["-m", "faceblur.segments"]
    if image:
        run = ["-c", f"import runpy, sys; sys.modules.update(dict.fromkeys({_not_in_the_image()!r})); "
                     "runpy.run_module('faceblur.segments', run_name='__main__', alter_sys=True)"]
    return subprocess.run([sys.executable, *run, "--options", options, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


@dataclass
class Job:
    s3: object
    bucket: str
    options: object  # postprocess.run.JobOptions
    uri: str  # of face-blur-options.json
    env: dict[str, str]
    logs: list[str]

    def results(self, prefix: str = "results/job/frames") -> dict[str, bytes]:
        return get_tree(self.s3, self.bucket, prefix)

    def post_process(self):
        """The post-processing as the Lambda runs it; returns the plan it wrote."""
        from postprocess.plan_format import Plan
        from postprocess.run import PLAN_NAME, run
        from postprocess.storage import Store, join

        o = self.options
        store = Store(self.s3)
        run(o.frames, o.results, o.output, o.config, o.references, store=store)
        return Plan.loads(store.read(join(o.output, PLAN_NAME)))


def _job(endpoint: str, model_dir: Path, clip: Clip, config=None, references: bool = False, **env: str) -> Job:
    """The layout scripts/start_job.py leaves: input/job/{frames,refs}/, the options next to the results."""
    from postprocess.run import OPTIONS_NAME, JobOptions, RunConfig

    s3 = _s3(endpoint)
    bucket = new_bucket(s3)
    put_tree(s3, bucket, "input/job/frames", clip.frames)
    base = f"s3://{bucket}"
    options = JobOptions(frames=f"{base}/input/job/frames/", results=f"{base}/results/job/frames/",
                         output=f"{base}/output/job/", references=f"{base}/results/job/refs/" if references else None,
                         config=config or RunConfig(workers=4))
    s3.put_object(Bucket=bucket, Key=f"results/job/{OPTIONS_NAME}", Body=options.to_json())
    return Job(s3, bucket, options, f"{base}/results/job/{OPTIONS_NAME}", _env(endpoint, model_dir, **env), [])


@pytest.fixture(scope="module")
def job(moto_endpoint, test_model_dir, clip) -> Job:
    """Mode all, three children of 26 frames; the last takes its index from the Batch environment."""
    job = _job(moto_endpoint, test_model_dir, clip)
    for index in (0, 1):
        job.logs.append(_ok(_child(job.env, job.uri, "--segment-frames", str(SEGMENT), "--index", str(index))))
    job.logs.append(_ok(_child({**job.env, "AWS_BATCH_JOB_ARRAY_INDEX": "2"}, job.uri, "--segment-frames",
                               str(SEGMENT))))
    return job


@pytest.fixture(scope="module")
def plan(job):
    return job.post_process()


def _coverage(plan, frame: int, box) -> float:
    return plan_coverage(plan, frame, box, (W, H))


def test_the_children_write_a_result_for_every_frame_and_analyse_few(job, plan):
    import json

    results = job.results()
    assert sorted(results) == sorted(f"{name}.out" for name in job.results("input/job/frames"))
    skipped = [k for k, body in results.items() if json.loads(body).get("analysed") is False]
    assert 0 < len(skipped) < FRAMES
    assert plan.summary["analysed_frames"] == FRAMES - len(skipped)
    analysed = set(plan.analysed.tolist())
    for first, last in BOUNDARIES:  # each segment's first and last frames are fully analysed
        assert {first, last} <= analysed, sorted(analysed)
    assert {1, CUT, CUT + 1, FRAMES} <= analysed  # and both sides of the cut (frame numbers from 1)
    for index, log in enumerate(job.logs):
        assert f"segment {index}: analysis adaptive: " in log and "frames fully analysed" in log


def test_the_plan_blurs_the_face_on_every_frame_across_the_segment_boundaries(job, plan, clip):
    assert plan.shots.tolist() == [[1, CUT], [CUT + 1, FRAMES]]
    for i, box in enumerate(clip.truth):
        assert _coverage(plan, i + 1, box) >= COVERED, (i + 1, box, plan.boxes(i + 1))
    for first, second in BOUNDARIES:  # one blurred sequence runs across each boundary
        assert any(s.decision == "blur" and s.first <= first and second <= s.last for s in plan.sequences), \
            [(s.first, s.last, s.decision) for s in plan.sequences]
    out = get_tree(job.s3, job.bucket, "output/job")
    for number in (n for pair in BOUNDARIES for n in pair):
        name = f"img{number:07d}.png"
        hidden, why = face_hidden(clip.image(number), decode(out[name]), clip.truth[number - 1])
        assert hidden, (number, why)


def test_a_child_run_again_writes_the_same_results_with_the_inference_images_packages(job, plan):
    before = job.results()
    ours = [f"img{n:07d}.png.out" for n in range(SEGMENT + 1, 2 * SEGMENT + 1)]
    job.s3.delete_objects(Bucket=job.bucket, Delete={"Objects": [{"Key": f"results/job/frames/{k}"} for k in ours]})
    assert set(job.results()) == set(before) - set(ours)
    assert {"av", "tqdm"} <= set(_not_in_the_image())
    _ok(_child(job.env, job.uri, "--segment-frames", str(SEGMENT), "--index", "1", image=True))
    assert job.results() == before


def test_an_index_past_the_last_segment_does_nothing(job, plan):
    before = get_tree(job.s3, job.bucket)
    log = _ok(_child(job.env, job.uri, "--segment-frames", str(SEGMENT), "--index", "3"))
    assert "nothing to do" in log
    assert get_tree(job.s3, job.bucket) == before


def test_a_missing_options_object_is_named(job):
    uri = f"s3://{job.bucket}/results/other-job/face-blur-options.json"
    proc = _child(job.env, uri, "--index", "0")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"face-blur segment 0: options {uri}: no such object"


def test_a_job_without_frames_is_named(moto_endpoint, test_model_dir, clip):
    job = _job(moto_endpoint, test_model_dir, Clip(clip.video, {"notes.txt": b"not a frame"}, []))
    proc = _child(job.env, job.uri)
    assert proc.returncode == 1
    assert f"no frames (.png/.jpg/.jpeg) under s3://{job.bucket}/input/job/frames/" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("bad, message", [
    (b"\x89PNG\r\n\x1a\n but cut short", "not a usable image"),
    (png_bytes(np.zeros((H // 2, W // 2, 3), np.uint8)), "frames of one segment must share one size"),
])
def test_a_frame_that_cannot_be_analysed_stops_the_child_naming_it(moto_endpoint, test_model_dir, clip, bad, message):
    few = Clip(clip.video, {f"img{n:07d}.png": clip.frames[f"img{n:07d}.png"] for n in range(1, 5)}, clip.truth)
    job = _job(moto_endpoint, test_model_dir, few)
    job.s3.put_object(Bucket=job.bucket, Key="input/job/frames/img0000003.png", Body=bad)
    proc = _child(job.env, job.uri, "--index", "0")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert f"s3://{job.bucket}/input/job/frames/img0000003.png" in last and message in last, last


@pytest.mark.parametrize("argv, env", [
    (["--segment-frames", "0"], {}),
    (["--index", "-1"], {}),
    ([], {"AWS_BATCH_JOB_ARRAY_INDEX": "first"}),
])
def test_usage_errors_exit_2(argv, env):
    proc = subprocess.run([sys.executable, "-m", "faceblur.segments", "--options", "s3://b/o.json", *argv], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr


def test_in_an_identity_mode_child_0_analyses_the_reference_photos(moto_endpoint, test_model_dir, clip, faces_dir):
    import json

    from postprocess.config import PlanConfig
    from postprocess.run import RunConfig

    job = _job(moto_endpoint, test_model_dir, clip, RunConfig(plan=PlanConfig(mode="unknown"), workers=4),
               references=True, FACE_BLUR_EMBEDDER="mobilefacenet")
    photo = REFERENCES["obama"]
    job.s3.put_object(Bucket=job.bucket, Key=f"input/job/refs/obama/{photo}", Body=(faces_dir / photo).read_bytes())
    _ok(_child(job.env, job.uri, "--segment-frames", "40", "--index", "1"))
    assert job.results("results/job/refs") == {}  # only child 0 analyses them
    _ok(_child(job.env, job.uri, "--segment-frames", "40", "--index", "0"))
    refs = job.results("results/job/refs")
    assert list(refs) == [f"obama/{photo}.out"]
    faces = json.loads(refs[f"obama/{photo}.out"])["faces"]
    assert sum(f["score"] >= 0.3 for f in faces) == 1
    plan = job.post_process()  # the post-processing reads them: mode unknown needs them
    identity = plan.to_dict()["identity"]
    assert identity["references"] == {"obama": [photo]} and identity["fail_closed"] is None, identity
    for i in range(CUT, FRAMES):  # Rose Leslie is nobody's reference: blurred
        assert _coverage(plan, i + 1, clip.truth[i]) >= COVERED, i + 1


def test_one_segment_over_the_whole_clip_analyses_the_frames_face_blur_run_does(moto_endpoint, test_model_dir, clip,
                                                                                 tmp_path):
    from faceblur.local import LocalConfig, run
    from handler.pipeline import PipelineConfig
    from postprocess.plan_format import Plan

    job = _job(moto_endpoint, test_model_dir, clip)
    _ok(_child(job.env, job.uri, "--segment-frames", "3000"))
    aws = job.post_process()
    plan_path = tmp_path / "plan.json"
    summary = run(clip.video, tmp_path / "out.mp4", LocalConfig(pipeline=PipelineConfig(model_dir=test_model_dir),
                                                                 progress=False, plan_path=plan_path))
    local = Plan.loads(plan_path.read_bytes())
    assert summary.analysis.analysed < FRAMES
    assert aws.analysed.tolist() == local.analysed.tolist()
    assert aws.shots.tolist() == local.shots.tolist()
    for frame in range(1, FRAMES + 1):
        np.testing.assert_allclose(aws.boxes(frame), local.boxes(frame), atol=0.15)  # JSON, then 0.1 px rounding


# ---------------------------------------------------------------------------------------------- the cut detector


class _NoFaces:
    name = "none"

    def detect(self, image, **_) -> FrameFaces:
        return FrameFaces.empty()

    def boxes(self, faces) -> np.ndarray:
        return np.zeros((0, 4), np.float32)


def test_a_childs_cut_detector_sees_the_frames_around_its_segment_and_cuts_where_the_plan_does(monkeypatch):
    """Picture A, a two-frame flash of B at frames 20-21 (a segment starts at 21), a cut to C at 30,
    a flash of B at 40-41 (the segment ends at 40). The plan's detector over the whole video cuts at
    30 only (flashes are transients); a child without the frames around its segment would also cut at
    22 and 40, where its window is clipped."""
    from faceblur.adaptive import AdaptiveAnalyser, AdaptiveConfig
    from postprocess.config import PlanConfig
    from postprocess.plan import plan_cutter

    a, b, c = np.eye(128, dtype=np.float32)[[0, 64, 100]]  # far apart: every change reaches the threshold

    def signature(number: int) -> np.ndarray:
        if number in (20, 21, 40, 41):
            return b
        return a if number < 30 else c

    monkeypatch.setattr("handler.signature.frame_signature", lambda image: signature(int(image[0, 0, 0])))
    numbers = range(1, 61)
    plan_cuts = plan_cutter(PlanConfig())
    decisions = [d for n in numbers for d in plan_cuts.push(signature(n))] + plan_cuts.flush()
    assert {n for n, cut in zip(numbers, decisions, strict=True) if cut} == {30}

    def child(context: bool):
        pipeline = SimpleNamespace(detector=_NoFaces(), embedder=None)
        net = SimpleNamespace(closeup=False, detect=_NoFaces().detect, boxes=_NoFaces().boxes)
        analyser = AdaptiveAnalyser(pipeline, net, AdaptiveConfig(), False, PlanConfig())
        half = analyser.cutter.half
        frames = [SimpleNamespace(index=n, image=np.full((8, 8, 3), n, np.uint8)) for n in range(21, 41)]
        store: dict[int, object] = {}
        store_add = SimpleNamespace(add=store.__setitem__)
        before = [signature(n) for n in range(21 - half - 1, 21)] if context else []
        after = [signature(n) for n in range(41, 41 + half)] if context else []
        tally = analyser.run(iter(frames), store_add, 1, lambda n: None, before=before, after=after)
        assert sorted(store) == list(range(21, 41)) and tally.frames == 20  # the frames around: not stored
        return analyser.cuts

    assert child(context=True) == {30}
    assert child(context=False) == {22, 30, 40}  # what the frames around change


def test_a_last_segment_shorter_than_the_cut_detectors_window_gets_every_decision(monkeypatch):
    """The video's last segment holds 8 frames (53-60) with a cut at 56, fewer than the detector's
    half window: the decisions still owed to the frames before it must not take the place of its
    own at the end of the video, so every frame is stored and it cuts where the plan does."""
    from faceblur.adaptive import AdaptiveAnalyser, AdaptiveConfig
    from postprocess.config import PlanConfig
    from postprocess.plan import plan_cutter

    a, c = np.eye(128, dtype=np.float32)[[0, 100]]

    def signature(number: int) -> np.ndarray:
        return a if number < 56 else c

    monkeypatch.setattr("handler.signature.frame_signature", lambda image: signature(int(image[0, 0, 0])))
    plan_cuts = plan_cutter(PlanConfig())
    decisions = [d for n in range(1, 61) for d in plan_cuts.push(signature(n))] + plan_cuts.flush()
    want = {n for n, cut in zip(range(1, 61), decisions, strict=True) if cut}
    assert want == {56}
    pipeline = SimpleNamespace(detector=_NoFaces(), embedder=None)
    net = SimpleNamespace(closeup=False, detect=_NoFaces().detect, boxes=_NoFaces().boxes)
    analyser = AdaptiveAnalyser(pipeline, net, AdaptiveConfig(), False, PlanConfig())
    half = analyser.cutter.half
    frames = [SimpleNamespace(index=n, image=np.full((8, 8, 3), n, np.uint8)) for n in range(53, 61)]
    store: dict[int, object] = {}
    analyser.run(iter(frames), SimpleNamespace(add=store.__setitem__), 1, lambda n: None,
                 before=[signature(n) for n in range(53 - half - 1, 53)])
    assert sorted(store) == list(range(53, 61))
    assert analyser.cuts == want


@pytest.mark.parametrize("frames, results, references, photos", [
    ("s3://b/input/j/frames/", "s3://b/results/j/frames/", "s3://b/results/j/refs/", "s3://b/input/j/refs/"),
    ("s3://b/job/in/frames", "s3://b/job/out/frames", "s3://b/job/out/refs", "s3://b/job/in/refs/"),
    ("s3://b/in/frames/", "s3://b/out/frames/", "s3://b/elsewhere/refs/", None),
])
def test_the_reference_photos_lie_where_the_transform_job_read_them(frames, results, references, photos):
    from faceblur.segments import SegmentError, reference_photos
    from postprocess.run import JobOptions

    options = JobOptions(frames, results, "s3://b/output/", references)
    if photos is None:
        with pytest.raises(SegmentError, match="cannot tell where the reference photos are"):
            reference_photos(options)
    else:
        assert reference_photos(options) == photos
