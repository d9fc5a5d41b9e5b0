"""Serving settings, read from the environment at start-up (never at import).

Variable (default): meaning.

- ``FACE_BLUR_BIND_HOST`` (``127.0.0.1``; the Dockerfile sets ``0.0.0.0``): listen address.
- ``SAGEMAKER_BIND_TO_PORT`` (``8080``): listen port of /ping and /invocations.
- ``FACE_BLUR_MODEL_DIR`` (``$SAGEMAKER_BASE_DIR/model`` or ``/opt/ml/model`` if it exists, else
  ``~/.cache/face-blur/models``): see ``handler.pipeline.default_model_dir``.
- ``FACE_BLUR_DETECTOR`` (``DetectorConfig().backend``): ``mtcnn``, ``centerface`` or ``ensemble``.
- ``FACE_BLUR_MIN_FACE`` (``DetectorConfig().min_face``): smallest face searched for, pixels.
- ``FACE_BLUR_DETECT_MAX_SIDE`` (``DetectorConfig().max_side``): longer frames are downscaled for detection.
- ``FACE_BLUR_CANDIDATE_THRESHOLD`` (``DetectorConfig().candidate_threshold``): CenterFace score a
  candidate needs (candidates are confirmed as faces over time in post-processing).
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
- ``FACE_BLUR_GATE_THREADS`` (``64``): client connections served at once. Set it to at least the
  most requests clients send to this server at once: a transform job sends ``MaxConcurrentTransforms``
  to each of its instances (at most 64 in terraform/ and scripts/), several local clients
  (``face-blur transform --concurrency``) add up. Connections beyond it wait in the listen backlog.
- ``FACE_BLUR_LISTEN_BACKLOG`` (``256``): connections the kernel holds until a thread takes them
  (Python's default of 5 reset connections under 32 concurrent frames); Linux caps it at
  ``net.core.somaxconn`` (4096 since 5.4, 128 before).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from contract.env import env_bool, env_choice, env_int
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
    return env_int(env, name, default, low, high, error=ConfigError)


def _float(env: Mapping[str, str], name: str, default: float, low: float = 0.0, high: float = 1.0) -> float:
    """A number in the open interval (low, high) from the environment."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low < value < high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    return env_bool(env, name, default, error=ConfigError)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    return env_choice(env, name, default, choices, error=ConfigError)


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
    gate_threads: int = 64
    listen_backlog: int = 256

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.pipeline.embedder not in embedder_choices():
            raise ConfigError(f"embedder must be one of {', '.join(embedder_choices())}, "
                              f"got {self.pipeline.embedder!r}")
        if self.pipeline.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.pipeline.device!r}")
        for name in ("max_pixels", "max_payload_mb", "gate_threads", "listen_backlog"):
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
                candidate_threshold=_float(env, "FACE_BLUR_CANDIDATE_THRESHOLD", base.candidate_threshold),
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
            gate_threads=_int(env, "FACE_BLUR_GATE_THREADS", cls.gate_threads, 1, 4096),
            listen_backlog=_int(env, "FACE_BLUR_LISTEN_BACKLOG", cls.listen_backlog, 1, 65535),
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
            "FACE_BLUR_GATE_THREADS": str(self.gate_threads),
            "FACE_BLUR_LISTEN_BACKLOG": str(self.listen_backlog),
        }
        if self.workers is not None:
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(self.workers)
        return env
