"""Open a video, describe it (:func:`probe`) and filter its metadata (location removed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from faceblur.video.info import VideoError, VideoInfo
from faceblur.video.pixels import bit_depth, colour_of, orientation_ops, swaps


def open_input(path: str | Path):
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

    container = open_input(path)
    try:
        stream = container.streams.video[0]
        try:
            first = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: the video stream cannot be decoded ({exc.strerror or exc})") from None
        if first is None:
            raise VideoError(f"{path}: the video stream has no frames")
        rotation, ops = orientation_ops(first)
        colour = colour_of(first)
        w, h = first.width, first.height
        uw, uh = (h, w) if swaps(ops) else (w, h)
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
            pix_fmt=first.format.name, bit_depth=bit_depth(first.format.name),
            colorspace=colour.colorspace, color_range=colour.color_range,
            color_primaries=colour.primaries, color_trc=colour.trc,
            rotation=rotation, orientation=ops,
            audio=[_audio_description(s) for s in container.streams.audio],
            metadata=dict(container.metadata), video_metadata=dict(stream.metadata),
        )
    finally:
        container.close()
