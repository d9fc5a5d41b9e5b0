"""Identity on footage-like video: ``python -m bench.identity_video [--model-dir DIR] [--embedders ...]``.

Measures the targets of the README's "Identity on video" table on development clips: the clip of
``bench/identity_clips.py`` (the same person in several shots, one far and dim, H.264 at CRF 26)
and, with ``--devset NAME ...``, clips of the project's development set (``bench/devset.py``:
``identity_same``, ``identity_two``, ``cuts``, ``border`` ...; references: the clip's own, else
another shared photo of the person):
for each person of the clip as the protected witness (``known``), as the one click (``select``, a
pick in the shot where that person is largest) and as the reporter (``unknown``):

- recall: faces that must be blurred and are (>= 70% of the true face box covered), per frame;
- kept-clear: faces that must stay clear and do (<= 20% covered).

Mode ``all`` is measured too: its recall is what detection allows (identity can only lose more).

Each embedder analyses the clip once, as ``face-blur run --analysis every`` does (decode the encoded
file, detect, embed); the plans are made with the default plan options. ``--analysis adaptive``:
as ``face-blur run`` at its defaults does instead (``faceblur/adaptive.py``: some frames analysed,
the rest covered by the sequences), once without embeddings for mode ``all`` and once with them,
scheduled for the identity modes' linking, for ``known``, ``select`` and ``unknown``. ``auto`` is
what a user gets with no model options from the given model folder (after ``make install``:
MobileFaceNet). Prints a Markdown table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.identity_clips import REFERENCES, Clip, score_plan, two_shots, write_clip

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata"


def devset_clip(name: str, directory: Path | None = None, quick: bool = False) -> tuple[Clip, Path, dict[str, str]]:
    """A development-set clip as a :class:`Clip` (truth boxes clipped to the frame), its video and the
    reference photo of each person that has one. ``directory``: where the clips are (made there if
    missing; default the development set's own folder); ``quick``: the short variant."""
    from bench.devset import DEFAULT_DIR, QUICK_DIR, load_truth, make_devset

    directory = Path(directory) if directory is not None else (QUICK_DIR if quick else DEFAULT_DIR)
    video = directory / f"{name}.mp4"
    if not video.is_file():
        make_devset(directory, [name], quick=quick)
    t = load_truth(video)
    truth: list[dict] = [{} for _ in range(t.frames)]
    for f in t.faces:
        x1, y1, x2, y2 = f.box
        box = (max(0.0, x1), max(0.0, y1), min(float(t.width), x2), min(float(t.height), y2))
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            truth[f.frame - 1][f.person] = box
    shots = [(a - 1, b - 1, f"shot {i}") for i, (a, b) in enumerate(t.shots)]
    people = {p for frame in truth for p in frame}
    refs = {p: (t.references or {}).get(p) or REFERENCES.get(p) for p in people}
    return Clip(name, [], truth, shots), video, {p: r for p, r in refs.items() if r}


def analyse(video: Path, faces_dir: Path, embedder: str, model_dir: Path | None,
            references: dict[str, str] = REFERENCES):
    from faceblur.local import read_image
    from faceblur.video import iter_frames
    from handler.pipeline import PipelineConfig, load_pipeline

    pipeline = load_pipeline(PipelineConfig(model_dir=model_dir, embedder=embedder, device="cpu"))
    name = pipeline.embedder.name if pipeline.embedder else "none"
    results = {f.index: pipeline.analyse(f.image, f.index) for f in iter_frames(video)}
    refs = {p: {photo: pipeline.analyse(read_image(faces_dir / photo)[1], 0)} for p, photo in references.items()}
    return name, results, refs


def analyse_adaptively(video: Path, faces_dir: Path, embedder: str, model_dir: Path | None,
                       references: dict[str, str], identity: bool):
    """As :func:`analyse`, with ``face-blur run``'s adaptive pass 1 (``faceblur.analyse.analyse_adaptive``;
    ``identity``: embeddings, scheduled as for the identity modes; else as for mode ``all``, without
    them). Results in a ``ResultStore``."""
    from types import SimpleNamespace

    from faceblur.analyse import analyse_adaptive
    from faceblur.local import LocalConfig, read_image
    from handler.pipeline import PipelineConfig, load_pipeline
    from postprocess.config import PlanConfig
    from postprocess.results import ResultStore

    config = PipelineConfig(model_dir=model_dir, embedder=embedder if identity else "none", device="cpu",
                            fixed_size=True)  # as face-blur run loads it for a video
    pipeline = load_pipeline(config)
    name = pipeline.embedder.name if pipeline.embedder else "none"
    refs = {p: {photo: pipeline.analyse(read_image(faces_dir / photo)[1], 0)} for p, photo in references.items()}
    store = ResultStore()
    analyse_adaptive(pipeline, config, PlanConfig(mode="unknown" if identity else "all"), LocalConfig(), video,
                     store, SimpleNamespace(update=lambda n: None))
    return name, store, refs


def _largest_shot(clip, person: str) -> int:
    sizes = [np.mean([t[person][3] - t[person][1] for t in clip.truth[a:b + 1] if person in t] or [0])
             for a, b, _ in clip.shots]
    return int(np.argmax(sizes))


def measure(clip, results, refs, all_results=None) -> list[dict]:
    """Rows per mode and person; ``all_results``: mode ``all``'s own results (default ``results``)."""
    from postprocess.config import Pick, PlanConfig
    from postprocess.plan import make_plan

    everyone = {p for t in clip.truth for p in t}
    people = sorted(everyone & set(refs))  # those with a reference photo are the witness / reporter in turn
    plan = make_plan(all_results if all_results is not None else results, PlanConfig(mode="all"))  # recall's ceiling
    rows = [{"mode": "all", "person": "-", **score_plan(clip, plan, None, set()), "fail_closed": ""}]
    for person in people:
        others = everyone - {person}
        ref = {person: refs[person]}
        pick = Pick.parse(clip.pick(person, _largest_shot(clip, person)))
        cases = [("known", PlanConfig(mode="known"), ref, {person}, others),
                 ("select", PlanConfig(mode="select", picks=(pick,)), None, {person}, others),
                 ("unknown", PlanConfig(mode="unknown"), ref, None, {person})]
        for mode, config, references, blur, keep in cases:
            plan = make_plan(results, config, references)
            m = score_plan(clip, plan, blur, keep)
            rows.append({"mode": mode, "person": person, **m, "fail_closed": plan.summary["fail_closed"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.identity_video", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--faces", type=Path, default=SHARED / "faces", help="the shared photos")
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the default rule)")
    parser.add_argument("--embedders", nargs="+", default=["auto", "dlib", "none"], help="embedders to compare")
    parser.add_argument("--per-shot", type=int, default=16, help="frames per shot")
    parser.add_argument("--devset", nargs="*", default=[], metavar="NAME",
                        help="also these clips of bench/devset.py (e.g. identity_same identity_two cuts border)")
    parser.add_argument("--no-own-clip", dest="own_clip", action="store_false",
                        help="skip the bench/identity_clips.py clip")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--analysis", choices=("every", "adaptive"), default="every",
                        help="every frame analysed, or as face-blur run's default adaptive analysis")
    args = parser.parse_args(argv)
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        if args.own_clip:
            own = two_shots(args.faces, per_shot=args.per_shot)
            clips.append((own, write_clip(own, Path(tmp) / "two_shots.mp4"), REFERENCES))
        clips += [devset_clip(name) for name in args.devset]
        for clip, video, references in clips:
            for embedder in args.embedders:
                start = time.perf_counter()
                if args.analysis == "adaptive":
                    _, all_results, _ = analyse_adaptively(video, args.faces, embedder, args.model_dir, {}, False)
                    name, results, refs = analyse_adaptively(video, args.faces, embedder, args.model_dir,
                                                             references, True)
                    rows = measure(clip, results, refs, all_results)
                    all_results.close()
                    results.close()
                else:
                    name, results, refs = analyse(video, args.faces, embedder, args.model_dir, references)
                    rows = measure(clip, results, refs)
                for r in rows:
                    r["embedder"] = f"{embedder} ({name})" if embedder == "auto" else name
                    r["clip"] = clip.name
                out += rows
                print(f"{clip.name} {embedder}: {name}, {len(results)} frames, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr)
    print("| clip | embedder | mode | person | recall | kept-clear | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in out:
        note = "fail closed" if r["fail_closed"] else ""
        print(f"| {r['clip']} | {r['embedder']} | {r['mode']} | {r['person']} | {r['recall']:.3f} ({r['must_blur']}) | "
              f"{r['kept_clear']:.3f} ({r['must_keep']}) | {note} |")
    print("\nPer embedder and mode, pooled over the people and clips (faces in brackets):")
    print("| embedder | mode | recall | kept-clear |")
    print("| --- | --- | --- | --- |")
    for emb in dict.fromkeys(r["embedder"] for r in out):
        for mode in ("all", "known", "select", "unknown"):
            rs = [r for r in out if r["embedder"] == emb and r["mode"] == mode]
            nb, nk = sum(r["must_blur"] for r in rs), sum(r["must_keep"] for r in rs)
            rb = sum(r["recall"] * r["must_blur"] for r in rs if r["must_blur"]) / nb if nb else float("nan")
            rk = sum(r["kept_clear"] * r["must_keep"] for r in rs if r["must_keep"]) / nk if nk else float("nan")
            print(f"| {emb} | {mode} | {rb:.3f} ({nb}) | {rk:.3f} ({nk}) |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
