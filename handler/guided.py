"""The guided fine pass: the enlarged detection pass run only on crops around a cheaper pass's
candidates (README "Detection": measured on the development videos, issue 17).

A 640x360 frame is enlarged 1.5x so that 16 px faces reach CenterFace's reliable 24 px; that pass
costs 2.25x the pixels of the frame. Where a cheaper pass over the whole frame (the frame at its own
scale) responds, even at a low score, the enlarged pass runs on a crop of the enlarged image around
the response; elsewhere it does not run. These functions are pure: boxes and rectangles in, boxes
and rectangles out; :func:`detect_in_rects` runs a backend on the crops.

Rectangles are integer ``x0, y0, x1, y1`` in the pixels of the image the fine pass sees, with the
origin on the network's stride grid (``align``, 32 for CenterFace), so a face inside a crop meets
the same convolution grid as in the whole image.
"""

from __future__ import annotations

import numpy as np

from contract import FrameFaces
from contract.boxes import iomin_matrix
from handler.boxes import nms

#: pixels of the fine image a crop extends beyond a guiding box, at least (a 16 px face enlarged is 24)
MIN_MARGIN = 32
#: a crop extends this many box sides beyond its guiding box on each side
MARGIN = 0.75
#: pixels a separate crop is worth, in the merge's sums (the fixed cost of one more network run)
RUN_COST = 64 * 64


def crop_rects(boxes: np.ndarray, scale: float, width: int, height: int, margin: float | None = None,
               min_margin: int = MIN_MARGIN, align: int = 32) -> np.ndarray:
    """(k,4) int rectangles of the fine image (``width`` x ``height`` pixels, the frame times
    ``scale``) covering every box of ``boxes`` (frame pixels) with ``margin`` box sides (at least
    ``min_margin`` fine pixels) around it, aligned to ``align`` and clipped to the image, unmerged."""
    if scale <= 0 or width < 1 or height < 1 or align < 1:
        raise ValueError(f"crop_rects: scale, width, height and align must be positive, got "
                         f"{scale}, {width}, {height}, {align}")
    margin = MARGIN if margin is None else margin
    b = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    if not len(b):
        return np.zeros((0, 4), np.int64)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    pad = np.maximum(margin * side, min_margin)[:, None]
    grown = np.concatenate([b[:, :2] - pad, b[:, 2:] + pad], axis=1)
    x0 = np.floor(np.clip(grown[:, 0], 0, width) / align) * align
    y0 = np.floor(np.clip(grown[:, 1], 0, height) / align) * align
    x1 = np.minimum(np.ceil(np.clip(grown[:, 2], 0, width) / align) * align, width)
    y1 = np.minimum(np.ceil(np.clip(grown[:, 3], 0, height) / align) * align, height)
    rects = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    return rects[(rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])]


def _padded_area(r: np.ndarray, align: int) -> int:
    """Pixels the network processes for a rectangle (padded up to ``align`` on the right and bottom)."""
    return int(-(-(r[2] - r[0]) // align) * align * (-(-(r[3] - r[1]) // align) * align))


def merge_rects(rects: np.ndarray, align: int = 32, run_cost: int = RUN_COST) -> np.ndarray:
    """Fewer rectangles covering at least ``rects``: two are replaced by their bounding rectangle
    wherever that costs no more pixels than running both (``run_cost`` counted per run), until no
    pair qualifies. Overlapping crops are always merged (their bounding box costs at most their sum
    plus the corners); distant ones stay apart."""
    out = [np.asarray(r, np.int64) for r in np.asarray(rects, np.int64).reshape(-1, 4)]
    merged = True
    while merged and len(out) > 1:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                union = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], np.int64)
                inter_w = min(a[2], b[2]) - max(a[0], b[0])
                inter_h = min(a[3], b[3]) - max(a[1], b[1])
                if (inter_w > 0 and inter_h > 0) or \
                        _padded_area(union, align) <= _padded_area(a, align) + _padded_area(b, align) + run_cost:
                    out[i] = union
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return np.stack(out) if out else np.zeros((0, 4), np.int64)


def rect_fraction(rects: np.ndarray, width: int, height: int, align: int = 32) -> float:
    """The fine pass's cost on ``rects`` as a share of its cost on the whole image (pixels
    processed, each padded to ``align``)."""
    whole = _padded_area(np.array([0, 0, width, height]), align)
    return sum(_padded_area(r, align) for r in np.asarray(rects).reshape(-1, 4)) / whole


def guided_by(faces: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) bool: which of the boxes ``faces`` found on crops overlap a guiding box at all. On a
    crop's inner edges the network sees the content end as at a frame border, and there it
    responds to texture the whole pass ignores (measured on the ``small`` clip: about ten 0.05-0.18
    candidates a frame, 4-17 frame pixels from a crop's edge, none over a guiding box; confirmed
    over time they became stray blur); a face the guide pointed at overlaps its guiding box."""
    f = np.asarray(faces, np.float32).reshape(-1, 4)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(f) or not len(b):
        return np.zeros(len(f), bool)
    return (iomin_matrix(f, b) > 0).any(axis=1)


def detect_in_rects(detect_at, image: np.ndarray, rects: np.ndarray, min_face: float, iou: float) -> FrameFaces:
    """Faces that ``detect_at(crop, min_face)`` finds on each rectangle of ``image``, in ``image``'s
    pixels; duplicates from overlapping crops go by NMS at ``iou``."""
    parts = []
    for x0, y0, x1, y1 in np.asarray(rects, np.int64).reshape(-1, 4):
        faces = detect_at(np.ascontiguousarray(image[y0:y1, x0:x1]), min_face)
        if len(faces):
            shift = np.array([x0, y0], np.float32)
            parts.append(FrameFaces(xyxy=faces.xyxy + np.tile(shift, 2), confidence=faces.confidence,
                                    landmarks=faces.landmarks + shift,
                                    embedding=np.zeros((len(faces), 0), np.float32)))
    if not parts:
        return FrameFaces.empty()
    faces = FrameFaces.concat(parts)
    return faces[nms(faces.xyxy, faces.confidence, iou)] if len(parts) > 1 else faces
