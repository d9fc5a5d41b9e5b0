"""The machine the server runs on: memory (cgroup-aware), CPU cores, GPUs, and from them how many
worker processes to start. Probed at start-up by the supervisor (``handler.serving.serve``), never
at import; kept apart from the settings so that :mod:`handler.serving.config` only parses."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

# Memory per worker process (README: "Serving limits"). Measured through the real server with the
# ensemble detector and MobileFaceNet: 223 MiB RSS after load and warm-up, 750-820 MiB after 18 1080p
# and 9 4K frames. In one process (CenterFace, the default, + MobileFaceNet) 9 1080p, 9 4K and 5 720p
# frames peaked at 0.9 GiB; the ensemble at 1.3 GiB (MTCNN runs without onnxruntime's memory arena,
# which grew with every pyramid shape to 2.8 GiB before). 2 GiB per worker covers both.
WORKER_BASE_BYTES = 2048 * 2**20
# onnxruntime holds about this multiple of an embedder's file size once it has run.
MODEL_FILE_FACTOR = 1.5
# Kept free for the JVM front-end (about 130 MiB), the supervisor (about 60 MiB) and the page cache.
RESERVED_BYTES = 1024 * 2**20



def memory_bytes() -> int:
    """Memory this container may use: the cgroup limit where there is one, else the machine's."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return total


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_count(device: str) -> int:
    """GPUs the workers will use: 0 for ``cpu``, or when onnxruntime-gpu is not installed; else
    the count ``nvidia-smi -L`` lists (at least 1). Checked without importing onnxruntime."""
    if device == "cpu":
        return 0
    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def worker_bytes(model_dir: Path) -> int:
    """Estimated RSS of one worker: the measured base plus the embedder files found in the model dir
    (the largest one, as only one embedder loads)."""
    sizes = [p.stat().st_size for pattern in ("*.onnx", "dlib/*.dat") for p in Path(model_dir).glob(pattern)
             if p.is_file() and not p.name.startswith(("centerface",))]
    return WORKER_BASE_BYTES + int(MODEL_FILE_FACTOR * max(sizes, default=0))


def default_workers(cpus: int, memory: int, gpus: int, per_worker: int,
                    reserved: int = RESERVED_BYTES) -> int:
    """One worker per GPU (each holds its own CUDA context); on CPU one per core, as many as fit
    in memory after ``reserved``; at least 1."""
    if gpus > 0:
        return gpus
    fit = (memory - reserved) // max(per_worker, 1)
    return int(max(1, min(cpus, fit)))
