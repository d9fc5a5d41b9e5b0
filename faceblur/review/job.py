"""The render the review page starts, in its own process (``python -m faceblur.review.job SPEC``),
so the page stays responsive while frames are blurred and encoded (and a crash of the render
cannot take the server down). It reports on stdout, one JSON object a line: ``{"done": n,
"total": t}`` as frames are written, then ``{"ok": true, "output": ...}`` or ``{"error": "..."}``.

Local inputs go through ``faceblur.local.render`` (as ``face-blur render --plan``). On S3 the
edited plan is a new, recorded input of the post-processing stage, through the stage's own path
(``postprocess.edited.rerender``, as ``python -m postprocess.batch --plan``): copied into the output
prefix as ``face-blur-plan-<sha256[:16]>.json`` with a frames manifest whose digest is computed
from it, rendered, and marked complete (so a later ``python -m postprocess.batch --step render``
there checks out).
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
    """The post-processing stage's own path for an edited plan (``postprocess.edited.rerender``)."""
    from postprocess.blur import RenderConfig
    from postprocess.edited import rerender
    from postprocess.run import RunConfig
    from postprocess.storage import folder

    output = folder(spec["output"])
    config = RunConfig(render=RenderConfig.from_dict(spec["render"]), workers=int(spec.get("workers", 0)))
    rerender(output, spec["plan"], config, progress=report, frames_uri=spec["input"])
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
