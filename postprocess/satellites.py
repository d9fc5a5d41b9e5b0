"""Candidates beside a face kept clear do not blur that face: their boxes are cut back to its edge.

Since issue 14 the detector lists candidates down to CenterFace 0.05, and a candidate sequence
confirmed over time but never scoring ``face_score`` carries no embedding, so identity cannot
decide it and it is blurred. Measured on the development clips (bench/identity_clips.py, dim wide
shot): such sequences stuck to a confidently detected face in every frame are *satellites* of it:
windows on the ear, the hair line, half of the face, the flag behind the head (score about 0.1,
smaller than the face). Blurred, they covered 20-56% of a face that had to stay clear (a
bystander in ``known``), which no identity decision could help. On the bright and dim clips of
the development set none of these sequences was a real face, but a real dim face can be one
(a small face in a crowd behind someone), so the candidate stays blurred, only not over the face:

- the face kept clear is detected with confidence there, whole, in front: where the two boxes
  overlap, what the image shows is that face, so blurring the overlap hides nothing else;
- the candidate's box is cut back to that face's edge on one side, where what remains still holds
  all of the candidate outside the face but at most ``SLACK`` of its area (the face spans nearly
  all of the candidate's height or width). Otherwise (a corner overlap) the box stays as it is.

Pure numpy on :class:`~postprocess.tracking.FaceTrack`; run after identity, on the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from postprocess.tracking import FaceTrack

SLACK = 0.1  # of the candidate's area: the most of it outside the face that a cut may leave unblurred


def cut_back(box: np.ndarray, face: np.ndarray, slack: float = SLACK) -> np.ndarray:
    """``box`` (4,) cut back to one edge of ``face`` (4,), the side that leaves the least of the
    candidate outside the face unblurred, if that is at most ``slack`` of its area (the face spans
    nearly all of the candidate's height or width); else ``box`` unchanged. Never empty."""
    x1, y1, x2, y2 = (float(v) for v in box)
    fx1, fy1, fx2, fy2 = (float(v) for v in face)
    w, h = x2 - x1, y2 - y1
    iw, ih = min(x2, fx2) - max(x1, fx1), min(y2, fy2) - max(y1, fy1)
    if w <= 0 or h <= 0 or iw <= 0 or ih <= 0:
        return box
    outside = w * h - iw * ih  # the candidate's area outside the face: all of it stays blurred...
    sides = [(fx2, y1, x2, y2), (x1, y1, fx1, y2), (x1, fy2, x2, y2), (x1, y1, x2, fy1)]
    best, lost = None, slack * w * h  # ...but for at most ``slack`` of its area
    for s in sides:
        sw, sh = s[2] - s[0], s[3] - s[1]
        if sw >= 1 and sh >= 1 and outside - sw * sh <= lost:
            best, lost = s, outside - sw * sh
    return box if best is None else np.array(best, np.float32)


def spare_kept_faces(tracks: list[FaceTrack], decisions: Mapping[int, object], unscored: set[int],
                     face_score: float) -> tuple[list[FaceTrack], dict[int, int]]:
    """``tracks`` with the boxes of blurred candidate sequences (in ``unscored``: no embedding, no
    detection reaching ``face_score``) cut back from every face kept clear that is detected with
    confidence in the same frame; and per changed track id, how many rows were cut.
    ``decisions``: track id -> an object with a ``decision`` attribute."""
    kept: dict[int, list[np.ndarray]] = {}
    for t in tracks:
        if getattr(decisions[t.track_id], "decision", "") != "keep":
            continue
        sure = t.detected & (t.confidence >= face_score)
        for f, box in zip(t.frames[sure].tolist(), t.xyxy[sure], strict=True):
            kept.setdefault(f, []).append(box)
    out, cut = [], {}
    for t in tracks:
        if t.track_id not in unscored or getattr(decisions[t.track_id], "decision", "") != "blur" \
                or (t.confidence[t.detected] >= face_score).any():
            out.append(t)
            continue
        xyxy = t.xyxy.copy()
        n = 0
        for r, f in enumerate(t.frames.tolist()):
            before = xyxy[r].copy()
            for face in kept.get(f, []):
                xyxy[r] = cut_back(xyxy[r], face)
            n += not np.array_equal(before, xyxy[r])
        if n:
            cut[t.track_id] = n
            t = FaceTrack(t.track_id, t.shot, t.frames, xyxy, t.confidence, t.landmarks, t.embeddings,
                          t.interpolated, t.padded, t.face_index)
        out.append(t)
    return out, cut
