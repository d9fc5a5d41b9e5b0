"""Rendering again from an edited plan (the review page's Save, or a plan edited by hand), on S3 or
in local folders, after a run (``postprocess.run``) has written its output.

An edited plan is a new, recorded input, not a corrupted one. :func:`record_plan`:

1. reads the plan at ``plan_uri`` (anywhere: beside the original, another prefix, a local file) and
   checks it before anything is written: it follows ``face-blur/plan/v1``, has every frame of the
   run's manifest, and the frame size of the plan it replaces;
2. copies its bytes, unchanged, into the output as ``face-blur-plan-<sha256[:16]>.json``: the plan
   step's own ``face-blur-plan.json`` is never overwritten, and a later change to the source cannot
   alter what was rendered;
3. writes a new manifest (``face-blur-frames.json``) for the same frames, naming that copy and the
   source, with the digest of the edited plan, the render options and the frames (so a new render
   id, and every frame is rendered again); a completion marker of another digest is removed first.

Then ``render_step`` (or Batch array children) and ``finalize_step`` work as after a plan step; the
marker names the plan rendered (``plan``: the copy's name, ``plan_source``: where it came from).
:func:`rerender` does the three in one go; ``python -m postprocess.batch --plan URI`` records it in
the plan step. Recording the same edited plan again changes nothing and a finished render stays
finished. A new plan step (deciding again from the results) goes back to ``face-blur-plan.json``.

An output with no run yet (the review page renders into ``<plan folder>/reviewed/``) is started
from ``frames_uri``: the frames are listed there, and the plan's frame size is checked against the
first frame, so the page and ``python -m postprocess.batch --plan`` share this one path.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from postprocess.plan_format import Plan
from postprocess.reading import list_frames
from postprocess.render import MANIFEST_NAME, RenderManifest
from postprocess.run import (
    MARKER_NAME,
    PLAN_NAME,
    PlanStepResult,
    RunConfig,
    RunSummary,
    _read_json,
    check_locations,
    finalize_step,
    load_plan,
    render_step,
    run_digest,
)
from postprocess.storage import StorageError, Store, folder, join

log = logging.getLogger(__name__)

EDITED_PREFIX = "face-blur-plan-"


class EditedPlanError(ValueError):
    """An edited plan that cannot replace the run's plan; the message names the plan and why."""


def edited_name(plan_json: bytes) -> str:
    return f"{EDITED_PREFIX}{hashlib.sha256(plan_json).hexdigest()[:16]}.json"


def _current(store: Store, out: str) -> tuple[RenderManifest, bytes]:
    try:
        manifest = RenderManifest.from_json(store.read(join(out, MANIFEST_NAME)), join(out, MANIFEST_NAME))
        return manifest, store.read(join(out, manifest.plan or PLAN_NAME))
    except StorageError as exc:
        if exc.missing:
            raise EditedPlanError(f"{out} has no finished plan step ({exc}): run the post-processing once "
                                  "before rendering an edited plan") from None
        raise


def _fresh(store: Store, frames_uri: str, out: str, config: RunConfig) -> tuple[RenderManifest, tuple[int, int]]:
    """A manifest for an output that has no run yet: the frames under ``frames_uri``, and their size."""
    import io

    from PIL import Image

    frames_uri = folder(frames_uri)
    check_locations(frames_uri, frames_uri, out)
    frames = list_frames(store, frames_uri, config.frame_pattern)
    with Image.open(io.BytesIO(store.read(join(frames_uri, frames[0].key)))) as first:
        size = first.size
    return RenderManifest(frames_uri, tuple(frames), "", RenderManifest.new_render_id()), size


def record_plan(store: Store, output_uri: str, plan_uri: str, config: RunConfig,
                frames_uri: str | None = None) -> PlanStepResult:
    """Steps 1-3 of the module docstring; returns what a plan step returns. ``frames_uri``: where
    the frames are when ``output_uri`` has no run yet (else the run's own manifest says)."""
    out = folder(output_uri)
    if frames_uri is not None and not store.exists(join(out, MANIFEST_NAME)):
        manifest, size = _fresh(store, frames_uri, out, config)
    else:
        manifest, current_json = _current(store, out)
        check_locations(manifest.frames_uri, manifest.frames_uri, out)
        current = Plan.loads(current_json)
        size = (current.width, current.height)
    plan_json = store.read(plan_uri)
    try:
        plan = Plan.loads(plan_json)
    except ValueError as exc:
        raise EditedPlanError(f"{plan_uri}: {exc}") from None
    if (plan.width, plan.height) != size:
        raise EditedPlanError(f"{plan_uri} is for {plan.width}x{plan.height} frames; the frames under "
                              f"{manifest.frames_uri} are {size[0]}x{size[1]}")
    known = set(int(i) for i in plan.frame_indices)
    absent = [f for f in manifest.frames if f.number not in known]
    if absent:
        raise EditedPlanError(f"{plan_uri} lacks {len(absent)} of the {len(manifest.frames)} frames under "
                              f"{manifest.frames_uri} (first: {absent[0].key}, number {absent[0].number}): every "
                              "frame must stay in the plan")
    digest = run_digest(plan_json, config.render, manifest)
    name = edited_name(plan_json)
    marker = _read_json(store, join(out, MARKER_NAME))
    complete = manifest.digest == digest and marker is not None and marker.get("digest") == digest
    if marker is not None and marker.get("digest") != digest:
        store.delete(join(out, MARKER_NAME))  # the output is about to change: no longer that finished run
    render_id = manifest.render_id if manifest.digest == digest else RenderManifest.new_render_id()
    store.write(join(out, name), plan_json)
    recorded = RenderManifest(manifest.frames_uri, manifest.frames, digest, render_id, name, plan_uri)
    store.write(join(out, MANIFEST_NAME), recorded.to_json())
    log.info("edited plan %s recorded as %s (digest %s): %s", plan_uri, join(out, name), digest[:12], plan.summary)
    return PlanStepResult(plan, recorded, [int(i) for i in plan.full_frames], complete)


def rerender(output_uri: str, plan_uri: str, config: RunConfig | None = None, *, store: Store | None = None,
             progress: Any = None, frames_uri: str | None = None) -> RunSummary:
    """Record the edited plan, render every frame from it, finalize (see the module docstring)."""
    started = time.monotonic()
    config = config or RunConfig()
    store = store or Store(max_pool_connections=max(10, config.threads + 4))
    step = record_plan(store, output_uri, plan_uri, config, frames_uri)
    summary = RunSummary(output=folder(output_uri), digest=step.manifest.digest, frames=len(step.manifest.frames),
                         plan=step.plan.summary)
    if step.already_complete:
        summary.already_complete, summary.skipped = True, summary.frames
    else:
        plan, manifest = load_plan(store, output_uri, config)  # as a Batch render job reads it back
        stats = render_step(store, output_uri, config, plan=plan, manifest=manifest, progress=progress)
        summary.rendered, summary.copied, summary.skipped = stats.rendered, stats.copied, stats.skipped
        summary.full_frames, summary.faces = stats.full_frames, stats.faces
        finalize_step(store, output_uri, config, plan=plan, manifest=manifest)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
