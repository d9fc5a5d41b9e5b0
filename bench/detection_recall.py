"""Face-detection recall, false positives and speed per backend, on real photos and degraded copies.

    python -m bench.detection_recall            # tables for the three backends at their defaults
    python -m bench.detection_recall --sweep    # also the threshold sweep the defaults were chosen by
    python -m bench.detection_recall --video    # on the development VIDEOS instead (bench/video_recall.py)

Run from the repository root (it imports tests/detection_helpers.py).

The test set is tests/detection_helpers.py's: the shared photos (``$FACE_BLUR_SHARED/testdata/faces``,
default ``../shared/testdata/faces``) plus insightface's t1.jpg at 640 px on the long side, with
ground truth from confident detections checked against hand counts, and their degraded variants.
A face is found when a detection overlaps it with IoU >= 0.4. Prints markdown to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract import FrameFaces
from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
from handler.detector import DetectorConfig, FrameDetector
from handler.detector_factory import centerface_path, create_detector, mtcnn_paths
from handler.enhance import DarkEnhancer, mean_luminance
from handler.ensemble import fuse_faces
from handler.mtcnn import MtcnnDetector, MtcnnOptions
from handler.runtime import open_session
from tests.detection_helpers import (
    PHOTO_SIDE,
    VARIANTS,
    Sample,
    Score,
    ground_truth,
    letterbox,
    photo_paths,
    resize_long,
    score,
    small_faces,
)

log = logging.getLogger("bench.detection_recall")
REPO = Path(__file__).resolve().parents[1]
PROVIDERS = ["CPUExecutionProvider"]


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def shared_photos() -> list[Path]:
    shared = Path(os.environ.get("FACE_BLUR_SHARED", REPO.parent / "shared")) / "testdata" / "faces"
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        sys.exit("insightface is not installed (its wheel carries data/images/t1.jpg)")
    t1 = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    if not shared.is_dir():
        sys.exit(f"shared photos not found at {shared}; set FACE_BLUR_SHARED")
    return photo_paths(shared, t1)


def build_samples(model_dir: Path | None) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """Clean samples with ground truth, and every variant group built from them."""
    mt = MtcnnDetector(*(open_session(p, PROVIDERS) for p in mtcnn_paths(model_dir)))
    cf = CenterfaceDetector(load_centerface(centerface_path(model_dir), PROVIDERS), CenterfaceOptions(0.3))
    clean = []
    for path in shared_photos():
        image = resize_long(load_rgb(path), PHOTO_SIDE)
        clean.append(ground_truth(path.name, image, {"mtcnn": mt.detect_at(image, 12),
                                                     "centerface": cf.detect_at(image)}))
    groups = {name: [v for s in clean for v in make(s)] for name, make in VARIANTS.items()}
    # Small faces in full-HD frames: what max_side downscaling costs.
    groups["1080p small 24px"] = [small_faces(s, 24.0, canvas=(1920, 1080)) for s in clean]
    return clean, groups


def evaluate(detect: Callable[[np.ndarray], FrameFaces], samples: list[Sample]) -> Score:
    total = Score()
    for sample in samples:
        total = total + score(sample, detect(sample.image))
    return total


def timing(detector, frames: list[np.ndarray], repeats: int) -> str:
    """"median (fastest)" milliseconds per frame, after one warm-up call per frame."""
    for frame in frames:
        detector.detect(frame)
    times = []
    for _ in range(repeats):
        for frame in frames:
            start = time.perf_counter()
            detector.detect(frame)
            times.append((time.perf_counter() - start) * 1000)
    return f"{statistics.median(times):.0f} ({min(times):.0f})"


# -- the threshold sweep -----------------------------------------------------------------------------

def sweep(groups: dict[str, list[Sample]], model_dir: Path | None, max_side: int) -> None:
    """Recall/FP for a grid of thresholds, from cached detections: each backend runs once per image
    at its lowest thresholds (through :class:`FrameDetector`, so resizing is the real one) and higher
    thresholds are applied as filters. That gives exactly what a detector at those thresholds
    returns: stage-3 MTCNN and CenterFace scores are filtered before a score-ordered NMS, so the
    survivors above a threshold do not depend on what lies below it. Ensemble rows fuse the
    cached results of CenterFace (native 24 px) and MTCNN, as the ensemble does."""
    sessions = [open_session(p, PROVIDERS) for p in mtcnn_paths(model_dir)]
    cf_session = load_centerface(centerface_path(model_dir), PROVIDERS)
    backends: dict[str, object] = {}
    for native in (20.0, 24.0):
        cf = CenterfaceDetector(cf_session, CenterfaceOptions(0.15))
        cf.native_min_face = native
        backends[f"cf{native:g}"] = cf
    pnet_rnet = [(0.6, 0.7), (0.5, 0.6)]
    for pr in pnet_rnet:
        backends[f"mt{pr}"] = MtcnnDetector(*sessions, MtcnnOptions(thresholds=(*pr, 0.5)))
    frame_detectors = {(key, enhance): FrameDetector(b, 16, max_side, DarkEnhancer() if enhance else None)
                       for key, b in backends.items() for enhance in (False, True)}
    names = [g for g in groups if not g.startswith("1080p")]
    cache: dict[tuple, FrameFaces] = {}
    for group in names:
        for i, sample in enumerate(groups[group]):
            dark = DarkEnhancer().gamma_for(sample.image) is not None
            for (key, enhance), det in frame_detectors.items():
                if enhance and not dark:  # not dark: identical to the step off
                    cache[(group, i, True, key)] = cache[(group, i, False, key)]
                else:
                    cache[(group, i, enhance, key)] = det.detect(sample.image)

    def run(label: str, pick: Callable[[str, int, bool], FrameFaces], enhance: bool) -> list[str]:
        cells, total = [], Score()
        for group in names:
            g = Score()
            for i, sample in enumerate(groups[group]):
                g = g + score(sample, pick(group, i, enhance))
            cells.append(f"{g.recall:.2f}/{g.false_positives}")
            total = total + g
        return [label, "on" if enhance else "off", *cells, f"**{total.recall:.3f}**",
                str(total.false_positives)]

    def above(faces: FrameFaces, t: float) -> FrameFaces:
        return faces[faces.confidence >= t]

    rows = []
    for enhance in (False, True):
        for native in (20, 24):
            for t in (0.2, 0.25, 0.3, 0.4, 0.5):
                rows.append(run(f"centerface t={t} native={native}",
                                lambda g, i, e, k=f"cf{native:g}", t=t: above(cache[(g, i, e, k)], t), enhance))
        for pr in pnet_rnet:
            for t3 in (0.6, 0.7, 0.8, 0.9):
                rows.append(run(f"mtcnn ({pr[0]}, {pr[1]}, {t3})",
                                lambda g, i, e, k=f"mt{pr}", t=t3: above(cache[(g, i, e, k)], t), enhance))
        for t in (0.2, 0.3, 0.4):
            for pr in pnet_rnet:
                for t3 in (0.7, 0.8, 0.9):
                    def pick_en(g, i, e, t=t, k=f"mt{pr}", t3=t3):
                        return fuse_faces([above(cache[(g, i, e, "cf24")], t), above(cache[(g, i, e, k)], t3)])
                    rows.append(run(f"ensemble cf={t} mt=({pr[0]}, {pr[1]}, {t3})", pick_en, enhance))
    print(f"### Threshold sweep (recall/false positives per variant group; min_face 16, max_side {max_side})\n")
    table(["detector", "dark step", *names, "recall", "FP"], rows)


# -- the main tables ---------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (else installed packages)")
    parser.add_argument("--sweep", action="store_true", help="also print the threshold sweep")
    parser.add_argument("--sweep-only", action="store_true", help="print the threshold sweep alone")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per frame")
    video = parser.add_argument_group("video mode (bench/video_recall.py): face-blur and deface on the dev videos")
    own = "%(default).0s"  # these helps say their default themselves
    video.add_argument("--video", action="store_true", help="measure on the development videos, not the photos" + own)
    video.add_argument("--devset", type=Path, default=None, help="development set folder (default: bench.devset's)"
                       + own)
    video.add_argument("--clips", nargs="+", metavar="NAME", default=None, help="only these clips (default: all)" + own)
    video.add_argument("--quick", action="store_true", help="the tiny --quick development set" + own)
    video.add_argument("--setting", action="append", metavar="LABEL=OPTIONS",
                       help="a face-blur run setting; repeatable (default: 'default=', today's defaults, "
                       "unless --deface is given alone)" + own)
    video.add_argument("--deface", type=float, nargs="*", metavar="T", default=None,
                       help="deface thresholds to run (default: 0.2; none with an empty list)" + own)
    video.add_argument("--work", type=Path, default=None, help="keep the outputs here (default: a temporary folder)"
                       + own)
    video.add_argument("--out", type=Path, default=None, help="also write the markdown report here" + own)
    video.add_argument("--json", type=Path, default=None, help="also write every score as JSON here" + own)
    args = parser.parse_args(argv)
    if args.video:
        from bench import video_recall

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        return video_recall.main(args)
    logging.basicConfig(level=logging.WARNING)

    clean, groups = build_samples(args.model_dir)
    n_faces = sum(len(s.faces) for s in clean)
    print(f"Test set (numbers from still PHOTOS, not video): {len(clean)} photos, {n_faces} faces; variants: "
          + ", ".join(f"{g} ({sum(len(s.faces) for s in v)} faces)" for g, v in groups.items()) + "\n")
    dark_groups = [g for g in groups if "dark" in g or "night" in g]
    dark = [s for g in dark_groups for s in groups[g]]
    lum = {g: np.mean([mean_luminance(s.image) for s in groups[g]]) for g in ["clean", *dark_groups]}
    counted = sum(DarkEnhancer().gamma_for(s.image) is not None for s in clean)
    print("Mean luminance (0-255): " + ", ".join(f"{g} {v:.0f}" for g, v in lum.items())
          + f"; the dark step acts below {DarkEnhancer().dark_below:g}; clean photos it acts on: {counted}\n")

    if args.sweep or args.sweep_only:
        sweep(groups, args.model_dir, DetectorConfig().max_side)
        if args.sweep_only:
            return 0

    default = DetectorConfig()
    configs = {
        "mtcnn": dataclasses.replace(default, backend="mtcnn"),
        "centerface": dataclasses.replace(default, backend="centerface"),
        "ensemble": dataclasses.replace(default, backend="ensemble"),
    }
    detectors = {name: create_detector(cfg, args.model_dir, PROVIDERS) for name, cfg in configs.items()}
    names = list(groups)
    rows = []
    for name, det in detectors.items():
        scores = {g: evaluate(det.detect, groups[g]) for g in names}
        total = Score()
        for g in names:
            total = total + scores[g]
        rows.append([name, *(f"{scores[g].recall:.2f} / {scores[g].false_positives}" for g in names),
                     f"**{total.recall:.3f}**", str(total.false_positives)])
    print(f"### Recall / false positives at the defaults ({default})\n")
    table(["backend", *names, "all", "FP"], rows)

    print(f"### Dark step on and off ({', '.join(dark_groups)} together, and the clean photos)\n")
    rows = []
    for name, cfg in configs.items():
        for enhance in (False, True):
            det = create_detector(dataclasses.replace(cfg, enhance_dark=enhance), args.model_dir, PROVIDERS)
            d, c = evaluate(det.detect, dark), evaluate(det.detect, clean)
            rows.append([name, "on" if enhance else "off", f"{d.recall:.3f}", str(d.false_positives),
                         f"{c.recall:.3f}", str(c.false_positives)])
    table(["backend", "dark step", "dark recall", "dark FP", "clean recall", "clean FP"], rows)

    print("### max_side on 1920x1080 frames with 24 px faces\n")
    rows = []
    for name, cfg in configs.items():
        for max_side in (1280, 1920):
            det = create_detector(dataclasses.replace(cfg, max_side=max_side), args.model_dir, PROVIDERS)
            s = evaluate(det.detect, groups["1080p small 24px"])
            frame = letterbox(clean[-1].image, 1920, 1080)
            ms = timing(det, [frame], args.repeats)
            rows.append([name, str(max_side), f"{s.recall:.3f}", str(s.false_positives), ms])
    table(["backend", "max_side", "recall", "FP", "ms/frame 1080p"], rows)

    print("### Speed (ms per frame: median (fastest), letterboxed t1.jpg and two_people.jpg, CPU)\n")
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible, default intra-op threads\n")
    photos = [clean[-1].image, next(s.image for s in clean if s.name == "two_people.jpg")]
    rows = []
    for name, det in detectors.items():
        cells = [timing(det, [letterbox(p, w, h) for p in photos], args.repeats)
                 for w, h in ((640, 360), (1920, 1080))]
        rows.append([name, *cells])
    table(["backend", "640x360", "1920x1080"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
