"""Could the enlarged (fine) detection pass run only around a cheaper pass's candidates? (issue 17)

    python -m bench.guided_pass [--clips NAME ...] [--stride 2] [--thresholds 0.01 0.02 0.05]

At 640x360 a full analysis is CenterFace on the frame enlarged 1.5x (2.25x the frame's pixels); at
1080p it is CenterFace at 1.0x plus the 640 px close-up pass. The *guided* fine pass runs a guide
over the whole frame (640x360: CenterFace at 1.0x; 1080p: at 0.5x) and the net's pass (480 px, as
adaptive analysis runs it on every frame), keeps their responses down to a low score ``t``, and
runs the fine pass only on crops of the enlarged image around them (``handler/guided.py``: padded
``--margin`` face sizes (default: the detector's), aligned to CenterFace's 32 px grid, merged; only
faces over a guiding box kept; the whole pass where the crops reach ``GUIDE_MAX_SHARE`` of it),
merged with the rest as today.

Per clip, every ``--stride``-th frame: truth faces (clipped to the frame, any visibility) that the
current detector finds (a candidate >= 0.05 at IoU >= 0.3 with the truth box); of those, how many
the guided detector finds the same way at each ``t`` (``guided``), how many a guide or net response
>= t overlaps at all (``covered``), with the guide alone and the net alone; the crop area as a
share of the whole enlarged image (the fine pass's cost); CPU ms per frame (process time, both
onnxruntime threads) of the current fine pass and of the guided one (guide pass + crops). Prints
Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

IOU = 0.3


def _detectors():
    from handler.centerface import CenterfaceDetector
    from handler.detector import DetectorConfig, FrameDetector
    from handler.detector_factory import create_detector

    full = create_detector(DetectorConfig(), None, ["CPUExecutionProvider"])
    low = CenterfaceDetector(full.backend.session, replace(full.backend.options, threshold=0.01))
    return full, low, FrameDetector(low, min_face=4, max_side=1920)


def _truth_boxes(truth, faces) -> np.ndarray:
    boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
    boxes = np.clip(boxes, 0, [truth.width, truth.height, truth.width, truth.height])
    return boxes[(boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)]


def _found(truth_boxes: np.ndarray, faces) -> np.ndarray:
    from contract.boxes import iou_matrix

    if not len(truth_boxes) or not len(faces):
        return np.zeros(len(truth_boxes), bool)
    return (iou_matrix(truth_boxes, faces.xyxy) >= IOU).any(axis=1)


def _best(truth_boxes: np.ndarray, faces) -> np.ndarray:
    """Per truth box, the best score of a response overlapping it at all (0: none)."""
    from contract.boxes import iou_matrix

    if not len(truth_boxes) or not len(faces):
        return np.zeros(len(truth_boxes))
    return np.where(iou_matrix(truth_boxes, faces.xyxy) > 0, faces.confidence[None, :], 0).max(axis=1)


def _touched(truth_boxes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    from contract.boxes import iou_matrix

    if not len(truth_boxes) or not len(boxes):
        return np.zeros(len(truth_boxes), bool)
    return (iou_matrix(truth_boxes, boxes) > 0).any(axis=1)


def measure(clip: Path, stride: int, thresholds: list[float], dets, margin: float | None = None) -> dict:
    from PIL import Image

    from bench.devset import load_truth
    from contract import FrameFaces
    from faceblur.video import iter_frames
    from handler.boxes import clip_boxes
    from handler.detector import GUIDE_MAX_SHARE, FrameDetector, merge_scales
    from handler.guided import crop_rects, detect_in_rects, guided_by, merge_rects, rect_fraction

    full, low, low_frame = dets
    truth = load_truth(clip)
    by_frame = truth.by_frame()
    net_cache: dict = {}
    out = {"found": 0, "faces": 0, "frames": 0, "cpu_full": 0.0, "cpu_guide": 0.0,
           **{f"{k}{t}": 0.0 for t in thresholds for k in ("guided", "cov", "covg", "covn", "frac", "cpu")}}
    for frame in iter_frames(clip):
        if frame.index % stride:
            continue
        image = frame.image
        h, w = image.shape[:2]
        tb = _truth_boxes(truth, by_frame.get(frame.index + 1, []))
        scale = full.detection_scale(h, w)
        clock = time.process_time()
        parts = [full._detect_at(image, scale, max(full.min_face * scale, full.backend.native_min_face))]
        fine_cpu = time.process_time() - clock
        out["cpu_full"] += fine_cpu
        if full.wants_coarse(h, w):
            parts.append(full._detect_at(image, full.coarse_side / max(h, w), full.backend.native_min_face))
        current = parts[0]
        for p in parts[1:]:
            current = merge_scales(current, p)
        found = _found(tb, current)
        guide_scale = 1.0 if scale > 1.2 else scale / 2
        clock = time.process_time()
        guide = low_frame._detect_at(image, guide_scale, 24.0)
        out["cpu_guide"] += time.process_time() - clock
        if (h, w) not in net_cache:
            net_cache[(h, w)] = FrameDetector(low, min_face=4, max_side=min(480, max(h, w)))
        net = net_cache[(h, w)].detect(image)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        work = image if size == (w, h) else np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        fx, fy = w / size[0], h / size[1]
        out.setdefault("best", []).extend(np.maximum(_best(tb, guide), _best(tb, net))[found].tolist())
        out.setdefault("bestg", []).extend(_best(tb, guide)[found].tolist())
        out["faces"] += len(tb)
        out["found"] += int(found.sum())
        out["frames"] += 1
        out["boxes"] = out.get("boxes", 0) + {t: int((guide.confidence >= t).sum() + (net.confidence >= t).sum())
                                              for t in thresholds}[thresholds[-1]]
        for t in thresholds:
            gb, nb = guide.xyxy[guide.confidence >= t], net.xyxy[net.confidence >= t]
            boxes = np.concatenate([gb, nb])
            clock = time.process_time()
            guiding = boxes / np.array([fx, fy, fx, fy], np.float32)
            rects = merge_rects(crop_rects(guiding, 1.0, size[0], size[1], margin))
            share = rect_fraction(rects, size[0], size[1])
            if share >= GUIDE_MAX_SHARE:  # the whole pass, as the detector does
                out[f"cpu{t}"] += fine_cpu
                share = 1.0
                fine = parts[0]
            else:
                fine = detect_in_rects(full.backend.detect_at, work, rects, 24.0, full.backend.options.nms)
                fine = fine[guided_by(fine.xyxy, guiding)]
                out[f"cpu{t}"] += time.process_time() - clock
                factor = np.array([fx, fy], np.float32)
                fine = FrameFaces(xyxy=clip_boxes(fine.xyxy * np.tile(factor, 2), w, h), confidence=fine.confidence,
                                  landmarks=fine.landmarks * factor, embedding=np.zeros((len(fine), 0), np.float32))
            guided = fine
            for p in parts[1:]:
                guided = merge_scales(guided, p)
            out[f"guided{t}"] += int((_found(tb, guided) & found).sum())
            out[f"cov{t}"] += int((_touched(tb, boxes) & found).sum())
            out[f"covg{t}"] += int((_touched(tb, gb) & found).sum())
            out[f"covn{t}"] += int((_touched(tb, nb) & found).sum())
            out[f"frac{t}"] += share
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.devset import make_devset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=None)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--margin", type=float, default=None, help="crop margin in box sides")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    args = parser.parse_args(argv)
    clips = make_devset(names=args.clips)
    dets = _detectors()
    ts = args.thresholds
    print("| clip | frames | truth faces | found now | " + " | ".join(
        f"t={t}: guided / covered (guide, net) / crop share / CPU ratio" for t in ts)
        + " | fine ms | guide ms | lowest best guide+net (guide) score on a found face |")
    print("|" + " --- |" * (7 + len(ts)))
    for clip in clips:
        m = measure(clip, args.stride, ts, dets, args.margin)
        n = max(m["frames"], 1)
        cells = [f"{m[f'guided{t}']} / {m[f'cov{t}']} ({m[f'covg{t}']}, {m[f'covn{t}']}) / "
                 f"{m[f'frac{t}'] / n:.2f} / {(m['cpu_guide'] + m[f'cpu{t}']) / max(m['cpu_full'], 1e-9):.2f}"
                 for t in ts]
        print(f"| {clip.stem} | {m['frames']} | {m['faces']} | {m['found']} | " + " | ".join(cells)
              + f" | {1000 * m['cpu_full'] / n:.0f} | {1000 * m['cpu_guide'] / n:.0f} | "
              f"{min(m.get('best', [1]), default=1):.3f} ({min(m.get('bestg', [1]), default=1):.3f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
