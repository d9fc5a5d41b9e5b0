"""``face-blur`` as a user runs it: run on a video with sound, a photo, a frames folder; render from an
edited plan; every error a user can meet ends with one clear line and a non-zero status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, load_rgb
from PIL import Image
from video_helpers import (
    AudioSpec,
    ClipSpec,
    detail,
    face_patch,
    gradient,
    make_clip,
    mean_abs_diff,
    outside,
    paste,
    probe_clip,
    read_frames,
    tone_frequency,
)

from faceblur.cli import main

FAST = ["--detector", "centerface", "--no-progress"]


def _fast(test_model_dir: Path) -> list[str]:
    return [*FAST, "--model-dir", str(test_model_dir)]


def _error_line(err: str) -> str:
    """The last line of stderr, checked to be the error line; no traceback anywhere."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("face-blur"), lines[-1]
    return lines[-1]


# ---------------------------------------------------------------------------------------------- run


def test_run_on_a_video_with_sound_keeps_frames_rate_size_and_audio(tmp_path, faces_dir, test_model_dir, capsys):
    patch, box = face_patch(faces_dir, "rose_leslie", 70)
    frames, truths = [], []
    for i in range(15):
        frame = gradient(ClipSpec(), i)
        truths.append(paste(frame, patch, box, 120 + i, 30))
        frames.append(frame)
    src = make_clip(tmp_path / "clip.mp4", ClipSpec(frames=15, rate=Fraction(30000, 1001),
                                                    audio=[AudioSpec("aac", 44100, "stereo", 660)]),
                    lambda i: frames[i])
    plan = tmp_path / "plan.json"
    assert main(["run", str(src), "--plan", str(plan), *_fast(test_model_dir)]) == 0
    out = tmp_path / "clip_anonymized.mp4"  # the default name
    a, b = probe_clip(src), probe_clip(out)
    assert b.frames == a.frames == 15
    assert b.average_rate == a.average_rate == Fraction(30000, 1001)
    assert (b.width, b.height) == (a.width, a.height)
    assert [(x["codec"], x["rate"], x["channels"]) for x in b.audio] == [("aac", 44100, 2)]
    assert b.audio[0]["duration"] == pytest.approx(a.audio[0]["duration"], abs=0.03)
    assert tone_frequency(out, 0) == pytest.approx(660, abs=15)
    for frame, original, truth in zip(read_frames(out), frames, truths, strict=True):
        assert detail(frame, truth) < 0.5 * detail(original, truth)
        assert mean_abs_diff(frame, original, outside(frame.shape, [truth])) < 3
    saved = json.loads(plan.read_text())
    assert saved["schema"] == "face-blur/plan/v1" and '"embedding":' not in plan.read_text()
    err = capsys.readouterr().err
    assert "embedder none" in err  # it says which embedder it used: none in mode all with adaptive analysis
    assert "of 15 frames fully analysed" in err  # and how many frames it analysed
    assert "frames 15" in err and "blurred" in err  # the closing summary


def test_photo_out_as_photo_and_render_from_an_edited_plan(tmp_path, faces_dir, test_model_dir):
    photo = tmp_path / "two.jpg"
    photo.write_bytes((faces_dir / "two_people.jpg").read_bytes())
    plan_path = tmp_path / "plan.json"
    assert main(["run", str(photo), "--plan", str(plan_path), *_fast(test_model_dir)]) == 0
    out = tmp_path / "two_anonymized.jpg"
    original, blurred = load_rgb(photo), load_rgb(out)
    assert blurred.shape == original.shape
    plan = json.loads(plan_path.read_text())
    faces = [s for s in plan["sequences"] if s["decision"] == "blur"]
    assert len(faces) == 2
    boxes = [s["boxes"][0] for s in faces]
    for b in boxes:
        assert detail(blurred, b) < 0.5 * detail(original, b)

    # a reviewer keeps the first person clear and re-renders, without detecting again
    faces[0]["decision"] = "keep"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(plan))
    again = tmp_path / "again.jpg"
    assert main(["render", str(photo), "--plan", str(edited), "-o", str(again), "--no-progress"]) == 0
    rendered = load_rgb(again)
    assert detail(rendered, boxes[0]) > 0.8 * detail(original, boxes[0])  # kept: sharp again
    assert detail(rendered, boxes[1]) < 0.5 * detail(original, boxes[1])


def test_frames_folder_out_as_frames_with_the_same_names(tmp_path, faces_dir, test_model_dir):
    patch, box = face_patch(faces_dir, "obama", 60)
    folder = tmp_path / "shots"
    folder.mkdir()
    originals, truths = {}, {}
    for n in (1, 2, 3, 4):
        frame = gradient(ClipSpec(), n)
        truths[n] = paste(frame, patch, box, 100 + 3 * n, 40)
        name = f"frame_{n:04d}.png"
        Image.fromarray(frame).save(folder / name)
        originals[name] = (frame, truths[n])
    (folder / "notes.txt").write_text("not a frame")
    out = tmp_path / "shots_out"
    assert main(["run", str(folder), "-o", str(out), *_fast(test_model_dir)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(originals)
    for name, (frame, truth) in originals.items():
        got = np.asarray(Image.open(out / name).convert("RGB"))
        assert detail(got, truth) < 0.5 * detail(frame, truth)
        assert mean_abs_diff(got, frame, outside(frame.shape, [truth])) == 0  # PNG: untouched pixels exact


def test_mode_unknown_keeps_the_reference_person_clear(tmp_path, faces_dir, test_model_dir):
    """obama_and_biden.jpg with a reference photo of obama: only biden is blurred. A photo is one
    frame, so --min-samples 1 (by default three matching samples are needed, else it is blurred)."""
    photo = tmp_path / "pair.jpg"
    photo.write_bytes((faces_dir / "obama_and_biden.jpg").read_bytes())
    refs = tmp_path / "obama"
    refs.mkdir()
    (refs / "a.jpg").write_bytes((faces_dir / "obama.jpg").read_bytes())
    (refs / "b.jpg").write_bytes((faces_dir / "obama2.jpg").read_bytes())
    plan_path = tmp_path / "plan.json"
    assert main(["run", str(photo), "--mode", "unknown", "--ref", str(refs), "--min-samples", "1",
                 "--plan", str(plan_path), *_fast(test_model_dir)]) == 0
    plan = json.loads(plan_path.read_text())
    # low-score candidates a single photo cannot confirm are listed as dropped (issue 14)
    assert all("not a face" in s["reason"] for s in plan["sequences"] if s["decision"] == "drop")
    kept = [(s["decision"], s.get("person")) for s in plan["sequences"] if s["decision"] not in ("blur", "drop")]
    assert kept == [("keep", "obama")]  # biden (and anyone else in the picture) is blurred
    assert sum(s["decision"] == "blur" for s in plan["sequences"]) >= 1
    assert plan["identity"]["references"] == {"obama": ["a.jpg", "b.jpg"]}


# ---------------------------------------------------------------------------------------------- errors


def _no_face_photo(tmp_path: Path) -> Path:
    path = tmp_path / "wall.jpg"
    Image.fromarray(gradient(ClipSpec(), 0)).save(path)
    return path


def _not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("hello")
    return path


def _existing_output(tmp_path: Path) -> list[str]:
    src = make_clip(tmp_path / "c.mp4", ClipSpec(frames=2))
    (tmp_path / "c_anonymized.mp4").write_bytes(b"x")
    return [str(src)]


ERRORS = [
    # (id, argv builder, exit status, text the line must contain)
    ("missing input", lambda t, f: ["run", str(t / "absent.mp4")], 1, "absent.mp4: no such file"),
    ("not a video", lambda t, f: ["run", str(_not_a_video(t))], 1, "notes.mp4: not a video"),
    ("output exists", lambda t, f: ["run", *_existing_output(t)], 1, "output exists (use --overwrite"),
    ("bad pick", lambda t, f: ["run", "x.mp4", "--mode", "select", "--pick", "12:abc"], 2, "FRAME:X:Y"),
    ("mode without ref", lambda t, f: ["run", "x.mp4", "--mode", "known"], 2, "--ref"),
    ("crf out of range", lambda t, f: ["run", "x.mp4", "--crf", "70"], 2, "--crf"),
    ("no face in reference", lambda t, f: ["run", str(f / "obama.jpg"), "-o", str(t / "o.jpg"), "--mode", "unknown",
                                           "--ref", str(_no_face_photo(t))], 1, "wall.jpg: no face found"),
    ("two faces in reference", lambda t, f: ["run", str(f / "obama.jpg"), "-o", str(t / "o.jpg"), "--mode", "known",
                                             "--ref", str(f / "two_people.jpg")], 1, "two_people.jpg: 2 faces"),
    ("plan file missing", lambda t, f: ["render", str(f / "obama.jpg"), "--plan", str(t / "p.json"),
                                        "-o", str(t / "o.jpg")], 1, "p.json: no such plan file"),
]


@pytest.mark.parametrize(("argv", "status", "text"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_user_errors_end_with_one_clear_line(tmp_path, faces_dir, test_model_dir, capsys, argv, status, text):
    args = argv(tmp_path, faces_dir)
    if args[0] == "run":
        args += _fast(test_model_dir)
    assert main(args) == status
    line = _error_line(capsys.readouterr().err)
    assert text in line


def test_s3_credentials_missing(tmp_path, monkeypatch, moto_endpoint, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    code = main(["transform", "--endpoint", "http://127.0.0.1:9", "--input", "s3://b/frames/",
                 "--output", "s3://b/results/", "--no-progress"])
    assert code == 1
    assert "S3 credentials missing" in _error_line(capsys.readouterr().err)


def test_endpoint_not_reachable(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "img0000001.png").write_bytes(b"png")
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["transform", "--endpoint", url, "--input", str(frames), "--output", str(tmp_path / "out"),
                 "--no-progress"])
    assert code == 1
    line = _error_line(capsys.readouterr().err)
    assert url in line and "not reachable" in line
    assert not (tmp_path / "out").exists()


def test_verbose_shows_the_detail(tmp_path, capsys):
    assert main(["run", str(_not_a_video(tmp_path)), "-v", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("face-blur: error:")


def test_console_script_error_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "faceblur.cli", "run", str(tmp_path / "absent.mov")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"face-blur: error: {tmp_path / 'absent.mov'}: no such file or folder"
    assert proc.stdout == ""


def test_help_lists_every_option_with_its_default(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for expected in ("--mode {all,unknown,known,select}", "(default: all)", "--mask-scale", "(default: 1.3)",
                     "--crf", "(default: 18)", "--workers", "(default: 2)", "--detector", "(default: centerface)",
                     "--embedder", "(default: auto)", "--style", "(default: blur)"):
        assert expected in text
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("face-blur ")
