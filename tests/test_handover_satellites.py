"""Where one sequence's guesses would blur another's face (issue 15): padding ends where a succeeding
face takes the place (a cut the shot detector missed), a fragment of too few samples takes the
verdict of the sequence it continues, and candidates without identity evidence are cut back from a
face kept clear beside them. Synthetic results here; tests/test_identity_video.py and
tests/test_persons_video.py run the real detector and MobileFaceNet on development videos."""

from __future__ import annotations

import numpy as np
from decisions_helpers import Appearance, box_at, build_results, people, photo, unit

from postprocess.config import PlanConfig
from postprocess.identity import Decision
from postprocess.interpolate import pad_track, trim_handovers
from postprocess.plan import make_plan
from postprocess.satellites import cut_back, spare_kept_faces
from postprocess.tracking import FaceTrack

ZONE = {"identity_threshold": 0.4, "identity_margin": 0.1}


def track(tid, frames, box, confidence=0.9):
    frames = np.asarray(list(frames))
    m = len(frames)
    return FaceTrack(tid, 0, frames, np.tile(np.asarray(box, np.float32), (m, 1)), np.full(m, confidence),
                     np.zeros((m, 5, 2)), np.zeros((m, 0)))


def covered(plan, frame: int, box: np.ndarray) -> bool:
    """Whether any blurred box of the plan overlaps ``box`` in ``frame``."""
    for b in plan.boxes(frame):
        if min(b[2], box[2]) > max(b[0], box[0]) and min(b[3], box[3]) > max(b[1], box[1]):
            return True
    return False


def test_padding_stops_where_the_next_person_takes_the_place_after_a_missed_cut():
    """Alice, then Bob in the same place and framing, no cut the shot detector can see (same room):
    neither sequence's padding blurs the other person's first / last frames."""
    alice, bob = people(2, seed=8)
    apps = [Appearance(alice, range(20), lambda f: box_at(300, 180, 100)),
            Appearance(bob, range(20, 40), lambda f: box_at(310, 180, 110))]
    results = build_results(apps, 40)  # one shot
    refs = {"alice": {"a.jpg": photo(unit(alice))}}
    known = make_plan(results, PlanConfig(mode="known", **ZONE), refs)
    assert len(known.shots) == 1
    assert all(not covered(known, f, box_at(310, 180, 110)) for f in range(20, 40)), "Bob stays clear"
    assert all(covered(known, f, box_at(300, 180, 100)) for f in range(20)), "Alice blurred"
    unknown = make_plan(results, PlanConfig(mode="unknown", **ZONE), refs)
    assert all(not covered(unknown, f, box_at(300, 180, 100)) for f in range(20)), "Alice stays clear"
    assert all(covered(unknown, f, box_at(310, 180, 110)) for f in range(20, 40))
    # without the other face the padding is there as before
    alone = make_plan(build_results(apps[:1], 40), PlanConfig(mode="all"))
    assert all(covered(alone, f, box_at(300, 180, 100)) for f in range(20, 25))


def test_a_face_hidden_behind_another_keeps_its_padding():
    """Two sequences seen in the same frames never trim each other: Bob lost behind Alice (his last
    box on hers) is still padded; a sequence that succeeds him there trims it."""
    alice = pad_track(track(1, range(0, 30), [200, 100, 300, 220]), 5, 0, 60)
    bob = pad_track(track(2, range(0, 15), [210, 105, 300, 215]), 5, 0, 60)
    out = trim_handovers([alice, bob], [True, True])
    assert out[1].last == 19 and out[1].padded.sum() == 5  # untouched: seen beside Alice
    carol = pad_track(track(3, range(17, 40), [205, 100, 305, 220]), 5, 0, 60)
    out = trim_handovers([bob, carol], [True, True])
    assert out[0].last == 16, "Bob's padding ends where Carol, who succeeds him, is detected"
    assert out[1].first == 15, "Carol's padding before her ends where Bob is still detected"
    assert trim_handovers([bob, carol], [True, False])[0].last == 19, "noise takes no place"


def test_a_fragment_continuing_a_sequence_takes_its_verdict():
    """Bob leaves by the border: his last detection is a separate sequence of one sample whose
    (half-face) embedding does not resemble the rest of him; in known mode on Alice it stays clear,
    decided by the rest of Bob, instead of borderline (blurred) for lack of samples."""
    alice, bob, half = people(3, seed=11)
    apps = [Appearance(alice, range(30), lambda f: box_at(200, 180, 90)),
            Appearance(bob, range(20), lambda f: box_at(500, 180, 90)),
            Appearance(half, [20], lambda f: box_at(505, 180, 80))]
    refs = {"alice": {"a.jpg": photo(unit(alice))}}
    plan = make_plan(build_results(apps, 30), PlanConfig(mode="known", **ZONE), refs)
    piece = next(s for s in plan.sequences if s.samples == 1)
    assert piece.decision == "keep" and "a fragment" in piece.reason, piece.reason
    assert all(not covered(plan, f, box_at(500, 180, 90)) for f in range(20)), "Bob stays clear"
    assert all(covered(plan, f, box_at(200, 180, 90)) for f in range(30)), "Alice blurred"
    # the same piece far from where Bob ended is no fragment of his: too few samples, blurred
    apps[2] = Appearance(half, [20], lambda f: box_at(350, 60, 80))
    plan = make_plan(build_results(apps, 30), PlanConfig(mode="known", **ZONE), refs)
    assert next(s for s in plan.sequences if s.samples == 1).decision == "blur"


def test_cut_back_spares_the_face_only_where_the_rest_stays_blurred():
    face = np.array([100, 100, 140, 150], np.float32)
    beside = np.array([130, 98, 160, 145], np.float32)  # on his right edge, his height
    assert cut_back(beside, face).tolist() == [140, 98, 160, 145]
    corner = np.array([130, 80, 160, 120], np.float32)  # over his top-right corner: an L would remain
    assert cut_back(corner, face) is corner
    inside = np.array([110, 110, 130, 140], np.float32)
    assert cut_back(inside, face) is inside  # nothing would remain to blur: left as it is
    apart = np.array([200, 100, 230, 140], np.float32)
    assert cut_back(apart, face) is apart


def test_only_unscored_candidates_are_cut_back_and_only_from_faces_kept_clear():
    face = track(1, range(10), [100, 100, 140, 150])
    satellite = track(2, range(10), [130, 98, 160, 145], confidence=0.1)
    scored = track(3, range(10), [130, 98, 160, 145], confidence=0.1)
    keep, blur = Decision("keep", "k"), Decision("blur", "b")
    out, cut = spare_kept_faces([face, satellite, scored], {1: keep, 2: blur, 3: blur}, {2}, 0.3)
    assert cut == {2: 10} and (out[1].xyxy[:, 0] == 140).all() and (out[2].xyxy == scored.xyxy).all()
    out, cut = spare_kept_faces([face, satellite], {1: blur, 2: blur}, {2}, 0.3)
    assert not cut and (out[1].xyxy == satellite.xyxy).all(), "a blurred face needs no sparing"
    weak = track(1, range(10), [100, 100, 140, 150], confidence=0.2)  # kept, but not detected with confidence
    assert not spare_kept_faces([weak, satellite], {1: keep, 2: blur}, {2}, 0.3)[1]
