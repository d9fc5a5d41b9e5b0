"""Candidate face embedders compared on photos and on the identity development clips.

``python -m bench.embedder_compare --candidate NAME=MODEL.onnx:SIZE:LAYOUT:MEAN[,G,B]:STD:SCALE[:BGR] ...``
(an ONNX file from a TF.js model: ``python -m bench.tfjs_onnx``)

Each candidate is an ONNX model fed like an ArcFace-style one (``handler/arcface.py``), with the
test-time flip, aligned by the 5-point similarity transform to the ArcFace template scaled by
``SCALE`` about the crop's centre (1: the ArcFace crop; under 1: a looser crop with more of the head,
as models trained on detector boxes expect). ``mobilefacenet`` (the installed model) is always the
baseline. Measured, as the README's identity tables are:

- photos (``bench/identity_thresholds.py``'s degraded set): the sequence-median ranges of same and
  different people, the per-face TMR at FMR <= 1%, and the links (a face's mean over 5 degradations
  against another shot's mean over the other 4);
- the clips (detections made once with the default detector, every candidate embedding the same
  faces): per sample, faces under 64 px against every reference photo of the clip, the AUC, the
  true matches above the impostors' 99th percentile (TMR) and the highest impostor; and the plan
  numbers of ``bench/identity_video.py``, with each candidate's zone of doubt and links placed in its
  own photo impostor distribution where MobileFaceNet's sit in its (:func:`derive`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from handler.align import landmarks_from_box, landmarks_usable, similarity_transform, template, warp

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata"
DEFAULT_CLIPS = ("identity_same", "identity_two", "cuts", "border")
SMALL = 64.0  # px: faces under this are the far and dim ones


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    size: int
    layout: str
    mean: tuple[float, float, float]
    std: float
    scale: float = 1.0
    colour: str = "RGB"

    @classmethod
    def parse(cls, text: str) -> Candidate:
        name, _, rest = text.partition("=")
        path, size, layout, mean, std, scale, *colour = rest.split(":")
        means = tuple(float(v) for v in mean.split(","))
        return cls(name, Path(path), int(size), layout, means * (3 // len(means)), float(std), float(scale),
                   *colour)


class ScaledEmbedder:
    """An ArcFaceEmbedder aligned to a scaled template (the crop's centre fixed)."""

    def __init__(self, inner, scale: float) -> None:
        self.inner, self.scale = inner, scale
        self.name, self.dim, self.spec = inner.name, inner.dim, inner.spec

    def crops(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        size = self.spec.size
        dst = (template(size) - size / 2) * self.scale + size / 2
        frame = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
        out = np.zeros((len(landmarks), size, size, 3), np.uint8)
        for i, marks in enumerate(np.asarray(landmarks, np.float64).reshape(-1, 5, 2)):
            if not landmarks_usable(marks):
                marks = landmarks_from_box(np.asarray(boxes)[i])
            out[i] = warp(frame, similarity_transform(marks, dst), size)
        return out

    def embed(self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return self.inner.embed_crops(self.crops(image, landmarks, boxes))


def load_candidate(c: Candidate, providers: list[str]):
    from handler.arcface import ArcFaceSpec, load_arcface

    spec = ArcFaceSpec(name=c.name, size=c.size, layout=c.layout, colour=c.colour, mean=c.mean, std=(c.std,) * 3,
                       flip=True)
    return ScaledEmbedder(load_arcface(spec, c.path, providers), c.scale)


# -- photos ----------------------------------------------------------------------------------------

def photo_metrics(embedder, faces, probes) -> dict:
    from bench.identity_thresholds import KINDS, match_rate, pair_scores, threshold_at_fmr

    emb = np.concatenate([embedder.embed(p.image, p.landmarks[None], p.box[None]) for p in probes])
    s = pair_scores(faces, probes, emb)
    g, i = s.pooled("genuine"), s.pooled("impostor")
    links = photo_links(faces, probes, emb, KINDS)
    return {"seq_same_min": float(s.sequence_genuine.min()), "seq_diff_max": float(s.sequence_impostor.max()),
            "seq_diff_mean": float(s.sequence_impostor.mean()), "seq_diff_sd": float(s.sequence_impostor.std()),
            "tmr_fmr1": match_rate(g, threshold_at_fmr(i)), "face_diff_max": float(i.max()),
            "small24_same_min": float(s.genuine["small24"].min()),
            "small24_diff_max": float(s.impostor["small24"].max()),
            **links}


def photo_links(faces, probes, emb, kinds) -> dict:
    """A face's mean over 5 degradations against another shot's mean over the other 4 (README links)."""
    by_face: dict[int, dict[str, np.ndarray]] = {}
    for p, e in zip(probes, emb, strict=True):
        by_face.setdefault(p.face, {})[p.kind] = e
    degr = [k for k in kinds if k != "clean"]
    a_kinds, b_kinds = degr[:5], degr[5:]

    def mean(f, ks):
        v = np.mean([by_face[f][k] for k in ks if k in by_face[f]], axis=0)
        return v / np.linalg.norm(v)

    same, diff = [], []
    for f in by_face:
        for h in by_face:
            if f == h or faces[f].shot == faces[h].shot:
                continue
            sim = float(mean(f, a_kinds) @ mean(h, b_kinds))
            (same if faces[f].identity == faces[h].identity else diff).append(sim)
    return {"link_same_min": float(np.min(same)), "link_diff_max": float(np.max(diff)),
            "link_diff_mean": float(np.mean(diff)), "link_diff_sd": float(np.std(diff)),
            "link_diff_p99": float(np.percentile(diff, 99))}


def derive(photo: dict, base: dict, base_zone: tuple[float, float], base_links: tuple[float, float]) -> dict:
    """Zone of doubt and links for a candidate, placed as MobileFaceNet's are in its own photo
    impostor distribution: each bound as many standard deviations above the mean of the
    different-people sequence medians (links: of the different-people links) as MobileFaceNet's.
    Embedders differ in how compressed their cosine scale is, so a fixed offset would not compare."""

    def place(value: float, key: str) -> float:
        k = (value - base[f"{key}_mean"]) / base[f"{key}_sd"]
        return photo[f"{key}_mean"] + k * photo[f"{key}_sd"]

    lo, hi = place(base_zone[0], "seq_diff"), place(base_zone[1], "seq_diff")
    weak, strong = place(base_links[0], "link_diff"), place(base_links[1], "link_diff")
    return {"T": round((hi + lo) / 2, 2), "M": round((hi - lo) / 2, 2), "weak": round(weak, 2),
            "strong": round(strong, 2)}


# -- clips -----------------------------------------------------------------------------------------

def detect_clip(video: Path, detector) -> list[tuple[np.ndarray, object]]:
    from faceblur.video import iter_frames

    return [(f.image, detector.detect(f.image)) for f in iter_frames(video)]


def embed_clip(frames, embedder, min_score: float):
    """Frame index -> FrameResult with this embedder's vectors (faces under ``min_score`` all zeros)."""
    from contract import FrameResult
    from handler.signature import frame_signature

    results = {}
    for index, (image, faces) in enumerate(frames, start=1):
        vectors = np.zeros((len(faces), embedder.dim), np.float32)
        chosen = np.flatnonzero(faces.confidence >= min_score)
        if len(chosen):
            vectors[chosen] = embedder.embed(image, faces.landmarks[chosen], faces.xyxy[chosen])
        f = faces.with_embedding(vectors)
        f.frame_index = index
        results[index] = FrameResult(width=int(image.shape[1]), height=int(image.shape[0]), faces=f,
                                     detector="centerface", embedder=embedder.name, signature=frame_signature(image))
    return results


def reference_vectors(photos: dict[str, str], faces_dir: Path, detector, embedder):
    """person -> {photo: FrameResult} as bench/identity_video.py builds them."""
    from faceblur.local import read_image

    out = {}
    for person, photo in photos.items():
        image = read_image(faces_dir / photo)[1]
        out[person] = {photo: embed_clip([(image, detector.detect(image))], embedder, 0.0)[1]}
    return out


def sample_pairs(clip, results, refs) -> tuple[list[float], list[float]]:
    """Scores of detected faces under SMALL px (matched to the truth by IoU >= 0.3) against every
    reference: the own person's (true) and the others' (false)."""
    from contract.boxes import iou_matrix

    ref_vec = {}
    for person, photos in refs.items():
        for r in photos.values():
            f = r.faces
            if len(f):
                big = int(np.argmax((f.xyxy[:, 2] - f.xyxy[:, 0]) * (f.xyxy[:, 3] - f.xyxy[:, 1])))
                ref_vec[person] = f.embedding[big]
    true, false = [], []
    for i, truth in enumerate(clip.truth):
        r = results.get(i + 1)
        if r is None or not len(r.faces) or not truth:
            continue
        people = list(truth)
        tb = np.array([truth[p] for p in people], np.float32)
        iou = iou_matrix(r.faces.xyxy.astype(np.float32), tb)
        for k in range(len(r.faces)):
            j = int(np.argmax(iou[k]))
            e = r.faces.embedding[k]
            side = max(tb[j, 2] - tb[j, 0], tb[j, 3] - tb[j, 1])
            if iou[k, j] < 0.3 or not np.any(e) or side >= SMALL:
                continue
            for person, v in ref_vec.items():
                (true if person == people[j] else false).append(float(e @ v))
    return true, false


def compare_clips(report: dict, embedders: dict, detector, args) -> None:
    """Plan numbers and per-sample separation of every embedder on the clips (detections made once)."""
    import tempfile

    from bench.identity_clips import REFERENCES, two_shots, write_clip
    from bench.identity_video import devset_clip, measure
    from handler.pipeline import EMBED_MIN_SCORE
    from postprocess.identity import DEFAULT_MARGINS, DEFAULT_THRESHOLDS
    from postprocess.persons import LINKS

    for name, r in report.items():
        if name != "mobilefacenet":
            DEFAULT_THRESHOLDS[name], DEFAULT_MARGINS[name] = r["zone"]["T"], r["zone"]["M"]
            LINKS[name] = (r["zone"]["weak"], r["zone"]["strong"])
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        if args.own_clip:
            own = two_shots(args.faces)
            clips.append((own, write_clip(own, Path(tmp) / "two_shots.mp4"), REFERENCES))
        clips += [devset_clip(name) for name in args.clips]
        for clip, video, references in clips:
            frames = detect_clip(video, detector)
            for name, emb in embedders.items():
                results = embed_clip(frames, emb, EMBED_MIN_SCORE)
                refs = reference_vectors(references, args.faces, detector, emb)
                rows = measure(clip, results, refs)
                true, false = sample_pairs(clip, results, refs)
                r = report[name].setdefault("clips", {})
                r[clip.name] = {"rows": rows, "true": true, "false": false}
                print(clip.name, name, " ".join(f"{x['mode']}:{x['person']}:{x['recall']:.3f}/{x['kept_clear']:.3f}"
                                               for x in rows), file=sys.stderr, flush=True)
    print("| embedder | small faces: AUC | TMR | highest impostor | all recall | known recall / kept | "
          "select recall / kept | unknown recall / kept |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in report.items():
        clips = r["clips"].values()
        true = np.concatenate([c["true"] for c in clips])
        false = np.concatenate([c["false"] for c in clips])
        tmr = float(np.mean(true > np.percentile(false, 99))) if len(false) else float("nan")
        r["tmr"], r["false_max"] = tmr, float(false.max()) if len(false) else float("nan")
        r["auc"] = float(np.mean(true[:, None] > false[None])) if len(true) and len(false) else float("nan")
        cells = []
        for mode in ("all", "known", "select", "unknown"):
            rows = [x for c in clips for x in c["rows"] if x["mode"] == mode]
            nb, nk = sum(x["must_blur"] for x in rows), sum(x["must_keep"] for x in rows)
            rb = sum(x["recall"] * x["must_blur"] for x in rows if x["must_blur"]) / nb if nb else float("nan")
            rk = sum(x["kept_clear"] * x["must_keep"] for x in rows if x["must_keep"]) / nk if nk else float("nan")
            r[mode] = (rb, rk)
            cells.append(f"{rb:.3f}" if mode == "all" else f"{rb:.3f} / {rk:.3f}")
        print(f"| {name} | {r['auc']:.3f} | {tmr:.2f} ({len(true)}/{len(false)}) | {r['false_max']:.2f} | "
              + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", default=[], type=Candidate.parse,
                        help="NAME=MODEL.onnx:SIZE:LAYOUT:MEAN[,G,B]:STD:SCALE[:BGR] (repeatable)")
    parser.add_argument("--model-dir", type=Path, default=None, help="where mobilefacenet.onnx is")
    parser.add_argument("--faces", type=Path, default=SHARED / "faces")
    parser.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS), help="development-set clips")
    parser.add_argument("--no-own-clip", dest="own_clip", action="store_false", help="skip two_shots")
    parser.add_argument("--photos-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from bench.identity_thresholds import detector_fn, labelled_faces, make_probes
    from handler.detector import DetectorConfig
    from handler.detector_factory import create_detector
    from handler.embedder import create_embedder
    from handler.pipeline import default_model_dir
    from postprocess.identity import DEFAULT_MARGINS, DEFAULT_THRESHOLDS
    from postprocess.persons import LINKS

    providers = ["CPUExecutionProvider"]
    model_dir = args.model_dir or default_model_dir()
    detector = create_detector(DetectorConfig(backend="centerface"), model_dir, providers)
    detect = detector_fn(detector)
    import insightface

    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    faces = labelled_faces(args.faces, detect, t1)
    probes = make_probes(faces, detect)
    embedders = {"mobilefacenet": create_embedder("mobilefacenet", model_dir, providers)}
    embedders.update({c.name: load_candidate(c, providers) for c in args.candidate})
    report: dict = {}
    for name, emb in embedders.items():
        report[name] = {"photos": photo_metrics(emb, faces, probes)}
        print(name, json.dumps(report[name]["photos"]), file=sys.stderr, flush=True)
    base = report["mobilefacenet"]["photos"]
    t, m = DEFAULT_THRESHOLDS["mobilefacenet"], DEFAULT_MARGINS["mobilefacenet"]
    for name in embedders:
        zone = derive(report[name]["photos"], base, (t - m, t + m), LINKS["mobilefacenet"])
        if name == "mobilefacenet":
            zone = {"T": t, "M": m, "weak": LINKS[name][0], "strong": LINKS[name][1]}
        report[name]["zone"] = zone
    print("| embedder | photos: TMR at FMR <= 1% | sequence medians same / different | zone of doubt | links |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in report.items():
        ph, z = r["photos"], r["zone"]
        print(f"| {name} | {ph['tmr_fmr1']:.2f} | >= {ph['seq_same_min']:.2f} / <= {ph['seq_diff_max']:.2f} | "
              f"[{z['T'] - z['M']:.2f}, {z['T'] + z['M']:.2f}] | {z['weak']:.2f} / {z['strong']:.2f} |")
    print()
    if not args.photos_only:
        compare_clips(report, embedders, detector, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
