"""The ``--analysis`` options of ``face-blur run`` (faceblur/adaptive.py, faceblur/schedule.py), with
the defaults of their config objects."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceblur.adaptive import AdaptiveConfig


def number(kind: Any, low: float | None = None, high: float | None = None) -> Any:
    from postprocess.options import number_argument  # imported here: the options module loads the plan's

    return number_argument(kind, low, high)


def _defaults(cls: Any) -> dict[str, Any]:
    return {f.name: getattr(cls(), f.name) for f in fields(cls)}


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    from faceblur.adaptive import ANALYSES, AdaptiveConfig
    from faceblur.schedule import ScheduleConfig

    a, s = _defaults(AdaptiveConfig), _defaults(ScheduleConfig)
    g = parser.add_argument_group("analysis (faceblur/schedule.py; videos only)")
    g.add_argument("--analysis", choices=ANALYSES, default="adaptive",
                   help="adaptive: full analysis at an adaptive interval, on both sides of shot cuts, where analysed "
                        "frames disagree (binary search) and where a cheap detection pass on every frame finds a face "
                        "the sequences do not explain; every: full analysis of every frame")
    g.add_argument("--min-interval", type=number(int, 1, 250), default=s["min_interval"],
                   help="adaptive: shortest interval between analysed frames")
    g.add_argument("--max-interval", type=number(int, 1, 250), default=s["max_interval"],
                   help="adaptive: longest interval between analysed frames (a still scene)")
    g.add_argument("--held-interval", type=number(int, 1, 250), default=s["held_interval"],
                   help="adaptive: longest interval while a low candidate (under the plan's --face-score) is in "
                        f"question: detected on fewer than {s['settled_after']} analysed frames, or missing from "
                        "the last one (a dim face, or texture), unless it stays within "
                        f"{s['still_within']:g} of its size (still)")
    g.add_argument("--net-side", type=number(int, 64, 4096), default=a["net_side"],
                   help="adaptive: longer side, pixels, of the copy the cheap detection pass sees on every frame "
                        "(larger finds smaller faces, costs more)")
    g.add_argument("--net-threshold", type=number(float, 0.01, 0.99), default=a["net_threshold"],
                   help="adaptive: score a candidate of the cheap pass needs")
    g.add_argument("--still-below", type=number(float, 0, 255), default=a["still_below"],
                   help="adaptive: a frame whose block means (32 cells along its longer side) all moved less than "
                        "this many grey levels from the last frame the cheap pass ran on, at most "
                        f"{a['still_span']} frames back, reuses that pass (0: the cheap pass runs on every frame)")


def adaptive_config(args: argparse.Namespace) -> AdaptiveConfig:
    from faceblur.adaptive import AdaptiveConfig
    from faceblur.schedule import ScheduleConfig

    return AdaptiveConfig(schedule=ScheduleConfig(min_interval=args.min_interval, max_interval=args.max_interval,
                                                          held_interval=args.held_interval),
                          net_side=args.net_side, net_threshold=args.net_threshold, still_below=args.still_below)
