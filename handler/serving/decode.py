"""Request body -> HxWx3 uint8 RGB frame, upright, or a typed 4xx error saying what was wrong.

Checks, in order, each before any pixel is decoded: the body size (413), the Content-Type (415),
an empty body (400), the image header (400 when Pillow cannot identify it as one of
:data:`ALLOWED_FORMATS`), the dimensions (413 over ``max_pixels``, which also stops decompression
bombs such as a 30000x30000 PNG of a few KB). Only then are the pixels decoded (400 when truncated
or corrupt).

Conversions (README: "Image input"):
- EXIF orientation is applied, so boxes are in pixels of the upright frame.
- 16-bit greyscale is scaled to 8 bits (value / 257); 16-bit colour PNGs keep their high byte
  (Pillow); 32-bit integer greyscale is taken as 16-bit when any value is over 255; float images
  as 0-1 when no value is over 1, else 0-255.
- Palette, greyscale, 1-bit, CMYK (no colour management), YCbCr, LAB and HSV become RGB.
- Alpha (RGBA, LA, PA, palette transparency) is composited on :data:`ALPHA_BACKGROUND` (white).
- Multi-frame files (GIF, TIFF, MPO) give their first frame.

Never unpickles anything: bytes only go to Pillow, restricted to the formats below.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from handler.serving.errors import (
    BadImageError,
    EmptyBodyError,
    ImageTooLargeError,
    PayloadTooLargeError,
    UnsupportedContentTypeError,
)

log = logging.getLogger(__name__)

# Pillow formats decoded; others (EPS runs Ghostscript, PSD, FITS, ...) are refused with 400.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
# Content types accepted; the bytes are identified by Pillow whatever the declared image type.
GENERIC_TYPES = ("application/x-image", "application/octet-stream")
IMAGE_TYPES = (
    "image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/x-png", "image/webp", "image/bmp",
    "image/x-bmp", "image/x-ms-bmp", "image/tiff", "image/gif", "image/x-portable-pixmap",
    "image/x-portable-graymap", "image/x-portable-anymap",
)
SUPPORTED_CONTENT_TYPES = GENERIC_TYPES + IMAGE_TYPES
ALPHA_BACKGROUND = (255, 255, 255)

DEFAULT_MAX_BYTES = 6 * 1024 * 1024  # SageMaker's default MaxPayloadInMB (6)
DEFAULT_MAX_PIXELS = 36_000_000  # 8K UHD (7680x4320 = 33.2 MP) fits


@dataclass(frozen=True)
class DecodeLimits:
    """``max_bytes``: largest body; ``max_pixels``: largest width x height."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")


def media_type(content_type: str | None) -> str:
    """``"Image/PNG; charset=x"`` -> ``"image/png"``; None or blank -> ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    """The media type if accepted (absent counts as application/x-image), else 415."""
    kind = media_type(content_type)
    if not kind:
        return GENERIC_TYPES[0]
    if kind not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"Content-Type {kind!r} is not supported; send the frame's bytes as application/x-image "
            f"or one of image/jpeg, image/png, image/webp, image/bmp, image/tiff, image/gif")
    return kind


def _check_size(body: bytes, limits: DecodeLimits) -> None:
    if len(body) > limits.max_bytes:
        raise PayloadTooLargeError(
            f"request body is {len(body):,} bytes, over the limit of {limits.max_bytes:,} bytes "
            "(raise it with SAGEMAKER_MAX_PAYLOAD_IN_MB)")


def _formats() -> tuple[str, ...]:
    Image.init()  # register every plugin, so formats= below can name them (MPO is not preloaded)
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _open(body: bytes, limits: DecodeLimits) -> Image.Image:
    # Only the header is read here; our own limit is checked below, before any pixel is decoded.
    # Pillow's bomb check (a warning over MAX_IMAGE_PIXELS, an error over twice that) must not
    # refuse what FACE_BLUR_MAX_PIXELS allows.
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < limits.max_pixels:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body), formats=_formats())
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"image dimensions are over the limit of {limits.max_pixels:,} pixels "
            "(a decompression bomb is refused before decoding)") from None
    except UnidentifiedImageError:
        raise BadImageError(
            f"body ({len(body):,} bytes) is not an image in a supported format "
            f"({', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise BadImageError(f"image header is corrupt: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImageError(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,} (FACE_BLUR_MAX_PIXELS)")
    return image


def _load(image: Image.Image) -> Image.Image:
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise BadImageError(f"image data is truncated or corrupt: {exc}") from None
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF: Pillow raises several types; keep the stored orientation
        log.warning("EXIF orientation unreadable (%s); using the image as stored", exc)
        return image
    return upright if upright is not None else image


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def _high_depth_grey(image: Image.Image) -> np.ndarray:
    """8-bit grey from 16-bit, 32-bit integer or float greyscale (see the module docstring)."""
    values = np.asarray(image)
    if image.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    values = values.astype(np.int64)
    if image.mode.startswith("I;16") or (values.size and values.max() > 255):
        return ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    return np.clip(values, 0, 255).astype(np.uint8)


def _composite(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"))


def to_rgb(image: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> np.ndarray:
    """A loaded Pillow image of any mode -> HxWx3 uint8 RGB (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        rgb = np.asarray(image)
    elif mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
        rgb = _composite(image, background)
    elif mode.startswith("I") or mode == "F":
        rgb = _grey_to_rgb(_high_depth_grey(image))
    elif mode in ("L", "1"):
        rgb = _grey_to_rgb(np.asarray(image.convert("L")))
    else:  # P, CMYK, YCbCr, LAB, HSV
        rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def decode_image(body: bytes, content_type: str | None = None,
                 limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """One request body -> HxWx3 uint8 RGB of the upright frame; raises a ``RequestError``."""
    if body is None:
        body = b""
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if not isinstance(body, bytes):
        raise BadImageError(f"request body must be bytes, got {type(body).__name__}")
    _check_size(body, limits)
    check_content_type(content_type)
    if not body:
        raise EmptyBodyError("request body is empty; send one frame image")
    image = _open(body, limits)
    try:
        return to_rgb(_load(image))
    finally:
        image.close()
