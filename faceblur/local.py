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

With ``analysis="adaptive"`` (the default for videos), pass 1 is ``faceblur.adaptive``: every frame
gets its signature and a cheap detection pass, only the frames ``faceblur.schedule`` picks get full
analysis, the others go to the store marked not analysed (covered by the plan's sequences).

``render``: pass 2 only, from a saved (possibly hand-edited) plan.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract import FrameResult
from faceblur.analyse import (
    Recorded,
    adaptive_pipeline,
    analyse_adaptive,
    analyse_frames,
    analyse_video,
    frame_refs,
    open_journal,
)
from faceblur.inputs import MAX_IMAGE_BYTES, PHOTO_SUFFIXES, InputError, default_output, input_kind, read_image  # noqa: F401 (re-exported)
from faceblur.preflight import REFERENCE_SUFFIXES
from faceblur.progress import progress_bar
from faceblur.truncation import FrameTally, check_count
from faceblur.video import VIDEO_SUFFIXES, EncodeConfig, VideoInfo, probe, rewrite_video
from postprocess.results import ResultStore
from postprocess.summary import RunSummary
from postprocess.tempfiles import atomic_output

if TYPE_CHECKING:  # imported where used: loading the models or scipy only when a command needs them
    from tqdm import tqdm

    from faceblur.adaptive import AdaptiveConfig
    from faceblur.review.overlay import Overlay
    from handler.pipeline import FacePipeline, PipelineConfig
    from postprocess.blur import Blurrer, RenderConfig
    from postprocess.config import PlanConfig
    from postprocess.plan_format import Plan
    from postprocess.reading import FrameRef

log = logging.getLogger(__name__)

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
    analysis: str = "adaptive"  # adaptive | every (faceblur/adaptive.py; videos only)
    adaptive: AdaptiveConfig | None = None  # None: its defaults
    allow_truncated: bool = False  # a cut-short video: go on with the frames there (faceblur/truncation.py)
    resume: bool = False  # continue from an interrupted run's analysed frames (faceblur/resume.py)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be 1..64, got {self.workers}")
        if self.analysis not in ("adaptive", "every"):
            raise ValueError(f"analysis must be adaptive or every, got {self.analysis!r}")


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
        from postprocess.identity import photo_faces  # here: it loads SciPy, which the review page avoids

        for photo in photos:
            _, image = read_image(photo)
            result = pipeline.analyse(image, 0)
            n = len(photo_faces(result))  # candidates are not faces in a photo (issue 14)
            if n != 1:
                found = "no face" if n == 0 else f"{n} faces"
                raise InputError(f"reference photo {photo}: {found} found; it must show exactly one face "
                                 f"(of {person!r})")
            people.setdefault(person, {})[photo.name] = result
    for person, photos in people.items():
        log.info("reference %s: %d photo(s)", person, len(photos))
    return people


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


def _atomic_file(path: Path, data: bytes, overwrite: bool) -> None:
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
                 on_frames: Callable[[int], None] | None = None, info: VideoInfo | None = None) -> int:
    """Pass 2: blur what ``plan`` says in ``source`` and write ``output``; returns frames written.
    ``overlay`` (a ``faceblur.review.overlay.Overlay``): draw every box instead of blurring (a
    debug copy); ``on_frames(n)``: called as frames are written (the review page's progress bar);
    ``info``: the video's probe when the caller has it (the header is then not read again)."""
    from postprocess.blur import Blurrer
    from postprocess.parallel import bounded_map
    from postprocess.render import RenderError, render_image

    blurrer = Blurrer(render_config)
    process = _blur_function(plan, blurrer, overlay)
    if kind == "video":
        info = info or probe(source)
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
    refs = frame_refs(source)

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

    with atomic_output(output, overwrite, folder=True) as tmp, progress_bar(len(refs), "blur", progress) as bar:
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


def _preflight(kind: str, source: Path, output: Path, references: tuple[Path, ...], plan_path: Path | None,
               overwrite: bool) -> None:
    """What can fail later, checked before models load or a frame is decoded (faceblur/preflight.py)."""
    from faceblur import preflight

    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: output exists (use --overwrite to replace it)")
    preflight.check_locations(source, output, references, plan_path)
    if kind == "video" and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{output}: the output of a video must be {', '.join(VIDEO_SUFFIXES)}")
    preflight.check_references(references)
    preflight.check_writable(output)
    if plan_path is not None:
        preflight.check_writable(plan_path, "plan file")
    preflight.check_space(output, preflight.input_bytes(source))


def _check_video(source: Path, info, picks, allow_truncated: bool) -> None:
    from faceblur.preflight import check_picks
    from faceblur.truncation import check_end, declared_frames

    if not allow_truncated:
        check_end(source, info)
    declared, slack = declared_frames(info)
    if declared:
        check_picks(picks, declared, (info.width, info.height), str(source), slack=0 if info.frame_count else slack)


def run(source: Path, output: Path, config: LocalConfig) -> RunSummary:
    """``face-blur run``: detect, decide, blur, write (see the module docstring)."""
    from faceblur.malloc import map_large_blocks
    from handler.pipeline import PipelineConfig, load_pipeline
    from postprocess.blur import RenderConfig
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    map_large_blocks()  # a smaller peak, the same CPU (faceblur/malloc.py)
    kind = input_kind(source)
    plan_config = config.plan or PlanConfig()
    render_config = config.render or RenderConfig()
    if plan_config.mode in ("unknown", "known") and not config.references:
        raise InputError(f"mode {plan_config.mode!r} needs at least one --ref photo or folder")
    _preflight(kind, source, output, config.references, config.plan_path, config.overwrite)
    summary = RunSummary(output=str(output), kind=kind, input=str(source))
    clock = time.perf_counter()
    info = probe(source) if kind == "video" else None  # a file that is no video fails before models load
    refs = frame_refs(source) if kind == "frames" else None
    if info is not None:
        _check_video(source, info, plan_config.picks, config.allow_truncated)
    elif refs is not None:
        from faceblur.preflight import check_picks

        check_picks(plan_config.picks, {ref.number for ref in refs}, None, str(source))
    else:
        from faceblur.preflight import check_picks

        check_picks(plan_config.picks, 1, None, f"the photo {source}")

    pipeline_config = config.pipeline or PipelineConfig()
    if kind == "video":  # one frame size: CenterFace reuses its memory between passes (a quarter less CPU)
        pipeline_config = replace(pipeline_config, fixed_size=True)
    adaptive = kind == "video" and config.analysis == "adaptive"
    if adaptive:
        pipeline_config = adaptive_pipeline(pipeline_config, plan_config.mode)
    pipeline = load_pipeline(pipeline_config)
    summary.detector = pipeline.detector.name
    summary.embedder = pipeline.embedder.name if pipeline.embedder else ""
    note = ""
    if summary.embedder.startswith("dlib") and pipeline_config.embedder == "auto":
        where = pipeline_config.resolved_model_dir()
        note = (f" (no ArcFace/MobileFaceNet model file in {where}: dlib cannot tell people apart on real "
                f"footage, so modes unknown/known/select blur every face; python -m model.fetch --dest {where} "
                "mobilefacenet)")
    log.info("detector %s, embedder %s%s", summary.detector, summary.embedder or "none", note)
    references = load_references(pipeline, config.references) if config.references else None
    summary.stages["load"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if adaptive and config.resume:  # the scheduler picks frames from what it found: it starts again
        summary.notes.append("--resume continues --analysis every runs and frame folders; adaptive analysis "
                             "started again")
    journal = open_journal(kind, source, refs, pipeline_config, summary, config.resume and not adaptive,
                       config.analysis)
    store = ResultStore()
    done = False
    try:
        resumed = journal.resumed if journal is not None else {}
        for number, result in resumed.items():
            store.add(number, result)
        if resumed:
            summary.notes.append(f"resumed: {len(resumed)} frames analysed by an interrupted run were reused")
        recorded = Recorded(store, journal)
        if adaptive:
            seen = FrameTally()
            with progress_bar(info.estimated_frames if info else None, "decode+detect", config.progress) as bar:
                summary.analysis = analyse_adaptive(pipeline, pipeline_config, plan_config, config, source,
                                                    recorded, bar, seen)
            summary.frames = summary.analysis.frames
            assert info is not None
            truncated = check_count(source, info, seen.decoded, seen.end, config.allow_truncated)
            if truncated:
                summary.notes.append(truncated)
        elif kind == "video":
            assert info is not None
            tally = FrameTally()
            with progress_bar(info.estimated_frames, "decode+detect", config.progress) as bar:
                summary.frames = analyse_video(pipeline, source, recorded, config.workers, bar, resumed, tally)
            truncated = check_count(source, info, summary.frames, tally.end, config.allow_truncated)
            if truncated:
                summary.notes.append(truncated)
        elif kind == "photo":
            _, image = read_image(source)
            store.add(1, pipeline.analyse(image, 1))
            summary.frames = 1
        else:
            assert refs is not None
            with progress_bar(len(refs), "detect", config.progress) as bar:
                analyse_frames(pipeline, source, refs, recorded, config.workers, bar, skip=resumed)
            summary.frames = len(refs)
        summary.faces = store.faces
        summary.stages["detect"] = time.perf_counter() - clock
        # the models' memory (CenterFace's kept blocks on a video) goes back before the encoder's grows;
        # the pipeline sits in reference cycles, so only a collection frees it (1080p: 1.1 GiB peak without)
        del pipeline
        gc.collect()

        clock = time.perf_counter()
        plan = make_plan(store, plan_config, references)
        summary.plan = plan.summary
        if config.plan_path is not None:
            _atomic_file(config.plan_path, plan.dumps(indent=1), overwrite=True)
            log.info("plan written to %s", config.plan_path)
        summary.stages["plan"] = time.perf_counter() - clock

        clock = time.perf_counter()
        render_input(kind, source, output, plan, render_config, config.encode, config.workers, config.progress,
                     config.overwrite, total=summary.frames, info=info)
        summary.stages["blur+write"] = time.perf_counter() - clock
        done = True
    finally:
        store.close()
        if journal is not None:  # kept after a failure or an interrupt: --resume continues from it
            journal.close(keep=not done)
    return summary


def render(source: Path, plan_path: Path, output: Path, render_config: RenderConfig,
           encode: EncodeConfig | None = None,
           workers: int = 2, progress: bool = True, overwrite: bool = False, draw_boxes: bool = False,
           on_frames: Callable[[int], None] | None = None, allow_truncated: bool = False) -> RunSummary:
    """``face-blur render``: re-render from a saved plan, without detecting again (``draw_boxes``:
    a debug copy with every box drawn and nothing blurred)."""
    import json

    from postprocess.locations import check_output
    from postprocess.plan_format import Plan

    kind = input_kind(source)
    _preflight(kind, source, output, (), None, overwrite)
    check_output(output, {"plan": plan_path})
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
    info = probe(source) if kind == "video" else None
    if info is not None and not allow_truncated:
        from faceblur.truncation import check_end

        check_end(source, info)
    summary = RunSummary(output=str(output), kind=kind, input=str(source), plan=plan.summary,
                         detector=plan.detector, embedder=plan.embedder)
    clock = time.perf_counter()
    summary.frames = render_input(kind, source, output, plan, render_config, encode or EncodeConfig(), workers,
                                  progress, overwrite, overlay=overlay, on_frames=on_frames, info=info)
    summary.faces = int(plan.summary.get("faces", 0))
    summary.stages["blur+write"] = time.perf_counter() - clock
    return summary
