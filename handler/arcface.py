"""ArcFace-style embedders: any ONNX model that maps an aligned face crop to one vector.

What differs between such models (input name, crop size, NCHW or NHWC, RGB or BGR, mean/std,
fixed or dynamic batch, output name and width) comes from a :class:`ArcFaceSpec`, normally built
from the model's manifest entry (``model/manifest.json``). The spec is checked against the model's
own signature when it loads; whatever the spec leaves out is read from the model.

Per frame: every face is aligned with the 5-point similarity transform (handler/align.py), the
crops are batched (a fixed-batch model gets its last batch padded), run, and L2-normalised.

Test-time flip (``flip``, README "Choosing who is blurred"): every face is embedded as the
normalised sum of the embeddings of its aligned crop and of the crop's mirror image (the standard
trick for ArcFace-family models, trained on mirrored faces too), which averages out some of what a
single crop's noise, light and pose put into the vector. It doubles the network's work per face.
Measured with MobileFaceNet on the development clips (per sample, faces under 64 px): true matches
above the impostors' 99th percentile 0.66 -> 0.70, the highest impostor 0.41 -> 0.39. Flipping only
the small faces was measured too and lost the gain: the reference photos are large faces, and it is
their vectors too that move (the far witness against another person's photo: 0.08 -> 0.01).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handler.align import align_faces
from handler.runtime import ModelLoadError, open_session, session_provider

log = logging.getLogger(__name__)

LAYOUTS = ("NCHW", "NHWC")
COLOURS = ("RGB", "BGR")
_EPS = 1e-12


@dataclass(frozen=True)
class ArcFaceSpec:
    """How to feed one ArcFace-style model (the manifest's ``input``/``output`` fields).

    ``input_name``/``output_name``/``batch``/``dim`` left as None are read from the model;
    given, they must agree with it (a model with a single input or output may name it otherwise).
    ``batch`` is a fixed batch size; ``max_batch`` bounds the chunks sent to a model with a
    dynamic batch.
    """

    name: str
    size: int = 112
    layout: str = "NCHW"
    colour: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    input_name: str | None = None
    output_name: str | None = None
    batch: int | None = None
    dim: int | None = None
    max_batch: int = 32
    flip: bool = False  # test-time flip: each face's vector is that of its crop plus its mirror image's

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ArcFaceSpec.name must be set (it is written into every frame result)")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        if self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values each, std positive; got {self.mean}, {self.std}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be a positive integer or None, got {self.batch}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be a positive integer or None, got {self.dim}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be true or false, got {self.flip!r}")

    @classmethod
    def from_manifest(cls, name: str, input: dict[str, Any] | None,
                      output: dict[str, Any] | None) -> ArcFaceSpec:
        """From a manifest entry's ``input``/``output`` objects."""
        inp, out = input or {}, output or {}
        known_in = {"name", "size", "layout", "colour", "mean", "std", "batch", "flip"}
        unknown = (set(inp) - known_in) | (set(out) - {"name", "dim"})
        if unknown:
            raise ValueError(f"model {name!r}: unknown input/output fields {sorted(unknown)}")
        return cls(
            name=name,
            size=int(inp.get("size", 112)),
            layout=inp.get("layout", "NCHW"),
            colour=inp.get("colour", "RGB"),
            mean=tuple(float(v) for v in inp.get("mean", (127.5,) * 3)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in inp.get("std", (128.0,) * 3)),  # type: ignore[arg-type]
            input_name=inp.get("name"),
            output_name=out.get("name"),
            batch=inp.get("batch"),
            dim=out.get("dim"),
            flip=inp.get("flip", False),
        )


def preprocess(crops: np.ndarray, spec: ArcFaceSpec) -> np.ndarray:
    """(n, s, s, 3) uint8 RGB crops -> the model's float32 input tensor."""
    x = crops.astype(np.float32)
    if spec.colour == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, _EPS)).astype(np.float32)


def _fixed(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, (int, np.integer)) and dim > 0 else None


def _pick(kind: str, wanted: str | None, available: list[Any], path: Path) -> Any:
    """The model's input or output named ``wanted``. A model with a single one is used whatever its
    name (a renamed tensor does not change what it means; the warning says so); with several, the
    name must match."""
    names = [a.name for a in available]
    for a in available:
        if a.name == wanted:
            return a
    if len(available) == 1:
        if wanted is not None:
            log.warning("model file %s has %s %r, not %r as its manifest entry says; using it",
                        path, kind, names[0], wanted)
        return available[0]
    if wanted is None:
        raise ModelLoadError(f"model file {path} has {kind}s {names}; name one in the manifest")
    raise ModelLoadError(f"model file {path} has no {kind} {wanted!r} (it has {names}); "
                         "check its manifest entry")


class ArcFaceEmbedder:
    """An ONNX face embedder with ArcFace-style input; ``embed`` aligns, batches and normalises."""

    def __init__(self, session: Any, spec: ArcFaceSpec, path: Path) -> None:
        self.session = session
        self.spec = spec
        self.name = spec.name
        self.path = Path(path)
        inp = _pick("input", spec.input_name, session.get_inputs(), self.path)
        out = _pick("output", spec.output_name, session.get_outputs(), self.path)
        self._input, self._output = inp.name, out.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelLoadError(f"model file {path}: input {inp.name!r} has shape {shape}, expected 4 dims")
        spatial = shape[2:4] if spec.layout == "NCHW" else shape[1:3]
        channels = shape[1] if spec.layout == "NCHW" else shape[3]
        if _fixed(channels) not in (None, 3) or any(_fixed(d) not in (None, spec.size) for d in spatial):
            raise ModelLoadError(
                f"model file {path}: input {inp.name!r} has shape {shape}, which is not {spec.layout} with "
                f"3 channels of {spec.size}x{spec.size}; check layout/size in its manifest entry")
        model_batch = _fixed(shape[0])
        if spec.batch is not None and model_batch is not None and spec.batch != model_batch:
            raise ModelLoadError(f"model file {path}: batch is fixed at {model_batch}, "
                                 f"manifest says {spec.batch}")
        self.fixed_batch = model_batch
        self.chunk = model_batch or spec.max_batch
        model_dim = _fixed(list(out.shape)[-1]) if out.shape else None
        if spec.dim is not None and model_dim is not None and spec.dim != model_dim:
            raise ModelLoadError(f"model file {path}: output {out.name!r} is {model_dim}-d, "
                                 f"manifest says {spec.dim}")
        self.dim = spec.dim or model_dim or self._probe_dim()

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its session got."""
        return {self.path.name: session_provider(self.session)}

    def _probe_dim(self) -> int:
        """Run one blank batch to learn the output width of a model that does not declare it."""
        n = self.fixed_batch or 1
        blank = np.zeros((n, self.spec.size, self.spec.size, 3), np.uint8)
        return int(self._run(preprocess(blank, self.spec)).shape[1])

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        out = self.session.run([self._output], {self._input: tensor})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(tensor), -1)

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 RGB aligned crops -> (n, dim) float32, unit L2 norm."""
        n = len(crops)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        tensor = preprocess(np.asarray(crops, dtype=np.uint8), self.spec)
        parts = []
        for start in range(0, n, self.chunk):
            part = tensor[start:start + self.chunk]
            real = len(part)
            if self.fixed_batch is not None and real < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - real, *part.shape[1:]), np.float32)
                part = np.concatenate([part, pad])
            parts.append(self._run(part)[:real])
        vectors = np.concatenate(parts)
        if vectors.shape[1] != self.dim:
            raise RuntimeError(f"{self.name}: model gave {vectors.shape[1]}-d vectors, expected {self.dim}")
        return l2_normalise(vectors)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 RGB aligned crops -> (n, dim) float32, unit L2 norm; with
        ``spec.flip`` each crop's vector plus its mirror image's, run in the same batches."""
        crops = np.asarray(crops, dtype=np.uint8)
        if not self.spec.flip or not len(crops):
            return self.embed_aligned(crops)
        vectors = self.embed_aligned(np.concatenate([crops, np.ascontiguousarray(crops[:, :, ::-1])]))
        return l2_normalise(vectors[:len(crops)] + vectors[len(crops):])

    def embed(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB, ``landmarks`` (n,5,2), ``boxes`` (n,4) -> (n, dim) float32."""
        return self.embed_crops(align_faces(image, landmarks, boxes, self.spec.size))


def load_arcface(spec: ArcFaceSpec, path: str | Path, providers: list[str],
                 threads: int = 0) -> ArcFaceEmbedder:
    """Open the model once; a missing, corrupt or mismatching file raises ModelLoadError naming it."""
    path = Path(path)
    embedder = ArcFaceEmbedder(open_session(path, providers, threads), spec, path)
    log.info("embedder %s: %s, %d-d, %s %s %dx%d, batch %s", spec.name, path.name, embedder.dim, spec.layout,
             spec.colour, spec.size, spec.size, embedder.fixed_batch or "dynamic")
    return embedder
