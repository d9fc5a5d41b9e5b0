"""One post-processing run: frames + per-frame results (+ reference results) -> blurred frames.

``run(frames_uri, results_uri, output_uri, config, references_uri=None) -> RunSummary`` does three
steps, which AWS Batch can also run as separate jobs (``postprocess/batch.py``):

1. plan (:func:`plan_step`): list the frames, read every result (and the references), decide
   (``postprocess.plan.make_plan``), then write ``<output>/face-blur-plan.json`` (the audit record,
   never an embedding) and ``<output>/face-blur-frames.json`` (:class:`~postprocess.render.RenderManifest`:
   the frames and the run digest). Nothing is written before the inputs have been checked: missing or
   unreadable results stop the run here under ``missing="fail"`` (the default), naming them.
2. render (:func:`render_step`): blur or copy every frame (or one slice of them) into the output.
3. finalize (:func:`finalize_step`): check that every input frame has its output, written for
   this digest (in the output listing and in the render progress records: "nothing lost"), then
   write ``<output>/face-blur-complete.json`` LAST. A reader knows a finished run by this marker
   and by its ``digest`` equal to the one in ``face-blur-frames.json``.

The digest is the SHA-256 of the plan JSON, the render options and the frame list: re-running with
the same inputs and options gives the same digest, skips the frames already written and ends with
the same bytes; different options give a new digest, drop the old marker and render everything again.

The output must not be, contain, or lie inside the frames, results or references prefix
(:class:`LocationError`): the run never writes under its inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from postprocess.blur import RenderConfig
from postprocess.config import PlanConfig
from postprocess.locations import LocationError, check_locations  # noqa: F401  (LocationError: re-exported)
from postprocess.parallel import default_threads
from postprocess.plan import make_plan
from postprocess.plan_format import Plan
from postprocess.reading import (
    DEFAULT_FRAME_PATTERN,
    DEFAULT_RESULTS_SUFFIX,
    compile_frame_pattern,
    describe_unusable,
    list_frames,
    list_keys,
    read_references,
    read_results,
)
from postprocess.render import MANIFEST_NAME, RenderManifest, RenderStats, read_progress, render_frames
from postprocess.storage import StorageError, Store, folder, is_s3, join, local_path
from postprocess.summary import RunSummary
from postprocess.tempfiles import remove_stale_under

log = logging.getLogger(__name__)

PLAN_NAME = "face-blur-plan.json"
MARKER_NAME = "face-blur-complete.json"
MARKER_SCHEMA = "face-blur/complete/v1"
OPTIONS_NAME = "face-blur-options.json"
OPTIONS_SCHEMA = "face-blur/options/v1"
MISSING_POLICIES = ("fail", "blur-frame")


class MissingResultsError(RuntimeError):
    """Frames without a usable result under ``missing="fail"``; the message names them."""


class IncompleteOutputError(RuntimeError):
    """Finalize found input frames without an output frame; the message names them."""


@dataclass(frozen=True)
class RunConfig:
    """Options of a post-processing run (README: "Post-processing options"; defaults in brackets).

    plan: the decision options (``postprocess.config.PlanConfig``).
    render: the blur and output options (``postprocess.blur.RenderConfig``).
    missing [fail]: a frame without a usable result: ``fail`` stops the run before anything is
        written and names the frames; ``blur-frame`` blurs those frames whole.
    frame_pattern [``(\\d+)\\D*$``]: regex with one group giving the frame number from the file name.
    workers [0 = min(32, 4 x CPUs)]: threads reading results and rendering frames.
    results_suffix [.out]: the result of frame ``<key>`` is ``<results>/<key><suffix>``.
    """

    plan: PlanConfig = field(default_factory=PlanConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    missing: str = "fail"
    frame_pattern: str = DEFAULT_FRAME_PATTERN
    workers: int = 0
    results_suffix: str = DEFAULT_RESULTS_SUFFIX

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {', '.join(MISSING_POLICIES)}, got {self.missing!r}")
        compile_frame_pattern(self.frame_pattern)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= 256:
            raise ValueError(f"workers must be an integer from 0 (auto) to 256, got {self.workers!r}")
        if not self.results_suffix or "/" in self.results_suffix:
            raise ValueError(f"results_suffix must be a non-empty file suffix, got {self.results_suffix!r}")

    @property
    def threads(self) -> int:
        return self.workers or default_threads()

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "render": self.render.to_dict(), "missing": self.missing,
                "frame_pattern": self.frame_pattern, "workers": self.workers,
                "results_suffix": self.results_suffix}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The inverse of :meth:`to_dict`; every key optional, unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"run options must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run options: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        values = dict(data)
        if "plan" in values:
            values["plan"] = PlanConfig.from_dict(values["plan"] or {})
        if "render" in values:
            values["render"] = RenderConfig.from_dict(values["render"] or {})
        return cls(**values)


@dataclass(frozen=True)
class JobOptions:
    """``face-blur-options.json`` (schema ``face-blur/options/v1``): what the start script wrote
    next to the transform job's results, read by the Lambda and the Batch jobs."""

    frames: str
    results: str
    output: str
    references: str | None = None
    config: RunConfig = field(default_factory=RunConfig)
    frame_count: int | None = None  # optional hint: lets the Lambda choose without listing

    def __post_init__(self) -> None:
        # Checked where the options are made or read, so the start script, the Lambda (before its
        # claim object) and every Batch step refuse them before writing anything.
        check_locations(self.frames, self.results, self.output, self.references)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"schema": OPTIONS_SCHEMA, "frames": self.frames, "results": self.results,
                                "references": self.references, "output": self.output,
                                "options": self.config.to_dict()}
        if self.frame_count is not None:
            data["frame_count"] = self.frame_count
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, body: bytes, where: str = OPTIONS_NAME) -> JobOptions:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != OPTIONS_SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: schema must be {OPTIONS_SCHEMA!r}, got {got!r}")
        for key in ("frames", "results", "output"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"{where}: {key!r} must be a URI string, got {data.get(key)!r}")
        refs = data.get("references")
        if refs is not None and (not isinstance(refs, str) or not refs):
            raise ValueError(f"{where}: 'references' must be a URI string or null, got {refs!r}")
        count = data.get("frame_count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"{where}: 'frame_count' must be a non-negative integer, got {count!r}")
        try:
            config = RunConfig.from_dict(data.get("options") or {})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: options: {exc}") from None
        try:
            return cls(data["frames"], data["results"], data["output"], refs, config, count)
        except LocationError as exc:
            raise LocationError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, store: Store, uri: str) -> JobOptions:
        return cls.from_json(store.read(uri), uri)


def run_digest(plan_json: bytes, render: RenderConfig, frames: RenderManifest | list) -> str:
    h = hashlib.sha256()
    h.update(plan_json)
    h.update(json.dumps(render.to_dict(), sort_keys=True).encode())
    refs = frames.frames if isinstance(frames, RenderManifest) else frames
    h.update(json.dumps([[f.number, f.key] for f in refs], separators=(",", ":")).encode())
    return h.hexdigest()


def _read_json(store: Store, uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.read(uri))
    except StorageError as exc:
        if exc.missing:
            return None
        raise
    except ValueError:
        return None


@dataclass
class PlanStepResult:
    plan: Plan
    manifest: RenderManifest
    missing: list[int]
    already_complete: bool


def plan_step(store: Store, frames_uri: str, results_uri: str, output_uri: str, config: RunConfig,
              references_uri: str | None = None) -> PlanStepResult:
    """Read and decide, then write the plan and the manifest (see the module docstring)."""
    check_locations(frames_uri, results_uri, output_uri, references_uri)
    with ThreadPoolExecutor(2) as pool:  # the two listings (864 pages each for a 10-hour video) overlap
        results_listing = pool.submit(list_keys, store, results_uri)
        frames = list_frames(store, frames_uri, config.frame_pattern)
        present = results_listing.result()
    log.info("%d frames under %s, %d objects under %s", len(frames), frames_uri, len(present), results_uri)
    result_set = read_results(store, frames, results_uri, config.results_suffix, config.threads, present)
    unusable = result_set.unusable
    if unusable:
        text = describe_unusable(result_set, results_uri, config.results_suffix)
        if config.missing == "fail":
            raise MissingResultsError(f"{len(unusable)} of {len(frames)} frames have no usable result: {text} "
                                      "(use missing='blur-frame' to blur those frames whole)")
        log.warning("%d frames have no usable result and are blurred whole: %s", len(unusable), text)
    references = (read_references(store, references_uri, config.results_suffix, config.threads)
                  if references_uri else None)
    try:
        plan_json = make_plan(result_set.results, config.plan, references, missing=unusable).dumps(indent=1)
    finally:
        result_set.results.close()
    # Render from the plan as written (boxes rounded to 0.1 px), never from the in-memory one, so a
    # one-shot run and separate plan/render jobs give the same bytes.
    plan = Plan.loads(plan_json)
    digest = run_digest(plan_json, config.render, frames)

    out = folder(output_uri)
    if not is_s3(out):  # what a killed run left (postprocess/tempfiles.py); S3 PUTs leave nothing
        remove_stale_under(local_path(out))
    previous = _read_json(store, join(out, MANIFEST_NAME))
    marker = _read_json(store, join(out, MARKER_NAME))
    same = previous is not None and previous.get("digest") == digest
    complete = same and marker is not None and marker.get("digest") == digest
    if marker is not None and marker.get("digest") != digest:
        store.delete(join(out, MARKER_NAME))  # the output is about to change: no longer that finished run
    render_id = str(previous["render_id"]) if same and previous.get("render_id") else RenderManifest.new_render_id()
    manifest = RenderManifest(folder(frames_uri), tuple(frames), digest, render_id)
    store.write(join(out, PLAN_NAME), plan_json)  # with the same digest: the same bytes again
    store.write(join(out, MANIFEST_NAME), manifest.to_json())
    log.info("plan %s: %s", digest[:12], plan.summary)
    return PlanStepResult(plan, manifest, unusable, complete)


def load_plan(store: Store, output_uri: str, config: RunConfig) -> tuple[Plan, RenderManifest]:
    """The plan and manifest the plan step wrote, checked against ``config`` (same digest)."""
    out = folder(output_uri)
    manifest = RenderManifest.from_json(store.read(join(out, MANIFEST_NAME)), join(out, MANIFEST_NAME))
    plan_uri = join(out, manifest.plan or PLAN_NAME)  # an edited plan is recorded under its own name
    plan_json = store.read(plan_uri)
    if run_digest(plan_json, config.render, manifest) != manifest.digest:
        raise ValueError(f"{plan_uri} and the render options do not give the digest in {MANIFEST_NAME}: the "
                         "plan or the options changed since the plan step; run it again (an edited plan: "
                         "record it with postprocess.edited.record_plan)")
    return Plan.loads(plan_json), manifest


def render_step(store: Store, output_uri: str, config: RunConfig, *, index: int = 0, count: int = 1,
                plan: Plan | None = None, manifest: RenderManifest | None = None,
                progress: Callable[[int], object] | None = None) -> RenderStats:
    """Render slice ``index`` of ``count`` (all frames by default) from the written plan."""
    if plan is None or manifest is None:
        plan, manifest = load_plan(store, output_uri, config)
    return render_frames(store, plan, manifest, output_uri, config.render, workers=config.threads,
                         index=index, count=count, progress=progress)


def finalize_step(store: Store, output_uri: str, config: RunConfig, *, plan: Plan | None = None,
                  manifest: RenderManifest | None = None) -> dict[str, Any]:
    """Check every frame has its output, then write the completion marker (last)."""
    if plan is None or manifest is None:
        plan, manifest = load_plan(store, output_uri, config)
    out = folder(output_uri)
    done = read_progress(store, out, manifest.render_id)
    present = {obj.key for obj in store.list(out)}
    absent = [f.key for f in manifest.frames if f.number not in done or f.key not in present]
    if absent:
        raise IncompleteOutputError(f"{len(absent)} of {len(manifest.frames)} frames have no output for this plan "
                                    f"under {out} (first: {', '.join(absent[:5])}); render them, then finalize again")
    summary = plan.summary
    marker = {
        "schema": MARKER_SCHEMA,
        "digest": manifest.digest,
        "frames": len(manifest.frames),
        "frames_blurred": summary.get("frames_with_boxes", 0),
        "frames_blurred_whole": summary.get("full_frames", 0),
        "boxes_blurred": summary.get("boxes", 0),
        "plan": manifest.plan or PLAN_NAME,  # which plan was rendered (README: "Reliability")
        **({"plan_source": manifest.plan_source} if manifest.plan else {}),
        "summary": summary,
        "options": config.to_dict(),
        "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.write(join(out, MARKER_NAME), json.dumps(marker, indent=1).encode())
    log.info("complete: %d frames under %s (digest %s)", len(manifest.frames), out, manifest.digest[:12])
    return marker


def run(frames_uri: str, results_uri: str, output_uri: str, config: RunConfig | None = None,
        references_uri: str | None = None, *, store: Store | None = None,
        progress: Callable[[int], object] | None = None) -> RunSummary:
    """Plan, render and finalize in one go (see the module docstring).

    ``progress``: optional callable taking the number of frames just finished (e.g. ``tqdm.update``).
    Raises :class:`LocationError`, :class:`MissingResultsError`, ``postprocess.reading.FrameListError``,
    ``postprocess.identity.IdentityInputError``, :class:`~postprocess.storage.StorageError`,
    :class:`~postprocess.render.RenderError`, :class:`IncompleteOutputError`.
    """
    started = time.monotonic()
    config = config or RunConfig()
    store = store or Store(max_pool_connections=max(10, config.threads + 4))
    step = plan_step(store, frames_uri, results_uri, output_uri, config, references_uri)
    summary = RunSummary(output=folder(output_uri), digest=step.manifest.digest, frames=len(step.manifest.frames),
                         missing_results=step.missing, plan=step.plan.summary)
    if step.already_complete:
        log.info("already complete with the same plan and options: nothing to do")
        summary.already_complete = True
        summary.skipped = summary.frames
    else:
        stats = render_step(store, output_uri, config, plan=step.plan, manifest=step.manifest, progress=progress)
        summary.rendered, summary.copied, summary.skipped = stats.rendered, stats.copied, stats.skipped
        summary.full_frames, summary.faces = stats.full_frames, stats.faces
        finalize_step(store, output_uri, config, plan=step.plan, manifest=step.manifest)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
