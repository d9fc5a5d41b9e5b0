"""Dependencies run one way: post-processing never loads a model runtime, the contract needs numpy only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _modules_after(imports: str) -> set[str]:
    code = f"import sys, json\n{imports}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


POSTPROCESS = ("postprocess", "postprocess.run", "postprocess.plan", "postprocess.plan_format",
               "postprocess.options", "postprocess.parallel", "postprocess.lambda_handler", "postprocess.batch",
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
