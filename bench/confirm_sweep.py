"""Tune the candidate threshold and the confirmation rule (issue 14) on the video dev set, fast.

    python -m bench.confirm_sweep [--devset DIR] [--cache DIR] [--clips NAME ...] [--detector KEY ...]

Detection is the expensive part, so each detector setting runs once per clip with candidates down to
``FLOOR`` (0.02) and its frame results are cached (``--cache``, default
``~/.cache/face-blur/confirm-sweep``); a higher candidate threshold is the same results filtered by
score (CenterFace's NMS never lets a weaker box remove a stronger one, so filtering afterwards
equals detecting at that threshold). Then ``make_plan`` runs for each plan setting, and the plan's
blur boxes are scored against the clip's truth:

- recall: truth face instances (at least ``MIN_VISIBLE`` inside the frame) whose box is covered for
  at least ``COVER`` of its area by the blur region (box x mask scale 1.3, ellipse);
- whole-track misses: truth tracks (person in one shot) with no instance covered;
- stray: share of the frame area away from every truth face (and ignore region) inside a blur
  region, averaged over frames.

These are box-based estimates for tuning; the reported numbers come from the pixel-based
``python -m bench.detection_recall --video`` (bench/videometrics.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pickle
from pathlib import Path

import numpy as np

from contract import FrameResult

log = logging.getLogger("bench.confirm_sweep")

FLOOR = 0.02
MIN_VISIBLE = 0.3
COVER = 0.7
MASK = 1.3
CACHE = Path("~/.cache/face-blur/confirm-sweep").expanduser()

#: detector settings: key -> DetectorConfig changes (always candidates down to FLOOR)
DETECTORS: dict[str, dict] = {
    "old": {"enhance_dark": True},  # today's preprocessing (gamma lift on)
    "plain": {},  # gamma lift off
    "native": {"native_pass": True},
    "pad": {"border_pad": 0.08},
    "native+pad": {"native_pass": True, "border_pad": 0.08},
}


def detect_clip(video: Path, key: str, cache: Path) -> dict[int, FrameResult]:
    """Frame results (frame number from 1 -> result) of one clip at one detector setting, cached."""
    cache = cache / video.parent.name  # one folder per dev-set version: a regenerated clip is detected again
    path = cache / f"{video.stem}.{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from faceblur.video import iter_frames
    from handler.detector import DetectorConfig
    from handler.detector_factory import create_detector
    from handler.enhance import DarkEnhancer
    from handler.pipeline import FacePipeline

    config = dataclasses.replace(DetectorConfig(candidate_threshold=FLOOR), **DETECTORS[key])
    pipeline = FacePipeline(create_detector(config, None, ["CPUExecutionProvider"]), None)
    # the gamma lift only acts on dark frames: elsewhere "old" is "plain" (reused when cached)
    plain = cache / f"{video.stem}.plain.pkl"
    same = pickle.loads(plain.read_bytes()) if key == "old" and plain.exists() else {}
    results: dict[int, FrameResult] = {}
    for n, frame in enumerate(iter_frames(video), start=1):
        if n in same and DarkEnhancer().gamma_for(frame.image) is None:
            results[n] = same[n]
        else:
            results[n] = pipeline.analyse(frame.image, n)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(results))
    return results


def at_threshold(results: dict[int, FrameResult], threshold: float) -> dict[int, FrameResult]:
    out = {}
    for n, r in results.items():
        keep = r.faces.confidence >= threshold
        out[n] = dataclasses.replace(r, faces=r.faces[keep])
    return out


def _ellipse_mask(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    h, w = shape
    mask = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        rx, ry = max((x2 - x1) * MASK / 2, 0.5), max((y2 - y1) * MASK / 2, 0.5)
        xa, xb = int(max(0, np.floor(cx - rx))), int(min(w, np.ceil(cx + rx)))
        ya, yb = int(max(0, np.floor(cy - ry))), int(min(h, np.ceil(cy + ry)))
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb]
        mask[ya:yb, xa:xb] |= ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
    return mask


def score_plan(plan, truth: dict) -> dict:
    """Box-based recall, whole-track misses and stray share of one plan against a truth JSON."""
    w, h = truth["width"], truth["height"]
    by_frame: dict[int, list] = {}
    for f in truth["faces"]:
        by_frame.setdefault(f["frame"], []).append(f)
    ignore: dict[int, list] = {}
    for g in truth.get("ignore", []):
        ignore.setdefault(g["frame"], []).append(g["box"])
    found = total = 0
    tracks: dict[str, int] = {}
    stray = []
    missed_frames: dict[str, list[int]] = {}
    for n in range(1, truth["frames"] + 1):
        mask = _ellipse_mask((h, w), plan.boxes(n))
        away = np.ones((h, w), bool)
        for f in by_frame.get(n, []):
            x1, y1, x2, y2 = (int(round(v)) for v in np.clip(f["box"], 0, [w, h, w, h]))
            bw, bh = x2 - x1, y2 - y1
            away[max(0, y1 - bh // 4):y2 + bh // 4, max(0, x1 - bw // 4):x2 + bw // 4] = False
            if f["visible"] < MIN_VISIBLE or bw < 2 or bh < 2:
                continue
            total += 1
            tracks.setdefault(f["track"], 0)
            if mask[y1:y2, x1:x2].mean() >= COVER:
                found += 1
                tracks[f["track"]] += 1
            else:
                missed_frames.setdefault(f["track"], []).append(n)
        for b in ignore.get(n, []):
            x1, y1, x2, y2 = (int(round(v)) for v in np.clip(b, 0, [w, h, w, h]))
            away[y1:y2, x1:x2] = False
        stray.append(float(mask[away].mean()) if away.any() else 0.0)
    return {"found": found, "total": total, "whole_misses": sorted(t for t, k in tracks.items() if k == 0),
            "stray": float(np.mean(stray)) if stray else 0.0, "missed": missed_frames}


def main(argv: list[str] | None = None) -> int:
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    parser = argparse.ArgumentParser(prog="python -m bench.confirm_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=None,
                        help="dev set folder (default: bench.devset's for this code)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--clips", nargs="*", default=None)
    parser.add_argument("--detector", nargs="*", default=["plain"], choices=list(DETECTORS))
    parser.add_argument("--threshold", nargs="*", type=float, default=[0.05])
    parser.add_argument("--plan", action="append", default=[], metavar="JSON",
                        help='PlanConfig changes as JSON, e.g. \'{"min_candidates": 4}\' (repeatable)')
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.devset is None:
        from bench.devset import DEFAULT_DIR

        args.devset = DEFAULT_DIR
    videos = sorted(args.devset.glob("*.mp4"))
    if args.clips:  # in the order given
        videos = [args.devset / f"{name}.mp4" for name in args.clips if (args.devset / f"{name}.mp4").exists()]
    plans = [json.loads(p) for p in args.plan] or [{}]
    rows = []
    for key in args.detector:
        for video in videos:
            truth = json.loads(video.with_suffix(".truth.json").read_text())
            raw = detect_clip(video, key, args.cache)
            for t in args.threshold:
                results = at_threshold(raw, t)
                for changes in plans:
                    plan = make_plan(results, dataclasses.replace(PlanConfig(), **changes))
                    s = score_plan(plan, truth)
                    rows.append((key, t, json.dumps(changes), video.stem, s))
                    print(f"{key:10} {t:.2f} {json.dumps(changes):40} {video.stem:15} recall "
                          f"{s['found'] / max(s['total'], 1):.3f} ({s['found']}/{s['total']}) stray "
                          f"{100 * s['stray']:.2f}% whole misses {s['whole_misses']}", flush=True)
                    if args.show_misses and s["missed"]:
                        print("    missed:", {k: v for k, v in s["missed"].items()})
    print("\nsummary (clean-like = clips without _dim; dim = *_dim)")
    groups: dict[tuple, dict] = {}
    for key, t, changes, clip, s in rows:
        g = groups.setdefault((key, t, changes, clip.endswith("_dim")), {"found": 0, "total": 0, "stray": [],
                                                                          "misses": 0})
        g["found"] += s["found"]
        g["total"] += s["total"]
        g["stray"].append(s["stray"])
        g["misses"] += len(s["whole_misses"])
    for (key, t, changes, dim), g in sorted(groups.items()):
        print(f"{key:10} {t:.2f} {changes:40} {'dim  ' if dim else 'clean'} recall "
              f"{g['found'] / max(g['total'], 1):.4f} ({g['found']}/{g['total']}) stray "
              f"{100 * np.mean(g['stray']):.2f}% whole-track misses {g['misses']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
