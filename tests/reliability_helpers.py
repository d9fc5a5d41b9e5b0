"""Videos, cut-short files, immutable folders and a killable ``face-blur run`` for the reliability
tests (issue 18)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from video_helpers import ClipSpec, face_patch, gradient, make_clip, paste

REPO = Path(__file__).resolve().parents[1]


def face_clip(path: Path, faces_dir: Path, frames: int = 30, size: tuple[int, int] = (320, 180),
              faststart: bool = False) -> Path:
    """A clip of a real face sliding across a gradient (``faststart``: the index at the front, as
    web and phone files are, so a cut-short copy still opens)."""
    spec = ClipSpec(width=size[0], height=size[1], frames=frames, rate=Fraction(30000, 1001))
    patch, box = face_patch(faces_dir, "rose_leslie", max(40, size[1] // 3))

    def paint(i: int) -> np.ndarray:
        frame = gradient(spec, i)
        paste(frame, patch, box, 20 + (i * 3) % max(1, size[0] - patch.shape[1] - 40), size[1] // 5)
        return frame

    if not faststart:
        return make_clip(path, spec, paint)
    plain = make_clip(path.with_name(path.stem + "-plain" + path.suffix), spec, paint)
    remux(plain, path, {"movflags": "faststart"})
    plain.unlink()
    return path


def remux(src: Path, dst: Path, options: dict[str, str] | None = None) -> Path:
    """Copy every stream's packets into another container (another format, or with muxer options)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options=options or {}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in ("video", "audio")}
        for packet in i.demux(list(i.streams.video) + list(i.streams.audio)):
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    return dst


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of the bytes of ``src``: an interrupted download."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def decodable_frames(path: Path) -> int:
    """Frames a player shows before the data runs out (a cut file may end in a decoding error)."""
    import av

    count = 0
    with av.open(str(path)) as c, contextlib.suppress(av.error.FFmpegError):
        for _ in c.decode(video=0):
            count += 1
    return count


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files or folders in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp-" in p.name)


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` made unwritable for this process: mode 0555, and immutable when running as root
    (root ignores the mode); skips where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    probe = folder / ".probe"
    try:
        try:
            probe.write_bytes(b"")
            probe.unlink()
            pytest.skip("cannot make a folder unwritable here (root without chattr)")
        except OSError:
            pass
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        os.chmod(folder, 0o755)


def face_blur(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``face-blur`` as a user starts it (the console script's module), its own process group."""
    return subprocess.Popen([sys.executable, "-m", "faceblur.cli", *args], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False when it ended first (too fast to catch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return True
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    raise AssertionError("the condition to kill at never came")
