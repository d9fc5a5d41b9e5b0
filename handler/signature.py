"""Frame signature for shot-cut detection downstream: computed from the frame already decoded.

A coarse HSV histogram (8 hue x 4 saturation x 4 value bins = 128 values, summing to 1) of a
downscaled copy. Two frames of one shot have a small L1 distance; a cut gives a large one. It says
nothing about faces, so it is not biometric data.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HUE_BINS, SAT_BINS, VAL_BINS = 8, 4, 4
SIZE = (64, 36)


def frame_signature(image: np.ndarray) -> np.ndarray:
    """``image`` HxWx3 uint8 RGB -> float32 (128,) normalised histogram."""
    small = Image.fromarray(image).resize(SIZE, Image.Resampling.BILINEAR).convert("HSV")
    hsv = np.asarray(small, dtype=np.int32).reshape(-1, 3)
    h = hsv[:, 0] * HUE_BINS // 256
    s = hsv[:, 1] * SAT_BINS // 256
    v = hsv[:, 2] * VAL_BINS // 256
    index = (h * SAT_BINS + s) * VAL_BINS + v
    hist = np.bincount(index, minlength=HUE_BINS * SAT_BINS * VAL_BINS).astype(np.float32)
    return hist / max(hist.sum(), 1.0)
