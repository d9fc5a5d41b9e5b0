"""The render the review page starts, in its own process (``python -m faceblur.review.job SPEC``),
so the page stays responsive while frames are blurred and encoded (and a crash of the render
cannot take the server down). It reports on stdout, one JSON object a line: ``{"done": n,
"total": t}`` as frames are written, then ``{"ok": true, "output": ...}`` or ``{"error": "..."}``.

Local inputs go through ``faceblur.local.render`` (as ``face-blur render --plan``). On S3 the
edited plan is a new, recorded input of the post-processing stage: it is written to the output
prefix as ``face-blur-plan.json`` with a frames manifest whose digest is computed from it, then
``postprocess.run.render_step`` and ``finalize_step`` render and mark the output complete, as a
run of the stage would (so a later ``python -m postprocess.batch --step render`` there checks out).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any


class _Reporter:
    def __init__(self, total: int) -> None:
        self.done, self.total, self._last = 0, total, 0.0
        self._lock = threading.Lock()

    def __call__(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                emit({"done": self.done, "total": self.total})


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def render_local(spec: dict[str, Any], report: _Reporter) -> str:
    from faceblur.local import render
    from faceblur.video import EncodeConfig
    from postprocess.blur import RenderConfig

    output = Path(spec["output"])
    render(Path(spec["input"]), Path(spec["plan"]), output, RenderConfig.from_dict(spec["render"]),
           EncodeConfig(**spec.get("encode", {})), int(spec.get("workers", 2)), progress=False,
           overwrite=True, on_frames=report)
    return str(output)


def render_s3(spec: dict[str, Any], report: _Reporter) -> str:
    """The post-processing render path on an edited plan (see the module docstring)."""
    from postprocess.blur import RenderConfig
    from postprocess.plan_format import Plan
    from postprocess.reading import list_frames
    from postprocess.render import MANIFEST_NAME, RenderManifest
    from postprocess.run import PLAN_NAME, RunConfig, check_locations, finalize_step, render_step, run_digest
    from postprocess.storage import Store, folder, join

    store = Store()
    frames_uri, output = folder(spec["input"]), folder(spec["output"])
    check_locations(frames_uri, frames_uri, output)
    config = RunConfig(render=RenderConfig.from_dict(spec["render"]), workers=int(spec.get("workers", 0)))
    plan_json = store.read(spec["plan"])
    plan = Plan.loads(plan_json)
    frames = list_frames(store, frames_uri)
    report.total = len(frames)
    digest = run_digest(plan_json, config.render, frames)
    try:
        previous = json.loads(store.read(join(output, MANIFEST_NAME)))
    except Exception:  # none yet, or unreadable: a new render
        previous = {}
    same = previous.get("digest") == digest and previous.get("render_id")
    manifest = RenderManifest(frames_uri, tuple(frames), digest,
                              str(previous["render_id"]) if same else RenderManifest.new_render_id())
    if not same and store.exists(join(output, "face-blur-complete.json")):
        store.delete(join(output, "face-blur-complete.json"))  # about to change: no longer that finished run
    store.write(join(output, PLAN_NAME), plan_json)
    store.write(join(output, MANIFEST_NAME), manifest.to_json())
    render_step(store, output, config, plan=plan, manifest=manifest, progress=report)
    finalize_step(store, output, config, plan=plan, manifest=manifest)
    return output


def main(argv: list[str] | None = None) -> int:
    import logging

    from faceblur.cli import _one_line

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    report = _Reporter(int(spec.get("total", 0)))
    try:
        output = render_s3(spec, report) if spec.get("s3") else render_local(spec, report)
    except Exception as exc:
        emit({"error": _one_line(exc)})
        return 1
    emit({"done": report.done, "total": report.total or report.done})
    emit({"ok": True, "output": output})
    return 0


if __name__ == "__main__":
    sys.exit(main())
