"""The post-processing Lambda on the AWS Batch events of adaptive analysis, against moto's S3 over HTTP.

The events are shaped as AWS Batch sends them (``Batch Job State Change``, source ``aws.batch``; the
detail mirrors DescribeJobs' JobDetail: ARNs with the job definition's revision, ``parameters``,
``arrayProperties`` with ``statusSummary``/``size`` on the parent of an array job and ``index`` on
each child). The analysis itself (``faceblur.segments`` in the inference image) is stood in for by
the real inference pipeline's results written where the children write them.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid

import pytest
from postprocess_helpers import analysed_scene, get_tree, new_bucket, put_tree

from postprocess.analysis_events import DEFINITION_ENV, QUEUE_ENV, same_resource
from postprocess.lambda_handler import ConfigurationError, handle_event, handler
from postprocess.run import MARKER_NAME, OPTIONS_NAME, JobOptions, RunConfig
from postprocess.storage import StorageError

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}"
ANALYSIS_QUEUE = f"{ARN}:job-queue/face-blur-analysis"
ANALYSIS_DEFINITION = f"{ARN}:job-definition/face-blur-analysis"  # what Terraform sets: arn_prefix, no revision
POSTPROCESS_QUEUE = f"{ARN}:job-queue/face-blur-postprocess"
POSTPROCESS_DEFINITION = f"{ARN}:job-definition/face-blur-postprocess"
ENV = {DEFINITION_ENV: ANALYSIS_DEFINITION, QUEUE_ENV: ANALYSIS_QUEUE}


def batch_event(status: str, options_uri: str | None, *, array: dict | None = None, name: str = "face-blur-clip-1",
                job_id: str | None = None, definition: str = f"{ANALYSIS_DEFINITION}:3", queue: str = ANALYSIS_QUEUE,
                reason: str | None = None, command: list[str] | None = None) -> dict:
    """A "Batch Job State Change" event as EventBridge delivers it."""
    job_id = job_id or str(uuid.uuid4())
    parameters = {"segment_frames": "3000"} if options_uri is None else {"options": options_uri,
                                                                          "segment_frames": "3000"}
    detail = {
        "jobArn": f"{ARN}:job/{job_id}",
        "jobName": name,
        "jobId": job_id,
        "jobQueue": queue,
        "status": status,
        "attempts": [],
        "createdAt": 1732500000000,
        "retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "retry"},
                                                            {"onReason": "*", "action": "exit"}]},
        "startedAt": 1732500120000,
        "stoppedAt": 1732500900000,
        "dependsOn": [],
        "jobDefinition": definition,
        "parameters": parameters,
        "container": {
            "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/inference:0.1.0",
            "command": command or ["python", "-m", "faceblur.segments", "--options", str(options_uri),
                                   "--segment-frames", "3000"],
            "jobRoleArn": f"arn:aws:iam::{ACCOUNT}:role/face-blur-analysis-job",
            "volumes": [{"name": "scratch"}],
            "environment": [{"name": "FACE_BLUR_MODEL_DIR", "value": "/opt/ml/model"}],
            "mountPoints": [{"containerPath": "/tmp", "readOnly": False, "sourceVolume": "scratch"}],
            "readonlyRootFilesystem": True,
            "ulimits": [],
            "networkInterfaces": [],
            "resourceRequirements": [{"value": "4", "type": "VCPU"}, {"value": "8192", "type": "MEMORY"}],
            "secrets": [],
        },
        "tags": {"face-blur:job": "clip"},
        "propagateTags": True,
        "platformCapabilities": ["EC2"],
        "eksAttempts": [],
    }
    if reason:
        detail["statusReason"] = reason
    if array is not None:
        detail["arrayProperties"] = array
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Batch Job State Change", "source": "aws.batch",
            "account": ACCOUNT, "time": "2024-11-25T02:15:00Z", "region": REGION, "resources": [detail["jobArn"]],
            "detail": detail}


def parent(size: int, succeeded: int | None = None) -> dict:
    done = size if succeeded is None else succeeded
    return {"statusSummary": {"STARTING": 0, "FAILED": size - done, "RUNNING": 0, "SUCCEEDED": done,
                              "RUNNABLE": 0, "SUBMITTED": 0, "PENDING": 0}, "size": size}


@pytest.fixture
def analysed(s3, faces_dir, test_model_dir, monkeypatch):
    """A job whose adaptive analysis has finished: frames under input/, every frame's result and the
    reference photo's under results/ (where the segments' children write them), the options file."""
    for name in ("FACE_BLUR_LAMBDA_MAX_FRAMES", "FACE_BLUR_BATCH_JOB_QUEUE", "FACE_BLUR_BATCH_JOB_DEFINITION",
                 "FACE_BLUR_RENDER_ARRAY_SIZE", DEFINITION_ENV, QUEUE_ENV):
        monkeypatch.delenv(name, raising=False)
    bucket = new_bucket(s3)
    scene = analysed_scene(faces_dir, test_model_dir)
    put_tree(s3, bucket, "input/clip/frames", scene.frames)
    put_tree(s3, bucket, "results/clip/frames", scene.results)
    put_tree(s3, bucket, "results/clip/refs", scene.references)
    base = f"s3://{bucket}"
    options = JobOptions(frames=f"{base}/input/clip/frames/", results=f"{base}/results/clip/frames/",
                         output=f"{base}/output/clip/", references=f"{base}/results/clip/refs/",
                         config=RunConfig(workers=4), frame_count=len(scene.frames))
    s3.put_object(Bucket=bucket, Key=f"results/clip/{OPTIONS_NAME}", Body=options.to_json())
    return {"bucket": bucket, "options_uri": f"{base}/results/clip/{OPTIONS_NAME}", "frames": len(scene.frames)}


def test_a_succeeded_array_job_is_post_processed_in_the_lambda(s3, analysed, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    event = batch_event("SUCCEEDED", analysed["options_uri"], array=parent(2))
    result = handler(event, None)
    assert result["action"] == "ran" and result["job"] == "face-blur-clip-1"
    assert result["summary"]["frames"] == analysed["frames"]
    out = get_tree(s3, analysed["bucket"], "output/clip")
    assert MARKER_NAME in out
    assert len([k for k in out if k.endswith(".png")]) == analysed["frames"]


def test_a_long_plain_job_goes_to_batch_once(s3, analysed):
    """One segment: a plain job (no arrayProperties). Past FACE_BLUR_LAMBDA_MAX_FRAMES the Lambda hands
    the post-processing to Batch, claimed under the analysis job's name, so a second delivery of the
    same event submits nothing."""

    class RecordingBatch:
        def __init__(self) -> None:
            self.specs: list[dict] = []

        def submit_job(self, **spec):
            self.specs.append(spec)
            return {"jobName": spec["jobName"], "jobId": f"id-{len(self.specs)}"}

    env = {**ENV, "FACE_BLUR_LAMBDA_MAX_FRAMES": "10", "FACE_BLUR_BATCH_JOB_QUEUE": POSTPROCESS_QUEUE,
           "FACE_BLUR_BATCH_JOB_DEFINITION": POSTPROCESS_DEFINITION, "FACE_BLUR_RENDER_ARRAY_SIZE": "3"}
    event = batch_event("SUCCEEDED", analysed["options_uri"], name="face-blur-clip-241125021500")
    recorder = RecordingBatch()
    result = handle_event(event, batch=recorder, env=env)
    assert result["action"] == "submitted" and result["frames"] == analysed["frames"]
    assert result["options"] == analysed["options_uri"]
    assert [s["jobName"] for s in recorder.specs] == [f"face-blur-face-blur-clip-241125021500-{step}"
                                                      for step in ("plan", "render", "finalize")]
    assert all(s["jobQueue"] == POSTPROCESS_QUEUE and s["jobDefinition"] == POSTPROCESS_DEFINITION
               for s in recorder.specs)
    assert recorder.specs[0]["containerOverrides"]["command"][3:5] == ["--options", analysed["options_uri"]]
    out = get_tree(s3, analysed["bucket"], "output/clip")
    claim = json.loads(out["face-blur-batch-face-blur-clip-241125021500.json"])
    assert claim["analysis_job"] == "face-blur-clip-241125021500"
    assert claim["analysis_job_id"] == event["detail"]["jobId"] and claim["event"] == event["id"]
    assert claim["jobs"]["plan"]["jobId"] == "id-1"

    again = handle_event(copy.deepcopy(event), batch=recorder, env=env)
    assert again["action"] == "ignored" and "already submitted" in again["reason"]
    assert len(recorder.specs) == 3


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED"])
def test_a_child_of_the_array_is_ignored(s3, analysed, status):
    before = get_tree(s3, analysed["bucket"])
    event = batch_event(status, analysed["options_uri"], array={"index": 1}, name="face-blur-clip-1")
    result = handle_event(event, env=ENV)
    assert result == {"action": "ignored", "job": "face-blur-clip-1", "reason": "array child 1"}
    assert get_tree(s3, analysed["bucket"]) == before


@pytest.mark.parametrize("array", [None, {"index": 0}, parent(3)])
def test_the_post_processings_own_batch_jobs_are_ignored(s3, analysed, array):
    """plan / render (array) / finalize run from the postprocess definition and carry an options
    parameter too: their end is not an analysis job's."""
    before = get_tree(s3, analysed["bucket"])
    event = batch_event("SUCCEEDED", analysed["options_uri"], array=array, name="face-blur-face-blur-clip-1-render",
                        definition=f"{POSTPROCESS_DEFINITION}:7", queue=POSTPROCESS_QUEUE,
                        command=["python", "-m", "postprocess.batch", "--options", analysed["options_uri"],
                                 "--step", "render"])
    result = handle_event(event, env=ENV)
    assert result["action"] == "ignored"
    if array != {"index": 0}:
        assert "job definition" in result["reason"] and "face-blur-postprocess" in result["reason"]
    assert get_tree(s3, analysed["bucket"]) == before


def test_a_job_of_the_analysis_definition_in_another_queue_is_ignored(s3, analysed):
    event = batch_event("SUCCEEDED", analysed["options_uri"], queue=f"{ARN}:job-queue/someone-elses")
    result = handle_event(event, env=ENV)
    assert result["action"] == "ignored" and "someone-elses" in result["reason"]
    assert MARKER_NAME not in get_tree(s3, analysed["bucket"], "output/clip")


def test_a_failed_analysis_is_logged_with_its_reason_and_ignored(s3, analysed, caplog):
    before = get_tree(s3, analysed["bucket"])
    reason = "Array Child Job failed"
    with caplog.at_level(logging.INFO, logger="postprocess.analysis_events"):
        result = handle_event(batch_event("FAILED", analysed["options_uri"], array=parent(4, succeeded=3),
                                          reason=reason), env=ENV)
        assert result["action"] == "ignored" and result["reason"] == "status FAILED"
        assert any(r.levelno == logging.ERROR and reason in r.getMessage() for r in caplog.records)
        running = handle_event(batch_event("RUNNING", analysed["options_uri"]), env=ENV)
    assert running["action"] == "ignored" and running["reason"] == "status RUNNING"
    assert get_tree(s3, analysed["bucket"]) == before


def test_a_succeeded_analysis_without_its_options_is_an_error(s3, analysed):
    """The job definition's command cannot run without the options parameter, so a SUCCEEDED analysis
    job without one is an anomaly: an error (retried, then the dead-letter queue and its alarm), not
    a silent ignore."""
    with pytest.raises(ValueError, match="parameters.options"):
        handle_event(batch_event("SUCCEEDED", None, array=parent(2)), env=ENV)
    missing = analysed["options_uri"].replace("/clip/", "/gone/")
    with pytest.raises(StorageError):  # ours (its definition), so a missing file is no "not a face-blur job"
        handle_event(batch_event("SUCCEEDED", missing), env=ENV)


def test_without_the_analysis_definition_setting_the_lambda_says_so(s3, analysed):
    with pytest.raises(ConfigurationError, match=DEFINITION_ENV):
        handle_event(batch_event("SUCCEEDED", analysed["options_uri"]), env={})


@pytest.mark.parametrize(("configured", "seen", "same"), [
    (ANALYSIS_DEFINITION, f"{ANALYSIS_DEFINITION}:3", True),           # Terraform's arn_prefix, event with revision
    ("face-blur-analysis", f"{ANALYSIS_DEFINITION}:12", True),          # a plain name
    ("face-blur-analysis:3", f"{ANALYSIS_DEFINITION}:3", True),         # name:revision (any revision of the name)
    (f"{ANALYSIS_DEFINITION}:3", f"{ANALYSIS_DEFINITION}:4", True),
    (ANALYSIS_DEFINITION, f"{ARN}:job-definition/face-blur-analysis-2:1", False),
    (ANALYSIS_DEFINITION, f"{POSTPROCESS_DEFINITION}:3", False),
    (ANALYSIS_DEFINITION, f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/face-blur-analysis:3", False),
    (ANALYSIS_DEFINITION, "", False),
])
def test_job_definitions_compare_by_name_and_arn(configured, seen, same):
    assert same_resource(configured, seen, "job-definition") is same


def test_job_queues_compare_by_name_and_arn():
    assert same_resource("face-blur-analysis", ANALYSIS_QUEUE, "job-queue")
    assert same_resource(ANALYSIS_QUEUE, ANALYSIS_QUEUE, "job-queue")
    assert not same_resource(ANALYSIS_QUEUE, POSTPROCESS_QUEUE, "job-queue")
    assert not same_resource(ANALYSIS_QUEUE, ANALYSIS_QUEUE.replace(ACCOUNT, "210987654321"), "job-queue")
