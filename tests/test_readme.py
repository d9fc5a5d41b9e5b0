"""The README's Python example runs as written, on a real scene, and does what it says."""

from __future__ import annotations

import re

import numpy as np

from tests.conftest import REPO
from tests.postprocess_helpers import face_hidden, face_untouched
from tests.scenes import REFERENCES, make_scene


def _example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python: the steps composed", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_keeps_the_reporter_and_blurs_everyone_else(faces_dir, test_model_dir):
    scene = make_scene(faces_dir, size=(640, 360), frames=10, empty=0)
    namespace = {"model_dir": test_model_dir, "frames": scene.frames,
                 "reporter_photo": faces_dir / REFERENCES["obama"]}
    exec(compile(_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    out = namespace["anonymised"]
    assert len(out) == len(scene.frames)
    for i, (frame, truth) in enumerate(zip(scene.frames, scene.truth, strict=True)):
        for person, box in truth.items():
            if person == "obama":
                ok, why = face_untouched(frame, out[i], box)
            else:
                ok, why = face_hidden(scene.reference(i), out[i], box)
            assert ok, f"frame {i}, {person}: {why}"
    assert namespace["plan"].summary["kept"] >= 1
    assert not np.array_equal(out[0], scene.frames[0])
