"""What a video is and how the output is encoded: :class:`VideoInfo` (the sidecar format
``face-blur/video/v1`` too), :class:`EncodeConfig`, :class:`Frame`, :class:`VideoError` and the
constants shared by the other modules of :mod:`faceblur.video`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
CODECS = ("auto", "libx264", "libx265", "libvpx-vp9")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
SIDECAR_INFO = "video.json"
SIDECAR_AUDIO = "audio.mkv"
DROP_CONTAINER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder"}
DROP_STREAM_KEYS = {"encoder", "rotate", "duration", "_statistics_tags", "number_of_frames", "number_of_bytes"}


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message names the file and what was wrong."""


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
