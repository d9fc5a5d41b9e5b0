"""Benchmark frames and a benchmark video, made from the real photos in ``testdata/faces``.

Each frame is a face-free synthetic scene (smooth colour fields, edges and sensor-like noise, so
JPEG and the detectors see texture rather than a flat wall) with 0, 1 or 5 head-and-shoulders
crops of the photos pasted in. Crops are cut around faces whose positions (fractions of each
photo) were read once off the photos, with margins that keep every other person out, so a frame
holds exactly the number of faces it is named for. Everything is deterministic.

The video (:func:`write_video`) moves the same crops across the scene, with a shot cut to a second
scene in the middle and stretches without faces, which is what the sequence logic downstream
has to handle.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720), (1920, 1080))
FACE_COUNTS = (0, 1, 5)
DEFAULT_FACES_DIR = Path(os.environ.get(
    "FACE_BLUR_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "testdata" / "faces"

# (photo, face box as fractions x1, y1, x2, y2): single, unoccluded, roughly frontal faces.
HEADS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("biden2.jpg", (0.356, 0.172, 0.719, 0.628)),
    ("obama.jpg", (0.411, 0.094, 0.662, 0.367)),
    ("rose_leslie2.jpg", (0.306, 0.142, 0.740, 0.515)),
    ("kit_with_rose.jpg", (0.522, 0.117, 0.704, 0.296)),
    ("obama_and_biden.jpg", (0.376, 0.268, 0.471, 0.457)),
)


@dataclass(frozen=True)
class BenchFrame:
    """One test frame: ``image`` HxWx3 uint8 RGB with ``faces`` faces pasted at ``boxes`` (approx.)."""

    name: str
    image: np.ndarray
    faces: int
    boxes: np.ndarray  # (faces, 4) the pasted face boxes in frame pixels (from the photo annotations)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    def jpeg(self, quality: int = 90) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def _head_crops(faces_dir: Path) -> list[tuple[Image.Image, tuple[float, float, float, float]]]:
    """Head-and-shoulders crops and the face box inside each crop (fractions of the crop)."""
    out = []
    for name, (fx1, fy1, fx2, fy2) in HEADS:
        path = Path(faces_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"benchmark photo {path} not found (set FACE_BLUR_SHARED to the shared folder)")
        with Image.open(path) as im:
            photo = ImageOps.exif_transpose(im).convert("RGB")
        w, h = photo.size
        x1, y1, x2, y2 = fx1 * w, fy1 * h, fx2 * w, fy2 * h
        bw, bh = x2 - x1, y2 - y1
        cx1, cy1 = max(0.0, x1 - 0.55 * bw), max(0.0, y1 - 0.45 * bh)
        cx2, cy2 = min(float(w), x2 + 0.55 * bw), min(float(h), y2 + 0.9 * bh)
        crop = photo.crop((int(cx1), int(cy1), int(cx2), int(cy2)))
        cw, ch = crop.size
        out.append((crop, ((x1 - int(cx1)) / cw, (y1 - int(cy1)) / ch, (x2 - int(cx1)) / cw, (y2 - int(cy1)) / ch)))
    return out


def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A face-free backdrop: low-frequency colour, a few hard-edged panels, fine noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 215, size=(6, 10, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
    for _ in range(4):
        x1, y1 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        x2, y2 = x1 + int(rng.integers(width // 10, width // 3)), y1 + int(rng.integers(height // 10, height // 3))
        base[y1:y2, x1:x2] = (base[y1:y2, x1:x2] * 0.6 + rng.integers(0, 255, 3) * 0.4).astype(np.int16)
    noise = rng.normal(0, 6, size=(height, width, 1)).astype(np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def compose(background: np.ndarray, crops: list, placements: list[tuple[float, float, float]]) -> tuple[
        np.ndarray, np.ndarray]:
    """Paste ``crops[i]`` with its top-left at (x, y) (fractions of the frame) and height ``h`` (fraction)."""
    frame = Image.fromarray(background)
    width, height = frame.size
    boxes = []
    for (crop, (fx1, fy1, fx2, fy2)), (px, py, ph) in zip(crops, placements, strict=True):
        th = max(8, int(ph * height))
        tw = max(8, int(crop.width * th / crop.height))
        tile = crop.resize((tw, th), Image.Resampling.BILINEAR)
        ox, oy = int(px * width), int(py * height)
        frame.paste(tile, (ox, oy))
        boxes.append([ox + fx1 * tw, oy + fy1 * th, ox + fx2 * tw, oy + fy2 * th])
    arr = np.asarray(frame)
    return arr, np.array(boxes, np.float32).reshape(-1, 4)


def _placements(faces: int) -> list[tuple[float, float, float]]:
    if faces == 0:
        return []
    if faces == 1:
        return [(0.38, 0.12, 0.80)]
    # five in a loose row, different heights and sizes (faces ~60-100 px tall at 640x360... ~3x at 1080p)
    return [(0.01, 0.30, 0.60), (0.20, 0.10, 0.55), (0.40, 0.40, 0.55), (0.60, 0.08, 0.50), (0.79, 0.36, 0.55)]


def make_frames(faces_dir: Path = DEFAULT_FACES_DIR, sizes=SIZES, face_counts=FACE_COUNTS) -> list[BenchFrame]:
    """Every (size, face count) test frame, smallest first."""
    crops = _head_crops(faces_dir)
    frames = []
    for w, h in sizes:
        bg = scene(w, h, seed=1)
        for n in face_counts:
            if n > len(crops):
                raise ValueError(f"at most {len(crops)} faces per frame, asked for {n}")
            image, boxes = compose(bg, crops[:n], _placements(n))
            frames.append(BenchFrame(f"{w}x{h} {n} face{'s' if n != 1 else ''}", image, n, boxes))
    return frames


def write_video(path: Path, faces_dir: Path = DEFAULT_FACES_DIR, size: tuple[int, int] = (1920, 1080),
                seconds: float = 30.0, fps: int = 25, crf: int = 20) -> int:
    """An H.264 MP4 of moving faces: shot A (3 people walking across), a cut, shot B (2 people, then
    nobody); returns the number of frames written."""
    import av

    w, h = size
    crops = _head_crops(faces_dir)
    bg_a, bg_b = scene(w, h, seed=11), scene(w, h, seed=22)
    total = max(2, int(round(seconds * fps)))
    cut = total // 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for i in range(total):
            if i < cut:
                t = i / max(1, cut - 1)
                placements = [(0.05 + 0.5 * t, 0.15, 0.6), (0.70 - 0.4 * t, 0.35, 0.5), (0.40, 0.05 + 0.1 * t, 0.4)]
                image, _ = compose(bg_a, crops[:3], placements)
            else:
                t = (i - cut) / max(1, total - cut - 1)
                placements = [(0.10 + 0.3 * t, 0.2, 0.55), (0.60, 0.25 - 0.1 * t, 0.5)]
                image, _ = compose(bg_b, crops[3:5], placements) if t < 0.75 else (bg_b, None)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return total


def count_frames(path: Path) -> int:
    """Frames in a video, counted by decoding it (container metadata can be missing or wrong)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
