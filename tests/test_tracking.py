"""Face sequences: linking frame to frame, shots, joining across missed detections."""

from __future__ import annotations

import numpy as np
import pytest
from decisions_helpers import Appearance, box_at, build_results, people

from contract import FrameFaces
from postprocess.joining import join_tracks
from postprocess.tracking import FaceLinker, FaceTrack, make_cost, match


def link_all(results, linker=None, cut_at=()):
    linker = linker or FaceLinker()
    ids = {}
    for f in sorted(results):
        if f in cut_at:
            linker.new_shot()
        out = linker.update(results[f].faces)
        ids[f] = out.track_id
    return linker.finish(), ids


def crossing(n=40, with_embeddings=True, bounce=False):
    """Two faces moving towards each other; they pass (or, with ``bounce``, meet and turn back)."""
    a, b = people(2, seed=4)

    def x(f):
        return 10 * f if not bounce or f < 20 else 10 * (40 - f)

    left = Appearance(a, range(n), lambda f: box_at(100 + x(f), 180, 60))
    right = Appearance(b, range(n), lambda f: box_at(500 - x(f), 180, 60))
    return build_results([left, right], n, embedder="mobilefacenet" if with_embeddings else ""), left, right


def identities_kept(ids):
    """Faces are listed in appearance order in every frame: column k is person k."""
    per_person = np.array([ids[f] for f in sorted(ids)])
    return all(len(set(col.tolist())) == 1 for col in per_person.T) and len(set(per_person[0])) == 2


@pytest.mark.parametrize("bounce", [False, True])
def test_two_faces_crossing_paths_keep_their_identities(bounce):
    results, left, right = crossing(bounce=bounce)
    tracks, ids = link_all(results)
    assert len(tracks) == 2
    assert identities_kept(ids), "a face changed sequence while crossing the other"


def test_meeting_faces_need_embeddings_to_keep_identities():
    """The bounce scenario is ambiguous by position (motion says they pass each other)."""
    results, left, right = crossing(bounce=True)
    _, ids = link_all(results, FaceLinker(make_cost(embedding_weight=0)))
    assert not identities_kept(ids)


def test_embeddings_decide_where_position_cannot():
    """At the crossing the boxes coincide; without embeddings position alone may swap them, with
    embeddings the swap costs more than staying."""
    results, left, right = crossing()
    at = 20  # the frame where the two boxes are closest
    cost = make_cost()(np.stack([left.path(at), right.path(at)]),
                       np.stack([results[at - 1].faces.embedding[0], results[at - 1].faces.embedding[1]]),
                       results[at].faces)
    assert cost[0, 0] + cost[1, 1] < cost[0, 1] + cost[1, 0]


def test_update_returns_a_copy_with_track_ids():
    results, _, _ = crossing(5)
    linker = FaceLinker()
    faces = results[0].faces
    out = linker.update(faces)
    assert np.all(faces.track_id == -1), "the input was changed"
    assert sorted(out.track_id.tolist()) == [0, 1]
    out2 = linker.update(results[1].faces)
    assert sorted(out2.track_id.tolist()) == [0, 1]


def test_face_lost_for_five_frames_is_joined():
    (a,) = people(1, seed=5)
    app = Appearance(a, range(40), lambda f: box_at(200 + 2 * f, 180, 70), missed=set(range(15, 20)))
    results = build_results([app], 40)
    tracks, _ = link_all(results, FaceLinker(max_gap=3))
    assert len(tracks) == 2, "the linker alone should end the sequence after max_gap"
    joined = join_tracks(tracks, max_gap=15)
    assert len(joined) == 1
    assert joined[0].first == 0 and joined[0].last == 39
    assert len(joined[0]) == 35
    assert len(join_tracks(tracks, max_gap=4)) == 2, "a gap longer than join_gap is not joined"


def test_a_different_person_in_the_same_place_after_a_gap_is_not_joined():
    a, b = people(2, seed=6)
    first = Appearance(a, range(0, 20), lambda f: box_at(300, 180, 70))
    second = Appearance(b, range(24, 44), lambda f: box_at(300, 180, 70))
    tracks, _ = link_all(build_results([first, second], 44))
    assert len(join_tracks(tracks, max_gap=15)) == 2


def test_a_cut_with_the_person_in_the_same_place_gives_two_sequences():
    (a,) = people(1, seed=7)
    app = Appearance(a, range(30), lambda f: box_at(300, 180, 70))
    results = build_results([app], 30, cuts=[15])
    tracks, _ = link_all(results, cut_at={15})
    assert [(t.first, t.last, t.shot) for t in tracks] == [(0, 14, 0), (15, 29, 1)]
    assert len(join_tracks(tracks, max_gap=15)) == 2, "sequences in different shots are never joined"


def test_pairs_above_max_cost_are_never_linked():
    results, _, _ = crossing(6)
    tracks, _ = link_all(results, FaceLinker(cost=lambda tb, te, faces: np.full((len(tb), len(faces)), 0.9),
                                            max_cost=0.5))
    assert len(tracks) == 12 and all(len(t) == 1 for t in tracks)


def test_nan_cost_raises():
    results, _, _ = crossing(3)
    linker = FaceLinker(cost=lambda tb, te, faces: np.full((len(tb), len(faces)), np.nan))
    linker.update(results[0].faces)
    with pytest.raises(ValueError, match="NaN"):
        linker.update(results[1].faces)


def test_match_is_optimal_not_greedy():
    # greedy smallest-first takes (0,0)=0.1 then must take (1,1)=0.45: total 0.55; optimal 0.2 + 0.2
    rows, cols = match(np.array([[0.1, 0.2], [0.2, 0.45]]), max_cost=0.5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_frames_must_increase():
    linker = FaceLinker()
    linker.update(FrameFaces.empty(frame_index=5))
    with pytest.raises(ValueError, match="increasing"):
        linker.update(FrameFaces.empty(frame_index=5))


def test_tracks_survive_max_gap_frames_without_detection():
    (a,) = people(1, seed=8)
    app = Appearance(a, range(20), lambda f: box_at(300, 180, 70), missed={8, 9, 10})
    results = build_results([app], 20)
    assert len(link_all(results, FaceLinker(max_gap=3))[0]) == 1
    assert len(link_all(results, FaceLinker(max_gap=2))[0]) == 2


@pytest.mark.parametrize(("make", "kwargs", "message"), [
    (FaceLinker, {"max_cost": 0}, "max_cost"),
    (FaceLinker, {"max_gap": -1}, "max_gap"),
    (make_cost, {"iou_weight": -1}, "weights"),
    (make_cost, {"iou_weight": 0, "distance_weight": 0}, "weights"),
    (make_cost, {"embedding_scale": 0}, "embedding_scale"),
    (FaceLinker, {"embedding_momentum": 1.0}, "embedding_momentum"),
])
def test_linker_rejects_bad_settings(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize(("field", "value"), [
    ("xyxy", np.zeros((3, 3))),
    ("confidence", np.zeros(2)),
    ("landmarks", np.zeros((3, 5))),
    ("frames", np.array([0, 2, 1])),
])
def test_face_track_names_the_bad_field(field, value):
    columns = {"frames": np.arange(3), "xyxy": np.zeros((3, 4)), "confidence": np.zeros(3),
               "landmarks": np.zeros((3, 5, 2)), "embeddings": np.zeros((3, 0))}
    columns[field] = value
    with pytest.raises(ValueError, match="frames" if field == "frames" else field):
        FaceTrack(1, 0, **columns)


def test_a_linker_without_embeddings_in_memory_joins_the_same_way():
    (a,) = people(1, seed=5)
    app = Appearance(a, range(40), lambda f: box_at(200 + 2 * f, 180, 70), missed=set(range(15, 20)))
    results = build_results([app], 40)
    light = FaceLinker(keep_embeddings=False)
    for f in sorted(results):
        light.update(results[f].faces, f)
    tracks = light.finish()
    assert all(t.dim == 0 for t in tracks) and len(tracks) == 2
    assert tracks[0].face_index.tolist() == [0] * len(tracks[0])
    assert set(light.end_embeddings) == {t.track_id for t in tracks}
    assert len(join_tracks(tracks, max_gap=15, end_embeddings=light.end_embeddings)) == 1
    assert len(join_tracks(tracks, max_gap=15)) == 1, "without embeddings position alone joins here"
