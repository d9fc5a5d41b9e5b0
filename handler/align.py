"""Face alignment: the 5-point similarity transform to the 112x112 ArcFace template, and the warp.

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner,
"left" meaning the image's left. Coordinates follow the usual detector convention in which the
centre of pixel ``(i, j)`` is the point ``(i, j)``; :func:`warp` honours it (as OpenCV's
``warpAffine`` does), so the template points of an aligned face sit exactly where the model's
training data had them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TEMPLATE_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_MIN_EYE_DISTANCE = 1.0  # pixels: below this the landmarks say nothing about rotation or scale


def template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The ArcFace template scaled to a ``size`` x ``size`` crop, (5, 2) float64."""
    return ARCFACE_TEMPLATE * (size / TEMPLATE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    the points ``src`` (k, 2) onto ``dst`` (k, 2), as a 2x3 matrix ``M`` with ``dst ~ M @ [x, y, 1]``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns".
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (k, 2) point sets with k >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0:
        raise ValueError("source points all coincide; no transform is defined")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # the best orthogonal map is a reflection: take the best rotation instead
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (..., 2) mapped by the 2x3 ``matrix``."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def landmarks_usable(landmarks: np.ndarray) -> bool:
    """Finite, and the eyes far enough apart to define rotation and scale."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return bool(np.all(np.isfinite(lm)) and np.linalg.norm(lm[1] - lm[0]) >= _MIN_EYE_DISTANCE)


def landmarks_from_box(box: np.ndarray) -> np.ndarray:
    """Template landmarks placed in a face box (x1, y1, x2, y2): the fallback for faces whose
    landmarks are missing or degenerate, so that every detected face still gets an embedding."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    unit = (ARCFACE_TEMPLATE - TEMPLATE_SIZE / 2) / TEMPLATE_SIZE
    return unit * side + np.array([cx, cy])


def alignment_matrix(landmarks: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """2x3 matrix taking frame coordinates to the ``size`` x ``size`` aligned crop."""
    return similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template(size))


def warp(image: Image.Image, matrix: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``image`` under ``matrix`` (frame -> crop), bilinear,
    black outside the frame; HxWx3 uint8.

    Pillow's affine transform wants the inverse map (crop -> frame) in coordinates whose pixel
    centres sit at ``i + 0.5``; the half-pixel shifts below convert from the centre-at-``i``
    convention of the landmarks.
    """
    forward = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)[:2]
    a = inverse[:, :2]
    offset = inverse[:, 2] + 0.5 - a @ np.array([0.5, 0.5])
    coeffs = (a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1])
    out = image.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def align_faces(image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray | None = None,
                size: int = TEMPLATE_SIZE) -> np.ndarray:
    """Every face of one frame aligned: ``image`` HxWx3 uint8 RGB, ``landmarks`` (n, 5, 2) ->
    (n, size, size, 3) uint8. A face whose landmarks are unusable is aligned from its box."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    n = len(landmarks)
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    if n == 0:
        return out
    frame = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    for i in range(n):
        marks = landmarks[i]
        if not landmarks_usable(marks):
            if boxes is None:
                raise ValueError(f"face {i}: landmarks unusable (not finite, or eyes coincide), no box")
            marks = landmarks_from_box(np.asarray(boxes)[i])
        out[i] = warp(frame, alignment_matrix(marks, size), size)
    return out
