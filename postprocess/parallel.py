"""Thread helpers for many small I/O-bound jobs: :func:`bounded_map` runs a function over many
items on a thread pool with a bounded window of pending work (S3 latency, not CPU, bounds reading
864,000 small objects; a window keeps memory flat however many items there are). Used by the
readers, the renderer, the local command and the video splitter. :func:`ordered_map` is the same
in the items' order (adaptive analysis, whose scheduler takes frames in frame order)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_threads() -> int:
    """Threads for I/O-bound work (S3 reads and writes wait on the network, not the CPU): 4 per core,
    at most 32. Worker *processes* of the server are counted by ``handler.serving.machine``."""
    return min(32, 4 * (os.cpu_count() or 1))

def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int | None = None, ordered: bool = False) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in completion order (``ordered``: in the order of ``items``), at most
    ``window`` (default 4 x workers) pending: the next items run while the consumer works.

    The first exception (in the order yielded) cancels what has not started and is re-raised; with
    ``workers == 1`` it runs inline (easier to debug, same results).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    limit = window or workers * 4
    pending: dict[Future[R], T] = {}  # in submission order

    def ready() -> Iterable[Future[R]]:
        if ordered:
            return (next(iter(pending)),)  # the oldest, when it is done
        return wait(pending, return_when=FIRST_COMPLETED)[0]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="face-blur-io") as pool:
        try:
            for item in items:
                pending[pool.submit(fn, item)] = item
                if len(pending) >= limit:
                    for fut in ready():
                        yield pending.pop(fut), fut.result()
            while pending:
                for fut in ready():
                    yield pending.pop(fut), fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int | None = None) -> Iterator[tuple[T, R]]:
    """:func:`bounded_map` in the order of ``items`` (adaptive analysis' scheduler takes frames in
    frame order)."""
    return bounded_map(fn, items, workers, window, ordered=True)
