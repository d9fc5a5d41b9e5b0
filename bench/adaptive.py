"""Adaptive analysis end to end, side by side with deface (issue 17).

    python -m bench.adaptive VIDEO [VIDEO ...] [--reps 3] [--modes all,unknown,select] [--out DIR]

Per video (a development clip with its ``<name>.truth.json`` beside it, ``bench/devset.py``), in
one run, the commands alternate within every repetition (order reversed on odd repetitions), each
in its own process as a user runs it:

* ``face-blur run VIDEO`` at its defaults (``--analysis adaptive``, mode all), and with
  ``--analysis every`` when ``--every`` is given;
* ``deface VIDEO`` at its defaults and ``deface VIDEO --scale 640x360``;
* with ``--modes``: ``face-blur run --mode unknown --ref PHOTO`` (one reference person, the truth's
  first) and ``--mode select --pick FRAME:X:Y`` (the first face of the truth).

Reported per command: median wall seconds and frames per second, peak resident memory (the
largest process of the command, ``ru_maxrss``), recall (share of truth faces hidden in the output,
``bench.videometrics`` when it is present, else this module's detail measure) and, for face-blur,
the share of frames fully analysed (from its plan). The machine's load average is printed with the
table: on a shared machine compare the columns of one table, not absolute numbers.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.adaptive")

_WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
         "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print('MAXRSS', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(r)")


@dataclass
class Runs:
    label: str
    walls: list[float] = field(default_factory=list)
    peaks_kib: list[int] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # user + system seconds (steadier than wall under load)
    recall: float | None = None
    analysed: float | None = None
    failed: str = ""


def timed(cmd: list[str]) -> tuple[float, int, float, int, str]:
    """(wall seconds, peak RSS KiB of the command's largest process, CPU seconds, exit code, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    peak, cpu = 0, 0.0
    for line in proc.stderr.splitlines():
        if line.startswith("MAXRSS "):
            peak, cpu = int(line.split()[1]), float(line.split()[2])
    tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-4:] if not line.startswith("MAXRSS"))
    return wall, peak, cpu, proc.returncode, tail


def _read(path: Path) -> list[np.ndarray]:
    from faceblur.video import iter_frames

    return [f.image for f in iter_frames(path)]


def _detail(image: np.ndarray, box) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crop = image[y1:y2, x1:x2].astype(np.float32).mean(axis=2)
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return 0.0
    return float(np.abs(np.diff(crop, axis=0)).mean() + np.abs(np.diff(crop, axis=1)).mean())


def recall(source: Path, output: Path, truth, hidden_ratio: float = 0.6) -> float:
    """Share of truth faces (mostly visible, not occluded) whose box lost at least 1 - ``hidden_ratio``
    of its pixel detail in the output: bench.videometrics when present, else this measure."""
    try:
        from bench import videometrics  # the development set's pixel-based recall (8x8 luma blocks)

        return float(videometrics.measure(source, output, Path(source).with_suffix(".truth.json")).recall)
    except ImportError:
        pass
    before, after = _read(source), _read(output)
    hit = total = 0
    for face in truth.faces:
        if face.visible < 0.5 or face.occluded >= 0.5:
            continue
        i = face.frame - 1
        h, w = before[i].shape[:2]
        box = np.clip(np.asarray(face.box, np.float64), 0, [w, h, w, h])
        if box[2] - box[0] < 4 or box[3] - box[1] < 4:
            continue
        total += 1
        hit += _detail(after[i], box) <= hidden_ratio * max(_detail(before[i], box), 1e-6)
    return hit / total if total else float("nan")


def _face_blur(video: Path, out: Path, extra: tuple[str, ...]) -> list[str]:
    code = "import sys; from faceblur.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "run", str(video), "-o", str(out), "--no-progress", "--overwrite", *extra]


def _deface(video: Path, out: Path, extra: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", "from deface.deface import main; main()", str(video), "-o", str(out), *extra]


def commands(video: Path, truth, work: Path, modes: list[str], every: bool) -> dict[str, tuple]:
    """label -> (builder, extra args, is face-blur)."""
    faces_dir = Path(os.environ.get("FACE_BLUR_SHARED", "/work/shared")) / "testdata" / "faces"
    out: dict[str, tuple] = {"face-blur run (defaults)": (_face_blur, (), True)}
    if every:
        out["face-blur run --analysis every"] = (_face_blur, ("--analysis", "every"), True)
    out["deface (defaults)"] = (_deface, (), False)
    if truth.width * truth.height > 640 * 360:  # on a 640x360 video it is the default
        out["deface --scale 640x360"] = (_deface, ("--scale", "640x360"), False)
    references = dict(truth.references or {})
    if not references and truth.faces:  # a photo of the first person (devset names people by photo stem)
        person = truth.faces[0].person
        photos = sorted(p.name for p in faces_dir.glob(f"{person}*.jpg"))
        if photos:
            references[person] = photos[-1]
    if "unknown" in modes and references:
        person, photo = next(iter(references.items()))
        out[f"face-blur run --mode unknown --ref {photo}"] = (
            _face_blur, ("--mode", "unknown", "--ref", str(faces_dir / photo)), True)
    if "select" in modes and truth.faces:
        f = truth.faces[0]
        x, y = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        out[f"face-blur run --mode select --pick {f.frame}:{x:.0f}:{y:.0f}"] = (
            _face_blur, ("--mode", "select", "--pick", f"{f.frame}:{x:.0f}:{y:.0f}"), True)
    return out


def load_truth(video: Path):
    """``bench.devset.load_truth`` where it exists, else the same fields read from the JSON."""
    try:
        from bench.devset import load_truth as devset_truth
    except ImportError:
        import json
        from types import SimpleNamespace

        data = json.loads(Path(video).with_suffix(".truth.json").read_text())
        return SimpleNamespace(name=data["name"], width=data["width"], height=data["height"], frames=data["frames"],
                               references=data.get("references", {}),
                               faces=[SimpleNamespace(**f) for f in data["faces"]])
    return devset_truth(video)


def bench_video(video: Path, reps: int, modes: list[str], every: bool, work: Path) -> tuple[object, list[Runs]]:
    from postprocess.plan import Plan

    truth = load_truth(video)
    table = commands(video, truth, work, modes, every)
    runs = {label: Runs(label) for label in table}
    labels = list(table)
    for rep in range(reps):
        for label in labels if rep % 2 == 0 else labels[::-1]:
            build, extra, ours = table[label]
            out = work / f"{video.stem}-{labels.index(label)}.mp4"
            out.unlink(missing_ok=True)
            plan = work / f"{video.stem}-{labels.index(label)}.plan.json"
            cmd = build(video, out, (*extra, "--plan", str(plan)) if ours else extra)
            wall, peak, cpu, rc, tail = timed(cmd)
            r = runs[label]
            if rc != 0:
                r.failed = f"exit {rc}: {tail}"
                log.warning("%s on %s: %s", label, video.name, r.failed)
                continue
            r.walls.append(wall)
            r.peaks_kib.append(peak)
            r.cpus.append(cpu)
            log.info("%s %s rep %d: %.1f s, %.0f MiB", video.name, label, rep, wall, peak / 1024)
            if rep == 0:
                r.recall = recall(video, out, truth)
                if ours and plan.exists():
                    p = Plan.loads(plan.read_bytes())
                    r.analysed = (len(p.analysed) if p.analysed is not None else len(p.frame_indices)) / \
                        max(len(p.frame_indices), 1)
    return truth, list(runs.values())


def report(video: Path, truth, runs: list[Runs]) -> list[str]:
    frames = truth.frames
    base = next((r for r in runs if r.label == "deface (defaults)" and r.walls), None)
    fast = next((r for r in runs if r.label == "deface --scale 640x360" and r.walls), None)
    lines = [f"#### {video.name}: {truth.width}x{truth.height}, {frames} frames", "",
             "| command | wall s (median) | frames/s | x deface fps | x deface --scale 640x360 fps | CPU s | "
             "x deface CPU | peak MiB | recall | frames fully analysed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        if not r.walls:
            lines.append(f"| {r.label} | failed: {r.failed} | | | | | | | | |")
            continue
        wall = statistics.median(r.walls)
        ratio = f"{statistics.median(base.walls) / wall:.2f}" if base else "-"
        ratio_fast = f"{statistics.median(fast.walls) / wall:.2f}" if fast else "-"
        rec = f"{r.recall:.3f}" if r.recall is not None else "-"
        share = f"{100 * r.analysed:.0f}%" if r.analysed is not None else "-"
        cpu = statistics.median(r.cpus)
        cpu_ratio = f"{statistics.median(base.cpus) / cpu:.2f}" if base and cpu else "-"
        lines.append(f"| {r.label} | {wall:.1f} | {frames / wall:.2f} | {ratio} | {ratio_fast} | {cpu:.0f} | "
                     f"{cpu_ratio} | {max(r.peaks_kib) / 1024:.0f} | {rec} | {share} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, help="development clips (.mp4 with .truth.json beside)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (median reported)")
    parser.add_argument("--modes", default="", help="also time identity modes: unknown, select (comma-separated)")
    parser.add_argument("--every", action="store_true", help="also time face-blur run --analysis every")
    parser.add_argument("--out", type=Path, default=None, help="append the tables (markdown) to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    modes = [m for m in args.modes.split(",") if m]
    lines = [f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs", ""]
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp:
        for video in args.videos:
            truth, runs = bench_video(video, args.reps, modes, args.every, Path(tmp))
            lines += report(video, truth, runs)
            print("\n".join(report(video, truth, runs)), flush=True)
    lines.append(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")
    log.info("peak RSS of this process %.0f MiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())

