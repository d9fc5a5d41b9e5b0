"""A development video with two people for the review page's tests, its plan (made by the real
``face-blur run --plan``), and the page's server started as a user does (``face-blur review``),
on a free loopback port, stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from conftest import REPO, free_port, stop_pid
from video_helpers import ClipSpec, face_patch, make_clip, paste

Box = tuple[float, float, float, float]
FRAMES = 30


@dataclass
class TwoPeople:
    video: Path
    plan: Path
    frames: list[np.ndarray]  # what was encoded
    truth: dict[str, list[Box]]  # person -> face box per frame (index 0 = frame 1)


def _background(w: int, h: int, i: int) -> np.ndarray:
    """A textured, slowly drifting background (real footage is never flat)."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 40 * np.sin((x + 2 * i) / 37.0), 80 + 30 * np.cos(y / 23.0), 70 + 0 * x], axis=2)
    rng = np.random.default_rng(i)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def paint_two_people(faces_dir: Path, size: tuple[int, int] = (640, 360), frames: int = FRAMES,
                     face: int = 80) -> tuple[list[np.ndarray], dict[str, list[Box]]]:
    """obama walking right on the left, biden walking left on the right, faces ``face`` px high."""
    w, h = size
    patches = {p: face_patch(faces_dir, p, face) for p in ("obama", "biden")}
    out, truth = [], {"obama": [], "biden": []}
    for i in range(frames):
        frame = _background(w, h, i)
        truth["obama"].append(paste(frame, *patches["obama"], 40 + 3 * i, 70))
        truth["biden"].append(paste(frame, *patches["biden"], w - 220 - 3 * i, 90))
        out.append(frame)
    return out, truth


def make_two_people(folder: Path, faces_dir: Path, model_dir: Path) -> TwoPeople:
    from faceblur.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    frames, truth = paint_two_people(faces_dir)
    video = make_clip(folder / "two.mp4", ClipSpec(width=640, height=360, frames=len(frames), rate=Fraction(10),
                                                    options={"preset": "ultrafast", "crf": "14", "g": "10"}),
                      lambda i: frames[i])
    plan = folder / "two.plan.json"
    code = main(["run", str(video), "--plan", str(plan), "-o", str(folder / "two_first.mp4"), "--detector",
                 "centerface", "--embedder", "none", "--no-progress", "--model-dir", str(model_dir)])
    assert code == 0, "face-blur run failed"
    return TwoPeople(video, plan, frames, truth)


def sequence_of(plan: dict, box: Box, frame: int) -> dict:
    """The plan's sequence whose box in ``frame`` overlaps ``box`` most."""
    def overlap(s: dict) -> float:
        r = frame - s["first"]
        if not 0 <= r < len(s["boxes"]):
            return 0.0
        x1, y1, x2, y2 = s["boxes"][r]
        ix = max(0.0, min(x2, box[2]) - max(x1, box[0]))
        iy = max(0.0, min(y2, box[3]) - max(y1, box[1]))
        return ix * iy
    faces = [s for s in plan["sequences"] if s["decision"] != "drop"] or plan["sequences"]  # not candidates
    best = max(faces, key=overlap)
    assert overlap(best) > 0, f"no sequence covers {box} in frame {frame}"
    return best


def card_of(plan: dict, sequence: dict) -> tuple[str, list[int]]:
    """The page's card holding ``sequence`` (its person's, or its own without persons) and the card's
    sequences."""
    for person in plan.get("persons") or []:
        if sequence["id"] in person["sequences"]:
            return str(person["id"]), [int(i) for i in person["sequences"]]
    return f"seq-{sequence['id']}", [int(sequence["id"])]


class ReviewServer:
    """``face-blur review INPUT --plan PLAN`` in its own process on a free port."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faceblur.cli", "review", *args, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=cwd or REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
        self.first_line = self.proc.stdout.readline() if self.proc.stdout else ""
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                rest = self.proc.stdout.read() if self.proc.stdout else ""
                raise RuntimeError(f"face-blur review exited: {self.first_line}{rest}")
            try:
                urllib.request.urlopen(self.url + "/api/state", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("face-blur review did not answer in 60 s")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        stop_pid(self.proc)

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
