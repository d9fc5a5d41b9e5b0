"""Dependencies run one way (ARCHITECTURE.md): post-processing never loads a model runtime or the
handler, the contract needs numpy only and imports nothing else of the project, the inference part
never imports its server, benchmarks never import tests, and no modules import each other in a loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.imports_graph import cycles, import_graph, imported_names, project_modules


def _modules_after(imports: str) -> set[str]:
    code = f"import sys, json\n{imports}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


POSTPROCESS = ("postprocess", "postprocess.run", "postprocess.plan", "postprocess.plan_format",
               "postprocess.options", "postprocess.parallel", "postprocess.lambda_handler", "postprocess.batch",
               "postprocess.analysis_events",
               "postprocess.__main__")


@pytest.mark.parametrize("module", POSTPROCESS)
def test_post_processing_never_imports_onnxruntime_or_the_handler(module):
    loaded = _modules_after(f"import {module}")
    forbidden = {m for m in loaded if m.split(".")[0] in ("onnxruntime", "handler", "faceblur", "dlib", "onnx", "av")}
    assert not forbidden, f"{module} pulls in {sorted(forbidden)}"


def test_the_contract_needs_numpy_only():
    loaded = _modules_after("import contract")
    third_party = {m.split(".")[0] for m in loaded} & {"PIL", "scipy", "boto3", "onnxruntime", "handler", "postprocess"}
    assert not third_party, f"contract pulls in {sorted(third_party)}"


# --- the nevers, read from every import statement (lazy ones inside functions included) ----------

SOURCES = project_modules(REPO)
INFERENCE = sorted(m for m in SOURCES if m.startswith("handler") and not m.startswith("handler.serving")
                   and m != "handler.serve")  # handler/serve.py is the container's entry point into serving


def _imports(module: str) -> set[str]:
    return imported_names(SOURCES[module], module)


def _roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_serving(module):
    bad = {n for n in _imports(module) if n.startswith("handler.serving") or n.split(".")[0] in (
        "sagemaker_inference", "mms")}
    assert not bad, f"{module} imports {sorted(bad)}: the inference part must run without the server"


def test_the_pipeline_loads_without_the_server():
    loaded = _modules_after("import handler.pipeline, handler.detector_factory, handler.embedder")
    assert not {m for m in loaded if m.startswith("handler.serving") or m.startswith("sagemaker_inference")}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("contract")))
def test_nothing_in_the_contract_imports_the_rest_of_the_project(module):
    project = _roots(_imports(module)) & {"handler", "postprocess", "faceblur", "model", "bench", "tests"}
    assert not project, f"{module} imports {sorted(project)}"
    third_party = _roots(_imports(module)) - {"numpy", "contract", "__future__"} - set(sys.stdlib_module_names)
    assert not third_party, f"{module} needs {sorted(third_party)}: the contract is numpy only"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("postprocess")))
def test_no_post_processing_module_imports_the_handler_or_a_model_runtime(module):
    bad = _roots(_imports(module)) & {"handler", "faceblur", "onnxruntime", "onnx", "dlib", "av"}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("bench")))
def test_benchmarks_never_import_the_tests(module):
    assert "tests" not in _roots(_imports(module)), f"{module} imports from tests/"


def test_no_import_loops():
    loops = cycles(import_graph(REPO))
    assert not loops, f"modules that import each other (directly or round a loop): {loops}"


PRODUCTION = ("contract", "handler", "postprocess", "faceblur", "model")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.split(".")[0] in PRODUCTION))
def test_production_modules_stay_short(module):
    lines = len(SOURCES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"{module} has {lines} lines; split it by job (style guide: modules <= ~500 lines)"
