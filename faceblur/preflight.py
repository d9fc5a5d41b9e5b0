"""What ``face-blur run`` and ``render`` check before any frame is decoded (issue 18).

A read-only output folder used to fail after 85 s of detection, naming the temporary file, and
``--pick 999999:1:1`` after 75 s without saying how many frames the video has. Everything that can
be known from the command line, the file system and the container's header is checked first:

- the locations (:func:`postprocess.locations.check_output`): the output and the plan file apart
  from the input and the reference photos;
- the output folder: it exists or can be made, is a folder, and a file can be created in it
  (tried for real: permission bits, an immutable folder, a read-only mount all fail here);
- free space there for an estimate of the output: as large as the input (a video re-encoded at
  CRF 18 is of the order of its source; a frames folder or a photo is the same size again); this
  refuses what cannot fit, it does not promise what can;
- ``--pick`` frames inside the video (naming its frame count) and points inside the frame;
- reference photos: each exists and is a photo, or a folder holding photos (their faces are
  checked next, once the models are loaded and still before the video is decoded).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from postprocess.locations import check_output

REFERENCE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class PreflightError(RuntimeError):
    """Something found before decoding that would have failed the run later; names what and why."""


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def check_writable(output: Path, what: str = "output") -> None:
    """The folder ``output`` goes into exists (or can be made) and takes a new file."""
    parent = output.absolute().parent
    base = _existing_ancestor(parent)
    if not base.is_dir():
        raise PreflightError(f"{what} {output}: {base} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.tmp-probe-", dir=base)
    except OSError as exc:
        raise PreflightError(f"{what} {output}: cannot write in {base} ({exc.strerror or exc})") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)  # (a cleaner of stale temporaries may have been first)


def check_space(output: Path, need: int, what: str = "output") -> None:
    """At least ``need`` bytes free where ``output`` goes."""
    base = _existing_ancestor(output.absolute().parent)
    free = shutil.disk_usage(base).free
    if need > free:
        raise PreflightError(f"{what} {output}: about {need / 1e6:.0f} MB needed (an estimate: the size of the "
                             f"input), {free / 1e6:.0f} MB free on {base}")


def input_bytes(source: Path) -> int:
    """The size of a file, or of the files directly in a folder (a frames folder)."""
    if source.is_dir():
        total = 0
        for dirpath, _dirs, files in os.walk(source):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(dirpath, name)).st_size
        return total
    return source.stat().st_size


def check_references(paths: Iterable[Path]) -> None:
    """Each ``--ref`` exists and is a photo, or a folder holding at least one."""
    for path in paths:
        if not path.exists():
            raise PreflightError(f"reference {path}: no such file or folder")
        if path.is_dir():
            if not any(p.suffix.lower() in REFERENCE_SUFFIXES for p in path.iterdir()):
                raise PreflightError(f"reference folder {path} holds no photos ({', '.join(REFERENCE_SUFFIXES)})")
        elif path.suffix.lower() not in REFERENCE_SUFFIXES:
            raise PreflightError(f"reference {path}: not a photo ({', '.join(REFERENCE_SUFFIXES)})")
        elif not os.access(path, os.R_OK):
            raise PreflightError(f"reference {path}: cannot be read")


def check_picks(picks: Sequence, frames: Sequence[int] | int, size: tuple[int, int] | None,
                what: str = "the video", slack: int = 0) -> None:
    """Every pick's frame exists and its point lies inside the frame.

    ``frames``: the frame count (frames 1..n; ``slack`` more when the count is an estimate) or the
    frame numbers there are (a frames folder). ``size``: (width, height) when known."""
    for pick in picks:
        if isinstance(frames, int):
            if not 1 <= pick.frame <= frames + slack:
                about = "about " if slack else ""
                raise PreflightError(f"--pick {pick}: frame {pick.frame} is not in {what}, which has "
                                     f"{about}{frames} frames (numbered from 1)")
        elif pick.frame not in frames:
            shown = f"{min(frames)}..{max(frames)}" if frames else "none"
            raise PreflightError(f"--pick {pick}: there is no frame {pick.frame} in {what} "
                                 f"({len(frames)} frames, numbered {shown})")
        if size is not None and not (pick.x < size[0] and pick.y < size[1]):
            raise PreflightError(f"--pick {pick}: the point ({pick.x:g}, {pick.y:g}) is outside the "
                                 f"{size[0]}x{size[1]} frame")


def check_locations(source: Path, output: Path, references: Sequence[Path] = (), plan: Path | None = None) -> None:
    """Output and plan file apart from the input, the references and each other."""
    for target, what, others in ((output, "output", {}), (plan, "plan file", {"output": output})):
        if target is None:
            continue
        check_output(target, {"input": source, **others}, what=what)
        for ref in references:
            check_output(target, {"reference": ref}, what=what)
