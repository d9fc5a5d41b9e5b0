"""The embedder interface: faces (given by landmarks in the frame) -> L2-normalised vectors.

Backends: ``arcface`` (handler/arcface.py: any ArcFace-style ONNX model described in the model
manifest, e.g. ``arcface-r100`` and ``mobilefacenet``) and ``dlib`` (handler/dlib_embedder.py).
``create_embedder("auto", ...)`` picks the best one present: arcface-r100, then mobilefacenet,
then dlib, and logs the choice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from handler.runtime import ModelLoadError

log = logging.getLogger(__name__)

AUTO_ORDER = ("arcface-r100", "mobilefacenet")  # then dlib
DLIB_NAMES = ("dlib", "dlib-resnet")


class Embedder(Protocol):
    name: str  # written into every frame result, e.g. "arcface-r100", "mobilefacenet", "dlib-resnet"
    dim: int

    def embed(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB, ``landmarks`` (n,5,2), ``boxes`` (n,4) -> (n, dim) float32,
        unit L2 norm."""
        ...


def embedder_names() -> list[str]:
    """Every name ``create_embedder`` accepts: ``auto``, the manifest's ArcFace-style embedders, dlib."""
    from model import load_manifest

    arcface = [n for n, e in load_manifest().items() if e.role == "embedder" and e.backend == "arcface"]
    return ["auto", *arcface, *DLIB_NAMES]


def embedder_choices() -> tuple[str, ...]:
    """``none`` plus every name ``create_embedder`` accepts (from the model manifest)."""
    return ("none", *embedder_names())


def _load_arcface(name: str, path: Path, providers: list[str], threads: int) -> Embedder:
    from handler.arcface import ArcFaceSpec, load_arcface
    from model import get_entry

    entry = get_entry(name)
    return load_arcface(ArcFaceSpec.from_manifest(name, entry.input, entry.output), path, providers, threads)


def _load_dlib(model_dir: Path | None) -> Embedder:
    from handler.dlib_embedder import DlibEmbedder
    from model import get_entry, locate

    files = locate("dlib-resnet", model_dir)
    if files is None:
        wanted = ", ".join(f.path for f in get_entry("dlib-resnet").files)
        raise ModelLoadError(f"dlib model files not found: {wanted} in {model_dir} or the installed "
                             "face_recognition_models package")
    return DlibEmbedder(files[0], files[1])


def create_embedder(name: str, model_dir: Path | None, providers: list[str], threads: int = 0) -> Embedder:
    """Load one embedder. ``auto`` takes the best present: arcface-r100, then mobilefacenet (files in
    ``model_dir``), then dlib. An explicit name whose file is missing or corrupt raises
    :class:`ModelLoadError` naming the file; so does a present but corrupt file under ``auto``
    (a broken deployment should fail at start, not quietly run a weaker model)."""
    from model import ManifestError, get_entry

    names = embedder_names()
    if name not in names:
        raise ValueError(f"embedder must be one of {', '.join(names)}, got {name!r}")
    if name in DLIB_NAMES:
        return _load_dlib(model_dir)
    if name != "auto":
        file = get_entry(name).main_file.path
        if model_dir is None:
            raise ModelLoadError(f"model file {file} needed for embedder {name}, but no model directory is set")
        path = Path(model_dir) / file
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path} (embedder {name}; "
                                 f"get it with: python -m model.fetch --dest {model_dir} {name})")
        return _load_arcface(name, path, providers, threads)
    for candidate in AUTO_ORDER:
        try:
            path = Path(model_dir or ".") / get_entry(candidate).main_file.path
        except ManifestError:
            continue
        if model_dir is not None and path.is_file():
            embedder = _load_arcface(candidate, path, providers, threads)
            log.info("embedder auto: chose %s (%s)", candidate, path)
            return embedder
    embedder = _load_dlib(model_dir)
    log.info("embedder auto: chose %s (no %s in %s)", embedder.name, " or ".join(AUTO_ORDER), model_dir)
    return embedder
