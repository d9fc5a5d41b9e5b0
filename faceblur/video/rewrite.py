"""The local path: :func:`rewrite_video` decodes, lets a callback change frames (in order, on a
thread pool), and encodes only the changed pixels into the source's own YUV frames."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from faceblur.video.decode import producer
from faceblur.video.encode import AudioOut, VideoOut, atomic_output, open_output
from faceblur.video.info import EncodeConfig, VideoError, VideoInfo
from faceblur.video.pixels import Colour, apply_ops, swaps, to_rgb
from faceblur.video.probe import open_input, probe


def _compose(upright, rgb_after: np.ndarray, changed: np.ndarray, video: VideoOut) -> None:
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


def _upright_frame(frame, ops: list[str], video: VideoOut, colour: Colour):
    """The decoded frame in the output pixel format, rotated upright (a frame safe to write into)."""
    import av

    conv = frame.reformat(format=video.pix_fmt, src_colorspace=colour.matrix, dst_colorspace=colour.matrix,
                          src_color_range=colour.yuv_range, dst_color_range=colour.yuv_range)
    if not ops:
        return conv
    dtype = np.uint16 if video.pix_fmt.endswith("10le") else np.uint8
    w, h = (conv.height, conv.width) if swaps(ops) else (conv.width, conv.height)
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
        container = open_input(src)
        output = None
        try:
            output, fmt_name = open_output(tmp, info, config.keep_location)
            video = VideoOut(output, info, config, fmt_name)
            in_video = container.streams.video[0]
            in_video.thread_type = "AUTO"
            audio = {s.index: AudioOut(output, s, fmt_name, config.keep_location)
                     for s in container.streams.audio}
            colour = colour_of_info(info)
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
                rgb = to_rgb(upright, colour)
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


def colour_of_info(info: VideoInfo) -> Colour:
    return Colour(info.colorspace, info.color_range, info.color_primaries, info.color_trc)


def _pipeline(items: Iterator[tuple[str, Any]], work: Callable, workers: int, output, video: VideoOut,
              audio: dict[int, AudioOut], progress: Callable[[int], None] | None) -> int:
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
            for kind, item in producer(lambda: items, maxsize=window):
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
