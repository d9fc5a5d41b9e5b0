"""Mode select end to end (issue #9): one pick on a real face finds the same person after a cut.

The real detector and the real MobileFaceNet analyse a moving scene built from the shared photos
(tests/scenes.py: three people, a cut, two of them again elsewhere); one pick in the first frame."""

from __future__ import annotations

import numpy as np
import pytest
from postprocess_helpers import face_hidden, face_untouched
from scenes import make_scene

from handler.detector import DetectorConfig
from handler.pipeline import PipelineConfig, load_pipeline
from postprocess.blur import Blurrer, RenderConfig
from postprocess.config import Pick, PlanConfig
from postprocess.plan import make_plan


@pytest.fixture(scope="module")
def analysed(faces_dir, test_model_dir):
    scene = make_scene(faces_dir, size=(640, 360), frames=20, empty=0)
    pipeline = load_pipeline(PipelineConfig(model_dir=test_model_dir, detector=DetectorConfig(backend="centerface"),
                                            embedder="mobilefacenet", device="cpu"))
    results = {i + 1: pipeline.analyse(frame, i + 1) for i, frame in enumerate(scene.frames)}
    return scene, results


@pytest.mark.parametrize("action", ["blur", "keep"])
def test_one_pick_finds_the_same_person_after_the_cut(analysed, action):
    scene, results = analysed
    x1, y1, x2, y2 = scene.truth[0]["obama"]
    pick = Pick(1, (x1 + x2) / 2, (y1 + y2) / 2)
    plan = make_plan(results, PlanConfig(mode="select", picks=(pick,), pick_action=action))
    assert len(plan.shots) >= 2, "the scene has a cut"
    blurrer = Blurrer(RenderConfig())
    after_cut = 0
    for i, (frame, truth) in enumerate(zip(scene.frames, scene.truth, strict=True)):
        out = frame.copy()
        blurrer.blur_in_place(out, plan.boxes(i + 1))
        for person, box in truth.items():
            hide = (person == "obama") == (action == "blur")
            if hide:
                ok, why = face_hidden(scene.reference(i), out, box)
            else:
                ok, why = face_untouched(frame, out, box)
                if not ok and person != "obama":
                    # a bystander may be blurred where the plan was in doubt about it, or grazed by the
                    # blur of the picked face beside it, but never hidden for being someone else
                    doubt = any(_overlaps(s, i + 1, box) for s in plan.sequences if s.borderline)
                    ok = doubt or not face_hidden(frame, out, box)[0]
            assert ok, f"{action}: frame {i + 1}, {person}: {why}"
        after_cut += i >= scene.cut_at and "obama" in truth
    assert after_cut >= 5, "obama appears after the cut"
    matched = [s for s in plan.sequences if s.first > scene.cut_at and s.decision == action and not s.borderline]
    assert any("matches picked person" in s.reason for s in matched), "the pick was found again after the cut"


def _overlaps(sequence, frame: int, box) -> bool:
    if not sequence.first <= frame <= sequence.last:
        return False
    bx = np.asarray(sequence.boxes[frame - sequence.first], float)
    ix = max(0.0, min(bx[2], box[2]) - max(bx[0], box[0])) * max(0.0, min(bx[3], box[3]) - max(bx[1], box[1]))
    return ix > 0.3 * (box[2] - box[0]) * (box[3] - box[1])
