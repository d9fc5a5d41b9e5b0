"""``FrameFaces``: the faces of one frame as parallel numpy columns (after ``supervision.Detections``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def column(owner: str, name: str, value: np.ndarray, shape: tuple[int | None, ...], dtype: type,
           rows: str = "n") -> np.ndarray:
    """``value`` as an array of ``dtype`` and ``shape`` (None: any length, written ``rows``); a wrong
    shape raises ValueError naming ``owner.name`` and the expected shape. The one column check of
    every column dataclass (``FrameFaces`` here, ``postprocess.tracking.FaceTrack``)."""
    arr = np.asarray(value, dtype=dtype)
    bad_dims = arr.ndim != len(shape)
    if bad_dims or any(want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)):
        expected = "x".join(rows if s is None else str(s) for s in shape)
        raise ValueError(f"{owner}.{name} must have shape ({expected}), got {arr.shape}")
    return arr


def _column(name: str, value: np.ndarray, shape: tuple[int | None, ...], dtype: type) -> np.ndarray:
    return column("FrameFaces", name, value, shape, dtype)


@dataclass
class FrameFaces:
    """Faces found in one frame.

    ``xyxy`` (n,4) float32 in source-frame pixels; ``confidence`` (n,); ``landmarks`` (n,5,2) in the
    order left eye, right eye, nose, left mouth corner, right mouth corner (image left/right);
    ``embedding`` (n,d) L2-normalised float32 (d may be 0 before embedding); ``track_id`` (n,) int64,
    -1 where no sequence has been assigned; ``frame_index`` the frame's number (-1 if unknown).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    embedding: np.ndarray
    frame_index: int = -1
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.xyxy = _column("xyxy", self.xyxy, (None, 4), np.float32)
        n = len(self.xyxy)
        self.confidence = _column("confidence", self.confidence, (n,), np.float32)
        self.landmarks = _column("landmarks", self.landmarks, (n, 5, 2), np.float32)
        emb = np.asarray(self.embedding, dtype=np.float32)
        if emb.ndim == 1 and emb.size == 0:
            emb = emb.reshape(n, 0)
        self.embedding = _column("embedding", emb, (n, None), np.float32)
        if self.track_id is None:
            self.track_id = np.full(n, -1, dtype=np.int64)
        self.track_id = _column("track_id", self.track_id, (n,), np.int64)
        self.frame_index = int(self.frame_index)
        if not np.all(np.isfinite(self.xyxy)):
            raise ValueError("FrameFaces.xyxy contains NaN or infinity")

    @classmethod
    def empty(cls, dim: int = 0, frame_index: int = -1) -> FrameFaces:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            embedding=np.zeros((0, dim), np.float32),
            frame_index=frame_index,
        )

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | list[int] | np.ndarray) -> FrameFaces:
        """Index every column alike; always returns a new object (a bool mask or indices)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return FrameFaces(
            xyxy=self.xyxy[index].copy(),
            confidence=self.confidence[index].copy(),
            landmarks=self.landmarks[index].copy(),
            embedding=self.embedding[index].copy(),
            frame_index=self.frame_index,
            track_id=self.track_id[index].copy(),
        )

    def with_embedding(self, embedding: np.ndarray) -> FrameFaces:
        return FrameFaces(self.xyxy.copy(), self.confidence.copy(), self.landmarks.copy(), embedding,
                          self.frame_index, self.track_id.copy())

    def with_track_ids(self, track_id: np.ndarray) -> FrameFaces:
        return FrameFaces(self.xyxy.copy(), self.confidence.copy(), self.landmarks.copy(),
                          self.embedding.copy(), self.frame_index, track_id)

    @staticmethod
    def concat(parts: list[FrameFaces], dim: int = 0) -> FrameFaces:
        """Stack several sets (all with the same embedding width) into one."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return FrameFaces.empty(dim)
        return FrameFaces(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            landmarks=np.concatenate([p.landmarks for p in parts]),
            embedding=np.concatenate([p.embedding for p in parts]),
            frame_index=parts[0].frame_index,
            track_id=np.concatenate([p.track_id for p in parts]),
        )
