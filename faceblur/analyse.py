"""Pass 1 of ``face-blur run``: every frame analysed (``analyse_video``, ``analyse_frames``) or the
frames adaptive analysis picks (``analyse_adaptive``: faceblur/adaptive.py), the results into the
store and the resume journal (faceblur/resume.py) alike.

Decoding runs on its own thread ahead of the ``workers`` analysis threads, through bounded queues,
so the slowest stage sets the pace; frame numbers start at 1.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from contract import FrameResult
from faceblur.inputs import InputError, read_image
from faceblur.truncation import FrameTally
from faceblur.video import VideoError, iter_frames
from postprocess.results import ResultStore

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tqdm import tqdm

    from faceblur.adaptive import AdaptiveConfig, Net
    from faceblur.local import LocalConfig
    from handler.pipeline import FacePipeline, PipelineConfig
    from postprocess.config import PlanConfig
    from postprocess.reading import FrameRef
    from postprocess.summary import RunSummary


def analyse_video(pipeline: FacePipeline, path: Path, store: ResultStore, workers: int, bar: tqdm,
                  skip: Container[int] = (), tally: FrameTally | None = None) -> int:
    """Pass 1: decode (background thread) and analyse (``workers`` threads) every frame (those in
    ``skip``, analysed by an interrupted run, are decoded only); returns the frames decoded, and
    counts them in ``tally`` (for the truncation check)."""
    from postprocess.parallel import bounded_map

    tally = tally if tally is not None else FrameTally()

    def frames() -> Iterator:
        for frame in iter_frames(path):
            tally.see(frame)
            if frame.index in skip:
                bar.update(1)
                continue
            yield frame

    for frame, result in bounded_map(lambda f: pipeline.analyse(f.image, f.index), frames(),
                                     workers, window=workers * 2):
        store.add(frame.index, result)
        bar.update(1)
    if tally.decoded == 0:
        raise VideoError(f"{path}: no frames decoded")
    return tally.decoded


def adaptive_pipeline(config: PipelineConfig, mode: str) -> PipelineConfig:
    """The pipeline adaptive analysis loads for a plan of ``mode``: in mode ``all`` no embedder
    (linking between analysed frames is by motion and box; ``face-blur run`` and the AWS segments
    alike)."""
    if mode != "all" or config.embedder == "none":
        return config
    log.info("analysis adaptive, mode all: no embeddings (the embedder is not loaded)")
    return replace(config, embedder="none")


def make_net(pipeline: FacePipeline, pipeline_config: PipelineConfig, adaptive: AdaptiveConfig) -> Net:
    """The cheap per-frame pass of adaptive analysis for ``pipeline`` (faceblur/adaptive.py): its own
    CenterFace session from the pipeline's model folder, on the pipeline's device."""
    from faceblur.adaptive import Net
    from handler.runtime import select_providers

    return Net(pipeline, pipeline_config.resolved_model_dir(),
               select_providers(pipeline_config.device, pipeline_config.gpu_fallback), adaptive,
               pipeline_config.fixed_size)


def analyse_adaptive(pipeline: FacePipeline, pipeline_config: PipelineConfig, plan_config: PlanConfig,
                     config: LocalConfig, source: Path, store, bar: tqdm, seen: FrameTally | None = None):
    """Pass 1 with adaptive analysis (faceblur/adaptive.py), the scheduler linking faces and cutting
    shots with the plan's own linker and cut detector, made from ``plan_config`` (so it links as the
    plan will); ``seen`` counts every decoded frame (the truncation check)."""
    from faceblur.adaptive import AdaptiveConfig, analyse_adaptive

    adaptive = config.adaptive or AdaptiveConfig()
    net = make_net(pipeline, pipeline_config, adaptive)
    return analyse_adaptive(pipeline, source, store, adaptive, plan_config.mode != "all", net, config.workers,
                            bar.update, plan_config, seen)


def frame_refs(folder: Path) -> list[FrameRef]:
    from postprocess.reading import FrameListError, list_frames
    from postprocess.storage import Store

    try:
        return list_frames(Store(), str(folder))
    except FrameListError as exc:
        raise InputError(f"{folder}: {exc}") from None


def analyse_frames(pipeline: FacePipeline, folder: Path, refs: list[FrameRef], store: ResultStore, workers: int,
                   bar: tqdm, skip: Container[int] = ()) -> None:
    from postprocess.parallel import bounded_map

    bar.update(sum(ref.number in skip for ref in refs))
    refs = [ref for ref in refs if ref.number not in skip]

    def one(ref: FrameRef) -> FrameResult:
        _, image = read_image(folder / ref.key)
        return pipeline.analyse(image, ref.number)

    for ref, result in bounded_map(one, refs, workers, window=workers * 2):
        store.add(ref.number, result)
        bar.update(1)


def open_journal(kind: str, source: Path, refs: list[FrameRef] | None, pipeline_config: PipelineConfig,
             summary: RunSummary, resume: bool, analysis: str):
    """The resume journal of this run (faceblur/resume.py), None for a photo."""
    from faceblur.resume import Journal, analysis_options, input_identity

    if kind == "photo":
        return None
    identity = input_identity(source, [ref.key for ref in refs] if refs is not None else ())
    options = analysis_options(pipeline_config, summary.detector, summary.embedder)
    options["analysis"] = analysis if kind == "video" else "every"
    return Journal.open(identity, options, resume)


class Recorded:
    """``add`` to the results store and to the resume journal alike."""

    def __init__(self, store: ResultStore, journal) -> None:
        self.store, self.journal = store, journal

    def add(self, frame: int, result: FrameResult) -> None:
        self.store.add(frame, result)
        if self.journal is not None:
            self.journal.add(frame, result)
