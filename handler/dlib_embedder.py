"""dlib's ResNet face descriptor (128-d) as an :class:`handler.embedder.Embedder`.

dlib aligns faces its own way: its 5-point shape predictor runs inside each detector box and
``compute_face_descriptor`` warps to its 150x150 chip from those points. The landmarks of our
detectors are therefore not used; the box is all dlib needs. Runs on the CPU in dlib (about 75 ms
a face), not in onnxruntime.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from handler.arcface import l2_normalise
from handler.runtime import ModelLoadError

log = logging.getLogger(__name__)

NAME = "dlib-resnet"
DIM = 128


class DlibEmbedder:
    name = NAME
    dim = DIM

    def __init__(self, recognition_path: str | Path, predictor_path: str | Path, jitters: int = 0) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ModelLoadError(f"the dlib embedder needs the dlib-bin package: {exc}") from None
        if jitters < 0:
            raise ValueError(f"jitters must be 0 or more, got {jitters}")
        self._dlib = dlib
        self.jitters = jitters
        loaded = []
        for path, cls in ((Path(recognition_path), dlib.face_recognition_model_v1),
                          (Path(predictor_path), dlib.shape_predictor)):
            if not path.is_file():
                raise ModelLoadError(f"model file not found: {path}")
            try:
                loaded.append(cls(str(path)))
            except RuntimeError as exc:
                raise ModelLoadError(f"model file {path} could not be loaded: {exc}") from None
        self._model, self._predictor = loaded
        log.info("embedder %s: %s + %s", NAME, Path(recognition_path).name, Path(predictor_path).name)

    def embed(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB, ``boxes`` (n,4) -> (n, 128) float32, unit L2 norm."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, DIM), np.float32)
        img = np.ascontiguousarray(image, dtype=np.uint8)
        shapes = self._dlib.full_object_detections()
        for x1, y1, x2, y2 in boxes:
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shapes.append(self._predictor(img, rect))
        vectors = self._model.compute_face_descriptor(img, shapes, self.jitters)
        return l2_normalise(np.array([np.asarray(v) for v in vectors], dtype=np.float32))
