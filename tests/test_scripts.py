"""scripts/ (the real AWS run) against the moto server: S3 for real (upload, options, marker, download),
SageMaker's CreateModel / CreateTransformJob as moto implements them (request shape checked by
botocore against the real API model and read back; moto runs no container and marks the job
Completed at once).

What stands in for AWS here: the transform job's output (``.out`` results, written by the test in
the contract format where the container would write them) and EventBridge (the test builds the
event from DescribeTransformJob and calls the real Lambda handler). Not covered: IAM (moto does
not enforce it), the container itself, running Batch jobs.

Adaptive analysis (``start_job.py --analysis adaptive``): the SubmitJob request goes to moto's Batch
for real (queue and job definition registered there under Terraform's names) and is read back with
DescribeJobs; the segments' results are written by the test where the children would write them,
and the parent's description, marked SUCCEEDED as Batch marks it once every child has, becomes the
EventBridge event for the real Lambda handler. moto runs no container: a plain job ends FAILED
(no Docker), which is what the wait's failure path is tested on; its success path gets DescribeJobs
answers from a scripted client (an array parent in moto never leaves SUBMITTED).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from decisions_helpers import box_at, landmarks_for, noisy, people, photo
from postprocess_helpers import moto_batch_queue
from terraform_helpers import REPO, TerraformConfig
from video_helpers import AudioSpec, ClipSpec, make_clip, probe_clip

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

import deployment  # noqa: E402
import download_video  # noqa: E402
import start_job  # noqa: E402
import upload_refs  # noqa: E402
import upload_video  # noqa: E402
import wait_job  # noqa: E402

SCRIPT_NAMES = ["upload_video.py", "upload_refs.py", "start_job.py", "wait_job.py", "download_video.py"]
W, H, N = 320, 180, 10
ALICE_BOX = box_at(80, 90, 60)
BOB_BOX = box_at(240, 90, 60)


def outputs(bucket: str, tf: TerraformConfig | None = None) -> dict:
    """What ``terraform output -json`` prints for a deployment on this bucket (layout from terraform/)."""
    tf = tf or TerraformConfig()
    values = {
        "region": "us-east-1", "bucket": bucket, "s3_layout": tf.resolve(tf.locals["s3_layout"]),
        "kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        "sagemaker_model_name": "face-blur-inference",
        "sagemaker_execution_role_arn": "arn:aws:iam::123456789012:role/face-blur-sagemaker-execution",
        "inference_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/inference:0.1.0",
        "inference_environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "FACE_BLUR_DEVICE": "auto"},
        "transform_job_name_prefix": tf.default("transform_job_name_prefix"),
        "transform_instance_type": tf.default("transform_instance_type"),
        "transform_instance_count": tf.default("transform_instance_count"),
        "transform_max_concurrent_transforms": tf.default("transform_max_concurrent_transforms"),
        "transform_max_payload_mb": tf.default("transform_max_payload_mb"),
        "analysis_job_queue": "face-blur-analysis", "analysis_job_definition": "face-blur-analysis",
    }
    return {k: {"sensitive": False, "type": "string", "value": v} for k, v in values.items()}


# ---------------------------------------------------------------- both sides agree


def test_outputs_the_scripts_read_exist_in_terraform():
    tf = TerraformConfig()
    missing = [name for name in (*deployment.OUTPUTS, *deployment.ANALYSIS_OUTPUTS) if name not in tf.outputs]
    assert not missing, f"scripts read outputs that terraform/outputs.tf lacks: {missing}"
    assert tf.outputs["s3_layout"]["value"] == "${local.s3_layout}"
    layout = tf.resolve(tf.locals["s3_layout"])
    assert set(deployment.LAYOUT_KEYS) <= set(layout)
    dep = deployment.Deployment.from_outputs(outputs("b", tf))
    # The transform job reads frames and references in one go and its results land where the
    # lifecycle rule expires them.
    assert dep.input_root("j") == "input/j/"
    assert dep.results_uri("j", "frames") == "s3://b/results/j/frames/"
    assert dep.results_uri("j", "references") == "s3://b/results/j/refs/"


def test_missing_outputs_are_named():
    incomplete = outputs("b")
    del incomplete["kms_key_arn"], incomplete["s3_layout"]
    with pytest.raises(deployment.DeploymentError, match="s3_layout, kms_key_arn"):
        deployment.Deployment.from_outputs(incomplete)


def test_outputs_come_from_a_file_or_from_terraform_output(tmp_path, monkeypatch):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs("from-file")))
    assert deployment.Deployment.from_outputs(deployment.load_outputs(path)).bucket == "from-file"
    fake = tmp_path / "fake-terraform"  # stands in for `terraform output -json`
    fake.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'output -json' ] && cat {path}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TERRAFORM", str(fake))
    monkeypatch.delenv("FACE_BLUR_TF_OUTPUTS", raising=False)
    assert deployment.load_outputs(None, tmp_path)["bucket"]["value"] == "from-file"
    monkeypatch.setenv("TERRAFORM", "false")
    with pytest.raises(deployment.DeploymentError, match="failed"):
        deployment.load_outputs(None, tmp_path)


@pytest.mark.parametrize("job, ok", [("holiday-2024", True), ("a", True), ("Holiday", False), ("a--b", False),
                                     ("-a", False), ("a_b", False), ("x" * 41, False)])
def test_job_ids(job, ok):
    if ok:
        assert deployment.check_job_id(job) == job
    else:
        with pytest.raises(ValueError, match="job id"):
            deployment.check_job_id(job)


def test_transform_job_name_fits_sagemaker():
    dep = deployment.Deployment.from_outputs(outputs("b"))
    name = start_job.transform_job_name(dep, "holiday-2024")
    assert name.startswith(dep.job_name_prefix + "holiday-2024-") and len(name) <= 63
    longest = dataclasses.replace(dep, job_name_prefix="p" * 40)  # the longest prefix terraform accepts
    assert len(start_job.transform_job_name(longest, "x" * 10)) == 63
    with pytest.raises(ValueError, match="shorten the job id to at most 10"):
        start_job.transform_job_name(longest, "x" * 11)


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_help(script):
    done = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "--outputs" in done.stdout


def test_a_script_error_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPTS / "wait_job.py"), "--job", "j", "--outputs",
                           str(tmp_path / "absent.json")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "absent.json" in done.stderr


# ---------------------------------------------------------------- references


def test_reference_arguments(tmp_path, faces_dir):
    photos = sorted(faces_dir.glob("*.jpg"))[:2]
    (tmp_path / "people" / "carol").mkdir(parents=True)
    (tmp_path / "people" / "carol" / photos[1].name).write_bytes(photos[1].read_bytes())
    people_found = upload_refs.collect_references([f"alice={photos[0]}", str(tmp_path / "people")])
    assert people_found == {"alice": [photos[0]], "carol": [tmp_path / "people" / "carol" / photos[1].name]}
    for bad, message in [(f"bad name={photos[0]}", "person name"), (f"a={tmp_path / 'none.jpg'}", "no such file"),
                         (str(tmp_path / "people" / "carol"), "no person sub-folders"),
                         (f"a={tmp_path}", "no photos")]:
        with pytest.raises(ValueError, match=message):
            upload_refs.collect_references([bad])


def test_reference_photos_land_beside_the_frames(s3, bucket, faces_dir):
    dep = deployment.Deployment.from_outputs(outputs(bucket))
    photos = sorted(faces_dir.glob("*.jpg"))[:3]
    count = upload_refs.upload_references(dep, s3, "job1", {"alice": photos[:2], "bob": photos[2:]})
    keys = deployment.list_keys(s3, bucket, "")
    assert count == 3
    expected = [f"input/job1/refs/alice/{p.name}" for p in photos[:2]] + [f"input/job1/refs/bob/{photos[2].name}"]
    assert keys == sorted(expected)
    head = s3.head_object(Bucket=bucket, Key=keys[0])
    assert head["ContentType"] == "image/jpeg"


# ---------------------------------------------------------------- the whole path


def _paint(i: int) -> np.ndarray:
    """Detailed texture (so a blur shows) that moves a little from frame to frame."""
    rng = np.random.default_rng(i // 3)
    base = rng.integers(0, 255, size=(H // 4, W // 4, 3), dtype=np.uint8)
    return np.kron(base, np.ones((4, 4, 1), np.uint8))


def _frame_result(index: int, alice: np.ndarray, bob: np.ndarray, rng: np.random.Generator) -> bytes:
    from contract import FrameFaces, FrameResult, dumps

    boxes = np.stack([ALICE_BOX, BOB_BOX])
    emb = np.concatenate([noisy(alice, 0.2, rng), noisy(bob, 0.2, rng)])
    faces = FrameFaces(xyxy=boxes, confidence=np.array([0.95, 0.95], np.float32),
                       landmarks=np.stack([landmarks_for(b) for b in boxes]).astype(np.float32), embedding=emb,
                       frame_index=index)
    signature = np.full(128, 1 / 128, np.float32)
    return dumps(FrameResult(W, H, faces, "centerface", "mobilefacenet", signature))


def _stand_in_for_the_transform_job(s3, bucket: str, request: dict) -> None:
    """Write one ``<key>.out`` per input object under S3OutputPath, as SageMaker would (the container's
    answer replaced by contract-format results: Alice left, Bob right, in every frame)."""
    from contract import dumps

    source = request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    out = request["TransformOutput"]["S3OutputPath"]
    src_prefix, out_prefix = source.split("/", 3)[3], out.split("/", 3)[3]
    alice, bob = people(2, seed=7)
    rng = np.random.default_rng(3)
    for key in deployment.list_keys(s3, bucket, src_prefix):
        relative = key[len(src_prefix):]
        if relative.startswith("refs/"):
            body = dumps(photo(alice))
        else:
            index = int("".join(c for c in Path(relative).stem if c.isdigit()))
            body = _frame_result(index, alice, bob, rng)
        s3.put_object(Bucket=bucket, Key=f"{out_prefix}{relative}.out", Body=body)


def _eventbridge_event(description: dict) -> dict:
    """The "SageMaker Transform Job State Change" event for a job, as the rule delivers it."""
    detail = {k: v for k, v in description.items() if k != "ResponseMetadata"}
    return {"version": "0", "source": "aws.sagemaker", "detail-type": "SageMaker Transform Job State Change",
            "region": "us-east-1", "detail": json.loads(json.dumps(detail, default=str))}


def _load_png(s3, bucket: str, key: str) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).convert("RGB"))


def test_video_to_anonymised_video_through_s3(s3_env, s3, bucket, tmp_path, faces_dir):
    import boto3

    from postprocess.lambda_handler import handle_event
    from postprocess.run import JobOptions

    tf = TerraformConfig()
    dep = deployment.Deployment.from_outputs(outputs(bucket, tf))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    job = "clip-1"
    video = make_clip(tmp_path / "in.mp4", ClipSpec(width=W, height=H, frames=N, audio=[AudioSpec()]), _paint)

    # 1. frames and the audio sidecar
    uploaded = upload_video.upload_video(dep, s3, video, job)
    keys = deployment.list_keys(s3, bucket, "")
    frames = [k for k in keys if k.startswith(f"input/{job}/frames/")]
    assert uploaded.frames == N and len(frames) == N and frames[0].endswith("img0000001.png")
    assert {f"audio/{job}/video.json", f"audio/{job}/audio.mkv"} <= set(keys)

    # 2. references; a job that needs references refuses to start without them first
    with pytest.raises(ValueError, match="needs reference photos"):
        start_job.start_job(dep, s3, sm, job, start_job.run_config(mode="unknown"),
                            start_job.TransformSettings.defaults(dep))
    upload_refs.upload_references(dep, s3, job, {"alice": sorted(faces_dir.glob("*.jpg"))[:1]})

    # 3. options + model + transform job
    settings = start_job.TransformSettings.defaults(dep, instance_type="ml.c5.xlarge", max_payload_mb=8)
    name = start_job.start_job(dep, s3, sm, job, start_job.run_config(mode="unknown", mask_scale=1.0), settings)
    assert name.startswith(tf.default("transform_job_name_prefix"))
    model = sm.describe_model(ModelName=dep.model_name)  # created: it did not exist
    assert model["PrimaryContainer"]["Image"] == dep.inference_image_uri
    assert model["ExecutionRoleArn"] == dep.execution_role_arn
    described = sm.describe_transform_job(TransformJobName=name)
    assert described["ModelName"] == dep.model_name
    assert described["BatchStrategy"] == "SingleRecord" and described["MaxPayloadInMB"] == 8
    assert described["MaxConcurrentTransforms"] == dep.max_concurrent_transforms
    assert described["TransformInput"]["ContentType"] == "application/x-image"
    assert described["TransformInput"]["SplitType"] == "None"
    assert described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{bucket}/input/{job}/"
    assert described["TransformOutput"]["S3OutputPath"] == f"s3://{bucket}/results/{job}/"
    assert described["TransformOutput"]["KmsKeyId"] == dep.kms_key_arn
    assert described["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    options = JobOptions.from_json(s3.get_object(Bucket=bucket, Key=f"results/{job}/face-blur-options.json")
                                   ["Body"].read())
    assert (options.frames, options.results, options.references, options.output) == (
        f"s3://{bucket}/input/{job}/frames/", f"s3://{bucket}/results/{job}/frames/",
        f"s3://{bucket}/results/{job}/refs/", f"s3://{bucket}/output/{job}/")
    assert options.config.plan.mode == "unknown" and options.frame_count == N

    # 4. the transform job's output (stand-in), then the EventBridge event to the real Lambda handler
    request = start_job.transform_request(dep, job, name, dep.model_name, settings)
    _stand_in_for_the_transform_job(s3, bucket, request)
    event = _eventbridge_event(sm.describe_transform_job(TransformJobName=name))
    assert event["detail"]["TransformJobName"].startswith(tf.resolve(tf.locals["transform_completed_pattern"])
                                                          ["detail"]["TransformJobName"][0]["prefix"])
    handled = handle_event(event, env={"FACE_BLUR_LAMBDA_MAX_FRAMES": "1000"})
    assert handled["action"] == "ran", handled

    # 5. wait: the marker is there and matches the manifest
    report = wait_job.wait_job(dep, s3, sm, job, timeout=30, poll=0.05)
    assert report["transform_job"] == name and report["frames"] == N and report["frames_blurred"] == N

    # 6. download: Bob hidden, Alice (the reference) and the background untouched, audio back
    first_in = _load_png(s3, bucket, f"input/{job}/frames/img0000001.png")
    first_out = _load_png(s3, bucket, f"output/{job}/img0000001.png")
    ax1, ay1, ax2, ay2 = ALICE_BOX.astype(int)
    bx1, by1, bx2, by2 = BOB_BOX.astype(int)
    assert np.array_equal(first_in[ay1:ay2, ax1:ax2], first_out[ay1:ay2, ax1:ax2]), "Alice was blurred"
    assert np.abs(first_in[by1:by2, bx1:bx2].astype(int) - first_out[by1:by2, bx1:bx2]).mean() > 10, "Bob is visible"
    assert np.array_equal(first_in[:, :20], first_out[:, :20]), "the background changed"
    result = download_video.download_video(dep, s3, job, tmp_path / "out.mp4")
    got, want = probe_clip(result), probe_clip(video)
    assert (got.frames, got.width, got.height) == (want.frames, want.width, want.height)
    assert len(got.audio) == 1 and got.audio[0]["codec"] == want.audio[0]["codec"]
    with pytest.raises(FileExistsError):
        download_video.download_video(dep, s3, job, result)

    # 7. a second start reuses the model (never deletes or recreates it) and gets a new job name
    later = start_job.start_job(dep, s3, sm, job, start_job.run_config(mode="unknown"), settings,
                                now=datetime(2031, 1, 2, 3, 4, 5))
    assert later != name and later.endswith("-310102030405")
    assert start_job.ensure_model(sm, dep) == (dep.model_name, False)
    assert wait_job.latest_transform_job(sm, dep, job) == later


def test_download_refuses_an_unfinished_job(s3_env, s3, bucket, tmp_path):
    dep = deployment.Deployment.from_outputs(outputs(bucket))
    s3.put_object(Bucket=bucket, Key="output/j/img0000001.png", Body=b"x")
    with pytest.raises(RuntimeError, match="not finished"):
        download_video.download_frames(dep, s3, "j", tmp_path / "frames")
    assert download_video.download_frames(dep, s3, "j", tmp_path / "frames", force=True) == 1


def test_wait_reports_a_failed_transform_job():
    class FailedJob:
        def describe_transform_job(self, TransformJobName):  # noqa: N803 (boto3's spelling)
            return {"TransformJobStatus": "Failed", "FailureReason": "ClientError: 413 payload too large"}

    with pytest.raises(wait_job.JobFailedError, match="413 payload too large"):
        wait_job.wait_for_transform(FailedJob(), "face-blur-j-1", timeout=10, poll=0, sleep=lambda s: None)


def test_start_job_options_override_the_recorded_ones_and_show_the_configs_defaults(tmp_path):
    """start_job.py takes the plan and blur options of face-blur run; only those given replace the
    --run-options file's, and --help names each default from the config objects."""
    from postprocess.blur import RenderConfig
    from postprocess.config import PlanConfig
    from postprocess.options import given_options

    args = start_job.build_parser().parse_args(["--job", "j", "--mode", "select", "--pick", "3:10:20",
                                                "--mask-scale", "1.5"])
    given = given_options(args)
    recorded = {"plan": {"max_gap": 7, "mode": "unknown"}, "render": {"style": "pixelate"}, "missing": "blur-frame"}
    config = start_job.run_config(recorded, **given["plan"], **given["render"], **given["run"])
    assert (config.plan.mode, [str(p) for p in config.plan.picks], config.plan.max_gap) == ("select", ["3:10:20"], 7)
    assert (config.render.mask_scale, config.render.style, config.missing) == (1.5, "pixelate", "blur-frame")
    assert given_options(start_job.build_parser().parse_args(["--job", "j"])) == {"plan": {}, "render": {}, "run": {}}
    text = " ".join(start_job.build_parser().format_help().split())
    assert f"(default: {RenderConfig().mask_scale}," in text and f"(default: {PlanConfig().max_gap}," in text
    with pytest.raises(SystemExit):
        start_job.build_parser().parse_args(["--job", "j", "--mask-scale", "9"])  # range-checked like face-blur's


# ---------------------------------------------------------------- adaptive analysis (AWS Batch)


@pytest.fixture
def analysis_queue(s3_env, bucket):
    """The analysis queue and job definition in moto's Batch, named as terraform/analysis.tf names
    them (one moto server per session: the definition gets a new revision per test)."""
    batch, queue = moto_batch_queue(f"face-blur-analysis-{bucket[-24:].strip('-')}")
    tf = TerraformConfig()
    command = tf.locals["analysis_container"]["command"]
    definition = batch.register_job_definition(
        jobDefinitionName="face-blur-analysis", type="container", parameters={"segment_frames": "3000"},
        propagateTags=True, containerProperties={"image": "inference:0.1.0", "vcpus": 4, "memory": 8192,
                                                 "command": command})
    values = {**outputs(bucket, tf), "analysis_job_queue": {"value": queue},
              "analysis_job_definition": {"value": definition["jobDefinitionName"]}}
    return batch, deployment.Deployment.from_outputs(values), definition["jobDefinitionArn"]


def _upload_frames(s3, bucket: str, job: str, frames: int) -> None:
    import io

    from PIL import Image

    for i in range(frames):
        buf = io.BytesIO()
        Image.fromarray(_paint(i)).save(buf, "PNG")
        s3.put_object(Bucket=bucket, Key=f"input/{job}/frames/img{i + 1:07d}.png", Body=buf.getvalue())


@pytest.mark.parametrize(("frames", "segment_frames", "count"), [(1, 3000, 1), (3000, 3000, 1), (3001, 3000, 2),
                                                                  (30_000_000, 3000, 10_000), (10, 1, 10)])
def test_segment_count(frames, segment_frames, count):
    assert start_job.segment_count(frames, segment_frames) == count


def test_more_segments_than_an_array_job_holds_are_refused_naming_what_fits():
    with pytest.raises(ValueError, match="at most 10000 children: use --segment-frames 3001 or more"):
        start_job.segment_count(30_000_001, 3000)


def test_adaptive_analysis_is_submitted_to_the_analysis_queue_and_ends_in_the_lambda(s3, bucket, analysis_queue):
    from postprocess.lambda_handler import handle_event
    from postprocess.run import JobOptions

    batch, dep, definition_arn = analysis_queue
    job = "clip-2"
    _upload_frames(s3, bucket, job, N)
    config = start_job.run_config(mask_scale=1.0)
    job_id = start_job.start_analysis(dep, s3, batch, job, config, segment_frames=4,
                                      now=datetime(2031, 1, 2, 3, 4, 5))
    [parent] = batch.describe_jobs(jobs=[job_id])["jobs"]
    assert parent["jobName"] == f"{dep.job_name_prefix}{job}-310102030405"
    assert parent["jobQueue"].endswith(f":job-queue/{dep.analysis_job_queue}")
    assert parent["jobDefinition"] == definition_arn
    options_uri = f"s3://{bucket}/results/{job}/face-blur-options.json"
    assert parent["parameters"] == {"options": options_uri, "segment_frames": "4"}
    assert parent["arrayProperties"]["size"] == 3  # ceil(10 / 4)
    assert parent["tags"] == {"face-blur:job": job}
    options = JobOptions.from_json(s3.get_object(Bucket=bucket, Key=f"results/{job}/face-blur-options.json")
                                   ["Body"].read())
    assert (options.frames, options.results, options.output, options.frame_count) == (
        f"s3://{bucket}/input/{job}/frames/", f"s3://{bucket}/results/{job}/frames/", f"s3://{bucket}/output/{job}/",
        N)
    # The request the script built, as the API model checks it (propagateTags is not echoed by moto).
    request = start_job.analysis_request(dep, job, parent["jobName"], options_uri, N, 4)
    assert request["propagateTags"] is True and "retryStrategy" not in request
    assert "containerOverrides" not in request  # the definition's command, with its Ref:: parameters

    # the children's results (stand-in), then the parent's end as EventBridge delivers it
    alice, bob = people(2, seed=7)
    rng = np.random.default_rng(3)
    for i in range(N):
        s3.put_object(Bucket=bucket, Key=f"results/{job}/frames/img{i + 1:07d}.png.out",
                      Body=_frame_result(i + 1, alice, bob, rng))
    detail = json.loads(json.dumps({**parent, "status": "SUCCEEDED"}, default=str))
    event = {"version": "0", "source": "aws.batch", "detail-type": "Batch Job State Change", "region": "us-east-1",
             "resources": [parent["jobArn"]], "detail": detail}
    env = {"FACE_BLUR_LAMBDA_MAX_FRAMES": "1000", "FACE_BLUR_ANALYSIS_JOB_DEFINITION": dep.analysis_job_definition,
           "FACE_BLUR_ANALYSIS_JOB_QUEUE": dep.analysis_job_queue}
    handled = handle_event(event, env=env)
    assert handled["action"] == "ran" and handled["job"] == parent["jobName"], handled
    assert handled["summary"]["frames"] == N

    # wait: Batch's answers scripted (moto leaves an array parent SUBMITTED), the marker real
    class Finishing:
        def __init__(self) -> None:
            self.statuses = ["RUNNABLE", "RUNNING", "SUCCEEDED"]

        def describe_jobs(self, jobs):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {"jobs": [{**parent, "jobId": jobs[0], "status": status, "stoppedAt": parent["createdAt"]}]}

    report = wait_job.wait_job(dep, s3, None, job, timeout=30, poll=0.01, batch=Finishing(), analysis_job=job_id)
    assert report["analysis_job_id"] == job_id and report["analysis_job"] == parent["jobName"]
    assert report["frames"] == N and report["frames_blurred"] == N


def test_one_segment_is_a_plain_job_and_its_failure_ends_the_wait(s3, bucket, analysis_queue):
    batch, dep, _ = analysis_queue
    _upload_frames(s3, bucket, "clip-3", 2)
    job_id = start_job.start_analysis(dep, s3, batch, "clip-3", start_job.run_config())
    [described] = batch.describe_jobs(jobs=[job_id])["jobs"]
    assert "arrayProperties" not in described
    assert described["parameters"]["segment_frames"] == "3000"
    # moto has no Docker to run the container: the job ends FAILED, and the wait says so
    with pytest.raises(wait_job.JobFailedError, match=f"analysis job .*{job_id}.* failed"):
        wait_job.wait_job(dep, s3, None, "clip-3", timeout=60, poll=0.2, batch=batch, analysis_job=job_id)


def test_adaptive_analysis_needs_the_analysis_outputs_and_writes_nothing_without_them(s3, bucket):
    older = outputs(bucket)
    del older["analysis_job_queue"], older["analysis_job_definition"]
    dep = deployment.Deployment.from_outputs(older)  # the transform path still runs on it
    _upload_frames(s3, bucket, "clip-4", 1)
    with pytest.raises(deployment.DeploymentError, match="analysis_job_queue, analysis_job_definition"):
        start_job.start_analysis(dep, s3, None, "clip-4", start_job.run_config())
    assert deployment.list_keys(s3, bucket, "results/") == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--analysis", "adaptive", "--instance-type", "ml.c5.xlarge"], "--instance-type apply to the transform job"),
    (["--analysis", "adaptive", "--image-uri", "x/inference:2"], "--image-uri apply to the transform job"),
    (["--segment-frames", "100"], "--segment-frames applies to --analysis adaptive only"),
    (["--analysis", "adaptive", "--segment-frames", "0"], "out of range"),
    (["--analysis", "adaptive", "--segment-frames", "1000001"], "out of range"),  # more than a child takes
    (["--analysis", "sometimes"], "invalid choice"),
])
def test_start_job_usage_errors_exit_2(argv, message):
    done = subprocess.run([sys.executable, str(SCRIPTS / "start_job.py"), "--job", "j", "--outputs", "absent.json",
                           *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
