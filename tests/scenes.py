"""Short moving test sequences built from the real shared photos, with known ground truth.

``make_scene(faces_dir)`` composes head-and-shoulders crops of three real people (obama, biden,
rose_leslie from the one-face photos) onto generated backgrounds and films them with a virtual
camera that pans and zooms:

- shot A (frames ``0 .. cut_at-1``): all three side by side, the camera zooming in and panning right;
  biden is degraded (blurred and darkened, as in motion blur or shade) in ``degraded`` frames;
- a cut, then shot B (``cut_at .. empty_from-1``): rose_leslie and obama only, other places and
  sizes, on a different background, the camera panning left;
- a cut to ``empty`` frames of an empty room (no face at all) at the end.

``truth[i]`` maps each visible person to their face box ``(x1, y1, x2, y2)`` in frame ``i``'s
pixels: the face box measured once in the source photo (``PEOPLE``, found with a CenterFace detector
and checked by eye) carried through the same crop, scale and camera transform as the pixels, and
clipped to the frame. Degraded frames keep their truth: the face is still there and must be hidden; ``clean[i]`` keeps
degraded frame ``i`` as it was before, to measure how much of the face a blur removed.

``REFERENCES`` names a second photo of each person (not used in the scene) for identity tests.
Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

# The people, their face boxes in the shared photos and a second photo of each: one home, in
# bench/identity_clips.py (bench never imports tests, so the tests take them from there).
from bench.identity_clips import PEOPLE, REFERENCES, Box  # noqa: F401


@dataclass
class Scene:
    frames: list[np.ndarray]  # HxWx3 uint8 RGB
    truth: list[dict[str, Box]]  # per frame: person -> face box in frame pixels
    cut_at: int  # first frame of shot B
    empty_from: int  # first frame without any face
    degraded: dict[int, str] = field(default_factory=dict)  # frame -> person degraded there
    clean: dict[int, np.ndarray] = field(default_factory=dict)  # degraded frame -> the frame before degrading

    def reference(self, i: int) -> np.ndarray:
        """Frame ``i`` as it would be without degradation (what a hidden face is compared with)."""
        return self.clean.get(i, self.frames[i])

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return w, h


@dataclass(frozen=True)
class _Cutout:
    image: Image.Image  # head and shoulders, scaled for the world
    face: Box  # face box inside ``image``


def _cutout(faces_dir: Path, person: str, face_height: float) -> _Cutout:
    name, (x1, y1, x2, y2) = PEOPLE[person]
    with Image.open(Path(faces_dir) / name) as im:
        photo = ImageOps.exif_transpose(im).convert("RGB")
    w, h = x2 - x1, y2 - y1
    crop = (max(0, x1 - 0.7 * w), max(0, y1 - 0.45 * h), min(photo.width, x2 + 0.7 * w),
            min(photo.height, y2 + 0.9 * h))
    crop = tuple(int(round(v)) for v in crop)
    scale = face_height / h
    size = (max(1, round((crop[2] - crop[0]) * scale)), max(1, round((crop[3] - crop[1]) * scale)))
    image = photo.crop(crop).resize(size, Image.Resampling.LANCZOS)
    sx, sy = size[0] / (crop[2] - crop[0]), size[1] / (crop[3] - crop[1])
    face = ((x1 - crop[0]) * sx, (y1 - crop[1]) * sy, (x2 - crop[0]) * sx, (y2 - crop[1]) * sy)
    return _Cutout(image, face)


def _background(size: tuple[int, int], palette: tuple[tuple[int, int, int], tuple[int, int, int]],
                rng: np.random.Generator) -> Image.Image:
    """A smooth coloured room: a low-frequency gradient between two colours, some panels, grain."""
    w, h = size
    low = rng.random((6, 10)).astype(np.float32)
    field_ = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                        np.float32)[..., None] / 255.0
    a, b = (np.array(c, np.float32) for c in palette)
    img = a * (1 - field_) + b * field_
    for _ in range(6):  # panels / furniture: rectangles a little darker or lighter
        x0, y0 = rng.integers(0, w - w // 6), rng.integers(h // 3, h - h // 8)
        x1, y1 = x0 + rng.integers(w // 12, w // 5), y0 + rng.integers(h // 10, h // 4)
        img[y0:y1, x0:x1] *= rng.uniform(0.7, 1.2)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _compose(background: Image.Image, placed: list[tuple[str, _Cutout, tuple[int, int]]]
             ) -> tuple[Image.Image, dict[str, Box]]:
    world = background.copy()
    faces = {}
    for person, cut, (x, y) in placed:
        world.paste(cut.image, (x, y))
        fx1, fy1, fx2, fy2 = cut.face
        faces[person] = (x + fx1, y + fy1, x + fx2, y + fy2)
    return world, faces


def _film(world: Image.Image, faces: dict[str, Box], window: Box, size: tuple[int, int]
          ) -> tuple[np.ndarray, dict[str, Box]]:
    """The frame the camera sees through ``window`` (world pixels), and the face boxes in it."""
    w, h = size
    x0, y0, x1, y1 = window
    frame = np.asarray(world.resize((w, h), Image.Resampling.BILINEAR, box=window))
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    truth = {}
    for person, (fx1, fy1, fx2, fy2) in faces.items():
        box = (max(0.0, (fx1 - x0) * sx), max(0.0, (fy1 - y0) * sy),
               min(float(w), (fx2 - x0) * sx), min(float(h), (fy2 - y0) * sy))
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            truth[person] = box
    return frame.copy(), truth


def _window(t: float, world: tuple[int, int], aspect: float, zoom: tuple[float, float],
            pan: tuple[float, float]) -> Box:
    """Camera window at time ``t`` in [0, 1]: width a fraction of the world, centre x a fraction."""
    ww = world[0] * (zoom[0] + (zoom[1] - zoom[0]) * t)
    wh = ww / aspect
    cx = world[0] * (pan[0] + (pan[1] - pan[0]) * t)
    cx = min(max(cx, ww / 2), world[0] - ww / 2)
    cy = min(max(world[1] * 0.45, wh / 2), world[1] - wh / 2)
    return (cx - ww / 2, cy - wh / 2, cx + ww / 2, cy + wh / 2)


def _degrade(frame: np.ndarray, box: Box) -> None:
    """Blur and darken a face in place (motion blur / shade)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    pad = (x2 - x1) // 3
    x1, y1 = max(0, x1 - pad), max(0, y1 - pad)
    x2, y2 = min(frame.shape[1], x2 + pad), min(frame.shape[0], y2 + pad)
    crop = Image.fromarray(frame[y1:y2, x1:x2]).filter(ImageFilter.GaussianBlur(max(2.0, (x2 - x1) / 25)))
    frame[y1:y2, x1:x2] = (np.asarray(crop, np.float32) * 0.55).astype(np.uint8)


def make_scene(faces_dir: Path, size: tuple[int, int] = (640, 360), frames: int = 24, empty: int = 2,
               seed: int = 0) -> Scene:
    """A ``frames``-long sequence (see the module docstring); ``size`` is (width, height)."""
    if frames < 8 + empty:
        raise ValueError(f"frames must be at least {8 + empty} (two shots and {empty} empty frames)")
    w, h = size
    rng = np.random.default_rng(seed)
    world = (2 * w, 2 * h)
    aspect = w / h
    unit = h / 360  # face sizes below are for a 360-px-high frame
    # Shot A: three people side by side.
    cut_a = {p: _cutout(faces_dir, p, 150 * unit) for p in ("obama", "biden", "rose_leslie")}
    placed_a = []
    x = int(world[0] * 0.12)
    for person in ("obama", "biden", "rose_leslie"):
        cut = cut_a[person]
        y = int(world[1] * 0.30 - cut.face[1])
        placed_a.append((person, cut, (x, y)))
        x += cut.image.width + int(world[0] * 0.03)
    world_a, faces_a = _compose(_background(world, ((70, 60, 50), (190, 170, 140)), rng), placed_a)
    # Shot B: two people, other places and sizes, cooler background.
    placed_b = [("rose_leslie", _cutout(faces_dir, "rose_leslie", 190 * unit), (int(world[0] * 0.22), 0)),
                ("obama", _cutout(faces_dir, "obama", 165 * unit), (int(world[0] * 0.55), 0))]
    placed_b = [(p, c, (x, int(world[1] * 0.33 - c.face[1]))) for p, c, (x, _y) in placed_b]
    world_b, faces_b = _compose(_background(world, ((40, 60, 90), (150, 170, 200)), rng), placed_b)
    world_c = _background(world, ((90, 110, 70), (200, 210, 170)), rng)

    empty_from = frames - empty
    cut_at = empty_from // 2
    out = Scene(frames=[], truth=[], cut_at=cut_at, empty_from=empty_from)
    for i in range(frames):
        if i < cut_at:
            t = i / max(1, cut_at - 1)
            window = _window(t, world, aspect, zoom=(0.85, 0.65), pan=(0.45, 0.55))
            frame, truth = _film(world_a, faces_a, window, size)
        elif i < empty_from:
            t = (i - cut_at) / max(1, empty_from - cut_at - 1)
            window = _window(t, world, aspect, zoom=(0.7, 0.8), pan=(0.55, 0.45))
            frame, truth = _film(world_b, faces_b, window, size)
        else:
            frame, truth = _film(world_c, {}, _window(0.5, world, aspect, (0.8, 0.8), (0.5, 0.5)), size)
        out.frames.append(frame)
        out.truth.append(truth)
    for i in (cut_at // 3, cut_at // 3 + 1):
        out.clean[i] = out.frames[i].copy()
        _degrade(out.frames[i], out.truth[i]["biden"])
        out.degraded[i] = "biden"
    return out


def write_frames(scene: Scene, folder: Path, fmt: str = "png", start: int = 1,
                 name: str = "img{:07d}") -> list[Path]:
    """Save the frames as ``img0000001.png`` ... (frame ``i`` of the scene is number ``start + i``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(scene.frames):
        path = folder / (name.format(start + i) + "." + fmt)
        options = {"quality": 95} if fmt in ("jpg", "jpeg") else {}
        Image.fromarray(frame).save(path, **options)
        paths.append(path)
    return paths
