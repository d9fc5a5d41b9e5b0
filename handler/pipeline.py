"""Detection + embedding + signature for one frame: what the handler serves and the CLI runs in-process."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import FrameResult
from handler.detector import Detector, DetectorConfig
from handler.detector_factory import create_detector
from handler.embedder import Embedder, create_embedder
from handler.runtime import select_providers
from handler.signature import frame_signature

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(os.path.expanduser("~/.cache/face-blur/models"))
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


def default_model_dir(env: Mapping[str, str] | None = None) -> Path:
    """The one rule for where model files are, for the server and the command line alike:
    ``$FACE_BLUR_MODEL_DIR``, else SageMaker's model folder (``$SAGEMAKER_BASE_DIR/model``, or
    ``/opt/ml/model``) where it exists, else ``~/.cache/face-blur/models``."""
    env = os.environ if env is None else env
    if env.get("FACE_BLUR_MODEL_DIR"):
        return Path(env["FACE_BLUR_MODEL_DIR"]).expanduser()
    base = env.get("SAGEMAKER_BASE_DIR")
    sagemaker = Path(base) / "model" if base else SAGEMAKER_MODEL_DIR
    return sagemaker if sagemaker.is_dir() else DEFAULT_MODEL_DIR


@dataclass(frozen=True)
class PipelineConfig:
    """What the inference side loads (README: "Inference options")."""

    model_dir: Path | None = None  # None: default_model_dir()
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: str = "auto"  # auto | arcface-r100 | mobilefacenet | dlib | none
    device: str = "auto"  # auto | cpu | gpu
    gpu_fallback: bool = True  # gpu asked for but absent: fall back to CPU (True) or refuse to start

    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir) if self.model_dir is not None else default_model_dir()


class FacePipeline:
    """A detector and an embedder composed; each is replaceable on its own."""

    def __init__(self, detector: Detector, embedder: Embedder | None) -> None:
        self.detector = detector
        self.embedder = embedder

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its onnxruntime session got (dlib's files are absent:
        dlib runs on the CPU by itself). The server logs and reports these at start-up."""
        used = dict(getattr(self.detector, "providers", {}))
        used.update(getattr(self.embedder, "providers", {}) if self.embedder is not None else {})
        return used

    def analyse(self, image: np.ndarray, frame_index: int = -1) -> FrameResult:
        """``image`` HxWx3 uint8 RGB (upright) -> its ``face-blur/frame/v1`` result."""
        faces = self.detector.detect(image)
        faces.frame_index = frame_index
        if self.embedder is not None and len(faces):
            faces = faces.with_embedding(self.embedder.embed(image, faces.landmarks, faces.xyxy))
        elif self.embedder is not None:
            faces = faces.with_embedding(np.zeros((0, self.embedder.dim), np.float32))
        return FrameResult(
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            faces=faces,
            detector=self.detector.name,
            embedder=self.embedder.name if self.embedder is not None else "",
            signature=frame_signature(image),
        )


def load_pipeline(config: PipelineConfig) -> FacePipeline:
    """Load every model once; raises ``handler.runtime.ModelLoadError`` naming a missing/corrupt file."""
    providers = select_providers(config.device, config.gpu_fallback)
    model_dir = config.resolved_model_dir()
    detector = create_detector(config.detector, model_dir, providers)
    embedder = None if config.embedder == "none" else create_embedder(config.embedder, model_dir, providers)
    log.info("inference pipeline: detector=%s embedder=%s providers=%s model_dir=%s",
             detector.name, embedder.name if embedder else "none", providers, model_dir)
    return FacePipeline(detector, embedder)
