"""A cut-short video is an error, not a shorter output (issue 18).

A video whose end is missing (an interrupted download or copy) decodes without any error up to
where its data stops: the first 40 % of the bytes of a faststart MP4 gave 106 of its 275 frames and
exit status 0. Two checks compare what was decoded with what the container declares:

- :func:`check_end`, before any work: seek to the last second the container declares and decode
  to the end. A complete file shows frames up to its end there; a cut one fails to decode, shows
  nothing, or stops seconds early. Cheap (one group of pictures, at most :data:`MAX_END_FRAMES`
  frames; a longer one leaves it to the count), so ``face-blur run`` and ``render`` and the AWS
  split refuse such a file before minutes of analysis.
- :func:`check_count`, after decoding: the frames decoded against the declared count (the
  container's frame count, or duration x rate where it gives none, as in Matroska/WebM). A short
  read is :class:`TruncatedVideoError` naming the file and the frame where decoding ended.

Both are errors unless ``allow_truncated`` (``--allow-truncated``): then the run goes on with the
frames that are there and the summary says so (:func:`check_count` returns the note).

Tolerances (:func:`declared_frames`): one frame against a container's frame count (MP4/MOV), two
against the video stream's own duration (Matroska/WebM from FFmpeg), one second against the
container's duration alone. Only a file cut within its last second that states neither is missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from faceblur.video import VideoError, VideoInfo

log = logging.getLogger(__name__)

END_TOLERANCE_S = 1.0
MAX_END_FRAMES = 600  # frames check_end decodes at most (from the key frame before the last second)


class TruncatedVideoError(VideoError):
    """The video's data ends before the end its container declares."""


def video_seconds(info: VideoInfo) -> tuple[float, bool]:
    """(the video stream's duration, whether it is the stream's own): Matroska/WebM written by
    FFmpeg tag each stream with its ``DURATION``; else the container's (which counts audio too)."""
    tag = info.video_metadata.get("DURATION") or info.video_metadata.get("duration") or ""
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec), True
    except ValueError:
        return info.duration, False


def declared_frames(info: VideoInfo) -> tuple[int, int]:
    """(frames the container declares, frames of tolerance): its own count (exact, 1 frame: an
    edit list may hide one), else duration x rate (2 frames, or one second against the
    container's duration, which counts the audio too)."""
    if info.frame_count:
        return info.frame_count, 1
    seconds, own = video_seconds(info)
    if own and info.fps:
        return int(round(seconds * info.fps)), 2
    return info.estimated_frames, max(2, int(round(info.fps * END_TOLERANCE_S)))


@dataclass
class FrameTally:
    """What was decoded: frames, and where the last one ends (seconds from the first frame's start;
    the last frame is taken to last as long as the one before it)."""

    decoded: int = 0
    first: float | None = None
    last: float | None = None
    step: float = 0.0

    def see(self, frame) -> None:
        """Count one :class:`faceblur.video.Frame` (``time`` in seconds)."""
        self.decoded += 1
        if frame.time is None:
            return
        if self.first is None:
            self.first = frame.time
        if self.last is not None:
            self.step = max(0.0, frame.time - self.last)
        self.last = frame.time

    @property
    def end(self) -> float | None:
        return None if self.last is None or self.first is None else self.last - self.first + self.step


def _hint(allow_option: str) -> str:
    return (f"the file is incomplete (an interrupted download or copy?); {allow_option} anonymises the "
            "frames that are there")


def check_count(path: str | Path, info: VideoInfo, decoded: int, end: float | None = None,
                allow_truncated: bool = False, allow_option: str = "--allow-truncated") -> str:
    """Compare what was decoded with what the container declares; returns "" when complete, else
    the note for the summary (``allow_truncated``) or raises :class:`TruncatedVideoError`.

    ``end``: where the last decoded frame ends, in seconds from the first. With a container frame
    count the counts are compared; without one, times are (a rate may be misreported: one Matroska
    copy said 30000 fps), with two of the decoded frames' own durations of tolerance (one second
    against a container duration)."""
    declared, tolerance = declared_frames(info)
    at = f" (at {end:.2f} s)" if end is not None else ""
    if not info.frame_count and (end is None or decoded < 2):
        return ""  # no count to compare, nor times: a rate alone is not trusted (see above)
    if info.frame_count:
        if declared <= 0 or decoded >= declared - tolerance:
            return ""
        how = "declares" if info.frame_count else f"declares {video_seconds(info)[0]:.2f} s, about"
        text = f"{path}: cut short: decoding ended after frame {decoded}{at}, but the container {how} {declared} frames"
    else:
        seconds, own = video_seconds(info)
        step = end / decoded
        if seconds <= 0 or end >= seconds - (2 * step if own else max(2 * step, END_TOLERANCE_S)):
            return ""
        declared = int(round(seconds / step))
        text = (f"{path}: cut short: decoding ended after frame {decoded}{at}, but the container declares "
                f"{seconds:.2f} s, about {declared} frames")
    if allow_truncated:
        log.warning("%s; going on with the %d frames there (%s)", text, decoded, allow_option)
        return f"truncated input: {decoded} of {declared} declared frames"
    raise TruncatedVideoError(f"{text}; {_hint(allow_option)}")


def check_end(path: str | Path, info: VideoInfo, allow_option: str = "--allow-truncated") -> None:
    """Decode the last second the container declares; raise :class:`TruncatedVideoError` when the
    data stops well before it (see the module docstring)."""
    import av

    seconds, _ = video_seconds(info)
    if seconds <= 0:
        return
    container = av.open(str(path), "r")
    last_end: float | None = None
    failure = ""
    try:
        stream = container.streams.video[0]
        origin = (container.start_time or 0) / 1_000_000  # durations count from the first timestamp
        try:  # AV_TIME_BASE units; lands on the key frame at or before
            container.seek(int((origin + max(0.0, seconds - END_TOLERANCE_S)) * 1_000_000), backward=True)
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if n >= MAX_END_FRAMES and (last_end is None or last_end < seconds - 2 * END_TOLERANCE_S):
                    log.info("%s: no key frame near the end; its length is checked after decoding", path)
                    return  # a very long group of pictures: not worth decoding here
                if frame.time is not None:
                    step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
                    last_end = max(last_end or 0.0, frame.time - origin + step)
        except av.error.FFmpegError as exc:
            failure = f" ({exc.strerror or exc})"
    finally:
        container.close()
    if last_end is not None and last_end >= seconds - END_TOLERANCE_S:
        return  # (an error after the last frames, e.g. trailing garbage, is no loss)
    if last_end is not None:  # a frame number only where the rate comes with a frame count (MP4/MOV)
        frame = f", after about frame {int(round(last_end * info.fps))}" if info.frame_count and info.fps else ""
        where = f"its frames stop at {last_end:.2f} s{frame}"
    else:
        where = "no frame near its end decodes"
    declares = f"{info.frame_count} frames ({seconds:.2f} s)" if info.frame_count else f"{seconds:.2f} s"
    raise TruncatedVideoError(f"{path}: cut short: the container declares {declares} but {where}{failure}; "
                              f"{_hint(allow_option)}")
