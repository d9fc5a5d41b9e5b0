"""Frame results on disk, not in memory: an 8-hour video at 30 fps is 864,000 results, several GB
of parsed objects with their embeddings. ``make_plan`` reads each result once (and a few again for
identity samples), so a temporary file with an index is enough."""

from __future__ import annotations

import bisect
import os
import tempfile
import threading
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from contract import FrameResult, dumps, loads


class ResultStore(Mapping[int, FrameResult]):
    """Frame results kept in a temporary file, read back on access (``Mapping[int, FrameResult]``).

    Memory holds three 8-byte integers per frame (8 MB for three hours at 30 fps); the results
    themselves (the same ``face-blur/frame/v1`` bytes the server returns, about 1-3 KB a frame)
    live on disk. ``add`` is thread-safe and may come in any order; the file is deleted on ``close``.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="face-blur-results-", dir=directory)
        self._lock = threading.Lock()
        self._frames = array("q")
        self._offsets = array("q")
        self._sizes = array("q")
        self._sorted = True
        self.faces = 0

    def add(self, frame: int, result: FrameResult) -> None:
        self.add_body(frame, dumps(result), len(result.faces))

    def add_body(self, frame: int, body: bytes, faces: int) -> None:
        """Store a result's ``face-blur/frame/v1`` bytes as they are (already validated by the caller)."""
        with self._lock:
            self._file.seek(0, os.SEEK_END)
            offset = self._file.tell()
            self._file.write(body)
            if self._frames and frame <= self._frames[-1]:
                self._sorted = False
            self._frames.append(int(frame))
            self._offsets.append(offset)
            self._sizes.append(len(body))
            self.faces += faces

    def _sort(self) -> None:
        if not self._sorted:
            order = np.argsort(np.frombuffer(self._frames, np.int64), kind="stable")
            for name in ("_frames", "_offsets", "_sizes"):
                values = np.frombuffer(getattr(self, name), np.int64)[order]
                setattr(self, name, array("q", values.tobytes()))
            self._sorted = True

    def __getitem__(self, frame: int) -> FrameResult:
        with self._lock:
            self._sort()
            i = bisect.bisect_left(self._frames, frame)
            if i == len(self._frames) or self._frames[i] != frame:
                raise KeyError(frame)
            self._file.seek(self._offsets[i])
            body = self._file.read(self._sizes[i])
        return loads(body, frame_index=frame)

    def __iter__(self) -> Iterator[int]:
        with self._lock:
            self._sort()
            frames = self._frames.tolist()
        return iter(frames)

    def __len__(self) -> int:
        return len(self._frames)

    def close(self) -> None:
        self._file.close()
