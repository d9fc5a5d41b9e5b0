"""The command-line options of post-processing, defined once and shared by ``python -m postprocess``,
``face-blur run``/``postprocess`` (faceblur/cli.py) and ``scripts/start_job.py``: every default is
the config object's own (``PlanConfig``, ``RenderConfig``, ``RunConfig``), never written into help.

``add_plan_arguments``/``add_render_arguments``/``add_run_arguments``/``add_io_arguments`` add option
groups to any parser; ``plan_config_from_args``/``render_config_from_args``/``run_config_from_args``
turn the parsed namespace into configs, and ``given_options`` returns only the options that were
given (for a command that overrides a recorded config). :class:`HelpFormatter` shows each default
once; :func:`number_argument` parses and range-checks.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from postprocess.blur import SHAPES, STYLES, RenderConfig
from postprocess.config import INTERPOLATIONS, MODES, PICK_ACTIONS, Pick, PlanConfig

if TYPE_CHECKING:
    from postprocess.run import RunConfig


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help; help text that names its default already is left as is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action.default, bool) and action.nargs == 0
        if "default:" in text or action.default is argparse.SUPPRESS or action.required or flag:
            return text
        return super()._get_help_string(action) or text


def number_argument(kind: Callable[[str], Any], low: float | None = None, high: float | None = None,
                    name: str = "") -> Callable[[str], Any]:
    """An argparse ``type=`` that parses and range-checks (the message names the range)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({span})")
        return value

    parse.__name__ = name or kind.__name__
    return parse


def pick_argument(text: str) -> Pick:
    """``--pick FRAME:X:Y`` for argparse: a bad value is reported with what is wrong with it."""
    try:
        return Pick.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _per_embedder(values: dict[str, float]) -> str:
    return ", ".join(f"{value:.2f} {name}" for name, value in values.items() if not name.endswith("-int8"))


class _Group:
    """An argument group whose options, with ``overrides``, are absent from the namespace unless given
    (``default=SUPPRESS``), their help still naming the config's default: for a command whose
    options replace those of a recorded config (``scripts/start_job.py --run-options``)."""

    def __init__(self, parser: argparse.ArgumentParser, title: str, overrides: bool) -> None:
        self.group = parser.add_argument_group(title)
        self.overrides = overrides

    def add_argument(self, *flags: str, default: Any, help: str, **kwargs: Any) -> None:  # noqa: A002
        if self.overrides:
            shown = "none" if default in (None, []) else default
            if "default:" not in help:
                help = f"{help} (default: {shown}, or the recorded options' value)"
            default = argparse.SUPPRESS
        self.group.add_argument(*flags, default=default, help=help, **kwargs)


def add_plan_arguments(parser: argparse.ArgumentParser, advanced: bool = True, overrides: bool = False) -> None:
    """The ``PlanConfig`` options (``--max-gap`` for ``max_gap``, picks as repeated ``--pick``), the
    one definition ``face-blur run``, ``python -m postprocess`` and ``scripts/start_job.py`` share;
    ``advanced`` adds the tuning knobs (sampling, cut spikes, matching weights, padding growth);
    ``overrides``: see :class:`_Group`."""
    from postprocess.identity import DEFAULT_MARGINS, DEFAULT_THRESHOLDS

    d = PlanConfig()
    n = number_argument
    g = _Group(parser, "which faces to blur (postprocess/config.py)", overrides)
    g.add_argument("--mode", choices=MODES, default=d.mode,
                   help="all: every face; unknown: all but the reference people; known: only the reference "
                        "people; select: the people under --pick")
    g.add_argument("--pick", dest="picks", action="append", type=pick_argument, default=[], metavar="FRAME:X:Y",
                   help="mode select: a point on a face (frame number from 1, pixels); repeatable (default: none)")
    g.add_argument("--pick-action", choices=PICK_ACTIONS, default=d.pick_action,
                   help="mode select: blur the picked people, or keep them and blur everyone else")
    g.add_argument("--identity-threshold", type=n(float, -1.0, 1.0), default=None,
                   help="centre of the zone of doubt on a sequence's cosine similarity to a person (default: "
                        f"per embedder: {_per_embedder(DEFAULT_THRESHOLDS)})")
    g.add_argument("--identity-margin", type=n(float, 0.0, 0.99), default=None,
                   help="half-width of the zone of doubt: keep clear only at threshold + margin; from "
                        f"threshold - margin up, blur as that person (default: per embedder: "
                        f"{_per_embedder(DEFAULT_MARGINS)})")
    g.add_argument("--allow-weak-embedder", action="store_true", default=d.allow_weak_embedder,
                   help="trust a weak embedder (dlib) in modes unknown/known/select; without it, and with no "
                        "embedder at all, those modes blur every face and say why (default: off)")
    g.add_argument("--min-samples", type=n(int, 1), default=d.min_samples,
                   help="detections of a sequence that must match before it counts as a person")
    g.add_argument("--cut-threshold", type=n(float, 0.01, 2.0), default=d.cut_threshold,
                   help="shot cut: distance between frame signatures (2 turns cut detection off)")
    g.add_argument("--max-gap", type=n(int, 0), default=d.max_gap,
                   help="frames a face sequence survives without a detection")
    g.add_argument("--join-gap", type=n(int, 0), default=d.join_gap,
                   help="join sequences of one shot at most this many frames apart")
    c = _Group(parser, "which sequences are faces (postprocess/confirm.py; the detector emits "
               "low-score candidates, confirmed over time)", overrides)
    c.add_argument("--short-keep-score", type=n(float, 0.0), default=d.short_keep_score,
                   help="one detection scoring this makes a face (one confident frame is blurred)")
    c.add_argument("--face-score", type=n(float, 0.0, 1.0), default=d.face_score,
                   help="a detection scoring this is confident; --min-length of them make a face")
    c.add_argument("--min-length", type=n(int, 1), default=d.min_length,
                   help="confident detections that make a face")
    c.add_argument("--min-candidates", type=n(int, 1), default=d.min_candidates,
                   help="otherwise the candidates must persist: at least this many detections")
    c.add_argument("--min-mean-score", type=n(float, 0.0, 1.0), default=d.min_mean_score,
                   help="... with this mean score")
    c.add_argument("--min-density", type=n(float, 0.0, 1.0), default=d.min_density,
                   help="... on this share of the frames they span (scattered flicker is not a face)")
    c.add_argument("--max-jitter", type=n(float, 0.001), default=d.max_jitter,
                   help="... with a box this steady (median centre + size step per frame, in face sizes)")
    c.add_argument("--min-plausible", type=n(float, 0.0, 1.0), default=d.min_plausible,
                   help="... and face-like landmarks on this share of them")
    c.add_argument("--dim-below", type=n(float, 0.0, 1.01), default=d.dim_below,
                   help="... in frames whose median brightness (0-1) is under this (1.01: any light; 0.3: only dim "
                   "frames, less stray blur on lit texture, at the risk of a lit face that scores low)")
    c.add_argument("--lit-below-size", type=n(float, 0.0), default=d.lit_below_size,
                   help="... except faces smaller than this, pixels (median larger box side): a small face "
                   "scores low in light too")
    g.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation,
                   help="boxes of frames inside a sequence without a detection")
    g.add_argument("--smooth-window", type=n(int, 1), default=d.smooth_window,
                   help="centred moving average of the boxes, frames (1: off)")
    g.add_argument("--pad-frames", type=n(int, 0), default=d.pad_frames,
                   help="anti-flicker: extend each sequence this many frames at both ends")
    if not advanced:
        return
    g.add_argument("--max-samples", type=n(int, 1), default=d.max_samples,
                   help="embeddings sampled per sequence for identity (spread over it, best quality)")
    g.add_argument("--cut-spike-ratio", type=n(float, 0.0), default=d.cut_spike_ratio,
                   help="a smaller signature jump is a cut when it is this many times the local median (0: off)")
    g.add_argument("--max-cost", type=n(float, 0.0), default=d.max_cost,
                   help="two faces of consecutive frames are never linked above this matching cost")
    g.add_argument("--iou-weight", type=n(float, 0.0), default=d.iou_weight, help="matching cost: 1 - IoU weight")
    g.add_argument("--distance-weight", type=n(float, 0.0), default=d.distance_weight,
                   help="matching cost: centre distance (in face sizes) weight")
    g.add_argument("--embedding-weight", type=n(float, 0.0), default=d.embedding_weight,
                   help="matching cost: embedding cosine distance weight")
    g.add_argument("--weak-max-cost", type=n(float, 0.001, 1.0), default=d.weak_max_cost,
                   help="a candidate under --face-score continues a confident sequence only at this cost or less")
    g.add_argument("--pad-growth", type=n(float, 0.0), default=d.pad_growth,
                   help="a padded box grows by this fraction of its size per frame from the sequence")


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fill must be R,G,B integers, got {text!r}") from None
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(f"fill must be three integers 0-255, got {text!r}")
    return values  # type: ignore[return-value]


def add_render_arguments(parser: argparse.ArgumentParser, advanced: bool = True, overrides: bool = False) -> None:
    """The ``RenderConfig`` options; ``advanced`` adds edge, fill colour and output encoding;
    ``overrides``: see :class:`_Group`."""
    d = RenderConfig()
    n = number_argument
    g = _Group(parser, "how faces are hidden (postprocess/blur.py)", overrides)
    g.add_argument("--style", choices=STYLES, default=d.style,
                   help="blur: Gaussian; box: box filter; pixelate: mosaic; solid: filled (cannot be undone)")
    g.add_argument("--shape", choices=SHAPES, default=d.shape, help="mask shape inside the scaled box")
    g.add_argument("--mask-scale", type=n(float, 1.0, 4.0), default=d.mask_scale,
                   help="exact width and height factor from face box to blurred region")
    g.add_argument("--extend-head", type=n(float, 0.0, 2.0), default=d.extend_head,
                   help="extend the box upward by this fraction of its height first (hair)")
    g.add_argument("--strength", type=n(float, 0.02, 1.0), default=d.strength,
                   help="blur sigma / box radius / mosaic cell as a fraction of the face size")
    if not advanced:
        return
    g.add_argument("--min-kernel", type=n(int, 1), default=d.min_kernel, help="smallest sigma / cell in pixels")
    g.add_argument("--feather", type=n(float, 0.0, 1.0), default=d.feather,
                   help="soft edge outside the region, fraction of the face size (0: hard)")
    g.add_argument("--fill", type=_rgb, default=d.fill, metavar="R,G,B", help="colour of --style solid")
    g.add_argument("--jpeg-quality", type=n(int, 50, 100), default=d.jpeg_quality,
                   help="quality of JPEG output frames")
    g.add_argument("--png-compress-level", type=n(int, 0, 9), default=d.png_compress_level,
                   help="zlib level of PNG output frames (always lossless)")


def add_run_arguments(parser: argparse.ArgumentParser, advanced: bool = True, overrides: bool = False) -> None:
    """The ``RunConfig`` options besides plan and render; without ``advanced`` only ``--missing``."""
    from postprocess.run import MISSING_POLICIES, RunConfig

    d = RunConfig()
    group = _Group(parser, "run options", overrides)
    group.add_argument("--missing", choices=MISSING_POLICIES, default=d.missing,
                       help="a frame without a usable result: stop before writing anything, or blur it whole")
    if not advanced:
        return
    group.add_argument("--frame-pattern", default=d.frame_pattern,
                       help="regex with one group: the frame number in the file name")
    group.add_argument("--workers", type=number_argument(int, 0, 256), default=d.workers,
                       help="I/O and render threads (0: auto)")
    group.add_argument("--results-suffix", default=d.results_suffix,
                       help="the result of frame KEY is RESULTS/KEY+suffix")


def given_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The options given on the command line (built with ``overrides``), by config:
    ``{"plan": {...}, "render": {...}, "run": {...}}`` with config field names as keys."""
    from postprocess.run import RunConfig

    given = vars(args)
    out: dict[str, dict[str, Any]] = {}
    for name, cls in (("plan", PlanConfig), ("render", RenderConfig), ("run", RunConfig)):
        out[name] = {f.name: given[f.name] for f in dataclasses.fields(cls)
                     if f.name in given and f.name not in ("plan", "render")}
    if "picks" in out["plan"]:
        out["plan"]["picks"] = tuple(out["plan"]["picks"])
    return out


def plan_config_from_args(args: argparse.Namespace) -> PlanConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PlanConfig) if hasattr(args, f.name)}
    values["picks"] = tuple(getattr(args, "picks", ()) or ())
    if "max_samples" not in values:  # without the advanced options: never fewer samples than required
        values["max_samples"] = max(values.get("min_samples", 1), PlanConfig().max_samples)
    return PlanConfig(**values)


def render_config_from_args(args: argparse.Namespace) -> RenderConfig:
    return RenderConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RenderConfig)
                           if hasattr(args, f.name)})


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    from postprocess.run import RunConfig

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
