"""Ensemble detection: run several detectors on one frame and fuse their faces.

Fusion is a light weighted box fusion: faces are taken best score first; each one that is not yet
claimed takes, from every *other* backend, the unclaimed face that overlaps it most, if by more
than ``iou`` (IoU). The group becomes one face: the confidence-weighted mean box, the highest
confidence, and the landmarks of its best-scoring member. Two faces of one backend are never
fused, and a face that only one backend finds stays as it is, so the ensemble keeps everything
each backend finds.
"""

from __future__ import annotations

import logging

import numpy as np

from contract import FrameFaces
from handler.boxes import iou_matrix
from handler.detector import Detector

log = logging.getLogger(__name__)


def fuse_faces(parts: list[FrameFaces], iou: float = 0.4) -> FrameFaces:
    """Fuse the faces several detectors found in one image (see the module docstring)."""
    if not 0 < iou < 1:
        raise ValueError(f"fusion iou must be in (0, 1), got {iou}")
    faces = FrameFaces.concat(parts)
    source = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    n = len(faces)
    if n < 2:
        return faces
    order = np.argsort(-faces.confidence, kind="stable")
    overlap = iou_matrix(faces.xyxy, faces.xyxy)
    claimed = np.zeros(n, bool)
    boxes, scores, marks = [], [], []
    for lead in order:
        if claimed[lead]:
            continue
        members = [lead]
        for other in sorted(set(source.tolist()) - {int(source[lead])}):
            candidates = np.where(~claimed & (source == other), overlap[lead], 0.0)
            best = int(np.argmax(candidates))
            if candidates[best] > iou:
                members.append(best)
        claimed[members] = True
        weight = np.maximum(faces.confidence[members], 1e-6)
        group = faces.xyxy[members]
        mean = (group * weight[:, None]).sum(0) / weight.sum()
        boxes.append(np.clip(mean, group.min(0), group.max(0)))  # float rounding never leaves the members' span
        scores.append(faces.confidence[lead])
        marks.append(faces.landmarks[lead])
    m = len(boxes)
    return FrameFaces(xyxy=np.array(boxes, np.float32).reshape(m, 4), confidence=np.array(scores, np.float32),
                      landmarks=np.array(marks, np.float32).reshape(m, 5, 2), embedding=np.zeros((m, 0)))


class EnsembleDetector:
    """Several whole-frame detectors on the same frame, fused by :func:`fuse_faces`.

    Each member runs exactly as it would alone (its own resizing and dark-frame step), so the
    ensemble's input to the fusion is each backend's own result.
    """

    name = "ensemble"

    def __init__(self, detectors: list[Detector], iou: float = 0.4) -> None:
        if len(detectors) < 2:
            raise ValueError(f"an ensemble needs at least two detectors, got {len(detectors)}")
        if not 0 < iou < 1:
            raise ValueError(f"fusion iou must be in (0, 1), got {iou}")
        self.detectors = list(detectors)
        self.iou = iou

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> execution provider, over every member."""
        return {k: v for d in self.detectors for k, v in getattr(d, "providers", {}).items()}

    def detect(self, image: np.ndarray) -> FrameFaces:
        parts = [detector.detect(image) for detector in self.detectors]
        counts = [f"{d.name}={len(p)}" for d, p in zip(self.detectors, parts, strict=True)]
        log.debug("ensemble: %s", ", ".join(counts))
        return fuse_faces(parts, self.iou)
