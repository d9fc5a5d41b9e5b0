"""Writing the output frames (issue #3 step 8): blur what the plan says, copy the rest.

For each frame: when the plan has boxes for it (or says "blur the whole frame"), read it, blur, and
write it under the output prefix with the same relative name and format (JPEG at
``jpeg_quality``, PNG lossless); otherwise copy it server-side (S3 CopyObject: the bytes never
come down). Frames go through a thread pool of ``workers``.

Parallel and resumable:

- :class:`RenderManifest` (``<output>/face-blur-frames.json``, written by the plan step) lists the
  frames (number and relative key), the run digest and a ``render_id``; render jobs read it instead
  of listing 864,000 input objects again.
- :func:`share` cuts the frames into ``count`` contiguous slices; an AWS Batch array child renders
  slice ``AWS_BATCH_JOB_ARRAY_INDEX``.
- Progress journal: every ``flush_every`` finished frames a small JSON under
  ``<output>/.face-blur/progress/<render_id>/`` records their numbers. A re-run with the same digest
  (same plan, render options and frames: same ``render_id``) skips the recorded frames; a frame
  written but not yet recorded is rendered again, which gives the same bytes. A run with another
  digest gets a new ``render_id`` and so starts from scratch. Finalize requires every frame in
  these records, so files left by an older run never pass for this one's.
- Every written S3 object carries the digest as user metadata ``face-blur-digest``.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps

from postprocess.blur import Blurrer, RenderConfig
from postprocess.parallel import bounded_map
from postprocess.reading import FrameRef
from postprocess.storage import Store, folder, join

log = logging.getLogger(__name__)

MANIFEST_NAME = "face-blur-frames.json"
MANIFEST_SCHEMA = "face-blur/frames/v1"
PROGRESS_DIR = ".face-blur/progress"
METADATA_KEY = "face-blur-digest"


class RenderError(RuntimeError):
    """A frame that cannot be rendered (undecodable, wrong size, not in the plan); names the frame."""


class PlanLike(Protocol):
    """What rendering needs from ``postprocess.plan_format.Plan``."""

    width: int
    height: int

    @property
    def frame_indices(self) -> Sequence[int]: ...

    def boxes(self, frame_index: int) -> np.ndarray: ...

    def is_full_frame(self, frame_index: int) -> bool: ...


@dataclass(frozen=True)
class RenderManifest:
    """The frames of one run and its identity (see the module docstring)."""

    frames_uri: str
    frames: tuple[FrameRef, ...]
    digest: str
    render_id: str

    def to_json(self) -> bytes:
        return json.dumps({
            "schema": MANIFEST_SCHEMA, "frames_uri": self.frames_uri, "digest": self.digest,
            "render_id": self.render_id, "frames": [[f.number, f.key] for f in self.frames],
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes, where: str = MANIFEST_NAME) -> RenderManifest:
        try:
            data = json.loads(body)
            if data.get("schema") != MANIFEST_SCHEMA:
                raise ValueError(f"schema is {data.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
            frames = tuple(FrameRef(int(n), str(k)) for n, k in data["frames"])
            return cls(str(data["frames_uri"]), frames, str(data["digest"]), str(data["render_id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RenderError(f"{where} is not a valid frames manifest: {exc}") from None

    @staticmethod
    def new_render_id() -> str:
        return uuid.uuid4().hex[:16]


@dataclass
class RenderStats:
    """What one render call did."""

    frames: int = 0  # frames in this share
    rendered: int = 0  # read, blurred, written
    copied: int = 0  # nothing to blur: copied
    skipped: int = 0  # already done by an earlier attempt with the same digest
    full_frames: int = 0  # of ``rendered``: blurred whole (no usable result)
    faces: int = 0  # boxes blurred
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def share(frames: Sequence[FrameRef], index: int, count: int) -> list[FrameRef]:
    """Slice ``index`` of ``count`` contiguous, near-equal slices (in frame order)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"slice index must be in [0, {count}) with count >= 1, got index {index} of {count}")
    n = len(frames)
    return list(frames[index * n // count:(index + 1) * n // count])


_SAVE = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}
_ORIENTATION = 0x0112


def render_image(data: bytes, name: str, boxes: np.ndarray, full: bool, blurrer: Blurrer,
                 size: tuple[int, int] | None = None) -> bytes:
    """Decode one frame, hide ``boxes`` (or everything when ``full``), encode it in its own format."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            fmt = _SAVE.get(opened.format or "")
            if fmt is None:
                raise RenderError(f"frame {name}: unsupported image format {opened.format!r} (PNG or JPEG)")
            if opened.getexif().get(_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(opened)  # results are for the upright picture
            else:
                opened.load()
                image = opened
            icc = opened.info.get("icc_profile")  # colours of wide-gamut (Display P3) photos; EXIF/GPS is dropped
    except RenderError:
        raise
    except Exception as exc:  # Pillow raises several types for corrupt data
        raise RenderError(f"frame {name} cannot be decoded: {exc}") from None
    if size is not None and image.size != tuple(size):
        raise RenderError(f"frame {name} is {image.size[0]}x{image.size[1]}, the results say "
                          f"{size[0]}x{size[1]}: frames and results do not match")
    mode = image.mode
    alpha = image.getchannel("A") if mode in ("RGBA", "LA", "PA") else None
    rgb = np.array(image if mode == "RGB" else image.convert("RGB"))
    if full:
        blurrer.blur_whole(rgb)
    else:
        blurrer.blur_in_place(rgb, boxes)
    out = Image.fromarray(rgb)
    if mode in ("L", "LA"):
        out = out.convert("L")
    if alpha is not None and fmt == "PNG":
        out.putalpha(alpha)
    buf = io.BytesIO()
    config = blurrer.config
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        out.save(buf, "JPEG", quality=config.jpeg_quality, **extra)
    else:
        out.save(buf, "PNG", compress_level=config.png_compress_level, **extra)
    return buf.getvalue()


def progress_prefix(output_uri: str, render_id: str) -> str:
    return join(output_uri, f"{PROGRESS_DIR}/{render_id}/")


def read_progress(store: Store, output_uri: str, render_id: str, workers: int = 16) -> set[int]:
    """Frame numbers recorded as done for this ``render_id``."""
    prefix = progress_prefix(output_uri, render_id)
    keys = [obj.key for obj in store.list(prefix) if obj.key.endswith(".json")]
    done: set[int] = set()
    for _key, body in bounded_map(lambda k: store.read(join(prefix, k)), keys, workers):
        try:
            done.update(int(n) for n in json.loads(body)["frames"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable progress record %s", _key)
    return done


class _Journal:
    def __init__(self, store: Store, output_uri: str, render_id: str, label: str, every: int) -> None:
        self.store, self.every = store, every
        self.prefix = progress_prefix(output_uri, render_id)
        self.label = f"{label}-{uuid.uuid4().hex[:8]}"
        self.pending: list[int] = []
        self.seq = 0

    def add(self, number: int) -> None:
        self.pending.append(number)
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        body = json.dumps({"frames": sorted(self.pending)}, separators=(",", ":")).encode()
        self.store.write(join(self.prefix, f"{self.label}-{self.seq:06d}.json"), body)
        self.seq += 1
        self.pending = []


def render_frames(store: Store, plan: PlanLike, manifest: RenderManifest, output_uri: str,
                  config: RenderConfig, *, workers: int = 8, index: int = 0, count: int = 1,
                  flush_every: int = 200, progress: Callable[[int], None] | None = None) -> RenderStats:
    """Render slice ``index`` of ``count`` of the manifest's frames (see the module docstring)."""
    started = time.monotonic()
    known = set(int(i) for i in plan.frame_indices)
    frames = share(manifest.frames, index, count)
    outside = [f for f in frames if f.number not in known]
    if outside:
        raise RenderError(f"{len(outside)} frames are not in the plan (first: {outside[0].key}, number "
                          f"{outside[0].number}): the plan was made for other frames")
    done = read_progress(store, output_uri, manifest.render_id)
    todo = [f for f in frames if f.number not in done]
    stats = RenderStats(frames=len(frames), skipped=len(frames) - len(todo))
    if stats.skipped:
        log.info("resuming: %d of %d frames of this slice are already written", stats.skipped, len(frames))
    blurrer = Blurrer(config)
    metadata = {METADATA_KEY: manifest.digest}
    size = (int(plan.width), int(plan.height))
    out_folder = folder(output_uri)

    def one(frame: FrameRef) -> tuple[str, int]:
        full = bool(plan.is_full_frame(frame.number))
        boxes = np.asarray(plan.boxes(frame.number), np.float32).reshape(-1, 4)
        src, dst = join(manifest.frames_uri, frame.key), join(out_folder, frame.key)
        if not full and len(boxes) == 0:
            store.copy(src, dst, metadata)
            return "copied", 0
        body = render_image(store.read(src), frame.key, boxes, full, blurrer, size)
        store.write(dst, body, metadata)
        return ("full" if full else "rendered"), len(boxes)

    journal = _Journal(store, output_uri, manifest.render_id, f"s{index:05d}of{count:05d}", flush_every)
    finished = 0
    try:
        for frame, (what, faces) in bounded_map(one, todo, workers, window=workers * 2):
            if what == "copied":
                stats.copied += 1
            else:
                stats.rendered += 1
                stats.full_frames += what == "full"
                stats.faces += faces
            journal.add(frame.number)
            finished += 1
            if progress is not None:
                progress(1)
            if finished % 1000 == 0:
                log.info("rendered %d/%d frames", finished, len(todo))
    finally:
        journal.flush()  # what finished before a failure is not redone
    stats.seconds = time.monotonic() - started
    return stats
