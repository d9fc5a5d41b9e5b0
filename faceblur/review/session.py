"""One review: the input's frames, the plan being edited, where saves and renders go.

Where things are written (never anywhere else; the page sends no paths):

- the edited plan beside the original: ``<plan stem>.reviewed.json`` (``.reviewed-2.json``, ... when
  that exists: the original and earlier reviews are never overwritten; later saves of the same
  session replace this session's own file). The same on S3, beside the original object.
- the render: for a local video ``<input stem>_reviewed<ext>`` beside the input (numbered the same
  way), for a local folder of frames ``<name>_reviewed/`` beside it; on S3 ``<plan folder>/reviewed/``,
  rendered by the post-processing stage itself (a new digest there re-renders, the same one resumes).
  ``--output`` chooses another name, which must lie in the input's or the plan's folder.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceblur.review import edits
from faceblur.review.frames import FrameSource, open_frames
from faceblur.review.overlay import Overlay, draw

log = logging.getLogger(__name__)

MODES = ("rendered", "original", "boxes")
#: postprocess.run.MARKER_NAME, named here so opening the page does not import the planning code
#: (SciPy: a second of CPU at start); a test checks the two agree
MARKER_NAME = "face-blur-complete.json"
THUMB_HEIGHT = 160


class ReviewError(ValueError):
    """A review that cannot start or an action the page asked for that cannot be done."""


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_s3(uri: str) -> bool:
    from postprocess.storage import is_s3

    return is_s3(uri)


def _parent(uri: str) -> str:
    """The folder (``/``-terminated prefix for S3) that holds ``uri``."""
    if _is_s3(uri):
        return uri.rstrip("/").rsplit("/", 1)[0] + "/"
    return str(Path(uri).resolve().parent)


def inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (resolved: ``..`` and symlinks cannot climb out)."""
    if _is_s3(path) or _is_s3(root):
        if not (_is_s3(path) and _is_s3(root)):
            return False
        p, r = path, root.rstrip("/") + "/"
        return p.startswith(r) and ".." not in p[len(r):].split("/")
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def numbered(exists, make) -> Any:
    """The first of ``make(1)``, ``make(2)``, ... for which ``exists`` is false."""
    n = 1
    while exists(make(n)):
        n += 1
    return make(n)


@dataclass
class RenderState:
    state: str = "idle"  # idle | running | done | failed
    done: int = 0
    total: int = 0
    output: str = ""
    error: str = ""
    plan: str = ""
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "done": self.done, "total": self.total, "output": self.output,
                "error": self.error, "plan": self.plan, "pid": self.pid}


@dataclass
class ReviewSession:
    """Everything the server holds for one ``face-blur review INPUT --plan PLAN``."""

    input_uri: str
    plan_uri: str
    render_options: dict[str, Any] = field(default_factory=dict)  # RenderConfig.to_dict()
    encode_options: dict[str, Any] = field(default_factory=dict)  # EncodeConfig fields
    output: str | None = None
    workers: int = 2
    user: str = field(default_factory=_user)
    store: Any = None

    def __post_init__(self) -> None:
        from postprocess.blur import Blurrer, RenderConfig
        from postprocess.plan_format import Plan, PlanError
        from postprocess.storage import StorageError, Store

        self.store = self.store or Store()
        if not _is_s3(self.input_uri):
            self.input_uri = str(Path(self.input_uri).resolve())
        if not _is_s3(self.plan_uri):
            self.plan_uri = str(Path(self.plan_uri).resolve())
        try:
            body = self.store.read(self.plan_uri)
        except StorageError as exc:
            raise ReviewError(f"{self.plan_uri}: cannot read the plan ({exc})") from None
        try:
            self.plan: dict[str, Any] = json.loads(body)
            Plan.from_dict(self.plan)
        except (ValueError, PlanError) as exc:
            raise ReviewError(f"{self.plan_uri}: not a face-blur plan ({exc})") from None
        self.source_sha256 = hashlib.sha256(body).hexdigest()
        self.render_config = RenderConfig.from_dict(self.render_options or self._run_render_options())
        self._blurrer = Blurrer(self.render_config)
        self.roots = [_parent(self.input_uri), _parent(self.plan_uri)]
        if self.output is not None:
            self.output = self._check_output(self.output)
        self.frames: FrameSource = open_frames(self.input_uri, self.store)
        w, h = int(self.plan.get("width") or 0), int(self.plan.get("height") or 0)
        if w and (w, h) != (self.frames.width, self.frames.height):
            self.frames.close()
            raise ReviewError(f"{self.input_uri} is {self.frames.width}x{self.frames.height} but the plan was made "
                              f"for {w}x{h}: give the input the plan was made for")
        self.lock = threading.RLock()
        self.saved_uri: str | None = None
        self.dirty = False
        self.render = RenderState()
        self._render_output: str | None = None
        self._rebuild()

    def _run_render_options(self) -> dict[str, Any]:
        """The blur options of the run that wrote the plan, where its completion marker beside the
        plan records them (the post-processing stage's output); else the defaults."""
        marker_uri = (_parent(self.plan_uri) if _is_s3(self.plan_uri) else _parent(self.plan_uri) + "/") + MARKER_NAME
        try:
            options = json.loads(self.store.read(marker_uri))["options"]["render"]
        except Exception:  # no marker (a local plan), or not one we can read: the defaults
            return {}
        log.info("review: blur options of the run that made the plan (%s): %s", marker_uri, options)
        return options

    # ------------------------------------------------------------------------------ paths

    def _check_output(self, output: str) -> str:
        if not _is_s3(output):
            output = str(Path(output).resolve())
        if not any(inside(output, root) for root in self.roots):
            raise ReviewError(f"--output {output} is outside the input's folder ({self.roots[0]}) and the plan's "
                              f"({self.roots[1]}); the review writes only there")
        if output.rstrip("/") in (self.input_uri.rstrip("/"), self.plan_uri) or inside(output, self.input_uri) \
                or inside(self.input_uri, output):
            raise ReviewError(f"--output {output} would write over or into the input {self.input_uri}")
        return output

    def _exists(self, uri: str) -> bool:
        if _is_s3(uri):
            return self.store.exists(uri)
        return Path(uri).exists()

    def reviewed_plan_uri(self) -> str:
        """Where Save writes (see the module docstring)."""
        if self.saved_uri:
            return self.saved_uri
        base = self.plan_uri
        stem = base[:-5] if base.endswith(".json") else base
        for tag in (".reviewed",):
            head, _, tail = stem.rpartition(tag)
            if head and (tail == "" or tail.lstrip("-").isdigit()):
                stem = head
        return numbered(self._exists, lambda n: f"{stem}.reviewed{'' if n == 1 else f'-{n}'}.json")

    def render_output_uri(self) -> str:
        if self.output:
            return self.output
        if self._render_output:
            return self._render_output
        if _is_s3(self.plan_uri):
            return _parent(self.plan_uri) + "reviewed/"
        src = Path(self.input_uri)
        stem, suffix = (src.name, "") if src.is_dir() else (src.stem, src.suffix)
        return numbered(self._exists,
                        lambda n: str(src.with_name(f"{stem}_reviewed{'' if n == 1 else f'-{n}'}{suffix}")))

    # ------------------------------------------------------------------------------ plan

    def _rebuild(self) -> None:
        from postprocess.plan_format import Plan

        self._plan_obj = Plan.from_dict(self.plan)
        self._overlay = Overlay(self.plan)
        self._cards = edits.cards(self.plan)

    def cards(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._cards)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            s = self._plan_obj.summary
            counts = {d: 0 for d in ("blur", "keep", "drop", "mixed")}
            for c in self._cards:
                counts[c["decision"]] = counts.get(c["decision"], 0) + 1
            return {"frames": int(self.frames.count), "width": self.frames.width, "height": self.frames.height,
                    "sequences": s["sequences"], "cards": len(self._cards), "borderline": s["borderline"],
                    "decisions": counts, "input": self.frames.name, "plan": self.plan_uri.rsplit("/", 1)[-1],
                    "saved": self.saved_uri, "dirty": self.dirty, "user": self.user,
                    "changes": sum(1 for a in self.plan.get("audit", []) if a.get("action") != "save")}

    def set_decision(self, card_id: str, decision: str) -> None:
        with self.lock:
            self.plan = edits.set_decision(self.plan, card_id, decision, self.user, _now())
            self.dirty = True
            self._rebuild()

    def toggle(self, card_id: str) -> str:
        with self.lock:
            card = edits.find_card(self.plan, card_id)
            new = edits.TOGGLE.get(card["decision"], "blur")
            self.set_decision(card_id, new)
            return new

    def add_face(self, keyframes: list[edits.Keyframe], first: int, last: int) -> int:
        with self.lock:
            self.plan, sid = edits.add_sequence(self.plan, keyframes, first, last, self.user, _now())
            self.dirty = True
            self._rebuild()
            return sid

    def remove_added(self, sequence_id: int) -> None:
        with self.lock:
            self.plan = edits.remove_added(self.plan, sequence_id, self.user, _now())
            self.dirty = True
            self._rebuild()

    def save(self) -> str:
        """Write the edited plan (see the module docstring); returns where."""
        with self.lock:
            uri = self.reviewed_plan_uri()
            name = self.plan_uri.rsplit("/", 1)[-1]
            plan = edits.note_save(self.plan, name, self.source_sha256, self.user, _now())
            self.store.write(uri, json.dumps(plan, indent=1).encode())
            self.plan, self.saved_uri, self.dirty = plan, uri, False
            self._rebuild()
            log.info("review: plan saved to %s", uri)
            return uri

    # ------------------------------------------------------------------------------ pictures

    def frame_image(self, number: int, mode: str = "rendered") -> np.ndarray:
        if mode not in MODES:
            raise ReviewError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        rgb = self.frames.frame(number)
        with self.lock:
            plan, overlay = self._plan_obj, self._overlay
        if mode == "rendered":
            out = rgb.copy()
            if plan.is_full_frame(number):
                self._blurrer.blur_whole(out)
            else:
                self._blurrer.blur_in_place(out, plan.boxes(number))
            return out
        if mode == "boxes":
            return draw(rgb, overlay.at(number))
        return rgb

    def boxes(self, number: int) -> list[dict[str, Any]]:
        with self.lock:
            return self._overlay.at(number)

    def thumbnail(self, card_id: str) -> np.ndarray:
        """The card's best-quality face, cropped with some context (the face as it is: the reviewer
        must see who it is to decide)."""
        with self.lock:
            card = next((c for c in self._cards if c["id"] == card_id), None)
        if card is None:
            raise ReviewError(f"no card {card_id!r}")
        thumb = card["thumbnail"]
        rgb = self.frames.frame(int(thumb["frame"]))
        x1, y1, x2, y2 = thumb["box"]
        cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 0.8
        h, w = rgb.shape[:2]
        crop = rgb[max(0, int(cy - s)):min(h, int(cy + s)), max(0, int(cx - s)):min(w, int(cx + s))]
        if crop.size == 0:
            crop = rgb
        image = Image.fromarray(crop)
        image.thumbnail((THUMB_HEIGHT * 2, THUMB_HEIGHT))
        return np.asarray(image)

    def close(self) -> None:
        self.frames.close()


def jpeg(rgb: np.ndarray, max_width: int = 0, quality: int = 85) -> bytes:
    image = Image.fromarray(rgb)
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
