"""AWS Lambda entry point: a finished SageMaker transform job, or adaptive analysis job, starts the
post-processing.

An EventBridge rule sends ``SageMaker Transform Job State Change`` events (source
``aws.sagemaker``) here, another the ``Batch Job State Change`` events (source ``aws.batch``) of the
adaptive analysis queue: a SUCCEEDED analysis job (the parent of an array job, or a plain job, of
``FACE_BLUR_ANALYSIS_JOB_DEFINITION``; :mod:`postprocess.analysis_events` says which events count)
names its options file in ``detail.parameters.options`` and continues as a completed transform job
does from step 2 on (an options file missing there is an error, not "not a face-blur job"), claimed
under its Batch job name. ``handler(event, context)``:

1. ignores (logs and returns ``{"action": "ignored", ...}``) any other detail-type and every status
   but ``Completed`` (``Failed`` is logged with its ``FailureReason``);
2. reads the job options ``<TransformOutput.S3OutputPath>/face-blur-options.json`` (schema
   ``face-blur/options/v1``, written by the start script: frames, results, references, output and the
   run options); a job without it is not a face-blur job and is ignored;
3. for a video of at most ``FACE_BLUR_LAMBDA_MAX_FRAMES`` frames (default 3000; the options'
   ``frame_count`` when given, otherwise counted by listing, stopping past the limit) it runs the
   whole post-processing here (``postprocess.run.run``) and returns the summary;
4. for a longer video it submits three AWS Batch jobs to ``FACE_BLUR_BATCH_JOB_QUEUE`` with
   ``FACE_BLUR_BATCH_JOB_DEFINITION``: ``plan``, an array job ``render`` of
   ``FACE_BLUR_RENDER_ARRAY_SIZE`` children (default 10) depending on it, and ``finalize`` (writes the
   completion marker) depending on the whole array; it returns their ids.

The job input prefix holds ``frames/`` and ``refs/<person>/`` so one transform job embeds both; the
results mirror them under the output path. EventBridge may deliver an event twice: both paths are
idempotent (a second run finds the same digest and does nothing, or resumes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from contract.env import env_int
from postprocess.analysis_events import AnalysisJob, analysis_job, is_batch_event
from postprocess.reading import FRAME_SUFFIXES
from postprocess.run import OPTIONS_NAME, JobOptions, run
from postprocess.storage import StorageError, Store, join

log = logging.getLogger(__name__)

DETAIL_TYPE = "SageMaker Transform Job State Change"
SOURCE = "aws.sagemaker"
DEFAULT_MAX_FRAMES = 3000
DEFAULT_ARRAY_SIZE = 10


class ConfigurationError(RuntimeError):
    """The Lambda's environment lacks or has a bad setting; the message names the variable."""


def _env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return env_int(env, name, default, low, high, error=ConfigurationError)


def count_frames(store: Store, options: JobOptions, limit: int) -> int:
    """The frame count from the options, or by listing until ``limit`` is passed."""
    if options.frame_count is not None:
        return options.frame_count
    count = 0
    for obj in store.list(options.frames):
        if obj.key.lower().endswith(FRAME_SUFFIXES):
            count += 1
            if count > limit:
                break
    return count


def _job_name(*parts: str) -> str:
    """A valid Batch job name: letters, digits, hyphens, underscores, at most 128."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(parts))[:128]


def submit_batch(batch: Any, options_uri: str, job_name: str, queue: str, definition: str,
                 array_size: int, frames: int) -> dict[str, Any]:
    """Submit plan -> render (array) -> finalize; returns their names and ids."""
    size = max(1, min(array_size, frames))
    base = ["python", "-m", "postprocess.batch", "--options", options_uri]

    def submit(step: str, depends: str | None, extra: list[str] | None = None,
               array: int = 1) -> dict[str, str]:
        spec: dict[str, Any] = {
            "jobName": _job_name("face-blur", job_name, step),
            "jobQueue": queue,
            "jobDefinition": definition,
            "containerOverrides": {"command": [*base, "--step", step, *(extra or [])]},
            # No retryStrategy: one given here replaces the job definition's whole strategy, its
            # evaluateOnExit rules included, and a job failing on bad input would be retried like a
            # lost instance. The definition's (terraform/batch.tf) retries only a host that went away.
        }
        if depends:
            spec["dependsOn"] = [{"jobId": depends}]
        if array > 1:
            spec["arrayProperties"] = {"size": array}
        resp = batch.submit_job(**spec)
        return {"jobName": resp["jobName"], "jobId": resp["jobId"]}

    plan = submit("plan", None)
    render = submit("render", plan["jobId"], ["--array-size", str(size)], size)
    finalize = submit("finalize", render["jobId"])
    log.info("submitted Batch jobs for %s: plan %s, render %s (%d children), finalize %s",
             job_name, plan["jobId"], render["jobId"], size, finalize["jobId"])
    return {"plan": plan, "render": {**render, "arraySize": size}, "finalize": finalize}


def handle_event(event: Mapping[str, Any], *, store: Store | None = None, batch: Any = None,
                 env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Lambda's work, with its clients and environment injectable (see the module docstring)."""
    env = os.environ if env is None else env
    if is_batch_event(event):
        found = analysis_job(event, env, error=ConfigurationError)
        if not isinstance(found, AnalysisJob):
            return found
        return post_process(found.name, found.options_uri, event, store=store, batch=batch, env=env,
                            claim={"analysis_job": found.name, "analysis_job_id": found.job_id},
                            missing_is_foreign=False, kind="analysis job")
    detail_type = event.get("detail-type")
    if detail_type != DETAIL_TYPE or event.get("source", SOURCE) != SOURCE:
        log.warning("ignoring an event of type %r from %r", detail_type, event.get("source"))
        return {"action": "ignored", "reason": f"detail-type {detail_type!r} is not {DETAIL_TYPE!r}"}
    detail = event.get("detail") or {}
    job = str(detail.get("TransformJobName", ""))
    status = detail.get("TransformJobStatus")
    if status != "Completed":
        if status == "Failed":
            log.error("transform job %s failed: %s", job, detail.get("FailureReason", "(no reason given)"))
        else:
            log.info("transform job %s is %s: nothing to do", job, status)
        return {"action": "ignored", "job": job, "reason": f"status {status}"}
    try:
        output_path = detail["TransformOutput"]["S3OutputPath"]
    except (KeyError, TypeError):
        raise ValueError(f"event for transform job {job} has no detail.TransformOutput.S3OutputPath") from None
    return post_process(job, join(output_path, OPTIONS_NAME), event, store=store, batch=batch, env=env,
                        claim={"transform_job": job}, missing_is_foreign=True, kind="transform job")


def post_process(job: str, options_uri: str, event: Mapping[str, Any], *, store: Store | None, batch: Any,
                 env: Mapping[str, str], claim: Mapping[str, Any], missing_is_foreign: bool,
                 kind: str) -> dict[str, Any]:
    """Steps 2-4 of the module docstring for the finished ``kind`` (transform job or analysis job)
    ``job``, whose run options are ``options_uri``; ``claim`` starts the record of its Batch claim."""
    store = store or Store()
    try:
        body = store.read(options_uri)
    except StorageError as exc:
        if exc.missing and missing_is_foreign:
            log.warning("%s %s has no %s: not a face-blur job", kind, job, options_uri)
            return {"action": "ignored", "job": job, "reason": f"no {options_uri}"}
        raise
    options = JobOptions.from_json(body, options_uri)
    limit = _env_int(env, "FACE_BLUR_LAMBDA_MAX_FRAMES", DEFAULT_MAX_FRAMES, 0, 10_000_000)
    frames = count_frames(store, options, limit)
    if frames <= limit:
        log.info("%s %s: %d frames, post-processing here", kind, job, frames)
        summary = run(options.frames, options.results, options.output, options.config, options.references,
                      store=store)
        return {"action": "ran", "job": job, "summary": summary.to_dict()}

    queue = env.get("FACE_BLUR_BATCH_JOB_QUEUE", "")
    definition = env.get("FACE_BLUR_BATCH_JOB_DEFINITION", "")
    if not queue or not definition:
        raise ConfigurationError(f"{kind} {job} has more than {limit} frames (FACE_BLUR_LAMBDA_MAX_FRAMES): "
                                 "set FACE_BLUR_BATCH_JOB_QUEUE and FACE_BLUR_BATCH_JOB_DEFINITION to render on "
                                 "AWS Batch")
    array_size = _env_int(env, "FACE_BLUR_RENDER_ARRAY_SIZE", DEFAULT_ARRAY_SIZE, 1, 10_000)
    # EventBridge delivers at least once: claim this job before submitting, so a second delivery of
    # its event does not start a second set of Batch jobs (a new transform or analysis job, even for
    # the same output, has a new name and so its own claim).
    claim_uri = join(options.output, f"face-blur-batch-{job}.json")
    record = {**claim, "event": event.get("id"), "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not store.create(claim_uri, json.dumps(record).encode()):
        log.warning("%s %s: Batch jobs were already submitted (%s): a duplicate event", kind, job, claim_uri)
        return {"action": "ignored", "job": job, "reason": f"already submitted ({claim_uri})"}
    if batch is None:
        import boto3

        batch = boto3.client("batch")
    try:
        jobs = submit_batch(batch, options_uri, job, queue, definition, array_size, frames)
    except Exception:
        store.delete(claim_uri)  # nothing was started: let a retry of this event try again
        raise
    store.write(claim_uri, json.dumps({**record, "jobs": jobs}, default=str).encode())
    return {"action": "submitted", "job": job, "frames": frames, "options": options_uri, "jobs": jobs}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler (``postprocess.lambda_handler.handler``)."""
    logging.getLogger().setLevel(os.environ.get("FACE_BLUR_LOG_LEVEL", "INFO"))
    return handle_event(event)
