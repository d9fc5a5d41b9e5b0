"""Identity: robust per-sequence scores, fail-safe decisions and the four modes, on synthetic
embeddings (a random unit vector per person plus noise)."""

from __future__ import annotations

import numpy as np
import pytest
from decisions_helpers import Appearance, box_at, build_results, noisy, people, photo, unit

from postprocess.config import Pick, PlanConfig
from postprocess.identity import (
    BORDERLINE,
    MATCH,
    NO_MATCH,
    IdentityInputError,
    PersonScore,
    choose_samples,
    decide,
    quality_weights,
    score_person,
    verdict,
    weighted_median,
)
from postprocess.plan import make_plan
from postprocess.tracking import FaceTrack

VIDEO_NOISE = 0.8  # decisions_helpers.Appearance default


def reference_at(identity: np.ndarray, similarity: float, seed: int = 0) -> np.ndarray:
    """A reference embedding whose expected similarity to the person's video embeddings is ``similarity``."""
    cos = similarity * np.sqrt(1 + VIDEO_NOISE ** 2)
    other = np.random.default_rng(seed).normal(size=identity.shape)
    other -= other @ identity * identity
    return unit(cos * identity + np.sqrt(1 - cos ** 2) * unit(other))


def two_people(n=60, cut=None, where_b=420):
    """Alice (left) and Bob (right) in every frame; optional cut where they swap sides."""
    alice, bob = people(2, seed=11)

    def side(f, x):
        return box_at(x if cut is None or f < cut else 640 - x, 180, 70)

    apps = [Appearance(alice, range(n), lambda f: side(f, 180)), Appearance(bob, range(n), lambda f: side(f, where_b))]
    return build_results(apps, n, cuts=[] if cut is None else [cut]), alice, bob


def decisions_by_x(plan, frame):
    """{'left'|'right': decision} of the sequences present in ``frame``."""
    out = {}
    for s in plan.sequences:
        if s.first <= frame <= s.last:
            box = s.boxes[frame - s.first]
            out["left" if (box[0] + box[2]) / 2 < 320 else "right"] = s.decision
    return out


CONFIG = {"identity_threshold": 0.3, "identity_margin": 0.05}


def test_unknown_keeps_the_reference_person_and_blurs_the_others():
    results, alice, _ = two_people()
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.6))}}
    plan = make_plan(results, PlanConfig(mode="unknown", **CONFIG), refs)
    assert decisions_by_x(plan, 30) == {"left": "keep", "right": "blur"}
    kept = [s for s in plan.sequences if s.decision == "keep"]
    assert kept[0].person == "alice" and kept[0].scores["alice"] > 0.35 and not kept[0].borderline
    assert all(box[0] > 320 for box in plan.boxes(30)), "only Bob's box is blurred"


def test_known_blurs_only_the_reference_person():
    results, alice, _ = two_people()
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.6))}}
    plan = make_plan(results, PlanConfig(mode="known", **CONFIG), refs)
    assert decisions_by_x(plan, 30) == {"left": "blur", "right": "keep"}


def test_a_person_in_two_shots_is_matched_to_one_reference():
    results, alice, _ = two_people(n=80, cut=40)
    refs = {"alice": {"a1.jpg": photo(reference_at(alice, 0.5, 1)), "a2.jpg": photo(reference_at(alice, 0.5, 2))}}
    plan = make_plan(results, PlanConfig(mode="unknown", **CONFIG), refs)
    assert len(plan.shots) == 2 and len(plan.sequences) == 4
    assert decisions_by_x(plan, 20) == {"left": "keep", "right": "blur"}
    assert decisions_by_x(plan, 60) == {"right": "keep", "left": "blur"}, "Alice moved to the right after the cut"
    assert {s.person for s in plan.sequences if s.decision == "keep"} == {"alice"}


@pytest.mark.parametrize("mode", ["unknown", "known"])
def test_a_borderline_score_is_blurred_and_listed_borderline(mode):
    results, alice, _ = two_people()
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.31))}}
    plan = make_plan(results, PlanConfig(mode=mode, **CONFIG), refs)
    left = [s for s in plan.sequences if s.boxes[0][0] < 320][0]
    assert 0.25 <= left.scores["alice"] < 0.35
    assert left.decision == "blur" and left.borderline and "borderline" in left.reason
    assert plan.summary["borderline"] == 1


@pytest.mark.parametrize(("mode", "decision"), [("unknown", "blur"), ("known", "blur")])
def test_too_few_samples_is_borderline_and_blurred(mode, decision):
    (alice,) = people(1, seed=12)
    brief = Appearance(alice, [10, 11], lambda f: box_at(200, 180, 70), score=0.95)  # confident, two frames
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.7))}}
    plan = make_plan(build_results([brief], 30), PlanConfig(mode=mode, **CONFIG), refs)
    (seq,) = plan.sequences
    assert seq.decision == decision and seq.borderline and seq.samples == 2
    assert "only 2 samples" in seq.reason


def test_one_lookalike_frame_does_not_keep_a_stranger_clear():
    """Single frames mislead: one frame of Bob identical to Alice's photo must not un-blur Bob."""
    results, alice, _ = two_people()
    ref = reference_at(alice, 0.6)
    for f in (5, 30, 50):  # Bob is face 1
        results[f].faces.embedding[1] = ref
    plan = make_plan(results, PlanConfig(mode="unknown", **CONFIG), {"alice": {"alice.jpg": photo(ref)}})
    assert decisions_by_x(plan, 30) == {"left": "keep", "right": "blur"}


def test_one_poor_reference_photo_among_three_does_not_spoil_the_match():
    results, alice, bob = two_people()
    photos = {"good1.jpg": photo(reference_at(alice, 0.55, 1)), "good2.jpg": photo(reference_at(alice, 0.55, 2)),
              "poor.jpg": photo(reference_at(alice, 0.0, 3))}
    plan = make_plan(results, PlanConfig(mode="unknown", **CONFIG), {"alice": photos})
    assert decisions_by_x(plan, 30) == {"left": "keep", "right": "blur"}


@pytest.mark.parametrize("action", ["blur", "keep"])
def test_select_finds_the_same_person_after_the_cut(action):
    results, alice, _ = two_people(n=80, cut=40)
    pick = Pick(10, 180, 180)  # Alice, left, in shot 1
    plan = make_plan(results, PlanConfig(mode="select", picks=(pick,), pick_action=action, **CONFIG))
    other = "keep" if action == "blur" else "blur"
    assert decisions_by_x(plan, 20) == {"left": action, "right": other}
    assert decisions_by_x(plan, 60) == {"right": action, "left": other}, "Alice after the cut"
    picked = [s for s in plan.sequences if s.reason.startswith("picked at")]
    assert len(picked) == 1 and picked[0].first == 0


def test_a_pick_that_hits_no_face_is_an_error():
    results, _, _ = two_people()
    with pytest.raises(IdentityInputError, match="12:320:20"):
        make_plan(results, PlanConfig(mode="select", picks=(Pick(12, 320, 20),)))


@pytest.mark.parametrize(("faces", "embedding", "message"), [
    (2, True, "has 2 faces"),
    (0, True, "has 0 faces"),
    (1, False, "no face embedding"),
])
def test_an_unusable_reference_photo_is_named(faces, embedding, message):
    results, alice, _ = two_people(n=10)
    bad = photo(reference_at(alice, 0.6) if embedding else None, faces=faces)
    refs = {"alice": {"alice1.jpg": photo(reference_at(alice, 0.6)), "group.jpg": bad}}
    with pytest.raises(IdentityInputError, match=f"'group.jpg'.*{message}"):
        make_plan(results, PlanConfig(mode="unknown", **CONFIG), refs)


def test_references_from_another_embedder_are_refused():
    results, alice, _ = two_people(n=10)
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.6), embedder="arcface-r100")}}
    with pytest.raises(IdentityInputError, match="'alice.jpg'.*arcface-r100.*mobilefacenet"):
        make_plan(results, PlanConfig(mode="unknown", **CONFIG), refs)


@pytest.mark.parametrize("config", [
    PlanConfig(mode="unknown"), PlanConfig(mode="known"), PlanConfig(mode="select", picks=(Pick(5, 180, 180),)),
])
def test_identity_modes_without_embeddings_blur_everyone_and_say_why(config):
    """Fail closed: no embedder, no decision; every face is blurred and the plan names the fix."""
    alice, bob = people(2)
    results = build_results([Appearance(alice, range(10), lambda f: box_at(180, 180, 70)),
                             Appearance(bob, range(10), lambda f: box_at(420, 180, 70))], 10, embedder="")
    refs = {"alice": {"alice.jpg": photo(alice)}}
    plan = make_plan(results, config, refs)
    assert [s.decision for s in plan.sequences] == ["blur", "blur"]
    why = plan.summary["fail_closed"]
    assert "no face embeddings" in why and "python -m model.fetch" in why
    assert plan.identity["fail_closed"] == why and all(why in s.reason for s in plan.sequences)


def test_mode_all_needs_no_embeddings():
    (alice,) = people(1)
    results = build_results([Appearance(alice, range(10), lambda f: box_at(180, 180, 70))], 10, embedder="")
    plan = make_plan(results, PlanConfig())
    assert all(len(plan.boxes(f)) == 1 for f in range(10))


@pytest.mark.parametrize(("mode", "refs"), [("unknown", None), ("known", {})])
def test_reference_modes_need_references(mode, refs):
    results, _, _ = two_people(n=10)
    with pytest.raises(IdentityInputError, match="reference photos"):
        make_plan(results, PlanConfig(mode=mode), refs)


def test_an_embedder_without_default_threshold_needs_one():
    (alice,) = people(1)
    results = build_results([Appearance(alice, range(10), lambda f: box_at(180, 180, 70))], 10,
                            embedder="new-model")
    refs = {"alice": {"alice.jpg": photo(alice, embedder="new-model")}}
    with pytest.raises(IdentityInputError, match="'new-model'.*identity_threshold"):
        make_plan(results, PlanConfig(mode="unknown"), refs)
    make_plan(results, PlanConfig(mode="unknown", identity_threshold=0.4), refs)


@pytest.mark.parametrize(("score", "samples", "above", "halves", "expected"), [
    (0.50, 16, 12, (0.48, 0.52), MATCH),
    (0.36, 3, 3, (0.36, 0.36), MATCH),
    (0.36, 3, 2, (0.36, 0.36), BORDERLINE),     # the median clears it, too few samples do
    (0.50, 2, 2, (0.5, 0.5), BORDERLINE),       # too few samples
    (0.33, 16, 6, (0.33, 0.33), BORDERLINE),    # within the margin above the threshold
    (0.26, 16, 0, (0.26, 0.26), BORDERLINE),    # within the margin below
    (0.20, 16, 0, (0.18, 0.22), NO_MATCH),
    (0.10, 2, 0, (0.1, 0.1), BORDERLINE),       # too few samples to say anything
    (0.50, 16, 9, (0.05, 0.60), BORDERLINE),    # matches, but one half is someone else
    (0.10, 16, 7, (0.02, 0.55), BORDERLINE),    # no match, but one half is the person
    (0.50, 5, 5, (0.05, 0.60), MATCH),          # too few samples to judge halves
])
def test_fail_safe_verdicts(score, samples, above, halves, expected):
    assert verdict(PersonScore("p", score, samples, above, halves), 0.3, 0.05, 3) == expected


@pytest.mark.parametrize(("mode", "decision"), [("unknown", "blur"), ("known", "blur")])
def test_a_sequence_that_switches_people_halfway_is_borderline(mode, decision):
    """Tracking joined Alice (first half) and Bob (second half): neither keep nor leave clear."""
    alice, bob = people(2, seed=13)
    rng = np.random.default_rng(0)
    samples = np.concatenate([noisy(alice, VIDEO_NOISE, rng, 8), noisy(bob, VIDEO_NOISE, rng, 8)])
    weights = np.r_[np.full(8, 1.0), np.full(8, 1.2)]  # Bob's half slightly better quality: he is the median
    ref = reference_at(alice, 0.6)[None]
    for w in (weights, weights[::-1]):
        score = score_person("alice", samples, w, ref, 0.35)
        d = decide(mode, {"alice": score}, 0.3, 0.05, 3)
        assert d.decision == decision and d.borderline and "half" in d.reason


@pytest.mark.parametrize(("values", "weights", "expected"), [
    ([1, 2, 3], [1, 1, 1], 2),
    ([1, 2, 3, 4], [1, 1, 1, 1], 2),
    ([1, 2, 3], [1, 1, 10], 3),
    ([0.9, 0.1, 0.2], [0.1, 1, 1], 0.2),
    ([0.9, 0.1, 0.2], [3, 1, 1], 0.9),
])
def test_weighted_median(values, weights, expected):
    assert weighted_median(np.array(values), np.array(weights)) == pytest.approx(expected)


def test_quality_prefers_large_confident_frontal_faces():
    from decisions_helpers import landmarks_for

    big, small = box_at(200, 200, 100), box_at(200, 200, 20)
    frontal = landmarks_for(big)
    profile = frontal.copy()
    profile[2, 0] = big[0] + 5  # the nose at the box edge: a turned head
    w = quality_weights(np.stack([big, small, big, big]), np.array([0.9, 0.9, 0.9, 0.3]),
                        np.stack([frontal, landmarks_for(small), profile, frontal]))
    assert w[0] > w[1] and w[0] > w[2] and w[0] > w[3]


def test_samples_are_spread_over_the_sequence():
    m = 100
    frames = np.arange(m)
    boxes = np.stack([box_at(200, 200, 60)] * m)
    t = FaceTrack(0, 0, frames, boxes, np.full(m, 0.9), np.zeros((m, 5, 2)), unit(np.ones((m, 8))))
    rows = choose_samples(t, 10)
    assert len(rows) == 10 and len(set((rows // 10).tolist())) == 10
    assert len(choose_samples(t.rows(slice(0, 4)), 10)) == 4


@pytest.mark.parametrize(
    "embedder, score, expected",
    [
        # mobilefacenet: the zone of doubt [0.22, 0.58] spans both the stills (strangers up to 0.53)
        # and real footage (the same person's sequence at 0.23-0.37, others <= 0.13)
        ("mobilefacenet", 0.70, "match"),
        ("mobilefacenet", 0.53, "borderline"),  # a stranger from the same photo: never kept as the reporter
        ("mobilefacenet", 0.23, "borderline"),  # the witness on dim footage: still blurred in mode known
        ("mobilefacenet", 0.13, "no"),
        ("dlib-resnet", 0.95, "match"),
        ("dlib-resnet", 0.90, "borderline"),
        ("dlib-resnet", 0.80, "no"),
    ],
)
def test_default_zone_of_doubt_per_embedder(embedder, score, expected):
    from postprocess.identity import PersonScore, resolve_margin, resolve_threshold, verdict

    threshold, margin = resolve_threshold(embedder), resolve_margin(embedder)
    s = PersonScore("p", score, samples=8, above=8 if score >= threshold + margin else 0, halves=(score, score))
    assert verdict(s, threshold, margin, min_samples=3) == expected


@pytest.mark.parametrize("mode", ["unknown", "known", "select"])
def test_the_weak_dlib_embedder_fails_closed_unless_allowed(mode, caplog):
    """dlib cannot tell a witness in profile from a stranger: no one is left clear on its word."""
    alice, bob = unit(np.random.default_rng(3).normal(size=(2, 128)))
    results = build_results([Appearance(alice, range(12), lambda f: box_at(180, 180, 70)),
                             Appearance(bob, range(12), lambda f: box_at(420, 180, 70))], 12, embedder="dlib-resnet",
                            dim=128)
    refs = {"alice": {"alice.jpg": photo(reference_at(alice, 0.7), embedder="dlib-resnet")}}
    extra = {"picks": (Pick(5, 180, 180),)} if mode == "select" else {}
    with caplog.at_level("WARNING", logger="postprocess.plan"):
        plan = make_plan(results, PlanConfig(mode=mode, identity_threshold=0.3, **extra), refs)
    assert [s.decision for s in plan.sequences] == ["blur", "blur"]
    assert "--allow-weak-embedder" in plan.summary["fail_closed"] and "dlib-resnet" in plan.summary["fail_closed"]
    assert any("cannot tell people apart" in r.getMessage() for r in caplog.records)
    allowed = make_plan(results, PlanConfig(mode=mode, identity_threshold=0.3, allow_weak_embedder=True, **extra),
                        refs)
    assert sorted(s.decision for s in allowed.sequences) == ["blur", "keep"]
    assert allowed.summary["fail_closed"] == ""
