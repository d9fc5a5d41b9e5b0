"""Find the frames and read their per-frame results (issue #3 step 1).

Layout (what SageMaker Batch Transform leaves): a frame ``<frames>/<rel>`` has its result at
``<results>/<rel><suffix>`` (suffix ``.out``). The frame number is the number in the frame's file
name, taken by a regex with one group (default: the last run of digits, so ``img0000001.png`` is
frame 1). Two files with the same number are an error naming both; an image whose name has no
number is an error naming it. Only ``.png``, ``.jpg`` and ``.jpeg`` files count as frames.

Reference photos' results live under a references prefix as ``<person>/<photo><suffix>`` and are
read into ``{person: {photo: FrameResult}}``.

A missing result (no ``.out``) and an unreadable one (not ``face-blur/frame/v1``) are reported
separately in :class:`ResultSet`; what to do with them (stop, or blur those frames whole) is the
caller's policy (``postprocess.run``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from contract import ContractError, FrameResult, loads
from postprocess.parallel import bounded_map
from postprocess.results import ResultStore
from postprocess.storage import StorageError, Store, join

log = logging.getLogger(__name__)

DEFAULT_FRAME_PATTERN = r"(\d+)\D*$"
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_RESULTS_SUFFIX = ".out"


class FrameListError(ValueError):
    """The frames cannot be numbered: none found, duplicate numbers, or a name without a number."""


class ReferenceLayoutError(ValueError):
    """A reference result that is not ``<person>/<photo>.out`` or cannot be read."""


@dataclass(frozen=True)
class FrameRef:
    """One frame: its number and its path relative to the frames prefix."""

    number: int
    key: str


def compile_frame_pattern(pattern: str) -> re.Pattern[str]:
    """The frame-number regex; it must compile and have exactly one group."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"frame_pattern {pattern!r} is not a valid regex: {exc}") from None
    if regex.groups != 1:
        raise ValueError(f"frame_pattern {pattern!r} must have exactly one group, it has {regex.groups}")
    return regex


def frame_number(name: str, regex: re.Pattern[str]) -> int | None:
    match = regex.search(name)
    if match is None:
        return None
    try:
        return int(match.group(1))
    except (TypeError, ValueError):
        return None


def list_frames(store: Store, frames_uri: str, pattern: str = DEFAULT_FRAME_PATTERN) -> list[FrameRef]:
    """Every frame under ``frames_uri`` sorted by number; raises :class:`FrameListError`."""
    regex = compile_frame_pattern(pattern)
    by_number: dict[int, str] = {}
    ignored = 0
    for obj in store.list(frames_uri):
        name = obj.key.rsplit("/", 1)[-1]
        if os.path.splitext(name)[1].lower() not in FRAME_SUFFIXES:
            ignored += 1
            continue
        number = frame_number(name, regex)
        if number is None:
            raise FrameListError(f"frame file {obj.key!r} has no frame number (frame_pattern {pattern!r})")
        if number in by_number:
            raise FrameListError(f"frames {by_number[number]!r} and {obj.key!r} both have number {number}")
        by_number[number] = obj.key
    if ignored:
        log.info("ignored %d non-image objects under %s", ignored, frames_uri)
    if not by_number:
        raise FrameListError(f"no frames (.png/.jpg/.jpeg) under {frames_uri}")
    return [FrameRef(n, by_number[n]) for n in sorted(by_number)]


@dataclass
class ResultSet:
    """What :func:`read_results` found: parsed results by frame number, and what was not usable."""

    results: ResultStore = field(default_factory=ResultStore)  # on disk: hours of video fit in memory
    missing: list[FrameRef] = field(default_factory=list)  # no result object
    unreadable: list[tuple[FrameRef, str]] = field(default_factory=list)  # (frame, why)

    @property
    def unusable(self) -> list[int]:
        return sorted([f.number for f in self.missing] + [f.number for f, _ in self.unreadable])


def list_keys(store: Store, prefix: str) -> set[str]:
    return {obj.key for obj in store.list(prefix)}


def read_results(store: Store, frames: Sequence[FrameRef], results_uri: str,
                 suffix: str = DEFAULT_RESULTS_SUFFIX, workers: int = 32,
                 present: set[str] | None = None) -> ResultSet:
    """Read and parse the result of every frame concurrently (one listing, then GETs).
    ``present``: the keys under ``results_uri`` when already listed (:func:`list_keys`)."""
    if present is None:
        present = list_keys(store, results_uri)
    out = ResultSet()
    wanted = []
    for frame in frames:
        if frame.key + suffix in present:
            wanted.append(frame)
        else:
            out.missing.append(frame)

    def load(frame: FrameRef) -> FrameResult | str:
        uri = join(results_uri, frame.key + suffix)
        try:
            body = store.read(uri)
        except StorageError as exc:
            if exc.missing:  # listed a moment ago, gone now
                return "result object disappeared"
            raise
        try:
            return loads(body, frame.number)
        except ContractError as exc:
            return str(exc)

    for frame, loaded in bounded_map(load, wanted, workers):
        if isinstance(loaded, str):
            out.unreadable.append((frame, loaded))
        else:
            out.results.add(frame.number, loaded)
    out.unreadable.sort(key=lambda item: item[0].number)
    return out


def describe_unusable(result_set: ResultSet, results_uri: str, suffix: str = DEFAULT_RESULTS_SUFFIX,
                      first: int = 5) -> str:
    """One line naming the first few missing/unreadable results and the counts."""
    parts = []
    if result_set.missing:
        names = ", ".join(f.key + suffix for f in result_set.missing[:first])
        more = f" and {len(result_set.missing) - first} more" if len(result_set.missing) > first else ""
        parts.append(f"{len(result_set.missing)} missing under {results_uri} ({names}{more})")
    if result_set.unreadable:
        names = "; ".join(f"{f.key + suffix}: {why}" for f, why in result_set.unreadable[:first])
        more = f" and {len(result_set.unreadable) - first} more" if len(result_set.unreadable) > first else ""
        parts.append(f"{len(result_set.unreadable)} unreadable ({names}{more})")
    return "; ".join(parts)


def read_references(store: Store, references_uri: str, suffix: str = DEFAULT_RESULTS_SUFFIX,
                    workers: int = 16) -> dict[str, dict[str, FrameResult]]:
    """``<references>/<person>/<photo><suffix>`` -> ``{person: {photo: result}}`` (photo keeps its
    own extension, e.g. ``obama2.jpg``). Raises :class:`ReferenceLayoutError` naming the object."""
    entries = []
    for obj in store.list(references_uri):
        if not obj.key.endswith(suffix):
            continue
        parts = obj.key.split("/")
        if len(parts) != 2 or not parts[0] or len(parts[1]) <= len(suffix):
            raise ReferenceLayoutError(
                f"reference result {obj.key!r} under {references_uri} is not laid out <person>/<photo>{suffix}")
        entries.append((parts[0], parts[1][: -len(suffix)], obj.key))
    if not entries:
        raise ReferenceLayoutError(f"no reference results (<person>/<photo>{suffix}) under {references_uri}")

    def load(entry: tuple[str, str, str]) -> FrameResult:
        uri = join(references_uri, entry[2])
        try:
            return loads(store.read(uri))
        except ContractError as exc:
            raise ReferenceLayoutError(f"reference result {uri} is unreadable: {exc}") from None

    people: dict[str, dict[str, FrameResult]] = {}
    for (person, photo, _key), result in bounded_map(load, entries, workers):
        people.setdefault(person, {})[photo] = result
    return {p: dict(sorted(photos.items())) for p, photos in sorted(people.items())}
