"""Video in, video out (issue #10): decode upright RGB frames, re-encode with what the viewer expects kept.

PyAV (FFmpeg inside the wheel). Images are HxWx3 uint8 RGB, upright. Behaviour (README "Video"):

- Timing: every output frame keeps its input timestamp (pts in the input stream's time base), so
  29.97 fps (30000/1001) and variable frame rate come out as they went in; nothing is dropped or
  duplicated, and the last frame keeps its duration.
- Rotation: the container's display matrix (phone clips) is applied before anything sees the
  pixels, exactly as FFmpeg's autorotate does (90/180/270 degrees and mirrors); the output holds
  upright pixels and no rotation tag.
- Pixels outside the blurred faces are carried over in the source's own YUV values (no RGB round
  trip), so colours cannot drift. Only the changed pixels go through RGB -> YUV, with the source's
  matrix and range. Output chroma is 4:2:0.
- Bit depth: sources deeper than 8 bits (10-bit HDR from phones) are written 10-bit (yuv420p10le,
  libx265 by default, else libx264 High 10); 8-bit sources as H.264 yuv420p. Colour tags (primaries,
  transfer, matrix, range) are copied to the output stream. Default quality CRF 18, preset medium.
- Audio: every audio stream, whatever its index, is copied packet for packet; a codec the output
  container cannot hold (e.g. Vorbis into MP4, AAC into WebM) is re-encoded (AAC, or Opus for WebM)
  and the log names the stream. Subtitle/data streams are dropped (they can carry location).
- Metadata: container and stream metadata (creation_time, title, language, ...) are kept; location
  keys (``location``, ``com.apple.quicktime.location.ISO6709``, anything named like GPS/location) are
  removed unless ``keep_location``.

The AWS path splits a video with :func:`extract_frames` (upright PNG frames numbered from 1 plus a
sidecar folder: ``video.json`` timestamps/colour/metadata and ``audio.mkv`` with the audio streams
copied) and puts it back together with :func:`assemble_video`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from postprocess.tempfiles import atomic_output  # one home (issue 18): temporaries found again after a kill

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
CODECS = ("auto", "libx264", "libx265", "libvpx-vp9")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
SIDECAR_INFO = "video.json"
SIDECAR_AUDIO = "audio.mkv"
_DROP_CONTAINER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder"}
_DROP_STREAM_KEYS = {"encoder", "rotate", "duration", "_statistics_tags", "number_of_frames", "number_of_bytes"}
# swscale matrix ids (SWS_CS_*) for the AVColorSpace values it supports; others: its default (BT.601)
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_RANGE_LIMITED, _RANGE_FULL = 1, 2
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message names the file and what was wrong."""


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EncodeConfig:
    """How the output video is encoded (README "Video options").

    codec "auto": H.264 (libx264) yuv420p for 8-bit sources, HEVC (libx265) yuv420p10le for deeper
    ones, VP9 for .webm. crf: constant rate factor (lower = better; 18 is visually lossless for
    H.264). keep_location: keep GPS location metadata (removed by default).
    """

    codec: str = "auto"
    crf: int = 18
    preset: str = "medium"
    keep_location: bool = False

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")


@dataclass
class VideoInfo:
    """What a video is: upright size, timing, colour, audio and metadata. JSON-serialisable
    (:meth:`to_dict`/:meth:`from_dict`, :meth:`save`/:meth:`load`).

    ``orientation`` holds the operations that make a frame upright (``ccw``, ``cw``, ``rot180``,
    ``transpose``, ``antitranspose``, ``hflip``, ``vflip``); ``rotation`` the display-matrix angle
    (degrees counter-clockwise). ``pts_runs`` ([first pts, step, count] runs) and ``last_duration``
    are filled by :func:`extract_frames`; ``frame_count`` is exact there, else the container's count
    (0 when it does not say).
    """

    source: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    time_base: str
    average_rate: str
    duration: float
    frame_count: int = 0
    codec: str = ""
    pix_fmt: str = "yuv420p"
    bit_depth: int = 8
    colorspace: int = 2
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    rotation: int = 0
    orientation: list[str] = field(default_factory=list)
    audio: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    video_metadata: dict[str, str] = field(default_factory=dict)
    pts_runs: list[list[int]] = field(default_factory=list)
    last_duration: int = 0
    audio_file: str | None = None

    @property
    def fps(self) -> float:
        return float(Fraction(self.average_rate)) if self.average_rate not in ("", "0", "0/1") else 0.0

    @property
    def estimated_frames(self) -> int:
        """``frame_count`` when known, else duration x average rate."""
        return self.frame_count or int(round(self.duration * self.fps))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "face-blur/video/v1", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoInfo:
        data = dict(data)
        schema = data.pop("schema", "face-blur/video/v1")
        if schema != "face-blur/video/v1":
            raise VideoError(f"unsupported video sidecar schema {schema!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> VideoInfo:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise VideoError(f"{path}: not a readable video sidecar ({exc})") from None

    def timestamps(self) -> Iterator[int]:
        """Every frame's pts, in order (from ``pts_runs``)."""
        for start, step, count in self.pts_runs:
            for i in range(count):
                yield start + i * step


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` counts from 1 in presentation order; ``image`` upright RGB."""

    index: int
    pts: int | None
    time: float | None
    duration: int | None
    image: np.ndarray


# ---------------------------------------------------------------------------------------------- helpers


def _open_input(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a video file FFmpeg can read ({exc.strerror or exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: not a video (it has no video stream)")
    return container


def _display_matrix(frame) -> np.ndarray | None:
    for item in frame.side_data:
        if str(item.type).endswith("DISPLAYMATRIX"):
            return np.frombuffer(bytes(item), "<i4")
    return None


def orientation_ops(frame) -> tuple[int, list[str]]:
    """(rotation, operations) that make ``frame`` upright, following FFmpeg's autorotate."""
    matrix = _display_matrix(frame)
    if matrix is None:
        return 0, []
    rotation = int(round(frame.rotation or 0))
    theta = (-rotation) % 360  # clockwise degrees, as FFmpeg's get_rotation()
    if abs(theta - 90) < 1:
        ops = ["transpose" if matrix[3] > 0 else "cw"]
    elif abs(theta - 180) < 1:
        ops = (["hflip"] if matrix[0] < 0 else []) + (["vflip"] if matrix[4] < 0 else [])
    elif abs(theta - 270) < 1:
        ops = ["antitranspose" if matrix[3] < 0 else "ccw"]
    elif abs(theta) < 1 or abs(theta - 360) < 1:
        ops = ["vflip"] if matrix[4] < 0 else []
    else:
        nearest = int(round(theta / 90.0)) % 4 * 90
        log.warning("display matrix rotates by %d degrees, not a multiple of 90; using %d", theta, nearest)
        ops = {0: [], 90: ["cw"], 180: ["hflip", "vflip"], 270: ["ccw"]}[nearest]
    return rotation, ops


def apply_ops(array: np.ndarray, ops: list[str]) -> np.ndarray:
    """Apply orientation operations to an image or plane (rows x cols [x channels]); a view."""
    for op in ops:
        if op == "cw":
            array = np.rot90(array, -1)
        elif op == "ccw":
            array = np.rot90(array, 1)
        elif op == "transpose":
            array = array.swapaxes(0, 1)
        elif op == "antitranspose":
            array = np.rot90(array, 2).swapaxes(0, 1)
        elif op == "hflip":
            array = array[:, ::-1]
        elif op == "vflip":
            array = array[::-1]
        elif op == "rot180":
            array = array[::-1, ::-1]
        else:
            raise ValueError(f"unknown orientation operation {op!r}")
    return array


def _swaps(ops: list[str]) -> bool:
    return sum(op in ("cw", "ccw", "transpose", "antitranspose") for op in ops) % 2 == 1


@dataclass(frozen=True)
class _Colour:
    """The source's colour description and the swscale settings that reproduce it."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int

    @property
    def matrix(self) -> int:
        return _SWS_MATRIX.get(self.colorspace, 5)

    @property
    def yuv_range(self) -> int:
        return self.color_range if self.color_range in (_RANGE_LIMITED, _RANGE_FULL) else _RANGE_LIMITED

    def tag(self, target) -> None:
        """Write the tags on a frame or codec context (unspecified stays unspecified)."""
        target.colorspace = self.colorspace
        target.color_range = self.color_range
        target.color_primaries = self.primaries
        target.color_trc = self.trc


def _colour_of(frame) -> _Colour:
    rng = int(frame.color_range)
    if rng == 0 and frame.format.name.startswith("yuvj"):
        rng = _RANGE_FULL
    cs = int(frame.colorspace)
    if cs == 0:  # RGB source (gbrp, png-in-mov): write it as BT.709 limited
        return _Colour(1, _RANGE_LIMITED, 1, 1)
    return _Colour(cs, rng, int(frame.color_primaries), int(frame.color_trc))


def _to_rgb(frame, colour: _Colour) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", src_colorspace=colour.matrix, src_color_range=colour.yuv_range,
                            dst_color_range=_RANGE_FULL)


def _bit_depth(pix_fmt: str) -> int:
    import av

    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8


def _is_location_key(key: str) -> bool:
    low = key.lower()
    return "location" in low or "gps" in low or low in ("xyz", "\xa9xyz")


def filter_metadata(metadata: dict[str, str], keep_location: bool, drop: set[str]) -> dict[str, str]:
    """Metadata to write: without muxer-owned keys and, unless ``keep_location``, without location."""
    out = {}
    for key, value in metadata.items():
        if key in drop or key.endswith("-eng") and key[:-4] in metadata:
            continue
        if not keep_location and _is_location_key(key):
            continue
        out[key] = value
    return out


def _audio_description(stream) -> dict[str, Any]:
    ctx = stream.codec_context
    return {"index": stream.index, "codec": stream.codec.name if stream.codec else ctx.name,
            "sample_rate": int(ctx.sample_rate or 0), "channels": int(ctx.channels or 0),
            "language": stream.metadata.get("language", "")}


def probe(path: str | Path) -> VideoInfo:
    """Describe the first video stream of ``path`` (decodes one frame for rotation and colour)."""
    import av

    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        try:
            first = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: the video stream cannot be decoded ({exc.strerror or exc})") from None
        if first is None:
            raise VideoError(f"{path}: the video stream has no frames")
        rotation, ops = orientation_ops(first)
        colour = _colour_of(first)
        w, h = first.width, first.height
        uw, uh = (h, w) if _swaps(ops) else (w, h)
        if container.duration:
            duration = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = 0.0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(0)
        return VideoInfo(
            source=str(path), width=uw, height=uh, coded_width=w, coded_height=h,
            time_base=str(stream.time_base), average_rate=str(Fraction(rate)), duration=duration,
            frame_count=int(stream.frames or 0), codec=stream.codec_context.name,
            pix_fmt=first.format.name, bit_depth=_bit_depth(first.format.name),
            colorspace=colour.colorspace, color_range=colour.color_range,
            color_primaries=colour.primaries, color_trc=colour.trc,
            rotation=rotation, orientation=ops,
            audio=[_audio_description(s) for s in container.streams.audio],
            metadata=dict(container.metadata), video_metadata=dict(stream.metadata),
        )
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------- reading


def _producer(make: Callable[[], Iterator[Any]], maxsize: int) -> Iterator[Any]:
    """Run the iterator ``make()`` on a thread with a bounded queue; stops cleanly if the consumer does."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in make():
                if not put(("item", item)):
                    return
            put(("end", done))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))

    thread = threading.Thread(target=work, name="face-blur-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def iter_frames(path: str | Path, prefetch: int = 8) -> Iterator[Frame]:
    """Every frame of the first video stream, upright RGB, decoded on a background thread."""
    import av

    def decode() -> Iterator[Frame]:
        container = _open_input(path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            ops: list[str] | None = None
            colour = None
            index = 0
            try:
                for frame in container.decode(stream):
                    if ops is None:
                        _, ops = orientation_ops(frame)
                        colour = _colour_of(frame)
                    index += 1
                    image = np.ascontiguousarray(apply_ops(_to_rgb(frame, colour), ops))
                    yield Frame(index, frame.pts, frame.time, frame.duration or None, image)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{path}: decoding failed after frame {index} ({exc.strerror or exc})") from None
        finally:
            container.close()

    yield from _producer(decode, prefetch)


# ---------------------------------------------------------------------------------------------- writing


def _choose_codec(fmt_name: str, bit_depth: int, requested: str) -> tuple[str, str]:
    """(encoder, pix_fmt) for the output container and source depth."""
    import av

    def have(name: str) -> bool:
        try:
            av.codec.Codec(name, "w")
            return True
        except Exception:  # av raises UnknownCodecError (not exported alike in every version)
            return False

    def formats(name: str) -> list[str]:
        return [f.name for f in (av.codec.Codec(name, "w").video_formats or [])]

    deep = bit_depth > 8
    if requested == "auto":
        if fmt_name == "webm":
            candidates = ["libvpx-vp9"]
        elif deep:
            candidates = ["libx265", "libx264"]
        else:
            candidates = ["libx264"]
        codec = next((c for c in candidates if have(c)), None)
        if codec is None:
            raise VideoError(f"none of {', '.join(candidates)} is in this FFmpeg build")
    else:
        if not have(requested):
            raise VideoError(f"the encoder {requested} is not in this FFmpeg build")
        codec = requested
    pix_fmt = "yuv420p"
    if deep:
        if "yuv420p10le" in formats(codec):
            pix_fmt = "yuv420p10le"
        else:
            log.warning("%s cannot encode 10-bit here: the %d-bit source is written as 8-bit yuv420p "
                        "(colours stay right; use --codec libx265 to keep the depth)", codec, bit_depth)
    return codec, pix_fmt


class _AudioOut:
    """One input audio stream into the output container: packets copied, or re-encoded when the
    container cannot hold the codec."""

    def __init__(self, output, in_stream, fmt_name: str, keep_location: bool) -> None:
        import av

        self.in_stream = in_stream
        self.resampler = None
        name = in_stream.codec.name if in_stream.codec else ""
        canonical = in_stream.codec.canonical_name if in_stream.codec else name
        if name in output.supported_codecs or canonical in output.supported_codecs:
            self.out = output.add_stream_from_template(in_stream)
            self.copy = True
        else:
            target = "libopus" if fmt_name == "webm" else "aac"
            ctx = in_stream.codec_context
            rate = 48000 if target == "libopus" else (ctx.sample_rate or 48000)
            self.out = output.add_stream(target, rate=rate)
            channels = ctx.channels or 2
            # the default layout for the channel count (a file may say just "2 channels"); AAC/Opus: <= 8
            layout = _DEFAULT_LAYOUTS.get(channels, "stereo")
            self.out.layout = layout
            self.resampler = av.AudioResampler(format=self.out.codec_context.format or "fltp",
                                               layout=layout, rate=rate)
            self.copy = False
            log.info("audio stream %d (%s) cannot go into %s: re-encoded as %s",
                     in_stream.index, name, fmt_name, target)
        self.out.metadata.update(filter_metadata(dict(in_stream.metadata), keep_location, _DROP_STREAM_KEYS))
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            self.out.disposition = in_stream.disposition

    def packets(self, packet) -> list:
        """Output packets for one input packet (muxed by the caller)."""
        if packet.dts is None and packet.pts is None:
            return []
        if self.copy:
            packet.stream = self.out
            return [packet]
        out = []
        for frame in self.in_stream.codec_context.decode(packet):
            for resampled in self.resampler.resample(frame):
                out.extend(self.out.encode(resampled))
        return out

    def flush(self) -> list:
        if self.copy:
            return []
        out = []
        with contextlib.suppress(Exception):
            for frame in self.in_stream.codec_context.decode(None):
                for resampled in self.resampler.resample(frame):
                    out.extend(self.out.encode(resampled))
        for resampled in self.resampler.resample(None):
            out.extend(self.out.encode(resampled))
        out.extend(self.out.encode(None))
        return out


class _VideoOut:
    """The output video stream: encoder set-up, colour tags, timestamps."""

    def __init__(self, output, info: VideoInfo, config: EncodeConfig, fmt_name: str) -> None:
        self.codec, self.pix_fmt = _choose_codec(fmt_name, info.bit_depth, config.codec)
        self.colour = _Colour(info.colorspace, info.color_range, info.color_primaries, info.color_trc)
        rate = Fraction(info.average_rate) if info.fps > 0 else Fraction(30)
        options = {"crf": str(config.crf)}
        if self.codec in ("libx264", "libx265"):
            options["preset"] = config.preset
        if self.codec == "libx265":
            options["x265-params"] = "log-level=error"
        if self.codec == "libvpx-vp9":
            options.update({"b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"})
        stream = output.add_stream(self.codec, rate=rate, options=options)
        stream.width, stream.height = info.width, info.height
        if info.width % 2 or info.height % 2:
            raise VideoError(f"{info.source}: {info.width}x{info.height} has an odd side; "
                             "4:2:0 output needs even sizes")
        stream.pix_fmt = self.pix_fmt
        tb = Fraction(info.time_base)
        stream.time_base = tb
        ctx = stream.codec_context
        ctx.time_base = tb
        ctx.framerate = rate
        ctx.thread_count = 0
        self.colour.tag(ctx)
        if self.codec == "libx265" and fmt_name in ("mp4", "mov"):
            ctx.codec_tag = "hvc1"  # what Apple players expect for HEVC in MP4/MOV
        stream.metadata.update(filter_metadata(info.video_metadata, config.keep_location, _DROP_STREAM_KEYS))
        log.info("video out: %s %s, CRF %d, %dx%d, time base %s; colour tags (FFmpeg codes) matrix %d range %d "
                 "primaries %d transfer %d", self.codec, self.pix_fmt, config.crf, info.width, info.height, tb,
                 self.colour.colorspace, self.colour.color_range, self.colour.primaries, self.colour.trc)
        self.stream = stream
        self.time_base = tb

    def rgb_frame(self, rgb: np.ndarray):
        """An RGB image as an output-format frame (matrix and range of the source)."""
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        return frame.reformat(format=self.pix_fmt, src_color_range=_RANGE_FULL,
                              dst_colorspace=self.colour.matrix, dst_color_range=self.colour.yuv_range)

    def encode(self, frame, pts: int | None, duration: int | None) -> list:
        frame.pts = pts
        frame.time_base = self.time_base
        if duration:
            frame.duration = duration
        self.colour.tag(frame)
        return self.stream.encode(frame)

    def flush(self) -> list:
        return self.stream.encode(None)


def _open_output(path: Path, info: VideoInfo, keep_location: bool):
    import av

    fmt_name = VIDEO_SUFFIXES.get(path.suffix.lower())
    metadata = filter_metadata(info.metadata, keep_location, _DROP_CONTAINER_KEYS)
    options = {}
    if fmt_name in ("mp4", "mov") and any(k.startswith("com.apple.") for k in metadata):
        options["movflags"] = "use_metadata_tags"  # keeps QuickTime keys (creation date, make, model)
    try:
        output = av.open(str(path), "w", format=fmt_name, options=options)
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"{path}: cannot write this kind of video ({exc}); use .mp4, .mov, .mkv or .webm") from None
    output.metadata.update(metadata)
    return output, fmt_name or output.format.name


def _compose(upright, rgb_after: np.ndarray, changed: np.ndarray, video: _VideoOut) -> None:
    """Write the changed pixels (bool HxW mask) of ``rgb_after`` into the YUV frame ``upright``."""
    rows = np.flatnonzero(changed.any(axis=1))
    cols = np.flatnonzero(changed.any(axis=0))
    y0, y1 = rows[0] // 2 * 2, min(upright.height, (rows[-1] + 2) // 2 * 2)
    x0, x1 = cols[0] // 2 * 2, min(upright.width, (cols[-1] + 2) // 2 * 2)
    upright.make_writable()  # a decoded frame may share its buffer with the decoder's references
    patch = video.rgb_frame(np.ascontiguousarray(rgb_after[y0:y1, x0:x1]))
    mask = changed[y0:y1, x0:x1]
    mask_c = mask.reshape(mask.shape[0] // 2, 2, mask.shape[1] // 2, 2).any(axis=(1, 3))
    dtype = np.uint16 if video.pix_fmt.endswith("10le") else np.uint8
    for i, (dst_plane, src_plane) in enumerate(zip(upright.planes, patch.planes, strict=True)):
        sub = 1 if i == 0 else 2
        dst = _plane_view(dst_plane, dtype)[y0 // sub:y1 // sub, x0 // sub:x1 // sub]
        src = _plane_view(src_plane, dtype)
        m = mask if i == 0 else mask_c
        np.copyto(dst, src, where=m)


def _plane_view(plane, dtype) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // itemsize)[:, :plane.width]


def _upright_frame(frame, ops: list[str], video: _VideoOut, colour: _Colour):
    """The decoded frame in the output pixel format, rotated upright (a frame safe to write into)."""
    import av

    conv = frame.reformat(format=video.pix_fmt, src_colorspace=colour.matrix, dst_colorspace=colour.matrix,
                          src_color_range=colour.yuv_range, dst_color_range=colour.yuv_range)
    if not ops:
        return conv
    dtype = np.uint16 if video.pix_fmt.endswith("10le") else np.uint8
    w, h = (conv.height, conv.width) if _swaps(ops) else (conv.width, conv.height)
    out = av.VideoFrame(w, h, video.pix_fmt)
    for src, dst in zip(conv.planes, out.planes, strict=True):
        _plane_view(dst, dtype)[...] = apply_ops(_plane_view(src, dtype), ops)
    return out


ProcessFn = Callable[[int, np.ndarray], bool]


def rewrite_video(src: str | Path, dst: str | Path, process: ProcessFn, config: EncodeConfig | None = None,
                  workers: int = 2, progress: Callable[[int], None] | None = None,
                  overwrite: bool = False) -> VideoInfo:
    """Decode ``src``, let ``process(index, rgb)`` change frames in place (returning True when it
    did), encode to ``dst``; audio, timing, colour and metadata as in the module docstring.

    Decoding, processing (``workers`` threads, in order) and encoding overlap; at most a few frames
    per worker are in flight, so memory does not grow with the video's length. Returns the source's
    :class:`VideoInfo` with the exact ``frame_count`` written.
    """
    import av

    config = config or EncodeConfig()
    info = probe(src)
    dst = Path(dst)
    with atomic_output(dst, overwrite) as tmp:
        container = _open_input(src)
        output = None
        try:
            output, fmt_name = _open_output(tmp, info, config.keep_location)
            video = _VideoOut(output, info, config, fmt_name)
            in_video = container.streams.video[0]
            in_video.thread_type = "AUTO"
            audio = {s.index: _AudioOut(output, s, fmt_name, config.keep_location)
                     for s in container.streams.audio}
            colour = _colour_of_info(info)
            ops = info.orientation

            def demux() -> Iterator[tuple[str, Any]]:
                index = 0
                try:
                    for packet in container.demux([in_video, *container.streams.audio]):
                        if packet.stream.type == "video":
                            for frame in packet.decode():
                                index += 1
                                yield "v", (index, frame)
                        else:
                            yield "a", packet
                except av.error.FFmpegError as exc:
                    raise VideoError(f"{src}: decoding failed after frame {index} ({exc.strerror or exc})") from None

            def work(index: int, frame) -> tuple[Any, int | None, int | None]:
                upright = _upright_frame(frame, ops, video, colour)
                rgb = _to_rgb(upright, colour)
                before = rgb.copy()
                if process(index, rgb):
                    changed = np.any(rgb != before, axis=2)
                    if changed.any():
                        _compose(upright, rgb, changed, video)
                return upright, frame.pts, frame.duration

            written = _pipeline(demux(), work, workers, output, video, audio, progress)
            for a in audio.values():
                for p in a.flush():
                    output.mux(p)
            for p in video.flush():
                output.mux(p)
            output.close()  # writes the trailer: its errors must surface
            output = None
        finally:
            container.close()
            if output is not None:  # failed part-way: the first error is the one to report
                with contextlib.suppress(Exception):
                    output.close()
    info.frame_count = written
    return info


def _colour_of_info(info: VideoInfo) -> _Colour:
    return _Colour(info.colorspace, info.color_range, info.color_primaries, info.color_trc)


def _pipeline(items: Iterator[tuple[str, Any]], work: Callable, workers: int, output, video: _VideoOut,
              audio: dict[int, _AudioOut], progress: Callable[[int], None] | None) -> int:
    """Ordered processing: video items run on the pool, audio packets wait their turn; mux in order."""
    pending: deque[tuple[str, Any]] = deque()
    window = max(2, workers) * 3
    written = 0

    def drain(block: bool) -> None:
        nonlocal written
        while pending:
            kind, item = pending[0]
            if not (block or len(pending) > window or kind == "a" or item.done()):
                return
            pending.popleft()
            if kind == "v":
                frame, pts, duration = item.result()
                for p in video.encode(frame, pts, duration):
                    output.mux(p)
                written += 1
                if progress:
                    progress(1)
            else:
                for p in audio[item.stream.index].packets(item):
                    output.mux(p)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="face-blur-render") as pool:
        try:
            for kind, item in _producer(lambda: items, maxsize=window):
                if kind == "v":
                    pending.append(("v", pool.submit(work, *item)))
                else:
                    pending.append(("a", item))
                drain(block=False)
            drain(block=True)
        finally:
            for kind, item in pending:
                if kind == "v":
                    item.cancel()
    return written


# ---------------------------------------------------------------------------------------------- split / join


class _RunBuilder:
    """``_runs`` incrementally (memory bounded by the number of runs, not frames)."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def add(self, p: int) -> None:
        if self.runs:
            start, step, count = self.runs[-1]
            if count == 1:
                self.runs[-1] = [start, p - start, 2]
                return
            if start + count * step == p:
                self.runs[-1][2] += 1
                return
        self.runs.append([p, 0, 1])


def extract_frames(video: str | Path, out_dir: str | Path, pattern: str = "img{:07d}.png",
                   sidecar_dir: str | Path | None = None,
                   progress: Callable[[int], None] | None = None) -> VideoInfo:
    """Write every frame of ``video`` upright as ``out_dir/pattern.format(n)`` (n from 1) and the
    sidecar (``video.json`` + ``audio.mkv`` when there is audio) into ``sidecar_dir`` (default: a
    folder ``<out_dir>.sidecar`` beside ``out_dir``, so the frames folder holds frames only).
    Returns the :class:`VideoInfo` (also saved as the sidecar's ``video.json``)."""
    import av
    from PIL import Image

    from postprocess.storage import bounded_map

    out_dir = Path(out_dir)
    sidecar = Path(sidecar_dir) if sidecar_dir else out_dir.with_name(out_dir.name + ".sidecar")
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar.mkdir(parents=True, exist_ok=True)
    info = probe(video)
    runs = _RunBuilder()
    count = 0
    last_pts: int | None = None
    last_duration = 0

    def in_order() -> Iterator[Frame]:
        """The decoded frames, their timestamps recorded in presentation order on the way."""
        nonlocal last_pts, last_duration
        for frame in iter_frames(video):
            pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # a broken stream: keep the order, never two frames at one time
            runs.add(pts)
            last_pts = pts
            last_duration = frame.duration or 0
            yield frame

    def save(frame: Frame) -> None:  # PNG compression releases the GIL: a few frames at once
        Image.fromarray(frame.image).save(out_dir / pattern.format(frame.index), compress_level=1)

    for _frame, _ in bounded_map(save, in_order(), workers=max(1, min(4, os.cpu_count() or 1))):
        count += 1
        if progress:
            progress(1)
    if count == 0:
        raise VideoError(f"{video}: no frames decoded")
    container = _open_input(video)
    try:
        if container.streams.audio:
            audio_path = sidecar / SIDECAR_AUDIO
            with av.open(str(audio_path), "w", format="matroska") as out:
                outs = {s.index: out.add_stream_from_template(s) for s in container.streams.audio}
                for s in container.streams.audio:
                    outs[s.index].metadata.update(dict(s.metadata))
                for packet in container.demux(list(container.streams.audio)):
                    if packet.dts is None:
                        continue
                    packet.stream = outs[packet.stream.index]
                    out.mux(packet)
            info.audio_file = SIDECAR_AUDIO
    finally:
        container.close()
    if not last_duration:  # the container did not say: the usual step, else one frame at the average rate
        step = runs.runs[-1][1]
        tb = Fraction(info.time_base)
        last_duration = step if step > 0 else (int(round(1 / (info.fps * tb))) if info.fps else 1)
    info.frame_count = count
    info.pts_runs = runs.runs
    info.last_duration = int(last_duration)
    info.save(sidecar / SIDECAR_INFO)
    return info


def _load_sidecar(info_or_sidecar: VideoInfo | str | Path) -> tuple[VideoInfo, Path | None]:
    if isinstance(info_or_sidecar, VideoInfo):
        return info_or_sidecar, None
    path = Path(info_or_sidecar)
    if path.is_dir():
        path = path / SIDECAR_INFO
    if not path.is_file():
        raise VideoError(f"{path}: video sidecar not found")
    return VideoInfo.load(path), path.parent


def assemble_video(frames_dir: str | Path, info_or_sidecar: VideoInfo | str | Path, output: str | Path,
                   pattern: str = "img{:07d}.png", config: EncodeConfig | None = None,
                   overwrite: bool = False, progress: Callable[[int], None] | None = None) -> Path:
    """Encode the frames ``frames_dir/pattern.format(n)`` (n = 1..frame_count) with the timestamps,
    colour tags, metadata and audio recorded by :func:`extract_frames`. A missing frame is an error
    naming it. ``info_or_sidecar``: a :class:`VideoInfo`, its ``video.json`` or the sidecar folder."""
    import av
    from PIL import Image

    config = config or EncodeConfig()
    info, sidecar = _load_sidecar(info_or_sidecar)
    if not info.pts_runs:
        raise VideoError("the video info has no timestamps (make it with extract_frames)")
    # the frames are upright already: describe them as such
    upright = dataclasses.replace(info, orientation=[], rotation=0)
    frames_dir = Path(frames_dir)
    output = Path(output)
    audio_in = None
    if info.audio_file and sidecar is not None and (sidecar / info.audio_file).is_file():
        audio_in = av.open(str(sidecar / info.audio_file))
    elif info.audio_file:
        log.warning("audio sidecar %s not found: the video is assembled without audio", info.audio_file)
    try:
        with atomic_output(output, overwrite) as tmp:
            out, fmt_name = _open_output(tmp, upright, config.keep_location)
            try:
                video = _VideoOut(out, upright, config, fmt_name)
                audio = ({s.index: _AudioOut(out, s, fmt_name, config.keep_location)
                          for s in audio_in.streams.audio} if audio_in else {})
                packets = audio_in.demux(list(audio_in.streams.audio)) if audio_in else iter(())
                pending_packet = next(packets, None)
                tb = Fraction(info.time_base)
                timestamps = list(info.timestamps())
                for n, pts in enumerate(timestamps, start=1):
                    path = frames_dir / pattern.format(n)
                    if not path.is_file():
                        raise VideoError(f"{path}: frame {n} of {len(timestamps)} is missing")
                    with Image.open(path) as im:
                        rgb = np.asarray(im.convert("RGB"))
                    if rgb.shape[:2] != (info.height, info.width):
                        raise VideoError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, expected {info.width}x{info.height}")
                    t = float(pts * tb)
                    while pending_packet is not None and (pending_packet.pts is None or pending_packet.dts is None
                                                          or float(pending_packet.pts * pending_packet.time_base) <= t):
                        for p in audio[pending_packet.stream.index].packets(pending_packet):
                            out.mux(p)
                        pending_packet = next(packets, None)
                    duration = info.last_duration if n == len(timestamps) else None
                    for p in video.encode(video.rgb_frame(rgb), pts, duration):
                        out.mux(p)
                    if progress:
                        progress(1)
                while pending_packet is not None:
                    for p in audio[pending_packet.stream.index].packets(pending_packet):
                        out.mux(p)
                    pending_packet = next(packets, None)
                for a in audio.values():
                    for p in a.flush():
                        out.mux(p)
                for p in video.flush():
                    out.mux(p)
                out.close()
                out = None
            finally:
                if out is not None:
                    with contextlib.suppress(Exception):
                        out.close()
    finally:
        if audio_in is not None:
            audio_in.close()
    return output
