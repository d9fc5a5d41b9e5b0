"""The detector interface and its options. Every backend returns boxes, scores and 5 landmarks per
face as a :class:`contract.FrameFaces` with an empty (n, 0) embedding, in pixels of the image it was
given.

Backends: ``mtcnn`` (handler/mtcnn.py), ``centerface`` (handler/centerface.py) and ``ensemble``
(handler/ensemble.py, both merged). :class:`FrameDetector` does what every network needs around it
(the dark-frame contrast step of handler/enhance.py, resizing the frame for detection within
``max_side``, and boxes and landmarks back in the frame's pixels). The factory,
``handler.detector_factory.create_detector``, builds one from a :class:`DetectorConfig`; it sits
beside the backends, so this module imports none of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from contract import FrameFaces
from contract.boxes import area, iomin_matrix
from handler.boxes import clip_boxes, nms
from handler.enhance import DarkEnhancer
from handler.guided import crop_rects, detect_in_rects, guided_by, merge_rects, rect_fraction

log = logging.getLogger(__name__)

BACKENDS = ("mtcnn", "centerface", "ensemble")
#: CenterFace score a candidate needs (README "Detection": chosen on the video dev set)
CANDIDATE_THRESHOLD = 0.05
#: a detection with less of its box inside the frame than this came from the mirrored border band
MIN_INSIDE = 0.3
#: a larger box scoring this (or at least the smaller box's score) replaces a box lying inside it
FRAGMENT_MIN_SCORE = 0.3
#: guide score around which the enlarged pass runs (README "Detection", guided fine pass; 0: off, the
#: default: with CenterFace's kept memory on a video it saved at most 4% of CPU and moved misses)
GUIDE_THRESHOLD = 0.0
#: the guided fine pass runs where frames are enlarged more than this (640x360 at min_face 16: 1.5)
GUIDE_MIN_SCALE = 1.2
#: crops costing this share of the whole enlarged pass or more: the whole pass runs instead
GUIDE_MAX_SHARE = 0.9


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> FrameFaces:
        """``image`` HxWx3 uint8 RGB -> faces in that image's pixels (embedding dim 0)."""
        ...


class Backend(Protocol):
    """A detection network working in the pixels of the image it is given.

    ``native_min_face``: the smallest face (pixels) it finds reliably at that resolution;
    ``detect_at`` gets ``min_face`` >= that, in the same pixels.
    """

    name: str
    native_min_face: float

    def detect_at(self, image: np.ndarray, min_face: float) -> FrameFaces: ...


@dataclass(frozen=True)
class DetectorConfig:
    """Detection options (README: "Detection options"). The defaults were chosen by recall on the
    degraded photo set of ``python -m bench.detection_recall --sweep`` (19 faces in 10 photos, 16
    degradations, 333 faces in 193 images; see its tables):

    * ``backend``: ``centerface`` found every face of 16 px and more in every degradation (dark,
      night, blur, motion, noise, JPEG, small, half faces; 99.7% with 12 px faces counted) with 1
      false positive; ``ensemble`` found the same faces with 11 false positives in 3x the time;
      ``mtcnn`` alone 83%.
    * ``min_face``: smallest face (frame pixels) to find; frames are resized so that it reaches the
      network's reliable size (CenterFace 24 px, MTCNN 12 px), within ``max_side``.
    * ``max_side``: the longest side a network sees; 1920 keeps full-HD frames at full resolution
      (1280 lost 1 in 19 of the 24 px faces in 1080p frames); larger frames are downscaled.
    * ``mtcnn_thresholds``: P-, R-, O-Net face probabilities; (0.5, 0.6, 0.7) found 2 points more
      than the paper's (0.6, 0.7, 0.7) for 3 more false positives.
    * ``candidate_threshold``: CenterFace heatmap peak a *candidate* needs (issue 14). Candidates
      are not faces yet: post-processing confirms or rejects each sequence of them from its evidence
      over time (postprocess/confirm.py), so this is set for recall on dim video, not for precision
      per frame (README "Detection": measured on the video dev set; the old per-frame threshold
      0.3 lost dim faces whose score sat at 0.05-0.2 for whole sequences).
    * ``enhance_dark``: brighten dark frames for detection (handler/enhance.py). Off by default: on
      gamma-dark, noisy, compressed video (real dim footage) the lift lowered CenterFace's scores
      (0.4 to under 0.1 on a dim face); it had helped only on photos darkened by multiplication.
    * ``border_pad``: mirror this fraction of the shorter side around the frame before detection, so a
      face cut by the frame edge keeps its centre within the network's reach; detections lying mostly
      in the mirrored band (a face's reflection) are dropped. 0: off.
    * ``native_pass``: where the frame is enlarged for small faces, also detect at the frame's own
      scale and merge: a face cut by the border or near half the frame stays whole at 1x.
    * ``guide_threshold`` (CenterFace): where the frame is enlarged for small faces (640x360: 1.5x),
      run the enlarged pass only on crops around the responses of a pass at the frame's own scale
      that score this or more, and around the caller's hints (adaptive analysis' net); the whole
      enlarged pass where the crops would cover most of it (handler/guided.py; README "Detection":
      measured on the development videos). 0: off, the whole enlarged pass.
    """

    backend: str = "centerface"
    min_face: int = 16
    max_side: int = 1920  # frames with a longer side are downscaled for detection, boxes scaled back
    mtcnn_thresholds: tuple[float, float, float] = (0.5, 0.6, 0.7)
    candidate_threshold: float = CANDIDATE_THRESHOLD
    enhance_dark: bool = False
    border_pad: float = 0.0
    native_pass: bool = False
    guide_threshold: float = GUIDE_THRESHOLD

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"detector backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.min_face < 4:
            raise ValueError(f"min_face must be at least 4 pixels, got {self.min_face}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {self.max_side}")
        if len(self.mtcnn_thresholds) != 3 or not all(0 < t < 1 for t in self.mtcnn_thresholds):
            raise ValueError(f"mtcnn_thresholds must be three numbers in (0, 1), got {self.mtcnn_thresholds}")
        if not 0 < self.candidate_threshold < 1:
            raise ValueError(f"candidate_threshold must be in (0, 1), got {self.candidate_threshold}")
        if not 0 <= self.border_pad <= 0.5:
            raise ValueError(f"border_pad must be in [0, 0.5], got {self.border_pad}")
        if not 0 <= self.guide_threshold < 1:
            raise ValueError(f"guide_threshold must be in [0, 1) (0: off), got {self.guide_threshold}")


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a contiguous HxWx3 uint8 array; raises ValueError naming what is wrong."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must be HxWx3 RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


class FrameDetector:
    """A backend applied to whole frames, results in the frame's own pixels (boxes clipped to it).

    The frame is resized for detection by ``backend.native_min_face / min_face``, so that a face of
    ``min_face`` frame pixels reaches the size the backend finds reliably (small frames are
    enlarged, and a large ``min_face`` saves time), but never beyond ``max_side`` pixels on the
    longer side: ``max_side`` caps the cost, and faces under ``min_face * scale`` may be lost where
    it binds. Dark frames are brightened first (``enhancer``). ``name`` is the backend's.

    ``coarse_side`` (single-scale backends such as CenterFace): a second pass with the longer side at
    this many pixels finds close-ups too large for the fine pass (a 500 px face enlarged to 750 px
    came back as a box over half of it). Both passes are merged: duplicates by IoU, and a box lying
    mostly inside a larger one (a fragment of a close-up) gives way to the larger box. 0: off.

    ``guide`` (the same network, its threshold at ``guide_threshold``): where the frame is enlarged
    (``detection_scale`` over ``GUIDE_MIN_SCALE``), the guided fine pass: the guide runs at the
    frame's own scale, and the enlarged pass only on crops around its responses and the caller's
    ``hints`` (handler/guided.py). None: the whole enlarged pass.
    """

    def __init__(self, backend: Backend, min_face: float = 16, max_side: int = 1920,
                 enhancer: DarkEnhancer | None = None, coarse_side: int = 0, border_pad: float = 0.0,
                 native_pass: bool = False, guide: Backend | None = None, guide_threshold: float = 0.0) -> None:
        if min_face <= 0:
            raise ValueError(f"min_face must be positive, got {min_face}")
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {max_side}")
        if coarse_side and coarse_side < 64:
            raise ValueError(f"coarse_side must be 0 (off) or at least 64 pixels, got {coarse_side}")
        self.backend = backend
        self.name = backend.name
        self.min_face = float(min_face)
        self.max_side = int(max_side)
        self.enhancer = enhancer
        self.coarse_side = int(coarse_side)
        if not 0 <= border_pad <= 0.5:
            raise ValueError(f"border_pad must be in [0, 0.5], got {border_pad}")
        self.border_pad = float(border_pad)
        self.native_pass = bool(native_pass)
        if guide is not None and not 0 < guide_threshold < 1:
            raise ValueError(f"guide_threshold must be in (0, 1) with a guide, got {guide_threshold}")
        self.guide = guide
        self.guide_threshold = float(guide_threshold)

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its session got (the backend's)."""
        return dict(getattr(self.backend, "providers", {}))

    def detection_scale(self, height: int, width: int) -> float:
        """Factor from frame pixels to the pixels the backend sees."""
        return min(self.max_side / max(height, width), self.backend.native_min_face / self.min_face)

    def wants_coarse(self, height: int, width: int) -> bool:
        """Whether a frame of this size gets the close-up pass (``coarse_side``)."""
        return bool(self.coarse_side) and self.coarse_side / max(height, width) * 1.5 < self.detection_scale(height,
                                                                                                            width)

    def detect(self, image: np.ndarray, coarse: FrameFaces | None = None,
               hints: FrameFaces | None = None) -> FrameFaces:
        """Faces in ``image``: the passes of :meth:`passes`, merged."""
        parts = self.passes(image, coarse, hints)
        faces = parts[0]
        for part in parts[1:]:
            faces = merge_scales(faces, part)
        return faces

    def passes(self, image: np.ndarray, coarse: FrameFaces | None = None,
               hints: FrameFaces | None = None) -> list[FrameFaces]:
        """The faces of each pass over ``image`` (fine, then native and close-up where they run),
        unmerged. ``coarse``: the faces of a close-up pass the caller already ran on this frame (this
        backend on a copy at most ``coarse_side`` pixels on its longer side, no border pad; adaptive
        analysis reuses its cheap pass so), used instead of running the close-up pass. ``hints``:
        candidates of another pass over this frame (frame pixels; adaptive analysis' net) around
        which a guided fine pass also looks, those scoring ``guide_threshold`` or more."""
        image = check_image(image)
        height, width = image.shape[:2]
        scale = self.detection_scale(height, width)
        fine_min = max(self.min_face * scale, self.backend.native_min_face)
        if self.guided(height, width):
            parts = [self._guided_at(image, scale, fine_min, hints)]
        else:
            parts = [self._detect_at(image, scale, fine_min)]
        if self.native_pass and scale > 1.2:
            parts.append(self._detect_at(image, 1.0, self.backend.native_min_face))
        if self.wants_coarse(height, width):
            parts.append(coarse if coarse is not None else
                         self._detect_at(image, self.coarse_side / max(height, width), self.backend.native_min_face))
        return parts

    def guided(self, height: int, width: int) -> bool:
        """Whether a frame of this size gets the guided fine pass (see the class docstring)."""
        return self.guide is not None and not self.border_pad and \
            self.detection_scale(height, width) > GUIDE_MIN_SCALE

    def _prepare(self, image: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
        """``image`` resized by ``scale`` (and brightened where dark): the pixels a pass sees, with
        the factors from them back to frame pixels, per axis."""
        height, width = image.shape[:2]
        work = image
        fx = fy = 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != (width, height):
            work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            fx, fy = width / size[0], height / size[1]  # exact per axis after rounding the size
        if self.enhancer is not None:
            brighter = self.enhancer(work)
            if brighter is not None:
                log.debug("dark frame: detecting on a brightened copy")
                work = brighter
        return work, fx, fy

    def _detect_at(self, image: np.ndarray, scale: float, min_face: float, backend: Backend | None = None) \
            -> FrameFaces:
        work, fx, fy = self._prepare(image, scale)
        pad = round(self.border_pad * min(work.shape[:2])) if self.border_pad else 0
        if pad:
            work = np.pad(work, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        faces = (backend or self.backend).detect_at(work, min_face)
        if pad and len(faces):
            faces = _inside(faces, pad, work.shape[1] - 2 * pad, work.shape[0] - 2 * pad)
        return _in_frame(faces, fx, fy, image.shape[1], image.shape[0])

    def _guided_at(self, image: np.ndarray, scale: float, min_face: float, hints: FrameFaces | None) -> FrameFaces:
        """The fine pass at ``scale`` on crops around the guide's responses and ``hints``; the whole
        fine pass where the crops would cost ``GUIDE_MAX_SHARE`` of it or more."""
        work, fx, fy = self._prepare(image, scale)
        wh, ww = work.shape[:2]
        to_work = np.array([fx, fy, fx, fy], np.float32)
        hinted = np.zeros((0, 4), np.float32) if hints is None else \
            hints.xyxy[hints.confidence >= self.guide_threshold] / to_work
        if rect_fraction(merge_rects(crop_rects(hinted, 1.0, ww, wh)), ww, wh) >= GUIDE_MAX_SHARE:
            return self._detect_at(image, scale, min_face)  # the hints alone cover it: no guide pass
        guide = self._detect_at(image, 1.0, self.backend.native_min_face, self.guide)
        guiding = np.concatenate([guide.xyxy[guide.confidence >= self.guide_threshold] / to_work, hinted])
        rects = merge_rects(crop_rects(guiding, 1.0, ww, wh))
        share = rect_fraction(rects, ww, wh)
        log.debug("guided fine pass: %d crops, %.2f of the enlarged frame", len(rects), share)
        if share >= GUIDE_MAX_SHARE:
            return self._detect_at(image, scale, min_face)
        nms_iou = getattr(getattr(self.backend, "options", None), "nms", 0.3)
        faces = detect_in_rects(self.backend.detect_at, work, rects, min_face, nms_iou)
        return _in_frame(faces[guided_by(faces.xyxy, guiding)], fx, fy, image.shape[1], image.shape[0])


def _in_frame(faces: FrameFaces, fx: float, fy: float, width: int, height: int) -> FrameFaces:
    """Faces found on a copy resized by ``1 / (fx, fy)``, in frame pixels, boxes clipped to it."""
    if not len(faces):
        return FrameFaces.empty()
    factor = np.array([fx, fy], np.float32)
    boxes = clip_boxes(faces.xyxy * np.tile(factor, 2), width, height)
    return FrameFaces(xyxy=boxes, confidence=faces.confidence, landmarks=faces.landmarks * factor,
                      embedding=np.zeros((len(boxes), 0), np.float32))


def _inside(faces: FrameFaces, pad: int, width: int, height: int) -> FrameFaces:
    """Faces found on a frame mirrored by ``pad`` pixels, in the frame's own pixels; those with less
    than ``MIN_INSIDE`` of their box inside the frame are reflections of faces within it."""
    shift = np.float32(pad)
    moved = FrameFaces(xyxy=faces.xyxy - shift, confidence=faces.confidence, landmarks=faces.landmarks - shift,
                       embedding=faces.embedding)
    inside = area(clip_boxes(moved.xyxy, width, height)) / np.maximum(area(moved.xyxy), 1e-6)
    return moved[inside >= MIN_INSIDE]


def merge_scales(fine: FrameFaces, coarse: FrameFaces, iou: float = 0.4, inside: float = 0.6) -> FrameFaces:
    """One face set from two passes of one backend: duplicates (IoU >= ``iou``) keep the better
    score; then a box with ``inside`` of its area within a box at least twice as large is dropped
    (the larger one covers the whole face, and its landmarks see all of it) where the larger one
    scores ``FRAGMENT_MIN_SCORE`` or at least as high as the box: a low candidate of the close-up
    pass lying over a small face (a 60 px candidate at 0.07 over a 12 px face at 0.6 in a 1080p
    frame) would else take the face's place, and be rejected as noise with it."""
    both = FrameFaces.concat([fine, coarse])
    if len(both) < 2:
        return both
    both = both[nms(both.xyxy, both.confidence, iou)]
    sizes = area(both.xyxy)
    overlap = iomin_matrix(both.xyxy, both.xyxy)
    bigger = sizes[None, :] >= 2 * sizes[:, None]  # [i, j]: j at least twice i's area
    score = both.confidence
    stronger = score[None, :] >= np.minimum(score[:, None], FRAGMENT_MIN_SCORE)  # [i, j]: j may replace i
    fragment = ((overlap >= inside) & bigger & stronger).any(axis=1)
    return both[~fragment]
