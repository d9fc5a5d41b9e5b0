"""Request bodies for the decoder and server tests, made from the shared real photos: every image
mode and container a frame can arrive in, and the hostile ones (bombs, truncations, pickles)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Pillow's Image.transpose that undoes each EXIF orientation (what ImageOps.exif_transpose applies),
# and the one that produces the stored pixels from the upright ones.
UNDO = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90}
STORE = {**UNDO, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def photo(path: Path, width: int | None = None) -> Image.Image:
    """A shared photo as RGB, optionally downscaled to ``width`` (keeps tests fast)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if width is not None and rgb.width > width:
        rgb = rgb.resize((width, round(rgb.height * width / rgb.width)), Image.Resampling.LANCZOS)
    return rgb


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def exif_rotated_jpeg(upright: Image.Image, orientation: int, quality: int = 95) -> bytes:
    """A JPEG whose stored pixels are ``upright`` turned as a camera would store them, with the EXIF
    Orientation tag that tells viewers to turn them back."""
    stored = upright.transpose(STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=quality, exif=exif.tobytes())


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes] | None,
         compressed: bytes | None = None) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if compressed is None:
        compressed = zlib.compress(b"".join(b"\x00" + row for row in rows), 6)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


def png16_rgb(rgb8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG whose values are ``rgb8 * 257`` (written by hand: Pillow
    cannot write 16-bit colour)."""
    values = rgb8.astype(">u2") * 257
    return _png(rgb8.shape[1], rgb8.shape[0], 16, 2, [row.tobytes() for row in values])


def png16_grey(grey8: np.ndarray) -> bytes:
    values = grey8.astype(">u2") * 257
    return _png(grey8.shape[1], grey8.shape[0], 16, 0, [row.tobytes() for row in values])


def bomb_png(side: int = 30000) -> bytes:
    """A ``side`` x ``side`` 1-bit PNG of zeros: a few tens of KB that decode to ``side**2`` pixels."""
    row = b"\x00" + bytes((side + 7) // 8)
    packer = zlib.compressobj(9)
    block = row * 1000
    parts = [packer.compress(block) for _ in range(side // 1000)]
    parts.append(packer.compress(row * (side % 1000)))
    parts.append(packer.flush())
    return _png(side, side, 1, 0, None, b"".join(parts))


def with_alpha(image: Image.Image) -> Image.Image:
    """RGBA: opaque in the middle, fully transparent in a 10% border, half transparent between."""
    alpha = np.zeros((image.height, image.width), np.uint8)
    h, w = alpha.shape
    alpha[h // 20: h - h // 20, w // 20: w - w // 20] = 128
    alpha[h // 10: h - h // 10, w // 10: w - w // 10] = 255
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def noisy_4k_png(image: Image.Image, seed: int = 0) -> bytes:
    """A 3840x2160 PNG of ``image`` with sensor-like noise: too large for the default 6 MiB limit."""
    frame = np.asarray(image.resize((3840, 2160), Image.Resampling.BILINEAR)).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, frame.shape, dtype=np.int16)
    return encode(Image.fromarray(np.clip(frame + noise, 0, 255).astype(np.uint8)), "PNG", compress_level=1)
