"""``face-blur run --resume``: continue from the frames an interrupted run analysed (issue 18).

Pass 1 (detection and embedding) is most of a run's time. Every frame result it makes is appended
to a journal as it is made; a run that ends (successfully or with an error the user must fix)
deletes it, a run that is killed leaves it. The next run over the same input with ``--resume``
reads the journal and analyses only the frames missing from it (decoding the others still, which is
cheap beside detection); without ``--resume`` an old journal is discarded (and the log says so).

- **Keyed by the input**: the journal's name is a hash of the input's resolved path, size and
  modification time (a frames folder: of every frame's name, size and time), so another or an
  edited input never picks up old results.
- **Only the analysis options matter**: the detector options, the embedder asked for and the one
  loaded, the device. Those differ from the journal's: resuming is refused, naming each difference
  (results of another detector setting would silently mix). Plan and blur options may change.
- **Safe to read back**: a record is JSON plus raw little-endian float32 columns and a CRC32;
  nothing is unpickled. A record cut short by the kill (or failing its CRC) ends the journal there:
  that frame is analysed again.
- **Biometric data**: the journal holds embeddings, so it lives in a private folder (0700, files
  0600) under ``$FACE_BLUR_RESUME_DIR`` (default ``~/.cache/face-blur/resume``), is deleted when its
  run ends, and journals older than :data:`EXPIRE_DAYS` days are deleted by any later run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract import FrameFaces, FrameResult

log = logging.getLogger(__name__)

SCHEMA = "face-blur/resume/v1"
EXPIRE_DAYS = 7
_MAGIC = b"FBR1"
_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload


class ResumeError(RuntimeError):
    """``--resume`` cannot continue: the analysis options differ from the interrupted run's."""


def resume_dir() -> Path:
    env = os.environ.get("FACE_BLUR_RESUME_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "face-blur" / "resume"


def input_identity(source: Path, frame_keys: Iterable[str] = ()) -> dict[str, Any]:
    """What makes an input the same input again (see the module docstring)."""
    source = source.resolve()
    if source.is_dir():
        h = hashlib.sha256()
        for key in frame_keys:
            st = (source / key).stat()
            h.update(f"{key}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"path": str(source), "frames": h.hexdigest()}
    st = source.stat()
    return {"path": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def analysis_options(pipeline_config: Any, detector: str, embedder: str) -> dict[str, Any]:
    """The options that change what pass 1 finds, flattened (``detector.min_face``: 16, ...)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    config = _plain(pipeline_config)
    config.pop("model_dir", None)  # where the files are does not change them; the loaded names below do
    config.pop("gpu_fallback", None)
    config.pop("fixed_size", None)  # how memory is kept, not what is found
    walk("", config)
    flat["loaded detector"] = detector
    flat["loaded embedder"] = embedder or "none"
    return flat


def _encode(frame: int, result: FrameResult) -> bytes:
    f = result.faces
    head = json.dumps({"frame": int(frame), "width": result.width, "height": result.height,
                       "detector": result.detector, "embedder": result.embedder, "n": len(f), "dim": f.dim,
                       "signature": int(result.signature.size)}).encode()
    columns = [f.xyxy, f.confidence, f.landmarks, f.embedding, result.signature]
    body = b"".join(np.ascontiguousarray(c, "<f4").tobytes() for c in columns)
    payload = struct.pack("<I", len(head)) + head + body
    return _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> tuple[int, FrameResult]:
    (n_head,) = struct.unpack_from("<I", payload)
    head = json.loads(payload[4:4 + n_head])
    n, dim, sig = int(head["n"]), int(head["dim"]), int(head["signature"])
    values = np.frombuffer(payload, "<f4", offset=4 + n_head).astype(np.float32)
    sizes = [n * 4, n, n * 10, n * dim, sig]
    if values.size != sum(sizes):
        raise ValueError("record columns do not match their sizes")
    parts, at = [], 0
    for size in sizes:
        parts.append(values[at:at + size])
        at += size
    faces = FrameFaces(xyxy=parts[0].reshape(n, 4), confidence=parts[1], landmarks=parts[2].reshape(n, 5, 2),
                       embedding=parts[3].reshape(n, dim), frame_index=int(head["frame"]))
    return int(head["frame"]), FrameResult(width=int(head["width"]), height=int(head["height"]), faces=faces,
                                           detector=str(head["detector"]), embedder=str(head["embedder"]),
                                           signature=parts[4])


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


class Journal:
    """The append-only journal of one run's frame results (see the module docstring)."""

    def __init__(self, path: Path, fh, resumed: dict[int, FrameResult]) -> None:
        self.path = path
        self._fh = fh
        self.resumed = resumed

    @classmethod
    def open(cls, identity: dict[str, Any], options: dict[str, Any], resume: bool,
             directory: Path | None = None) -> Journal:
        directory = directory or resume_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _expire(directory)
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
        path = directory / f"{key}.journal"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another run over this input is going: this one keeps its own, not resumable
            os.close(fd)
            if resume:
                raise ResumeError(f"--resume: another run over {identity['path']} is still going") from None
            path = directory / f"{key}-{os.getpid()}.journal"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fh = os.fdopen(fd, "r+b")
        header, resumed, good = _read(fh.read())
        if header and not resume:
            if resumed:
                log.info("an interrupted run over %s left %d analysed frames: starting again (--resume "
                         "continues from them)", identity["path"], len(resumed))
            resumed, good = {}, 0
        elif header and header.get("options") != options:
            fh.close()
            diff = "; ".join(_differences(header.get("options") or {}, options))
            raise ResumeError(f"--resume: the interrupted run over {identity['path']} analysed with other "
                              f"options ({diff}); run with those options, or without --resume to start again")
        elif resume and not header:
            log.warning("--resume: no interrupted run over %s was found: starting from the first frame",
                        identity["path"])
        fh.truncate(good)  # a record cut short by the kill goes too
        fh.seek(good)
        if good:
            log.info("--resume: %d frames already analysed (%s)", len(resumed), path)
        else:
            fh.write(json.dumps({"schema": SCHEMA, "input": identity, "options": options}).encode() + b"\n")
            fh.flush()
        return cls(path, fh, resumed)

    def add(self, frame: int, result: FrameResult) -> None:
        self._fh.write(_encode(frame, result))
        self._fh.flush()  # in the OS's hands: survives a kill of this process

    def close(self, keep: bool) -> None:
        """Close; delete unless ``keep`` (the run was interrupted and may be resumed)."""
        if not keep:
            self.path.unlink(missing_ok=True)  # while still locked: no other run reads it half-deleted
        self._fh.close()


def _read(data: bytes) -> tuple[dict[str, Any], dict[int, FrameResult], int]:
    """(header, results, byte length of the good part) of a journal's bytes."""
    end = data.find(b"\n")
    try:
        header = json.loads(data[:end]) if end > 0 else {}
    except ValueError:
        header = {}
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        return {}, {}, 0
    results: dict[int, FrameResult] = {}
    at = end + 1
    while at + _HEAD.size <= len(data):
        magic, length, crc = _HEAD.unpack_from(data, at)
        payload = data[at + _HEAD.size:at + _HEAD.size + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            frame, result = _decode(payload)
        except (ValueError, KeyError, struct.error):
            break
        results[frame] = result
        at += _HEAD.size + length
    return header, results, at


def _expire(directory: Path) -> None:
    limit = time.time() - EXPIRE_DAYS * 86400
    for old in directory.glob("*.journal"):
        try:
            if old.stat().st_mtime < limit:
                old.unlink()
                log.info("removed %s: an interrupted run's results older than %d days", old, EXPIRE_DAYS)
        except OSError:
            continue
