"""Dropping likely false positives: sequences with few detections.

Privacy first (a face left clear is the worst outcome, and "a face visible for one or two frames"
is the peer tools' biggest open problem): a short sequence is dropped only when it is also weak.
A sequence is a likely false positive when it has fewer than ``min_length`` detections AND its
best detector score is below ``keep_score``. A face seen for one or two frames with a confident
detection is kept (and blurred), padding included. Dropped sequences stay in the plan with the
decision "drop", so a reviewer can still flip them to "blur".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from postprocess.tracking import FaceTrack


def is_false_positive(track: FaceTrack, min_length: int = 3, keep_score: float = 0.6, unseen: int = 0) -> bool:
    """True when the sequence has fewer than ``min_length`` detections, none scoring ``keep_score``.
    ``unseen``: frames inside the sequence that were not analysed (adaptive analysis); they count
    as detections, as they would have been had every frame been analysed."""
    detected = track.detected
    count = int(detected.sum()) + int(unseen)
    best = float(track.confidence[detected].max()) if count else 0.0
    return count < min_length and best < keep_score


def filter_tracks(tracks: Sequence[FaceTrack], min_length: int = 3,
                  keep_score: float = 0.6) -> tuple[list[FaceTrack], list[FaceTrack]]:
    """Split into (kept, dropped) by :func:`is_false_positive`; the tracks themselves are unchanged."""
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    drop = np.array([is_false_positive(t, min_length, keep_score) for t in tracks], bool)
    kept = [t for t, d in zip(tracks, drop, strict=True) if not d]
    return kept, [t for t, d in zip(tracks, drop, strict=True) if d]
