"""Thread helpers for many small I/O-bound jobs: :func:`bounded_map` runs a function over many
items on a thread pool with a bounded window of pending work (S3 latency, not CPU, bounds reading
864,000 small objects; a window keeps memory flat however many items there are). Used by the
readers, the renderer, the local command and the video splitter. :func:`ordered_map` is the same
in the items' order (adaptive analysis, whose scheduler takes frames in frame order)."""

from __future__ import annotations

import os
from collections import deque
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
                window: int | None = None) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in completion order, at most ``window`` (default 4 x workers) pending.

    The first exception cancels what has not started and is re-raised; with ``workers == 1`` it
    runs inline (easier to debug, same results).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    limit = window or workers * 4
    iterator = iter(items)
    pending: dict[Future[R], T] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="face-blur-io") as pool:
        try:
            for item in iterator:
                pending[pool.submit(fn, item)] = item
                if len(pending) >= limit:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield pending.pop(fut), fut.result()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int | None = None) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the order of ``items``, at most ``window`` (default 4 x workers) pending:
    the next items run while the consumer works on the first. The first exception (in item order)
    cancels what has not started and is re-raised; with ``workers == 1`` it runs inline."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    limit = window or workers * 4
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="face-blur-io") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= limit:
                    first, fut = pending.popleft()
                    yield first, fut.result()
            while pending:
                first, fut = pending.popleft()
                yield first, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
