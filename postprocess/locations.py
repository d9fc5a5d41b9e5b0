"""The one location check: an output never is, lies inside, or contains an input (issue 18).

Every entry point that writes calls :func:`check_output` before it writes anything: ``face-blur
run`` and ``render`` (the input, the reference photos, the output and the plan file),
``postprocess.run`` (frames, results, references), the Lambda (before its claim object), every
AWS Batch step, and the scripts. Paths and ``s3://`` prefixes are compared as folders
(``postprocess.storage.folder``): local paths absolute with symlinks resolved, so ``DIR/sub``,
``DIR/./sub``, ``../DIR/sub`` and a link to ``DIR`` are all caught, and ``s3://b/x`` never matches
``s3://b/x2``. A file is treated as a folder of one (an output equal to the input file overlaps it;
a video beside its input does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from postprocess.storage import folder, overlaps


class LocationError(ValueError):
    """The output overlaps an input location; the message names both."""


def check_output(output: str | Path, inputs: Mapping[str, str | Path | None], what: str = "output") -> None:
    """Raise :class:`LocationError` when ``output`` is, contains or lies inside any of ``inputs``
    (``{name: path or URI}``; ``None`` entries are skipped)."""
    out = str(output)
    for name, value in inputs.items():
        if value is None or str(value) == "":
            continue
        uri = str(value)
        if overlaps(out, uri):
            raise LocationError(f"{what} {_shown(out)} overlaps the {name} location {_shown(uri)} (it "
                                f"{_relation(out, uri)} it): choose an {what} outside every input; nothing is ever "
                                "written under an input")


def _shown(uri: str) -> str:
    f = folder(uri)
    return f if f.startswith("s3://") else f.rstrip("/")


def _relation(out: str, uri: str) -> str:
    fo, fi = folder(out), folder(uri)
    if fo == fi:
        return "is"
    return "lies inside" if fo.startswith(fi) else "contains"


def check_locations(frames_uri: str, results_uri: str, output_uri: str, references_uri: str | None = None) -> None:
    """The post-processing stage's check: the output apart from frames, results and references."""
    check_output(output_uri, {"frames": frames_uri, "results": results_uri, "references": references_uri})
