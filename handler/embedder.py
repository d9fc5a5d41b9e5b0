"""The embedder interface: faces (given by landmarks in the frame) -> L2-normalised vectors.

Backends: ``arcface`` (handler/arcface.py: any ArcFace-style ONNX model described in the model
manifest, e.g. ``arcface-r100`` and ``mobilefacenet``) and ``dlib`` (handler/dlib_embedder.py).
``create_embedder("auto", ...)`` picks the best one present: arcface-r100, then mobilefacenet,
then dlib, and logs the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    name: str  # written into every frame result, e.g. "arcface-r100", "mobilefacenet", "dlib-resnet"
    dim: int

    def embed(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB, ``landmarks`` (n,5,2), ``boxes`` (n,4) -> (n, dim) float32, unit norm."""
        ...


def create_embedder(name: str, model_dir: Path | None, providers: list[str]) -> Embedder:
    raise NotImplementedError("filled in by the identity work")
