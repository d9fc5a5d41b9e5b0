#!/usr/bin/env python3
"""Start the analysis of a face-blur job (a SageMaker Batch Transform job, or with ``--analysis
adaptive`` an AWS Batch job), with its run options recorded.

    python scripts/start_job.py --job JOB [--mode unknown] [--pick 120:640:360] [--instance-type ml.c5.2xlarge]
    python scripts/start_job.py --job JOB --analysis adaptive [--segment-frames 3000]

1. checks that frames were uploaded (and reference photos, for modes unknown and known);
2. writes the run options (schema face-blur/options/v1: frames, results, references, output and the
   post-processing options) to ``s3://<bucket>/results/<job>/face-blur-options.json``, where the
   post-processing Lambda looks for them when the job completes;
3. uses the deployment's SageMaker model, or with ``--image-uri`` a model for that image, creating
   it when it does not exist (it is never deleted: nothing here deletes models or images);
4. creates the transform job ``<prefix><job>-<yymmddHHMMSS>`` over ``input/<job>/`` (frames and
   reference photos together): one object per request (SplitType None, BatchStrategy SingleRecord,
   ContentType application/x-image), results ``<key>.out`` under ``results/<job>/``, encrypted with
   the deployment's key, and so is the instances' storage volume, which holds frames and embeddings
   while the job runs (``VolumeKmsKeyId``; instance types with local NVMe storage such as ml.g4dn
   refuse a volume key: their local storage is encrypted by the instance's hardware, see
   :func:`volume_encryption`). Its name starts with the deployment's prefix, so the EventBridge rule
   starts post-processing when it completes.

``--analysis adaptive`` (README "Adaptive analysis on AWS"; the default stays ``every``, the
transform job) does 1 and 2 alike, then instead of 3 and 4 submits the job
``<prefix><job>-<yymmddHHMMSS>`` to the deployment's analysis queue with the analysis job definition
(Terraform outputs ``analysis_job_queue``, ``analysis_job_definition``): parameters ``options`` (the
URI written in 2) and ``segment_frames``; an array job of ceil(frames / segment frames) children
when that is 2 or more (AWS Batch allows at most 10,000: more is refused, naming the smallest
``--segment-frames`` that fits), a plain job for one segment; tagged ``face-blur:job`` and the tags
propagated to its tasks. Each child analyses its segment in the inference image and writes the
results where the transform job would; the end of the job starts post-processing as a transform
job's does.

Prints the transform job name (``every``) or the Batch job id (``adaptive``). Exit 0 on success, 1 on
an error (one line), 2 for usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
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

from faceblur.segments import DEFAULT_SEGMENT_FRAMES, MAX_SEGMENT_FRAMES

log = logging.getLogger("start_job")

TRANSFORM_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CONTENT_TYPE = "application/x-image"
ACCEPT = "application/json"
MODES_WITH_REFERENCES = ("unknown", "known")
MODEL_NAME = re.compile(r"[^a-zA-Z0-9-]+")
ANALYSES = ("every", "adaptive")
MAX_ARRAY_SIZE = 10_000  # AWS Batch: array jobs have 2 to 10,000 children
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
TRANSFORM_ONLY = ("instance_type", "instance_count", "max_concurrent_transforms", "max_payload_mb", "image_uri")


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


def run_name(dep: Deployment, job: str, now: datetime | None = None) -> str:
    """``<prefix><job>-<yymmddHHMMSS>`` (UTC): the name of one start of ``job``'s analysis."""
    return f"{dep.job_name_prefix}{job}-{(now or datetime.now(timezone.utc)).strftime('%y%m%d%H%M%S')}"


def transform_job_name(dep: Deployment, job: str, now: datetime | None = None) -> str:
    """:func:`run_name`, checked for SageMaker (names are unique per account and region)."""
    name = run_name(dep, job, now)
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


# SageMaker ML instance families with local NVMe instance storage: CreateTransformJob refuses a
# VolumeKmsKeyId for them (TransformResources: "You can't request a VolumeKmsKeyId when using an
# instance type with local storage"; that storage is encrypted by a hardware module on the instance).
# Besides these, every family with a "d" after its generation (ml.m5d, ml.c5d, ml.r5d, ml.m6id, ...).
LOCAL_STORAGE_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "trn1",
                                    "trn1n", "gr6"})
_D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def has_local_storage(instance_type: str) -> bool:
    """Whether ``ml.<family>.<size>`` runs on local NVMe storage (see LOCAL_STORAGE_FAMILIES)."""
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else instance_type
    return family in LOCAL_STORAGE_FAMILIES or bool(_D_FAMILY.match(family))


def volume_encryption(dep: Deployment, instance_type: str) -> dict[str, str]:
    """``{"VolumeKmsKeyId": <the deployment's key>}`` for instance types whose storage is an EBS
    volume; nothing for those with local NVMe storage, which SageMaker does not let us key."""
    return {} if has_local_storage(instance_type) else {"VolumeKmsKeyId": dep.kms_key_arn}


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
        "TransformResources": {"InstanceType": settings.instance_type, "InstanceCount": settings.instance_count,
                               **volume_encryption(dep, settings.instance_type)},
        "Tags": [{"Key": "face-blur:job", "Value": job}],
    }


def check_inputs(dep: Deployment, s3, job: str, config) -> tuple[int, int]:
    """Step 1 of the module docstring: (frames, reference photos) uploaded for ``job``."""
    frames = count_images(list_keys(s3, dep.bucket, dep.key("frames", job)))
    if frames == 0:
        raise ValueError(f"no frames under {dep.uri('frames', job)}: run upload_video.py --job {job} first")
    references = count_images(list_keys(s3, dep.bucket, dep.key("references", job)))
    if config.plan.mode in MODES_WITH_REFERENCES and references == 0:
        raise ValueError(f"mode {config.plan.mode} needs reference photos under {dep.uri('references', job)}: "
                         f"run upload_refs.py --job {job} first")
    return frames, references


def start_job(dep: Deployment, s3, sm, job: str, config, settings: TransformSettings,
              image_uri: str | None = None, now: datetime | None = None) -> str:
    """Steps 1-4 of the module docstring; returns the transform job name."""
    frames, references = check_inputs(dep, s3, job, config)
    name = transform_job_name(dep, job, now)
    write_options(dep, s3, job, config, frames, references > 0)
    model, _ = ensure_model(sm, dep, image_uri)
    sm.create_transform_job(**transform_request(dep, job, name, model, settings))
    log.info("started transform job %s: %d frames, %d reference photos, %s x %d", name, frames, references,
             settings.instance_type, settings.instance_count)
    return name


def analysis_job_name(dep: Deployment, job: str, now: datetime | None = None) -> str:
    """:func:`run_name`, checked for AWS Batch (128 characters at most)."""
    name = run_name(dep, job, now)
    if not BATCH_NAME.match(name):
        raise ValueError(f"analysis job name {name!r} is not valid for AWS Batch (at most 128 letters, digits, "
                         "'-' and '_', starting with a letter or digit)")
    return name


def segment_count(frames: int, segment_frames: int) -> int:
    """Segments (array children) of ``frames`` frames cut every ``segment_frames``; more than
    :data:`MAX_ARRAY_SIZE` is refused, naming the smallest segment length that fits."""
    if segment_frames < 1:
        raise ValueError(f"segment frames must be at least 1, got {segment_frames}")
    count = math.ceil(frames / segment_frames)
    if count > MAX_ARRAY_SIZE:
        raise ValueError(f"{frames} frames in segments of {segment_frames} make {count} segments, but an AWS Batch "
                         f"array job has at most {MAX_ARRAY_SIZE} children: use --segment-frames "
                         f"{math.ceil(frames / MAX_ARRAY_SIZE)} or more")
    return count


def analysis_request(dep: Deployment, job: str, name: str, options_uri: str, frames: int,
                     segment_frames: int = DEFAULT_SEGMENT_FRAMES) -> dict[str, Any]:
    """The Batch SubmitJob request of the adaptive analysis of ``job``."""
    queue, definition = dep.analysis()
    segments = segment_count(frames, segment_frames)
    request: dict[str, Any] = {
        "jobName": name,
        "jobQueue": queue,
        "jobDefinition": definition,
        "parameters": {"options": options_uri, "segment_frames": str(segment_frames)},
        # No retryStrategy: one given here would replace the definition's, which retries only a host
        # that went away (terraform/analysis.tf).
        "tags": {"face-blur:job": job},
        "propagateTags": True,
    }
    if segments >= 2:
        request["arrayProperties"] = {"size": segments}
    return request


def start_analysis(dep: Deployment, s3, batch, job: str, config, segment_frames: int = DEFAULT_SEGMENT_FRAMES,
                   now: datetime | None = None) -> str:
    """``--analysis adaptive``: steps 1 and 2, then the Batch job (module docstring); returns its id."""
    frames, references = check_inputs(dep, s3, job, config)
    # built first, so that a deployment without the analysis queue or too many segments is refused
    # before anything is written; the options are written where it names them
    request = analysis_request(dep, job, analysis_job_name(dep, job, now), dep.uri("options", job), frames,
                               segment_frames)
    write_options(dep, s3, job, config, frames, references > 0)
    name = request["jobName"]
    response = batch.submit_job(**request)
    segments = request.get("arrayProperties", {}).get("size", 1)
    log.info("submitted analysis job %s (%s): %d frames in %d segment%s of up to %d, %d reference photos",
             name, response["jobId"], frames, segments, "" if segments == 1 else "s", segment_frames, references)
    return str(response["jobId"])


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
    from postprocess.options import number_argument

    a = parser.add_argument_group("analysis")
    a.add_argument("--analysis", choices=ANALYSES, default="every",
                   help="every: every frame, by a SageMaker Batch Transform job; adaptive: the adaptive analysis "
                        "as an AWS Batch job over segments of the video, in the inference image")
    a.add_argument("--segment-frames", type=number_argument(int, 1, MAX_SEGMENT_FRAMES, name="frames"), default=None,
                   help=f"adaptive: frames per segment, one array child each (default: {DEFAULT_SEGMENT_FRAMES})")
    t = parser.add_argument_group("transform job (--analysis every; defaults: the Terraform outputs)")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.analysis == "adaptive":
        given = [f"--{name.replace('_', '-')}" for name in TRANSFORM_ONLY if getattr(args, name) is not None]
        if given:
            parser.error(f"{', '.join(given)} apply to the transform job only (--analysis every)")
    elif args.segment_frames is not None:
        parser.error("--segment-frames applies to --analysis adaptive only")

    def work(dep: Deployment) -> str:
        from postprocess.options import given_options

        base = json.loads(args.run_options.read_text()) if args.run_options else None
        given = given_options(args)
        config = run_config(base, **given["plan"], **given["render"], **given["run"])
        session = dep.session()
        if args.analysis == "adaptive":
            return start_analysis(dep, session.client("s3"), session.client("batch"), args.job, config,
                                  args.segment_frames or DEFAULT_SEGMENT_FRAMES)
        settings = TransformSettings.defaults(
            dep, instance_type=args.instance_type, instance_count=args.instance_count,
            max_concurrent_transforms=args.max_concurrent_transforms, max_payload_mb=args.max_payload_mb,
            invocation_timeout_s=args.invocation_timeout, invocation_retries=args.invocation_retries)
        return start_job(dep, session.client("s3"), session.client("sagemaker"), args.job, config, settings,
                         args.image_uri)

    return run_script("start_job.py", args, work)


if __name__ == "__main__":
    sys.exit(main())
