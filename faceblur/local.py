"""The whole job on one machine (``face-blur run`` and ``face-blur render``).

Input kinds: a video file (:data:`faceblur.video.VIDEO_SUFFIXES`), a folder of frames (numbered
``.png``/``.jpg`` files, read as ``postprocess.reading.list_frames`` does) or one photo
(``.jpg``/``.jpeg``/``.png``).

``run``: models load once (``handler.pipeline.load_pipeline``); reference photos are checked first
(a reference with no face or several faces stops the run before any video is decoded); pass 1
decodes and analyses every frame, the results go to a temporary file (:class:`ResultStore`, so
memory does not grow with the video); ``postprocess.plan.make_plan`` decides; pass 2 decodes again,
blurs (``postprocess.blur.Blurrer``) and encodes (``faceblur.video.rewrite_video``). In both passes
decoding runs on its own thread ahead of the ``workers`` analysis / blur threads, through bounded
queues, so the slowest stage sets the pace. Frame numbers start at 1 (the numbering of
``extract_frames`` and of the AWS path, so ``--pick`` and plans mean the same frames everywhere).

``render``: pass 2 only, from a saved (possibly hand-edited) plan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract import FrameResult
from faceblur.progress import progress_bar
from faceblur.video import VIDEO_SUFFIXES, EncodeConfig, VideoError, iter_frames, probe, rewrite_video
from postprocess.results import ResultStore
from postprocess.summary import RunSummary

if TYPE_CHECKING:  # imported where used: loading the models or scipy only when a command needs them
    from tqdm import tqdm

    from faceblur.review.overlay import Overlay
    from handler.pipeline import FacePipeline, PipelineConfig
    from postprocess.blur import Blurrer, RenderConfig
    from postprocess.config import PlanConfig
    from postprocess.plan_format import Plan
    from postprocess.reading import FrameRef

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
REFERENCE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_IMAGE_BYTES = 1 << 30  # a local photo may be far over SageMaker's 6 MB request limit


class InputError(RuntimeError):
    """An input the command cannot use; the message names the file and what is wrong with it."""


# ---------------------------------------------------------------------------------------------- inputs


def input_kind(path: Path) -> str:
    """``video``, ``frames`` or ``photo``; raises :class:`InputError` for anything else."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return "photo"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise InputError(f"{path}: unsupported input type {suffix or '(no extension)'!r}; give a video "
                     f"({', '.join(VIDEO_SUFFIXES)}), a photo ({', '.join(PHOTO_SUFFIXES)}) or a folder of frames")


def default_output(path: Path, tag: str = "_anonymized") -> Path:
    """``<stem>_anonymized<ext>`` beside the input (a folder: ``<name>_anonymized``)."""
    if path.is_dir():
        return path.with_name(path.name.rstrip("/") + tag)
    return path.with_name(f"{path.stem}{tag}{path.suffix}")


def read_image(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its upright RGB pixels, decoded exactly as the inference server does."""
    from handler.serving.decode import DecodeLimits, decode_image
    from handler.serving.errors import RequestError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data, decode_image(data, "application/x-image", DecodeLimits(max_bytes=MAX_IMAGE_BYTES))
    except RequestError as exc:
        raise InputError(f"{path}: not a usable image ({exc})") from None


# ---------------------------------------------------------------------------------------------- results


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LocalConfig:
    """Everything ``face-blur run`` needs; each stage's own config inside (README "face-blur run")."""

    pipeline: PipelineConfig | None = None  # None: its defaults
    plan: PlanConfig | None = None
    render: RenderConfig | None = None
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    references: tuple[Path, ...] = ()
    workers: int = 2
    progress: bool = True
    overwrite: bool = False
    plan_path: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be 1..64, got {self.workers}")


# ---------------------------------------------------------------------------------------------- stages


def load_references(pipeline: FacePipeline, paths: tuple[Path, ...]) -> dict[str, dict[str, FrameResult]]:
    """``--ref`` paths -> {person: {photo name: result}}; a photo is one person named by its stem, a
    folder one person (named by the folder) with several photos. Each photo must show one face."""
    people: dict[str, dict[str, FrameResult]] = {}
    for path in paths:
        if not path.exists():
            raise InputError(f"reference {path}: no such file or folder")
        if path.is_dir():
            person = path.name
            photos = sorted(p for p in path.iterdir() if p.suffix.lower() in REFERENCE_SUFFIXES)
            if not photos:
                raise InputError(f"reference folder {path} holds no photos ({', '.join(REFERENCE_SUFFIXES)})")
        else:
            person, photos = path.stem, [path]
        for photo in photos:
            _, image = read_image(photo)
            result = pipeline.analyse(image, 0)
            n = len(result.faces)
            if n != 1:
                found = "no face" if n == 0 else f"{n} faces"
                raise InputError(f"reference photo {photo}: {found} found; it must show exactly one face "
                                 f"(of {person!r})")
            people.setdefault(person, {})[photo.name] = result
    for person, photos in people.items():
        log.info("reference %s: %d photo(s)", person, len(photos))
    return people


def analyse_video(pipeline: FacePipeline, path: Path, store: ResultStore, workers: int, bar: tqdm) -> int:
    """Pass 1: decode (background thread) and analyse (``workers`` threads) every frame."""
    from postprocess.parallel import bounded_map

    count = 0
    for frame, result in bounded_map(lambda f: pipeline.analyse(f.image, f.index), iter_frames(path),
                                     workers, window=workers * 2):
        store.add(frame.index, result)
        count += 1
        bar.update(1)
    if count == 0:
        raise VideoError(f"{path}: no frames decoded")
    return count


def _frame_refs(folder: Path) -> list[FrameRef]:
    from postprocess.reading import FrameListError, list_frames
    from postprocess.storage import Store

    try:
        return list_frames(Store(), str(folder))
    except FrameListError as exc:
        raise InputError(f"{folder}: {exc}") from None


def analyse_frames(pipeline: FacePipeline, folder: Path, refs: list[FrameRef], store: ResultStore, workers: int,
                   bar: tqdm) -> None:
    from postprocess.parallel import bounded_map

    def one(ref: FrameRef) -> FrameResult:
        _, image = read_image(folder / ref.key)
        return pipeline.analyse(image, ref.number)

    for ref, result in bounded_map(one, refs, workers, window=workers * 2):
        store.add(ref.number, result)
        bar.update(1)


def _blur_function(plan: Plan, blurrer: Blurrer, overlay: Overlay | None = None
                   ) -> Callable[[int, np.ndarray], bool]:
    if overlay is not None:  # --draw-boxes: the original with every box (faceblur/review/overlay.py)
        from faceblur.review.overlay import draw

        def boxes(index: int, rgb: np.ndarray) -> bool:
            entries = overlay.at(index)
            if entries:
                rgb[...] = draw(rgb, entries)
            return bool(entries)

        return boxes

    def process(index: int, rgb: np.ndarray) -> bool:
        if plan.is_full_frame(index):
            blurrer.blur_whole(rgb)
            return True
        boxes = plan.boxes(index)
        if len(boxes):
            blurrer.blur_in_place(rgb, boxes)
            return True
        return False

    return process


@contextlib.contextmanager
def _output_folder(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``path``, renamed to it on success (an old one replaced)."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _atomic_file(path: Path, data: bytes, overwrite: bool) -> None:
    from faceblur.video import atomic_output

    with atomic_output(path, overwrite) as tmp:
        tmp.write_bytes(data)


def _ticker(bar: tqdm, on_frames: Callable[[int], None] | None) -> Callable[[int], None]:
    if on_frames is None:
        return bar.update

    def tick(n: int = 1) -> None:
        bar.update(n)
        on_frames(n)

    return tick


def render_input(kind: str, source: Path, output: Path, plan: Plan, render_config: RenderConfig,
                 encode: EncodeConfig, workers: int, progress: bool, overwrite: bool, total: int | None = None,
                 overlay: Overlay | None = None,
                 on_frames: Callable[[int], None] | None = None) -> int:
    """Pass 2: blur what ``plan`` says in ``source`` and write ``output``; returns frames written.
    ``overlay`` (a ``faceblur.review.overlay.Overlay``): draw every box instead of blurring (a
    debug copy); ``on_frames(n)``: called as frames are written (the review page's progress bar)."""
    from postprocess.blur import Blurrer
    from postprocess.parallel import bounded_map
    from postprocess.render import RenderError, render_image

    blurrer = Blurrer(render_config)
    process = _blur_function(plan, blurrer, overlay)
    if kind == "video":
        info = probe(source)
        _check_size(plan, info.width, info.height, source)
        with progress_bar(total or info.estimated_frames, "blur+encode", progress) as bar:
            done = rewrite_video(source, output, process, encode, workers,
                                 progress=_ticker(bar, on_frames), overwrite=overwrite)
        return done.frame_count
    if kind == "photo":
        if output.suffix.lower() != source.suffix.lower():
            raise InputError(f"{output}: a photo is written in its own format ({source.suffix}); "
                             "give an output name with that extension")
        if overlay is not None:
            _, rgb = read_image(source)  # (not faceblur.review.frames.decode: that module imports this one)
            process(1, rgb)
            _atomic_file(output, _encode_like(rgb, source.name), overwrite)
            return 1
        try:  # decoded once, by render_image, which also checks the size against the plan's
            body = render_image(source.read_bytes(), source.name, plan.boxes(1), plan.is_full_frame(1), blurrer,
                                (plan.width, plan.height) if plan.width else None)
        except RenderError as exc:
            raise InputError(str(exc)) from None
        _atomic_file(output, body, overwrite)
        return 1
    refs = _frame_refs(source)

    def one(ref: FrameRef) -> bytes:
        if overlay is not None:
            _, rgb = read_image(source / ref.key)
            process(ref.number, rgb)
            return _encode_like(rgb, ref.key)
        data = (source / ref.key).read_bytes()
        try:
            return render_image(data, ref.key, plan.boxes(ref.number), plan.is_full_frame(ref.number), blurrer,
                                (plan.width, plan.height) if plan.width else None)
        except RenderError as exc:
            raise InputError(str(exc)) from None

    with _output_folder(output, overwrite) as tmp, progress_bar(len(refs), "blur", progress) as bar:
        tick = _ticker(bar, on_frames)
        for ref, body in bounded_map(one, refs, workers, window=workers * 2):
            target = tmp / ref.key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            tick(1)
    return len(refs)


def _encode_like(rgb: np.ndarray, name: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG" if name.lower().endswith(".png") else "JPEG", quality=95)
    return buf.getvalue()


def _check_size(plan: Plan, width: int, height: int, source: Path) -> None:
    if plan.width and (plan.width, plan.height) != (width, height):
        raise InputError(f"{source} is {width}x{height} but the plan was made for {plan.width}x{plan.height}")


# ---------------------------------------------------------------------------------------------- commands


def run(source: Path, output: Path, config: LocalConfig) -> RunSummary:
    """``face-blur run``: detect, decide, blur, write (see the module docstring)."""
    from handler.pipeline import PipelineConfig, load_pipeline
    from postprocess.blur import RenderConfig
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    kind = input_kind(source)
    plan_config = config.plan or PlanConfig()
    render_config = config.render or RenderConfig()
    if plan_config.mode in ("unknown", "known") and not config.references:
        raise InputError(f"mode {plan_config.mode!r} needs at least one --ref photo or folder")
    if output.exists() and not config.overwrite:
        raise FileExistsError(f"{output}: output exists (use --overwrite to replace it)")
    if output.resolve() == source.resolve():
        raise InputError(f"{output}: the output would replace the input")
    if kind == "video" and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{output}: the output of a video must be {', '.join(VIDEO_SUFFIXES)}")
    summary = RunSummary(output=str(output), kind=kind, input=str(source))
    clock = time.perf_counter()
    info = probe(source) if kind == "video" else None  # a file that is no video fails before models load

    pipeline_config = config.pipeline or PipelineConfig()
    pipeline = load_pipeline(pipeline_config)
    summary.detector = pipeline.detector.name
    summary.embedder = pipeline.embedder.name if pipeline.embedder else ""
    note = ""
    if summary.embedder.startswith("dlib") and pipeline_config.embedder == "auto":
        note = (f" (no ArcFace/MobileFaceNet model file in {pipeline_config.resolved_model_dir()}: dlib is "
                "slower and less accurate; see model/ to fetch one)")
    log.info("detector %s, embedder %s%s", summary.detector, summary.embedder or "none", note)
    references = load_references(pipeline, config.references) if config.references else None
    summary.stages["load"] = time.perf_counter() - clock

    clock = time.perf_counter()
    store = ResultStore()
    try:
        if kind == "video":
            assert info is not None
            with progress_bar(info.estimated_frames, "decode+detect", config.progress) as bar:
                summary.frames = analyse_video(pipeline, source, store, config.workers, bar)
        elif kind == "photo":
            _, image = read_image(source)
            store.add(1, pipeline.analyse(image, 1))
            summary.frames = 1
        else:
            refs = _frame_refs(source)
            with progress_bar(len(refs), "detect", config.progress) as bar:
                analyse_frames(pipeline, source, refs, store, config.workers, bar)
            summary.frames = len(refs)
        summary.faces = store.faces
        summary.stages["detect"] = time.perf_counter() - clock

        clock = time.perf_counter()
        plan = make_plan(store, plan_config, references)
    finally:
        store.close()
    summary.plan = plan.summary
    if config.plan_path is not None:
        _atomic_file(config.plan_path, plan.dumps(indent=1), overwrite=True)
        log.info("plan written to %s", config.plan_path)
    summary.stages["plan"] = time.perf_counter() - clock

    clock = time.perf_counter()
    render_input(kind, source, output, plan, render_config, config.encode, config.workers, config.progress,
                 config.overwrite, total=summary.frames)
    summary.stages["blur+write"] = time.perf_counter() - clock
    return summary


def render(source: Path, plan_path: Path, output: Path, render_config: RenderConfig,
           encode: EncodeConfig | None = None,
           workers: int = 2, progress: bool = True, overwrite: bool = False, draw_boxes: bool = False,
           on_frames: Callable[[int], None] | None = None) -> RunSummary:
    """``face-blur render``: re-render from a saved plan, without detecting again (``draw_boxes``:
    a debug copy with every box drawn and nothing blurred)."""
    import json

    from postprocess.plan_format import Plan

    kind = input_kind(source)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: output exists (use --overwrite to replace it)")
    if output.resolve() == source.resolve():
        raise InputError(f"{output}: the output would replace the input")
    try:
        body = plan_path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{plan_path}: no such plan file") from None
    plan = Plan.loads(body)
    overlay = None
    if draw_boxes:
        from faceblur.review.overlay import Overlay

        overlay = Overlay(json.loads(body))
        log.warning("--draw-boxes: %s shows every face clear with its box; it is for checking, not publishing",
                    output)
    summary = RunSummary(output=str(output), kind=kind, input=str(source), plan=plan.summary,
                         detector=plan.detector, embedder=plan.embedder)
    clock = time.perf_counter()
    summary.frames = render_input(kind, source, output, plan, render_config, encode or EncodeConfig(), workers,
                                  progress, overwrite, overlay=overlay, on_frames=on_frames)
    summary.faces = int(plan.summary.get("faces", 0))
    summary.stages["blur+write"] = time.perf_counter() - clock
    return summary
