"""The plan file format: which boxes to blur in which frame, and why. Audit record and render input
(:class:`Plan`, :class:`SequencePlan`, to and from JSON). Made by :func:`postprocess.plan.make_plan`.

JSON layout (schema ``face-blur/plan/v1``)::

    {"schema": "face-blur/plan/v1", "width": W, "height": H,
     "detector": "centerface", "embedder": "mobilefacenet",
     "options": {...PlanConfig fields, picks as "FRAME:X:Y"...},
     "identity": {"threshold": 0.3, "margin": 0.05, "min_samples": 3,
                  "references": {"alice": ["alice1.jpg", "alice2.jpg"]},      (photo names only)
                  "picks": {"120:640:360": 7}},                               (select: pick -> sequence id)
     "frames": [[first, last], ...],        all frame numbers of the video, as inclusive runs
     "full_frames": [[first, last], ...],   frames blurred whole (no usable result)
     "shots": [[first, last], ...],         shot i = frames first..last
     "sequences": [{"id": 7, "shot": 0, "first": 120, "last": 260,
                    "rows": "pppddddiiddd...ppp",   per frame: d detected, i interpolated, p padded
                    "boxes": [[x1, y1, x2, y2], ...],  one per frame first..last (final blur boxes)
                    "samples": 16, "scores": {"alice": 0.412}, "person": "alice",
                    "threshold": 0.3, "margin": 0.05,
                    "decision": "keep", "reason": "matches reference 'alice': ...",
                    "borderline": false,
                    "confidence": [0.0, 0.91, ...]},    optional: detector score per frame (0: added row)
                   ...],
     "summary": {"frames": ..., "sequences": ..., "blurred": ..., ...}}

``decision`` is ``blur`` | ``keep`` | ``drop`` (a likely false positive, not blurred). The sequences
(their ``decision`` and ``boxes``) and ``full_frames`` are authoritative: the per-frame boxes to blur
are derived from them whenever a plan is made or loaded, so a reviewer can flip a decision (or move
a box, or add a sequence with just id, shot, first, boxes and decision) and re-render with
``face-blur render --plan``. ``summary`` is recomputed on load. The plan never contains embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "face-blur/plan/v1"
DECISIONS = ("blur", "keep", "drop")
ROW_KIND = np.array(list("dip"))  # rows letters: detected, interpolated, padded


class PlanError(ValueError):
    """A plan that does not follow ``face-blur/plan/v1``; the message names the field."""


@dataclass
class SequencePlan:
    """One face sequence in the plan: final boxes for frames ``first``..``last`` and its decision."""

    id: int
    shot: int
    first: int
    boxes: np.ndarray
    decision: str
    reason: str = ""
    borderline: bool = False
    rows: str = ""
    samples: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    person: str | None = None
    threshold: float | None = None
    margin: float | None = None
    confidence: np.ndarray | None = None  # detector score per frame (0 for added rows); optional

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, np.float32).reshape(-1)
            if len(self.confidence) != len(self.boxes):
                raise PlanError(f"sequence {self.id}: confidence has {len(self.confidence)} values for "
                                f"{len(self.boxes)} boxes")
        if self.decision not in DECISIONS:
            raise PlanError(f"sequence {self.id}: decision must be one of {', '.join(DECISIONS)}, "
                            f"got {self.decision!r}")
        if not len(self.boxes):
            raise PlanError(f"sequence {self.id}: boxes must not be empty")
        if not np.isfinite(self.boxes).all():
            raise PlanError(f"sequence {self.id}: boxes must be finite numbers")
        if self.rows and len(self.rows) != len(self.boxes):
            raise PlanError(f"sequence {self.id}: rows has {len(self.rows)} letters for {len(self.boxes)} boxes")

    @property
    def last(self) -> int:
        return self.first + len(self.boxes) - 1

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id, "shot": self.shot, "first": self.first, "last": self.last, "rows": self.rows,
            "boxes": np.round(self.boxes.astype(np.float64), 1).tolist(),
            "samples": self.samples, "scores": {p: round(s, 4) for p, s in self.scores.items()},
            "person": self.person, "threshold": self.threshold, "margin": self.margin,
            "decision": self.decision, "reason": self.reason, "borderline": self.borderline,
        }
        if self.confidence is not None:
            out["confidence"] = np.round(self.confidence.astype(np.float64), 2).tolist()
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str) -> SequencePlan:
        if not isinstance(d, dict):
            raise PlanError(f"{where} must be an object")
        for key in ("id", "shot", "first", "boxes", "decision"):
            if key not in d:
                raise PlanError(f"{where}.{key} is missing")
        try:
            boxes = np.asarray(d["boxes"], np.float64)
        except (TypeError, ValueError):
            raise PlanError(f"{where}.boxes must be a list of [x1, y1, x2, y2]") from None
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise PlanError(f"{where}.boxes must be a list of [x1, y1, x2, y2], got shape {boxes.shape}")
        if "last" in d and d["last"] != d["first"] + len(boxes) - 1:
            raise PlanError(f"{where}: first..last spans {d['last'] - d['first'] + 1} frames but boxes has "
                            f"{len(boxes)} (one box per frame)")
        scores = d.get("scores") or {}
        if not isinstance(scores, dict):
            raise PlanError(f"{where}.scores must be an object")
        try:
            return cls(id=int(d["id"]), shot=int(d["shot"]), first=int(d["first"]), boxes=boxes,
                       decision=d["decision"], reason=str(d.get("reason", "")),
                       borderline=bool(d.get("borderline", False)), rows=str(d.get("rows", "")),
                       samples=int(d.get("samples", 0)), scores={str(k): float(v) for k, v in scores.items()},
                       person=d.get("person"), threshold=d.get("threshold"), margin=d.get("margin"),
                       confidence=d.get("confidence"))
        except PlanError as exc:
            raise PlanError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise PlanError(f"{where}: {exc}") from None


def _runs(values: np.ndarray) -> list[list[int]]:
    """Sorted unique ints -> inclusive runs [[first, last], ...]."""
    v = np.asarray(values, np.int64)
    if not len(v):
        return []
    breaks = np.flatnonzero(np.diff(v) != 1)
    starts = np.r_[v[0], v[breaks + 1]]
    ends = np.r_[v[breaks], v[-1]]
    return np.stack([starts, ends], axis=1).tolist()


def _unruns(runs: Any, where: str) -> np.ndarray:
    if not isinstance(runs, list):
        raise PlanError(f"{where} must be a list of [first, last] runs")
    parts = []
    for run in runs:
        if not isinstance(run, list) or len(run) != 2 or not all(isinstance(x, int) for x in run) or run[1] < run[0]:
            raise PlanError(f"{where} must hold [first, last] integer runs with first <= last, got {run!r}")
        parts.append(np.arange(run[0], run[1] + 1, dtype=np.int64))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


class Plan:
    """Boxes to blur per frame plus the record of how they were chosen (see the module docstring)."""

    def __init__(self, width: int, height: int, frame_indices: Iterable[int], sequences: list[SequencePlan],
                 full_frames: Iterable[int] = (), shots: np.ndarray | None = None, detector: str = "",
                 embedder: str = "", options: dict[str, Any] | None = None,
                 identity: dict[str, Any] | None = None) -> None:
        self.width, self.height = int(width), int(height)
        self.frame_indices = np.unique(np.asarray(list(frame_indices), np.int64))
        self.full_frames = np.unique(np.asarray(list(full_frames), np.int64))
        self.sequences = list(sequences)
        self.shots = np.zeros((0, 2), np.int64) if shots is None else np.asarray(shots, np.int64).reshape(-1, 2)
        self.detector, self.embedder = detector, embedder
        self.options = dict(options or {})
        self.identity = dict(identity or {})
        self._index()

    def _index(self) -> None:
        """Per-frame boxes of every ``blur`` sequence, clamped to the frame, sorted by frame."""
        blur = [s for s in self.sequences if s.decision == "blur"]
        if blur:
            frames = np.concatenate([s.first + np.arange(len(s.boxes)) for s in blur])
            boxes = np.concatenate([s.boxes for s in blur]).astype(np.float32)
        else:
            frames, boxes = np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        if self.width > 0 and self.height > 0:
            boxes = np.clip(boxes, 0, np.array([self.width, self.height, self.width, self.height], np.float32))
        lo = np.minimum(boxes[:, :2], boxes[:, 2:])
        hi = np.maximum(boxes[:, :2], boxes[:, 2:])
        boxes = np.concatenate([lo, hi], axis=1)
        visible = (hi[:, 0] > lo[:, 0]) & (hi[:, 1] > lo[:, 1])
        order = np.argsort(frames[visible], kind="stable")
        self._frames = frames[visible][order]
        self._boxes = boxes[visible][order]

    def boxes(self, frame_index: int) -> np.ndarray:
        """(k,4) float32 face boxes to blur in this frame (mask scale not applied)."""
        lo, hi = np.searchsorted(self._frames, [frame_index, frame_index + 1])
        return self._boxes[lo:hi].copy()

    def is_full_frame(self, frame_index: int) -> bool:
        """Blur the whole frame (it had no usable result)."""
        i = np.searchsorted(self.full_frames, frame_index)
        return bool(i < len(self.full_frames) and self.full_frames[i] == frame_index)

    @property
    def summary(self) -> dict[str, Any]:
        decisions = [s.decision for s in self.sequences]
        return {
            "frames": int(len(self.frame_indices)),
            "full_frames": int(len(self.full_frames)),
            "frames_with_boxes": int(len(np.unique(self._frames))),
            "boxes": int(len(self._frames)),
            "faces": int(sum(s.rows.count("d") for s in self.sequences)),
            "shots": int(len(self.shots)),
            "sequences": len(self.sequences),
            "blurred": decisions.count("blur"),
            "kept": decisions.count("keep"),
            "dropped": decisions.count("drop"),
            "borderline": sum(bool(s.borderline) for s in self.sequences),
            "mode": self.options.get("mode", ""),
            "detector": self.detector,
            "embedder": self.embedder,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "width": self.width, "height": self.height,
            "detector": self.detector, "embedder": self.embedder,
            "options": self.options, "identity": self.identity,
            "frames": _runs(self.frame_indices), "full_frames": _runs(self.full_frames),
            "shots": self.shots.tolist(),
            "sequences": [s.to_dict() for s in self.sequences],
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """Read a plan (possibly edited by a person); per-frame boxes follow the sequences' decisions."""
        if not isinstance(data, dict):
            raise PlanError(f"plan must be a JSON object, got {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise PlanError(f"unsupported plan schema {data.get('schema')!r}; this version reads {SCHEMA!r}")
        for key in ("width", "height"):
            if isinstance(data.get(key), bool) or not isinstance(data.get(key), int) or data[key] < 0:
                raise PlanError(f"{key} must be a non-negative integer, got {data.get(key)!r}")
        seqs = data.get("sequences", [])
        if not isinstance(seqs, list):
            raise PlanError("sequences must be a list")
        sequences = [SequencePlan.from_dict(s, f"sequences[{i}]") for i, s in enumerate(seqs)]
        shots = data.get("shots", [])
        try:
            shots_arr = np.asarray(shots, np.int64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise PlanError("shots must be a list of [first, last] runs") from None
        return cls(data["width"], data["height"], _unruns(data.get("frames", []), "frames"), sequences,
                   _unruns(data.get("full_frames", []), "full_frames"), shots_arr,
                   str(data.get("detector", "")), str(data.get("embedder", "")),
                   data.get("options") or {}, data.get("identity") or {})

    def dumps(self, indent: int | None = None) -> bytes:
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":")).encode()

    @classmethod
    def loads(cls, body: bytes | str) -> Plan:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PlanError(f"plan is not JSON: {exc}") from None
        return cls.from_dict(data)
