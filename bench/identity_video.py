"""Identity on footage-like video: ``python -m bench.identity_video [--model-dir DIR] [--embedders ...]``.

Measures the targets of the README's "Identity on video" table on the development clips of
``bench/identity_clips.py`` (the same person in several shots, one far and dim, H.264 at CRF 26):
for each person of the clip as the protected witness (``known``), as the one click (``select``, a
pick in the shot where that person is largest) and as the reporter (``unknown``):

- recall: faces that must be blurred and are (>= 70% of the true face box covered), per frame;
- kept-clear: faces that must stay clear and do (<= 20% covered).

Mode ``all`` is measured too: its recall is what detection allows (identity can only lose more).

Each embedder analyses the clip once, as ``face-blur run`` does (decode the encoded file, detect,
embed); the plans are made with the default plan options. ``auto`` is what a user gets with no
model options from the given model folder (after ``make install``: MobileFaceNet). Prints a
Markdown table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.identity_clips import REFERENCES, score_plan, two_shots, write_clip

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata"


def analyse(video: Path, faces_dir: Path, embedder: str, model_dir: Path | None):
    from faceblur.local import read_image
    from faceblur.video import iter_frames
    from handler.pipeline import PipelineConfig, load_pipeline

    pipeline = load_pipeline(PipelineConfig(model_dir=model_dir, embedder=embedder, device="cpu"))
    name = pipeline.embedder.name if pipeline.embedder else "none"
    results = {f.index: pipeline.analyse(f.image, f.index) for f in iter_frames(video)}
    refs = {p: {photo: pipeline.analyse(read_image(faces_dir / photo)[1], 0)} for p, photo in REFERENCES.items()}
    return name, results, refs


def _largest_shot(clip, person: str) -> int:
    sizes = [np.mean([t[person][3] - t[person][1] for t in clip.truth[a:b + 1] if person in t] or [0])
             for a, b, _ in clip.shots]
    return int(np.argmax(sizes))


def measure(clip, results, refs) -> list[dict]:
    from postprocess.config import Pick, PlanConfig
    from postprocess.plan import make_plan

    people = sorted({p for t in clip.truth for p in t})
    plan = make_plan(results, PlanConfig(mode="all"))  # what detection alone allows: recall's ceiling
    rows = [{"mode": "all", "person": "-", **score_plan(clip, plan, None, set()), "fail_closed": ""}]
    for person in people:
        others = set(people) - {person}
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
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    clip = two_shots(args.faces, per_shot=args.per_shot)
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_clip(clip, Path(tmp) / "two_shots.mp4")
        for embedder in args.embedders:
            start = time.perf_counter()
            name, results, refs = analyse(video, args.faces, embedder, args.model_dir)
            rows = measure(clip, results, refs)
            for r in rows:
                r["embedder"] = f"{embedder} ({name})" if embedder == "auto" else name
            out += rows
            print(f"{embedder}: {name}, {len(results)} frames, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"clip {clip.name}: {len(clip.frames)} frames, shots: " + "; ".join(s[2] for s in clip.shots))
    print("| embedder | mode | person | recall | kept-clear | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in out:
        note = "fail closed" if r["fail_closed"] else ""
        print(f"| {r['embedder']} | {r['mode']} | {r['person']} | {r['recall']:.3f} ({r['must_blur']}) | "
              f"{r['kept_clear']:.3f} ({r['must_keep']}) | {note} |")
    print("\nPer embedder and mode, pooled over the people (faces in brackets):")
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
