"""Boxes for the frames of a sequence without a detection: inside it (:func:`interpolate_gaps`) and
a few frames before and after it (:func:`pad_track`, anti-flicker), so a face the detector misses
now and then is still covered in every frame; padding ends where another face takes the place
(:func:`trim_handovers`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.interpolate import PchipInterpolator

from contract.boxes import area, intersection_matrix
from postprocess.config import INTERPOLATIONS as METHODS
from postprocess.tracking import FaceTrack


def interpolate_gaps(track: FaceTrack, method: str = "pchip") -> FaceTrack:
    """A new track with a row for every frame from first to last; the added rows get boxes
    interpolated per coordinate (``pchip``: shape-preserving, no overshoot; or ``linear``), landmarks
    interpolated linearly, confidence 0, a zero embedding and ``interpolated=True``."""
    if method not in METHODS:
        raise ValueError(f"interpolation method must be one of {', '.join(METHODS)}, got {method!r}")
    if len(track) < 2 or track.last - track.first + 1 == len(track):
        return track.rows(slice(None))
    frames = np.arange(track.first, track.last + 1, dtype=np.int64)
    at = frames - track.first
    known = track.frames - track.first
    m = len(frames)
    if method == "pchip" and len(track) > 2:
        xyxy = PchipInterpolator(known, track.xyxy.astype(np.float64), axis=0)(at)
    else:
        xyxy = np.stack([np.interp(at, known, track.xyxy[:, k]) for k in range(4)], axis=1)
    # a box never turns inside out between two detections
    for lo, hi in ((0, 2), (1, 3)):
        bad = xyxy[:, lo] > xyxy[:, hi]
        mid = (xyxy[bad, lo] + xyxy[bad, hi]) / 2
        xyxy[bad, lo], xyxy[bad, hi] = mid, mid
    flat = track.landmarks.reshape(len(track), 10)
    marks = np.stack([np.interp(at, known, flat[:, k]) for k in range(10)], axis=1).reshape(m, 5, 2)
    conf = np.zeros(m, np.float32)
    emb = np.zeros((m, track.dim), np.float32)
    interp = np.ones(m, bool)
    padded = np.zeros(m, bool)
    index = np.full(m, -1, np.int64)
    conf[known], emb[known], index[known] = track.confidence, track.embeddings, track.face_index
    interp[known], padded[known] = track.interpolated, track.padded
    xyxy[known] = track.xyxy  # detections stay exactly as found
    return replace(track, frames=frames, xyxy=xyxy, confidence=conf, landmarks=marks, embeddings=emb,
                   interpolated=interp, padded=padded, face_index=index)


def pad_track(track: FaceTrack, frames: int, lowest: int, highest: int, growth: float = 0.05) -> FaceTrack:
    """A new track extended by up to ``frames`` rows at both ends, never beyond ``lowest``..``highest``
    (the shot's first and last frame). Each added row repeats the end box grown about its centre by
    ``growth`` x its size per frame of distance; rows are flagged ``padded``."""
    if frames < 0 or growth < 0:
        raise ValueError(f"padding needs frames >= 0 and growth >= 0, got {frames}, {growth}")
    if len(track) == 0 or frames == 0:
        return track.rows(slice(None))
    before = np.arange(max(lowest, track.first - frames), track.first, dtype=np.int64)
    after = np.arange(track.last + 1, min(highest, track.last + frames) + 1, dtype=np.int64)
    if not len(before) and not len(after):
        return track.rows(slice(None))

    def grown(box: np.ndarray, distance: np.ndarray) -> np.ndarray:
        centre = (box[:2] + box[2:]) / 2
        half = (box[2:] - box[:2]) / 2
        scale = 1.0 + growth * distance[:, None]
        return np.concatenate([centre - half * scale, centre + half * scale], axis=1)

    parts_xyxy = [grown(track.xyxy[0], track.first - before), track.xyxy, grown(track.xyxy[-1], after - track.last)]
    nb, na, d = len(before), len(after), track.dim
    return replace(
        track,
        frames=np.concatenate([before, track.frames, after]),
        xyxy=np.concatenate(parts_xyxy),
        confidence=np.concatenate([np.zeros(nb), track.confidence, np.zeros(na)]),
        landmarks=np.concatenate([np.repeat(track.landmarks[:1], nb, 0), track.landmarks,
                                  np.repeat(track.landmarks[-1:], na, 0)]),
        embeddings=np.concatenate([np.zeros((nb, d)), track.embeddings, np.zeros((na, d))]),
        interpolated=np.concatenate([np.zeros(nb, bool), track.interpolated, np.zeros(na, bool)]),
        padded=np.concatenate([np.ones(nb, bool), track.padded, np.ones(na, bool)]),
        face_index=np.concatenate([np.full(nb, -1), track.face_index, np.full(na, -1)]),
    )


def trim_handovers(tracks: list[FaceTrack], faces: list[bool], min_overlap: float = 0.5) -> list[FaceTrack]:
    """``tracks`` with padding cut where another face takes the place: padding guesses the face is
    still there, undetected, so a detection of a sequence that *succeeds* this one at that place
    (its detections all after this one's last, or all before its first, for padding at the start)
    proves the guess wrong from that frame on. Measured on the development set: a cut that the shot
    detector misses (same room, same framing) hands the place to the next person, whom the padding
    blurred for 5 frames; a sequence split at the frame border pads over its own continuation.

    ``faces``: per track, whether it is a face (sequences rejected as noise take no place).
    Overlap: intersection over the smaller box >= ``min_overlap``. Two sequences detected in the
    same frames (two people side by side, one walking behind the other) never trim each other: a
    face hidden behind another keeps its padding. Only padded rows are removed."""
    spans = [(int(t.frames[t.detected][0]), int(t.frames[t.detected][-1])) if t.detected.any() else None
             for t in tracks]
    at: dict[int, list[tuple[int, np.ndarray]]] = {}
    for j, t in enumerate(tracks):
        if faces[j] and spans[j] is not None:
            for f, box in zip(t.frames[t.detected].tolist(), t.xyxy[t.detected], strict=True):
                at.setdefault(f, []).append((j, box))

    def taken(i: int, row: int, after: bool) -> bool:
        first, last = spans[i]  # type: ignore[misc]
        box = tracks[i].xyxy[row]
        for j, other in at.get(int(tracks[i].frames[row]), []):
            a, b = spans[j]  # type: ignore[misc]
            if j == i or (a <= last if after else b >= first):
                continue
            inter = intersection_matrix(box[None], other[None])[0, 0]
            smaller = min(area(box[None])[0], area(other[None])[0])
            if smaller > 0 and inter / smaller >= min_overlap:
                return True
        return False

    out = []
    for i, t in enumerate(tracks):
        if spans[i] is None or not t.padded.any():
            out.append(t)
            continue
        keep = np.ones(len(t), bool)
        det = np.flatnonzero(t.detected)
        for row in range(det[-1] + 1, len(t)):  # padding after the sequence, outwards
            if t.padded[row] and taken(i, row, after=True):
                keep[row:] = False
                break
        for row in range(det[0] - 1, -1, -1):  # padding before it, outwards
            if t.padded[row] and taken(i, row, after=False):
                keep[:row + 1] = False
                break
        out.append(t if keep.all() else t.rows(keep))
    return out
