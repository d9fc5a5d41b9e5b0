"""Detection + embedding + signature for one frame: what the handler serves and the CLI runs in-process."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import FrameFaces, FrameResult
from handler.detector import Detector, DetectorConfig
from handler.detector_factory import create_detector
from handler.embedder import Embedder, create_embedder
from handler.runtime import select_providers
from handler.signature import frame_signature

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(os.path.expanduser("~/.cache/face-blur/models"))
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
#: detections scoring below this are embedded as zeros (README "Detection": candidates)
EMBED_MIN_SCORE = 0.3


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
    # candidates scoring below this get no identity vector (all zeros on the wire): see FacePipeline
    embed_min_score: float = EMBED_MIN_SCORE
    # every frame of the run has one size (a video): CenterFace keeps its blocks from pass to pass
    # (handler.centerface.load_centerface); off for the server, whose frames come in any size
    fixed_size: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.embed_min_score <= 1:
            raise ValueError(f"embed_min_score must be in [0, 1], got {self.embed_min_score}")

    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir) if self.model_dir is not None else default_model_dir()


class FacePipeline:
    """A detector and an embedder composed; each is replaceable on its own.

    The detector emits low-score candidates (most of them noise, which post-processing rejects over
    time); only faces scoring ``embed_min_score`` or more are embedded, the others carry an all-zero
    vector ("not embedded"), so a noisy dim frame does not cost an identity network run per stray.
    A sequence without embeddings cannot be recognised, so it is blurred in every identity mode.
    """

    def __init__(self, detector: Detector, embedder: Embedder | None,
                 embed_min_score: float = EMBED_MIN_SCORE) -> None:
        self.detector = detector
        self.embedder = embedder
        self.embed_min_score = float(embed_min_score)

    @property
    def providers(self) -> dict[str, str]:
        """Model file -> the execution provider its onnxruntime session got (dlib's files are absent:
        dlib runs on the CPU by itself). The server logs and reports these at start-up."""
        used = dict(getattr(self.detector, "providers", {}))
        used.update(getattr(self.embedder, "providers", {}) if self.embedder is not None else {})
        return used

    def embed_faces(self, image: np.ndarray, faces: FrameFaces) -> FrameFaces:
        """``faces`` of ``image`` with their identity vectors: those scoring ``embed_min_score`` or
        more embedded, the others all zeros. The one rule for every path that embeds (the server,
        ``--analysis every`` and adaptive analysis), so a plan does not depend on the path. Without an
        embedder, ``faces`` unchanged."""
        if self.embedder is None:
            return faces
        vectors = np.zeros((len(faces), self.embedder.dim), np.float32)
        chosen = np.flatnonzero(faces.confidence >= self.embed_min_score)
        if len(chosen):
            vectors[chosen] = self.embedder.embed(image, faces.landmarks[chosen], faces.xyxy[chosen])
        return faces.with_embedding(vectors)

    def analyse(self, image: np.ndarray, frame_index: int = -1) -> FrameResult:
        """``image`` HxWx3 uint8 RGB (upright) -> its ``face-blur/frame/v1`` result."""
        faces = self.detector.detect(image)
        faces.frame_index = frame_index
        faces = self.embed_faces(image, faces)
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
    detector = create_detector(config.detector, model_dir, providers, config.fixed_size)
    embedder = None if config.embedder == "none" else create_embedder(config.embedder, model_dir, providers)
    log.info("inference pipeline: detector=%s embedder=%s providers=%s model_dir=%s",
             detector.name, embedder.name if embedder else "none", providers, model_dir)
    return FacePipeline(detector, embedder, config.embed_min_score)
