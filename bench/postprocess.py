"""Post-processing costs: planning over many frames, rendering against the codec floor, JSON size.

- Plan: :func:`synthetic_results` makes frame results the way a real video gives them (shots with
  signature jumps at cuts, 0-4 people per shot who enter and leave, boxes that drift, detections
  missed for a frame or a few, an occasional one-frame false positive, one embedding per face that
  stays close to its person's). ``make_plan`` is timed on them in mode ``all`` and in mode
  ``unknown`` with one reference person (identity decisions on top).
- Render: one 1080p JPEG frame with faces, decoded, blurred with ``postprocess.blur.Blurrer`` and
  encoded again, next to the floor for the same frame: decode and encode with the same library
  (Pillow) and quality, nothing else. The ratio says what blurring adds to the unavoidable codec work.
- JSON: bytes of ``contract.dumps`` per face, for each embedding width.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from bench.frames import BenchFrame
from bench.report import Budget, median_ms
from contract import FrameFaces, FrameResult, dumps

SIGNATURE_BINS = 128
PEOPLE_WEIGHTS = (0.15, 0.35, 0.30, 0.15, 0.05)  # P(0..4 people in a shot)


@dataclass(frozen=True)
class Synthetic:
    results: dict[int, FrameResult]
    faces: int
    shots: int
    people: int
    person_vectors: np.ndarray  # (people, dim): the identity each face's embedding is drawn around


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_results(frames: int, dim: int = 512, size: tuple[int, int] = (1920, 1080), seed: int = 0,
                      embedder: str = "arcface-r100") -> Synthetic:
    """``frames`` frame results of a plausible video (see the module docstring)."""
    rng = np.random.default_rng(seed)
    width, height = size
    per_frame: list[list[tuple[np.ndarray, float, np.ndarray]]] = [[] for _ in range(frames)]
    signatures = np.empty((frames, SIGNATURE_BINS), np.float32)
    start, shots, people_vectors = 0, 0, []
    while start < frames:
        length = min(frames - start, int(rng.integers(60, 600)))
        shots += 1
        base = rng.dirichlet(np.full(SIGNATURE_BINS, 0.3)).astype(np.float32)
        noise = rng.normal(0, 0.002, (length, SIGNATURE_BINS)).astype(np.float32)
        sig = np.clip(base + noise, 0, None)
        signatures[start:start + length] = sig / sig.sum(axis=1, keepdims=True)
        for _ in range(int(rng.choice(len(PEOPLE_WEIGHTS), p=PEOPLE_WEIGHTS))):
            vec = _unit(rng.normal(size=dim))
            people_vectors.append(vec)
            enter = int(rng.integers(0, max(1, length // 3)))
            leave = int(rng.integers(min(length, enter + 10), length + 1))
            side = float(rng.uniform(40, 300))
            cx, cy = rng.uniform(side, width - side), rng.uniform(side, height - side)
            vx, vy = rng.normal(0, 2, 2)
            for t in range(enter, leave):
                if rng.random() < 0.05:  # missed detection
                    continue
                x, y = float(np.clip(cx + vx * t, 0, width)), float(np.clip(cy + vy * t, 0, height))
                s = side * (1 + 0.1 * np.sin(t / 25))
                box = np.array([x - s / 2, y - s / 2, x + s / 2, y + s * 0.6], np.float32)
                box = np.clip(box, 0, [width, height, width, height])
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                emb = _unit(vec + rng.normal(0, 0.5 / np.sqrt(dim), dim))
                per_frame[start + t].append((box, float(rng.uniform(0.6, 0.99)), emb))
        start += length
    fp = rng.random(frames) < 0.01  # one-frame false positives
    results: dict[int, FrameResult] = {}
    faces = 0
    for i in range(frames):
        entries = per_frame[i]
        if fp[i]:
            x, y = rng.uniform(0, width - 30), rng.uniform(0, height - 30)
            entries = entries + [(np.array([x, y, x + 24, y + 28], np.float32), 0.45, _unit(rng.normal(size=dim)))]
        n = len(entries)
        faces += n
        boxes = np.array([e[0] for e in entries], np.float32).reshape(n, 4)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        w = boxes[:, 2] - boxes[:, 0]
        lm = np.stack([cx - 0.2 * w, cy - 0.1 * w, cx + 0.2 * w, cy - 0.1 * w, cx, cy + 0.05 * w,
                       cx - 0.15 * w, cy + 0.25 * w, cx + 0.15 * w, cy + 0.25 * w], axis=1).reshape(n, 5, 2)
        ff = FrameFaces(boxes, np.array([e[1] for e in entries], np.float32), lm,
                        np.array([e[2] for e in entries], np.float32).reshape(n, dim), frame_index=i)
        results[i] = FrameResult(width, height, ff, "ensemble", embedder, signatures[i])
    return Synthetic(results, faces, shots, len(people_vectors), np.array(people_vectors).reshape(-1, dim))


def reference_for(synth: Synthetic, person: int = 0, photos: int = 3, seed: int = 1
                  ) -> dict[str, dict[str, FrameResult]]:
    """Reference photos (one face each) of one person of the synthetic video."""
    rng = np.random.default_rng(seed)
    vec = synth.person_vectors[person]
    dim = len(vec)
    any_result = next(iter(synth.results.values()))
    photos_out = {}
    for k in range(photos):
        emb = _unit(vec + rng.normal(0, 0.5 / np.sqrt(dim), dim))[None]
        lm = np.array([[[80, 100], [140, 100], [110, 130], [85, 160], [135, 160]]], np.float32)
        ff = FrameFaces(np.array([[40, 40, 180, 200]], np.float32), np.array([0.99], np.float32), lm, emb)
        photos_out[f"ref{k}.jpg"] = FrameResult(400, 400, ff, any_result.detector, any_result.embedder)
    return {"person0": photos_out}


def time_plan(synth: Synthetic) -> list[tuple[str, float, str]]:
    """(mode, seconds, summary) for make_plan over the synthetic results."""
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    out = []
    runs = [("all", PlanConfig(mode="all"), None)]
    if len(synth.person_vectors):
        runs.append(("unknown (1 reference person)", PlanConfig(mode="unknown"), reference_for(synth)))
    for label, config, refs in runs:
        t0 = time.perf_counter()
        plan = make_plan(synth.results, config, references=refs)
        seconds = time.perf_counter() - t0
        summary = getattr(plan, "summary", {}) or {}
        keys = ("sequences", "blurred", "kept", "borderline")
        out.append((label, seconds, ", ".join(f"{k} {summary[k]}" for k in keys if k in summary)))
    return out


def _decode(data: bytes) -> np.ndarray:
    """What ``render_image`` does before blurring: open, orient, load, a writeable RGB array."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    return np.array(image.convert("RGB"))


def _encode(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class RenderTiming:
    frame: str
    faces: int
    floor_ms: float
    render_ms: float
    style: str

    @property
    def ratio(self) -> float:
        return self.render_ms / self.floor_ms


def time_render(frames: list[BenchFrame], budget: Budget, styles: tuple[str, ...] = ("blur",)) -> list[RenderTiming]:
    """``postprocess.render.render_image`` (decode, blur, encode) against decode + encode alone, per
    JPEG frame at ``RenderConfig``'s quality."""
    from postprocess.blur import Blurrer, RenderConfig
    from postprocess.render import render_image

    out = []
    for fr in frames:
        for style in styles:
            config = RenderConfig(style=style)
            blurrer = Blurrer(config)
            data = fr.jpeg(config.jpeg_quality)
            boxes = fr.boxes

            def floor(data=data, q=config.jpeg_quality):
                _encode(_decode(data), q)

            def render(data=data, blurrer=blurrer, boxes=boxes, name=fr.name):
                render_image(data, name, boxes, False, blurrer)

            out.append(RenderTiming(fr.name, fr.faces, median_ms(floor, budget), median_ms(render, budget), style))
    return out


def json_bytes_per_face(faces: int = 5, dims: tuple[int, ...] = (512, 192, 128, 0)) -> list[tuple[int, float, int]]:
    """(embedding dim, bytes per face, bytes of a frame without faces) of ``contract.dumps``."""
    rng = np.random.default_rng(0)
    sig = rng.dirichlet(np.ones(SIGNATURE_BINS)).astype(np.float32)
    out = []
    for dim in dims:
        boxes = rng.uniform(0, 1000, (faces, 4)).astype(np.float32)
        boxes[:, 2:] = boxes[:, :2] + rng.uniform(30, 300, (faces, 2))
        lm = rng.uniform(0, 1000, (faces, 5, 2)).astype(np.float32)
        emb = _unit(rng.normal(size=(faces, dim))) if dim else np.zeros((faces, 0), np.float32)
        with_faces = FrameResult(1920, 1080, FrameFaces(boxes, rng.uniform(0.5, 1, faces), lm, emb),
                                 "ensemble", "x" if dim else "", sig)
        empty = FrameResult(1920, 1080, FrameFaces.empty(dim), "ensemble", "x" if dim else "", sig)
        base = len(dumps(empty))
        out.append((dim, (len(dumps(with_faces)) - base) / faces, base))
    return out
