"""Temporary files beside an output, renamed into place on success, and found again after a kill.

Every local output (a video, a photo, a plan, a folder of frames, a post-processing object) is
written to a hidden temporary ``.<name>.tmp-<random><suffix>`` in the output's own folder (same
file system, so the final rename is atomic) and renamed to ``<name>`` only when complete. Why this
module exists (issue 18):

- **Leftovers.** A run killed part-way (SIGKILL, power, out of memory) cannot delete its temporary.
  While it lives, a writer holds an exclusive ``flock`` on it; the kernel drops that lock when the
  process dies, however it dies. So the next writer of the same output (:func:`remove_stale`)
  removes every ``.<name>.tmp-*`` that nobody holds, and leaves alone those of a run still going.
  A temporary is created under a ``.tmp-new-`` name, locked, then renamed to its ``.tmp-`` name, so
  a cleaner never sees an unlocked temporary of a live run.
- **Modes.** ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700, and a rename keeps the mode, so
  outputs came out private whatever the user's umask. Here files are created 0666 and folders 0777
  *minus the umask*, as any tool's outputs are.

Names hold ``.tmp-`` so listings skip unfinished writes (``postprocess.storage``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
_NEW_MARK = ".tmp-new-"


def _prefix(path: Path) -> str:
    return f".{path.name}{TMP_MARK}"


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def create_temporary(path: Path, folder: bool = False) -> tuple[int, Path]:
    """A locked temporary beside ``path``: (an fd holding the lock, its path). The lock lasts as
    long as the fd is open; a file's fd may be used to write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "" if folder else path.suffix
    for _ in range(100):
        token = secrets.token_hex(4)
        new = path.with_name(f".{path.name}{_NEW_MARK}{token}{suffix}")
        try:
            if folder:
                os.mkdir(new, 0o777)  # the umask applies
                fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
            else:
                fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            _lock(fd)
            final = path.with_name(f"{_prefix(path)}{token}{suffix}")
            os.rename(new, final)
        except BaseException:
            os.close(fd)
            shutil.rmtree(new, ignore_errors=True) if folder else new.unlink(missing_ok=True)
            raise
        return fd, final
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` that no live process holds (left by a killed run);
    returns what was removed."""
    path = Path(path)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(_prefix(path)) and not p.name.startswith(f".{path.name}{_NEW_MARK}")]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY | (os.O_DIRECTORY if candidate.is_dir() else 0))
        except OSError:
            continue
        try:
            try:
                _lock(fd)
            except OSError:
                continue  # a live run is writing it
            if candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
        finally:
            os.close(fd)
    for p in removed:
        log.info("removed %s, left by an interrupted run", p)
    return removed


def remove_stale_under(root: str | Path) -> int:
    """:func:`remove_stale` for every temporary anywhere under the folder ``root`` (the
    post-processing output, whose frames are many objects): one walk; returns how many went."""
    root = Path(root)
    names: set[Path] = set()
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            if name.startswith(".") and TMP_MARK in name and _NEW_MARK not in name:
                names.add(Path(dirpath, name[1:name.index(TMP_MARK)]))
    return sum(len(remove_stale(path)) for path in names)


@contextlib.contextmanager
def temporary_beside(path: str | Path, *, folder: bool = False) -> Iterator[Path]:
    """A locked temporary file (or folder) beside ``path``; removed on exit unless the caller
    renamed it away. Stale temporaries of ``path`` are removed first."""
    path = Path(path)
    remove_stale(path)
    fd, tmp = create_temporary(path, folder)
    try:
        yield tmp
    finally:
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, *, folder: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix; a folder with ``folder``) renamed to ``path``
    when the block ends without an error. An existing ``path`` is refused unless ``overwrite``
    (a folder is then replaced whole, the old one removed after the new one is in place)."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path}: output exists (use --overwrite to replace it)")
    with temporary_beside(path, folder=folder) as tmp:
        yield tmp
        if folder and path.is_dir() and not path.is_symlink():
            with temporary_beside(path, folder=True) as old:
                os.rmdir(old)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
