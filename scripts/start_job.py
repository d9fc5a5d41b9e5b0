#!/usr/bin/env python3
"""Start the SageMaker Batch Transform job of a face-blur job, with its run options recorded.

    python scripts/start_job.py --job JOB [--mode unknown] [--pick 120:640:360] [--instance-type ml.c5.2xlarge]

1. checks that frames were uploaded (and reference photos, for modes unknown and known);
2. writes the run options (schema face-blur/options/v1: frames, results, references, output and the
   post-processing options) to ``s3://<bucket>/results/<job>/face-blur-options.json``, where the
   post-processing Lambda looks for them when the job completes;
3. uses the deployment's SageMaker model, or with ``--image-uri`` a model for that image, creating
   it when it does not exist (it is never deleted: nothing here deletes models or images);
4. creates the transform job ``<prefix><job>-<yymmddHHMMSS>`` over ``input/<job>/`` (frames and
   reference photos together): one object per request (SplitType None, BatchStrategy SingleRecord,
   ContentType application/x-image), results ``<key>.out`` under ``results/<job>/``, encrypted with
   the deployment's key. Its name starts with the deployment's prefix, so the EventBridge rule starts
   post-processing when it completes.

Prints the transform job name. Exit 0 on success, 1 on an error (one line), 2 for usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deployment import (
    IMAGE_SUFFIXES,
    Deployment,
    add_deployment_arguments,
    list_keys,
    run_script,
)

log = logging.getLogger("start_job")

TRANSFORM_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CONTENT_TYPE = "application/x-image"
ACCEPT = "application/json"
MODES_WITH_REFERENCES = ("unknown", "known")
MODEL_NAME = re.compile(r"[^a-zA-Z0-9-]+")


@dataclasses.dataclass(frozen=True)
class TransformSettings:
    """Per-job settings of the transform job; defaults come from the Terraform outputs."""

    instance_type: str
    instance_count: int
    max_concurrent_transforms: int
    max_payload_mb: int
    invocation_timeout_s: int = 600
    invocation_retries: int = 3

    def __post_init__(self) -> None:
        if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", self.instance_type):
            raise ValueError(f"instance_type must be a SageMaker instance type such as ml.g4dn.xlarge, "
                             f"got {self.instance_type!r}")
        for name, low, high in (("instance_count", 1, 100), ("max_concurrent_transforms", 1, 64),
                                ("max_payload_mb", 1, 100), ("invocation_timeout_s", 1, 3600),
                                ("invocation_retries", 0, 3)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")

    @classmethod
    def defaults(cls, dep: Deployment, **overrides: Any) -> TransformSettings:
        values = {"instance_type": dep.instance_type, "instance_count": dep.instance_count,
                  "max_concurrent_transforms": dep.max_concurrent_transforms, "max_payload_mb": dep.max_payload_mb}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def transform_job_name(dep: Deployment, job: str, now: datetime | None = None) -> str:
    """``<prefix><job>-<yymmddHHMMSS>`` (UTC); SageMaker names are unique per account and region."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%y%m%d%H%M%S")
    name = f"{dep.job_name_prefix}{job}-{stamp}"
    if len(name) > 63 or not TRANSFORM_NAME.match(name):
        raise ValueError(f"transform job name {name!r} is not valid for SageMaker (at most 63 letters, digits and "
                         f"'-'): shorten the job id to at most {63 - len(dep.job_name_prefix) - 13} characters")
    return name


def run_config(base: dict[str, Any] | None = None, **changes: Any):
    """The post-processing options: ``base`` (RunConfig JSON form) with the given fields replaced;
    each change is a field of ``PlanConfig`` (``mode``, ``picks`` as ``Pick`` or ``"FRAME:X:Y"``...),
    ``RenderConfig`` (``style``, ``mask_scale``...) or ``RunConfig`` (``missing``...)."""
    from postprocess.blur import RenderConfig
    from postprocess.config import Pick, PlanConfig
    from postprocess.run import RunConfig

    config = RunConfig.from_dict(dict(base or {}))
    if "picks" in changes:
        changes["picks"] = tuple(p if isinstance(p, Pick) else Pick.parse(p) for p in changes["picks"])
    parts: dict[str, dict[str, Any]] = {"plan": {}, "render": {}, "run": {}}
    for name, value in changes.items():
        for part, cls in (("plan", PlanConfig), ("render", RenderConfig), ("run", RunConfig)):
            if name in {f.name for f in dataclasses.fields(cls)} and name not in ("plan", "render"):
                parts[part][name] = value
                break
        else:
            raise TypeError(f"run_config() got an unknown option {name!r}")
    return dataclasses.replace(
        config,
        plan=dataclasses.replace(config.plan, **parts["plan"]),
        render=dataclasses.replace(config.render, **parts["render"]),
        **parts["run"],
    )


def count_images(keys: Sequence[str]) -> int:
    return sum(1 for k in keys if k.lower().endswith(IMAGE_SUFFIXES))


def write_options(dep: Deployment, s3, job: str, config, frame_count: int, with_references: bool) -> str:
    """Write face-blur-options.json for ``job``; returns its URI."""
    from postprocess.run import JobOptions

    options = JobOptions(
        frames=dep.uri("frames", job),
        results=dep.results_uri(job, "frames"),
        output=dep.uri("output", job),
        references=dep.results_uri(job, "references") if with_references else None,
        config=config,
        frame_count=frame_count,
    )
    s3.put_object(Bucket=dep.bucket, Key=dep.key("options", job), Body=options.to_json(),
                  ContentType="application/json")
    uri = dep.uri("options", job)
    log.info("run options written to %s", uri)
    return uri


def model_name_for(dep: Deployment, image_uri: str) -> str:
    """``<deployment model>-<tag>`` (or the first 12 digits of the digest) for another image."""
    last = image_uri.rsplit("/", 1)[-1]
    if "@" in last:
        tag = last.split("@", 1)[1].split(":")[-1][:12]
    else:
        tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return MODEL_NAME.sub("-", f"{dep.model_name}-{tag}").strip("-")[:63].rstrip("-")


def ensure_model(sm, dep: Deployment, image_uri: str | None = None) -> tuple[str, bool]:
    """(model name, created): the deployment's model, or one for ``image_uri`` created if absent."""
    from botocore.exceptions import ClientError

    if image_uri is None or image_uri == dep.inference_image_uri:
        name, image = dep.model_name, dep.inference_image_uri
    else:
        name = model_name_for(dep, image_uri)
        image = image_uri
    try:
        sm.describe_model(ModelName=name)
        log.info("using SageMaker model %s", name)
        return name, False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=dep.execution_role_arn,
        PrimaryContainer={"Image": image, "Mode": "SingleModel", "Environment": dict(dep.inference_environment)},
        EnableNetworkIsolation=True,
        Tags=[{"Key": "face-blur:created-by", "Value": "scripts/start_job.py"}],
    )
    log.info("created SageMaker model %s for %s (scripts never delete it)", name, image)
    return name, True


def transform_request(dep: Deployment, job: str, name: str, model: str, settings: TransformSettings) -> dict[str, Any]:
    """The CreateTransformJob request for ``job``."""
    return {
        "TransformJobName": name,
        "ModelName": model,
        "MaxConcurrentTransforms": settings.max_concurrent_transforms,
        "MaxPayloadInMB": settings.max_payload_mb,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": settings.invocation_timeout_s,
                              "InvocationsMaxRetries": settings.invocation_retries},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                            "S3Uri": f"s3://{dep.bucket}/{dep.input_root(job)}"}},
            "ContentType": CONTENT_TYPE,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": dep.uri("results", job), "Accept": ACCEPT, "AssembleWith": "None",
                            "KmsKeyId": dep.kms_key_arn},
        "TransformResources": {"InstanceType": settings.instance_type, "InstanceCount": settings.instance_count},
        "Tags": [{"Key": "face-blur:job", "Value": job}],
    }


def start_job(dep: Deployment, s3, sm, job: str, config, settings: TransformSettings,
              image_uri: str | None = None, now: datetime | None = None) -> str:
    """Steps 1-4 of the module docstring; returns the transform job name."""
    frames = count_images(list_keys(s3, dep.bucket, dep.key("frames", job)))
    if frames == 0:
        raise ValueError(f"no frames under {dep.uri('frames', job)}: run upload_video.py --job {job} first")
    references = count_images(list_keys(s3, dep.bucket, dep.key("references", job)))
    if config.plan.mode in MODES_WITH_REFERENCES and references == 0:
        raise ValueError(f"mode {config.plan.mode} needs reference photos under {dep.uri('references', job)}: "
                         f"run upload_refs.py --job {job} first")
    name = transform_job_name(dep, job, now)
    write_options(dep, s3, job, config, frames, references > 0)
    model, _ = ensure_model(sm, dep, image_uri)
    sm.create_transform_job(**transform_request(dep, job, name, model, settings))
    log.info("started transform job %s: %d frames, %d reference photos, %s x %d", name, frames, references,
             settings.instance_type, settings.instance_count)
    return name


def build_parser() -> argparse.ArgumentParser:
    from postprocess.options import HelpFormatter, add_plan_arguments, add_render_arguments, add_run_arguments

    parser = argparse.ArgumentParser(prog="start_job.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    g = parser.add_argument_group("post-processing options (recorded in face-blur-options.json)")
    g.add_argument("--run-options", type=Path, default=None, metavar="FILE",
                   help="JSON of every post-processing option (RunConfig: plan, render, missing, ...); "
                        "the options below override it")
    # the same definitions as face-blur run / python -m postprocess; only the ones given are recorded
    add_plan_arguments(parser, advanced=False, overrides=True)
    add_render_arguments(parser, advanced=False, overrides=True)
    add_run_arguments(parser, advanced=False, overrides=True)
    t = parser.add_argument_group("transform job (defaults: the Terraform outputs)")
    t.add_argument("--instance-type", default=None, help="e.g. ml.g4dn.xlarge (GPU) or ml.c5.2xlarge (CPU)")
    t.add_argument("--instance-count", type=int, default=None)
    t.add_argument("--max-concurrent-transforms", type=int, default=None)
    t.add_argument("--max-payload-mb", type=int, default=None)
    t.add_argument("--invocation-timeout", type=int, default=600, help="seconds per request")
    t.add_argument("--invocation-retries", type=int, default=3, help="retries per request (0-3)")
    t.add_argument("--image-uri", default=None,
                   help="run another inference image (a model for it is created if absent)")
    add_deployment_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work(dep: Deployment) -> str:
        from postprocess.options import given_options

        base = json.loads(args.run_options.read_text()) if args.run_options else None
        given = given_options(args)
        config = run_config(base, **given["plan"], **given["render"], **given["run"])
        settings = TransformSettings.defaults(
            dep, instance_type=args.instance_type, instance_count=args.instance_count,
            max_concurrent_transforms=args.max_concurrent_transforms, max_payload_mb=args.max_payload_mb,
            invocation_timeout_s=args.invocation_timeout, invocation_retries=args.invocation_retries)
        session = dep.session()
        return start_job(dep, session.client("s3"), session.client("sagemaker"), args.job, config, settings,
                         args.image_uri)

    return run_script("start_job.py", args, work)


if __name__ == "__main__":
    sys.exit(main())
