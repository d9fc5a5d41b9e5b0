"""``face-blur transform``: what a SageMaker Batch Transform job does, against any endpoint.

The job's settings it reproduces (README "Batch Transform stand-in"):

- SplitType None, BatchStrategy SingleRecord: every object under the input prefix is one request
  (POST ``<endpoint>/invocations``, body = the object, ``Content-Type: application/x-image``,
  ``Accept: application/json``).
- MaxConcurrentTransforms (``concurrency``, default 4): requests in flight at once.
- MaxPayloadInMB (default 6): a larger object is not sent and counts as failed.
- Output: the response body of ``<input>/<rel>`` is written to ``<output>/<rel>.out``.
- Retries (InvocationsMaxRetries, default 3): a 5xx or 429 answer, a timeout (InvocationsTimeoutInSeconds,
  default 600) or a dropped connection is retried with exponential backoff (0.5 s, 1 s, 2 s, ... plus
  jitter). A 4xx answer is not retried: the object is recorded as failed with the status and the
  server's message. Failed objects get no ``.out``; the run ends with :class:`TransformFailedError`
  naming them (the CLI exits 1), as the real job ends Failed.

Input and output may be ``s3://`` prefixes or local folders (``postprocess.storage.Store``); boto3
honours ``AWS_ENDPOINT_URL`` (MinIO, LocalStack, moto). The input is listed first (missing
credentials or bucket stop the run there), then ``GET /ping`` must answer 200: an endpoint that is
not reachable or not ready stops the run with one clear message before any object is sent.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_LISTED_FAILURES = 10


class TransformError(RuntimeError):
    """The run cannot start or go on (endpoint unreachable, bad locations); the message says why."""


class TransformFailedError(RuntimeError):
    """Some objects failed (4xx, or retries used up); ``failures`` maps each key to its reason."""

    def __init__(self, failures: dict[str, str], total: int) -> None:
        shown = list(failures.items())[:MAX_LISTED_FAILURES]
        more = len(failures) - len(shown)
        listed = "; ".join(f"{k}: {v}" for k, v in shown) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{len(failures)} of {total} objects failed: {listed}")
        self.failures = failures
        self.total = total


@dataclass(frozen=True)
class TransformConfig:
    """Options of one transform run (see the module docstring for what each mirrors)."""

    endpoint: str
    input_uri: str
    output_uri: str
    concurrency: int = 4
    content_type: str = "application/x-image"
    accept: str = "application/json"
    max_payload_mb: int = 6
    max_retries: int = 3
    timeout_s: float = 600.0
    backoff_s: float = 0.5
    output_suffix: str = ".out"

    def __post_init__(self) -> None:
        parsed = urlparse(self.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8080, got {self.endpoint!r}")
        if not 1 <= self.concurrency <= 256:
            raise ValueError(f"concurrency must be 1..256, got {self.concurrency}")
        if not 1 <= self.max_payload_mb <= 100:
            raise ValueError(f"max_payload_mb must be 1..100, got {self.max_payload_mb}")
        if not 0 <= self.max_retries <= 10:
            raise ValueError(f"max_retries must be 0..10, got {self.max_retries}")
        if not 1 <= self.timeout_s <= 3600:
            raise ValueError(f"timeout_s must be 1..3600 seconds, got {self.timeout_s}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")

    @property
    def invocations_url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/invocations") else base + "/invocations"

    @property
    def ping_url(self) -> str:
        base = self.endpoint.rstrip("/")
        if base.endswith("/invocations"):
            base = base[: -len("/invocations")]
        return base + "/ping"


@dataclass
class TransformSummary:
    objects: int = 0
    succeeded: int = 0
    retries: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "NewConnectionError" in type(exc).__name__ + text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _message(body: bytes) -> str:
    """A short reason from an error body (JSON ``message``/``error`` or the first line)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("message") or data.get("error") or data.get("detail") or text)
    except ValueError:
        pass
    line = text.splitlines()[0] if text else ""
    return line[:200]


class _Client:
    """POSTs with SageMaker's retry rules over one pooled HTTP connection manager."""

    def __init__(self, config: TransformConfig) -> None:
        import urllib3

        self.config = config
        self.http = urllib3.PoolManager(maxsize=config.concurrency, block=True, retries=False,
                                        timeout=urllib3.Timeout(connect=10.0, read=config.timeout_s))

    def ping(self) -> None:
        url = self.config.ping_url
        try:
            response = self.http.request("GET", url, timeout=10.0)
        except Exception as exc:  # urllib3 raises several connection error types
            raise TransformError(f"endpoint {self.config.endpoint} is not reachable ({_reason(exc)})") from None
        if response.status != 200:
            raise TransformError(f"endpoint {self.config.endpoint} is not ready: GET /ping answered "
                                 f"{response.status} {_message(response.data)}".rstrip())

    def invoke(self, body: bytes) -> tuple[bytes | None, str, int]:
        """(response body or None, failure reason, retries used)."""
        config = self.config
        headers = {"Content-Type": config.content_type, "Accept": config.accept}
        reason = ""
        for attempt in range(config.max_retries + 1):
            if attempt:
                delay = config.backoff_s * 2 ** (attempt - 1)
                time.sleep(delay + random.uniform(0, delay / 2))
            try:
                response = self.http.request("POST", config.invocations_url, body=body, headers=headers)
            except Exception as exc:  # connection reset, timeout: retried like a 5xx
                reason = _reason(exc)
                continue
            if response.status == 200:
                return response.data, "", attempt
            reason = f"HTTP {response.status}: {_message(response.data)}"
            if response.status not in RETRY_STATUSES:
                return None, reason, attempt
        return None, f"{reason} (after {config.max_retries} retries)", config.max_retries


def run_transform(config: TransformConfig, progress: bool = True, store=None) -> TransformSummary:
    """Send every object under ``config.input_uri`` to the endpoint, write the answers as
    ``<output>/<rel>.out``; raises :class:`TransformFailedError` when any object failed."""
    from tqdm import tqdm

    from postprocess.locations import LocationError, check_output
    from postprocess.parallel import bounded_map
    from postprocess.storage import Store, folder, join

    store = store or Store()
    try:  # the one location check (postprocess/locations.py)
        check_output(config.output_uri, {"input": config.input_uri})
    except LocationError as exc:
        raise TransformError(str(exc)) from None
    started = time.perf_counter()
    objects = list(store.list(config.input_uri))  # first: S3 credentials and the bucket are checked here
    if not objects:
        raise TransformError(f"no objects under {folder(config.input_uri)}")
    client = _Client(config)
    client.ping()
    summary = TransformSummary(objects=len(objects))
    limit = config.max_payload_mb * 1024 * 1024

    def one(obj) -> tuple[str, int]:
        if obj.size > limit:
            return f"{obj.size} bytes is over MaxPayloadInMB ({config.max_payload_mb})", 0
        body = store.read(join(config.input_uri, obj.key))
        answer, reason, retries = client.invoke(body)
        if answer is not None:
            store.write(join(config.output_uri, obj.key + config.output_suffix), answer)
        return reason, retries

    log.info("transform: %d objects from %s to %s via %s, %d concurrent", len(objects), config.input_uri,
             config.output_uri, config.invocations_url, config.concurrency)
    with tqdm(total=len(objects), desc="transform", unit="obj", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for obj, (reason, retries) in bounded_map(one, objects, config.concurrency):
            summary.retries += retries
            if reason:
                summary.failures[obj.key] = reason
                log.warning("failed: %s: %s", obj.key, reason)
            else:
                summary.succeeded += 1
            bar.update(1)
    summary.seconds = time.perf_counter() - started
    log.info("transform: %d/%d objects done in %.1f s (%d retries)", summary.succeeded, summary.objects,
             summary.seconds, summary.retries)
    if summary.failures:
        raise TransformFailedError(dict(sorted(summary.failures.items())), summary.objects)
    return summary
