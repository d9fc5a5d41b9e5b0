"""``python -m postprocess FRAMES RESULTS OUTPUT [options]``: one post-processing run from a shell.

FRAMES, RESULTS, OUTPUT (and ``--references``) are local folders or ``s3://`` prefixes. Prints the
run summary as JSON on stdout. Exit status 0 on success, 1 when the run fails (one line on stderr
naming what was wrong), 2 for bad arguments or options.

The pieces are reusable (the ``face-blur`` CLI builds ``face-blur postprocess`` from them):
``add_plan_arguments``/``add_render_arguments``/``add_run_arguments`` add option groups to any
parser, and ``plan_config_from_args``/``render_config_from_args``/``run_config_from_args`` turn the
parsed namespace into configs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Sequence

from postprocess import config as plan_config_module
from postprocess.blur import SHAPES, STYLES, RenderConfig
from postprocess.config import INTERPOLATIONS, MODES, PICK_ACTIONS, Pick, PlanConfig
from postprocess.run import MISSING_POLICIES, RunConfig, run

log = logging.getLogger(__name__)

_CHOICES = {"mode": MODES, "pick_action": PICK_ACTIONS, "interpolation": INTERPOLATIONS}


def _plan_help() -> dict[str, str]:
    """Each option's description in ``postprocess/config.py``'s docstring (with its continuation lines)."""
    out: dict[str, str] = {}
    current = None
    for line in (plan_config_module.__doc__ or "").splitlines():
        match = re.match(r"^\s{4}(\w+) = \S+\s+(.*)$", line)
        if match:
            current = match[1]
            out[current] = match[2].strip()
        elif current and line.startswith(" " * 8) and line.strip():
            out[current] += " " + line.strip()
        else:
            current = None
    return {k: v.replace("``", "") for k, v in out.items()}


def pick_argument(text: str) -> Pick:
    """``--pick FRAME:X:Y`` for argparse: a bad value is reported with what is wrong with it."""
    try:
        return Pick.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per ``PlanConfig`` field (``--max-gap`` for ``max_gap``; picks as repeated ``--pick``)."""
    group = parser.add_argument_group("plan options (which faces to blur; see postprocess/config.py)")
    helps = _plan_help()
    for f in dataclasses.fields(PlanConfig):
        default = f.default
        text = helps.get(f.name, f"PlanConfig.{f.name}").replace("%", "%%")
        if f.name == "picks":
            group.add_argument("--pick", dest="picks", action="append", type=pick_argument, default=[],
                               metavar="FRAME:X:Y", help="mode select: a point on a face to pick (repeatable)")
            continue
        option = "--" + f.name.replace("_", "-")
        if f.name in _CHOICES:
            group.add_argument(option, dest=f.name, choices=_CHOICES[f.name], default=default, help=text)
        elif default is None:  # identity_threshold, identity_margin: per-embedder defaults
            group.add_argument(option, dest=f.name, type=float, default=None, help=text)
        else:
            group.add_argument(option, dest=f.name, type=type(default), default=default, help=text)


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fill must be R,G,B integers, got {text!r}") from None
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(f"fill must be three integers 0-255, got {text!r}")
    return values  # type: ignore[return-value]


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    d = RenderConfig()
    group = parser.add_argument_group("blur options (see postprocess/blur.py)")
    group.add_argument("--style", choices=STYLES, default=d.style,
                       help="blur: Gaussian; box: box filter; pixelate: mosaic; solid: fill (cannot be undone)")
    group.add_argument("--shape", choices=SHAPES, default=d.shape, help="mask shape inside the scaled box")
    group.add_argument("--mask-scale", type=float, default=d.mask_scale,
                       help="exact width/height factor from face box to blurred region")
    group.add_argument("--extend-head", type=float, default=d.extend_head,
                       help="extend the box upward by this fraction of its height (hair)")
    group.add_argument("--strength", type=float, default=d.strength,
                       help="blur sigma / mosaic cell as a fraction of the face size")
    group.add_argument("--min-kernel", type=int, default=d.min_kernel, help="smallest sigma / cell in pixels")
    group.add_argument("--feather", type=float, default=d.feather,
                       help="soft edge outside the region, fraction of the face size (0: hard)")
    group.add_argument("--fill", type=_rgb, default=d.fill, metavar="R,G,B", help="colour of --style solid")
    group.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality, help="quality of JPEG output frames")
    group.add_argument("--png-compress-level", type=int, default=d.png_compress_level,
                       help="zlib level of PNG output frames (always lossless)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    group = parser.add_argument_group("run options")
    group.add_argument("--missing", choices=MISSING_POLICIES, default=d.missing,
                       help="a frame without a usable result: stop before writing anything, or blur it whole")
    group.add_argument("--frame-pattern", default=d.frame_pattern,
                       help="regex with one group: the frame number in the file name")
    group.add_argument("--workers", type=int, default=d.workers, help="I/O and render threads (0: auto)")
    group.add_argument("--results-suffix", default=d.results_suffix,
                       help="the result of frame KEY is RESULTS/KEY+suffix")


def plan_config_from_args(args: argparse.Namespace) -> PlanConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PlanConfig) if hasattr(args, f.name)}
    values["picks"] = tuple(getattr(args, "picks", ()) or ())
    return PlanConfig(**values)


def render_config_from_args(args: argparse.Namespace) -> RenderConfig:
    return RenderConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RenderConfig)
                           if hasattr(args, f.name)})


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(plan=plan_config_from_args(args), render=render_config_from_args(args),
                     missing=args.missing, frame_pattern=args.frame_pattern, workers=args.workers,
                     results_suffix=args.results_suffix)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """FRAMES RESULTS OUTPUT and --references (shared with ``face-blur postprocess``)."""
    parser.add_argument("frames", help="folder or s3:// prefix of the frames (img0000001.png ...)")
    parser.add_argument("results", help="folder or s3:// prefix of the per-frame results (<frame>.out)")
    parser.add_argument("output", help="folder or s3:// prefix for the output; must not overlap an input")
    parser.add_argument("--references", default=None,
                        help="folder or s3:// prefix of reference results <person>/<photo>.out (modes unknown/known)")


def build_parser(prog: str = "python -m postprocess") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
