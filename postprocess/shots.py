"""Shot cuts from the per-frame signatures (``FrameResult.signature``), without reading frames again.

A signature is a 128-bin HSV histogram summing to 1 (``handler/signature.py``), so the L1 distance
of two frames lies in [0, 2]. Measured on the test photos: large pans and zooms of one photo give
0.04-0.57 (consecutive video frames move far less), different photos 0.48-1.6. A frame starts a new
shot when its distance to the previous frame with a signature is

* at least ``threshold`` (default 0.5), or
* at least ``threshold / 2`` and ``spike_ratio`` times the median distance of the frames around it
  (a cut between two similar-looking shots stands out from the motion around it).

A frame without a signature never starts a shot. Gradual transitions (dissolves, fades) are not
detected as cuts; sequences then run across them, which errs towards blurring.

Before the distance, a ``face-blur/frame/v1`` signature (8 hue x 4 saturation x 4 value bins) is
softened with a [1/4, 1/2, 1/4] kernel along each axis (hue circular), so a gradual colour or
exposure drift that pushes many pixels over a bin border does not look like a cut: a false cut ends
every sequence and stops anti-flicker padding at it (a face missed on the frame after a false cut
would show). Measured: a background hue drift of 9/255 a frame gave raw distances up to 0.53 (a false
cut), 0.23 softened; cuts between the test scenes stay at 1.0-1.7 softened.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import median_filter

SPIKE_WINDOW = 31  # frames around a candidate for the local median
TRANSIENT_SPAN = 3  # a change that is gone this many frames later is a flash, not a cut (confirm_cuts)
HSV_BINS = (8, 4, 4)  # handler/signature.py
_KERNEL = np.array([0.25, 0.5, 0.25], np.float32)


def soften(signatures: np.ndarray) -> np.ndarray:
    """(n, 128) HSV histograms spread over neighbouring bins (see the module docstring); any other
    width is returned unchanged."""
    from scipy.ndimage import convolve1d

    sig = np.asarray(signatures, np.float32)
    if sig.ndim != 2 or sig.shape[1] != int(np.prod(HSV_BINS)):
        return sig
    h = sig.reshape(len(sig), *HSV_BINS)
    h = convolve1d(h, _KERNEL, axis=1, mode="wrap")
    h = convolve1d(h, _KERNEL, axis=2, mode="nearest")
    h = convolve1d(h, _KERNEL, axis=3, mode="nearest")
    return h.reshape(len(sig), -1)


def _stack(signatures: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, w) signatures (the most common width; others and empty ones zero) and which are present."""
    n = len(signatures)
    if isinstance(signatures, np.ndarray) and signatures.ndim == 2:
        return np.asarray(signatures, np.float32), np.ones(n, bool)
    sizes = np.array([np.size(s) for s in signatures])
    width = int(np.bincount(sizes[sizes > 0]).argmax()) if np.any(sizes > 0) else 0
    have = sizes == width if width else np.zeros(n, bool)
    stack = np.zeros((n, width), np.float32)
    if width:
        stack[have] = np.stack([np.asarray(s, np.float32).reshape(-1)
                                for s, ok in zip(signatures, have, strict=True) if ok])
    return stack, have


def confirm_cuts(cuts: np.ndarray, signatures: Sequence[np.ndarray] | np.ndarray, threshold: float = 0.5,
                 span: int = TRANSIENT_SPAN) -> np.ndarray:
    """``cuts`` without transients: a candidate at frame i stays a cut only if the picture ``span``
    frames before it (i - span) and ``span - 1`` frames after it differ by at least ``threshold / 2``.
    A camera flash or a glitch of one or two frames returns to the same picture, so it starts no shot
    (and a face missed on the flash frame stays covered by its sequence). Frames without a
    signature take the last one before them."""
    cuts = np.asarray(cuts, bool).copy()
    if not cuts.any() or span < 1:
        return cuts
    stack, have = _stack(signatures)
    if not have.any():
        return cuts
    carried = np.maximum.accumulate(np.where(have, np.arange(len(have)), -1))
    soft = soften(stack)
    n = len(cuts)
    for i in np.flatnonzero(cuts):
        before, after = carried[max(i - span, 0)], carried[min(i + span - 1, n - 1)]
        if before >= 0 and np.abs(soft[after] - soft[before]).sum() < threshold / 2:
            cuts[i] = False
    return cuts


def signature_distances(signatures: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """L1 distance of each frame's signature to the previous frame that has one; 0 for the first frame
    and for frames without a signature (an empty array)."""
    n = len(signatures)
    dist = np.zeros(n, np.float32)
    if n == 0:
        return dist
    stack, have = _stack(signatures)
    idx = np.flatnonzero(have)
    if len(idx) > 1:
        stack = soften(stack)
        dist[idx[1:]] = np.abs(stack[idx[1:]] - stack[idx[:-1]]).sum(axis=1)
    return dist


def detect_cuts(distances: np.ndarray, threshold: float = 0.5, spike_ratio: float = 4.0) -> np.ndarray:
    """Boolean (n,): True where a frame starts a new shot (never the first frame)."""
    d = np.asarray(distances, np.float32)
    cut = d >= threshold
    if spike_ratio and len(d) > 2:
        local = median_filter(d, size=SPIKE_WINDOW, mode="nearest")
        cut |= (d >= threshold / 2) & (d >= spike_ratio * local)
    if len(cut):
        cut[0] = False
    return cut


def shot_ids(signatures: Sequence[np.ndarray] | np.ndarray, threshold: float = 0.5,
             spike_ratio: float = 4.0) -> np.ndarray:
    """A shot id (0, 1, ...) for each frame, the frames given in time order."""
    cuts = detect_cuts(signature_distances(signatures), threshold, spike_ratio)
    return np.cumsum(confirm_cuts(cuts, signatures, threshold)).astype(np.int64)


def shot_ranges(frames: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """(k,2) first and last frame number of each shot id 0..k-1 (``shots`` from :func:`shot_ids`)."""
    frames = np.asarray(frames, np.int64)
    shots = np.asarray(shots, np.int64)
    if len(frames) == 0:
        return np.zeros((0, 2), np.int64)
    starts = np.flatnonzero(np.r_[True, shots[1:] != shots[:-1]])
    ends = np.r_[starts[1:] - 1, len(frames) - 1]
    return np.stack([frames[starts], frames[ends]], axis=1)


class CutDetector:
    """:func:`detect_cuts` over :func:`signature_distances`, then :func:`confirm_cuts`, one frame at a
    time, for a single pass over the results: :meth:`push` each frame's signature and get back the decisions (True: this
    frame starts a shot) of the frames now settled, in order; they lag ``SPIKE_WINDOW // 2``
    frames behind (the local median and the transient check need the frames after). :meth:`flush` settles the rest.
    The signature width is the first non-empty signature's (the batch version takes the most
    common one; they differ only for mixed widths)."""

    def __init__(self, threshold: float = 0.5, spike_ratio: float = 4.0) -> None:
        self.threshold, self.spike_ratio = float(threshold), float(spike_ratio)
        self.half = max(SPIKE_WINDOW // 2 if self.spike_ratio else 0, TRANSIENT_SPAN - 1)
        self._prev: np.ndarray | None = None
        # the last signature as of each recent frame (carried over frames without one), for confirm_cuts
        self._ring = max(self.half, TRANSIENT_SPAN) + TRANSIENT_SPAN + 2
        self._recent: list[np.ndarray | None] = [None] * self._ring
        self._dist = np.zeros(1024, np.float32)
        self._n = 0
        self._done = 0

    def push(self, signature: np.ndarray) -> list[bool]:
        sig = soften(np.asarray(signature, np.float32).reshape(1, -1))[0]
        d = 0.0
        if sig.size and (self._prev is None or sig.size == self._prev.size):
            if self._prev is not None:
                d = float(np.abs(sig - self._prev).sum())
            self._prev = sig
        self._recent[self._n % self._ring] = self._prev
        if self._n == len(self._dist):
            self._dist = np.concatenate([self._dist, np.zeros_like(self._dist)])
        self._dist[self._n] = d
        self._n += 1
        return self._settle(self._n - self.half)

    def flush(self) -> list[bool]:
        return self._settle(self._n)

    def could_cut(self) -> bool:
        """Whether the last frame pushed may turn out to start a shot (its distance reaches half the
        threshold: every cut does), before :meth:`push` settles it: adaptive analysis analyses both
        sides of such frames (``faceblur/adaptive.py``)."""
        return self._n > 1 and bool(self._dist[self._n - 1] >= self.threshold / 2)

    def _settle(self, upto: int) -> list[bool]:
        out = []
        for i in range(self._done, max(upto, self._done)):
            d = self._dist[i]
            cut = i > 0 and d >= self.threshold
            if not cut and i > 0 and self.spike_ratio and d >= self.threshold / 2:
                window = np.clip(np.arange(i - SPIKE_WINDOW // 2, i + SPIKE_WINDOW // 2 + 1), 0, self._n - 1)
                cut = d >= self.spike_ratio * np.median(self._dist[window])
            if cut:  # confirm_cuts: not a transient
                before = self._recent[max(i - TRANSIENT_SPAN, 0) % self._ring]
                after = self._recent[min(i + TRANSIENT_SPAN - 1, self._n - 1) % self._ring]
                cut = before is None or after is None or float(np.abs(after - before).sum()) >= self.threshold / 2
            out.append(bool(cut))
        self._done = max(upto, self._done)
        return out
