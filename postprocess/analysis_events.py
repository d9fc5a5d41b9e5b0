"""Which AWS Batch events start the post-processing: the end of an adaptive analysis job.

Adaptive analysis on AWS (``scripts/start_job.py --analysis adaptive``, ``terraform/analysis.tf``)
runs ``python -m faceblur.segments --options URI --segment-frames N`` as an AWS Batch job, an array
job of one child per segment when there are several. EventBridge sends its ``Batch Job State Change``
events (source ``aws.batch``; the detail mirrors DescribeJobs' JobDetail) to the post-processing
Lambda function. :func:`analysis_job` picks the one that means "every frame has its result":

- a child of an array job (``detail.arrayProperties.index`` present) is ignored: the parent ends
  after its last child, SUCCEEDED only when every child succeeded;
- a job of another definition is ignored (the post-processing's own plan/render/finalize jobs emit
  these events too), and so is one in another queue when ``FACE_BLUR_ANALYSIS_JOB_QUEUE`` is set;
  definitions and queues compare by name, and by ARN prefix where both sides give an ARN (events
  carry ``arn:...:job-definition/<name>:<revision>``);
- a status other than ``SUCCEEDED`` is ignored (``FAILED`` logged with its ``statusReason``);
- a SUCCEEDED analysis job without ``detail.parameters.options`` is an error (the job definition's
  command cannot have run without it), as is a missing ``FACE_BLUR_ANALYSIS_JOB_DEFINITION``: both
  end in the function's dead-letter queue, whose alarm tells a person.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DETAIL_TYPE = "Batch Job State Change"
SOURCE = "aws.batch"
DEFINITION_ENV = "FACE_BLUR_ANALYSIS_JOB_DEFINITION"
QUEUE_ENV = "FACE_BLUR_ANALYSIS_JOB_QUEUE"
_REVISION = re.compile(r":\d+$")


@dataclass(frozen=True)
class AnalysisJob:
    """A finished analysis job: its name (unique per start: ``<prefix><job>-<yymmddHHMMSS>``), id and
    the run options it analysed for."""

    name: str
    job_id: str
    options_uri: str


def is_batch_event(event: Mapping[str, Any]) -> bool:
    return event.get("detail-type") == DETAIL_TYPE and event.get("source") == SOURCE


def _split(value: str, kind: str) -> tuple[str | None, str]:
    """(ARN up to ``<kind>/``, or None for a plain name; the name without a revision)."""
    value = value.strip()
    marker = f":{kind}/"
    prefix = None
    if value.startswith("arn:") and marker in value:
        head, _, value = value.partition(marker)
        prefix = head + marker
    return prefix, _REVISION.sub("", value) if kind == "job-definition" else value


def same_resource(configured: str, seen: str, kind: str) -> bool:
    """Whether ``seen`` (from an event) names the ``configured`` job definition or queue (``kind``
    ``job-definition`` or ``job-queue``): a name, ``name:revision`` or an ARN with or without revision."""
    (want_prefix, want), (got_prefix, got) = _split(configured, kind), _split(seen, kind)
    if not want or want != got:
        return False
    return want_prefix is None or got_prefix is None or want_prefix == got_prefix


def analysis_job(event: Mapping[str, Any], env: Mapping[str, str],
                 error: type[Exception] = ValueError) -> AnalysisJob | dict[str, Any]:
    """The finished analysis job of a ``Batch Job State Change`` event, or the ``{"action": "ignored",
    ...}`` answer for any other (see the module docstring). A missing setting raises ``error``."""
    detail = event.get("detail") or {}
    name, job_id = str(detail.get("jobName", "")), str(detail.get("jobId", ""))
    status = detail.get("status")
    array = detail.get("arrayProperties")
    if isinstance(array, Mapping) and "index" in array:
        log.info("Batch job %s (%s) is child %s of an array job: waiting for the parent", name, job_id,
                 array["index"])
        return {"action": "ignored", "job": name, "reason": f"array child {array['index']}"}
    definition = env.get(DEFINITION_ENV, "")
    if not definition:
        raise error(f"a Batch job state change arrived but {DEFINITION_ENV} is not set: set it to the analysis "
                    "job definition (name or ARN) so that its end is post-processed")
    seen = str(detail.get("jobDefinition", ""))
    if not same_resource(definition, seen, "job-definition"):
        log.info("Batch job %s (%s) of job definition %s is not an analysis job: nothing to do", name, job_id, seen)
        return {"action": "ignored", "job": name, "reason": f"job definition {seen} is not {definition}"}
    queue, seen_queue = env.get(QUEUE_ENV, ""), str(detail.get("jobQueue", ""))
    if queue and not same_resource(queue, seen_queue, "job-queue"):
        log.info("analysis job %s (%s) ran in queue %s, not %s: nothing to do", name, job_id, seen_queue, queue)
        return {"action": "ignored", "job": name, "reason": f"job queue {seen_queue} is not {queue}"}
    if status != "SUCCEEDED":
        if status == "FAILED":
            log.error("analysis job %s (%s) failed: %s", name, job_id,
                      detail.get("statusReason") or "(no reason given)")
        else:
            log.info("analysis job %s (%s) is %s: nothing to do", name, job_id, status)
        return {"action": "ignored", "job": name, "reason": f"status {status}"}
    options = (detail.get("parameters") or {}).get("options")
    if not isinstance(options, str) or not options.startswith("s3://"):
        raise ValueError(f"analysis job {name} ({job_id}) has no detail.parameters.options with the s3:// URI of "
                         f"its run options (got {options!r})")
    return AnalysisJob(name, job_id, options)
