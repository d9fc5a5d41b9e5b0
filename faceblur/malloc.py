"""One process-wide memory setting for ``face-blur run``: large blocks straight from the kernel.

glibc's malloc raises its mmap threshold after the first large block is freed (up to 32 MiB), so
the feature maps of CenterFace (a few MiB to tens of MiB per tensor, allocated and freed on every
pass, onnxruntime's arena being off) then come from the per-thread heaps, where several analysis
threads at once leave them fragmented and never returned. A fixed threshold of 4 MiB keeps those
blocks mapped and unmapped per pass: ``face-blur run`` on a 640x360 clip peaked at 394 MiB
instead of 597, for the same CPU time (README "Adaptive analysis"). Elsewhere (not glibc) nothing
changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 4 << 20


def map_large_blocks(threshold: int = THRESHOLD) -> bool:
    """Set glibc's mmap threshold to ``threshold`` bytes; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(threshold)))
    log.debug("malloc: mmap threshold %d bytes (%s)", threshold, "set" if ok else "refused")
    return ok
