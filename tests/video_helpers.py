"""Short test videos made with PyAV: chosen frame rate or timestamps, rotation tag, audio streams in
any position, bit depth and colour tags, container metadata, and pictures drawn by the caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass
class AudioSpec:
    codec: str = "aac"
    rate: int = 48000
    layout: str = "mono"
    freq: float = 440.0  # a tone, so a stream can be told from another
    language: str = ""


@dataclass
class ClipSpec:
    width: int = 320
    height: int = 180
    frames: int = 24
    rate: Fraction = Fraction(30000, 1001)
    time_base: Fraction | None = None  # default 1/rate.numerator-ish (1/30000 for 29.97)
    pts: Sequence[int] | None = None  # explicit timestamps (variable frame rate), in time_base
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    rotation: int = 0  # display matrix, degrees counter-clockwise (as VideoFrame.rotation reads it)
    audio: Sequence[AudioSpec] = ()
    audio_first: bool = False  # audio streams before the video stream
    metadata: dict[str, str] = field(default_factory=dict)
    colour: dict[str, int] = field(default_factory=dict)  # colorspace, color_range, color_primaries, color_trc
    options: dict[str, str] = field(default_factory=lambda: {"preset": "ultrafast", "crf": "12"})


def gradient(spec: ClipSpec, index: int) -> np.ndarray:
    """A default picture: a moving colour gradient (never flat, so encoders keep detail)."""
    y, x = np.mgrid[0:spec.height, 0:spec.width]
    img = np.stack([(x * 255 // max(1, spec.width - 1)), (y * 255 // max(1, spec.height - 1)),
                    np.full_like(x, (index * 9) % 256)], axis=2)
    return img.astype(np.uint8)


def make_clip(path: Path, spec: ClipSpec, paint: Callable[[int], np.ndarray] | None = None) -> Path:
    """Encode ``spec.frames`` pictures ``paint(i)`` (HxWx3 uint8, default :func:`gradient`)."""
    import av

    paint = paint or (lambda i: gradient(spec, i))
    tb = spec.time_base or Fraction(1, spec.rate.numerator if spec.rate.denominator != 1 else spec.rate.numerator)
    if spec.rate.denominator == 1:
        tb = spec.time_base or Fraction(1, 1000 * int(spec.rate))
    pts = list(spec.pts) if spec.pts is not None else [int(round(i / spec.rate / tb)) for i in range(spec.frames)]
    with av.open(str(path), "w") as out:
        out.metadata.update(spec.metadata)
        audio_streams = []

        def add_audio() -> None:
            for a in spec.audio:
                s = out.add_stream(a.codec, rate=a.rate)
                s.layout = a.layout
                if a.language:
                    s.metadata["language"] = a.language
                audio_streams.append((s, a))

        if spec.audio_first:
            add_audio()
        v = out.add_stream(spec.codec, rate=spec.rate, options=dict(spec.options))
        v.width, v.height, v.pix_fmt = spec.width, spec.height, spec.pix_fmt
        v.time_base = tb
        v.codec_context.time_base = tb
        for key, value in spec.colour.items():
            setattr(v.codec_context, key, value)
        if spec.rotation:
            v.set_display_rotation(spec.rotation)
        if not spec.audio_first:
            add_audio()
        for i, p in enumerate(pts):
            rgb = paint(i)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if spec.pix_fmt != "rgb24":
                matrix = spec.colour.get("colorspace")
                kw = {"dst_colorspace": 9 if matrix == 9 else 1} if matrix else {}
                frame = frame.reformat(format=spec.pix_fmt, src_color_range=2,
                                       dst_color_range=spec.colour.get("color_range", 1), **kw)
            for key, value in spec.colour.items():
                setattr(frame, key, value)
            frame.pts = p
            frame.time_base = tb
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        seconds = float((pts[-1] - pts[0]) * tb) + float(1 / spec.rate) if pts else 0.0
        for s, a in audio_streams:
            n = int(seconds * a.rate)
            t = np.arange(n) / a.rate
            channels = 2 if a.layout == "stereo" else 1
            tone = (0.3 * np.sin(2 * np.pi * a.freq * t)).astype(np.float32)
            samples = np.tile(tone, (channels, 1))
            frame_size = s.codec_context.frame_size or 1024
            fmt = s.codec_context.format.name if s.codec_context.format else "fltp"
            for start in range(0, n, frame_size):
                chunk = samples[:, start:start + frame_size]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=a.layout)
                af.sample_rate = a.rate
                af.pts = start
                af.time_base = Fraction(1, a.rate)
                if fmt != "fltp":
                    resampler = av.AudioResampler(format=fmt, layout=a.layout, rate=a.rate)
                    frames = resampler.resample(af)
                else:
                    frames = [af]
                for f in frames:
                    for packet in s.encode(f):
                        out.mux(packet)
            for packet in s.encode():
                out.mux(packet)
    return path


@dataclass
class Probe:
    frames: int
    pts: list[int]
    time_base: Fraction
    duration: float
    width: int
    height: int
    rotation: int
    pix_fmt: str
    audio: list[dict]
    metadata: dict[str, str]
    colour: dict[str, int]
    average_rate: Fraction | None


def probe_clip(path: Path, decode: bool = True) -> Probe:
    """What a user (or ffprobe) would see: decoded frame count and timestamps, size, rotation, audio."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts, rotation, colour, pix_fmt, w, h = [], 0, {}, v.codec_context.pix_fmt, v.width, v.height
        for i, f in enumerate(c.decode(v)):
            pts.append(f.pts)
            if i == 0:
                rotation = int(f.rotation or 0)
                colour = {k: int(getattr(f, k)) for k in ("colorspace", "color_range", "color_primaries", "color_trc")}
                pix_fmt = f.format.name
        audio = []
        for s in c.streams.audio:
            audio.append({"index": s.index, "codec": s.codec_context.name, "rate": s.codec_context.sample_rate,
                          "channels": s.codec_context.channels, "language": s.metadata.get("language", ""),
                          "duration": float(s.duration * s.time_base) if s.duration else None})
        return Probe(frames=len(pts), pts=pts, time_base=v.time_base, duration=c.duration / 1e6 if c.duration else 0,
                     width=w, height=h, rotation=rotation, pix_fmt=pix_fmt, audio=audio, metadata=dict(c.metadata),
                     colour=colour, average_rate=v.average_rate)


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame as a player shows it, RGB: turned by the display matrix's angle (counter-clockwise,
    as ``VideoFrame.rotation`` reads it), independently of the code under test."""
    import av

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            turns = int(round((f.rotation or 0) / 90)) % 4
            out.append(np.ascontiguousarray(np.rot90(f.to_ndarray(format="rgb24"), turns)))
    return out


def tone_frequency(path: Path, stream_number: int) -> float:
    """The dominant frequency of an audio stream (the number-th audio stream), to tell streams apart."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[stream_number]
        chunks = [f.to_ndarray().astype(np.float64).reshape(f.to_ndarray().shape[0], -1)[0] for f in c.decode(s)]
        rate = s.codec_context.sample_rate
    signal = np.concatenate(chunks)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * rate / len(signal))


# ---------------------------------------------------------------------------------------------- faces


def face_patch(faces_dir: Path, person: str, face_height: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A head-and-shoulders crop of a real photo (``tests/scenes.PEOPLE``) scaled so the face is
    ``face_height`` px high, and the face box inside the crop."""
    from PIL import Image, ImageOps
    from scenes import PEOPLE

    name, (x1, y1, x2, y2) = PEOPLE[person]
    with Image.open(Path(faces_dir) / name) as im:
        photo = ImageOps.exif_transpose(im).convert("RGB")
    w, h = x2 - x1, y2 - y1
    crop = (int(max(0, x1 - 0.4 * w)), int(max(0, y1 - 0.3 * h)), int(min(photo.width, x2 + 0.4 * w)),
            int(min(photo.height, y2 + 0.4 * h)))
    scale = face_height / h
    size = (round((crop[2] - crop[0]) * scale), round((crop[3] - crop[1]) * scale))
    patch = np.asarray(photo.crop(crop).resize(size, Image.Resampling.LANCZOS))
    box = ((x1 - crop[0]) * scale, (y1 - crop[1]) * scale, (x2 - crop[0]) * scale, (y2 - crop[1]) * scale)
    return patch, box


def paste(frame: np.ndarray, patch: np.ndarray, box: tuple[float, float, float, float], x: int, y: int
          ) -> tuple[float, float, float, float]:
    """Paste ``patch`` with its top-left at (x, y) (may stick out of the frame); returns the face box
    in frame pixels, clipped to the frame."""
    h, w = frame.shape[:2]
    ph, pw = patch.shape[:2]
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
    frame[fy0:fy1, fx0:fx1] = patch[fy0 - y:fy1 - y, fx0 - x:fx1 - x]
    bx1, by1, bx2, by2 = box[0] + x, box[1] + y, box[2] + x, box[3] + y
    return (max(0.0, bx1), max(0.0, by1), min(float(w), bx2), min(float(h), by2))


def detail(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean absolute difference between neighbouring pixels inside ``box``: high for a sharp face,
    low once it is blurred."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crop = image[y1:y2, x1:x2].astype(np.float32).mean(axis=2)
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return 0.0
    return float(np.abs(np.diff(crop, axis=0)).mean() + np.abs(np.diff(crop, axis=1)).mean())


def mean_abs_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
    return float(d[mask].mean() if mask is not None else d.mean())


def outside(shape: tuple[int, ...], boxes: Sequence[tuple[float, float, float, float]], grow: float = 2.0
            ) -> np.ndarray:
    """Bool mask of the pixels farther than ``grow`` x the box size from every box (surely untouched)."""
    mask = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        mask[max(0, int(cy - h)):max(0, int(cy + h)) + 1, max(0, int(cx - w)):max(0, int(cx + w)) + 1] = False
    return mask
