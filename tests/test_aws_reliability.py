"""The AWS path's promises (README: "Reliability"), against the real S3, Batch and SageMaker APIs of
a moto server, reached by boto3 over HTTP; requests are checked as boto3 sends them.

- The Batch jobs the Lambda submits keep the job definition's retry rules (a SubmitJob
  ``retryStrategy`` replaces them, ``evaluateOnExit`` included).
- A transform job's instance volume is encrypted with the deployment's key where SageMaker allows
  a key (instance types without local NVMe storage).
- A re-render from an edited plan on S3 works, records which plan was rendered, and never
  overwrites the original plan.
"""

from __future__ import annotations

import json
import sys

import boto3
import pytest
from postprocess_helpers import analysed_scene, decode, face_hidden, face_untouched, get_tree, new_bucket, put_tree
from terraform_helpers import REPO, TerraformConfig
from test_lambda_batch import transform_event

from postprocess import batch as batch_main
from postprocess.edited import EditedPlanError, edited_name, rerender
from postprocess.lambda_handler import handler
from postprocess.run import MARKER_NAME, OPTIONS_NAME, PLAN_NAME, JobOptions, RunConfig, run

sys.path.insert(0, str(REPO / "scripts"))
import deployment  # noqa: E402
import start_job  # noqa: E402


def sent(client, operation: str) -> list[dict]:
    """Every request ``client`` sends for ``operation``, as the parameters boto3 serialises."""
    calls: list[dict] = []
    client.meta.events.register(f"provide-client-params.{client.meta.service_model.service_name}.{operation}",
                                lambda params, **_: calls.append(json.loads(json.dumps(params))))
    return calls


# ---------------------------------------------------------------- Batch retries


def terraform_retry_strategy() -> dict:
    """The job definition's retryStrategy as terraform/batch.tf declares it, in Batch API names."""
    block = TerraformConfig().resources["aws_batch_job_definition"]["postprocess"]["retry_strategy"][0]
    rules = [{k: v for k, v in (("action", r["action"]), ("onStatusReason", r.get("on_status_reason")),
                                ("onReason", r.get("on_reason"))) if v} for r in block["evaluate_on_exit"]]
    return {"attempts": 3, "evaluateOnExit": rules}


def effective_retry(request: dict, definition: dict) -> dict:
    """What AWS Batch applies to a job: "a retry strategy specified during SubmitJob overrides the retry
    strategy defined in the job definition" (SubmitJob API reference), the whole object."""
    return request.get("retryStrategy") or definition.get("retryStrategy") or {}


@pytest.fixture
def long_job(s3, faces_dir, test_model_dir, monkeypatch):
    bucket = new_bucket(s3)
    analysed = analysed_scene(faces_dir, test_model_dir)
    put_tree(s3, bucket, "job/in/frames", analysed.frames)
    put_tree(s3, bucket, "job/out/frames", analysed.results)
    base = f"s3://{bucket}/job"
    options = JobOptions(frames=f"{base}/in/frames", results=f"{base}/out/frames", output=f"{base}/blurred",
                         config=RunConfig(workers=4))
    s3.put_object(Bucket=bucket, Key=f"job/out/{OPTIONS_NAME}", Body=options.to_json())
    suffix = bucket[-20:]
    iam, batch = boto3.client("iam"), boto3.client("batch")
    role = iam.create_role(RoleName=f"r-{suffix}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(computeEnvironmentName=f"ce-{suffix}", type="UNMANAGED",
                                          state="ENABLED", serviceRole=role)
    queue = batch.create_job_queue(jobQueueName=f"q-{suffix}", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1,
                                                             "computeEnvironment": ce["computeEnvironmentArn"]}])
    definition = batch.register_job_definition(
        jobDefinitionName=f"jd-{suffix}", type="container", retryStrategy=terraform_retry_strategy(),
        containerProperties={"image": "face-blur-postprocess:latest", "vcpus": 1, "memory": 2048,
                             "command": ["python", "-m", "postprocess.batch", "--help"]})
    for name, value in (("FACE_BLUR_LAMBDA_MAX_FRAMES", "4"), ("FACE_BLUR_BATCH_JOB_QUEUE", queue["jobQueueName"]),
                        ("FACE_BLUR_BATCH_JOB_DEFINITION", definition["jobDefinitionName"]),
                        ("FACE_BLUR_RENDER_ARRAY_SIZE", "2")):
        monkeypatch.setenv(name, value)
    return {"bucket": bucket, "base": base, "options": options, "batch": batch,
            "definition": definition["jobDefinitionArn"], "frames": len(analysed.frames)}


def test_batch_jobs_keep_the_definitions_rule_that_bad_input_is_not_retried(s3, long_job, monkeypatch):
    batch = long_job["batch"]
    calls = sent(batch, "SubmitJob")
    monkeypatch.setattr(boto3, "client", lambda name, *a, **k: batch if name == "batch" else boto3.Session().client(
        name, *a, **k))
    base = long_job["base"]
    result = handler(transform_event("fb-retry", "Completed", f"{base}/in/", f"{base}/out"), None)
    assert result["action"] == "submitted" and len(calls) == 3
    definition = batch.describe_job_definitions(jobDefinitions=[long_job["definition"]])["jobDefinitions"][0]
    assert definition["retryStrategy"]["evaluateOnExit"]  # moto kept the rules terraform declares
    for request in calls:
        retry = effective_retry(request, definition)
        rules = retry.get("evaluateOnExit", [])
        # a host that went away is retried; anything else (bad input, a bug) fails at once
        assert {r.get("onStatusReason") for r in rules if r["action"].upper() == "RETRY"} == {
            "Host EC2*", "Your Spot Task was interrupted*"}, (request["jobName"], retry)
        assert any(r["action"].upper() == "EXIT" and r.get("onReason") == "*" for r in rules), retry


# ---------------------------------------------------------------- the transform job's volume key


@pytest.fixture
def dep(s3):
    from test_scripts import outputs

    return deployment.Deployment.from_outputs(outputs(new_bucket(s3)))


@pytest.mark.parametrize("instance_type, keyed", [
    ("ml.c5.xlarge", True), ("ml.m5.2xlarge", True), ("ml.p3.2xlarge", True),
    ("ml.g4dn.xlarge", False), ("ml.g5.xlarge", False), ("ml.m5d.large", False), ("ml.p3dn.24xlarge", False),
])
def test_the_transform_volume_is_encrypted_with_the_deployments_key_where_sagemaker_allows_one(
        s3_env, dep, instance_type, keyed):
    sm = boto3.client("sagemaker")
    calls = sent(sm, "CreateTransformJob")
    settings = start_job.TransformSettings.defaults(dep, instance_type=instance_type)
    name = f"fb-volume-{instance_type.replace('.', '-')}"
    sm.create_model(ModelName=f"m-{name}", ExecutionRoleArn=dep.execution_role_arn,
                    PrimaryContainer={"Image": dep.inference_image_uri})
    sm.create_transform_job(**start_job.transform_request(dep, "clip", name, f"m-{name}", settings))
    resources = calls[0]["TransformResources"]
    if keyed:
        assert resources["VolumeKmsKeyId"] == dep.kms_key_arn
        described = sm.describe_transform_job(TransformJobName=name)["TransformResources"]
        assert described.get("VolumeKmsKeyId") == dep.kms_key_arn
    else:  # local NVMe storage, encrypted by the instance; SageMaker refuses a volume key for it
        assert "VolumeKmsKeyId" not in resources
    assert calls[0]["TransformOutput"]["KmsKeyId"] == dep.kms_key_arn


def test_the_sagemaker_role_may_use_the_key_for_the_volume_only_through_sagemaker():
    tf = TerraformConfig()
    grants = [st for st in tf.policy_statements("sagemaker") if "kms:CreateGrant" in st.get("actions", [])]
    assert len(grants) == 1
    conditions = {c["variable"]: c for c in grants[0]["condition"]}
    assert grants[0]["resources"] == ["${aws_kms_key.main.arn}"]
    assert conditions["kms:GrantIsForAWSResource"]["values"] == ["true"]
    assert any("sagemaker" in v for v in conditions["kms:ViaService"]["values"])


# ---------------------------------------------------------------- re-render from an edited plan


@pytest.fixture
def rendered(s3, long_job):
    """A finished run on S3: frames, results, output with plan, manifest and marker."""
    options = long_job["options"]
    run(options.frames, options.results, options.output, options.config)
    return long_job


def flip_first_blurred(plan: dict) -> dict:
    """The plan with its first blurred sequence kept instead, as the review page's toggle does."""
    seq = next(s for s in plan["sequences"] if s["decision"] == "blur")
    seq.update(decision="keep", reason="reviewer: the reporter")
    return seq


def test_an_edited_plan_on_s3_is_rendered_by_the_batch_steps_and_recorded(s3, rendered, capsys):
    bucket, base, options = rendered["bucket"], rendered["base"], rendered["options"]
    before = get_tree(s3, bucket, "job/blurred")
    original_plan = before[PLAN_NAME]
    plan = json.loads(original_plan)
    seq = flip_first_blurred(plan)
    edited = json.dumps(plan, indent=1).encode()
    s3.put_object(Bucket=bucket, Key="job/blurred/face-blur-plan.reviewed.json", Body=edited)
    edited_uri = f"{base}/blurred/face-blur-plan.reviewed.json"
    options_uri = f"{base}/out/{OPTIONS_NAME}"

    def step(*argv: str, index: int | None = None) -> int:
        env = {} if index is None else {"AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
        return batch_main.main(["--options", options_uri, *argv], env=env)

    assert step("--step", "plan", "--plan", edited_uri) == 0
    assert MARKER_NAME not in get_tree(s3, bucket, "job/blurred")  # the output is changing
    for index in (0, 1):
        assert step("--step", "render", "--array-size", "2", index=index) == 0
    assert step("--step", "finalize") == 0, capsys.readouterr().err

    out = get_tree(s3, bucket, "job/blurred")
    marker = json.loads(out[MARKER_NAME])
    assert marker["plan"] == edited_name(edited) and marker["plan_source"] == edited_uri
    assert out[edited_name(edited)] == edited  # the rendered plan, recorded in the output
    assert out[PLAN_NAME] == original_plan  # the original audit record is never overwritten
    assert marker["digest"] != json.loads(before[MARKER_NAME])["digest"]
    frames = get_tree(s3, bucket, "job/in/frames")
    for offset, box in enumerate(seq["boxes"]):
        key = f"img{seq['first'] + offset:07d}.png"
        ok, why = face_untouched(decode(frames[key]), decode(out[key]), tuple(box))
        assert ok, (key, why)  # the person kept by the reviewer is clear now
        ok, why = face_hidden(decode(frames[key]), decode(before[key]), tuple(box))
        assert ok, (key, why)  # and was blurred before the edit
    others = [s for s in plan["sequences"] if s["decision"] == "blur"]
    for other in others:
        key = f"img{other['first']:07d}.png"
        assert out[key] == before[key] or face_hidden(decode(frames[key]), decode(out[key]),
                                                      tuple(other["boxes"][0]))[0]

    # the same edited plan again, one-shot: nothing to do, still finished
    again = rerender(options.output, edited_uri, options.config)
    assert again.already_complete and get_tree(s3, bucket, "job/blurred") == out


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(frames=[[1, 3]]), "lacks 13 of the 16 frames"),
    (lambda p: p.update(width=p["width"] * 2), "are 640x360"),
    (lambda p: p.update(schema="face-blur/plan/v0"), "unsupported plan schema"),
])
def test_an_edited_plan_that_cannot_replace_the_plan_is_refused_before_anything_is_written(
        s3, rendered, change, message):
    bucket, base = rendered["bucket"], rendered["base"]
    before = get_tree(s3, bucket, "job/blurred")
    plan = json.loads(before[PLAN_NAME])
    change(plan)
    s3.put_object(Bucket=bucket, Key="job/review/edited.json", Body=json.dumps(plan).encode())
    with pytest.raises(EditedPlanError, match=message):
        rerender(rendered["options"].output, f"{base}/review/edited.json", rendered["options"].config)
    assert get_tree(s3, bucket, "job/blurred") == before


def test_an_edited_plan_renders_into_a_new_output_from_the_frames_as_the_review_page_does(s3, rendered):
    """The review page's S3 render (``<plan folder>/reviewed/``) goes through the same path: an
    output with no run yet is started from the frames, and a plan for other frames is refused there
    before anything is written."""
    bucket, base, options = rendered["bucket"], rendered["base"], rendered["options"]
    plan = json.loads(get_tree(s3, bucket, "job/blurred")[PLAN_NAME])
    seq = flip_first_blurred(plan)
    wrong = dict(plan, width=plan["width"] * 2)
    s3.put_object(Bucket=bucket, Key="job/review/wrong.json", Body=json.dumps(wrong).encode())
    with pytest.raises(EditedPlanError, match="are 640x360"):
        rerender(f"{base}/blurred/reviewed/", f"{base}/review/wrong.json", options.config,
                 frames_uri=f"{base}/in/frames/")
    assert get_tree(s3, bucket, "job/blurred/reviewed") == {}

    edited = json.dumps(plan).encode()
    s3.put_object(Bucket=bucket, Key="job/review/edited.json", Body=edited)
    summary = rerender(f"{base}/blurred/reviewed/", f"{base}/review/edited.json", options.config,
                       frames_uri=f"{base}/in/frames/")
    out = get_tree(s3, bucket, "job/blurred/reviewed")
    frames = get_tree(s3, bucket, "job/in/frames")
    assert summary.frames == len(frames) and json.loads(out[MARKER_NAME])["plan"] == edited_name(edited)
    assert out[edited_name(edited)] == edited
    key = f"img{seq['first']:07d}.png"
    ok, why = face_untouched(decode(frames[key]), decode(out[key]), tuple(seq["boxes"][0]))
    assert ok, why
    again = rerender(f"{base}/blurred/reviewed/", f"{base}/review/edited.json", options.config,
                     frames_uri=f"{base}/in/frames/")
    assert again.already_complete
