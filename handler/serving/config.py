"""Serving settings, read from the environment at start-up (never at import).

Variable (default): meaning.

- ``FACE_BLUR_BIND_HOST`` (``127.0.0.1``; the Dockerfile sets ``0.0.0.0``): listen address.
- ``SAGEMAKER_BIND_TO_PORT`` (``8080``): listen port of /ping and /invocations.
- ``FACE_BLUR_MODEL_DIR`` (``$SAGEMAKER_BASE_DIR/model`` or ``/opt/ml/model`` if it exists, else
  ``~/.cache/face-blur/models``): see ``handler.pipeline.default_model_dir``.
- ``FACE_BLUR_DETECTOR`` (``DetectorConfig().backend``): ``mtcnn``, ``centerface`` or ``ensemble``.
- ``FACE_BLUR_MIN_FACE`` (``DetectorConfig().min_face``): smallest face searched for, pixels.
- ``FACE_BLUR_DETECT_MAX_SIDE`` (``DetectorConfig().max_side``): longer frames are downscaled for detection.
- ``FACE_BLUR_EMBEDDER`` (``auto``): ``auto``, ``none`` or a name from the model manifest
  (``arcface-r100``, ``arcface-r100-int8``, ``mobilefacenet``, ``dlib``).
- ``FACE_BLUR_DEVICE`` (``auto``: the GPU when onnxruntime has CUDA): ``auto``, ``cpu`` or ``gpu``.
- ``FACE_BLUR_GPU_FALLBACK`` (``true``): ``gpu`` asked for but absent: run on the CPU (true) or
  refuse to start (false).
- ``FACE_BLUR_MAX_PIXELS`` (``36000000``): largest frame, width x height; larger gets 413.
- ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (``6``, SageMaker's default): largest request body in MiB; larger gets 413.
- ``SAGEMAKER_MODEL_SERVER_WORKERS`` (from memory and GPUs, see :func:`handler.serving.machine.default_workers`).
- ``SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS`` (``60``): longest one frame may take; then MMS restarts
  the worker and the request fails.
- ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (unset): the same in MINUTES. sagemaker-inference 1.10.1 writes
  it to MMS's ``default_response_timeout``, which multi-model-server 1.1.11 multiplies by 60; the
  toolkit's default of 60 is therefore an hour. The seconds variable wins when both are set.
- ``SAGEMAKER_STARTUP_TIMEOUT`` (``600``): seconds the workers get to load their models.
- ``SAGEMAKER_MODEL_SERVER_VMARGS`` (``-XX:+UseContainerSupport -XX:MaxRAMPercentage=25``): JVM options.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from handler.detector import BACKENDS, DetectorConfig
from handler.embedder import embedder_choices
from handler.pipeline import PipelineConfig, default_model_dir
from handler.runtime import DEVICES
from handler.serving.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

DEFAULT_VMARGS = "-XX:+UseContainerSupport -XX:MaxRAMPercentage=25"
RUN_DIR_ENV = "FACE_BLUR_RUN_DIR"  # set by handler.serving.serve for its workers: they report ready/failed there

class ConfigError(ValueError):
    """A setting has a value outside its range; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {span}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _timeout_seconds(env: Mapping[str, str]) -> int:
    if env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "").strip():
        return _int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", 60, 1)
    if env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "").strip():
        return 60 * _int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 1, 1)
    return 60


@dataclass(frozen=True)
class ServingConfig:
    """Everything the server and its workers need; see the module docstring for the variables.

    ``pipeline`` is what each worker loads (the same :class:`PipelineConfig` the command line uses);
    the other fields are the server's own."""

    host: str = "127.0.0.1"
    port: int = 8080
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_payload_mb: int = DEFAULT_MAX_BYTES // 2**20
    workers: int | None = None  # None: handler.serving.machine.default_workers() at start-up
    response_timeout_s: int = 60
    startup_timeout_s: int = 600
    vmargs: str = DEFAULT_VMARGS

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.pipeline.embedder not in embedder_choices():
            raise ConfigError(f"embedder must be one of {', '.join(embedder_choices())}, "
                              f"got {self.pipeline.embedder!r}")
        if self.pipeline.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.pipeline.device!r}")
        for name in ("max_pixels", "max_payload_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        for name in ("response_timeout_s", "startup_timeout_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 second, got {getattr(self, name)}")

    @property
    def model_dir(self) -> Path:
        """The pipeline's model directory, resolved (``handler.pipeline.default_model_dir`` when unset)."""
        return self.pipeline.resolved_model_dir()

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        env = os.environ if env is None else env
        base = DetectorConfig()
        try:
            detector = replace(
                base,
                backend=_choice(env, "FACE_BLUR_DETECTOR", base.backend, BACKENDS),
                min_face=_int(env, "FACE_BLUR_MIN_FACE", base.min_face, 4),
                max_side=_int(env, "FACE_BLUR_DETECT_MAX_SIDE", base.max_side, 64),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        defaults = PipelineConfig()
        pipeline = PipelineConfig(
            model_dir=default_model_dir(env),
            detector=detector,
            embedder=_choice(env, "FACE_BLUR_EMBEDDER", defaults.embedder, embedder_choices()),
            device=_choice(env, "FACE_BLUR_DEVICE", defaults.device, DEVICES),
            gpu_fallback=_bool(env, "FACE_BLUR_GPU_FALLBACK", defaults.gpu_fallback),
        )
        workers = env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "").strip()
        return cls(
            host=env.get("FACE_BLUR_BIND_HOST", "").strip() or cls.host,
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", cls.port, 0, 65535),
            pipeline=pipeline,
            max_pixels=_int(env, "FACE_BLUR_MAX_PIXELS", cls.max_pixels, 1),
            max_payload_mb=_int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", cls.max_payload_mb, 1),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, 1) if workers else None,
            response_timeout_s=_timeout_seconds(env),
            startup_timeout_s=_int(env, "SAGEMAKER_STARTUP_TIMEOUT", cls.startup_timeout_s, 1),
            vmargs=env.get("SAGEMAKER_MODEL_SERVER_VMARGS", "").strip() or cls.vmargs,
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` give this config back (for worker processes)."""
        pipeline = self.pipeline
        env = {
            "FACE_BLUR_BIND_HOST": self.host,
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "FACE_BLUR_MODEL_DIR": str(self.model_dir),
            "FACE_BLUR_DETECTOR": pipeline.detector.backend,
            "FACE_BLUR_MIN_FACE": str(pipeline.detector.min_face),
            "FACE_BLUR_DETECT_MAX_SIDE": str(pipeline.detector.max_side),
            "FACE_BLUR_EMBEDDER": pipeline.embedder,
            "FACE_BLUR_DEVICE": pipeline.device,
            "FACE_BLUR_GPU_FALLBACK": "true" if pipeline.gpu_fallback else "false",
            "FACE_BLUR_MAX_PIXELS": str(self.max_pixels),
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(self.max_payload_mb),
            "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": str(self.response_timeout_s),
            "SAGEMAKER_STARTUP_TIMEOUT": str(self.startup_timeout_s),
            "SAGEMAKER_MODEL_SERVER_VMARGS": self.vmargs,
        }
        if self.workers is not None:
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(self.workers)
        return env
