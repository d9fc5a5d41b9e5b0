"""What ``face-blur run`` and ``render`` take in: the kind of an input, the default output beside
it, and a photo decoded exactly as the inference server decodes a frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceblur.video import VIDEO_SUFFIXES

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_IMAGE_BYTES = 1 << 30  # a local photo may be far over SageMaker's 6 MB request limit


class InputError(RuntimeError):
    """An input the command cannot use; the message names the file and what is wrong with it."""


# ---------------------------------------------------------------------------------------------- inputs


def input_kind(path: Path) -> str:
    """``video``, ``frames`` or ``photo``; raises :class:`InputError` for anything else."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return "photo"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise InputError(f"{path}: unsupported input type {suffix or '(no extension)'!r}; give a video "
                     f"({', '.join(VIDEO_SUFFIXES)}), a photo ({', '.join(PHOTO_SUFFIXES)}) or a folder of frames")


def default_output(path: Path, tag: str = "_anonymized") -> Path:
    """``<stem>_anonymized<ext>`` beside the input (a folder: ``<name>_anonymized``)."""
    if path.is_dir():
        return path.with_name(path.name.rstrip("/") + tag)
    return path.with_name(f"{path.stem}{tag}{path.suffix}")


def read_image(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its upright RGB pixels, decoded exactly as the inference server does."""
    from handler.serving.decode import DecodeLimits, decode_image
    from handler.serving.errors import RequestError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data, decode_image(data, "application/x-image", DecodeLimits(max_bytes=MAX_IMAGE_BYTES))
    except RequestError as exc:
        raise InputError(f"{path}: not a usable image ({exc})") from None


# ---------------------------------------------------------------------------------------------- results


# ---------------------------------------------------------------------------------------------- settings
