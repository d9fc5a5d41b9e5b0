"""Identity thresholds per embedder, measured on real photos as they are and degraded.

``python -m bench.identity_thresholds`` prints markdown: same- and different-person cosine
similarity ranges, the true-match rate at a false-match rate of at most 1%, the recommended
threshold for the per-sequence robust score post-processing uses, and milliseconds per face.

The set: the labelled faces of ``../shared/testdata/faces`` (4 Biden, 4 Obama, 3 Rose Leslie,
Kit Harington, a child) plus the six strangers of insightface's ``t1.jpg`` when installed; faces
are found by our own CenterFace detector. Each face is also *degraded* the way video degrades it:
downscaled to 24, 32 and 48 px wide, and at a typical video size (96 px) darkened with sensor
noise, motion-blurred, JPEG-compressed at quality 30, cut in half at the nose (a stand-in for a
profile, or a face at the frame's edge) and covered over mouth and chin by a hand-sized patch.
Degraded faces are detected again; where the detector still finds one its landmarks are used
(as in production), else the clean landmarks mapped into the degraded image.

Pairs: a probe (clean or degraded) against every *clean* face of another shot: the same person
gives a genuine pair, someone else an impostor pair (a reference photo against video frames).
A *sequence* is one face's clean and degraded versions together; its robust score against a
reference is the median of its per-frame similarities, which is what the post-processing stage
compares with ``threshold + margin`` before it leaves a face unblurred.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from contract.boxes import iou_matrix

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACE_BLUR_SHARED", REPO.parent / "shared")) / "testdata"

# file -> faces as (identity, shot, anchor): the anchor is a point inside the face in coordinates
# relative to the image (None: the file's largest face). Faces of one shot (the same photograph
# of a person reused in two files) are never paired as "same person".
LABELS: dict[str, tuple[tuple[str, str, tuple[float, float] | None], ...]] = {
    "biden.jpg": (("biden", "biden-standing", None),),
    "biden2.jpg": (("biden", "biden2", None),),
    "obama.jpg": (("obama", "obama", None),),
    "obama2.jpg": (("obama", "obama2", None),),
    "rose_leslie1.jpg": (("rose", "rose1", None),),
    "rose_leslie2.jpg": (("rose", "rose2", None),),
    "obama_and_biden.jpg": (("biden", "oab-biden", (0.425, 0.36)), ("obama", "oab-obama", (0.616, 0.336)),
                            ("child", "oab-child", (0.854, 0.79))),
    "kit_with_rose.jpg": (("rose", "kwr-rose", (0.237, 0.229)), ("kit", "kwr-kit", (0.613, 0.207))),
    "two_people.jpg": (("obama", "two-obama", (0.275, 0.19)), ("biden", "biden-standing", (0.769, 0.23))),
}
DEGRADATIONS = ("small24", "small32", "small48", "dark", "motion", "jpeg30", "half_left", "half_right",
                "occluded")
KINDS = ("clean", *DEGRADATIONS)
VIDEO_FACE_WIDTH = 96  # face width (px) at which the non-size degradations are applied
CONTEXT = 1.0  # context kept around a face on each side, in face widths
TARGET_FMR = 0.01
THRESHOLD_STEP = 0.01  # thresholds are rounded to a multiple of this


@dataclass(frozen=True)
class Face:
    """One labelled face: a context crop around it, its box and landmarks in that crop."""

    source: str
    identity: str
    shot: str
    image: np.ndarray
    box: np.ndarray  # (4,)
    landmarks: np.ndarray  # (5, 2)


@dataclass(frozen=True)
class Probe:
    """A face as the embedder sees it: ``face`` indexes the clean set; ``redetected`` says whether
    the landmarks came from detecting the degraded image again (else mapped from the clean face)."""

    face: int
    kind: str
    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    redetected: bool


Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # image -> boxes (n,4), landmarks (n,5,2)


def detector_fn(detector) -> Detect:
    """Adapt a ``handler.detector.Detector`` to ``image -> (boxes, landmarks)``: the faces of a photo,
    detections scoring the face score or more (the detector also lists low-score candidates, which
    only a video's sequences can confirm: ``postprocess.identity.photo_faces``)."""
    from postprocess.identity import REFERENCE_MIN_SCORE

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = detector.detect(image)
        keep = faces.confidence >= REFERENCE_MIN_SCORE
        return faces.xyxy[keep], faces.landmarks[keep]

    return detect


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def context_crop(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray, source: str, identity: str,
                 shot: str) -> Face:
    """The face with ``CONTEXT`` face widths around it (clipped to the image), coordinates shifted."""
    side = max(box[2] - box[0], box[3] - box[1])
    h, w = image.shape[:2]
    x0 = int(max(0, np.floor(box[0] - CONTEXT * side)))
    y0 = int(max(0, np.floor(box[1] - CONTEXT * side)))
    x1 = int(min(w, np.ceil(box[2] + CONTEXT * side)))
    y1 = int(min(h, np.ceil(box[3] + CONTEXT * side)))
    shift = np.array([x0, y0], np.float64)
    return Face(source, identity, shot, np.ascontiguousarray(image[y0:y1, x0:x1]),
                np.asarray(box, np.float64) - np.tile(shift, 2), np.asarray(landmarks, np.float64) - shift)


def labelled_faces(faces_dir: Path, detect: Detect, t1_path: Path | None = None) -> list[Face]:
    """Every labelled face found by ``detect``; a labelled face the detector misses raises
    RuntimeError (the set would silently shrink otherwise). ``t1.jpg`` adds one stranger per face."""
    faces: list[Face] = []
    for name, labels in LABELS.items():
        image = load_rgb(Path(faces_dir) / name)
        boxes, marks = detect(image)
        h, w = image.shape[:2]
        for identity, shot, anchor in labels:
            if len(boxes) == 0:
                raise RuntimeError(f"{name}: no face detected")
            if anchor is None:
                i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
            else:
                ax, ay = anchor[0] * w, anchor[1] * h
                inside = (boxes[:, 0] <= ax) & (ax <= boxes[:, 2]) & (boxes[:, 1] <= ay) & (ay <= boxes[:, 3])
                if not inside.any():
                    raise RuntimeError(f"{name}: the detector missed {identity}'s face at {anchor}")
                i = int(np.flatnonzero(inside)[0])
            faces.append(context_crop(image, boxes[i], marks[i], name, identity, shot))
    if t1_path is not None and Path(t1_path).is_file():
        image = load_rgb(Path(t1_path))
        boxes, marks = detect(image)
        for i in range(len(boxes)):
            faces.append(context_crop(image, boxes[i], marks[i], "t1.jpg", f"t1-{i}", f"t1-{i}"))
    return faces


# -- degradations ------------------------------------------------------------------------------------

def _rescale(face: Face, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face's crop resized so the face box is ``width`` px wide (antialiased, as a camera would)."""
    factor = width / max(face.box[2] - face.box[0], 1.0)
    h, w = face.image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = np.asarray(Image.fromarray(face.image).resize(size, Image.Resampling.LANCZOS))
    fx, fy = size[0] / w, size[1] / h
    scale = np.array([fx, fy])
    # pixel centres: x' + 0.5 = (x + 0.5) * f
    return image, (face.box.reshape(2, 2) * scale).reshape(4), (face.landmarks + 0.5) * scale - 0.5


def _rng(face: Face, kind: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{face.source}:{face.shot}:{kind}".encode()))


def _dark(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Underexposed: gamma 1.8, 35% gain, sensor noise (sigma 3 grey levels)."""
    x = 255.0 * 0.35 * (image / 255.0) ** 1.8 + rng.normal(0, 3.0, image.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _motion(image: np.ndarray, length: int) -> np.ndarray:
    """Horizontal motion blur: a box filter ``length`` px long along x (edges repeated)."""
    pad = length // 2
    x = np.pad(image.astype(np.float64), ((0, 0), (pad, length - 1 - pad), (0, 0)), mode="edge")
    c = np.cumsum(np.pad(x, ((0, 0), (1, 0), (0, 0))), axis=1)
    out = (c[:, length:] - c[:, :-length]) / length
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def _occlude(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A skin-coloured patch the size of a hand over mouth and chin."""
    nose, ml, mr = landmarks[2], landmarks[3], landmarks[4]
    mouth_y = (ml[1] + mr[1]) / 2
    drop = max(mouth_y - nose[1], 2.0)
    width = max(mr[0] - ml[0], 2.0)
    x0, x1 = ml[0] - 0.6 * width, mr[0] + 0.6 * width
    y0, y1 = nose[1] + 0.35 * drop, mouth_y + 1.6 * drop
    out = image.copy()
    h, w = out.shape[:2]
    ys = slice(int(max(0, y0)), int(min(h, np.ceil(y1))))
    xs = slice(int(max(0, x0)), int(min(w, np.ceil(x1))))
    shade = np.linspace(1.0, 0.8, max(ys.stop - ys.start, 1))[:, None, None]
    out[ys, xs] = np.clip(np.array([214, 164, 134]) * shade, 0, 255).astype(np.uint8)
    return out


def degrade(face: Face, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``face`` degraded by ``kind`` -> (image, box, landmarks) with the clean geometry mapped."""
    if kind == "clean":
        return face.image, face.box, face.landmarks
    if kind.startswith("small"):
        return _rescale(face, float(kind[len("small"):]))
    image, box, marks = _rescale(face, VIDEO_FACE_WIDTH)
    if kind == "dark":
        return _dark(image, _rng(face, kind)), box, marks
    if kind == "motion":
        return _motion(image, max(3, round(0.1 * VIDEO_FACE_WIDTH))), box, marks
    if kind == "jpeg30":
        return _jpeg(image, 30), box, marks
    if kind == "occluded":
        return _occlude(image, marks), box, marks
    if kind in ("half_left", "half_right"):
        eye_gap = float(np.linalg.norm(marks[1] - marks[0]))
        cut = int(round(marks[2, 0] + (0.15 if kind == "half_left" else -0.15) * eye_gap))
        cut = int(np.clip(cut, 1, image.shape[1] - 1))
        if kind == "half_left":
            image = image[:, :cut]
            box = np.array([box[0], box[1], min(box[2], cut), box[3]])
        else:
            image = image[:, cut:]
            box = np.array([max(box[0] - cut, 0), box[1], box[2] - cut, box[3]])
            marks = marks - np.array([cut, 0.0])
        return np.ascontiguousarray(image), box, marks
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(KINDS)}")


def make_probes(faces: Sequence[Face], detect: Detect | None, kinds: Sequence[str] = KINDS) -> list[Probe]:
    """Every face under every ``kind``; degraded images are detected again (``detect`` None: never)."""
    probes = []
    for i, face in enumerate(faces):
        for kind in kinds:
            image, box, marks = degrade(face, kind)
            redetected = False
            if kind != "clean" and detect is not None:
                boxes, found = detect(image)
                if len(boxes):
                    iou = iou_matrix(np.asarray(box, np.float32)[None], boxes)[0]
                    best = int(np.argmax(iou))
                    if iou[best] >= 0.3:
                        box, marks, redetected = np.asarray(boxes[best], np.float64), found[best], True
            probes.append(Probe(i, kind, image, box, np.asarray(marks, np.float64), redetected or kind == "clean"))
    return probes


# -- scores ------------------------------------------------------------------------------------------

def embed_probes(embedder, probes: Sequence[Probe]) -> np.ndarray:
    """(n, dim) unit vectors. Each probe is its own image: an ArcFace-style embedder gets them
    aligned one by one and run as one batch; any other embedder gets one ``embed`` call each."""
    if hasattr(embedder, "embed_crops"):
        from handler.align import align_faces

        size = embedder.spec.size
        crops = np.concatenate([align_faces(p.image, p.landmarks[None], p.box[None], size) for p in probes])
        return embedder.embed_crops(crops)
    return np.concatenate([embedder.embed(p.image, p.landmarks[None], p.box[None]) for p in probes])


@dataclass(frozen=True)
class Scores:
    """Per kind: genuine and impostor cosine similarities of probe-vs-clean-reference pairs, and the
    per-sequence medians (each face's clean + degraded probes against one reference)."""

    genuine: dict[str, np.ndarray]
    impostor: dict[str, np.ndarray]
    sequence_genuine: np.ndarray
    sequence_impostor: np.ndarray

    def pooled(self, which: str, kinds: Sequence[str] | None = None) -> np.ndarray:
        data = self.genuine if which == "genuine" else self.impostor
        kinds = kinds or list(data)
        return np.concatenate([data[k] for k in kinds if k in data])


def pair_scores(faces: Sequence[Face], probes: Sequence[Probe], probe_emb: np.ndarray) -> Scores:
    """Similarities of every probe with every clean face of another shot (clean probes are the refs)."""
    ref_index = {p.face: j for j, p in enumerate(probes) if p.kind == "clean"}
    refs = sorted(ref_index)
    ref_emb = probe_emb[[ref_index[r] for r in refs]]
    sims = probe_emb @ ref_emb.T  # (probes, refs)
    genuine: dict[str, list[float]] = {}
    impostor: dict[str, list[float]] = {}
    per_pair: dict[tuple[int, int], list[float]] = {}
    for pi, probe in enumerate(probes):
        mine = faces[probe.face]
        for rj, r in enumerate(refs):
            other = faces[r]
            if r == probe.face or other.shot == mine.shot:
                continue
            target = genuine if other.identity == mine.identity else impostor
            target.setdefault(probe.kind, []).append(float(sims[pi, rj]))
            per_pair.setdefault((probe.face, r), []).append(float(sims[pi, rj]))
    seq_gen = [np.median(v) for (f, r), v in per_pair.items() if faces[f].identity == faces[r].identity]
    seq_imp = [np.median(v) for (f, r), v in per_pair.items() if faces[f].identity != faces[r].identity]
    return Scores({k: np.array(v) for k, v in genuine.items()}, {k: np.array(v) for k, v in impostor.items()},
                  np.array(seq_gen), np.array(seq_imp))


def threshold_at_fmr(impostor: np.ndarray, fmr: float = TARGET_FMR) -> float:
    """The lowest threshold t with at most ``fmr`` of impostor similarities at or above t
    (a match is ``similarity >= t``)."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if len(imp) == 0:
        return -1.0
    allowed = int(np.floor(fmr * len(imp)))
    if allowed >= len(imp):
        return float(imp[-1])
    return float(np.nextafter(imp[allowed], np.inf))


def match_rate(scores: np.ndarray, threshold: float) -> float:
    scores = np.asarray(scores)
    return float(np.mean(scores >= threshold)) if len(scores) else float("nan")


def recommend_threshold(scores: Scores, step: float = THRESHOLD_STEP) -> tuple[float, float]:
    """(threshold, gap) for the per-sequence robust score.

    Post-processing calls a sequence a person only at ``score >= threshold + margin``, not that
    person only below ``threshold - margin``, and blurs whatever lies between. Each wrong side is
    the worst outcome in one mode (a stranger kept clear in "unknown" mode, a known person missed
    in "known" mode), so the threshold sits in the middle of the gap between the highest impostor
    sequence score and the lowest genuine one, rounded to ``step``; ``gap`` is that lowest genuine
    minus highest impostor (negative: they overlap). A margin below ``gap / 2`` keeps every
    sequence of this set on its right side.
    """
    low, high = float(np.max(scores.sequence_impostor)), float(np.min(scores.sequence_genuine))
    middle = (low + high) / 2
    return round(round(middle / step) * step, 6), high - low


# -- timing ------------------------------------------------------------------------------------------

def mosaic(faces: Sequence[Face], count: int = 8, face_width: int = 112) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """A frame holding ``count`` faces side by side (repeating the set if needed) -> image, boxes, landmarks."""
    tiles = [_rescale(faces[i % len(faces)], face_width) for i in range(count)]
    cell = 3 * face_width
    frame = np.zeros((cell * 2, cell * ((count + 1) // 2), 3), np.uint8)
    boxes, marks = [], []
    for i, (image, box, lm) in enumerate(tiles):
        y, x = (i % 2) * cell, (i // 2) * cell
        h, w = min(image.shape[0], cell), min(image.shape[1], cell)
        frame[y:y + h, x:x + w] = image[:h, :w]
        boxes.append(box + np.array([x, y, x, y]))
        marks.append(lm + np.array([x, y]))
    return frame, np.array(boxes), np.array(marks)


def time_embedder(embedder, faces: Sequence[Face], budget=None) -> tuple[float, float]:
    """(ms per face with 8 faces in one frame, ms for a frame with one face), median of repeats."""
    from bench.report import FULL, median_ms

    budget = budget or FULL
    frame, boxes, marks = mosaic(faces)
    batched = median_ms(lambda: embedder.embed(frame, marks, boxes), budget) / len(boxes)
    single = median_ms(lambda: embedder.embed(frame, marks[:1], boxes[:1]), budget)
    return batched, single


# -- report ------------------------------------------------------------------------------------------

def _range(values: np.ndarray) -> str:
    return f"{np.min(values):.2f} to {np.max(values):.2f}" if len(values) else "n/a"


@dataclass
class EmbedderReport:
    name: str
    scores: Scores | None
    threshold: float | None
    gap: float | None
    batched_ms: float | None
    single_ms: float | None
    redetected: dict[str, float]
    note: str = ""


def evaluate(name: str, embedder, faces: Sequence[Face], probes: Sequence[Probe], budget=None,
             identity: bool = True, note: str = "") -> EmbedderReport:
    redetected = {k: float(np.mean([p.redetected for p in probes if p.kind == k])) for k in KINDS}
    scores = threshold = gap = None
    if identity:
        scores = pair_scores(faces, probes, embed_probes(embedder, probes))
        threshold, gap = recommend_threshold(scores)
    batched, single = time_embedder(embedder, faces, budget)
    return EmbedderReport(name, scores, threshold, gap, batched, single, redetected, note)


def markdown(reports: Sequence[EmbedderReport], faces: Sequence[Face], footer: str = "") -> str:
    from bench.report import Table, fmt

    identities = sorted({f.identity for f in faces})
    out = [f"## Identity: {len(faces)} faces of {len(identities)} people, each clean and under "
           f"{len(DEGRADATIONS)} degradations\n"]
    for r in reports:
        if r.scores is None:
            continue
        s = r.scores
        table = Table(f"{r.name}: cosine similarity, probe vs clean reference of another shot",
                      ["probe", "same person", "different people", "pairs (same/diff)",
                       "TMR @ FMR<=1%", f"TMR @ {r.threshold:.2f}", f"FMR @ {r.threshold:.2f}", "re-detected"])
        for kind in KINDS:
            g, i = s.genuine.get(kind, np.zeros(0)), s.impostor.get(kind, np.zeros(0))
            table.add(kind, _range(g), _range(i), f"{len(g)}/{len(i)}",
                      f"{match_rate(g, threshold_at_fmr(i)):.2f}", f"{match_rate(g, r.threshold):.2f}",
                      f"{match_rate(i, r.threshold):.3f}", f"{r.redetected[kind]:.0%}")
        g, i = s.pooled("genuine", DEGRADATIONS), s.pooled("impostor", DEGRADATIONS)
        table.add("**all degraded**", _range(g), _range(i), f"{len(g)}/{len(i)}",
                  f"{match_rate(g, threshold_at_fmr(i)):.2f}", f"{match_rate(g, r.threshold):.2f}",
                  f"{match_rate(i, r.threshold):.3f}", "")
        table.add("**sequence median**", _range(s.sequence_genuine), _range(s.sequence_impostor),
                  f"{len(s.sequence_genuine)}/{len(s.sequence_impostor)}",
                  f"{match_rate(s.sequence_genuine, threshold_at_fmr(s.sequence_impostor)):.2f}",
                  f"{match_rate(s.sequence_genuine, r.threshold):.2f}",
                  f"{match_rate(s.sequence_impostor, r.threshold):.3f}", "")
        table.notes.append(f"recommended threshold {r.threshold:.2f}: the middle of the gap between the highest "
                           f"impostor and the lowest genuine sequence median; gap {r.gap:.2f}, so a margin up "
                           f"to {max(r.gap, 0) / 2:.2f} keeps every sequence here on its side")
        if r.note:
            table.notes.append(r.note)
        out.append(table.markdown(footer))
    speed = Table("Embedding speed (alignment included)", ["embedder", "ms/face, 8 faces in a frame",
                                                           "ms, frame with 1 face", "note"])
    for r in reports:
        speed.add(r.name, fmt(r.batched_ms), fmt(r.single_ms), r.note or "")
    out.append(speed.markdown(footer))
    thresholds = {r.name: round(r.threshold, 2) for r in reports if r.threshold is not None}
    margins = {r.name: round(max(r.gap, 0.0) / 2, 2) for r in reports if r.gap is not None}
    out.append("### Thresholds for post-processing\n\n```python\nIDENTITY_THRESHOLDS = "
               f"{thresholds!r}\nLARGEST_SAFE_MARGIN = {margins!r}\n```\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from bench.report import FULL, QUICK

    parser = argparse.ArgumentParser(prog="python -m bench.identity_thresholds", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--faces", type=Path, default=SHARED / "faces", help="labelled photos")
    parser.add_argument("--model-dir", type=Path, default=SHARED / "models",
                        help="model directory (mobilefacenet.onnx; arcfaceresnet100-8.onnx if fetched)")
    parser.add_argument("--embedders", nargs="+", default=["mobilefacenet", "dlib-resnet", "arcface-r100"],
                        choices=["mobilefacenet", "dlib-resnet", "arcface-r100"])
    parser.add_argument("--no-t1", action="store_true", help="leave insightface's t1.jpg out")
    parser.add_argument("--quick", action="store_true", help="time each call once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from bench.sysinfo import one_line
    from handler.detector import DetectorConfig
    from handler.detector_factory import create_detector
    from handler.embedder import create_embedder

    providers = ["CPUExecutionProvider"]
    detect = detector_fn(create_detector(DetectorConfig(backend="centerface"), None, providers))
    t1 = None
    if not args.no_t1:
        import importlib.util

        spec = importlib.util.find_spec("insightface")
        if spec is not None and spec.origin:
            t1 = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    faces = labelled_faces(args.faces, detect, t1)
    probes = make_probes(faces, detect)
    budget = QUICK if args.quick else FULL
    reports = []
    for name in args.embedders:
        if name != "arcface-r100":
            reports.append(evaluate(name, create_embedder(name, args.model_dir, providers), faces, probes, budget))
            continue
        reports.append(_evaluate_r100(args.model_dir, faces, probes, budget, providers))
    sys.stdout.write(markdown([r for r in reports if r is not None], faces, one_line()))
    return 0


def _evaluate_r100(model_dir: Path, faces, probes, budget, providers) -> EmbedderReport | None:
    """The real ArcFace R100 when fetched (identity and speed); else its random-weight twin, for
    speed only (its similarities mean nothing)."""
    from bench.arcface_r100 import locate_r100
    from handler.arcface import ArcFaceSpec, load_arcface
    from model import get_entry

    found = locate_r100(model_dir)
    if found.path is None:
        log.warning("arcface-r100 not measured: %s", found.label)
        return EmbedderReport("arcface-r100", None, None, None, None, None, {k: 0.0 for k in KINDS}, found.label)
    entry = get_entry("arcface-r100")
    embedder = load_arcface(ArcFaceSpec.from_manifest("arcface-r100", entry.input, entry.output), found.path,
                            providers)
    note = "" if not found.random_weights else (
        "speed only: arcfaceresnet100-8.onnx is not here, so this is the same network with random "
        "weights (bench/arcface_r100.py); no identity numbers")
    return evaluate("arcface-r100", embedder, faces, probes, budget, identity=not found.random_weights,
                    note=note)


if __name__ == "__main__":
    sys.exit(main())
