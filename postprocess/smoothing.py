"""Steadier boxes: a centred moving average over time (offline, so no lag), never smaller than raw.

The box centre and the box size are averaged separately over ``window`` frames centred on each
frame (the ends point-reflected, so steady motion is followed to the last frame), which keeps the
overall motion and removes jitter.
Privacy: the box is then widened about that smoothed centre, per axis, until it holds the raw
(detected or interpolated) box of the frame; that widening is the moving maximum over the same
window. So the centre moves smoothly, the size changes calmly, and a face the detector boxed
is always fully covered (the blurred box may be a little larger than the raw one, never smaller).
Call it on a gap-free track (after :func:`postprocess.interpolate.interpolate_gaps`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from postprocess.tracking import FaceTrack


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0; the ends are point-reflected, so steady motion is
    followed to the last frame instead of lagging."""
    half = window // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="reflect", reflect_type="odd")
    return uniform_filter1d(padded, size=window, axis=0, mode="nearest")[half:half + len(values)]


def smooth_boxes(xyxy: np.ndarray, window: int = 5) -> np.ndarray:
    """(m,4) -> (m,4): centred moving average of centre and size, widened to hold each raw box."""
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1 frame, got {window}")
    boxes = np.asarray(xyxy, np.float64)
    if window == 1 or len(boxes) < 2:
        return boxes.astype(np.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    centre = _moving_average(centre, window)
    size = _moving_average(size, window)
    half = size / 2
    excess = np.maximum(np.maximum(centre - boxes[:, :2], boxes[:, 2:] - centre) - half, 0.0)
    half = half + maximum_filter1d(excess, size=window, axis=0, mode="nearest")
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def smooth_track(track: FaceTrack, window: int = 5) -> FaceTrack:
    """A new track whose boxes are :func:`smooth_boxes` of this one's; everything else unchanged."""
    if len(track) > 1 and track.last - track.first + 1 != len(track):
        raise ValueError(f"sequence {track.track_id} has gaps; interpolate before smoothing")
    return replace(track, xyxy=smooth_boxes(track.xyxy, window))
