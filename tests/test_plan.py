"""The plan: JSON round trip, edits a reviewer makes, what it must never contain, and options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from decisions_helpers import DIM, Appearance, box_at, build_results, people, photo, synthetic_video

from contract import encode_embedding
from postprocess.config import Pick, PlanConfig
from postprocess.plan import make_plan
from postprocess.plan_format import SCHEMA, Plan, PlanError


@pytest.fixture(scope="module")
def scene():
    """Alice and Bob in two shots, a reference photo of Alice, frames 50-52 without results."""
    alice, bob = people(2, seed=21)
    apps = [Appearance(alice, range(0, 90), lambda f: box_at(150 + f, 180, 70), missed={20, 21}),
            Appearance(bob, range(10, 90), lambda f: box_at(480, 150, 60)),
            Appearance(bob, range(70, 75), lambda f: box_at(620, 340, 80))]  # partly outside the frame
    results = build_results(apps, 100, cuts=[60])
    for f in (50, 51, 52):
        del results[f]
    refs = {"alice": {"alice.jpg": photo(alice)}}
    return results, refs


@pytest.fixture(scope="module")
def plan(scene):
    results, refs = scene
    return make_plan(results, PlanConfig(mode="unknown", identity_threshold=0.3, identity_margin=0.05), refs,
                     missing=[50, 51, 52])


def every_frame(plan):
    return {int(f): plan.boxes(int(f)).round(1).tolist() for f in plan.frame_indices}


def test_plan_round_trips_through_json(plan):
    again = Plan.loads(plan.dumps())
    assert every_frame(again) == every_frame(plan)
    assert again.summary == plan.summary
    assert again.frame_indices.tolist() == list(range(100))
    assert [again.is_full_frame(f) for f in (49, 50, 52, 53)] == [False, True, True, False]
    assert again.to_dict() == json.loads(plan.dumps())


def test_an_edited_decision_changes_the_boxes_to_blur(plan):
    data = json.loads(plan.dumps())
    kept = [s for s in data["sequences"] if s["decision"] == "keep"]
    assert kept, "Alice should be kept clear in mode unknown"
    frame = kept[0]["first"] + 5
    before = len(plan.boxes(frame))
    for s in kept:
        s["decision"] = "blur"  # the reviewer wants Alice blurred after all
    edited = Plan.from_dict(data)
    assert len(edited.boxes(frame)) == before + 1
    assert edited.summary["kept"] == 0 and edited.summary["blurred"] == plan.summary["blurred"] + len(kept)
    for s in data["sequences"]:
        s["decision"] = "keep"
    assert all(len(b) == 0 for b in every_frame(Plan.from_dict(data)).values())


def test_an_edited_box_is_followed(plan):
    data = json.loads(plan.dumps())
    seq = next(s for s in data["sequences"] if s["decision"] == "blur")
    seq["boxes"][0] = [1, 2, 30, 40]
    assert [1, 2, 30, 40] in Plan.from_dict(data).boxes(seq["first"]).tolist()


def test_the_plan_never_contains_embeddings(scene, plan):
    results, refs = scene
    text = plan.dumps().decode()
    for f in (0, 30, 80):
        for e in results[f].faces.embedding:
            assert encode_embedding(e) not in text
    assert encode_embedding(refs["alice"]["alice.jpg"].faces.embedding[0]) not in text

    def walk(node):
        if isinstance(node, dict):
            assert not {"embedding", "embeddings"} & set(node), "an embedding field"
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            assert len(node) != DIM or not all(isinstance(v, float) for v in node), "an embedding-sized vector"
            for v in node:
                walk(v)

    walk(json.loads(text))


def test_the_plan_records_how_each_sequence_was_decided(plan):
    data = json.loads(plan.dumps())
    assert data["schema"] == SCHEMA and data["embedder"] == "mobilefacenet" and data["detector"] == "centerface"
    assert data["options"]["mode"] == "unknown" and data["identity"]["references"] == {"alice": ["alice.jpg"]}
    assert data["full_frames"] == [[50, 52]] and data["frames"] == [[0, 99]]
    assert data["shots"] == [[0, 59], [60, 99]]
    for s in data["sequences"]:
        assert len(s["boxes"]) == s["last"] - s["first"] + 1 == len(s["rows"])
        assert s["decision"] in ("blur", "keep", "drop") and s["reason"]
        if s["decision"] != "drop":
            assert s["threshold"] == 0.3 and s["margin"] == 0.05 and "alice" in s["scores"]
    alice = [s for s in data["sequences"] if s["decision"] == "keep"]
    assert "iid" in alice[0]["rows"], "Alice's missed frames 20-21 are filled"


def test_boxes_are_clamped_to_the_frame(plan):
    boxes = np.concatenate([plan.boxes(f) for f in range(100)])
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 640 and boxes[:, [1, 3]].max() <= 360
    assert len(plan.boxes(72)) == 2, "Bob's box partly outside the frame is still blurred"


def test_plan_without_results_blurs_missing_frames_whole():
    plan = make_plan({}, PlanConfig(), missing=[0, 1, 2])
    assert all(plan.is_full_frame(f) for f in range(3)) and plan.summary["sequences"] == 0


def test_summary_counts_follow_the_synthetic_video():
    plan = make_plan(synthetic_video(3000, seed=5), PlanConfig())
    summary = plan.summary
    assert summary["frames"] == 3000 and summary["shots"] > 3
    assert summary["sequences"] == summary["blurred"] + summary["dropped"] and summary["kept"] == 0
    assert summary["faces"] <= summary["boxes"]


def test_the_same_input_gives_the_same_plan():
    results = synthetic_video(600, seed=9)
    assert make_plan(results, PlanConfig()).dumps() == make_plan(results, PlanConfig()).dumps()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(schema="face-blur/plan/v0"), "schema"),
    (lambda d: d.update(width=-1), "width"),
    (lambda d: d["sequences"][0].update(decision="maybe"), r"sequences\[0\].*decision"),
    (lambda d: d["sequences"][0]["boxes"].pop(), r"sequences\[0\].*one box per frame"),
    (lambda d: d["sequences"][0].update(boxes=[[1, 2, 3]]), r"sequences\[0\]\.boxes"),
    (lambda d: d["sequences"][0].pop("decision"), r"sequences\[0\]\.decision is missing"),
    (lambda d: d.update(full_frames=[[5, 2]]), "full_frames"),
])
def test_malformed_plans_are_refused_naming_the_field(plan, edit, message):
    data = json.loads(plan.dumps())
    edit(data)
    with pytest.raises(PlanError, match=message):
        Plan.from_dict(data)


def test_not_json_is_refused():
    with pytest.raises(PlanError, match="not JSON"):
        Plan.loads(b"{")


@pytest.mark.parametrize(("text", "expected"), [
    ("120:640:360", Pick(120, 640, 360)),
    (" 7 : 10.5 : 3 ", Pick(7, 10.5, 3)),
    ("120:640", ValueError),
    ("-1:5:5", ValueError),
    ("a:b:c", ValueError),
])
def test_pick_parse(text, expected):
    if expected is ValueError:
        with pytest.raises(ValueError, match="FRAME:X:Y"):
            Pick.parse(text)
    else:
        assert Pick.parse(text) == expected


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"mode": "some"}, "mode"),
    ({"mode": "select"}, "picks"),
    ({"picks": ("1:2:3",)}, "picks"),
    ({"pick_action": "hide"}, "pick_action"),
    ({"identity_threshold": 1.5}, "identity_threshold"),
    ({"identity_margin": -0.1}, "identity_margin"),
    ({"min_samples": 0}, "min_samples"),
    ({"min_samples": 5, "max_samples": 4}, "max_samples"),
    ({"cut_threshold": 0}, "cut_threshold"),
    ({"cut_spike_ratio": 0.5}, "cut_spike_ratio"),
    ({"max_cost": 1.5}, "max_cost"),
    ({"embedding_weight": -1}, "embedding_weight"),
    ({"iou_weight": 0, "distance_weight": 0}, "iou_weight"),
    ({"max_gap": -1}, "max_gap"),
    ({"join_gap": -1}, "join_gap"),
    ({"interpolation": "cubic"}, "interpolation"),
    ({"min_length": 0}, "min_length"),
    ({"smooth_window": 0}, "smooth_window"),
    ({"pad_frames": -2}, "pad_frames"),
    ({"pad_growth": 2}, "pad_growth"),
])
def test_plan_config_names_the_bad_option(kwargs, field):
    with pytest.raises(ValueError, match=f"PlanConfig.{field}"):
        PlanConfig(**kwargs)


def test_plan_config_round_trips_and_parses_pick_strings():
    config = PlanConfig(mode="select", picks=("5:10:20",), pick_action="keep")
    assert config.picks == (Pick(5, 10, 20),)
    assert PlanConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_reviewer_can_add_a_missed_face(plan):
    data = json.loads(plan.dumps())
    data["sequences"].append({"id": 999, "shot": 0, "first": 5, "boxes": [[10, 10, 50, 60]] * 3, "decision": "blur"})
    edited = Plan.from_dict(data)
    assert [10, 10, 50, 60] in edited.boxes(7).tolist() and [10, 10, 50, 60] not in edited.boxes(8).tolist()
    assert edited.summary["sequences"] == plan.summary["sequences"] + 1


class CountingResults(dict):
    """A mapping that counts reads, like a store that parses each result from disk on access."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads = {}

    def __getitem__(self, frame):
        self.reads[frame] = self.reads.get(frame, 0) + 1
        return super().__getitem__(frame)

    def values(self):
        raise AssertionError("make_plan must read results by frame, once each")


@pytest.mark.parametrize("mode", ["all", "unknown"])
def test_each_frame_result_is_read_once_plus_a_few_samples(scene, mode):
    results, refs = scene
    counting = CountingResults(results)
    config = PlanConfig(mode=mode, identity_threshold=0.3)
    plan = make_plan(counting, config, refs if mode == "unknown" else None)
    assert set(counting.reads) == set(results)
    extra = sum(counting.reads.values()) - len(results)
    if mode == "all":
        assert extra == 0
    else:
        assert 0 < extra <= config.max_samples * plan.summary["sequences"]


def test_unusable_identity_inputs_fail_before_the_pass_over_the_results(scene):
    results, refs = scene
    photo_result = refs["alice"]["alice.jpg"]
    wrong = {"alice": {"alice.jpg": photo(photo_result.faces.embedding[0], embedder="arcface-r100")}}
    for config, references in [(PlanConfig(mode="unknown"), None), (PlanConfig(mode="known"), wrong)]:
        counting = CountingResults(results)
        with pytest.raises(ValueError):
            make_plan(counting, config, references)
        assert sum(counting.reads.values()) <= 1
