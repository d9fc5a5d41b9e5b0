"""The detector interface. Every backend returns boxes, scores and 5 landmarks per face as a
:class:`contract.FrameFaces` with an empty (n, 0) embedding, in pixels of the image it was given.

Backends: ``mtcnn`` (handler/mtcnn.py), ``centerface`` (handler/centerface.py) and ``ensemble``
(handler/ensemble.py, both merged). ``create_detector`` builds one from a :class:`DetectorConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from contract import FrameFaces

BACKENDS = ("mtcnn", "centerface", "ensemble")


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> FrameFaces:
        """``image`` HxWx3 uint8 RGB -> faces in that image's pixels (embedding dim 0)."""
        ...


@dataclass(frozen=True)
class DetectorConfig:
    """Detection options (README: "Detection options")."""

    backend: str = "ensemble"
    min_face: int = 16
    max_side: int = 1280  # frames with a longer side are downscaled for detection, boxes scaled back
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    centerface_threshold: float = 0.4
    enhance_dark: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"detector backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.min_face < 4:
            raise ValueError(f"min_face must be at least 4 pixels, got {self.min_face}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {self.max_side}")
        if len(self.mtcnn_thresholds) != 3 or not all(0 < t < 1 for t in self.mtcnn_thresholds):
            raise ValueError(f"mtcnn_thresholds must be three numbers in (0, 1), got {self.mtcnn_thresholds}")
        if not 0 < self.centerface_threshold < 1:
            raise ValueError(f"centerface_threshold must be in (0, 1), got {self.centerface_threshold}")


def create_detector(config: DetectorConfig, model_dir: Path | None, providers: list[str]) -> Detector:
    """Load the configured backend's sessions once. Raises ``handler.runtime.ModelLoadError``."""
    raise NotImplementedError("filled in by the detection work")
