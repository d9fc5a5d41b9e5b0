"""Pixels of a decoded frame: the display-matrix rotation that makes it upright (FFmpeg's
autorotate) and the source's colour description (matrix, range) for YUV <-> RGB."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# swscale matrix ids (SWS_CS_*) for the AVColorSpace values it supports; others: its default (BT.601)
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
RANGE_LIMITED, RANGE_FULL = 1, 2

def _display_matrix(frame) -> np.ndarray | None:
    for item in frame.side_data:
        if str(item.type).endswith("DISPLAYMATRIX"):
            return np.frombuffer(bytes(item), "<i4")
    return None


def orientation_ops(frame) -> tuple[int, list[str]]:
    """(rotation, operations) that make ``frame`` upright, following FFmpeg's autorotate."""
    matrix = _display_matrix(frame)
    if matrix is None:
        return 0, []
    rotation = int(round(frame.rotation or 0))
    theta = (-rotation) % 360  # clockwise degrees, as FFmpeg's get_rotation()
    if abs(theta - 90) < 1:
        ops = ["transpose" if matrix[3] > 0 else "cw"]
    elif abs(theta - 180) < 1:
        ops = (["hflip"] if matrix[0] < 0 else []) + (["vflip"] if matrix[4] < 0 else [])
    elif abs(theta - 270) < 1:
        ops = ["antitranspose" if matrix[3] < 0 else "ccw"]
    elif abs(theta) < 1 or abs(theta - 360) < 1:
        ops = ["vflip"] if matrix[4] < 0 else []
    else:
        nearest = int(round(theta / 90.0)) % 4 * 90
        log.warning("display matrix rotates by %d degrees, not a multiple of 90; using %d", theta, nearest)
        ops = {0: [], 90: ["cw"], 180: ["hflip", "vflip"], 270: ["ccw"]}[nearest]
    return rotation, ops


def apply_ops(array: np.ndarray, ops: list[str]) -> np.ndarray:
    """Apply orientation operations to an image or plane (rows x cols [x channels]); a view."""
    for op in ops:
        if op == "cw":
            array = np.rot90(array, -1)
        elif op == "ccw":
            array = np.rot90(array, 1)
        elif op == "transpose":
            array = array.swapaxes(0, 1)
        elif op == "antitranspose":
            array = np.rot90(array, 2).swapaxes(0, 1)
        elif op == "hflip":
            array = array[:, ::-1]
        elif op == "vflip":
            array = array[::-1]
        elif op == "rot180":
            array = array[::-1, ::-1]
        else:
            raise ValueError(f"unknown orientation operation {op!r}")
    return array


def swaps(ops: list[str]) -> bool:
    return sum(op in ("cw", "ccw", "transpose", "antitranspose") for op in ops) % 2 == 1


@dataclass(frozen=True)
class Colour:
    """The source's colour description and the swscale settings that reproduce it."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int

    @property
    def matrix(self) -> int:
        return SWS_MATRIX.get(self.colorspace, 5)

    @property
    def yuv_range(self) -> int:
        return self.color_range if self.color_range in (RANGE_LIMITED, RANGE_FULL) else RANGE_LIMITED

    def tag(self, target) -> None:
        """Write the tags on a frame or codec context (unspecified stays unspecified)."""
        target.colorspace = self.colorspace
        target.color_range = self.color_range
        target.color_primaries = self.primaries
        target.color_trc = self.trc


def colour_of(frame) -> Colour:
    rng = int(frame.color_range)
    if rng == 0 and frame.format.name.startswith("yuvj"):
        rng = RANGE_FULL
    cs = int(frame.colorspace)
    if cs == 0:  # RGB source (gbrp, png-in-mov): write it as BT.709 limited
        return Colour(1, RANGE_LIMITED, 1, 1)
    return Colour(cs, rng, int(frame.color_primaries), int(frame.color_trc))


def to_rgb(frame, colour: Colour) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", src_colorspace=colour.matrix, src_color_range=colour.yuv_range,
                            dst_color_range=RANGE_FULL)


def bit_depth(pix_fmt: str) -> int:
    import av

    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8
