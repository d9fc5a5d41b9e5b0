"""``face-blur``: the command line (console script ``face-blur = faceblur.cli:main``).

Subcommands: ``run`` (video, frames folder or photo in, anonymised copy out, everything local),
``render`` (again from a saved plan, no detection; ``--draw-boxes``: a debug copy), ``review`` (a
local web page to check and edit a plan, faceblur/review/), ``serve`` (the inference server),
``transform`` (the Batch Transform stand-in), ``postprocess`` (the post-processing stage on local
paths or S3). ``face-blur <command> --help`` lists every option with its default.

Errors a user can meet end with one line ``face-blur: error: ...`` on stderr and exit 1 (2 for a
usage error); ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceblur.analysis_options import adaptive_config, add_analysis_options

if TYPE_CHECKING:  # each stage is imported when its command runs (--help needs no model runtime)
    from faceblur.video import EncodeConfig
    from handler.pipeline import PipelineConfig
    from postprocess.blur import RenderConfig
    from postprocess.config import PlanConfig

log = logging.getLogger("faceblur")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("face-blur")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- types


def _number(kind: Callable[[str], Any], low: float | None = None, high: float | None = None,
            name: str = "") -> Callable[[str], Any]:
    from postprocess.options import number_argument

    return number_argument(kind, low, high, name)


def _thresholds(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected three numbers in (0, 1) as P,R,O, got {text!r}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- options


def _defaults(cls) -> dict[str, Any]:
    return {f.name: getattr(cls(), f.name) for f in fields(cls)}


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    from postprocess.options import add_plan_arguments

    add_plan_arguments(parser, advanced=False)  # python -m postprocess has the advanced ones too


def _plan_config(args: argparse.Namespace) -> PlanConfig:
    from postprocess.options import plan_config_from_args

    return plan_config_from_args(args)


def _add_blur_options(parser: argparse.ArgumentParser) -> None:
    from postprocess.options import add_render_arguments

    add_render_arguments(parser, advanced=False)


def _render_config(args: argparse.Namespace) -> RenderConfig:
    from postprocess.options import render_config_from_args

    return render_config_from_args(args)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    from handler.detector import BACKENDS, DetectorConfig
    from handler.embedder import embedder_choices
    from handler.pipeline import DEFAULT_MODEL_DIR
    from handler.runtime import DEVICES

    d = _defaults(DetectorConfig)
    g = parser.add_argument_group("inference (handler/)")
    g.add_argument("--detector", choices=BACKENDS, default=d["backend"],
                   help="centerface: best measured recall (README: Detection); mtcnn; ensemble: both merged, "
                        "a superset of each at about 3x the time")
    g.add_argument("--embedder", choices=embedder_choices(), default="auto",
                   help="auto: arcface-r100, else mobilefacenet, else dlib (whichever model file is present); "
                        "none: no identity (mode all only)")
    g.add_argument("--model-dir", type=Path, default=None,
                   help=f"model files (default: $FACE_BLUR_MODEL_DIR, else /opt/ml/model where it exists, "
                        f"else {DEFAULT_MODEL_DIR})")
    g.add_argument("--device", choices=DEVICES, default="auto", help="onnxruntime execution device")
    g.add_argument("--min-face", type=_number(int, 4), default=d["min_face"], help="smallest face, pixels")
    g.add_argument("--max-side", type=_number(int, 64), default=d["max_side"],
                   help="longer frames are downscaled to this for detection")
    g.add_argument("--candidate-threshold", type=_number(float, 0.01, 0.99), default=d["candidate_threshold"],
                   help="CenterFace score a candidate needs; sequences of candidates are confirmed as faces over "
                        "time (see --min-candidates)")
    g.add_argument("--mtcnn-thresholds", type=_thresholds, default=d["mtcnn_thresholds"], metavar="P,R,O",
                   help="MTCNN stage thresholds")
    g.add_argument("--enhance-dark", action=argparse.BooleanOptionalAction, default=d["enhance_dark"],
                   help="gamma-lift dark frames before detection (hurts on real dim video: README Detection) "
                        "(default: off)")
    g.add_argument("--border-pad", type=_number(float, 0.0, 0.5), default=d["border_pad"],
                   help="mirror this fraction of the shorter side around the frame for detection (faces cut by "
                        "the edge)")
    g.add_argument("--native-pass", action=argparse.BooleanOptionalAction, default=d["native_pass"],
                   help="where frames are enlarged for small faces, also detect at the frame's own scale "
                        "(default: off)")
    g.add_argument("--guide-threshold", type=_number(float, 0.0, 0.99), default=d["guide_threshold"],
                   help="where frames are enlarged for small faces (640x360), run the enlarged pass only around "
                        "responses scoring this at the frame's own scale (README: Detection); 0: the whole "
                        "enlarged pass")


def _pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    from handler.detector import DetectorConfig
    from handler.pipeline import PipelineConfig

    detector = DetectorConfig(backend=args.detector, min_face=args.min_face, max_side=args.max_side,
                              mtcnn_thresholds=tuple(args.mtcnn_thresholds),
                              candidate_threshold=args.candidate_threshold, enhance_dark=args.enhance_dark,
                              border_pad=args.border_pad, native_pass=args.native_pass,
                              guide_threshold=args.guide_threshold)
    return PipelineConfig(model_dir=args.model_dir, detector=detector, embedder=args.embedder, device=args.device)


def _add_video_options(parser: argparse.ArgumentParser) -> None:
    from faceblur.video import CODECS, PRESETS, EncodeConfig

    d = _defaults(EncodeConfig)
    g = parser.add_argument_group("video output (faceblur/video/)")
    g.add_argument("--codec", choices=CODECS, default=d["codec"],
                   help="auto: H.264 yuv420p for 8-bit input, HEVC 10-bit for deeper input, VP9 for .webm")
    g.add_argument("--crf", type=_number(int, 0, 51), default=d["crf"],
                   help="constant rate factor: lower is better quality and larger files")
    g.add_argument("--preset", choices=PRESETS, default=d["preset"], help="x264/x265 speed preset")
    g.add_argument("--keep-location", action="store_true",
                   help="keep GPS location metadata (removed by default)")


def _encode_config(args: argparse.Namespace) -> EncodeConfig:
    from faceblur.video import EncodeConfig

    return EncodeConfig(codec=args.codec, crf=args.crf, preset=args.preset, keep_location=args.keep_location)


def _add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("general")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log detail (-v: every stage and the traceback of an error; -vv: debug)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``face-blur run: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from postprocess.options import HelpFormatter

    fmt = HelpFormatter
    parser = _Parser(
        prog="face-blur", formatter_class=fmt,
        description="Anonymise chosen faces in video: detect, follow each person, decide, blur.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", formatter_class=fmt, help="anonymise a video, a folder of frames or a photo",
                         description="Detect faces in-process, decide per person, blur, and write a video with "
                                     "the same timing, size and audio (or frames with the same names, or a photo).")
    run.add_argument("input", type=Path, help="video (.mp4 .mov .mkv .webm), folder of frames, or photo (.jpg .png)")
    run.add_argument("-o", "--output", type=Path, default=None,
                     help="output path (default: <input stem>_anonymized<ext> beside the input)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output")
    run.add_argument("--ref", action="append", type=Path, default=[], metavar="PHOTO_OR_FOLDER",
                     help="reference person for modes unknown/known: a photo (the person is named by its stem) "
                          "or a folder of photos of one person (named by the folder); repeatable (default: none)")
    run.add_argument("--plan", type=Path, default=None, dest="plan_path",
                     help="also write the plan (what was blurred and why) to this JSON file (default: not kept)")
    run.add_argument("--workers", type=_number(int, 1, 64), default=2,
                     help="analysis and blur threads (decoding and encoding run on their own threads)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the frames an interrupted run over the same input analysed (refused "
                          "when the detection/embedding options differ, naming them)")
    run.add_argument("--allow-truncated", action="store_true",
                     help="a video cut short (fewer frames than its container declares): anonymise the frames "
                          "there instead of stopping; the summary says so")
    _add_plan_options(run)
    _add_blur_options(run)
    _add_inference_options(run)
    add_analysis_options(run)
    _add_video_options(run)
    _add_common(run)
    run.set_defaults(func=_cmd_run)

    render = sub.add_parser("render", formatter_class=fmt, help="re-render from a saved plan (no detection)",
                            description="Blur what a plan (face-blur run --plan, possibly edited by hand) says, "
                                        "without detecting again.")
    render.add_argument("input", type=Path, help="the same video, frames folder or photo the plan was made for")
    render.add_argument("--plan", type=Path, required=True, dest="plan_path", help="plan JSON")
    render.add_argument("-o", "--output", type=Path, default=None,
                        help="output path (default: <input stem>_anonymized<ext>)")
    render.add_argument("--overwrite", action="store_true", help="replace an existing output")
    render.add_argument("--workers", type=_number(int, 1, 64), default=2, help="blur threads")
    render.add_argument("--allow-truncated", action="store_true",
                        help="render a video cut short (fewer frames than its container declares)")
    render.add_argument("--draw-boxes", action="store_true",
                        help="a debug copy instead: every box of the plan drawn, one colour per decision, with the "
                             "detector score, and nothing blurred (default output <input stem>_boxes<ext>)")
    _add_blur_options(render)
    _add_video_options(render)
    _add_common(render)
    render.set_defaults(func=_cmd_render)

    _add_review_parser(sub, fmt)

    serve = sub.add_parser("serve", help="start the inference server (127.0.0.1:8080 by default)",
                           description="The inference server (handler/serving/serve.py); its options follow: "
                                       "face-blur serve --help.", add_help=False)
    serve.add_argument("args", nargs=argparse.REMAINDER, help="options of handler.serve")
    serve.set_defaults(func=_cmd_serve, verbose=0)

    transform = sub.add_parser("transform", formatter_class=fmt,
                               help="send every object under a prefix to an endpoint (Batch Transform stand-in)",
                               description="What a SageMaker Batch Transform job does (SplitType None, one object "
                                           "per request, <key>.out results), against any endpoint.")
    transform.add_argument("--endpoint", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    transform.add_argument("--input", required=True, dest="input_uri", help="s3://bucket/frames/ or a folder")
    transform.add_argument("--output", required=True, dest="output_uri", help="s3://bucket/results/ or a folder")
    transform.add_argument("--concurrency", type=_number(int, 1, 256), default=4,
                           help="requests in flight (MaxConcurrentTransforms)")
    transform.add_argument("--content-type", default="application/x-image", help="request Content-Type")
    transform.add_argument("--max-payload-mb", type=_number(int, 1, 100), default=6,
                           help="larger objects are not sent and fail (MaxPayloadInMB)")
    transform.add_argument("--max-retries", type=_number(int, 0, 10), default=3,
                           help="retries of a 5xx/429/timeout/connection error (InvocationsMaxRetries)")
    transform.add_argument("--timeout", type=_number(float, 1, 3600), default=600.0,
                           help="seconds to wait for one answer (InvocationsTimeoutInSeconds)")
    _add_common(transform)
    transform.set_defaults(func=_cmd_transform)

    from postprocess.options import add_io_arguments, add_plan_arguments, add_render_arguments, add_run_arguments

    post = sub.add_parser("postprocess", formatter_class=fmt,
                          help="decide and blur from frames + per-frame results (local folders or s3://)",
                          description="The post-processing stage (postprocess/, as python -m postprocess): "
                                      "plan, blurred frames, face-blur-plan.json and face-blur-complete.json "
                                      "under OUTPUT. Prints the run summary as JSON.")
    add_io_arguments(post)
    add_plan_arguments(post)
    add_render_arguments(post)
    add_run_arguments(post)
    _add_common(post)
    post.set_defaults(func=_cmd_postprocess)
    return parser


# ---------------------------------------------------------------------------------------------- commands


class UsageError(ValueError):
    """Options that parse one by one but do not fit together (exit status 2)."""


@contextlib.contextmanager
def _usage() -> Iterator[None]:
    """Config validation errors (ValueError naming the option) become usage errors."""
    try:
        yield
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from faceblur.local import LocalConfig, default_output, run

    if args.mode in ("unknown", "known") and not args.ref:
        raise UsageError(f"--mode {args.mode} needs at least one --ref photo or folder of the people to "
                         f"{'keep' if args.mode == 'unknown' else 'blur'}")
    with _usage():
        config = LocalConfig(pipeline=_pipeline_config(args), plan=_plan_config(args), render=_render_config(args),
                             encode=_encode_config(args), references=tuple(args.ref), workers=args.workers,
                             progress=args.progress, overwrite=args.overwrite, plan_path=args.plan_path,
                             analysis=args.analysis, adaptive=adaptive_config(args),
                             allow_truncated=args.allow_truncated, resume=args.resume)
    output = args.output or default_output(args.input)
    summary = run(args.input, output, config)
    for line in summary.lines():
        log.info("%s", line)
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    from faceblur.local import default_output, render

    output = args.output or default_output(args.input, "_boxes" if args.draw_boxes else "_anonymized")
    with _usage():
        render_config, encode_config = _render_config(args), _encode_config(args)
    summary = render(args.input, args.plan_path, output, render_config, encode_config,
                     args.workers, args.progress, args.overwrite, draw_boxes=args.draw_boxes,
                     allow_truncated=args.allow_truncated)
    for line in summary.lines():
        log.info("%s", line)
    return EXIT_OK


def _add_review_parser(sub, fmt) -> None:
    review = sub.add_parser("review", formatter_class=fmt,
                            help="check and edit a plan on a local web page, then render",
                            description="A web page on this machine with one card per person: flip who is blurred, "
                                        "check any frame, add a missed face, save the edited plan beside the "
                                        "original and render it (faceblur/review/).")
    review.add_argument("input", help="the video, frames folder, photo or s3:// frames prefix the plan was made for")
    review.add_argument("--plan", required=True, dest="plan_path", help="plan JSON (a path or s3://)")
    review.add_argument("--host", default="127.0.0.1", help="listen address (anything but loopback exposes the page)")
    review.add_argument("--port", type=_number(int, 0, 65535), default=8765, help="listen port (0: any free one)")
    review.add_argument("--open", action="store_true", dest="open_browser", help="open the page in a browser")
    review.add_argument("-o", "--output", default=None,
                        help="render output (default: <input stem>_reviewed<ext> beside the input; on S3 "
                             "<plan folder>/reviewed/); must be in the input's or the plan's folder")
    review.add_argument("--workers", type=_number(int, 1, 64), default=2, help="blur threads of a render")
    _add_blur_options(review)
    _add_video_options(review)
    review.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    review.set_defaults(func=_cmd_review, progress=False)


def _review_only_parser() -> argparse.ArgumentParser:
    from postprocess.options import HelpFormatter

    parser = _Parser(prog="face-blur", formatter_class=HelpFormatter)
    _add_review_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True), HelpFormatter)
    return parser


def _cmd_review(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from faceblur.review.app import serve
    from faceblur.review.session import ReviewSession
    from postprocess.blur import RenderConfig

    with _usage():
        render_config, encode_config = _render_config(args), _encode_config(args)
    # no blur option given: the session uses those of the run that made the plan where it can find them
    given = render_config.to_dict() if render_config != RenderConfig() else {}
    session = ReviewSession(args.input, args.plan_path, given, asdict(encode_config), output=args.output,
                            workers=args.workers)
    serve(session, args.host, args.port, args.open_browser,
          on_ready=lambda url: print(f"face-blur review: {url} (Ctrl-C to stop)", flush=True))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from handler.serving.serve import main as serve_main

    return serve_main(list(args.args))


def _cmd_transform(args: argparse.Namespace) -> int:
    from faceblur.transform import TransformConfig, run_transform

    with _usage():
        config = TransformConfig(endpoint=args.endpoint, input_uri=args.input_uri, output_uri=args.output_uri,
                                 concurrency=args.concurrency, content_type=args.content_type,
                                 max_payload_mb=args.max_payload_mb, max_retries=args.max_retries,
                                 timeout_s=args.timeout)
    summary = run_transform(config, progress=args.progress)
    log.info("transform: %d objects, %d retries, %.1f s", summary.objects, summary.retries, summary.seconds)
    return EXIT_OK


def _cmd_postprocess(args: argparse.Namespace) -> int:
    import json

    from faceblur.progress import progress_bar
    from postprocess.options import run_config_from_args
    from postprocess.run import run

    with _usage():
        config = run_config_from_args(args)
    with progress_bar(None, "blur+write", args.progress) as bar:  # the frame count is known only inside run
        summary = run(args.frames, args.results, args.output, config, args.references, progress=bar.update)
    print(json.dumps(summary.to_dict()))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- errors


def _one_line(exc: BaseException) -> str:
    """The user-facing line for an error."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or name
    if name == "NoCredentialsError" or "Unable to locate credentials" in text:
        return ("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                f"({text})")
    if name in ("EndpointConnectionError", "ConnectTimeoutError") or "Could not connect to the endpoint" in text:
        return f"S3 endpoint not reachable: {text}"
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError)) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return text


def _expected(exc: BaseException) -> bool:
    """Errors a user can meet (one line, no traceback) as opposed to bugs (one line + 'run with -v')."""
    if isinstance(exc, (OSError, ValueError, RuntimeError)):
        return True
    return type(exc).__module__.startswith(("botocore", "boto3", "av", "urllib3"))


def _setup_logging(verbose: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_face_blur", False)]:
        root.removeHandler(old)  # main() may run several times in one process, each with its own stderr
    handler = logging.StreamHandler(sys.stderr)
    handler._face_blur = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("faceblur").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failed, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # every option belongs to handler.serve (argparse cannot pass them on)
        args = argparse.Namespace(command="serve", args=argv[1:], func=_cmd_serve)
        return _dispatch(args, verbose=1 if {"-v", "--verbose"} & set(argv) else 0)
    # review: only its own options, so opening the page does not import the planning code (SciPy)
    parser = _review_only_parser() if argv[:1] == ["review"] else build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed its message
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        return _dispatch(args, args.verbose)
    finally:  # main() may be called in-process (tests, notebooks): leave no handler on a stale stderr
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_face_blur", False)]:
            root.removeHandler(handler)


def _dispatch(args: argparse.Namespace, verbose: int) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("face-blur: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # a subcommand's own argparse
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except UsageError as exc:
        print(f"face-blur {args.command}: error: {_one_line(exc)} (see face-blur {args.command} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if verbose:
            log.error("traceback:", exc_info=exc)
        hint = "" if _expected(exc) or verbose else " (a bug? run with -v for the traceback)"
        print(f"face-blur: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
