"""onnxruntime sessions: which execution provider, and one place that opens model files
(``handler.serving`` reads back which provider each session got through the models' ``providers``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")
GPU_PROVIDERS = ("CUDAExecutionProvider",)
CPU_PROVIDER = "CPUExecutionProvider"


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable or not a valid model; the message names the file."""


def select_providers(device: str = "auto", gpu_fallback: bool = True) -> list[str]:
    """Execution providers for ``device`` in ``{"auto", "cpu", "gpu"}``.

    ``gpu`` without a usable CUDA provider logs an error and falls back to the CPU when
    ``gpu_fallback`` is true, else raises :class:`ModelLoadError` so the server refuses to start.
    """
    import onnxruntime as ort

    if device not in DEVICES:
        raise ValueError(f"device must be auto, cpu or gpu, got {device!r}")
    available = ort.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if device == "cpu":
        return [CPU_PROVIDER]
    if gpu:
        return [*gpu, CPU_PROVIDER]
    if device == "gpu":
        msg = (f"GPU REQUESTED BUT NOT AVAILABLE: onnxruntime offers {available}; "
               "install onnxruntime-gpu with a matching CUDA, or set device=cpu")
        if not gpu_fallback:
            raise ModelLoadError(msg)
        log.error("%s. Falling back to the CPU (gpu_fallback is on).", msg)
    return [CPU_PROVIDER]


def open_session(path: str | Path, providers: list[str], threads: int = 0, memory_arena: bool = True,
                 data: bytes | None = None, spinning: bool = False, memory_pattern: bool = True) -> InferenceSession:
    """An ``InferenceSession`` for ``path``; a missing or corrupt file raises ModelLoadError naming it.

    ``memory_arena=False`` for networks fed many input shapes (MTCNN's image pyramid): onnxruntime's
    CPU arena keeps a block per shape and grew one worker past 1 GiB; without it, about 350 MiB.
    ``data``: the model's bytes, already read (and rewritten) from ``path``, which names it in messages.
    ``spinning``: let onnxruntime's idle pool threads spin-wait for work. Off by default: the threads
    of one run (decode, analysis workers, encode) and other processes share the cores, and spinning
    threads burn the time the others need (``face-blur run`` on 2 shared cores: a fifth more CPU per
    CenterFace pass with it on; README "Adaptive analysis"). ``memory_pattern``: onnxruntime's
    pre-planned block per input shape (on by default; see ``handler.centerface.load_centerface``)."""
    import onnxruntime as ort

    path = Path(path)
    if data is None and not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # converters leave harmless warnings by the hundred
    if threads:
        opts.intra_op_num_threads = threads
    opts.enable_cpu_mem_arena = memory_arena
    opts.enable_mem_pattern = memory_pattern
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        session = ort.InferenceSession(str(path) if data is None else data, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelLoadError(f"model file {path} could not be loaded: {str(exc).splitlines()[0]}") from exc
    log.info("loaded %s on %s", path.name, session_provider(session))
    return session


def session_provider(session: InferenceSession) -> str:
    """The execution provider a session really got (the first of those it was given that loaded).
    Each model wrapper reports its sessions' providers as ``providers`` (model -> provider), which
    :class:`handler.pipeline.FacePipeline` gathers for the server's start-up log."""
    return session.get_providers()[0]
