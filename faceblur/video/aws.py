"""The AWS path: :func:`extract_frames` splits a video into numbered upright PNG frames plus a
sidecar folder (``video.json``, ``audio.mkv``); :func:`assemble_video` puts it back together with
the original timing, audio and metadata."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from faceblur.video.decode import iter_frames
from faceblur.video.encode import AudioOut, VideoOut, atomic_output, open_output
from faceblur.video.info import SIDECAR_AUDIO, SIDECAR_INFO, EncodeConfig, Frame, VideoError, VideoInfo
from faceblur.video.probe import open_input, probe

log = logging.getLogger(__name__)



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

    from postprocess.parallel import bounded_map

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
    container = open_input(video)
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
            out, fmt_name = open_output(tmp, upright, config.keep_location)
            try:
                video = VideoOut(out, upright, config, fmt_name)
                audio = ({s.index: AudioOut(out, s, fmt_name, config.keep_location)
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
