"""Identity development clips made from the shared photos, with truth: who is where in every frame.

Footage-like on purpose (README "Measure on video"): a moving camera, cuts, one shot far and dim
(gamma-dark, sensor noise), H.264 compression at a broadcast-ish CRF, and a face cut by the frame
border. Until ``bench/devset.py`` (the project's development set) covers identity, these clips are
what the identity numbers of the README are measured on (``python -m bench.identity_video``), and
what ``tests/test_persons.py`` runs the real MobileFaceNet on.

:func:`two_shots` ("the same person in two shots, one far and dim"):

- shot 0 (``wide``): obama, biden and rose_leslie side by side, faces about 37 px high, dark
  (x0.35 with a gamma) and noisy, the camera panning;
- shot 1 (``close``): obama in close-up (face about 120 px), biden cut by the right border;
- shot 2 (``medium``): rose_leslie and obama, medium size, the camera zooming.

``Clip.truth[i]`` maps each visible person to the face box in frame ``i`` (pixels, clipped to the
frame), carried through the same crop, scale and camera transform as the pixels. ``REFERENCES``
names another photo of each person, never used in a clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Box = tuple[float, float, float, float]

# Source photo and the face box in it (pixels of the upright photo; tests/scenes.py uses these).
PEOPLE: dict[str, tuple[str, Box]] = {
    "obama": ("obama.jpg", (374, 107, 602, 417)),
    "biden": ("biden.jpg", (431, 171, 698, 550)),
    "rose_leslie": ("rose_leslie2.jpg", (176, 124, 427, 452)),
}
REFERENCES: dict[str, str] = {"obama": "obama2.jpg", "biden": "biden2.jpg", "rose_leslie": "rose_leslie1.jpg"}


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]  # HxWx3 uint8 RGB, before encoding
    truth: list[dict[str, Box]]  # per frame (index 0 = frame number 1): person -> face box
    shots: list[tuple[int, int, str]] = field(default_factory=list)  # (first index, last index, label)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return w, h

    def frames_of(self, person: str) -> list[int]:
        """Frame numbers (from 1) in which ``person`` is visible."""
        return [i + 1 for i, t in enumerate(self.truth) if person in t]

    def pick(self, person: str, shot: int) -> str:
        """``FRAME:X:Y`` on ``person``'s face in the middle frame of ``shot`` where they are visible."""
        first, last, _ = self.shots[shot]
        visible = [i for i in range(first, last + 1) if person in self.truth[i]]
        i = visible[len(visible) // 2]
        x1, y1, x2, y2 = self.truth[i][person]
        return f"{i + 1}:{(x1 + x2) / 2:.0f}:{(y1 + y2) / 2:.0f}"


def _cutout(faces_dir: Path, person: str, face_height: float) -> tuple[Image.Image, Box]:
    name, (x1, y1, x2, y2) = PEOPLE[person]
    with Image.open(Path(faces_dir) / name) as im:
        photo = ImageOps.exif_transpose(im).convert("RGB")
    w, h = x2 - x1, y2 - y1
    crop = tuple(int(round(v)) for v in (max(0, x1 - 0.7 * w), max(0, y1 - 0.45 * h),
                                         min(photo.width, x2 + 0.7 * w), min(photo.height, y2 + 0.9 * h)))
    scale = face_height / h
    size = (max(1, round((crop[2] - crop[0]) * scale)), max(1, round((crop[3] - crop[1]) * scale)))
    image = photo.crop(crop).resize(size, Image.Resampling.LANCZOS)
    sx, sy = size[0] / (crop[2] - crop[0]), size[1] / (crop[3] - crop[1])
    return image, ((x1 - crop[0]) * sx, (y1 - crop[1]) * sy, (x2 - crop[0]) * sx, (y2 - crop[1]) * sy)


def _room(size: tuple[int, int], a: tuple[int, int, int], b: tuple[int, int, int],
          rng: np.random.Generator) -> Image.Image:
    w, h = size
    low = rng.random((6, 10)).astype(np.float32)
    f = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                   np.float32)[..., None] / 255.0
    img = np.array(a, np.float32) * (1 - f) + np.array(b, np.float32) * f
    for _ in range(6):
        x0, y0 = rng.integers(0, w - w // 6), rng.integers(h // 3, h - h // 8)
        img[y0:y0 + rng.integers(h // 10, h // 4), x0:x0 + rng.integers(w // 12, w // 5)] *= rng.uniform(0.7, 1.2)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _shot(world: Image.Image, faces: dict[str, Box], size: tuple[int, int], n: int,
          zoom: tuple[float, float], pan: tuple[float, float], cy: float = 0.45
          ) -> tuple[list[np.ndarray], list[dict[str, Box]]]:
    """``n`` frames of a camera moving over ``world`` (zoom: window width / world width)."""
    w, h = size
    frames, truth = [], []
    for k in range(n):
        t = k / max(1, n - 1)
        ww = world.width * (zoom[0] + (zoom[1] - zoom[0]) * t)
        wh = ww * h / w
        cx = min(max(world.width * (pan[0] + (pan[1] - pan[0]) * t), ww / 2), world.width - ww / 2)
        cyy = min(max(world.height * cy, wh / 2), world.height - wh / 2)
        x0, y0 = cx - ww / 2, cyy - wh / 2
        frames.append(np.asarray(world.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + ww, y0 + wh))))
        s = w / ww
        seen = {}
        for person, (fx1, fy1, fx2, fy2) in faces.items():
            box = (max(0.0, (fx1 - x0) * s), max(0.0, (fy1 - y0) * s),
                   min(float(w), (fx2 - x0) * s), min(float(h), (fy2 - y0) * s))
            if box[2] - box[0] >= 4 and box[3] - box[1] >= 4:
                seen[person] = box
        truth.append(seen)
    return frames, truth


def _place(world_size: tuple[int, int], background: Image.Image,
           people: list[tuple[str, Image.Image, Box, int, int]]) -> tuple[Image.Image, dict[str, Box]]:
    world = background.copy()
    faces = {}
    for person, image, (fx1, fy1, fx2, fy2), x, y in people:
        world.paste(image, (x, y))
        faces[person] = (x + fx1, y + fy1, x + fx2, y + fy2)
    return world, faces


def _dim(frames: list[np.ndarray], gain: float, gamma: float, noise: float, rng: np.random.Generator) -> None:
    for i, f in enumerate(frames):
        x = (f.astype(np.float32) / 255.0) ** gamma * gain * 255.0
        x += rng.normal(0, noise, x.shape)
        frames[i] = np.clip(x, 0, 255).astype(np.uint8)


def two_shots(faces_dir: Path, size: tuple[int, int] = (640, 360), per_shot: int = 16, seed: int = 0) -> Clip:
    """The identity clip of the module docstring (3 shots of ``per_shot`` frames)."""
    rng = np.random.default_rng(seed)
    w, h = size
    unit = h / 360
    # shot 0: wide, far and dim - three people, faces ~40 px in the frame
    world0 = (4 * w, 4 * h)
    cut = {p: _cutout(faces_dir, p, 150 * unit) for p in ("obama", "biden", "rose_leslie")}
    placed, x = [], int(world0[0] * 0.335)
    for p in ("biden", "obama", "rose_leslie"):
        image, face = cut[p]
        placed.append((p, image, face, x, int(world0[1] * 0.40 - face[1])))
        x += image.width + int(world0[0] * 0.02)
    world, faces = _place(world0, _room(world0, (70, 60, 50), (190, 170, 140), rng), placed)
    f0, t0 = _shot(world, faces, size, per_shot, zoom=(1.0, 0.9), pan=(0.48, 0.52), cy=0.5)
    _dim(f0, gain=0.35, gamma=1.4, noise=8.0, rng=rng)
    # shot 1: obama close, biden cut by the right border
    world1 = (int(1.6 * w), int(1.6 * h))
    o_img, o_face = _cutout(faces_dir, "obama", 120 * unit)
    b_img, b_face = _cutout(faces_dir, "biden", 110 * unit)
    world, faces = _place(world1, _room(world1, (40, 60, 90), (150, 170, 200), rng),
                          [("obama", o_img, o_face, int(world1[0] * 0.25), int(world1[1] * 0.28 - o_face[1])),
                           ("biden", b_img, b_face, int(world1[0] * 0.66), int(world1[1] * 0.30 - b_face[1]))])
    f1, t1 = _shot(world, faces, size, per_shot, zoom=(0.62, 0.6), pan=(0.42, 0.45), cy=0.42)
    # shot 2: rose_leslie and obama, medium
    world2 = (2 * w, 2 * h)
    r_img, r_face = _cutout(faces_dir, "rose_leslie", 150 * unit)
    o_img, o_face = _cutout(faces_dir, "obama", 140 * unit)
    world, faces = _place(world2, _room(world2, (90, 110, 70), (200, 210, 170), rng),
                          [("rose_leslie", r_img, r_face, int(world2[0] * 0.2), int(world2[1] * 0.33 - r_face[1])),
                           ("obama", o_img, o_face, int(world2[0] * 0.55), int(world2[1] * 0.36 - o_face[1]))])
    f2, t2 = _shot(world, faces, size, per_shot, zoom=(0.8, 0.7), pan=(0.5, 0.5))
    n = per_shot
    return Clip("two_shots", f0 + f1 + f2, t0 + t1 + t2,
                [(0, n - 1, "wide, far and dim"), (n, 2 * n - 1, "close, biden at the border"),
                 (2 * n, 3 * n - 1, "medium")])


def write_clip(clip: Clip, path: Path, crf: int = 26, fps: int = 10) -> Path:
    """H.264 yuv420p at ``crf`` (compression like a delivered file), ``fps`` frames per second."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast", "crf": str(crf)})
        stream.width, stream.height = clip.size
        stream.pix_fmt = "yuv420p"
        for rgb in clip.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def coverage(box: Box, blurred: np.ndarray) -> float:
    """Fraction of ``box`` covered by the union of ``blurred`` boxes (k,4), on a 1-px grid."""
    x1, y1, x2, y2 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 1.0
    mask = np.zeros((y2 - y1, x2 - x1), bool)
    for bx1, by1, bx2, by2 in np.asarray(blurred, np.float64).reshape(-1, 4):
        a, b = int(max(bx1, x1)) - x1, int(max(by1, y1)) - y1
        c, d = int(np.ceil(min(bx2, x2))) - x1, int(np.ceil(min(by2, y2))) - y1
        if c > a and d > b:
            mask[b:d, a:c] = True
    return float(mask.mean())


def score_plan(clip: Clip, plan, blur_people: set[str] | None, keep_people: set[str]) -> dict[str, float]:
    """Recall (faces that must be blurred and are: >= 70% of the face box covered) and kept-clear
    (faces that must stay clear and do: <= 20% covered), per frame and face. ``blur_people`` None:
    everyone not in ``keep_people`` must be blurred."""
    must_blur = must_keep = blurred_ok = clear_ok = 0
    for i, truth in enumerate(clip.truth):
        boxes = plan.boxes(i + 1)
        for person, box in truth.items():
            c = coverage(box, boxes) if len(boxes) else 0.0
            blur = (person not in keep_people) if blur_people is None else (person in blur_people)
            if blur:
                must_blur += 1
                blurred_ok += c >= 0.7
            else:
                must_keep += 1
                clear_ok += c <= 0.2
    return {"recall": blurred_ok / must_blur if must_blur else float("nan"),
            "kept_clear": clear_ok / must_keep if must_keep else float("nan"),
            "must_blur": must_blur, "must_keep": must_keep}
