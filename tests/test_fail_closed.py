"""Fail closed in the post-processing stage (what the Lambda and Batch jobs run): frame results made
with dlib, or with no embedder, leave no one clear in modes known/unknown/select, and the summary
says why; ``allow_weak_embedder`` in the job options trusts dlib again. The stage decides from the
embedder named in the frame results, without importing a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from decisions_helpers import HEIGHT, WIDTH, Appearance, box_at, build_results, photo, unit
from postprocess_helpers import png_bytes

from contract import dumps
from postprocess.__main__ import main as postprocess_main
from postprocess.batch import main as batch_main
from postprocess.config import PlanConfig
from postprocess.run import OPTIONS_SCHEMA, RunConfig


def _job(tmp_path, embedder: str):
    """Frames, results and references of a 12-frame video of Alice and Bob, on local folders."""
    dim = 128
    alice, bob = unit(np.random.default_rng(3).normal(size=(2, dim)))
    results = build_results([Appearance(alice, range(12), lambda f: box_at(180, 180, 70)),
                             Appearance(bob, range(12), lambda f: box_at(420, 180, 70))], 12, embedder=embedder,
                            dim=dim)
    frames, out, refs = tmp_path / "frames", tmp_path / "results", tmp_path / "refs" / "alice"
    for d in (frames, out, refs):
        d.mkdir(parents=True)
    blank = png_bytes(np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
    for f, result in results.items():
        name = f"img{f + 1:07d}.png"
        (frames / name).write_bytes(blank)
        (out / f"{name}.out").write_bytes(dumps(result))
    (refs / "alice.jpg.out").write_bytes(dumps(photo(alice if embedder else None, embedder=embedder or "x")))
    return frames, out, tmp_path / "refs"


def _options(tmp_path, frames, results, refs, plan: PlanConfig) -> str:
    config = RunConfig(plan=plan)
    body = {"schema": OPTIONS_SCHEMA, "frames": str(frames), "results": str(results), "references": str(refs),
            "output": str(tmp_path / "output"), "options": json.loads(json.dumps(config.to_dict()))}
    path = tmp_path / "face-blur-options.json"
    path.write_text(json.dumps(body))
    return str(path)


@pytest.mark.parametrize("mode", ["known", "unknown"])
def test_batch_job_with_dlib_results_blurs_everyone_and_says_why(tmp_path, capsys, mode):
    frames, results, refs = _job(tmp_path, "dlib-resnet")
    options = _options(tmp_path, frames, results, refs, PlanConfig(mode=mode, identity_threshold=0.3))
    assert batch_main(["--options", options, "--step", "all"], env={}) == 0
    record = json.loads(capsys.readouterr().out)
    summary = record["plan"]
    assert summary["kept"] == 0 and summary["blurred"] == 2
    assert "dlib-resnet" in summary["fail_closed"] and "--allow-weak-embedder" in summary["fail_closed"]
    plan = json.loads((tmp_path / "output" / "face-blur-plan.json").read_text())
    assert plan["identity"]["fail_closed"] == summary["fail_closed"]


def test_allow_weak_embedder_in_the_job_options_trusts_dlib(tmp_path, capsys):
    frames, results, refs = _job(tmp_path, "dlib-resnet")
    options = _options(tmp_path, frames, results, refs,
                       PlanConfig(mode="unknown", identity_threshold=0.3, allow_weak_embedder=True))
    assert batch_main(["--options", options, "--step", "all"], env={}) == 0
    summary = json.loads(capsys.readouterr().out)["plan"]
    assert summary["kept"] == 1 and summary["fail_closed"] == ""


def test_python_m_postprocess_without_embeddings_blurs_everyone(tmp_path, capsys):
    frames, results, refs = _job(tmp_path, "")
    code = postprocess_main([str(frames), str(results), str(tmp_path / "output"), "--references", str(refs),
                             "--mode", "known"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)["plan"]
    assert summary["blurred"] == 2 and "no face embeddings" in summary["fail_closed"]
    assert "python -m model.fetch" in summary["fail_closed"]


def test_the_option_is_in_help_with_its_default(capsys):
    with pytest.raises(SystemExit):
        postprocess_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-weak-embedder" in text and "(default: off)" in text
