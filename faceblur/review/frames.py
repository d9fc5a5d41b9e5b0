"""Frames for the review page, read on demand: a video by seeking, a folder of frames (local or
``s3://``) one object at a time, a photo. Nothing is decoded up front, so a long video opens in
the time it takes to probe it.

Frame numbers start at 1 in presentation order, as everywhere else (``faceblur.video.iter_frames``,
the plans, the AWS frames). For a video, frame ``n``'s timestamp comes from an index of the
packets' timestamps (demuxed, not decoded) built on a background thread; until it is ready the
timestamp is estimated from the average frame rate, which is exact for constant-rate video.
Frames are decoded from the keyframe before the target; reading forward from the last frame
decoded continues without seeking (the scrubber's common case), and a few recent frames are cached.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)


class FrameError(LookupError):
    """A frame that is not in the input (the message names the frame and the range)."""


class FrameSource(Protocol):
    width: int
    height: int
    count: int  # frames (estimated for a video until its index is built)
    name: str

    def frame(self, number: int) -> np.ndarray: ...  # HxWx3 uint8 RGB, upright

    def close(self) -> None: ...


@dataclass
class _Cache:
    size: int = 8

    def __post_init__(self) -> None:
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, key: int) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: int, value: np.ndarray) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class VideoFrames:
    """Random access to the frames of a video file (see the module docstring)."""

    #: decode forward instead of seeking when the target is at most this many frames ahead
    FORWARD = 48

    def __init__(self, path: Path) -> None:
        from faceblur.video import probe
        from faceblur.video.probe import open_input

        self.path = Path(path)
        self.name = self.path.name
        info = probe(self.path)
        self.width, self.height = info.width, info.height
        self._ops = info.orientation
        self._container = open_input(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._tb = Fraction(self._stream.time_base or Fraction(1, 90000))
        rate = Fraction(info.average_rate) if info.fps else Fraction(25)
        self._step = 1 / rate / self._tb  # timestamp units per frame
        self._start = int(self._stream.start_time or 0)
        self.count = max(1, info.estimated_frames)
        self._index: np.ndarray | None = None
        self._lock = threading.Lock()
        self._cache = _Cache()
        self._decoder = None  # the running decode iterator and the last frame number it gave
        self._last = 0
        self._closed = False
        self._indexer = threading.Thread(target=self._build_index, name="face-blur-review-index", daemon=True)
        self._indexer.start()

    # -------------------------------------------------------------------------------- index

    def _build_index(self) -> None:
        """Every video packet's timestamp, sorted: frame n is the n-th (a demux, no decoding)."""
        from faceblur.video.probe import open_input

        try:
            container = open_input(self.path)
            try:
                stream = container.streams.video[0]
                stamps = [p.pts for p in container.demux(stream) if p.pts is not None and p.size]
            finally:
                container.close()
        except Exception as exc:  # the estimate stays in use; the page still works
            log.warning("%s: frame index not built (%s); frame times are estimated from the frame rate",
                        self.path, exc)
            return
        if stamps:
            index = np.unique(np.asarray(stamps, np.int64))
            with self._lock:
                self._index = index
                self.count = len(index)
            log.info("%s: %d frames indexed", self.path, len(index))

    def wait_for_index(self, timeout: float | None = None) -> bool:
        self._indexer.join(timeout)
        return self._index is not None

    def _pts(self, number: int) -> int:
        if self._index is not None:
            return int(self._index[number - 1])
        return self._start + int(round((number - 1) * self._step))

    def _number(self, pts: int) -> int:
        if self._index is not None:
            return int(np.searchsorted(self._index, pts)) + 1
        return int(round((pts - self._start) / self._step)) + 1

    # -------------------------------------------------------------------------------- frames

    def frame(self, number: int) -> np.ndarray:
        if not 1 <= number <= self.count:
            raise FrameError(f"frame {number} is not in {self.name} (frames 1..{self.count})")
        with self._lock:
            cached = self._cache.get(number)
            if cached is not None:
                return cached
            if self._closed:
                raise FrameError(f"{self.name} is closed")
            if self._decoder is None or not self._last < number <= self._last + self.FORWARD:
                self._seek(number)
            frame = self._decode_to(number)
            if frame is None and self._decoder is not None:  # overshot: the keyframe was after the target
                self._seek(number, back=2 * self.FORWARD)
                frame = self._decode_to(number)
            if frame is None:
                raise FrameError(f"frame {number} of {self.name} could not be decoded")
            return frame

    def _seek(self, number: int, back: int = 0) -> None:
        target = self._pts(max(1, number - back))
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._last = -1  # unknown until the first frame is decoded

    def _decode_to(self, number: int) -> np.ndarray | None:
        from faceblur.video import apply_ops
        from faceblur.video.pixels import colour_of, to_rgb

        target = self._pts(number)
        assert self._decoder is not None
        for frame in self._decoder:
            if frame.pts is None:
                continue
            got = self._number(frame.pts)
            self._last = got
            if frame.pts < target:
                continue
            if frame.pts > target and got > number:
                self._decoder = None
                return None
            image = np.ascontiguousarray(apply_ops(to_rgb(frame, colour_of(frame)), self._ops))
            self._cache.put(got, image)
            return image
        self._decoder = None
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._container.close()


class FolderFrames:
    """Numbered frames under a folder or an ``s3://`` prefix (``postprocess.reading.list_frames``)."""

    def __init__(self, uri: str, store=None) -> None:
        from postprocess.reading import list_frames
        from postprocess.storage import Store, folder

        self.uri = folder(uri)
        self.name = self.uri.rstrip("/").rsplit("/", 1)[-1]
        self.store = store or Store()
        self.refs = list_frames(self.store, self.uri)
        self._by_number = {r.number: r.key for r in self.refs}
        self.count = self.refs[-1].number
        self._cache = _Cache()
        self._lock = threading.Lock()
        first = self.frame(self.refs[0].number)
        self.height, self.width = first.shape[:2]

    def key(self, number: int) -> str:
        key = self._by_number.get(number)
        if key is None:
            raise FrameError(f"frame {number} is not under {self.uri} (frames {self.refs[0].number}.."
                             f"{self.refs[-1].number})")
        return key

    def frame(self, number: int) -> np.ndarray:
        from postprocess.storage import join

        key = self.key(number)
        with self._lock:
            cached = self._cache.get(number)
        if cached is not None:
            return cached
        image = decode(self.store.read(join(self.uri, key)), key)
        with self._lock:
            self._cache.put(number, image)
        return image

    def close(self) -> None:
        pass


class PhotoFrames:
    """One photo: frame 1."""

    count = 1

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._image = decode(self.path.read_bytes(), self.name)
        self.height, self.width = self._image.shape[:2]

    def frame(self, number: int) -> np.ndarray:
        if number != 1:
            raise FrameError(f"frame {number} is not in {self.name} (a photo is frame 1)")
        return self._image

    def close(self) -> None:
        pass


def decode(data: bytes, name: str) -> np.ndarray:
    """Upright RGB pixels of a PNG/JPEG frame, as ``postprocess.render.render_image`` reads it."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    except Exception as exc:  # Pillow raises several types for corrupt data
        raise FrameError(f"frame {name} cannot be decoded: {exc}") from None


def open_frames(input_uri: str, store=None) -> FrameSource:
    """The frame source for ``face-blur review INPUT``: a video, a photo, or a folder / S3 prefix."""
    from faceblur.local import input_kind
    from postprocess.storage import is_s3

    if is_s3(input_uri):
        return FolderFrames(input_uri, store)
    path = Path(input_uri)
    kind = input_kind(path)
    if kind == "video":
        return VideoFrames(path)
    if kind == "photo":
        return PhotoFrames(path)
    return FolderFrames(str(path), store)
