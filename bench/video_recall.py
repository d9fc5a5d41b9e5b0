"""Blur-all recall, whole-track misses and stray blur on the development videos, per tool and setting.

    python -m bench.detection_recall --video [--devset DIR] [--clips NAME ...]
        [--setting LABEL=OPTIONS ...] [--deface T ...] [--work DIR] [--out FILE.md] [--json FILE]

For each setting, each clip of the development set (:mod:`bench.devset`, made first if missing)
goes through ``face-blur run CLIP -o OUT --mode all --overwrite --no-progress OPTIONS`` (this
checkout's code, through this interpreter), and for each ``--deface`` threshold through
``deface CLIP -o OUT --thresh T`` (deface 1.5.0, CenterFace on every frame, no tracking; its
output encoder is told not to rescale to multiples of 16 px, which changes nothing it detects).
Each output is scored from its pixels by :mod:`bench.videometrics`, so every tool is measured
alike. Settings are option strings, so a sweep is a list of them::

    --setting "default=" --setting "noenh=--no-enhance-dark" --setting "t02=--centerface-threshold 0.2"

Reports, in markdown: per clip (recall, tracks missed, stray blur, time) and per setting overall
(pooled over all face instances and over the clean and ``*_dim`` clips separately), and lists every
whole track missed by name, so the next change can go after them. Times are wall seconds of the
whole process (model loading included) on whatever machine and load it ran on: the table says
the load average.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import devset
from bench.endtoend import face_blur_command, timed_run
from bench.peer import deface_command, deface_version
from bench.videometrics import VideoScore, measure

log = logging.getLogger("bench.video_recall")
DEFACE_FFMPEG = json.dumps({"codec": "libx264", "macro_block_size": 2})


@dataclass(frozen=True)
class Setting:
    label: str
    tool: str  # "face-blur" or "deface"
    options: tuple[str, ...]

    @property
    def shown(self) -> str:
        if self.tool == "deface":
            return "deface CLIP -o OUT " + " ".join(self.options)
        return "face-blur run CLIP -o OUT --mode all " + " ".join(self.options)

    def command(self, clip: Path, out: Path) -> list[str]:
        if self.tool == "deface":
            return deface_command(clip, out, (*self.options, "--ffmpeg-config", DEFACE_FFMPEG))
        return face_blur_command(clip, out, ("--mode", "all", "--overwrite", *self.options))


def parse_setting(text: str) -> Setting:
    """``LABEL=OPTIONS`` (options as a shell would split them) for ``face-blur run``."""
    label, sep, options = text.partition("=")
    if not sep or not label.strip():
        raise ValueError(f"--setting {text!r}: expected LABEL=OPTIONS, e.g. 'noenh=--no-enhance-dark'")
    return Setting(label.strip(), "face-blur", tuple(shlex.split(options)))


def deface_setting(threshold: float) -> Setting:
    return Setting(f"deface {threshold:g}", "deface", ("--thresh", f"{threshold:g}"))


@dataclass
class Run:
    clip: str
    setting: Setting
    score: VideoScore | None
    wall_s: float
    cpu_s: float
    note: str = ""


def run_all(settings: list[Setting], clips: list[Path], work: Path) -> list[Run]:
    runs = []
    for setting in settings:
        for clip in clips:
            out = work / f"{clip.stem}--{''.join(c if c.isalnum() else '_' for c in setting.label)}.mp4"
            out.unlink(missing_ok=True)
            log.info("%s: %s", setting.label, clip.stem)
            wall, cpu, rc, tail = timed_run(setting.command(clip, out))
            score, note = None, ""
            if rc != 0 or not out.is_file():
                note = f"exit {rc}: {tail}"
            else:
                score = measure(clip, out)
                note = score.frame_mismatch
            runs.append(Run(clip.stem, setting, score, wall, cpu, note))
            log.info("  recall %s, stray %s, %.1f s", f"{score.recall:.3f}" if score else "-",
                     f"{100 * score.stray:.2f}%" if score else "-", wall)
    return runs


# -- report ------------------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pool(runs: list[Run]) -> dict:
    scored = [r for r in runs if r.score is not None]
    inst = sum(r.score.instances for r in scored)
    blurred = sum(r.score.blurred for r in scored)
    far = sum(r.score.far_blocks for r in scored)
    stray = sum(r.score.stray_blocks for r in scored)
    frames = sum(r.score.frames for r in scored)
    wall = sum(r.wall_s for r in scored)
    return {"instances": inst, "recall": blurred / inst if inst else float("nan"),
            "stray": stray / far if far else float("nan"), "frames": frames, "wall_s": wall,
            "tracks": sum(r.score.tracks for r in scored),
            "tracks_missed": sum(len(r.score.tracks_missed) for r in scored), "failed": len(runs) - len(scored)}


def report(runs: list[Run], settings: list[Setting], header: str) -> str:
    out = [header]
    rows = []
    for s in settings:
        mine = [r for r in runs if r.setting == s]
        allp = _pool(mine)
        clean = _pool([r for r in mine if not r.clip.endswith("_dim")])
        dim = _pool([r for r in mine if r.clip.endswith("_dim")])
        fps = allp["frames"] / allp["wall_s"] if allp["wall_s"] else float("nan")
        rows.append([f"`{s.label}`", f"`{s.shown.strip()}`", str(allp["instances"]), f"**{allp['recall']:.3f}**",
                     f"{clean['recall']:.3f}", f"{dim['recall']:.3f}" if dim["instances"] else "-",
                     f"{allp['tracks_missed']} / {allp['tracks']}", f"{100 * allp['stray']:.2f}%",
                     str(allp["frames"]), f"{allp['wall_s']:.0f}", f"{fps:.1f}"
                     + (f" ({allp['failed']} failed)" if allp["failed"] else "")])
    out.append("### Overall (pooled over every face instance of the clips run)\n")
    out.append(_table(["setting", "command", "instances", "recall", "clean clips", "dim clips",
                       "whole tracks missed", "stray blur", "frames", "time s", "frames/s"], rows))
    out.append("### Per clip (recall / whole tracks missed / stray blur / seconds)\n")
    clips = list(dict.fromkeys(r.clip for r in runs))
    rows = []
    for c in clips:
        row = [c]
        first = next(r for r in runs if r.clip == c)
        row.append(str(first.score.frames) if first.score else "-")
        for s in settings:
            r = next((r for r in runs if r.clip == c and r.setting == s), None)
            if r is None or r.score is None:
                row.append("failed" if r else "-")
                continue
            row.append(f"{r.score.recall:.3f} / {len(r.score.tracks_missed)} / {100 * r.score.stray:.1f}% / "
                       f"{r.wall_s:.0f}")
        rows.append(row)
    out.append(_table(["clip", "frames", *[f"`{s.label}`" for s in settings]], rows))
    out.append("### Whole tracks missed (no frame blurred), and tracks with missed frames\n")
    lines = []
    for s in settings:
        for r in runs:
            if r.setting != s or r.score is None:
                continue
            if r.score.tracks_missed:
                lines.append(f"- `{s.label}` {r.clip}: **missed** " + ", ".join(r.score.tracks_missed))
            for t, frames in r.score.tracks_partial.items():
                lines.append(f"- `{s.label}` {r.clip}: {t} missed on {len(frames)} frame(s) "
                             f"({_ranges(frames)})")
            if r.note:
                lines.append(f"- `{s.label}` {r.clip}: note: {r.note}")
    out.append("\n".join(lines) + "\n" if lines else "none\n")
    return "\n".join(out)


def _ranges(frames: list[int]) -> str:
    parts, start, prev = [], None, None
    for f in sorted(frames):
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = f
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(parts)


def main(args) -> int:
    """Entry from ``python -m bench.detection_recall --video`` (``args`` from its parser)."""
    # nothing asked: today's face-blur against deface 0.2; only --deface asked: deface alone
    default = ["default="] if args.deface is None else []
    settings = [parse_setting(s) for s in (args.setting or default)]
    settings += [deface_setting(t) for t in (args.deface if args.deface is not None else [0.2])]
    names = args.clips or None
    clips = devset.make_devset(args.devset, names, quick=args.quick)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="face-blur-video-recall-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        runs = run_all(settings, clips, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    header = (f"## Recall on the development videos ({len(clips)} clips, {started}, "
              f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs, load average "
              f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end; deface {deface_version()})\n\n"
              "Measured from pixels (bench/videometrics.py): a face instance is blurred when half of its box "
              "changed beyond the codec noise; stray blur is the share of the area away from every face (outside "
              "each box enlarged 1.5x) that changed.\n")
    text = report(runs, settings, header)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps([{"clip": r.clip, "setting": r.setting.label, "tool": r.setting.tool,
                                                "options": list(r.setting.options), "wall_s": r.wall_s,
                                                "cpu_s": r.cpu_s, "note": r.note,
                                                "score": r.score.to_dict() if r.score else None} for r in runs],
                                              indent=1))
    return 0 if all(r.score is not None for r in runs) else 1
