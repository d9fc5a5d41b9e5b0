"""terraform/ checked without an AWS account.

- Syntax: every file parses with python-hcl2 (always); ``terraform fmt -check`` where a Terraform or
  OpenTofu binary is on PATH.
- Security: checkov with zero failed checks, every skip justified inline.
- Structure (python-hcl2): encrypted TLS-only buckets, no wildcard actions, each role limited to its
  S3 prefixes, the EventBridge pattern on the scripts' job-name prefix, images from these repositories.
- Evaluation: ``terraform validate`` and ``terraform plan`` against the moto server (the AWS provider
  from a local mirror: $FACE_BLUR_TF_PLUGIN_DIR or /opt/tf-plugins), which evaluates every expression
  with real variable values; skipped where no binary or no provider mirror exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from terraform_helpers import REPO, TF_DIR, TerraformConfig, parse_file, terraform_binary

BUCKET_ARN = "${aws_s3_bucket.data.arn}"
KEY_ARN = "${aws_kms_key.main.arn}"
# Actions that have no resource-level permissions: the only ones allowed on Resource "*".
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
                     "cloudwatch:PutMetricData", "sagemaker:ListTransformJobs", "batch:DescribeJobs",
                     "batch:ListJobs"}
S3_READ = {"s3:GetObject"}
S3_WRITE = {"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"}
# What each identity policy may do in the data bucket: (read prefixes, write prefixes, list prefixes).
ROLE_SCOPES = {
    "sagemaker": ({"input/"}, {"results/"}, {"input/"}),
    "postprocess_data": ({"input/", "results/", "output/"}, {"output/"}, {"input/", "results/", "output/"}),
    "lambda": ({"input/", "results/", "output/"}, {"output/"}, {"input/", "results/", "output/"}),
    "operator": ({"output/", "audio/"}, {"input/", "audio/", "results/*/face-blur-options.json"},
                 {"input/", "output/", "audio/"}),
    "batch_execution": (set(), set(), set()),
    # adaptive analysis (analysis.tf): frames, reference photos and the run options in; results out
    "analysis_job": ({"input/", "results/"}, {"results/"}, {"input/", "results/"}),
    "analysis_execution": (set(), set(), set()),
}


@pytest.fixture(scope="module")
def tf() -> TerraformConfig:
    return TerraformConfig()


def _statements_by_role(tf: TerraformConfig) -> dict[str, str]:
    """aws_iam_role name -> policy document name (inline role policies)."""
    out = {}
    for name, body in tf.resources["aws_iam_role_policy"].items():
        role = re.fullmatch(r"\$\{aws_iam_role\.([a-z_]+)\.id\}", body["role"])
        doc = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([a-z_]+)\.json\}", body["policy"])
        assert role and doc, f"aws_iam_role_policy.{name} must use a role and a policy document of this module"
        out[role[1]] = doc[1]
    return out


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- syntax


def test_every_file_parses_with_hcl2(tf):
    assert {p.name for p in tf.files} >= {"versions.tf", "variables.tf", "outputs.tf", "s3.tf", "iam.tf"}
    example = parse_file(TF_DIR / "terraform.tfvars.example")
    unknown = set(example) - set(tf.variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {sorted(unknown)}"
    required = {n for n, v in tf.variables.items() if "default" not in v}
    assert required <= set(example), f"the example lacks required variables {sorted(required - set(example))}"


def test_terraform_fmt_check(tmp_path):
    binary = terraform_binary()
    if binary is None:
        pytest.skip("no terraform or tofu binary on PATH: formatting is checked by hand (python-hcl2 parses it)")
    shutil.copy(TF_DIR / "terraform.tfvars.example", tmp_path / "example.tfvars")
    for target in (str(TF_DIR), str(tmp_path / "example.tfvars")):
        done = subprocess.run([binary, "fmt", "-check", "-diff", target], capture_output=True, text=True)
        assert done.returncode == 0, f"{binary} fmt -check {target}:\n{done.stdout}{done.stderr}"


def test_variables_have_description_type_and_validation(tf):
    for name, var in tf.variables.items():
        assert var.get("description"), f"variable {name} has no description"
        assert var.get("type"), f"variable {name} has no type"
        kind = str(var["type"]).strip("${}")
        if kind not in ("bool", "map(string)"):
            assert var.get("validation"), f"variable {name} ({kind}) has no validation"


# ---------------------------------------------------------------- security scan


def _checkov() -> str | None:
    for candidate in (os.environ.get("FACE_BLUR_CHECKOV"), shutil.which("checkov"),
                      str(REPO / ".venv-checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_checkov_passes_with_justified_skips():
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov not found ($FACE_BLUR_CHECKOV, PATH, .venv-checkov/bin/checkov): .ci/run installs it")
    done = subprocess.run([checkov, "-d", str(TF_DIR), "--compact", "--quiet", "--skip-download", "-o", "json"],
                          capture_output=True, text=True, timeout=600)
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(c["check_id"], c["resource"]) for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, f"checkov failed checks: {failed}"
    assert sum(r.get("summary", {}).get("passed", 0) for r in reports) > 100, "checkov scanned nothing"
    for path in tf_files():
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"#checkov:skip=(CKV2?_AWS_\d+):(.+)$", line)
                assert match and len(match[2].strip()) >= 30, f"{path.name}: skip without a justification: {line}"


def tf_files() -> list[Path]:
    return sorted(TF_DIR.glob("*.tf"))


# ---------------------------------------------------------------- structure: storage


def test_every_bucket_is_kms_encrypted_private_versioned_and_tls_only(tf):
    buckets = set(tf.resources["aws_s3_bucket"])
    assert buckets == {"data", "logs"}

    def by_bucket(rtype: str) -> dict[str, dict]:
        found = {}
        for body in tf.resources.get(rtype, {}).values():
            match = re.fullmatch(r"\$\{aws_s3_bucket\.([a-z_]+)\.(id|bucket)\}", body["bucket"])
            assert match, f"{rtype} names its bucket as {body['bucket']!r}"
            found[match[1]] = body
        return found

    sse = by_bucket("aws_s3_bucket_server_side_encryption_configuration")
    pab = by_bucket("aws_s3_bucket_public_access_block")
    versioning = by_bucket("aws_s3_bucket_versioning")
    policies = by_bucket("aws_s3_bucket_policy")
    ownership = by_bucket("aws_s3_bucket_ownership_controls")
    lifecycle = by_bucket("aws_s3_bucket_lifecycle_configuration")
    for bucket in buckets:
        default = sse[bucket]["rule"][0]["apply_server_side_encryption_by_default"][0]
        assert default["sse_algorithm"] == "aws:kms" and default["kms_master_key_id"] == KEY_ARN, bucket
        assert all(pab[bucket][k] is True for k in ("block_public_acls", "block_public_policy",
                                                     "ignore_public_acls", "restrict_public_buckets")), bucket
        assert versioning[bucket]["versioning_configuration"][0]["status"] == "Enabled", bucket
        assert ownership[bucket]["rule"][0]["object_ownership"] == "BucketOwnerEnforced", bucket
        rules = lifecycle[bucket]["rule"]
        assert any(r.get("abort_incomplete_multipart_upload") for r in rules), f"{bucket}: no multipart abort"
        doc = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([a-z_]+)\.json\}", policies[bucket]["policy"])[1]
        deny_tls = [s for s in tf.policy_statements(doc) if s.get("effect") == "Deny"
                    and any(c["variable"] == "aws:SecureTransport" and c["values"] == ["false"]
                            for c in s.get("condition", []))]
        assert deny_tls, f"{bucket}: bucket policy does not deny requests without TLS"
        arn = f"${{aws_s3_bucket.{bucket}.arn}}"
        assert set(deny_tls[0]["resources"]) == {arn, f"{arn}/*"}, f"{bucket}: TLS denial must cover bucket and objects"
    logging = by_bucket("aws_s3_bucket_logging")
    assert logging["data"]["target_bucket"] == "${aws_s3_bucket.logs.id}"


def test_face_results_expire_after_the_configured_days_old_versions_too(tf):
    rules = tf.resolve(tf.resources["aws_s3_bucket_lifecycle_configuration"]["data"]["rule"])
    results_rule = [r for r in rules if r.get("filter", [{}])[0].get("prefix") == "results/"]
    assert results_rule and results_rule[0]["status"] == "Enabled"
    raw = tf.resources["aws_s3_bucket_lifecycle_configuration"]["data"]["rule"]
    raw_results = [r for r in raw if r.get("id") == results_rule[0]["id"]][0]
    assert raw_results["expiration"][0]["days"] == "${var.results_expiration_days}"
    everything = [r for r in rules if r.get("filter") in ([{}], [])]
    assert everything and everything[0].get("noncurrent_version_expiration"), "old versions are never removed"
    # The prefix in the lifecycle rule is the one the transform job writes to (scripts: s3_layout).
    assert tf.resolve(tf.locals["s3_layout"]["results"]).startswith("results/")


def test_every_log_group_has_retention_and_the_key(tf):
    for name, group in tf.resources["aws_cloudwatch_log_group"].items():
        assert group.get("retention_in_days") == "${var.log_retention_days}", name
        assert group.get("kms_key_id") == KEY_ARN, name
    for name, queue in tf.resources["aws_sqs_queue"].items():
        assert queue.get("kms_master_key_id") == KEY_ARN, name
    for name, topic in tf.resources["aws_sns_topic"].items():
        assert topic.get("kms_master_key_id") == KEY_ARN, name
    for name, repo in tf.resources["aws_ecr_repository"].items():
        assert repo["encryption_configuration"][0] == {"encryption_type": "KMS", "kms_key": KEY_ARN}, name
        assert repo["image_tag_mutability"] == "IMMUTABLE", name
        assert repo["image_scanning_configuration"][0]["scan_on_push"] is True, name
        assert name in tf.resources["aws_ecr_lifecycle_policy"], f"repository {name} has no lifecycle policy"
    key = tf.resources["aws_kms_key"]["main"]
    assert key["enable_key_rotation"] is True


# ---------------------------------------------------------------- structure: IAM


def test_no_wildcard_actions_anywhere(tf):
    for doc in tf.data["aws_iam_policy_document"]:
        for st in tf.policy_statements(doc):
            actions = _as_list(st.get("actions", []))
            assert "*" not in actions, f"{doc}: Action '*'"
            if st.get("effect", "Allow") == "Allow":
                wild = [a for a in actions if a.endswith(":*")]
                assert not wild, f"{doc}: allows every action of a service: {wild}"
    for st in tf.locals["kms_key_policy"]["Statement"]:
        actions = _as_list(st["Action"])
        assert "*" not in actions
        if "kms:*" in actions:  # AWS's default key statement: only the account itself administers the key
            assert st["Principal"] == {"AWS": "arn:${local.partition}:iam::${local.account_id}:root"}, st["Sid"]
    for path in tf_files():
        assert not re.search(r'(?i)"?actions?"?\s*=\s*\[?\s*"\*"', path.read_text()), f"{path.name}: Action '*'"


def test_resource_star_only_where_no_narrower_resource_exists(tf):
    for doc in tf.data["aws_iam_policy_document"]:
        for st in tf.policy_statements(doc):
            if st.get("effect", "Allow") != "Allow" or "*" not in _as_list(st.get("resources", [])):
                continue
            extra = set(st["actions"]) - NO_RESOURCE_LEVEL
            assert not extra, f"{doc}/{st.get('sid')}: Resource '*' for {sorted(extra)}, which take a narrower resource"
            if "cloudwatch:PutMetricData" in st["actions"]:
                assert any(c["variable"] == "cloudwatch:namespace" for c in st.get("condition", [])), doc
    for doc in tf.data["aws_iam_policy_document"]:
        for st in tf.policy_statements(doc):
            for p in st.get("principals", []):
                if "*" in p["identifiers"]:
                    assert st["effect"] == "Deny", f"{doc}: allows any principal"


@pytest.mark.parametrize("doc", sorted(ROLE_SCOPES))
def test_each_policy_touches_only_its_prefixes(tf, doc):
    read_ok, write_ok, list_ok = ROLE_SCOPES[doc]
    reads, writes, lists = set(), set(), set()
    for st in tf.policy_statements(doc):
        actions = set(st.get("actions", []))
        s3_actions = {a for a in actions if a.startswith("s3:")}
        if not s3_actions:
            continue
        if "s3:ListBucket" in s3_actions:
            assert st["resources"] == [BUCKET_ARN], f"{doc}: ListBucket on {st['resources']}"
            conditions = [c for c in st.get("condition", []) if c["variable"] == "s3:prefix"]
            assert conditions, f"{doc}: ListBucket without an s3:prefix condition lists the whole bucket"
            lists |= {v.rstrip("*") for c in conditions for v in c["values"]}
            continue
        if s3_actions == {"s3:GetBucketLocation"}:
            assert st["resources"] == [BUCKET_ARN]
            continue
        assert s3_actions <= S3_READ | S3_WRITE, f"{doc}: unexpected S3 actions {sorted(s3_actions)}"
        for resource in st["resources"]:
            assert resource.startswith(BUCKET_ARN + "/"), f"{doc}: S3 object access outside the data bucket: {resource}"
            prefix = resource[len(BUCKET_ARN) + 1:]
            assert prefix not in ("", "*"), f"{doc}: object access to the whole bucket"
            if s3_actions & S3_READ:
                reads.add(prefix.rstrip("*"))
            if s3_actions & S3_WRITE:
                writes.add(prefix.rstrip("*") if prefix.endswith("/*") else prefix)
    assert reads == read_ok, f"{doc} reads {sorted(reads)}, expected {sorted(read_ok)}"
    assert writes == write_ok, f"{doc} writes {sorted(writes)}, expected {sorted(write_ok)}"
    assert lists == list_ok, f"{doc} lists {sorted(lists)}, expected {sorted(list_ok)}"


def test_each_role_has_its_own_scoped_policy(tf):
    roles = _statements_by_role(tf)
    assert roles == {"sagemaker": "sagemaker", "lambda": "lambda", "batch_job": "postprocess_data",
                     "batch_execution": "batch_execution", "analysis_job": "analysis_job",
                     "analysis_execution": "analysis_execution"}
    assert set(tf.resources["aws_iam_role"]) == set(roles) | {"batch_instance", "analysis_instance"}
    # Images: each role pulls only its own repository.
    pulls = {doc: {r for st in tf.policy_statements(doc) if "ecr:BatchGetImage" in st.get("actions", [])
                   for r in st["resources"]} for doc in roles.values()}
    assert pulls["sagemaker"] == {"${aws_ecr_repository.inference.arn}"}
    assert pulls["batch_execution"] == {"${aws_ecr_repository.postprocess.arn}"}
    assert pulls["analysis_execution"] == {"${aws_ecr_repository.inference.arn}"}
    assert pulls["lambda"] == pulls["postprocess_data"] == pulls["analysis_job"] == set()
    # The KMS key is used only through S3 (or Lambda/SQS for the function's own environment and queue).
    for doc in roles.values():
        for st in tf.policy_statements(doc):
            if any(a.startswith("kms:") for a in st.get("actions", [])):
                assert st["resources"] == [KEY_ARN]
                assert any(c["variable"] == "kms:ViaService" for c in st.get("condition", [])), doc


# ---------------------------------------------------------------- structure: wiring


def test_eventbridge_rules_match_the_scripts_job_name_prefix(tf):
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from deployment import Deployment
    from start_job import transform_job_name

    completed = tf.resolve(tf.locals["transform_completed_pattern"])
    failed = tf.resolve(tf.locals["transform_failed_pattern"])
    prefix = tf.default("transform_job_name_prefix")
    for pattern, statuses in ((completed, ["Completed"]), (failed, ["Failed", "Stopped"])):
        assert pattern["source"] == ["aws.sagemaker"]
        assert pattern["detail-type"] == ["SageMaker Transform Job State Change"]
        assert pattern["detail"]["TransformJobName"] == [{"prefix": prefix}]
        assert pattern["detail"]["TransformJobStatus"] == statuses
    rules = tf.resources["aws_cloudwatch_event_rule"]
    assert rules["transform_completed"]["event_pattern"] == "${jsonencode(local.transform_completed_pattern)}"
    assert rules["transform_failed"]["event_pattern"] == "${jsonencode(local.transform_failed_pattern)}"
    # The scripts take the prefix from this output, and the names they build match the pattern.
    assert tf.outputs["transform_job_name_prefix"]["value"] == "${var.transform_job_name_prefix}"
    dep = Deployment.from_outputs({"transform_job_name_prefix": prefix, **_fake_outputs(tf)})
    assert transform_job_name(dep, "holiday-2024").startswith(completed["detail"]["TransformJobName"][0]["prefix"])
    targets = tf.resources["aws_cloudwatch_event_target"]
    assert targets["postprocess"]["arn"] == "${aws_lambda_function.postprocess.arn}"
    assert targets["notify_failed"]["arn"] == "${aws_sns_topic.notifications.arn}"
    paths = targets["notify_failed"]["input_transformer"][0]["input_paths"]
    assert paths["job"] == "$.detail.TransformJobName" and paths["reason"] == "$.detail.FailureReason"


def _fake_outputs(tf: TerraformConfig) -> dict:
    return {"region": "eu-west-1", "bucket": "b", "s3_layout": tf.resolve(tf.locals["s3_layout"]),
            "kms_key_arn": "k", "sagemaker_model_name": "m", "sagemaker_execution_role_arn": "r",
            "inference_image_uri": "i", "inference_environment": {}, "transform_instance_type": "ml.c5.xlarge",
            "transform_instance_count": 1, "transform_max_concurrent_transforms": 1, "transform_max_payload_mb": 6}


def test_images_come_from_the_repositories_created_here(tf):
    for image in ("postprocess", "inference"):
        expected = f"${{aws_ecr_repository.{image}.repository_url}}:${{var.{image}_image_tag}}"
        assert tf.locals[f"{image}_image_uri"] == expected
    function = tf.resources["aws_lambda_function"]["postprocess"]
    assert function["package_type"] == "Image" and function["image_uri"] == "${local.postprocess_image_uri}"
    assert function["image_config"][0]["command"] == ["postprocess.lambda_handler.handler"]
    assert function["tracing_config"][0]["mode"] == "Active"
    assert function["dead_letter_config"][0]["target_arn"] == "${aws_sqs_queue.dead_letter.arn}"
    assert function["reserved_concurrent_executions"] == "${var.lambda_reserved_concurrency}"
    assert set(function["environment"][0]["variables"]) == {
        "FACE_BLUR_BATCH_JOB_QUEUE", "FACE_BLUR_BATCH_JOB_DEFINITION", "FACE_BLUR_LAMBDA_MAX_FRAMES",
        "FACE_BLUR_RENDER_ARRAY_SIZE", "FACE_BLUR_ANALYSIS_JOB_QUEUE", "FACE_BLUR_ANALYSIS_JOB_DEFINITION"}
    container = tf.locals["batch_container_common"]
    assert container["image"] == "${local.postprocess_image_uri}"
    assert container["command"][:3] == ["python", "-m", "postprocess.batch"]
    assert container["jobRoleArn"] == "${aws_iam_role.batch_job.arn}"
    assert container["executionRoleArn"] == "${aws_iam_role.batch_execution.arn}"
    model = tf.resources["aws_sagemaker_model"]["inference"]
    assert model["primary_container"][0]["image"] == "${local.inference_image_uri}"
    assert model["execution_role_arn"] == "${aws_iam_role.sagemaker.arn}"
    assert model["enable_network_isolation"] is True
    env = tf.locals["inference_environment"]
    text = json.dumps(env)
    for name in ("SAGEMAKER_MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "FACE_BLUR_DEVICE",
                 "FACE_BLUR_GPU_FALLBACK", "FACE_BLUR_DETECTOR", "FACE_BLUR_EMBEDDER"):
        assert name in text, f"the SageMaker model does not set {name}"
    # the toolkit hands SAGEMAKER_MODEL_SERVER_TIMEOUT to multi-model-server, which reads minutes
    assert '"SAGEMAKER_MODEL_SERVER_TIMEOUT"' not in text


def test_adaptive_analysis_runs_the_inference_image_and_ends_in_the_lambda(tf):
    """analysis.tf: the child program in the inference image with its own least-privilege roles; the
    end of the parent job (not each child) reaches the post-processing Lambda function."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from deployment import ANALYSIS_OUTPUTS

    container = tf.locals["analysis_container"]
    assert container["image"] == "${local.inference_image_uri}"
    assert container["command"] == ["python", "-m", "faceblur.segments", "--options", "Ref::options",
                                    "--segment-frames", "Ref::segment_frames"]
    assert container["jobRoleArn"] == "${aws_iam_role.analysis_job.arn}"
    assert container["executionRoleArn"] == "${aws_iam_role.analysis_execution.arn}"
    assert container["readonlyRootFilesystem"] is True and container["privileged"] is False
    assert container["mountPoints"] == [{"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}]
    env = tf.resolve(tf.locals["analysis_environment"])
    assert "FACE_BLUR_MODEL_DIR" in json.dumps(env) and "/opt/ml/model" in json.dumps(env)
    for name in ("FACE_BLUR_DEVICE", "FACE_BLUR_GPU_FALLBACK", "FACE_BLUR_DETECTOR", "FACE_BLUR_EMBEDDER", "TMPDIR"):
        assert name in json.dumps(env), f"the analysis job does not set {name}"
    definition = tf.resources["aws_batch_job_definition"]["analysis"]
    assert definition["platform_capabilities"] == ["EC2"] and definition["propagate_tags"] is True
    assert definition["parameters"] == {"segment_frames": "3000"}
    retry = definition["retry_strategy"][0]
    assert retry["attempts"] == "${var.analysis_job_attempts}" and tf.default("analysis_job_attempts") == 2
    assert [e["action"] for e in retry["evaluate_on_exit"]] == ["RETRY", "EXIT"]
    assert retry["evaluate_on_exit"][0]["on_status_reason"] == "Host EC2*"
    assert definition["timeout"][0]["attempt_duration_seconds"] == "${var.analysis_job_timeout_seconds}"
    assert (tf.default("analysis_job_vcpus"), tf.default("analysis_job_memory_mb")) == (4, 8192)
    assert tf.default("analysis_instance_types") == ["c6i"] and tf.default("analysis_job_gpus") == 0
    environment = tf.resources["aws_batch_compute_environment"]["analysis"]["compute_resources"][0]
    assert environment["security_group_ids"] == ["${aws_security_group.batch.id}"]
    assert environment["instance_role"] == "${aws_iam_instance_profile.analysis_instance.arn}"
    template = tf.resources["aws_launch_template"]["analysis"]
    assert template["metadata_options"][0]["http_tokens"] == "required"
    assert template["block_device_mappings"][0]["ebs"][0]["encrypted"] is True

    for name, statuses in (("analysis_ended_pattern", ["SUCCEEDED", "FAILED"]),
                           ("analysis_failed_pattern", ["FAILED"])):
        pattern = tf.locals[name]
        assert pattern["source"] == ["aws.batch"] and pattern["detail-type"] == ["Batch Job State Change"]
        assert pattern["detail"]["status"] == statuses
        assert pattern["detail"]["jobQueue"] == ["${aws_batch_job_queue.analysis.arn}"]
        assert pattern["detail"]["arrayProperties"] == {"index": [{"exists": False}]}
    targets = tf.resources["aws_cloudwatch_event_target"]
    assert targets["analysis_postprocess"]["rule"] == "${aws_cloudwatch_event_rule.analysis_ended.name}"
    assert targets["analysis_postprocess"]["arn"] == "${aws_lambda_function.postprocess.arn}"
    assert targets["notify_analysis_failed"]["arn"] == "${aws_sns_topic.notifications.arn}"
    permission = tf.resources["aws_lambda_permission"]["analysis_events"]
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.analysis_ended.arn}"
    variables = tf.resources["aws_lambda_function"]["postprocess"]["environment"][0]["variables"]
    assert variables["FACE_BLUR_ANALYSIS_JOB_DEFINITION"] == "${local.analysis_job_definition_arn}"
    assert variables["FACE_BLUR_ANALYSIS_JOB_QUEUE"] == "${aws_batch_job_queue.analysis.arn}"
    # The Lambda role gains nothing for it (it reads the options file under results/ as before);
    # the operator may submit to this queue with this definition only.
    lambda_batch = [st for st in tf.policy_statements("lambda") if any(a.startswith("batch:") for a in st["actions"])]
    assert [r for st in lambda_batch for r in st["resources"] if "analysis" in r] == []
    submit = [st for st in tf.policy_statements("operator") if "batch:SubmitJob" in st["actions"]]
    assert len(submit) == 1 and set(submit[0]["resources"]) == {
        "${aws_batch_job_queue.analysis.arn}", "${aws_batch_job_definition.analysis.arn_prefix}",
        "${aws_batch_job_definition.analysis.arn_prefix}:*"}
    assert set(ANALYSIS_OUTPUTS) == {"analysis_job_queue", "analysis_job_definition"} <= set(tf.outputs)


# ---------------------------------------------------------------- evaluation with the real provider


def _plugin_dir() -> Path | None:
    path = Path(os.environ.get("FACE_BLUR_TF_PLUGIN_DIR", "/opt/tf-plugins"))
    return path if (path / "registry.terraform.io" / "hashicorp" / "aws").is_dir() else None


@pytest.fixture(scope="module")
def initialised(tmp_path_factory) -> tuple[str, Path, dict]:
    binary, plugins = terraform_binary(), _plugin_dir()
    if binary is None:
        pytest.skip("no terraform or tofu binary on PATH")
    if plugins is None:
        pytest.skip("no local AWS provider mirror ($FACE_BLUR_TF_PLUGIN_DIR or /opt/tf-plugins): "
                    "'terraform init' needs the registry otherwise")
    work = tmp_path_factory.mktemp("tf")
    for path in tf_files():
        shutil.copy(path, work / path.name)
    shutil.copy(TF_DIR / "terraform.tfvars.example", work / "example.tfvars")
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
    done = subprocess.run([binary, "init", "-backend=false", f"-plugin-dir={plugins}", "-no-color"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return binary, work, env


def test_terraform_validate(initialised):
    binary, work, env = initialised
    done = subprocess.run([binary, "validate", "-no-color"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _plan(initialised, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    binary, work, env = initialised
    env = {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint}
    env.pop("AWS_PROFILE", None)
    return subprocess.run([binary, "plan", "-no-color", "-var-file=example.tfvars", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("compute", ["fargate", pytest.param("ec2-spot", marks=pytest.mark.slow)])
def test_plan_evaluates_against_a_fake_account(initialised, moto_endpoint, compute):
    binary, work, env = initialised
    # ec2-spot: the analysis on Spot and GPU too (the other branch of each of its conditionals)
    extra = ["-var=analysis_compute_type=ec2-spot", "-var=analysis_job_gpus=1",
             '-var=analysis_instance_types=["g4dn"]'] if compute == "ec2-spot" else []
    done = _plan(initialised, moto_endpoint, f"-var=batch_compute_type={compute}", *extra, f"-out=plan-{compute}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    shown = subprocess.run([binary, "show", "-json", f"plan-{compute}"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
    plan = json.loads(shown.stdout)
    resources = {r["address"]: r.get("values", {}) for r in plan["planned_values"]["root_module"]["resources"]}
    pattern = json.loads(resources["aws_cloudwatch_event_rule.transform_completed"]["event_pattern"])
    assert pattern["detail"]["TransformJobName"] == [{"prefix": "face-blur-"}]
    environments = [a for a in resources if a.startswith("aws_batch_compute_environment.postprocess")]
    assert len(environments) == (2 if compute == "ec2-spot" else 1)
    analysis_environments = [a for a in resources if a.startswith("aws_batch_compute_environment.analysis")]
    assert len(analysis_environments) == (2 if compute == "ec2-spot" else 1)
    assert ("aws_launch_template.batch[0]" in resources) == (compute == "ec2-spot")
    assert plan["planned_values"]["outputs"]["s3_layout"]["value"]["results"] == "results/{job}/"
    # (the container properties and the event pattern hold ARNs known only after apply: not in the plan)
    analysis = resources["aws_batch_job_definition.analysis"]
    assert analysis["parameters"] == {"segment_frames": "3000"} and analysis["platform_capabilities"] == ["EC2"]
    image_type = "ECS_AL2_NVIDIA" if compute == "ec2-spot" else "ECS_AL2"
    for address in analysis_environments:
        resources_ = resources[address]["compute_resources"][0]
        assert resources_["ec2_configuration"][0]["image_type"] == image_type
        assert resources_["instance_type"] == (["g4dn"] if compute == "ec2-spot" else ["c6i"])


def test_plan_rejects_a_bad_variable_naming_it(initialised, moto_endpoint):
    done = _plan(initialised, moto_endpoint, "-var=transform_job_name_prefix=Bad_Prefix")
    assert done.returncode != 0
    assert "transform_job_name_prefix must be" in done.stderr
