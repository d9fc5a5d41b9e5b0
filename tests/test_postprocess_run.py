"""End to end on a real S3 API (moto server): a moving scene with known faces, results from the REAL
inference pipeline, then ``postprocess.run.run``; plus the ``python -m postprocess`` command."""

from __future__ import annotations

import json
import logging

import pytest
from postprocess_helpers import (
    KEPT,
    AnalysedScene,
    analysed_scene,
    decode,
    face_hidden,
    face_untouched,
    get_tree,
    new_bucket,
    put_tree,
)

from postprocess.__main__ import main
from postprocess.blur import RenderConfig
from postprocess.config import PlanConfig
from postprocess.plan_format import Plan
from postprocess.run import (
    MANIFEST_NAME,
    MARKER_NAME,
    PLAN_NAME,
    IncompleteOutputError,
    LocationError,
    MissingResultsError,
    RunConfig,
    finalize_step,
    plan_step,
    render_step,
    run,
)
from postprocess.storage import Store


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket per test case (shadows conftest's, which parametrised cases would share)."""
    return new_bucket(s3)


@pytest.fixture(scope="module")
def analysed(faces_dir, test_model_dir) -> AnalysedScene:
    return analysed_scene(faces_dir, test_model_dir)


@pytest.fixture
def job(s3, bucket, analysed):
    """The layout of one transform job: frames in job/in/frames, results in job/out/frames and
    job/out/refs/<person>/. Returns the URIs."""
    put_tree(s3, bucket, "job/in/frames", analysed.frames)
    put_tree(s3, bucket, "job/out/frames", analysed.results)
    put_tree(s3, bucket, "job/out/refs", analysed.references)
    base = f"s3://{bucket}/job"
    return {"frames": f"{base}/in/frames", "results": f"{base}/out/frames", "refs": f"{base}/out/refs",
            "output": f"{base}/blurred", "bucket": bucket}


def _frames_out(s3, bucket, prefix="job/blurred"):
    tree = get_tree(s3, bucket, prefix)
    return {k: v for k, v in tree.items() if k.endswith(".png")}, tree


def test_every_face_is_hidden_in_every_frame_and_the_rest_is_copied(s3, job, analysed):
    summary = run(job["frames"], job["results"], job["output"], RunConfig(workers=4))
    scene = analysed.scene
    out, tree = _frames_out(s3, job["bucket"])
    assert sorted(out) == sorted(analysed.frames)  # nothing lost
    plan = Plan.loads(tree[PLAN_NAME])
    for i, truth in enumerate(scene.truth):
        name = AnalysedScene.name(i)
        pixels = decode(out[name])
        for person, box in truth.items():
            hidden, how = face_hidden(scene.reference(i), pixels, box)
            assert hidden, f"frame {i + 1}: {person} at {[round(v) for v in box]} is not hidden ({how})"
        if len(plan.boxes(i + 1)) == 0:
            assert out[name] == analysed.frames[name], f"frame {i + 1} has nothing to blur: copied as is"
    assert all(len(plan.boxes(i + 1)) == 0 for i in range(scene.empty_from, len(scene.frames)))
    assert summary.copied >= len(scene.frames) - scene.empty_from
    assert summary.rendered + summary.copied == len(scene.frames)
    marker = json.loads(tree[MARKER_NAME])
    assert marker["digest"] == summary.digest == json.loads(tree[MANIFEST_NAME])["digest"]
    assert marker["frames"] == len(scene.frames)
    embeddings = [f["embedding"][:40] for body in analysed.results.values() for f in json.loads(body)["faces"]]
    assert embeddings and not any(e.encode() in tree[PLAN_NAME] for e in embeddings)


def test_unknown_mode_keeps_the_reference_person_clear(s3, job, analysed, caplog):
    config = RunConfig(plan=PlanConfig(mode="unknown"), workers=4)
    with caplog.at_level(logging.DEBUG):
        run(job["frames"], job["results"], job["output"], config, job["refs"])
    scene = analysed.scene
    out, _ = _frames_out(s3, job["bucket"])
    for i, truth in enumerate(scene.truth):
        pixels = decode(out[AnalysedScene.name(i)])
        for person, box in truth.items():
            if person == KEPT:
                clear, how = face_untouched(scene.frames[i], pixels, box)
                assert clear, f"frame {i + 1}: {KEPT} (the reference person) was blurred ({how})"
            else:
                hidden, how = face_hidden(scene.reference(i), pixels, box)
                assert hidden, f"frame {i + 1}: {person} is not hidden ({how})"
    # embeddings (biometric data) never reach the log
    some_embedding = json.loads(next(iter(analysed.results.values())))["faces"][0]["embedding"]
    assert some_embedding[:40] not in caplog.text


@pytest.mark.parametrize("output", ["{frames}/blurred", "{frames}", "{results}", "s3://{bucket}/job",
                                    "{refs}/../refs"])
def test_an_output_overlapping_an_input_is_refused_before_writing(s3, job, output):
    before = get_tree(s3, job["bucket"])
    target = output.format(**job).replace("/out/refs/../refs", "/out/refs")
    with pytest.raises(LocationError, match="overlaps"):
        run(job["frames"], job["results"], target, RunConfig(workers=2), job["refs"])
    assert get_tree(s3, job["bucket"]) == before


def test_a_missing_result_stops_the_run_naming_it(s3, job):
    s3.delete_object(Bucket=job["bucket"], Key="job/out/frames/img0000005.png.out")
    with pytest.raises(MissingResultsError, match=r"img0000005\.png\.out"):
        run(job["frames"], job["results"], job["output"], RunConfig(workers=2))
    assert get_tree(s3, job["bucket"], "job/blurred") == {}


def test_an_unreadable_result_stops_the_run_naming_it(s3, job):
    s3.put_object(Bucket=job["bucket"], Key="job/out/frames/img0000007.png.out", Body=b'{"schema": "other"}')
    with pytest.raises(MissingResultsError, match=r"img0000007\.png\.out: unsupported schema"):
        run(job["frames"], job["results"], job["output"], RunConfig(workers=2))
    assert get_tree(s3, job["bucket"], "job/blurred") == {}


def test_blur_frame_policy_blurs_a_frame_without_result_whole(s3, job, analysed):
    s3.delete_object(Bucket=job["bucket"], Key="job/out/frames/img0000005.png.out")
    summary = run(job["frames"], job["results"], job["output"], RunConfig(missing="blur-frame", workers=2))
    assert summary.missing_results == [5] and summary.full_frames == 1
    out, _ = _frames_out(s3, job["bucket"])
    w, h = analysed.scene.size
    reference = analysed.scene.reference(4)
    hidden, how = face_hidden(reference, decode(out["img0000005.png"]), (0, 0, w, h), fraction=1.0)
    assert hidden, how
    for person, box in analysed.scene.truth[4].items():
        assert face_hidden(reference, decode(out["img0000005.png"]), box)[0], person


def test_a_rerun_is_idempotent_and_new_options_render_again(s3, job):
    first = run(job["frames"], job["results"], job["output"], RunConfig(workers=3))
    _, tree1 = _frames_out(s3, job["bucket"])
    again = run(job["frames"], job["results"], job["output"], RunConfig(workers=3))
    assert again.already_complete and again.digest == first.digest
    _, tree2 = _frames_out(s3, job["bucket"])
    assert tree2 == tree1

    pixelated = run(job["frames"], job["results"], job["output"],
                    RunConfig(render=RenderConfig(style="pixelate"), workers=3))
    assert pixelated.digest != first.digest and not pixelated.already_complete
    assert pixelated.skipped == 0
    out3, tree3 = _frames_out(s3, job["bucket"])
    assert json.loads(tree3[MARKER_NAME])["digest"] == pixelated.digest
    changed = [k for k in out3 if out3[k] != tree1[k]]
    assert len(changed) == first.rendered


def test_an_interrupted_run_resumes_to_the_same_bytes(s3, job):
    store = Store(s3)
    config = RunConfig(workers=2)
    run(job["frames"], job["results"], job["output"] + "-clean", config, store=store)
    # plan, then only the first of two render slices, as if the second array job had died
    step = plan_step(store, job["frames"], job["results"], job["output"], config)
    done = render_step(store, job["output"], config, index=0, count=2)
    assert not store.exists(job["output"] + "/" + MARKER_NAME)
    summary = run(job["frames"], job["results"], job["output"], config, store=store)
    assert summary.skipped == done.frames and summary.skipped + summary.rendered + summary.copied == len(
        step.manifest.frames)
    clean, _ = _frames_out(s3, job["bucket"], "job/blurred-clean")
    resumed, _ = _frames_out(s3, job["bucket"])
    assert resumed == clean


def _local_job(tmp_path, analysed):
    for folder, files in (("in/frames", analysed.frames), ("res/frames", analysed.results),
                          ("res/refs", analysed.references)):
        for rel, body in files.items():
            path = tmp_path / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    return tmp_path / "in/frames", tmp_path / "res/frames", tmp_path / "res/refs"


def test_command_line_runs_on_local_folders(tmp_path, analysed, capsys):
    frames, results, refs = _local_job(tmp_path, analysed)
    code = main([str(frames), str(results), str(tmp_path / "out"), "--references", str(refs),
                 "--mode", "unknown", "--style", "pixelate", "--workers", "2"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == len(analysed.frames)
    assert (tmp_path / "out" / MARKER_NAME).is_file()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(analysed.frames)


def test_command_line_errors_are_one_line_and_exit_1(tmp_path, analysed, capsys):
    frames, results, _ = _local_job(tmp_path, analysed)
    assert main([str(frames), str(results), str(frames / "blurred")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "overlaps the frames location" in err
    assert not (frames / "blurred").exists()


@pytest.mark.parametrize(("argv", "named"), [
    (["--mask-scale", "0.5"], "--mask-scale"),  # and its range
    (["--mode", "select"], "picks"),
    (["--style", "swirl"], "--style"),
    (["--pick", "nonsense"], "--pick"),
    (["--pick", "1:x:2"], "FRAME:X:Y"),  # says what a pick must look like
])
def test_command_line_bad_options_exit_2_naming_the_option(tmp_path, argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "f"), str(tmp_path / "r"), str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in last and named in last


def test_outputs_of_an_older_run_do_not_count_as_finished(s3, job):
    """A new plan over an old output: until its own frames are rendered there is no marker, and
    finalize refuses even though every file name is present."""
    store = Store(s3)
    run(job["frames"], job["results"], job["output"], RunConfig(workers=2), store=store)
    changed = RunConfig(render=RenderConfig(style="solid"), workers=2)
    plan_step(store, job["frames"], job["results"], job["output"], changed)
    assert not store.exists(job["output"] + "/" + MARKER_NAME)
    with pytest.raises(IncompleteOutputError, match="no output for this plan"):
        finalize_step(store, job["output"], changed)
    assert not store.exists(job["output"] + "/" + MARKER_NAME)
