"""The dim moving face of ``tests/test_confirm.py`` over several draws of noise and background:
frames left clear by ``face-blur run`` with adaptive analysis against ``--analysis every``.

The test runs three draws; this runs as many as asked, so a change to the scheduler can be judged
on more than the draws the test happens to use. A frame counts as clear when no blur box of the
plan covers 60% of the face's box (the test's own measure). Usage::

    python3 -m bench.dim_face_seeds [--seeds 8] [--person obama]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"


def run(seeds: int, person: str, faces_dir: Path) -> dict[str, list[int]]:
    """Per setting, the frames left clear on each seed."""
    sys.path.insert(0, str(TESTS))
    import test_confirm as tc  # the clip recipe and the measure are the test's: one home

    clear: dict[str, list[int]] = {"adaptive": [], "every": []}
    for seed in range(1, seeds + 1):
        rng = np.random.default_rng(seed)
        bg = tc._background(seed)
        patch, box = tc.face_patch(faces_dir, person, 22)
        frames, truth = [], []
        for i in range(40):
            frame = bg.copy()
            truth.append(tc.paste(frame, patch, box, 200 + 2 * i, 150 + i % 5))
            frames.append(tc._camera(frame, rng, gain=0.11))
        for label, options in (("adaptive", ()), ("every", ("--analysis", "every"))):
            with tempfile.TemporaryDirectory() as work:
                _, _, plan = tc._run(Path(work), frames, *options)
            missed = [i for i, t in enumerate(truth, start=1) if not tc._covered(plan, i, t)]
            clear[label].append(len(missed))
            print(f"seed {seed} {label}: {len(missed)} of 40 frames clear {missed[:10]}, "
                  f"analysed {plan.summary.get('analysed_frames', 40)}", flush=True)
    return clear


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="draws 1..N")
    p.add_argument("--person", default="obama", help="photo of ../shared/testdata/faces")
    p.add_argument("--faces", type=Path, default=TESTS.parent.parent / "shared" / "testdata" / "faces")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    clear = run(args.seeds, args.person, args.faces)
    for label, counts in clear.items():
        print(f"{label}: {sum(counts)} of {40 * len(counts)} face frames clear; per seed {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
