"""Synthetic frame results for the decision-stage tests: people as random unit vectors, their
detections as boxes along a path with noisy embeddings, shots as distinct frame signatures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from contract import FrameFaces, FrameResult

DIM = 128
WIDTH, HEIGHT = 640, 360


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def people(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """(n, dim) random unit vectors, one identity per person."""
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def noisy(identity: np.ndarray, noise: float, rng: np.random.Generator, count: int = 1) -> np.ndarray:
    """``count`` embeddings of one person: the identity plus Gaussian noise of norm about ``noise``."""
    dim = identity.shape[-1]
    return unit(identity[None, :] + noise * rng.normal(size=(count, dim)) / np.sqrt(dim))


def landmarks_for(box: np.ndarray) -> np.ndarray:
    """Five frontal landmarks inside a box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return np.stack([x1 + rel[:, 0] * w, y1 + rel[:, 1] * h], axis=1)


def box_at(cx: float, cy: float, size: float) -> np.ndarray:
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)


@dataclass
class Appearance:
    """One person seen over ``frames`` along ``path(frame) -> box``; ``missed`` frames not detected."""

    identity: np.ndarray
    frames: Iterable[int]
    path: Callable[[int], np.ndarray]
    missed: set[int] = field(default_factory=set)
    score: float = 0.9
    noise: float = 0.8


def build_results(appearances: list[Appearance], n_frames: int, cuts: Iterable[int] = (), seed: int = 1,
                  embedder: str = "mobilefacenet", detector: str = "centerface",
                  dim: int = DIM) -> dict[int, FrameResult]:
    """Frame number -> FrameResult for frames 0..n_frames-1. A shot starts at each frame in ``cuts``
    (a different signature histogram); faces come from the appearances (no embedding when
    ``embedder`` is empty)."""
    rng = np.random.default_rng(seed)
    starts = sorted(set(cuts))
    shot_hist = rng.dirichlet(np.ones(128) * 0.3, size=len(starts) + 1)
    per_frame: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = {f: [] for f in range(n_frames)}
    for a in appearances:
        for f in a.frames:
            if f in a.missed or not 0 <= f < n_frames:
                continue
            per_frame[f].append((a.path(f), noisy(a.identity, a.noise, rng)[0], a.score))
    results = {}
    for f in range(n_frames):
        shot = int(np.searchsorted(starts, f, side="right"))
        sig = shot_hist[shot] * (1 + 0.05 * rng.random(128))
        faces = per_frame[f]
        n = len(faces)
        boxes = np.array([b for b, _, _ in faces], np.float32).reshape(n, 4)
        emb = np.array([e for _, e, _ in faces], np.float32).reshape(n, dim) if embedder \
            else np.zeros((n, 0), np.float32)
        results[f] = FrameResult(WIDTH, HEIGHT, FrameFaces(
            xyxy=boxes, confidence=np.array([s for _, _, s in faces], np.float32),
            landmarks=np.array([landmarks_for(b) for b in boxes], np.float32).reshape(n, 5, 2),
            embedding=emb, frame_index=f), detector, embedder, sig / sig.sum())
    return results


def photo(embedding: np.ndarray | None, faces: int = 1, embedder: str = "mobilefacenet") -> FrameResult:
    """A reference photo's result with ``faces`` copies of one face (embedding None: not embedded)."""
    box = box_at(200, 200, 150)
    dim = 0 if embedding is None else len(embedding)
    emb = np.zeros((faces, dim), np.float32) if embedding is None else np.repeat(embedding[None], faces, 0)
    return FrameResult(400, 400, FrameFaces(
        xyxy=np.repeat(box[None], faces, 0), confidence=np.full(faces, 0.99, np.float32),
        landmarks=np.repeat(landmarks_for(box)[None], faces, 0), embedding=emb), "centerface",
        embedder if embedding is not None else "")


def synthetic_video(n_frames: int, seed: int = 0, max_faces: int = 5, shot_length: int = 300,
                    dim: int = DIM) -> dict[int, FrameResult]:
    """A long, realistic-looking result set for timing: shots every ~``shot_length`` frames, 0..max_faces
    people per shot moving slowly over most of it, each missed in ~5% of frames, a few one-frame
    false positives."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(shot_length // 2, shot_length * 3 // 2, size=n_frames // (shot_length // 2) + 1))
    cuts = cuts[cuts < n_frames]
    bounds = np.r_[0, cuts, n_frames]
    ids = people(20, seed, dim)
    apps: list[Appearance] = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        for _ in range(rng.integers(0, max_faces + 1)):
            cx, cy, size = rng.uniform(80, WIDTH - 80), rng.uniform(60, HEIGHT - 60), rng.uniform(30, 90)
            vx, vy = rng.normal(0, 0.5, 2)
            span = end - start
            a0 = int(rng.integers(start, start + max(1, int(span * 0.3))))
            a1 = int(rng.integers(max(a0 + 1, end - int(span * 0.3)), end + 1))
            frames = range(a0, a1)
            missed = {f for f in frames if rng.random() < 0.05}

            def path(f: int, cx=cx, cy=cy, vx=vx, vy=vy, size=size, a0=a0) -> np.ndarray:
                return box_at(np.clip(cx + vx * (f - a0), 0, WIDTH), np.clip(cy + vy * (f - a0), 0, HEIGHT), size)

            apps.append(Appearance(ids[rng.integers(len(ids))], frames, path, missed))
        for _ in range(rng.integers(0, 3)):  # one-frame weak false positives
            f = int(rng.integers(start, end))
            b = box_at(rng.uniform(20, WIDTH - 20), rng.uniform(20, HEIGHT - 20), 20)
            apps.append(Appearance(ids[0], [f], lambda _f, b=b: b, score=0.45))
    return build_results(apps, n_frames, cuts.tolist(), seed + 1, dim=dim)
