"""AWS Batch entry point: one step of a post-processing run, from the job options file.

    python -m postprocess.batch --options s3://bucket/job/out/face-blur-options.json --step plan
    python -m postprocess.batch --options ... --step render --array-size 10   (an array job)
    python -m postprocess.batch --options ... --step finalize
    python -m postprocess.batch --options ... --step all                      (the three in one job)
    python -m postprocess.batch --options ... --step plan --plan s3://.../edited-plan.json

``render`` in an array child renders slice ``AWS_BATCH_JOB_ARRAY_INDEX`` of ``--array-size``
(default: ``AWS_BATCH_JOB_ARRAY_SIZE`` or ``FACE_BLUR_RENDER_ARRAY_SIZE`` from the environment,
else 1). Every step can be retried: plan rewrites nothing when the digest is unchanged, render skips
frames already done, finalize only writes the marker once every frame has its output. With
``--plan`` (steps plan and all) an edited plan is recorded instead of deciding again
(``postprocess.edited``), and render and finalize then work from it.
Exit status 0 on success, 1 on an error (one line on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from contract.env import env_int
from postprocess.edited import record_plan, rerender
from postprocess.run import JobOptions, finalize_step, plan_step, render_step, run
from postprocess.storage import Store

log = logging.getLogger(__name__)

STEPS = ("plan", "render", "finalize", "all")


def slice_from_env(array_size: int | None, env: Mapping[str, str]) -> tuple[int, int]:
    """(index, count) of this job's share of the frames."""
    count = array_size
    if count is None:
        name = "AWS_BATCH_JOB_ARRAY_SIZE" if env.get("AWS_BATCH_JOB_ARRAY_SIZE") else "FACE_BLUR_RENDER_ARRAY_SIZE"
        count = env_int(env, name, 1, 1, 10_000)
    index = env_int(env, "AWS_BATCH_JOB_ARRAY_INDEX", 0, 0, 9_999)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"array index {index} is outside an array of size {count}")
    return index, count


def run_step(step: str, options: JobOptions, store: Store, index: int = 0, count: int = 1,
             plan_uri: str | None = None) -> dict:
    """Run one step; returns a JSON-ready record of what it did."""
    cfg = options.config
    if plan_uri and step == "plan":
        result = record_plan(store, options.output, plan_uri, cfg)
        return {"step": "plan", "digest": result.manifest.digest, "frames": len(result.manifest.frames),
                "already_complete": result.already_complete, "plan": result.plan.summary,
                "edited_plan": plan_uri}
    if plan_uri and step == "all":
        return {"step": "all", "edited_plan": plan_uri,
                **rerender(options.output, plan_uri, cfg, store=store).to_dict()}
    if step == "plan":
        result = plan_step(store, options.frames, options.results, options.output, cfg, options.references)
        return {"step": "plan", "digest": result.manifest.digest, "frames": len(result.manifest.frames),
                "already_complete": result.already_complete, "plan": result.plan.summary}
    if step == "render":
        stats = render_step(store, options.output, cfg, index=index, count=count)
        return {"step": "render", "slice": [index, count], **stats.to_dict()}
    if step == "finalize":
        marker = finalize_step(store, options.output, cfg)
        return {"step": "finalize", "digest": marker["digest"], "frames": marker["frames"]}
    summary = run(options.frames, options.results, options.output, cfg, options.references, store=store)
    return {"step": "all", **summary.to_dict()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m postprocess.batch", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--options", required=True, help="URI of face-blur-options.json (face-blur/options/v1)")
    parser.add_argument("--step", choices=STEPS, default="all", help="which step to run")
    parser.add_argument("--array-size", type=int, default=None,
                        help="render: number of slices (None: $AWS_BATCH_JOB_ARRAY_SIZE, else "
                             "$FACE_BLUR_RENDER_ARRAY_SIZE, else 1)")
    parser.add_argument("--plan", default=None, dest="plan_uri",
                        help="steps plan and all: render this edited plan (URI) instead of deciding again")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        store = Store()
        options = JobOptions.load(store, args.options)
        index, count = slice_from_env(args.array_size, env) if args.step == "render" else (0, 1)
        record = run_step(args.step, options, store, index, count, args.plan_uri)
    except Exception as exc:  # one line for the job log, non-zero exit so Batch retries/fails the job
        log.debug("step failed", exc_info=True)
        print(f"face-blur batch {args.step}: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps(record, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
