"""Nothing lost, nothing written where it must not be: ``face-blur run`` / ``render`` on the local
side (issue 18). Cut-short videos, outputs aimed at the inputs, errors found before the work,
leftovers of a kill, output modes, and ``--resume`` after a SIGKILL, against the real command."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from reliability_helpers import cut, decodable_frames, face_blur, face_clip, kill_when, leftovers, remux, unwritable
from video_helpers import probe_clip, read_frames

from faceblur.cli import main

FAST = ["--detector", "centerface", "--no-progress"]


@pytest.fixture(autouse=True)
def resume_dir(tmp_path, monkeypatch) -> Path:
    """Resume journals of this test in its own folder (they hold embeddings)."""
    folder = tmp_path / "resume"
    monkeypatch.setenv("FACE_BLUR_RESUME_DIR", str(folder))
    return folder


def _fast(model_dir: Path) -> list[str]:
    return [*FAST, "--model-dir", str(model_dir)]


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("face-blur"), err[-2000:]
    return lines[-1]


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, faces_dir) -> dict[str, Path]:
    """A faststart MP4 of 60 frames, its Matroska copy, and cut-short copies of both."""
    d = tmp_path_factory.mktemp("clips")
    mp4 = face_clip(d / "clip.mp4", faces_dir, frames=60, faststart=True)
    mkv = remux(mp4, d / "clip.mkv")
    return {"mp4": mp4, "mkv": mkv,
            "mp4 40%": cut(mp4, d / "cut40.mp4", 0.4), "mkv 40%": cut(mkv, d / "cut40.mkv", 0.4),
            "mkv 97%": cut(mkv, d / "cut97.mkv", 0.97)}


# ---------------------------------------------------------------------------------------------- 2. truncation


@pytest.mark.parametrize("name", ["mp4 40%", "mkv 40%"])
def test_a_cut_short_video_is_refused_before_the_work_naming_file_and_frame(clips, tmp_path, test_model_dir,
                                                                            capsys, name):
    src = clips[name]
    out = tmp_path / "out.mp4"
    assert main(["run", str(src), "-o", str(out), *_fast(test_model_dir)]) == 1
    err = capsys.readouterr().err
    line = _error_line(err)
    assert str(src) in line and "cut short" in line and "its frames stop at" in line
    if name.startswith("mp4"):  # the container's own count, and the frame
        assert "declares 60 frames" in line and "after about frame 2" in line
    assert "--allow-truncated" in line
    assert "detector centerface" not in err  # found before the models load, let alone detection
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_cut_in_the_last_second_is_caught_after_decoding_naming_the_frame(clips, tmp_path, test_model_dir,
                                                                           capsys):
    src = clips["mkv 97%"]
    decoded = decodable_frames(src)
    assert 50 < decoded < 60  # too little missing for the check at the end: decoding tells
    out = tmp_path / "out.mp4"
    assert main(["run", str(src), "-o", str(out), *_fast(test_model_dir)]) == 1
    line = _error_line(capsys.readouterr().err)
    assert f"decoding ended after frame {decoded}" in line and "about 60 frames" in line and str(src) in line
    assert not out.exists()


def test_allow_truncated_anonymises_the_frames_there_and_says_so(clips, tmp_path, test_model_dir, capsys):
    src = clips["mp4 40%"]
    decoded = decodable_frames(src)
    out = tmp_path / "out.mp4"
    assert main(["run", str(src), "-o", str(out), "--allow-truncated", *_fast(test_model_dir)]) == 0
    assert probe_clip(out).frames == decoded
    assert f"truncated input: {decoded} of 60 declared frames" in capsys.readouterr().err


def test_complete_videos_pass_both_checks(clips):
    from faceblur.truncation import FrameTally, check_count, check_end
    from faceblur.video import iter_frames, probe

    for name in ("mp4", "mkv"):  # (the Matroska copy misreports its rate: 30000 fps)
        info = probe(clips[name])
        check_end(clips[name], info)
        tally = FrameTally()
        for frame in iter_frames(clips[name]):
            tally.see(frame)
        assert tally.decoded == 60 and check_count(clips[name], info, tally.decoded, tally.end) == ""


def test_the_aws_split_refuses_a_cut_short_video(s3, bucket, clips):
    import sys

    from test_scripts import outputs

    from faceblur.truncation import TruncatedVideoError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import deployment
    import upload_video

    dep = deployment.Deployment.from_outputs(outputs(bucket))
    with pytest.raises(TruncatedVideoError, match="cut short"):
        upload_video.upload_video(dep, s3, clips["mkv 97%"], "cut-job")
    assert deployment.list_keys(s3, bucket, "") == []  # nothing uploaded
    uploaded = upload_video.upload_video(dep, s3, clips["mkv 97%"], "cut-job", allow_truncated=True)
    assert uploaded.frames == decodable_frames(clips["mkv 97%"])


# ---------------------------------------------------------------------------------------------- 3. locations


def _frames_folder(tmp_path: Path, clips) -> Path:
    from faceblur.video import extract_frames

    folder = tmp_path / "in"
    extract_frames(clips["mp4"], folder / "frames", sidecar_dir=tmp_path / "sidecar")
    return folder / "frames"


@pytest.mark.parametrize(("spelling", "extra"), [
    ("{d}/sub", []), ("{d}", ["--overwrite"]), ("{d}/./sub/../sub2", []), ("{d}/../frames/x", []),
    ("{up}", ["--overwrite"]), ("{link}/sub", []),
])
def test_run_never_writes_inside_or_over_its_input_folder(tmp_path, clips, test_model_dir, capsys, spelling, extra):
    frames = _frames_folder(tmp_path, clips)
    (tmp_path / "link").symlink_to(frames)
    before = _tree(tmp_path / "in")
    out = spelling.format(d=frames, up=frames.parent, link=tmp_path / "link")
    assert main(["run", str(frames), "-o", out, *extra, *_fast(test_model_dir)]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "overlaps the input" in line
    assert _tree(tmp_path / "in") == before


@pytest.mark.parametrize("case", ["plan over the input", "plan inside the input", "ref inside the output",
                                  "render inside the input"])
def test_plan_file_references_and_render_are_checked_too(tmp_path, clips, faces_dir, test_model_dir, capsys, case):
    frames = _frames_folder(tmp_path, clips)
    ref_dir = tmp_path / "out"
    ref_dir.mkdir()
    (ref_dir / "rose.jpg").write_bytes((faces_dir / "rose_leslie1.jpg").read_bytes())
    video = tmp_path / "in" / "clip.mp4"
    video.write_bytes(clips["mp4"].read_bytes())
    before = {p: p.read_bytes() for p in (video, ref_dir / "rose.jpg")}
    argv = {
        "plan over the input": ["run", str(video), "-o", str(tmp_path / "o.mp4"), "--plan", str(video)],
        "plan inside the input": ["run", str(frames), "-o", str(tmp_path / "o"), "--plan", str(frames / "p.json")],
        "ref inside the output": ["run", str(frames), "-o", str(ref_dir), "--overwrite", "--mode", "unknown",
                                  "--ref", str(ref_dir / "rose.jpg")],
        "render inside the input": ["render", str(frames), "--plan", str(tmp_path / "p.json"), "-o",
                                    str(frames / "again")],
    }[case]
    if argv[0] == "run":
        argv += _fast(test_model_dir)
    assert main(argv) == 1
    assert "overlaps the" in _error_line(capsys.readouterr().err)
    assert {p: p.read_bytes() for p in before} == before
    assert not (frames / "p.json").exists() and not (frames / "again").exists()


def test_the_lambda_refuses_an_output_on_its_frames_before_claiming_or_submitting(s3, bucket):
    from postprocess.lambda_handler import DETAIL_TYPE, handle_event
    from postprocess.locations import LocationError
    from postprocess.run import OPTIONS_NAME

    frames = f"s3://{bucket}/job/in/frames"
    options = {"schema": "face-blur/options/v1", "frames": frames, "results": f"s3://{bucket}/job/out/frames",
               "references": None, "output": frames + "/", "options": {}, "frame_count": 50_000}
    s3.put_object(Bucket=bucket, Key="job/in/frames/img0000001.png", Body=b"png")
    s3.put_object(Bucket=bucket, Key=f"job/out/{OPTIONS_NAME}", Body=json.dumps(options).encode())

    class RecordingBatch:
        specs: list = []

        def submit_job(self, **spec):
            self.specs.append(spec)
            return {"jobName": spec["jobName"], "jobId": "id"}

    event = {"detail-type": DETAIL_TYPE, "source": "aws.sagemaker", "id": "e1",
             "detail": {"TransformJobName": "fb-long", "TransformJobStatus": "Completed",
                        "TransformOutput": {"S3OutputPath": f"s3://{bucket}/job/out"}}}
    before = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    with pytest.raises(LocationError, match="overlaps the frames"):
        handle_event(event, batch=RecordingBatch(), env={"FACE_BLUR_LAMBDA_MAX_FRAMES": "10",
                                                         "FACE_BLUR_BATCH_JOB_QUEUE": "q",
                                                         "FACE_BLUR_BATCH_JOB_DEFINITION": "jd"})
    assert RecordingBatch.specs == []
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == before  # no claim object


@pytest.mark.parametrize(("output", "name"), [("s3://b/f", "frames"), ("s3://b/f/blurred", "frames"),
                                              ("s3://b/", "frames"), ("s3://b/refs/out", "references"),
                                              ("s3://b/r", "results")])
def test_job_options_aimed_at_an_input_cannot_be_made(output, name):
    """What scripts/start_job.py writes is a JobOptions: refused before it is written."""
    from postprocess.locations import LocationError
    from postprocess.run import JobOptions

    with pytest.raises(LocationError, match=f"overlaps the {name} location"):
        JobOptions("s3://b/f", "s3://b/r", output, "s3://b/refs")
    JobOptions("s3://b/f", "s3://b/r", "s3://b/f2", "s3://b/refs")  # a neighbour is fine


@pytest.mark.parametrize("step", ["plan", "render", "finalize"])
def test_every_batch_step_refuses_such_options(s3, bucket, step, capsys):
    from postprocess import batch
    from postprocess.run import OPTIONS_NAME

    options = {"schema": "face-blur/options/v1", "frames": f"s3://{bucket}/f", "results": f"s3://{bucket}/r",
               "references": None, "output": f"s3://{bucket}/r/blurred", "options": {}}
    s3.put_object(Bucket=bucket, Key=OPTIONS_NAME, Body=json.dumps(options).encode())
    assert batch.main(["--options", f"s3://{bucket}/{OPTIONS_NAME}", "--step", step]) == 1
    assert "overlaps the results" in capsys.readouterr().err
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [OPTIONS_NAME]


# ---------------------------------------------------------------------------------------------- 4. early checks


def test_a_read_only_output_folder_is_named_before_the_work(tmp_path, clips, test_model_dir, capsys):
    with unwritable(tmp_path / "ro") as ro:
        out = ro / "out.mp4"
        assert main(["run", str(clips["mp4"]), "-o", str(out), *_fast(test_model_dir)]) == 1
        err = capsys.readouterr().err
    line = _error_line(err)
    assert f"output {out}: cannot write in {ro}" in line and ".tmp-" not in line
    assert "detector centerface" not in err


@pytest.mark.parametrize(("pick", "text"), [
    ("999999:1:1", "frame 999999 is not in {src}, which has 60 frames"),
    ("0:10:10", "frame 0 is not in {src}, which has 60 frames"),
    ("5:400:10", "the point (400, 10) is outside the 320x180 frame"),
])
def test_a_pick_outside_the_video_is_named_before_the_work(tmp_path, clips, test_model_dir, capsys, pick, text):
    src = clips["mp4"]
    argv = ["run", str(src), "-o", str(tmp_path / "o.mp4"), "--mode", "select", "--pick", pick]
    assert main([*argv, *_fast(test_model_dir)]) == 1
    err = capsys.readouterr().err
    assert text.format(src=src) in _error_line(err)
    assert "detector centerface" not in err


def test_a_pick_in_a_frames_folder_names_its_numbering(tmp_path, clips, test_model_dir, capsys):
    frames = _frames_folder(tmp_path, clips)
    argv = ["run", str(frames), "-o", str(tmp_path / "o"), "--mode", "select", "--pick", "61:10:10"]
    assert main([*argv, *_fast(test_model_dir)]) == 1
    assert "no frame 61 in" in (line := _error_line(capsys.readouterr().err)) and "numbered 1..60" in line


def test_a_missing_reference_is_named_before_the_models_load(tmp_path, clips, test_model_dir, capsys):
    argv = ["run", str(clips["mp4"]), "-o", str(tmp_path / "o.mp4"), "--mode", "unknown",
            "--ref", str(tmp_path / "nobody.jpg")]
    assert main([*argv, *_fast(test_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "reference" in _error_line(err) and "nobody.jpg: no such file" in _error_line(err)
    assert "detector centerface" not in err


def test_too_little_free_space_is_named_before_the_work(tmp_path, clips, test_model_dir, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))  # a full disk
    assert main(["run", str(clips["mp4"]), "-o", str(tmp_path / "o.mp4"), *_fast(test_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "MB needed" in _error_line(err) and "free on" in _error_line(err)
    assert "detector centerface" not in err


# ---------------------------------------------------------------------------------------------- 5. leftovers, modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, clips, faces_dir, test_model_dir, umask):
    frames = _frames_folder(tmp_path, clips)
    photo = faces_dir / "obama.jpg"
    old = os.umask(umask)
    try:
        assert main(["run", str(clips["mp4"]), "-o", str(tmp_path / "v.mp4"), "--plan", str(tmp_path / "p.json"),
                     *_fast(test_model_dir)]) == 0
        assert main(["run", str(photo), "-o", str(tmp_path / "p.jpg"), *_fast(test_model_dir)]) == 0
        assert main(["run", str(frames), "-o", str(tmp_path / "f"), *_fast(test_model_dir)]) == 0
        assert main(["render", str(clips["mp4"]), "--plan", str(tmp_path / "p.json"), "-o", str(tmp_path / "r.mp4"),
                     "--no-progress"]) == 0
        from postprocess.storage import Store

        Store().write(str(tmp_path / "post" / "frame.png"), b"x")  # the post-processing stage's local writes
    finally:
        os.umask(old)
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    for name in ("v.mp4", "p.json", "p.jpg", "r.mp4", "post/frame.png"):
        assert _mode(tmp_path / name) == file_mode, name
    assert _mode(tmp_path / "f") == folder_mode
    assert {_mode(p) for p in (tmp_path / "f").iterdir()} == {file_mode}
    assert leftovers(tmp_path) == []


FRAMES = 60
# (a kill needs a run that lasts; faces here are 60 px). --resume continues runs that analyse every
# frame; an adaptive run (the default) picks frames from what it found and starts again (README).
QUICK = ["--workers", "1", "--min-face", "32", "--analysis", "every"]


def _clip_for_kills(tmp_path: Path, faces_dir: Path) -> Path:
    return face_clip(tmp_path / "long.mp4", faces_dir, frames=FRAMES)


def test_a_kill_while_encoding_leaves_a_temporary_the_next_run_removes(tmp_path, faces_dir, test_model_dir):
    src = _clip_for_kills(tmp_path, faces_dir)
    out = tmp_path / "long_anonymized.mp4"
    args = ["run", str(src), *QUICK, "--preset", "ultrafast", *_fast(test_model_dir)]
    proc = face_blur(args)

    def encoding() -> bool:
        return any((tmp_path / name).stat().st_size > 0 for name in leftovers(tmp_path))

    assert kill_when(proc, encoding), "the run ended before it could be killed while encoding"
    left = leftovers(tmp_path)
    assert left and not out.exists()  # a kill cannot clean up: what it leaves is hidden and named so
    done = face_blur(args)
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-2000:]
    assert leftovers(tmp_path) == []  # found and removed by the next run
    assert probe_clip(out).frames == FRAMES


# ---------------------------------------------------------------------------------------------- resume


def _journal_frames(folder: Path) -> int:
    from faceblur.resume import _read

    return max((len(_read(p.read_bytes())[1]) for p in folder.glob("*.journal")), default=0)


def test_resume_after_a_kill_continues_and_gives_the_uninterrupted_output(tmp_path, faces_dir, test_model_dir,
                                                                           resume_dir):
    src = _clip_for_kills(tmp_path, faces_dir)
    base = [*QUICK, *_fast(test_model_dir), "-v"]
    whole = face_blur(["run", str(src), "-o", str(tmp_path / "whole.mp4"), "--plan", str(tmp_path / "whole.json"),
                       *base], env={"FACE_BLUR_RESUME_DIR": str(tmp_path / "other")})
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-2000:]

    args = ["run", str(src), "-o", str(tmp_path / "out.mp4"), "--plan", str(tmp_path / "out.json"), *base]
    proc = face_blur(args)
    assert kill_when(proc, lambda: _journal_frames(resume_dir) >= 20), "the run ended before the kill"
    analysed = _journal_frames(resume_dir)
    assert 20 <= analysed < FRAMES and not (tmp_path / "out.mp4").exists()

    again = face_blur([*args, "--resume"])
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    reused = int(err.split("--resume: ")[1].split(" frames already analysed")[0])
    assert reused == analysed  # every complete record, none twice
    assert f"resumed: {reused} frames analysed by an interrupted run were reused" in err
    assert list(resume_dir.glob("*.journal")) == []  # a finished run leaves no embeddings behind
    plan, expected = (json.loads((tmp_path / n).read_text()) for n in ("out.json", "whole.json"))
    assert plan["sequences"] == expected["sequences"] and plan["summary"] == expected["summary"]
    ours, theirs = read_frames(tmp_path / "out.mp4"), read_frames(tmp_path / "whole.mp4")
    assert len(ours) == len(theirs) == FRAMES
    assert all((a == b).all() for a, b in zip(ours, theirs, strict=True))


def test_resume_with_other_analysis_options_is_refused_naming_them(tmp_path, faces_dir, test_model_dir, resume_dir):
    src = _clip_for_kills(tmp_path, faces_dir)
    args = ["run", str(src), "-o", str(tmp_path / "out.mp4"), *QUICK, *_fast(test_model_dir)]
    proc = face_blur(args)
    assert kill_when(proc, lambda: _journal_frames(resume_dir) >= 5), "the run ended before the kill"
    changed = face_blur([*args, "--resume", "--min-face", "24", "--style", "pixelate"])
    _, err = changed.communicate(timeout=600)
    assert changed.returncode == 1
    line = _error_line(err)
    assert "--resume" in line and "detector.min_face was 32, now 24" in line and "style" not in line
    assert _journal_frames(resume_dir) >= 5  # still there for a resume with the right options
    fresh = face_blur([*args, "-v"])  # without --resume: starts again, says so, and cleans up
    _, err = fresh.communicate(timeout=600)
    assert fresh.returncode == 0 and "starting again (--resume continues from them)" in err
    assert list(resume_dir.glob("*.journal")) == []


def test_the_post_processing_stage_removes_what_a_killed_run_left(tmp_path, faces_dir, test_model_dir):
    """A killed render leaves ``.<frame>.tmp-*`` files (unlocked once their writer is dead); the
    next run over that output removes them and ends complete, its files following the umask."""
    from postprocess_helpers import analysed_scene

    from postprocess.__main__ import main as postprocess_main
    from postprocess.run import MARKER_NAME
    from postprocess.tempfiles import create_temporary

    analysed = analysed_scene(faces_dir, test_model_dir)
    for folder, files in (("in", analysed.frames), ("res", analysed.results)):
        for rel, body in files.items():
            (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / rel).write_bytes(body)
    out = tmp_path / "out"
    first = sorted(analysed.frames)[0]
    fd, stale = create_temporary(out / first)  # what a writer killed mid-frame leaves behind
    os.write(fd, b"half a png")
    os.close(fd)  # (its death releases the lock)
    old = os.umask(0o022)
    try:
        assert postprocess_main([str(tmp_path / "in"), str(tmp_path / "res"), str(out)]) == 0
    finally:
        os.umask(old)
    assert not stale.exists() and leftovers(out) == []
    assert (out / MARKER_NAME).is_file() and _mode(out / first) == 0o644
