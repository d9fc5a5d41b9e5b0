"""People across the whole video (postprocess/persons.py) on synthetic embeddings: a certain match
carried to the person's doubtful sequences, only in the safe direction per mode; partial faces
decided by their person; two faces in one frame are two people; the plan's persons list."""

from __future__ import annotations

import json

import numpy as np
from decisions_helpers import Appearance, box_at, build_results, people, photo, unit

from postprocess.config import Pick, PlanConfig
from postprocess.plan import Plan, make_plan

ZONE = {"identity_threshold": 0.4, "identity_margin": 0.1}  # match >= 0.5, no match < 0.3


def blend(a: np.ndarray, b: np.ndarray, cos: float) -> np.ndarray:
    """A unit vector at cosine ``cos`` to ``a``, turned towards ``b``."""
    b = unit(b - (b @ a) * a)
    return unit(cos * a + np.sqrt(1 - cos ** 2) * b)


def reference(identity: np.ndarray, similarity: float) -> np.ndarray:
    """A reference photo's embedding that the person's (noisy) video embeddings score about ``similarity`` against."""
    other = unit(np.random.default_rng(5).normal(size=identity.shape))
    return blend(identity, other, min(similarity * np.sqrt(1 + 0.8 ** 2), 1.0))


def two_shots(far_cos: float, stranger: np.ndarray | None = None, n: int = 40):
    """Alice far (her embedding at ``far_cos`` to her close-up self) beside Bob in shot 0, Alice close beside
    Bob in shot 1 (cut at n/2); optionally a third person in shot 0."""
    alice, bob, other = people(3, seed=21)
    far = blend(alice, other, far_cos)
    cut = n // 2
    apps = [Appearance(far, range(cut), lambda f: box_at(160, 180, 40)),
            Appearance(bob, range(n), lambda f: box_at(480, 180, 70)),
            Appearance(alice, range(cut, n), lambda f: box_at(200, 180, 90))]
    if stranger is not None:
        apps.append(Appearance(stranger, range(cut), lambda f: box_at(320, 180, 40)))
    return build_results(apps, n, cuts=[cut]), alice, bob


def at(plan: Plan, frame: int, x: float) -> str:
    """The decision of the sequence whose box holds ``x`` in ``frame``."""
    for s in plan.sequences:
        if s.first <= frame <= s.last:
            b = s.boxes[frame - s.first]
            if b[0] <= x <= b[2]:
                return s.decision
    raise AssertionError(f"no sequence at x={x} in frame {frame}")


def test_unknown_keeps_the_reporter_in_the_far_shot_when_the_close_up_is_certain():
    results, alice, _ = two_shots(far_cos=0.65)  # far: score about 0.7 * 0.65 = 0.45, in doubt alone
    refs = {"alice": {"alice.jpg": photo(reference(alice, 0.7))}}
    plan = make_plan(results, PlanConfig(mode="unknown", **ZONE), refs)
    assert at(plan, 30, 200) == "keep" and at(plan, 30, 480) == "blur"
    assert at(plan, 5, 160) == "keep", "the far shot of the same person is kept: linked to the certain close-up"
    far = next(s for s in plan.sequences if s.first <= 5 <= s.last and s.boxes[5 - s.first][0] < 250)
    assert "same person as sequence" in far.reason and 0.3 <= far.scores["alice"] < 0.5
    alone = make_plan({f: r for f, r in results.items() if f < 20}, PlanConfig(mode="unknown", **ZONE), refs)
    assert at(alone, 5, 160) == "blur", "without the close-up the far shot alone stays in doubt"


def test_a_doubtful_stranger_is_not_kept_on_a_weak_link():
    alice, _bob, other = people(3, seed=21)
    stranger = blend(alice, other, 0.47)  # scores about 0.33 (in doubt), linked to Alice at about 0.45 < strong
    results, alice2, _ = two_shots(far_cos=0.2, stranger=stranger)
    refs = {"alice": {"alice.jpg": photo(reference(alice2, 0.7))}}
    plan = make_plan(results, PlanConfig(mode="unknown", **ZONE), refs)
    assert at(plan, 5, 320) == "blur"
    assert at(plan, 5, 160) == "blur", "a far face unlike the reporter's close-up is blurred"


def test_known_blurs_the_witness_far_away_on_a_weak_link_to_her_certain_close_up():
    results, alice, _ = two_shots(far_cos=0.4)  # far: score about 0.28, a clear non-match on its own
    refs = {"alice": {"alice.jpg": photo(reference(alice, 0.7))}}
    plan = make_plan(results, PlanConfig(mode="known", **ZONE), refs)
    assert at(plan, 30, 200) == "blur" and at(plan, 30, 480) == "keep"
    assert at(plan, 5, 160) == "blur", "blurring on a weak link is the safe side in known"
    alone = make_plan({f: r for f, r in results.items() if f < 20}, PlanConfig(mode="known", **ZONE), refs)
    assert at(alone, 5, 160) == "keep"


def test_a_face_cut_by_the_border_is_decided_by_its_person():
    """select/blur on Alice: Bob whole in shot 0 is clearly someone else; his two frames half out of the
    picture in shot 1 are too few samples to decide alone, and are kept clear as the rest of him is."""
    alice, bob = people(2, seed=4)
    apps = [Appearance(alice, range(40), lambda f: box_at(200, 180, 80)),
            Appearance(bob, range(20), lambda f: box_at(450, 180, 80)),
            Appearance(bob, [28, 29], lambda f: box_at(632, 180, 80), score=0.95)]
    results = build_results(apps, 40, cuts=[20])
    plan = make_plan(results, PlanConfig(mode="select", picks=(Pick(5, 200, 180),), **ZONE))
    assert at(plan, 5, 200) == "blur" and at(plan, 5, 450) == "keep"
    partial = next(s for s in plan.sequences if s.first <= 28 <= s.last and s.boxes[28 - s.first][2] > 600)
    assert partial.decision == "keep" and "partial face" in partial.reason
    person = next(p for p in plan.persons if partial.id in p["sequences"])
    assert len(person["sequences"]) == 2 and person["shots"] == [0, 1] and person["decision"] == "keep"


def test_two_faces_in_one_frame_that_both_match_are_both_blurred_in_unknown():
    alice, bob = people(2, seed=8)
    twin = blend(alice, bob, 0.97)
    results = build_results([Appearance(alice, range(20), lambda f: box_at(180, 180, 70)),
                             Appearance(twin, range(20), lambda f: box_at(460, 180, 70))], 20)
    plan = make_plan(results, PlanConfig(mode="unknown", **ZONE), {"alice": {"a.jpg": photo(reference(alice, 0.7))}})
    assert [s.decision for s in plan.sequences] == ["blur", "blur"]
    assert all("matches 'alice' too" in s.reason for s in plan.sequences)


def test_the_plan_lists_persons_and_reads_plans_without_them():
    results, alice, _ = two_shots(far_cos=0.65)
    refs = {"alice": {"alice.jpg": photo(reference(alice, 0.7))}}
    plan = make_plan(results, PlanConfig(mode="unknown", **ZONE), refs)
    data = json.loads(plan.dumps())
    persons = data["persons"]
    assert [p["id"] for p in persons] == [f"person-{k}" for k in range(1, len(persons) + 1)]
    assert sorted(s for p in persons for s in p["sequences"]) == sorted(s["id"] for s in data["sequences"])
    by_id = {s["id"]: s for s in data["sequences"]}
    alice_p = next(p for p in persons if p["person"] == "alice")
    assert alice_p["shots"] == [0, 1] and alice_p["decision"] == "keep" and not alice_p["borderline"]
    assert {by_id[s]["decision"] for s in alice_p["sequences"]} == {"keep"}
    assert alice_p["frames"] == sum(by_id[s]["rows"].count("d") + by_id[s]["rows"].count("i")
                                    for s in alice_p["sequences"])
    thumb = alice_p["thumbnail"]
    seq = next(by_id[s] for s in alice_p["sequences"] if by_id[s]["first"] <= thumb["frame"] <= by_id[s]["last"])
    assert seq["shot"] == 1, "the thumbnail is the best-quality face: the close-up"
    assert set(alice_p) == {"id", "sequences", "frames", "shots", "thumbnail", "decision", "borderline", "score",
                            "person", "reason"} and isinstance(alice_p["score"], float)
    assert "\"embedding\"" not in plan.dumps().decode()
    del data["persons"]  # a plan written before persons existed
    old = Plan.from_dict(data)
    assert old.persons == [] and [s.decision for s in old.sequences] == [s.decision for s in plan.sequences]


def test_known_keeps_clear_a_doubtful_bystander_seen_beside_the_certain_witness():
    """One person is never twice in a frame: beside the certain witness, a look-alike in the zone of
    doubt is someone else; alone (no certain witness beside him) he stays blurred."""
    alice, other = people(2, seed=13)
    lookalike = blend(alice, other, 0.6)  # scores about 0.4 against Alice's photo: in doubt alone
    apps = [Appearance(alice, range(30), lambda f: box_at(180, 180, 80)),
            Appearance(lookalike, range(30), lambda f: box_at(460, 180, 80))]
    refs = {"alice": {"a.jpg": photo(reference(alice, 0.7))}}
    plan = make_plan(build_results(apps, 30), PlanConfig(mode="known", **ZONE), refs)
    assert at(plan, 10, 180) == "blur" and at(plan, 10, 460) == "keep"
    beside = next(s for s in plan.sequences if s.boxes[0][0] > 320)
    assert "seen in the same frames as sequence" in beside.reason and 0.3 <= beside.scores["alice"] < 0.5
    alone = make_plan(build_results(apps[1:], 30), PlanConfig(mode="known", **ZONE), refs)
    assert [s.decision for s in alone.sequences] == ["blur"]


def test_a_sequence_is_mixed_only_where_one_half_clearly_does_not_match():
    """Tracking may have joined two people where one half of a sequence clearly does not match
    (under threshold - margin) and the sequence or its other half clearly does: such a sequence takes
    no verdict from its person. One scoring unevenly within the band (a far, small face) does."""
    from postprocess.identity import PersonScore
    from postprocess.persons import _mixed

    def mixed(score: float, halves: tuple[float, float], samples: int = 6) -> bool:
        return _mixed(PersonScore("p", score, samples, 0, halves), 0.4, 0.18, 3)

    assert mixed(0.65, (0.15, 0.70)) and mixed(0.45, (0.10, 0.62))  # one half another person
    assert not mixed(0.512, (0.512, 0.589))  # tests/test_identity_video.py's wide shot, adaptively sampled
    assert not mixed(0.65, (0.60, 0.70)) and not mixed(0.10, (0.05, 0.15))  # halves agree
    assert not mixed(0.45, (0.10, 0.62), samples=5)  # too few samples to judge halves
