"""Options of the decision stage (post-processing steps 1-7), validated once, in one dataclass.

``PlanConfig`` fields and defaults (README "Post-processing options"):

Which faces to blur
    mode = "all"            all | unknown | known | select
                            all: blur every face sequence;
                            unknown: blur all except sequences that match a reference person;
                            known: blur only sequences that match a reference person (borderline too);
                            select: the sequences under ``picks`` and every sequence of the same people.
    picks = ()              select: ``Pick`` points ``FRAME:X:Y`` (source pixels) on the faces to pick.
    pick_action = "blur"    select: "blur" the picked people, or "keep" them clear and blur everyone else.

Identity (postprocess/identity.py)
    identity_threshold = None   cosine similarity; None: ``DEFAULT_THRESHOLDS[embedder]``.
    identity_margin = None      None: ``DEFAULT_MARGINS[embedder]``. Fail safe: a sequence counts as a
                                person only when its robust score is
                                >= threshold + margin on >= min_samples samples; within +-margin of the
                                threshold, or on fewer samples, it is "borderline" and blurred.
    min_samples = 3             see identity_margin.
    max_samples = 16            embeddings sampled per sequence (spread over its length, best quality).
    allow_weak_embedder = False fail closed (postprocess/guard.py): with no embedder, or a weak one
                                (dlib), modes unknown/known/select blur every face and say why; True
                                trusts a weak embedder's decisions anyway.

Shots (postprocess/shots.py)
    cut_threshold = 0.5         L1 distance (0..2) between consecutive frame signatures that is a cut;
                                2.0 turns cut detection off.
    cut_spike_ratio = 4.0       also a cut: a distance >= cut_threshold / 2 that is this many times the
                                local median distance (a cut between two similar shots); 0 turns it off.

Sequences (postprocess/tracking.py)
    max_cost = 0.5              link cost (0..1) above which a face never joins a sequence.
    iou_weight = 1.0            weight of 1 - IoU(predicted box, face box).
    distance_weight = 1.0       weight of centre distance / face size (capped at 1).
    embedding_weight = 3.0      weight of the embedding cosine distance (skipped without embeddings).
    max_gap = 3                 frames a sequence survives without a detection while linking.
    join_gap = 15               afterwards, sequences in one shot with at most this many frames between
                                them are joined when position and embeddings agree (missed detections).

Filling, filtering, smoothing, padding
    interpolation = "pchip"     pchip | linear: boxes of the frames inside a sequence without a detection.
Confirmation: which sequences are faces (postprocess/confirm.py; the detector emits low-score candidates)
    short_keep_score = 0.6      one detection scoring this is a face (one confident frame is blurred).
    face_score = 0.3            a detection scoring this is confident; ``min_length`` of them make a face.
    min_length = 3              see face_score.
    min_candidates = 5          otherwise, the candidates must persist: at least this many detections...
    min_mean_score = 0.08       ...with this mean score...
    min_density = 0.3           ...on at least this share of the frames they span...
    max_jitter = 0.25           ...with a box steadier than this (centre + size step, face sizes/frame)...
    min_plausible = 0.5         ...and face-like landmarks on at least this share of them...
    dim_below = 1.01            ...in frames darker than this (median brightness 0-1 from the frame
                                signatures); 1.01, the default: in any light (recall first: a face in
                                light can score low too: profile, motion, shade). 0.3 confirms only in
                                dim frames: on the dev set every lit persistent candidate was texture.
    lit_below_size = 24.0       ...except faces smaller than this (median larger box side, px): a small face
                                scores low in light too (CenterFace is reliable from about 24 px).
    weak_max_cost = 0.3         linking: a candidate under face_score continues a confidently detected
                                sequence only at this cost or less (noise next to a face cannot take it).
    smooth_window = 5           centred moving average (frames) of box centre and size; 1 turns it off.
                                The smoothed box is widened to hold the raw box: never smaller.
    pad_frames = 5              anti-flicker: each sequence is extended this many frames at both ends
                                (within its shot) with its end box.
    pad_growth = 0.05           each padded frame grows the end box by this fraction of its size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MODES = ("all", "unknown", "known", "select")
PICK_ACTIONS = ("blur", "keep")
INTERPOLATIONS = ("pchip", "linear")

_PICK = re.compile(r"^\s*(\d+)\s*:\s*([0-9]*\.?[0-9]+)\s*:\s*([0-9]*\.?[0-9]+)\s*$")


@dataclass(frozen=True)
class Pick:
    """A point on a face to pick: frame number and source-pixel position."""

    frame: int
    x: float
    y: float

    def __post_init__(self) -> None:
        if self.frame < 0 or not (math.isfinite(self.x) and math.isfinite(self.y)) or self.x < 0 or self.y < 0:
            raise ValueError(f"pick needs frame >= 0 and x, y >= 0, got {self}")

    @classmethod
    def parse(cls, text: str) -> Pick:
        """``"FRAME:X:Y"``, e.g. ``"120:640:360"``."""
        match = _PICK.match(text)
        if not match:
            raise ValueError(f"pick must be FRAME:X:Y (frame number, x and y in pixels), got {text!r}")
        return cls(int(match[1]), float(match[2]), float(match[3]))

    def __str__(self) -> str:
        return f"{self.frame}:{self.x:g}:{self.y:g}"


def _check(ok: bool, field: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"PlanConfig.{field} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class PlanConfig:
    """All options of :func:`postprocess.plan.make_plan`; see the module docstring."""

    mode: str = "all"
    picks: tuple[Pick, ...] = ()
    pick_action: str = "blur"
    identity_threshold: float | None = None
    identity_margin: float | None = None
    min_samples: int = 3
    max_samples: int = 16
    allow_weak_embedder: bool = False
    cut_threshold: float = 0.5
    cut_spike_ratio: float = 4.0
    max_cost: float = 0.5
    iou_weight: float = 1.0
    distance_weight: float = 1.0
    embedding_weight: float = 3.0
    max_gap: int = 3
    join_gap: int = 15
    interpolation: str = "pchip"
    min_length: int = 3
    short_keep_score: float = 0.6
    face_score: float = 0.3
    min_candidates: int = 5
    min_mean_score: float = 0.08
    min_density: float = 0.3
    max_jitter: float = 0.25
    min_plausible: float = 0.5
    dim_below: float = 1.01
    lit_below_size: float = 24.0
    weak_max_cost: float = 0.3
    smooth_window: int = 5
    pad_frames: int = 5
    pad_growth: float = 0.05

    def __post_init__(self) -> None:
        _check(self.mode in MODES, "mode", f"one of {', '.join(MODES)}", self.mode)
        _check(self.pick_action in PICK_ACTIONS, "pick_action", f"one of {', '.join(PICK_ACTIONS)}",
               self.pick_action)
        picks = tuple(Pick.parse(p) if isinstance(p, str) else p for p in self.picks)
        _check(all(isinstance(p, Pick) for p in picks), "picks", "Pick objects or FRAME:X:Y strings", self.picks)
        object.__setattr__(self, "picks", picks)
        if self.mode == "select" and not picks:
            raise ValueError("PlanConfig.picks: mode 'select' needs at least one pick FRAME:X:Y")
        if self.mode != "select" and picks:
            raise ValueError(f"PlanConfig.picks are only used with mode 'select', mode is {self.mode!r}")
        _check(self.identity_threshold is None or -1.0 <= self.identity_threshold <= 1.0,
               "identity_threshold", "None or a cosine similarity in [-1, 1]", self.identity_threshold)
        _check(self.identity_margin is None or 0.0 <= self.identity_margin < 1.0, "identity_margin",
               "None or in [0, 1)", self.identity_margin)
        _check(isinstance(self.allow_weak_embedder, bool), "allow_weak_embedder", "true or false",
               self.allow_weak_embedder)
        _check(self.min_samples >= 1, "min_samples", ">= 1", self.min_samples)
        _check(self.max_samples >= self.min_samples, "max_samples", f">= min_samples ({self.min_samples})",
               self.max_samples)
        _check(0.0 < self.cut_threshold <= 2.0, "cut_threshold", "in (0, 2]", self.cut_threshold)
        _check(self.cut_spike_ratio == 0 or self.cut_spike_ratio >= 1, "cut_spike_ratio", "0 (off) or >= 1",
               self.cut_spike_ratio)
        _check(0.0 < self.max_cost <= 1.0, "max_cost", "in (0, 1]", self.max_cost)
        for name in ("iou_weight", "distance_weight", "embedding_weight"):
            _check(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        _check(self.iou_weight + self.distance_weight > 0, "iou_weight",
               "> 0 or distance_weight > 0 (a position term is needed)", self.iou_weight)
        _check(self.max_gap >= 0, "max_gap", ">= 0 frames", self.max_gap)
        _check(self.join_gap >= 0, "join_gap", ">= 0 frames", self.join_gap)
        _check(self.interpolation in INTERPOLATIONS, "interpolation", f"one of {', '.join(INTERPOLATIONS)}",
               self.interpolation)
        _check(self.min_length >= 1, "min_length", ">= 1 frame", self.min_length)
        _check(0.0 <= self.short_keep_score, "short_keep_score", ">= 0", self.short_keep_score)
        for name in ("face_score", "min_mean_score", "min_density", "min_plausible"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]", getattr(self, name))
        _check(0.0 <= self.dim_below <= 1.01, "dim_below", "in [0, 1.01]", self.dim_below)
        _check(self.lit_below_size >= 0, "lit_below_size", ">= 0 px", self.lit_below_size)
        _check(self.min_candidates >= 1, "min_candidates", ">= 1 detection", self.min_candidates)
        _check(self.max_jitter > 0, "max_jitter", "> 0", self.max_jitter)
        _check(0.0 < self.weak_max_cost <= self.max_cost, "weak_max_cost", f"in (0, max_cost {self.max_cost}]",
               self.weak_max_cost)
        _check(self.smooth_window >= 1, "smooth_window", ">= 1 frame", self.smooth_window)
        _check(self.pad_frames >= 0, "pad_frames", ">= 0 frames", self.pad_frames)
        _check(0.0 <= self.pad_growth <= 1.0, "pad_growth", "in [0, 1]", self.pad_growth)

    def to_dict(self) -> dict:
        """The options as JSON-ready values (picks as ``FRAME:X:Y`` strings)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["picks"] = [str(p) for p in self.picks]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PlanConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown PlanConfig options: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["picks"] = tuple(values.get("picks", ()))
        return cls(**values)
