"""Vectorised box utilities of the detection backends: NMS, clipping, squaring, regression. Areas and
overlaps (IoU) live in :mod:`contract.boxes`, shared with post-processing.

Boxes are float arrays of shape (n, 4) as ``x1, y1, x2, y2`` in continuous pixel coordinates
(``x2 - x1`` is the width); points are (..., 2) arrays of ``x, y``. Every function returns a new
array and leaves its inputs untouched.
"""

from __future__ import annotations

import numpy as np

from contract.boxes import EPS, as_boxes


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when its overlap with a better-scoring kept box exceeds ``threshold``;
    ``mode`` is ``"union"`` (IoU) or ``"min"`` (intersection over the smaller box). Each step
    compares one box against all remaining ones at once.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"nms got {len(b)} boxes but {len(s)} scores")
    x1, y1, x2, y2 = (b[:, k].astype(np.float64) for k in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        if mode == "union":
            denom = areas[best] + areas[rest] - inter
        else:
            denom = np.minimum(areas[best], areas[rest])
        overlap = np.where(denom > EPS, inter / np.maximum(denom, EPS), 0.0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the frame ``[0, width] x [0, height]``."""
    b = as_boxes(boxes).copy()
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    return b


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square of its longer side about the same centre."""
    b = as_boxes(boxes)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def regress_boxes(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply (n, 4) offsets given as fractions of each box's width/height to its corners."""
    b = as_boxes(boxes)
    d = np.asarray(offsets, dtype=np.float32).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b + d * np.stack([w, h, w, h], axis=1)
