"""What every script needs: the Terraform outputs of the deployment, its S3 layout, boto3 clients.

The scripts never hold account data. They read the deployment from

1. ``--outputs FILE``: the JSON of ``terraform output -json`` (``make -C terraform outputs`` writes
   ``terraform/outputs.json``), or a plain ``{"name": value}`` object;
2. else ``$FACE_BLUR_TF_OUTPUTS`` (the same, as a path);
3. else ``terraform output -json`` run in ``--terraform-dir`` (default: ``terraform/`` of this
   repository) with ``$TERRAFORM`` (default ``terraform``, else ``tofu`` when only that is installed).

:data:`OUTPUTS` lists every output the scripts need, :data:`ANALYSIS_OUTPUTS` those only adaptive
analysis needs (read when present); ``tests/test_scripts.py`` checks that ``terraform/outputs.tf``
defines each one. The S3 layout (key templates with ``{job}``) comes from
the ``s3_layout`` output, so the bucket's prefixes are defined once, in ``terraform/locals.tf``.
Endpoint overrides (``AWS_ENDPOINT_URL``) and credentials come from the usual boto3 environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout: its own packages, not another installed copy
    sys.path.insert(0, str(REPO))

from postprocess.parallel import bounded_map  # noqa: E402
from postprocess.storage import content_type  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_TERRAFORM_DIR = REPO / "terraform"

# Every Terraform output the scripts read (checked against terraform/outputs.tf by the tests).
OUTPUTS = (
    "region",
    "bucket",
    "s3_layout",
    "kms_key_arn",
    "sagemaker_model_name",
    "sagemaker_execution_role_arn",
    "inference_image_uri",
    "inference_environment",
    "transform_job_name_prefix",
    "transform_instance_type",
    "transform_instance_count",
    "transform_max_concurrent_transforms",
    "transform_max_payload_mb",
)
# Outputs of adaptive analysis on AWS Batch (start_job.py --analysis adaptive, wait_job.py): read when
# present, so that scripts of this version still run against a deployment applied before them.
ANALYSIS_OUTPUTS = ("analysis_job_queue", "analysis_job_definition")
# Keys of the s3_layout output the scripts use.
LAYOUT_KEYS = ("frames", "references", "results", "options", "output", "audio")

JOB_ID = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
JOB_ID_MAX = 40  # S3 folder name; the transform job name (63 at most) may allow less: start_job checks
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DeploymentError(RuntimeError):
    """The Terraform outputs are missing, unreadable or incomplete; the message says which."""


@dataclass(frozen=True)
class Deployment:
    """The parts of a deployment the scripts use (see :data:`OUTPUTS`)."""

    region: str
    bucket: str
    layout: Mapping[str, str]
    kms_key_arn: str
    model_name: str
    execution_role_arn: str
    inference_image_uri: str
    inference_environment: Mapping[str, str]
    job_name_prefix: str
    instance_type: str
    instance_count: int
    max_concurrent_transforms: int
    max_payload_mb: int
    analysis_job_queue: str | None = None
    analysis_job_definition: str | None = None

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> Deployment:
        """From ``terraform output -json`` (``{"name": {"value": ...}}``) or ``{"name": value}``."""
        values = {k: (v["value"] if isinstance(v, Mapping) and "value" in v else v) for k, v in outputs.items()}
        missing = [name for name in OUTPUTS if name not in values]
        if missing:
            raise DeploymentError(f"the Terraform outputs lack {', '.join(missing)}: apply terraform/ of this "
                                  "version of the repository, then read its outputs again")
        layout = dict(values["s3_layout"])
        absent = [k for k in LAYOUT_KEYS if "{job}" not in str(layout.get(k, ""))]
        if absent:
            raise DeploymentError(f"s3_layout output lacks a '{{job}}' template for {', '.join(absent)}")
        return cls(
            region=str(values["region"]),
            bucket=str(values["bucket"]),
            layout=layout,
            kms_key_arn=str(values["kms_key_arn"]),
            model_name=str(values["sagemaker_model_name"]),
            execution_role_arn=str(values["sagemaker_execution_role_arn"]),
            inference_image_uri=str(values["inference_image_uri"]),
            inference_environment={str(k): str(v) for k, v in dict(values["inference_environment"]).items()},
            job_name_prefix=str(values["transform_job_name_prefix"]),
            instance_type=str(values["transform_instance_type"]),
            instance_count=int(values["transform_instance_count"]),
            max_concurrent_transforms=int(values["transform_max_concurrent_transforms"]),
            max_payload_mb=int(values["transform_max_payload_mb"]),
            **{name: str(values[name]) for name in ANALYSIS_OUTPUTS if values.get(name)},
        )

    def analysis(self) -> tuple[str, str]:
        """(job queue, job definition) of the adaptive analysis jobs; DeploymentError without them."""
        if not self.analysis_job_queue or not self.analysis_job_definition:
            raise DeploymentError(f"the Terraform outputs lack {', '.join(ANALYSIS_OUTPUTS)}: apply terraform/ of "
                                  "this version of the repository (analysis.tf), then read its outputs again")
        return self.analysis_job_queue, self.analysis_job_definition

    def key(self, kind: str, job: str, name: str = "") -> str:
        """The S3 key of ``kind`` (one of :data:`LAYOUT_KEYS`) for ``job``, plus ``name`` below it."""
        if kind not in self.layout:
            raise KeyError(f"unknown layout entry {kind!r} (known: {', '.join(sorted(self.layout))})")
        return self.layout[kind].replace("{job}", check_job_id(job)) + name

    def uri(self, kind: str, job: str, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(kind, job, name)}"

    def results_uri(self, job: str, input_kind: str) -> str:
        """Where the transform job writes the results of ``input_kind`` (frames or references).

        The job reads the common parent of both input prefixes and writes below ``results``
        keeping the relative paths, so ``input/<job>/frames/x.png`` -> ``results/<job>/frames/x.png.out``."""
        root = self.input_root(job)
        relative = self.key(input_kind, job)[len(root):]
        return self.uri("results", job, relative)

    def input_root(self, job: str) -> str:
        """The key prefix the transform job reads: the common folder of frames and references."""
        frames, refs = self.key("frames", job), self.key("references", job)
        common = os.path.commonprefix([frames, refs])
        root = common[: common.rfind("/") + 1]
        if not root:
            raise DeploymentError(f"frames ({frames}) and references ({refs}) share no folder: one transform "
                                  "job cannot read both")
        return root

    def session(self):
        import boto3

        return boto3.session.Session(region_name=self.region)


def check_job_id(job: str) -> str:
    """A job id: lower-case letters, digits and single hyphens, at most :data:`JOB_ID_MAX` characters."""
    if not JOB_ID.match(job or "") or len(job) > JOB_ID_MAX:
        raise ValueError(f"job id {job!r} must be 1-{JOB_ID_MAX} lower-case letters, digits and single "
                         "hyphens, starting and ending with a letter or digit")
    return job


def job_id(text: str) -> str:
    """argparse ``type=`` for a job id."""
    try:
        return check_job_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _terraform_binary() -> str:
    name = os.environ.get("TERRAFORM")
    if name:
        return name
    for candidate in ("terraform", "tofu"):
        if shutil.which(candidate):
            return candidate
    raise DeploymentError("neither terraform nor tofu is on PATH: pass --outputs with the JSON of "
                          "'terraform output -json' (make -C terraform outputs writes terraform/outputs.json)")


def load_outputs(outputs_file: str | Path | None = None, terraform_dir: str | Path | None = None) -> dict[str, Any]:
    """The raw Terraform outputs (see the module docstring for where they come from)."""
    path = outputs_file or os.environ.get("FACE_BLUR_TF_OUTPUTS")
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise DeploymentError(f"{path}: cannot read the Terraform outputs ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise DeploymentError(f"{path}: not JSON ({exc}); write it with 'terraform output -json'") from None
    else:
        directory = Path(terraform_dir or DEFAULT_TERRAFORM_DIR)
        command = [_terraform_binary(), "output", "-json"]
        try:
            done = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise DeploymentError(f"cannot run {' '.join(command)} in {directory}: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DeploymentError(f"{' '.join(command)} in {directory} failed: {last}")
        try:
            data = json.loads(done.stdout or "{}")
        except ValueError as exc:
            raise DeploymentError(f"{' '.join(command)} printed no JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise DeploymentError(f"no Terraform outputs in {path or terraform_dir or DEFAULT_TERRAFORM_DIR}: "
                              "has 'terraform apply' run?")
    return data


def add_deployment_arguments(parser: argparse.ArgumentParser, job: bool = True) -> None:
    """The options every script shares: where the outputs are, the job id, logging."""
    g = parser.add_argument_group("deployment")
    g.add_argument("--outputs", metavar="FILE", default=None,
                   help="JSON of 'terraform output -json' (default: $FACE_BLUR_TF_OUTPUTS, else run "
                        "'terraform output -json' in --terraform-dir)")
    g.add_argument("--terraform-dir", metavar="DIR", default=str(DEFAULT_TERRAFORM_DIR),
                   help="Terraform folder of the deployment")
    if job:
        g.add_argument("--job", required=True, type=job_id,
                       help=f"job id: 1-{JOB_ID_MAX} lower-case letters, digits, hyphens; names the S3 folders")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: the one switch for a script's progress bars (tqdm, on stderr)."""
    parser.set_defaults(progress=True)  # before the option, whose own default hides it from --help
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                        help="no progress bars")


def deployment_from_args(args: argparse.Namespace) -> Deployment:
    return Deployment.from_outputs(load_outputs(args.outputs, args.terraform_dir))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def upload_files(s3: Any, bucket: str, files: Iterable[tuple[Path, str]], workers: int = 16,
                 progress: Callable[[int], None] | None = None) -> int:
    """Upload ``(local path, key)`` pairs in parallel; returns how many. Bucket default encryption
    (SSE-KMS with the deployment's key) applies to each object."""

    def one(item: tuple[Path, str]) -> None:
        path, key = item
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type(path.name)})

    return _each(one, files, workers, progress)


def _each(fn: Callable[[Any], None], items: Iterable[Any], workers: int,
          progress: Callable[[int], None] | None) -> int:
    """``fn`` over ``items`` on ``workers`` threads (the first error stops it); how many were done.
    ``progress(1)`` is called on this thread after each, so a progress bar needs no lock."""
    count = 0
    for _ in bounded_map(fn, items, max(1, workers)):
        count += 1
        if progress:
            progress(1)
    return count


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (all pages), sorted."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def download_files(s3: Any, bucket: str, pairs: Iterable[tuple[str, Path]], workers: int = 16,
                   progress: Callable[[int], None] | None = None) -> int:
    """Download ``(key, local path)`` pairs in parallel; returns how many."""

    def one(item: tuple[str, Path]) -> None:
        key, path = item
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))

    return _each(one, pairs, workers, progress)


def run_script(prog: str, args: argparse.Namespace, work: Callable[[Deployment], Any]) -> int:
    """A script's ``main``: logging, the deployment from the outputs, then ``work``; any error ends
    with one line ``<prog>: error: ...`` and exit 1 (``-v`` logs the traceback). ``work``'s result,
    if not None, is printed (JSON unless a string)."""
    setup_logging(args.verbose)
    try:
        result = work(deployment_from_args(args))
    except Exception as exc:  # one clear line for the user; -v for the traceback
        log.debug("failed", exc_info=True)
        print(f"{prog}: error: {error_line(exc)}", file=sys.stderr)
        return 1
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=1, default=str))
    return 0


def error_line(exc: BaseException) -> str:
    """One line for the user: botocore's ClientError says code and message itself."""
    return " ".join(str(exc).split()) or type(exc).__name__
