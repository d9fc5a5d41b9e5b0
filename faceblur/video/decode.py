"""Decoding: every frame upright RGB (:func:`iter_frames`), on a background thread with a bounded
queue (:func:`producer`, also used by the rewrite pipeline)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from faceblur.video.info import Frame, VideoError
from faceblur.video.pixels import apply_ops, colour_of, orientation_ops, to_rgb
from faceblur.video.probe import open_input


def producer(make: Callable[[], Iterator[Any]], maxsize: int) -> Iterator[Any]:
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
        container = open_input(path)
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
                        colour = colour_of(frame)
                    index += 1
                    image = np.ascontiguousarray(apply_ops(to_rgb(frame, colour), ops))
                    yield Frame(index, frame.pts, frame.time, frame.duration or None, image)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{path}: decoding failed after frame {index} ({exc.strerror or exc})") from None
        finally:
            container.close()

    yield from producer(decode, prefetch)
