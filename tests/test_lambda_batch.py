"""The Lambda and Batch entry points on a realistic EventBridge event, against moto (S3 and Batch).

moto's Batch accepts and describes jobs (names, commands, array size, dependencies) but cannot run
containers, so the containers' commands are run here in-process, as Batch would run them.
"""

from __future__ import annotations

import json
import uuid

import pytest
from postprocess_helpers import analysed_scene, get_tree, moto_batch_queue, new_bucket, put_tree

from postprocess import batch as batch_main
from postprocess.lambda_handler import DETAIL_TYPE, ConfigurationError, handle_event, handler
from postprocess.run import MARKER_NAME, OPTIONS_NAME, JobOptions, RunConfig, run

ACCOUNT = "123456789012"


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test case (shadows conftest's, which parametrised cases would share)."""
    return new_bucket(s3)


def transform_event(job_name: str, status: str, input_uri: str, output_uri: str,
                    failure: str | None = None) -> dict:
    """An EventBridge "SageMaker Transform Job State Change" event as SageMaker sends it (the detail
    mirrors DescribeTransformJob; times are epoch milliseconds)."""
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:transform-job/{job_name}"
    detail = {
        "TransformJobName": job_name,
        "TransformJobArn": arn,
        "TransformJobStatus": status,
        "ModelName": "face-blur-inference",
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "Environment": {"FACE_BLUR_EMBEDDER": "mobilefacenet"},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "application/x-image",
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json", "AssembleWith": "None",
                            "KmsKeyId": ""},
        "TransformResources": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "CreationTime": 1732500000000,
        "TransformStartTime": 1732500240000,
        "TransformEndTime": 1732500900000,
        "Tags": {},
    }
    if failure:
        detail["FailureReason"] = failure
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE, "source": "aws.sagemaker",
            "account": ACCOUNT, "time": "2024-11-25T02:15:00Z", "region": "us-east-1", "resources": [arn],
            "detail": detail}


@pytest.fixture
def job(s3, bucket, faces_dir, test_model_dir, monkeypatch):
    """A finished transform job: inputs job/in/{frames,refs}, results job/out/{frames,refs}, and the
    options file the start script wrote next to the results."""
    for name in ("FACE_BLUR_LAMBDA_MAX_FRAMES", "FACE_BLUR_BATCH_JOB_QUEUE", "FACE_BLUR_BATCH_JOB_DEFINITION",
                 "FACE_BLUR_RENDER_ARRAY_SIZE", "AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"):
        monkeypatch.delenv(name, raising=False)
    analysed = analysed_scene(faces_dir, test_model_dir)
    put_tree(s3, bucket, "job/in/frames", analysed.frames)
    put_tree(s3, bucket, "job/out/frames", analysed.results)
    put_tree(s3, bucket, "job/out/refs", analysed.references)
    base = f"s3://{bucket}/job"
    options = JobOptions(frames=f"{base}/in/frames", results=f"{base}/out/frames", output=f"{base}/blurred",
                         references=f"{base}/out/refs", config=RunConfig(workers=4))
    s3.put_object(Bucket=bucket, Key=f"job/out/{OPTIONS_NAME}", Body=options.to_json())
    return {"bucket": bucket, "input": f"{base}/in/", "output": f"{base}/out", "options": options,
            "options_uri": f"{base}/out/{OPTIONS_NAME}", "frames": len(analysed.frames)}


def test_a_completed_short_job_is_post_processed_in_the_lambda(s3, job):
    result = handler(transform_event("fb-video-1", "Completed", job["input"], job["output"]), None)
    assert result["action"] == "ran" and result["job"] == "fb-video-1"
    assert result["summary"]["frames"] == job["frames"]
    out = get_tree(s3, job["bucket"], "job/blurred")
    assert MARKER_NAME in out
    assert len([k for k in out if k.endswith(".png")]) == job["frames"]


@pytest.mark.parametrize(("status", "failure"), [("Failed", "ClientError: model container exited"),
                                                 ("Stopped", None), ("InProgress", None)])
def test_other_statuses_are_ignored(s3, job, status, failure, caplog):
    before = get_tree(s3, job["bucket"])
    result = handler(transform_event("fb-video-2", status, job["input"], job["output"], failure), None)
    assert result["action"] == "ignored" and status in result["reason"]
    assert get_tree(s3, job["bucket"]) == before
    if failure:
        assert failure in caplog.text


def test_other_events_are_ignored(s3, job):
    event = transform_event("fb-video-3", "Completed", job["input"], job["output"])
    event["detail-type"] = "SageMaker Training Job State Change"
    assert handler(event, None)["action"] == "ignored"


def test_a_job_without_options_is_not_ours(s3, job):
    s3.delete_object(Bucket=job["bucket"], Key=f"job/out/{OPTIONS_NAME}")
    result = handler(transform_event("other-team-job", "Completed", job["input"], job["output"]), None)
    assert result["action"] == "ignored" and OPTIONS_NAME in result["reason"]


@pytest.fixture
def batch_queue(s3_env, bucket):
    """A job queue and job definition in moto's Batch (unique names per test)."""
    suffix = bucket[-30:].strip("-")
    batch, queue = moto_batch_queue(f"q-{suffix}")
    definition = batch.register_job_definition(
        jobDefinitionName=f"jd-{suffix}", type="container",
        containerProperties={"image": "face-blur-postprocess:latest", "vcpus": 4, "memory": 8192,
                             "command": ["python", "-m", "postprocess.batch", "--help"]})
    return batch, queue, definition["jobDefinitionName"]


def test_a_long_job_goes_to_batch_and_the_batch_steps_finish_it(s3, job, batch_queue, monkeypatch, capsys):
    batch, queue, definition = batch_queue
    monkeypatch.setenv("FACE_BLUR_LAMBDA_MAX_FRAMES", "10")  # the 16-frame scene counts as long
    monkeypatch.setenv("FACE_BLUR_BATCH_JOB_QUEUE", queue)
    monkeypatch.setenv("FACE_BLUR_BATCH_JOB_DEFINITION", definition)
    monkeypatch.setenv("FACE_BLUR_RENDER_ARRAY_SIZE", "3")
    event = transform_event("fb-long-video", "Completed", job["input"], job["output"])
    result = handler(event, None)
    assert result["action"] == "submitted" and result["frames"] > 10
    # the Lambda itself renders nothing: it only claims the transform job, naming the jobs it started
    claim = json.loads(get_tree(s3, job["bucket"], "job/blurred").pop("face-blur-batch-fb-long-video.json"))
    assert get_tree(s3, job["bucket"], "job/blurred").keys() == {"face-blur-batch-fb-long-video.json"}
    assert claim["jobs"]["plan"]["jobId"] == result["jobs"]["plan"]["jobId"]

    # EventBridge delivers at least once: the same event again starts nothing new
    def queued_jobs() -> set[str]:
        # Every state (moto moves jobs along in the background, so a job may change state between
        # two listings) and parent jobs only (moto adds an array's children "<id>:<index>" lazily).
        states = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
        return {j["jobId"] for s in states for j in batch.list_jobs(jobQueue=queue, jobStatus=s)["jobSummaryList"]
                if ":" not in j["jobId"]}

    submitted = queued_jobs()
    assert {result["jobs"][s]["jobId"] for s in ("plan", "render", "finalize")} <= submitted
    again = handler(event, None)
    assert again["action"] == "ignored" and "already submitted" in again["reason"]
    assert queued_jobs() == submitted

    ids = {step: result["jobs"][step]["jobId"] for step in ("plan", "render", "finalize")}
    described = {j["jobId"]: j for j in batch.describe_jobs(jobs=list(ids.values()))["jobs"]}
    plan, render, finalize = (described[ids[s]] for s in ("plan", "render", "finalize"))
    for step, spec in (("plan", plan), ("render", render), ("finalize", finalize)):
        command = spec["container"]["command"]
        assert command[:5] == ["python", "-m", "postprocess.batch", "--options", job["options_uri"]]
        assert command[5:7] == ["--step", step]
        assert spec["jobQueue"].endswith(queue)
    assert render["arrayProperties"]["size"] == 3
    assert render["container"]["command"][7:] == ["--array-size", "3"]
    assert [d["jobId"] for d in plan.get("dependsOn", [])] == []
    assert [d["jobId"] for d in render["dependsOn"]] == [ids["plan"]]
    assert [d["jobId"] for d in finalize["dependsOn"]] == [ids["render"]]

    # What the containers do, in dependency order.
    def step(*argv: str, index: int | None = None) -> int:
        env = {} if index is None else {"AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
        return batch_main.main(["--options", job["options_uri"], *argv], env=env)

    assert step("--step", "plan") == 0
    assert step("--step", "render", "--array-size", "3", index=0) == 0
    capsys.readouterr()
    assert step("--step", "finalize") == 1  # two slices not rendered yet: no marker
    assert "have no output" in capsys.readouterr().err
    assert MARKER_NAME not in get_tree(s3, job["bucket"], "job/blurred")
    for index in (1, 2):
        assert step("--step", "render", "--array-size", "3", index=index) == 0
    assert step("--step", "finalize") == 0

    out = get_tree(s3, job["bucket"], "job/blurred")
    assert MARKER_NAME in out
    # the same bytes as one in-process run over the same inputs and options
    options = job["options"]
    run(options.frames, options.results, f"s3://{job['bucket']}/job/one-shot", options.config, options.references)
    one_shot = get_tree(s3, job["bucket"], "job/one-shot")
    frames = sorted(k for k in out if k.endswith(".png"))
    assert len(frames) == job["frames"]
    assert all(out[k] == one_shot[k] for k in frames)


def test_a_long_job_without_batch_settings_names_them(s3, job):
    event = transform_event("fb-long-video", "Completed", job["input"], job["output"])
    with pytest.raises(ConfigurationError, match="FACE_BLUR_BATCH_JOB_QUEUE"):
        handle_event(event, env={"FACE_BLUR_LAMBDA_MAX_FRAMES": "10"})


def test_the_frame_count_hint_decides_without_listing(s3, job):
    """A start script that knows the frame count writes it; the Lambda trusts it."""
    hinted = JobOptions(**{**job["options"].__dict__, "frame_count": 50_000})
    s3.put_object(Bucket=job["bucket"], Key=f"job/out/{OPTIONS_NAME}", Body=hinted.to_json())

    class RecordingBatch:
        def __init__(self):
            self.specs = []

        def submit_job(self, **spec):
            self.specs.append(spec)
            return {"jobName": spec["jobName"], "jobId": f"id-{len(self.specs)}"}

    recorder = RecordingBatch()
    result = handle_event(transform_event("fb-hinted", "Completed", job["input"], job["output"]), batch=recorder,
                          env={"FACE_BLUR_BATCH_JOB_QUEUE": "q", "FACE_BLUR_BATCH_JOB_DEFINITION": "jd"})
    assert result["frames"] == 50_000 and result["jobs"]["render"]["arraySize"] == 10
    assert [s["jobName"] for s in recorder.specs] == ["face-blur-fb-hinted-plan", "face-blur-fb-hinted-render",
                                                      "face-blur-fb-hinted-finalize"]


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": "face-blur/options/v0"}, "schema must be"),
    ({"frames": None}, "'frames' must be a URI"),
    ({"references": 3}, "'references' must be a URI string or null"),
    ({"options": {"blur": {}}}, "unknown run options: blur"),
    ({"options": {"render": {"style": "swirl"}}}, "style must be one of"),
    ({"options": {"plan": {"mode": "everyone"}}}, "PlanConfig.mode"),
    ({"options": {"missing": "ignore"}}, "missing must be one of"),
    ({"frame_count": -1}, "frame_count"),
])
def test_bad_job_options_are_named(change, message):
    data = json.loads(JobOptions("s3://b/f", "s3://b/r", "s3://b/o").to_json())
    data.update(change)
    with pytest.raises(ValueError, match=message):
        JobOptions.from_json(json.dumps(data).encode())


def test_job_options_round_trip():
    from postprocess.blur import RenderConfig
    from postprocess.config import PlanConfig

    options = JobOptions("s3://b/f", "s3://b/r", "s3://b/o", "s3://b/refs",
                         RunConfig(plan=PlanConfig(mode="select", picks=("12:100:80",)),
                                   render=RenderConfig(style="solid", fill=(10, 20, 30)), missing="blur-frame"),
                         frame_count=12)
    assert JobOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], {}, (0, 1)),
    (["--array-size", "4"], {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}, (3, 4)),
    ([], {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "2"}, (1, 2)),
    ([], {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "FACE_BLUR_RENDER_ARRAY_SIZE": "5"}, (1, 5)),
])
def test_array_slice_comes_from_the_batch_environment(argv, env, expected):
    size = int(argv[1]) if argv else None
    assert batch_main.slice_from_env(size, env) == expected


def test_an_index_outside_the_array_is_an_error():
    with pytest.raises(ValueError, match="outside an array of size 2"):
        batch_main.slice_from_env(2, {"AWS_BATCH_JOB_ARRAY_INDEX": "2"})
