"""End to end on one video file: ``face-blur run`` against the ``deface`` command.

The video is made by :func:`bench.frames.write_video` (moving faces from the shared photos, a shot
cut, a stretch without faces). Each tool runs as a separate process, as a user would run it; the
wall time includes model loading, decoding, everything, and the output's frames are counted by
decoding it.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.frames import count_frames
from bench.peer import deface_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndToEnd:
    tool: str
    command: str
    wall_s: float | None
    cpu_s: float | None  # user + system seconds of the command and its children (ffmpeg)
    frames_in: int
    frames_out: int | None
    note: str = ""

    @property
    def fps(self) -> float | None:
        if self.wall_s is None or not self.wall_s:
            return None
        return self.frames_in / self.wall_s


def timed_run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Run ``cmd``; returns (wall seconds, CPU seconds, exit code, last lines of its stderr). CPU time
    (user + system of the command and everything it waited for) is steadier than wall time on a
    machine shared with other work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    if proc.returncode != 0:
        log.warning("%s exited %d: %s", cmd[:4], proc.returncode, tail)
    return wall, cpu, proc.returncode, tail


def face_blur_command(video: Path, output: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """``face-blur run VIDEO -o OUTPUT --no-progress [extra]`` through this interpreter."""
    code = "import sys; from faceblur.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "run", str(video), "-o", str(output), "--no-progress", *extra]


def _frames_or_none(path: Path) -> int | None:
    try:
        return count_frames(path) if path.is_file() else None
    except Exception as exc:  # an unreadable output is a finding, reported in the table
        log.warning("cannot count the frames of %s: %s", path, exc)
        return None


def compare(video: Path, frames_in: int, workdir: Path,
            face_blur_settings: tuple[tuple[str, ...], ...] = ((),), face_blur_env: dict[str, str] | None = None,
            deface_settings: tuple[tuple[str, ...], ...] = ((),)) -> list[EndToEnd]:
    """Run ``face-blur run`` with each of ``face_blur_settings`` and ``deface`` with each of
    ``deface_settings`` on ``video``, and count every output's frames."""
    runs = [("face-blur run", "face-blur run VIDEO -o OUT --no-progress", face_blur_command, extra, face_blur_env)
            for extra in face_blur_settings]
    runs += [("deface", "deface VIDEO -o OUT", deface_command, extra, None) for extra in deface_settings]
    rows = []
    for i, (tool, shown, command, extra, env) in enumerate(runs):
        out = workdir / f"out-{i}.mp4"
        wall, cpu, rc, tail = timed_run(command(video, out, extra), env)
        ok = rc == 0
        rows.append(EndToEnd(tool, " ".join((shown, *extra)), wall if ok else None, cpu if ok else None,
                             frames_in, _frames_or_none(out), "" if ok else f"exit {rc}: {tail}"))
        out.unlink(missing_ok=True)
    return rows
