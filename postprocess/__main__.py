"""``python -m postprocess FRAMES RESULTS OUTPUT [options]``: one post-processing run from a shell.

FRAMES, RESULTS, OUTPUT (and ``--references``) are local folders or ``s3://`` prefixes. Prints the
run summary as JSON on stdout. Exit status 0 on success, 1 when the run fails (one line on stderr
naming what was wrong), 2 for bad arguments or options.

The options are defined in :mod:`postprocess.options` (shared with the ``face-blur`` command and
``scripts/start_job.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from postprocess.options import (
    HelpFormatter,
    add_io_arguments,
    add_plan_arguments,
    add_render_arguments,
    add_run_arguments,
    run_config_from_args,
)
from postprocess.run import run

log = logging.getLogger(__name__)


def build_parser(prog: str = "python -m postprocess") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="Blur the chosen faces of a video's frames, given the per-frame results of the inference "
                    "stage. Writes the blurred frames, face-blur-plan.json and, last, face-blur-complete.json.")
    add_io_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_plan_arguments(parser)
    add_render_arguments(parser)
    add_run_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = run_config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2
    try:
        summary = run(args.frames, args.results, args.output, config, args.references)
    except Exception as exc:  # every failure: one line, exit 1 (the traceback with -v)
        log.debug("run failed", exc_info=True)
        print(f"{parser.prog}: error: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
