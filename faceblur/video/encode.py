"""Encoding: the output container, its video encoder (codec and pixel format by source depth) and
the audio streams copied or re-encoded; :func:`atomic_output` renames a finished file into place."""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceblur.video.info import (
    DROP_CONTAINER_KEYS,
    DROP_STREAM_KEYS,
    VIDEO_SUFFIXES,
    EncodeConfig,
    VideoError,
    VideoInfo,
)
from faceblur.video.pixels import RANGE_FULL, Colour
from faceblur.video.probe import filter_metadata
from postprocess.tempfiles import atomic_output  # noqa: F401  one home (issue 18): found again after a kill

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.packet import Packet
    from av.video.frame import VideoFrame

log = logging.getLogger(__name__)

DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}



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


class AudioOut:
    """One input audio stream into the output container: packets copied, or re-encoded when the
    container cannot hold the codec."""

    def __init__(self, output: OutputContainer, in_stream: AudioStream, fmt_name: str, keep_location: bool) -> None:
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
            layout = DEFAULT_LAYOUTS.get(channels, "stereo")
            self.out.layout = layout
            self.resampler = av.AudioResampler(format=self.out.codec_context.format or "fltp",
                                               layout=layout, rate=rate)
            self.copy = False
            log.info("audio stream %d (%s) cannot go into %s: re-encoded as %s",
                     in_stream.index, name, fmt_name, target)
        self.out.metadata.update(filter_metadata(dict(in_stream.metadata), keep_location, DROP_STREAM_KEYS))
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            self.out.disposition = in_stream.disposition

    def packets(self, packet: Packet) -> list[Packet]:
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


class VideoOut:
    """The output video stream: encoder set-up, colour tags, timestamps."""

    def __init__(self, output: OutputContainer, info: VideoInfo, config: EncodeConfig, fmt_name: str) -> None:
        self.codec, self.pix_fmt = _choose_codec(fmt_name, info.bit_depth, config.codec)
        self.colour = Colour(info.colorspace, info.color_range, info.color_primaries, info.color_trc)
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
        stream.metadata.update(filter_metadata(info.video_metadata, config.keep_location, DROP_STREAM_KEYS))
        log.info("video out: %s %s, CRF %d, %dx%d, time base %s; colour tags (FFmpeg codes) matrix %d range %d "
                 "primaries %d transfer %d", self.codec, self.pix_fmt, config.crf, info.width, info.height, tb,
                 self.colour.colorspace, self.colour.color_range, self.colour.primaries, self.colour.trc)
        self.stream = stream
        self.time_base = tb

    def rgb_frame(self, rgb: np.ndarray) -> VideoFrame:
        """An RGB image as an output-format frame (matrix and range of the source)."""
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        return frame.reformat(format=self.pix_fmt, src_color_range=RANGE_FULL,
                              dst_colorspace=self.colour.matrix, dst_color_range=self.colour.yuv_range)

    def encode(self, frame: VideoFrame, pts: int | None, duration: int | None) -> list[Packet]:
        frame.pts = pts
        frame.time_base = self.time_base
        if duration:
            frame.duration = duration
        self.colour.tag(frame)
        return self.stream.encode(frame)

    def flush(self) -> list:
        return self.stream.encode(None)


def open_output(path: Path, info: VideoInfo, keep_location: bool) -> tuple[OutputContainer, str]:
    import av

    fmt_name = VIDEO_SUFFIXES.get(path.suffix.lower())
    metadata = filter_metadata(info.metadata, keep_location, DROP_CONTAINER_KEYS)
    options = {}
    if fmt_name in ("mp4", "mov") and any(k.startswith("com.apple.") for k in metadata):
        options["movflags"] = "use_metadata_tags"  # keeps QuickTime keys (creation date, make, model)
    try:
        output = av.open(str(path), "w", format=fmt_name, options=options)
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"{path}: cannot write this kind of video ({exc}); use .mp4, .mov, .mkv or .webm") from None
    output.metadata.update(metadata)
    return output, fmt_name or output.format.name
