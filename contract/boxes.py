"""Box areas and overlaps, vectorised: the one IoU of the project (detection backends in
``handler/``, sequence linking in ``postprocess/tracking.py``). Boxes are (n, 4) float arrays
``x1, y1, x2, y2`` in continuous pixels; a zero union or area gives 0, never NaN. numpy only."""

from __future__ import annotations

import numpy as np

EPS = 1e-9


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` as float32 (n, 4); raises ValueError naming the shape otherwise."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {arr.shape}")
    return arr


def area(boxes: np.ndarray) -> np.ndarray:
    """Area of each box; inverted or empty boxes count as 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection areas of every box of ``a`` with every box of ``b``."""
    a, b = as_boxes(a), as_boxes(b)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union. A zero union (two empty boxes) gives 0, never NaN."""
    inter = intersection_matrix(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > EPS, inter / np.maximum(union, EPS), 0.0).astype(np.float32)


def iomin_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over the smaller of the two areas (MTCNN's ``Min`` overlap); guarded like IoU."""
    inter = intersection_matrix(a, b)
    smaller = np.minimum(area(a)[:, None], area(b)[None, :])
    return np.where(smaller > EPS, inter / np.maximum(smaller, EPS), 0.0).astype(np.float32)
