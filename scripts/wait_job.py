#!/usr/bin/env python3
"""Wait for a face-blur job: its transform (or analysis) job, then the post-processing's completion marker.

    python scripts/wait_job.py --job JOB [--transform-job NAME] [--timeout 7200]
    python scripts/wait_job.py --job JOB --analysis-job JOB_ID      (after start_job.py --analysis adaptive)

1. the transform job (``--transform-job``, else the newest ``<prefix><job>-...``) must end
   Completed; Failed or Stopped ends the wait with SageMaker's reason. With ``--analysis-job`` (the
   Batch job id start_job.py printed) the AWS Batch job instead must end SUCCEEDED; FAILED ends the
   wait with Batch's status reason;
2. then ``output/<job>/face-blur-complete.json`` must appear, written after the transform job ended
   (a marker of an earlier run does not count) and with the digest of ``face-blur-frames.json``
   (the post-processing's proof that every frame has its output).

Prints the marker's report (frames, frames blurred, boxes, plan summary) as JSON. Post-processing
failures do not reach this script: the Lambda's dead-letter queue raises an alarm on the
deployment's SNS topic, and the logs are in CloudWatch (/aws/lambda/<name>-postprocess,
/aws/batch/<name>-postprocess; the analysis jobs' in /aws/batch/<name>-analysis). Exit 0 when
complete, 1 on failure or timeout, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from deployment import Deployment, add_deployment_arguments, run_script

log = logging.getLogger("wait_job")

ENDED = ("Completed", "Failed", "Stopped")


class JobFailedError(RuntimeError):
    """The transform or analysis job failed or was stopped, or the wait ran out of time; the message
    says which."""


def latest_transform_job(sm, dep: Deployment, job: str) -> str:
    """The newest transform job of ``job`` (names ``<prefix><job>-<timestamp>``)."""
    stem = f"{dep.job_name_prefix}{job}-"
    names: list[tuple[datetime, str]] = []
    kwargs: dict[str, Any] = {"NameContains": stem, "SortBy": "CreationTime", "SortOrder": "Descending"}
    while True:
        page = sm.list_transform_jobs(**kwargs)
        names.extend((s["CreationTime"], s["TransformJobName"]) for s in page.get("TransformJobSummaries", [])
                     if s["TransformJobName"].startswith(stem) and s["TransformJobName"][len(stem):].isdigit())
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    if not names:
        raise JobFailedError(f"no transform job named {stem}<timestamp>: run start_job.py --job {job} first")
    return max(names)[1]


def wait_for_transform(sm, name: str, timeout: float, poll: float,
                       sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """DescribeTransformJob until it ends; returns the description when Completed."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        desc = sm.describe_transform_job(TransformJobName=name)
        status = desc["TransformJobStatus"]
        if status != last:
            log.info("transform job %s: %s", name, status)
            last = status
        if status == "Completed":
            return desc
        if status in ENDED:
            reason = desc.get("FailureReason", "no reason given")
            raise JobFailedError(f"transform job {name} {status.lower()}: {reason}")
        if time.monotonic() >= deadline:
            raise JobFailedError(f"transform job {name} is still {status} after {timeout:.0f} s")
        sleep(poll)


def wait_for_analysis(batch, job_id: str, timeout: float, poll: float,
                      sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """DescribeJobs until the analysis job (an array parent or a plain job) ends; its description
    when SUCCEEDED."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        found = batch.describe_jobs(jobs=[job_id]).get("jobs", [])
        if not found:
            raise JobFailedError(f"no AWS Batch job {job_id}: pass the id start_job.py --analysis adaptive printed")
        desc = found[0]
        status = desc["status"]
        if status != last:
            log.info("analysis job %s (%s): %s", desc.get("jobName"), job_id, status)
            last = status
        if status == "SUCCEEDED":
            return desc
        if status == "FAILED":
            raise JobFailedError(f"analysis job {desc.get('jobName')} ({job_id}) failed: "
                                 f"{desc.get('statusReason', 'no reason given')}")
        if time.monotonic() >= deadline:
            raise JobFailedError(f"analysis job {desc.get('jobName')} ({job_id}) is still {status} after "
                                 f"{timeout:.0f} s")
        sleep(poll)


def read_json(s3, bucket: str, key: str) -> tuple[dict[str, Any], datetime] | None:
    """(object as JSON, LastModified), or None when absent."""
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(obj["Body"].read()), obj["LastModified"]


def wait_for_marker(s3, dep: Deployment, job: str, not_before: datetime | None, timeout: float, poll: float,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The completion marker of ``job``'s post-processing, once written after ``not_before``."""
    from postprocess.render import MANIFEST_NAME
    from postprocess.run import MARKER_NAME

    marker_key, manifest_key = dep.key("output", job, MARKER_NAME), dep.key("output", job, MANIFEST_NAME)
    deadline = time.monotonic() + timeout
    if not_before is not None:  # S3's Last-Modified has whole seconds: a marker in the same second counts
        not_before = not_before.replace(microsecond=0)
    while True:
        found = read_json(s3, dep.bucket, marker_key)
        if found is not None:
            marker, modified = found
            if not_before is None or modified >= not_before:
                manifest = read_json(s3, dep.bucket, manifest_key)
                if manifest is not None and manifest[0].get("digest") == marker.get("digest"):
                    return marker
                log.debug("marker digest does not match %s yet", manifest_key)
            else:
                log.debug("marker %s is from an earlier run (%s)", marker_key, modified)
        if time.monotonic() >= deadline:
            raise JobFailedError(f"no completion marker s3://{dep.bucket}/{marker_key} after {timeout:.0f} s: see the "
                            "post-processing logs in CloudWatch and the dead-letter queue")
        sleep(poll)


def report(marker: dict[str, Any]) -> dict[str, Any]:
    """What a person wants to know from the marker (never embeddings: the marker has none)."""
    keys = ("frames", "frames_blurred", "frames_blurred_whole", "boxes_blurred", "digest", "completed_at", "summary")
    return {k: marker[k] for k in keys if k in marker}


def wait_job(dep: Deployment, s3, sm, job: str, transform_job: str | None = None, timeout: float = 7200,
             poll: float = 30, sleep: Callable[[float], None] = time.sleep, batch=None,
             analysis_job: str | None = None) -> dict[str, Any]:
    """Steps 1 and 2 of the module docstring: the analysis job ``analysis_job`` (a Batch job id,
    with the ``batch`` client) when given, else the transform job."""
    started = time.monotonic()
    if analysis_job:
        desc = wait_for_analysis(batch, analysis_job, timeout, poll, sleep)
        stopped = desc.get("stoppedAt")
        ended = datetime.fromtimestamp(stopped / 1000, timezone.utc) if stopped else None
        found = {"analysis_job": desc.get("jobName"), "analysis_job_id": analysis_job}
    else:
        name = transform_job or latest_transform_job(sm, dep, job)
        ended = wait_for_transform(sm, name, timeout, poll, sleep).get("TransformEndTime")
        found = {"transform_job": name}
    remaining = max(0.0, timeout - (time.monotonic() - started))
    marker = wait_for_marker(s3, dep, job, ended, remaining, poll, sleep)
    result = {"job": job, **found, "output": dep.uri("output", job), **report(marker)}
    log.info("job %s complete: %s frames, %s with blurred faces", job, result.get("frames"),
             result.get("frames_blurred"))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wait_job.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--transform-job", default=None, help="transform job name (default: the job's newest)")
    which.add_argument("--analysis-job", default=None, metavar="JOB_ID",
                       help="wait for this AWS Batch analysis job (the id start_job.py --analysis adaptive printed) "
                            "instead of a transform job")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait in all")
    parser.add_argument("--poll", type=float, default=30, help="seconds between checks")
    add_deployment_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work(dep: Deployment) -> dict[str, Any]:
        session = dep.session()
        if args.analysis_job:
            return wait_job(dep, session.client("s3"), None, args.job, timeout=args.timeout, poll=args.poll,
                            batch=session.client("batch"), analysis_job=args.analysis_job)
        return wait_job(dep, session.client("s3"), session.client("sagemaker"), args.job, args.transform_job,
                        args.timeout, args.poll)

    return run_script("wait_job.py", args, work)

if __name__ == "__main__":
    sys.exit(main())
