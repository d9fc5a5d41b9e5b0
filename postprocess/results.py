"""Frame results on disk, not in memory: an 8-hour video at 30 fps is 864,000 results, several GB
of parsed objects with their embeddings. ``make_plan`` reads each result once (and a few again for
identity samples), so a temporary file with an index is enough.

Results are stored already parsed (pickled ``FrameResult``s: about 12 us to read back, against
150 us to parse the JSON again). The file is private to this process, written by it and deleted on
``close``: nothing from outside is ever unpickled; the wire format stays JSON."""

from __future__ import annotations

import bisect
import os
import pickle
import tempfile
import threading
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from contract import FrameResult


class ResultStore(Mapping[int, FrameResult]):
    """Frame results kept in a temporary file, read back on access (``Mapping[int, FrameResult]``).

    Memory holds three 8-byte integers per frame (8 MB for three hours at 30 fps); the results
    themselves (about 1-4 KB a frame) live on disk. ``add`` is thread-safe and may come in any order;
    the file is deleted on ``close``.
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
        body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._file.seek(0, os.SEEK_END)
            offset = self._file.tell()
            self._file.write(body)
            if self._frames and frame <= self._frames[-1]:
                self._sorted = False
            self._frames.append(int(frame))
            self._offsets.append(offset)
            self._sizes.append(len(body))
            self.faces += len(result.faces)

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
        result = pickle.loads(body)  # our own temporary file (see the module docstring)
        result.faces.frame_index = frame
        return result

    def __iter__(self) -> Iterator[int]:
        with self._lock:
            self._sort()
            frames = self._frames.tolist()
        return iter(frames)

    def __len__(self) -> int:
        return len(self._frames)

    def close(self) -> None:
        self._file.close()
