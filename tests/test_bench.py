"""The benchmark harness: its test frames hold the faces they are named for, and ``python -m bench
--quick`` produces every table (a smoke run; no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_frames_have_the_sizes_and_face_counts_asked_for(faces_dir):
    from bench.frames import make_frames

    frames = make_frames(faces_dir, sizes=((640, 360), (1280, 720)), face_counts=(0, 1, 5))
    assert [(f.size, f.faces) for f in frames] == [((640, 360), 0), ((640, 360), 1), ((640, 360), 5),
                                                   ((1280, 720), 0), ((1280, 720), 1), ((1280, 720), 5)]
    for f in frames:
        assert f.image.shape == (f.size[1], f.size[0], 3) and f.image.dtype == np.uint8
        assert f.boxes.shape == (f.faces, 4)
        inside = (f.boxes[:, 0] >= 0) & (f.boxes[:, 1] >= 0) & (f.boxes[:, 2] <= f.size[0]) & (
            f.boxes[:, 3] <= f.size[1])
        assert inside.all(), f"{f.name}: a pasted face lies outside the frame"


def test_a_sixth_face_is_refused(faces_dir):
    from bench.frames import make_frames

    with pytest.raises(ValueError, match="at most 5 faces"):
        make_frames(faces_dir, sizes=((640, 360),), face_counts=(6,))


def test_unknown_section_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "bench", "--sections", "inference,nonsense"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nonsense" in proc.stderr


def _table(text: str, title_start: str) -> list[list[str]]:
    """Rows (cells) of the markdown table whose heading starts with ``title_start``."""
    match = re.search(r"^### " + re.escape(title_start) + r".*?\n\n(.*?)\n\n", text, re.S | re.M)
    assert match, f"no table '{title_start}...' in the output"
    lines = match.group(1).splitlines()[2:]  # header and rule
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


@pytest.mark.slow
def test_quick_run_writes_every_table(tmp_path, faces_dir, mobilefacenet_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert "### Detection per frame" in proc.stdout  # printed as well as written

    system = dict(_table(text, "System"))
    assert system["cores usable"].isdigit() and system["CPU"]
    assert "version: onnxruntime" in system

    detection = _table(text, "Detection per frame")
    assert [r[0] for r in detection] == ["640x360 0 faces", "640x360 1 face", "640x360 5 faces"]
    # the peer finds exactly the faces each frame was made with (the frames are what they say)
    assert [re.search(r"\((\d+)\)", r[4]).group(1) for r in detection] == ["0", "1", "5"]
    for row in detection:
        assert all(re.match(r"^[\d,.]+ \(\d+\)$", cell) for cell in row[1:]), row

    embedders = {r[0]: r for r in _table(text, "Embedders")}
    assert re.match(r"^[\d,.]+$", embedders["mobilefacenet"][3]), embedders["mobilefacenet"]

    per_frame = _table(text, "Per frame")
    assert len(per_frame) == 3 and all(re.match(r"^[\d,.]+$", c) for r in per_frame for c in r[1:])

    assert "skipped in --quick" in text.split("### Serving", 1)[1].split("###", 1)[0]

    plan = _table(text, "Planning")
    assert {r[0] for r in plan} >= {"all"} and all(float(r[1]) > 0 for r in plan)

    render = _table(text, "Rendering")
    assert len(render) == 3 and all(r[3].endswith("x") for r in render)

    sizes = {r[0]: float(r[1].replace(",", "")) for r in _table(text, "Frame results JSON")}
    assert sizes["512-d float16 base64"] > sizes["192-d float16 base64"] > sizes["none"] > 0

    e2e = _table(text, "End to end")
    assert [r[0] for r in e2e] == ["face-blur run", "deface"]
    assert all(r[-1] == "ok" for r in e2e), e2e  # both outputs have every input frame
