"""The detection photo set of tests/test_detection.py and bench/detection_recall.py: real photos, their
ground-truth faces, degraded variants, and scoring.

Ground truth is established per photo at run time and checked against a hand count:
* the faces are the union of *confident* detections of both backends on the clean photo
  (MTCNN >= 0.95, CenterFace >= 0.6, fused at IoU 0.3), which must come to exactly the number of
  faces a person counts in the photo (``FACE_COUNTS``, checked by eye on drawn boxes);
* ``IGNORE`` regions (fractions of the photo) hold faces a person would not hold a detector to:
  defocused, cut-off background people and a portrait on a wall. Missing them is no miss and
  finding them is no false positive.

Every variant carries its ground truth transformed with it. Images are HxWx3 uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from contract import FrameFaces
from contract.boxes import area, intersection_matrix, iou_matrix
from handler.boxes import clip_boxes
from handler.ensemble import fuse_faces

# Faces a person counts in each photo (eyes on the drawn boxes), background people excluded.
FACE_COUNTS = {
    "biden.jpg": 1,
    "biden2.jpg": 1,
    "kit_with_rose.jpg": 2,
    "obama.jpg": 1,
    "obama2.jpg": 1,
    "obama_and_biden.jpg": 3,
    "rose_leslie1.jpg": 1,
    "rose_leslie2.jpg": 1,
    "two_people.jpg": 2,
    "t1.jpg": 6,
}
# (x1, y1, x2, y2) as fractions of the photo's width and height.
IGNORE = {
    "kit_with_rose.jpg": [(0.92, 0.18, 1.0, 0.33)],  # defocused people at the right edge
    "obama2.jpg": [(0.88, 0.24, 1.0, 0.58)],  # defocused woman cut by the right edge
    "obama_and_biden.jpg": [(0.94, 0.38, 1.0, 0.70)],  # woman at the right edge, face turned away
    "t1.jpg": [(0.22, 0.05, 0.28, 0.13)],  # portrait on the wall
}
CONFIDENT = {"mtcnn": 0.95, "centerface": 0.6}
MATCH_IOU = 0.4
PHOTO_SIDE = 640  # the photos' longer side in the test set (tests and bench alike)


@dataclass
class Sample:
    """One test image: its faces (n,4) and regions (k,4) that neither count as misses nor as false
    positives, both in the image's pixels."""

    name: str
    image: np.ndarray
    faces: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    @property
    def face_sides(self) -> np.ndarray:
        return np.sqrt(area(self.faces))


def photo_paths(faces_dir: Path, t1_path: Path) -> list[Path]:
    return [*sorted(Path(faces_dir).glob("*.jpg")), Path(t1_path)]


def resize_long(image: np.ndarray, long_side: int) -> np.ndarray:
    """The image scaled so that its longer side is ``long_side`` (up or down)."""
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def ground_truth(name: str, image: np.ndarray, detections: dict[str, FrameFaces]) -> Sample:
    """The clean photo's sample from the named backends' detections on it (see module docstring).

    Raises AssertionError when the confident detections do not match the hand count.
    """
    confident = [faces[faces.confidence >= CONFIDENT[backend]] for backend, faces in detections.items()]
    fused = fuse_faces(confident, iou=0.3)
    h, w = image.shape[:2]
    ignore = np.array(IGNORE.get(name, []), np.float32).reshape(-1, 4) * np.array([w, h, w, h], np.float32)
    boxes = fused.xyxy
    if len(ignore) and len(boxes):  # a confident find in an ignore region is no face to count
        boxes = boxes[(intersection_matrix(boxes, ignore).max(1) / np.maximum(area(boxes), 1)) < 0.5]
    want = FACE_COUNTS[name]
    assert len(boxes) == want, f"{name}: {len(boxes)} confident faces, a person counts {want}"
    return Sample(name, image, clip_boxes(boxes, w, h), ignore)


# -- variants ----------------------------------------------------------------------------------------

def _rng(sample: Sample, salt: int) -> np.random.Generator:
    return np.random.default_rng([salt, *sample.name.encode()])


def darken(sample: Sample, factor: float, noise: float = 0.0) -> Sample:
    """Under-exposure: pixel values times ``factor`` (what an exposure ``factor`` times shorter gives
    an sRGB camera, up to rounding), plus Gaussian sensor noise of ``noise`` (0-255 units)."""
    img = sample.image.astype(np.float32) * factor
    if noise:
        img += _rng(sample, 1).normal(0, noise, img.shape).astype(np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return replace(sample, name=f"{sample.name}:dark{factor:g}", image=out)


def blur(sample: Sample, radius: float) -> Sample:
    """Gaussian blur (defocus, motion) of ``radius`` pixels."""
    out = np.asarray(Image.fromarray(sample.image).filter(ImageFilter.GaussianBlur(radius)))
    return replace(sample, name=f"{sample.name}:blur{radius:g}", image=out)


def motion_blur(sample: Sample, radius: int) -> Sample:
    """Horizontal box blur of ``2 * radius + 1`` pixels (a pan or a fast walk past the camera)."""
    out = np.asarray(Image.fromarray(sample.image).filter(ImageFilter.BoxBlur((radius, 0))))
    return replace(sample, name=f"{sample.name}:motion{radius}", image=out)


def jpeg(sample: Sample, quality: int) -> Sample:
    """A round trip through JPEG at ``quality`` (heavily compressed video)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(sample.image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"))
    return replace(sample, name=f"{sample.name}:jpeg{quality}", image=out)


def add_noise(sample: Sample, sigma: float) -> Sample:
    """Gaussian noise of ``sigma`` (0-255 units) on every channel."""
    noisy = sample.image.astype(np.float32) + _rng(sample, 2).normal(0, sigma, sample.image.shape)
    out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return replace(sample, name=f"{sample.name}:noise{sigma:g}", image=out)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, face-free textured backdrop (upscaled coarse noise in muted greys)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(70, 170, (9, 16, 1)) + rng.uniform(-15, 15, (9, 16, 3))
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def small_faces(sample: Sample, face_px: float = 20.0, canvas: tuple[int, int] = (640, 360)) -> Sample:
    """The photo shrunk so that its median face is ``face_px`` pixels across, pasted in the middle of
    a ``canvas`` (width, height) frame: small faces in a video-sized frame."""
    factor = face_px / float(np.median(sample.face_sides))
    h, w = sample.image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size[0] > canvas[0] or size[1] > canvas[1]:
        raise ValueError(f"{sample.name}: shrunk to {size}, larger than the {canvas} canvas")
    fx, fy = size[0] / w, size[1] / h
    frame = background(*canvas, seed=len(sample.name)).copy()
    x0, y0 = (canvas[0] - size[0]) // 2, (canvas[1] - size[1]) // 2
    frame[y0:y0 + size[1], x0:x0 + size[0]] = np.asarray(
        Image.fromarray(sample.image).resize(size, Image.Resampling.BILINEAR))
    move = np.array([fx, fy, fx, fy], np.float32)
    shift = np.array([x0, y0, x0, y0], np.float32)
    return Sample(f"{sample.name}:small{face_px:g}", frame, sample.faces * move + shift,
                  sample.ignore * move + shift)


def half_crops(sample: Sample) -> list[Sample]:
    """Two crops cut through the middle of the largest face: its left half at the right edge of one
    frame, its right half at the left edge of the other (a face leaving the picture). Other faces
    cut to under half their area become ignore regions."""
    big = sample.faces[int(np.argmax(area(sample.faces)))]
    cx = int(round((big[0] + big[2]) / 2))
    h, w = sample.image.shape[:2]
    out = []
    for side, (left, right) in (("left", (0, cx)), ("right", (cx, w))):
        shift = np.array([left, 0, left, 0], np.float32)
        faces = clip_boxes(sample.faces - shift, right - left, h)
        kept = area(faces) / np.maximum(area(sample.faces), 1) >= 0.4
        ignore = np.concatenate([clip_boxes(sample.ignore - shift, right - left, h), faces[~kept]])
        out.append(Sample(f"{sample.name}:half-{side}", np.ascontiguousarray(sample.image[:, left:right]),
                          faces[kept], ignore[area(ignore) > 0]))
    return out


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image fitted into a ``width`` x ``height`` frame (black bars), as a video frame would be."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    frame = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - size[0]) // 2, (height - size[1]) // 2
    frame[y0:y0 + size[1], x0:x0 + size[0]] = np.asarray(
        Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return frame


VARIANTS = {
    "clean": lambda s: [s],
    "dark x0.25": lambda s: [darken(s, 0.25)],
    "night x0.12": lambda s: [darken(s, 0.12, noise=2.0)],
    "night x0.06": lambda s: [darken(s, 0.06, noise=2.0)],
    "blur r3": lambda s: [blur(s, 3.0)],
    "blur r5": lambda s: [blur(s, 5.0)],
    "motion 6": lambda s: [motion_blur(s, 6)],
    "noise s20": lambda s: [add_noise(s, 20.0)],
    "noise s40": lambda s: [add_noise(s, 40.0)],
    "jpeg q8": lambda s: [jpeg(s, 8)],
    "small 12px": lambda s: [small_faces(s, 12.0)],
    "small 16px": lambda s: [small_faces(s, 16.0)],
    "small 20px": lambda s: [small_faces(s, 20.0)],
    "small 24px": lambda s: [small_faces(s, 24.0)],
    "small 20px dark": lambda s: [darken(small_faces(s, 20.0), 0.2, noise=2.0)],
    "half crops": half_crops,
}


# -- scoring -----------------------------------------------------------------------------------------

@dataclass
class Score:
    faces: int = 0
    found: int = 0
    false_positives: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(self.faces + other.faces, self.found + other.found,
                     self.false_positives + other.false_positives)


def score(sample: Sample, detected: FrameFaces, iou: float = MATCH_IOU) -> Score:
    """Greedy matching, best detection first: a detection claims the unclaimed face it overlaps most
    (IoU >= ``iou``); one that claims nothing and lies at most half in an ignore region is a false
    positive (a second detection of an already-claimed face is one too)."""
    overlap = iou_matrix(detected.xyxy, sample.faces)
    if len(sample.ignore):
        inside = intersection_matrix(detected.xyxy, sample.ignore).max(1)
        in_ignore = inside / np.maximum(area(detected.xyxy), 1)
    else:
        in_ignore = np.zeros(len(detected))
    claimed = np.zeros(len(sample.faces), bool)
    fp = 0
    for i in np.argsort(-detected.confidence, kind="stable"):
        free = np.where(claimed, -1.0, overlap[i]) if len(sample.faces) else np.zeros(0)
        if len(free) and free.max() >= iou:
            claimed[int(np.argmax(free))] = True
        elif in_ignore[i] < 0.5:
            fp += 1
    return Score(len(sample.faces), int(claimed.sum()), fp)
