"""Video in, video out (issue #10): timing, rotation, audio, bit depth, metadata, split/assemble.

Every clip is generated here with PyAV (a second or less, 320x180); the checks are what a user would
look at: frame count and timestamps, duration, orientation, audio streams, where the blur landed.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
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

from faceblur.video import (
    EncodeConfig,
    VideoError,
    VideoInfo,
    assemble_video,
    extract_frames,
    probe,
    rewrite_video,
)


def _untouched(_index: int, _rgb: np.ndarray) -> bool:
    return False


def _video_duration(path: Path) -> float:
    """Last pts + one frame, in seconds (what the video stream lasts)."""
    p = probe_clip(path)
    step = p.pts[-1] - p.pts[-2]
    return float((p.pts[-1] - p.pts[0] + step) * p.time_base)


@pytest.fixture(scope="module")
def blur_pipeline(test_model_dir):
    """``faceblur.local.run`` settings for the real-detection checks: CenterFace, no embedder."""
    from faceblur.local import LocalConfig
    from handler.detector import DetectorConfig
    from handler.pipeline import PipelineConfig

    return LocalConfig(pipeline=PipelineConfig(model_dir=test_model_dir, detector=DetectorConfig(backend="centerface"),
                                               embedder="none"), progress=False, workers=2)


# ---------------------------------------------------------------------------------------------- timing


def test_29_97_fps_keeps_every_timestamp_frame_count_and_duration(tmp_path):
    src = make_clip(tmp_path / "ntsc.mp4", ClipSpec(frames=30, rate=Fraction(30000, 1001)))
    out = tmp_path / "out.mp4"
    rewrite_video(src, out, _untouched)
    a, b = probe_clip(src), probe_clip(out)
    assert b.frames == a.frames == 30
    assert [float(p * b.time_base) for p in b.pts] == pytest.approx([float(p * a.time_base) for p in a.pts], abs=1e-4)
    assert b.average_rate == Fraction(30000, 1001)
    assert abs(_video_duration(out) - _video_duration(src)) < 1001 / 30000
    assert (b.width, b.height) == (a.width, a.height)
    # nothing was blurred: the pictures are the input's (re-encoded at CRF 18)
    for x, y in zip(read_frames(src), read_frames(out), strict=True):
        assert mean_abs_diff(x, y) < 2.0


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_keeps_every_timestamp(tmp_path, suffix):
    pts_ms = [0, 33, 66, 150, 170, 300, 310, 320, 500, 533, 600]
    src = make_clip(tmp_path / "vfr.mkv", ClipSpec(frames=len(pts_ms), rate=Fraction(30), time_base=Fraction(1, 1000),
                                                   pts=pts_ms))
    out = tmp_path / f"out{suffix}"
    rewrite_video(src, out, _untouched)
    b = probe_clip(out)
    assert b.frames == len(pts_ms)
    assert [round(float(p * b.time_base) * 1000) for p in b.pts] == pts_ms


# ---------------------------------------------------------------------------------------------- rotation


def test_portrait_phone_clip_is_analysed_upright_and_written_upright(tmp_path, faces_dir, blur_pipeline):
    """A phone held upright records landscape pixels plus a display matrix. The face is only upright
    (detectable) once the matrix is applied; the output must hold upright pixels, no rotation tag,
    and the blur where the face is in the upright picture."""
    from faceblur.local import run

    patch, box = face_patch(faces_dir, "obama", 70)
    width, height = 180, 320  # what the viewer sees
    truths = []
    uprights = []
    for i in range(8):
        frame = gradient(ClipSpec(width=width, height=height), i)
        truths.append(paste(frame, patch, box, 30 + i * 2, 90))
        uprights.append(frame)
    # stored rotated: the display matrix says "rotate 90 degrees clockwise to show", as phones write it
    spec = ClipSpec(width=height, height=width, frames=8, rotation=-90)
    src = make_clip(tmp_path / "portrait.mp4", spec, lambda i: np.ascontiguousarray(np.rot90(uprights[i], 1)))
    shown = read_frames(src)
    assert shown[0].shape[:2] == (height, width) and np.abs(shown[0].astype(int) - uprights[0]).mean() < 3

    out = tmp_path / "portrait_anonymized.mp4"
    summary = run(src, out, blur_pipeline)
    p = probe_clip(out)
    assert (p.width, p.height) == (width, height)
    assert p.rotation == 0
    analysed = summary.analysis.analysed if summary.analysis is not None else summary.frames  # adaptive analysis
    assert summary.faces >= analysed - 1 >= 3  # seen upright in (nearly) every analysed frame
    for frame, upright, truth in zip(read_frames(out), uprights, truths, strict=True):
        assert detail(frame, truth) < 0.5 * detail(upright, truth), "the face is not blurred"
        assert mean_abs_diff(frame, upright, outside(frame.shape, [truth])) < 3


# ---------------------------------------------------------------------------------------------- audio


def test_audio_as_first_stream_and_two_audio_streams_are_copied(tmp_path):
    spec = ClipSpec(frames=30, audio=[AudioSpec("aac", 48000, "mono", 440, "eng"),
                                      AudioSpec("aac", 44100, "stereo", 1000, "fra")], audio_first=True)
    src = make_clip(tmp_path / "two_tracks.mp4", spec)
    assert [a["index"] for a in probe_clip(src).audio] == [0, 1]  # the video is stream 2
    out = tmp_path / "out.mp4"
    rewrite_video(src, out, _untouched)
    a, b = probe_clip(src), probe_clip(out)
    assert b.frames == a.frames
    assert [(x["codec"], x["rate"], x["channels"], x["language"]) for x in b.audio] == [
        ("aac", 48000, 1, "eng"), ("aac", 44100, 2, "fra")]
    assert [x["duration"] for x in b.audio] == pytest.approx([x["duration"] for x in a.audio], abs=0.03)
    assert tone_frequency(out, 0) == pytest.approx(440, abs=15)
    assert tone_frequency(out, 1) == pytest.approx(1000, abs=15)


def test_audio_the_output_container_cannot_hold_is_reencoded_to_aac(tmp_path, caplog):
    src = make_clip(tmp_path / "pcm.mkv", ClipSpec(frames=30, audio=[AudioSpec("pcm_u8", 8000, "mono", 300)]))
    out = tmp_path / "out.mp4"
    with caplog.at_level("INFO", logger="faceblur.video"):
        rewrite_video(src, out, _untouched)
    b = probe_clip(out)
    assert [x["codec"] for x in b.audio] == ["aac"]
    assert tone_frequency(out, 0) == pytest.approx(300, abs=15)
    assert "re-encoded as aac" in caplog.text and "pcm_u8" in caplog.text


# ---------------------------------------------------------------------------------------------- faces at the border


def test_faces_touching_the_border_are_blurred_up_to_the_edge(tmp_path, faces_dir, blur_pipeline):
    from faceblur.local import run

    patch, box = face_patch(faces_dir, "biden", 80)
    frames, truths = [], []
    for i in range(8):
        frame = gradient(ClipSpec(width=320, height=180), i)
        fw = box[2] - box[0]
        left = paste(frame, patch, box, int(-box[0] - fw * 0.3) + i, 40)  # 30% of the face outside on the left
        top = paste(frame, patch, box, 170 + i, int(-box[1] - 10))  # forehead cut by the top edge
        frames.append(frame)
        truths.append((left, top))
    src = make_clip(tmp_path / "border.mp4", ClipSpec(frames=8), lambda i: frames[i])
    out = tmp_path / "border_anonymized.mp4"
    run(src, out, blur_pipeline)
    for frame, original, (left, top) in zip(read_frames(out), frames, truths, strict=True):
        for truth in (left, top):
            assert detail(frame, truth) < 0.5 * detail(original, truth)
        # the pixels at the very edge are hidden too (the mask reaches the border)
        x1, y1, x2, y2 = (int(v) for v in left)
        edge = (0, y1 + 5, 4, y2 - 5)
        assert detail(frame, edge) < 0.6 * detail(original, edge)
        assert mean_abs_diff(frame, original, outside(frame.shape, [left, top])) < 3


# ---------------------------------------------------------------------------------------------- bit depth, colour


def _ten_bit_encoder() -> str | None:
    import av

    for name in ("libx265", "libx264"):
        try:
            if "yuv420p10le" in [f.name for f in av.codec.Codec(name, "w").video_formats or []]:
                return name
        except Exception:
            continue
    return None


def test_ten_bit_hdr_keeps_bit_depth_and_colour_tags(tmp_path):
    import av

    encoder = _ten_bit_encoder()
    if encoder is None:
        pytest.skip("this FFmpeg build has no 10-bit H.264/HEVC encoder")
    tags = {"colorspace": 9, "color_range": 1, "color_primaries": 9, "color_trc": 18}  # BT.2020, HLG
    options = {"preset": "ultrafast", "crf": "8"}
    if encoder == "libx265":
        options["x265-params"] = "log-level=error"
    src = make_clip(tmp_path / "hlg.mp4", ClipSpec(frames=6, codec=encoder, pix_fmt="yuv420p10le", colour=tags,
                                                   options=options))
    face = (100, 40, 160, 120)

    def blacken(_i: int, rgb: np.ndarray) -> bool:
        rgb[face[1]:face[3], face[0]:face[2]] = 0
        return True

    out = tmp_path / "out.mp4"
    rewrite_video(src, out, blacken)
    p = probe_clip(out)
    assert p.pix_fmt == "yuv420p10le"
    assert p.colour == tags
    with av.open(str(src)) as a, av.open(str(out)) as b:
        ya = next(a.decode(video=0)).to_ndarray()[:180].astype(np.int32)  # the 10-bit luma plane
        yb = next(b.decode(video=0)).to_ndarray()[:180].astype(np.int32)
    keep = np.ones_like(ya, bool)
    keep[face[1] - 4:face[3] + 4, face[0] - 4:face[2] + 4] = False
    assert np.abs(ya - yb)[keep].mean() < 4  # 10-bit units: the source's values, not an 8-bit copy
    assert (yb[keep] % 4 != 0).mean() > 0.5  # real 10-bit precision outside the face
    assert yb[face[1] + 4:face[3] - 4, face[0] + 4:face[2] - 4].mean() == pytest.approx(64, abs=4)  # black


def test_bt709_colours_are_not_shifted(tmp_path):
    """Untagged-matrix mistakes show as a colour cast: a BT.709 clip must come back with the same
    colours and the same tags."""
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}

    def colours(i: int) -> np.ndarray:
        img = np.zeros((180, 320, 3), np.uint8)
        for k, c in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 200, 40)]):
            img[:, k * 80:(k + 1) * 80] = c
        return img

    src = make_clip(tmp_path / "bt709.mp4", ClipSpec(frames=4, colour=tags), colours)
    out = tmp_path / "out.mp4"
    rewrite_video(src, out, lambda i, rgb: (rgb.__setitem__((slice(0, 20), slice(0, 20)), 0), True)[1])
    assert probe_clip(out).colour == tags
    a, b = read_frames(src)[2], read_frames(out)[2]
    for k in range(4):
        region = (slice(40, 140), slice(k * 80 + 10, k * 80 + 70))
        assert np.abs(a[region].mean(axis=(0, 1)) - b[region].mean(axis=(0, 1))).max() < 2


# ---------------------------------------------------------------------------------------------- metadata


def test_creation_time_is_kept_and_location_stripped_unless_asked(tmp_path):
    meta = {"creation_time": "2024-05-01T10:00:00.000000Z", "title": "holiday",
            "location": "+48.8577+002.2950/"}
    src = make_clip(tmp_path / "gps.mp4", ClipSpec(frames=4, metadata=meta))
    assert probe_clip(src).metadata["location"] == meta["location"]
    out = tmp_path / "out.mp4"
    rewrite_video(src, out, _untouched)
    got = probe_clip(out).metadata
    assert got["creation_time"] == meta["creation_time"] and got["title"] == "holiday"
    assert not [k for k in got if "location" in k.lower()]
    kept = tmp_path / "kept.mp4"
    rewrite_video(src, kept, _untouched, EncodeConfig(keep_location=True))
    assert probe_clip(kept).metadata["location"] == meta["location"]


# ---------------------------------------------------------------------------------------------- split / assemble


def test_extract_and_assemble_round_trip_keeps_timing_orientation_and_audio(tmp_path):
    pts_ms = [0, 40, 80, 200, 240, 280, 400, 433]
    spec = ClipSpec(frames=len(pts_ms), rate=Fraction(25), time_base=Fraction(1, 1000), pts=pts_ms, rotation=90,
                    audio=[AudioSpec("aac", 48000, "mono", 440)])
    src = make_clip(tmp_path / "in.mkv", spec)
    info = extract_frames(src, tmp_path / "frames")
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"img{n:07d}.png" for n in range(1, len(pts_ms) + 1)]  # frames only, numbered from 1
    from PIL import Image

    with Image.open(tmp_path / "frames" / names[0]) as im:
        assert im.size == (180, 320)  # upright: the 90-degree display matrix applied
    sidecar = tmp_path / "frames.sidecar"
    assert VideoInfo.from_dict(json.loads((sidecar / "video.json").read_text())) == info
    assert info.frame_count == len(pts_ms) and (info.width, info.height) == (180, 320)

    out = tmp_path / "assembled.mp4"
    assemble_video(tmp_path / "frames", sidecar, out)
    p = probe_clip(out)
    assert p.frames == len(pts_ms) and p.rotation == 0 and (p.width, p.height) == (180, 320)
    assert [round(float(x * p.time_base) * 1000) for x in p.pts] == pts_ms
    assert len(p.audio) == 1 and tone_frequency(out, 0) == pytest.approx(440, abs=15)
    for a, b in zip(read_frames(src), read_frames(out), strict=True):
        assert mean_abs_diff(a, b) < 3


def test_assemble_names_a_missing_frame(tmp_path):
    src = make_clip(tmp_path / "in.mp4", ClipSpec(frames=4))
    extract_frames(src, tmp_path / "frames")
    (tmp_path / "frames" / "img0000003.png").unlink()
    with pytest.raises(VideoError, match="img0000003.png"):
        assemble_video(tmp_path / "frames", tmp_path / "frames.sidecar", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


# ---------------------------------------------------------------------------------------------- errors


def test_not_a_video_is_named(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(VideoError, match="notes.mp4"):
        probe(fake)
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "absent.mp4")


def test_existing_output_is_not_overwritten_unless_asked(tmp_path):
    src = make_clip(tmp_path / "in.mp4", ClipSpec(frames=3))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        rewrite_video(src, out, _untouched)
    assert out.read_bytes() == b"keep me"
    rewrite_video(src, out, _untouched, overwrite=True)
    assert probe_clip(out).frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]  # no temporary left behind


def test_a_failing_frame_stops_the_run_cleanly(tmp_path):
    """An error while processing frame 5 ends the run with that error (no hang with the decoder
    ahead and the queue full), and leaves neither the output nor a temporary file."""
    src = make_clip(tmp_path / "in.mp4", ClipSpec(frames=40, audio=[AudioSpec()]))

    def fail(index: int, _rgb: np.ndarray) -> bool:
        if index == 5:
            raise RuntimeError("frame 5 is cursed")
        return False

    with pytest.raises(RuntimeError, match="frame 5 is cursed"):
        rewrite_video(src, tmp_path / "out.mp4", fail, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# ---------------------------------------------------------------------------------------------- flicker

def test_a_face_the_detector_misses_in_single_frames_is_blurred_in_every_frame(tmp_path, faces_dir, blur_pipeline,
                                                                                monkeypatch):
    """Anti-flicker (issue #10): the real detector, made to miss the face in single frames (and in the
    first and last frame), still leaves the face blurred in every frame of the output video."""
    import handler.pipeline
    from faceblur.local import run

    patch, box = face_patch(faces_dir, "obama", 70)
    frames, truths = [], []
    for i in range(16):
        frame = gradient(ClipSpec(width=320, height=180), i)
        truths.append(paste(frame, patch, box, 60 + 4 * i, 30))  # walking right
        frames.append(frame)
    missed = {1, 5, 6, 10, 16}  # frame numbers from 1: the first frame, a single miss, two in a row, the last
    real_load = handler.pipeline.load_pipeline

    class Missing:
        def __init__(self, pipeline):
            self.detector, self.embedder, self._real = pipeline.detector, pipeline.embedder, pipeline

        def analyse(self, image, frame_index=-1):
            result = self._real.analyse(image, frame_index)
            if frame_index in missed:
                result.faces = result.faces[np.zeros(len(result.faces), bool)]
            return result

    monkeypatch.setattr(handler.pipeline, "load_pipeline", lambda config: Missing(real_load(config)))
    src = make_clip(tmp_path / "walk.mp4", ClipSpec(frames=16), lambda i: frames[i])
    out = tmp_path / "walk_anonymized.mp4"
    run(src, out, blur_pipeline)
    blurred = read_frames(out)
    assert len(blurred) == 16
    for i, (frame, original, truth) in enumerate(zip(blurred, frames, truths, strict=True), start=1):
        assert detail(frame, truth) < 0.5 * detail(original, truth), f"frame {i} shows the face"
