"""Timing and markdown tables shared by the benchmark sections."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    """How hard to measure: at least ``min_reps`` timed calls after ``warmup``, more while the
    total stays under ``seconds``, never more than ``max_reps``."""

    min_reps: int = 3
    max_reps: int = 20
    seconds: float = 1.5
    warmup: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_reps <= self.max_reps:
            raise ValueError(f"need 1 <= min_reps <= max_reps, got {self.min_reps}, {self.max_reps}")
        if self.seconds < 0 or self.warmup < 0:
            raise ValueError("seconds and warmup must not be negative")


QUICK = Budget(min_reps=1, max_reps=1, seconds=0.0, warmup=0)
FULL = Budget()


def median_ms(fn: Callable[[], object], budget: Budget) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(budget.warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < budget.max_reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= budget.min_reps and time.perf_counter() - start >= budget.seconds:
            break
    return statistics.median(times) * 1000.0


def paired_median_ms(fns: list[Callable[[], object]], budget: Budget) -> list[float]:
    """Median ms of each of ``fns``, called in turn within every repetition, so that a burst of
    load from elsewhere hits all of them alike (for differences such as serving overhead)."""
    for _ in range(budget.warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < budget.max_reps:
        for fn, bucket in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
        if len(times[0]) >= budget.min_reps and time.perf_counter() - start >= budget.seconds * len(fns):
            break
    return [statistics.median(t) * 1000.0 for t in times]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """One markdown table with a title and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    footer: str = ""  # what it was measured on, set when the table is finished

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r} has {len(self.columns)} columns, row has {len(cells)}")
        self.rows.append([str(c) for c in cells])

    def markdown(self, footer: str = "") -> str:
        """The table, its notes and a "Measured on" line (``footer``, else the table's own)."""
        footer = footer or self.footer
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join(" --- " for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if not self.rows:
            lines.append("| " + " | ".join(["(not measured)"] + [""] * (len(self.columns) - 1)) + " |")
        lines.append("")
        lines += [f"- {n}" for n in self.notes]
        if footer.strip():
            lines.append(f"- Measured on: {footer}")
        return "\n".join(lines).rstrip() + "\n"
