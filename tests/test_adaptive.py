"""Adaptive analysis (faceblur/schedule.py, faceblur/adaptive.py): the scheduler's decisions over
plain data, then real videos made from the shared photos through ``face-blur run`` with the real
CenterFace: a face that enters and leaves between two would-be analysed frames is blurred on all
its frames (and is missed without the cheap net, so the test can fail), both sides of a cut are
analysed, a still scene is analysed on a fraction of its frames, and ``--analysis every`` gives
the plan of analysing every frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from detection_helpers import background
from postprocess_helpers import plan_coverage
from video_helpers import ClipSpec, detail, face_patch, make_clip, paste, read_frames

from contract import FrameFaces, FrameResult, dumps, loads
from faceblur.schedule import IntervalPolicy, Look, ScheduleConfig, Scheduler

W, H = 320, 180


# ---------------------------------------------------------------------------------------------- pure


def _faces(*boxes) -> FrameFaces:
    n = len(boxes)
    return FrameFaces(np.array(boxes, np.float32).reshape(n, 4), np.ones(n), np.zeros((n, 5, 2)), np.zeros((n, 0)))


def _truth_world(appear: int, leave: int):
    """Frame -> boxes: a face at (10,10,50,50) always, another at (200,20,240,60) in appear..leave."""
    def boxes(frame: int):
        out = [(10, 10, 50, 50)]
        if appear <= frame <= leave:
            out.append((200, 20, 240, 60))
        return out
    return boxes


def test_disagreement_is_searched_down_to_the_frames_where_a_face_appears():
    world = _truth_world(11, 40)
    scheduler = Scheduler(ScheduleConfig())
    asked = []

    def analyse(frame: int, reason: str) -> Look:
        asked.append((frame, reason))
        return Look(frame, _faces(*world(frame)))

    found = scheduler.resolve(Look(0, _faces(*world(0))), Look(16, _faces(*world(16))), {}, analyse)
    frames = [look.frame for look in found]
    assert 10 in frames and 11 in frames  # the last frame without it and the first with it
    assert all(reason == "disagreement" for _, reason in asked)
    assert len(asked) <= 4  # binary search, not every frame


def test_a_net_candidate_the_sequences_do_not_explain_gets_its_frame_analysed():
    world = _truth_world(5, 8)  # enters and leaves between 0 and 16: the ends agree
    net = {f: np.array(world(f), np.float32) + 3 for f in range(1, 16)}  # the net sees both, a little off
    asked = []

    def analyse(frame: int, reason: str) -> Look:
        asked.append((frame, reason))
        return Look(frame, _faces(*world(frame)), net.get(frame, np.zeros((0, 4))))

    found = Scheduler().resolve(Look(0, _faces(*world(0))), Look(16, _faces(*world(16))), net, analyse)
    assert asked[0][1] == "net" and 5 <= asked[0][0] <= 8
    frames = {look.frame for look in found}
    assert {4, 5, 8, 9} <= frames  # then binary search finds where it enters and leaves


def test_a_net_false_positive_that_full_analysis_rejected_at_both_ends_costs_nothing():
    poster = np.array([[100, 100, 130, 130]], np.float32)  # the net sees a face on a poster; full analysis does not
    net = {f: np.concatenate([poster, [[10, 10, 50, 50]]]) for f in range(17)}
    a = Look(0, _faces((10, 10, 50, 50)), net[0])
    b = Look(16, _faces((10, 10, 50, 50)), net[16])
    assert Scheduler().next_frame(a, b, net) is None
    fresh = dict(net)
    fresh[7] = np.concatenate([net[7], [[250, 20, 290, 60]]])  # but a new candidate elsewhere does count
    assert Scheduler().next_frame(a, b, fresh) == (7, "net")


def _moving(frame: int) -> tuple[float, float, float, float]:
    """A 30 px face moving 12 px a frame: 40% of its width, as on the crossing clip."""
    x = 10 + 12 * frame
    return (x, 40, x + 30, 70)


def test_a_steadily_moving_face_agrees_over_a_window_once_the_plans_linker_knows_its_motion():
    scheduler = Scheduler()
    looks = [Look(f, _faces(_moving(f))) for f in range(5)]
    for a, b in zip(looks, looks[1:], strict=False):  # neighbours: the linker learns the motion (as the plan's does)
        assert scheduler.resolve(a, b, {}, lambda f, why: pytest.fail("nothing between")) == []
    # eight frames on, the boxes are 3 face widths apart: only the motion links them
    assert scheduler.next_frame(looks[4], Look(12, _faces(_moving(12))), {}) is None
    assert scheduler.next_frame(looks[4], Look(12, _faces(_moving(4))), {}) == (8, "disagreement")  # it stopped
    # without the motion known (the first analysed frame), the same distance disagrees
    assert Scheduler().next_frame(looks[0], Look(8, _faces(_moving(8))), {}) == (4, "disagreement")


def test_the_scheduler_settles_what_the_plan_links_and_starts_shots_where_the_plan_does():
    """The analysed frames of a resolved schedule, given to ``make_plan``: every face seen at two
    analysed frames of a settled window is one sequence there, so the frames between are covered."""
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    def world(frame: int):
        boxes = [(10 + 6 * frame, 40, 40 + 6 * frame, 70)]  # moving 20% of its width a frame
        if 20 <= frame <= 26:
            boxes.append((200, 100, 240, 140))  # a still face for a while
        return boxes

    cuts = {30}
    scheduler = Scheduler(cut_at=cuts.__contains__)
    looks = {0: Look(0, _faces(*world(0)))}

    def analyse(frame: int, reason: str) -> Look:
        looks[frame] = Look(frame, _faces(*world(frame)))
        return looks[frame]

    for a, b in ((0, 8), (8, 16), (16, 24), (24, 29)):
        looks.setdefault(b, analyse(b, "interval"))
        scheduler.resolve(looks[a], looks[b], {}, analyse)
    scheduler.begin(analyse(30, "cut"))  # the plan cuts at 30 (its signatures say so below)
    analyse(36, "interval")
    scheduler.resolve(looks[30], looks[36], {}, analyse)
    assert 19 in looks and 20 in looks and 26 in looks and 27 in looks  # the still face pinned
    other = np.zeros(128, np.float32)
    other[5] = 1.0
    results = {f: _result(f, world(f) if f in looks else [], analysed=f in looks) for f in range(0, 37)}
    for f in range(30, 37):
        results[f] = FrameResult(W, H, results[f].faces, results[f].detector, "", other, f in looks)
    plan = make_plan(results, PlanConfig())
    assert plan.shots.tolist() == [[0, 29], [30, 36]]
    for f in range(0, 37):
        for box in world(f):
            assert _coverage(plan, f, box) >= 0.9, (f, box, plan.boxes(f))


def _scored(score: float, *boxes) -> FrameFaces:
    faces = _faces(*boxes)
    faces.confidence[:] = score
    return faces


def test_a_low_candidate_that_starts_or_ends_is_looked_for_only_as_far_as_the_plans_padding_reaches():
    """Low candidates (under the plan's face score) flicker frame by frame: where one appears or
    leaves, the frame one padding's reach (pad_frames + 1) away is analysed; once the window is
    within that reach it is settled, since the plan's padding covers the frames between. A
    confident face is searched down to neighbouring frames as before."""
    face, low = (10, 10, 50, 50), (200, 100, 212, 112)
    both = FrameFaces.concat([_scored(0.9, face), _scored(0.08, low)])
    a, alone = Look(0, _scored(0.9, face)), Look(16, both)
    assert Scheduler().next_frame(a, alone, {}) == (10, "flicker")  # it appeared: is it there 6 frames before?
    assert Scheduler().next_frame(Look(0, both), Look(16, _scored(0.9, face)), {}) == (6, "flicker")  # it left
    assert Scheduler().next_frame(Look(10, _scored(0.9, face)), Look(16, both), {}) is None  # padding spans it
    confident = Look(16, FrameFaces.concat([_scored(0.9, face), _scored(0.5, low)]))
    assert Scheduler().next_frame(a, confident, {}) == (8, "disagreement")
    # without padding, a binary search as for any face
    assert Scheduler(pad_frames=0).next_frame(Look(10, _scored(0.9, face)), Look(16, both), {}) == \
        (13, "disagreement")
    # one seen on two analysed frames before it left is looked for the same way (no binary search):
    # that it may be a dim face that dipped is the interval's business (Scheduler.holding)
    twice = Scheduler()
    twice.resolve(Look(0, both), Look(1, both), {}, lambda f, why: pytest.fail("nothing between"))
    assert twice.next_frame(Look(1, both), Look(17, _scored(0.9, face)), {}) == (7, "flicker")


def test_a_low_candidate_whose_evidence_is_in_question_is_held():
    """The driver keeps the interval within held_interval while the chain holds a low candidate
    detected on fewer than 3 analysed frames, or missing from the last one (a dim face that dipped
    must be seen again before the linker lets it go). One detected on the last 3, a confident face,
    or a sequence the linker let go is not held."""
    face, low = (10, 10, 50, 50), (200, 100, 212, 112)
    both = FrameFaces.concat([_scored(0.9, face), _scored(0.08, low)])
    alone = _scored(0.9, face)
    settle = lambda f, why: pytest.fail("nothing between")  # noqa: E731

    def chain(*looks: FrameFaces) -> Scheduler:  # the rule for a still candidate off (next test)
        s = Scheduler(ScheduleConfig(still_within=0))
        s.begin(Look(0, looks[0]))
        for f in range(1, len(looks)):
            s.resolve(Look(f - 1, looks[f - 1]), Look(f, looks[f]), {}, settle)
        return s

    assert not Scheduler().holding()
    assert not chain(alone, alone).holding()  # only a confident face
    assert chain(both).holding() and chain(both, both).holding()  # detected on 1, 2 analysed frames
    assert not chain(both, both, both).holding()  # on 3, the last included
    assert chain(both, both, both, alone).holding()  # missing from the last one
    assert not chain(both, both, both, alone, both).holding()  # back
    conf = FrameFaces.concat([alone, _scored(0.6, low)])  # a confident face missing is searched, not held
    assert not chain(conf, conf, alone).holding()
    assert not chain(both, both, both, *[alone] * 5).holding()  # let go after max_gap (3) analysed frames
    for bad in ({"held_interval": 0}, {"settled_after": 0}, {"still_within": -0.1}, {"still_within": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ScheduleConfig(**bad)


def test_a_low_candidate_that_stays_still_is_not_held_once_seen_twice():
    """Texture in a still scene flickers at low scores for a whole clip; where a low candidate's two
    detections lie within ``still_within`` (0.15) of its size of each other, linking it does not
    depend on its motion, so its evidence can wait for the interval. One seen once, or one that
    moves (a dim face walking), is held as before."""
    face = (10, 10, 50, 50)
    alone = _scored(0.9, face)
    settle = lambda f, why: None  # noqa: E731

    def low_at(x: float) -> FrameFaces:
        return FrameFaces.concat([alone, _scored(0.08, (x, 100, x + 24, 124))])

    def chain(*looks: FrameFaces) -> Scheduler:
        s = Scheduler()
        s.begin(Look(0, looks[0]))
        for f in range(1, len(looks)):
            s.resolve(Look(f - 1, looks[f - 1]), Look(f, looks[f]), {}, settle)
        return s

    assert chain(low_at(200)).holding()  # seen once
    assert not chain(low_at(200), low_at(201)).holding()  # twice, 1 px apart
    assert not chain(low_at(200), low_at(202), alone).holding()  # and missing from the last one
    moving = chain(low_at(200), low_at(206))  # 6 px of 24: moving
    assert len(moving.linker.live) == 2, "the moving candidate must link into one sequence"
    assert moving.holding()
    assert chain(low_at(200), low_at(206), low_at(212), alone).holding()  # moving, then missing


def test_an_identity_change_between_analysed_frames_is_a_disagreement():
    one, other = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    box = np.array([[10, 10, 50, 50]], np.float32)
    a = Look(0, FrameFaces(box, np.ones(1), np.zeros((1, 5, 2)), one[None]))
    same = Look(8, FrameFaces(box, np.ones(1), np.zeros((1, 5, 2)), one[None]))
    changed = Look(8, FrameFaces(box, np.ones(1), np.zeros((1, 5, 2)), other[None]))
    assert Scheduler().next_frame(a, same, {}) is None
    assert Scheduler().next_frame(a, changed, {}) == (4, "disagreement")


def test_interval_grows_when_windows_agree_and_shrinks_when_they_do_not():
    policy = IntervalPolicy(ScheduleConfig(min_interval=2, max_interval=16))
    assert [policy.after(0) for _ in range(5)] == [4, 8, 16, 16, 16]
    assert [policy.after(3), policy.after(1), policy.after(2)] == [8, 4, 2]
    with pytest.raises(ValueError, match="min_interval"):
        ScheduleConfig(min_interval=9, max_interval=4)


def test_frames_not_analysed_travel_in_the_v1_contract_as_an_optional_field():
    sig = np.full(128, 1 / 128, np.float32)
    skipped = FrameResult(W, H, FrameFaces.empty(), signature=sig, analysed=False)
    body = json.loads(dumps(skipped))
    assert body["analysed"] is False and body["schema"] == "face-blur/frame/v1"
    assert loads(dumps(skipped)).analysed is False
    full = FrameResult(W, H, FrameFaces.empty(), "centerface", "", sig)
    assert "analysed" not in json.loads(dumps(full)) and loads(dumps(full)).analysed is True


# ---------------------------------------------------------------------------------------------- real videos


def _coverage(plan, frame: int, box) -> float:
    return plan_coverage(plan, frame, box, (W, H))


class Clip:
    """A still 320x180 room; ``people``: (person, face height, x, y, first, last) 0-based frames;
    ``cut``: from this frame on, another room."""

    def __init__(self, faces_dir: Path, frames: int, people, cut: int | None = None) -> None:
        self.frames = frames
        self.cut = cut
        rooms = [background(W, H, seed=3), background(W, H, seed=11)[:, ::-1] // 2 + 60]
        patches = {p: face_patch(faces_dir, p, size) for p, size, *_ in people}
        self.truth: list[list[tuple[float, float, float, float]]] = []
        self.images = []
        for i in range(frames):
            frame = rooms[int(cut is not None and i >= cut)].copy()
            boxes = []
            for person, _size, x, y, first, last in people:
                if first <= i <= last:
                    patch, box = patches[person]
                    boxes.append(paste(frame, patch, box, x, y))
            self.images.append(frame)
            self.truth.append(boxes)

    def write(self, path: Path) -> Path:
        return make_clip(path, ClipSpec(width=W, height=H, frames=self.frames), lambda i: self.images[i])


@pytest.fixture(scope="module")
def pipeline_config():
    from handler.pipeline import PipelineConfig

    return PipelineConfig(embedder="none")


def _run(tmp_path: Path, clip: Clip, pipeline_config, analysis: str = "adaptive", name: str = "clip"):
    from faceblur.local import LocalConfig, run
    from postprocess.plan import Plan

    source = clip.write(tmp_path / f"{name}.mp4")
    out, plan_path = tmp_path / f"{name}_{analysis}.mp4", tmp_path / f"{name}_{analysis}.json"
    summary = run(source, out, LocalConfig(pipeline=pipeline_config, analysis=analysis, progress=False,
                                           plan_path=plan_path))
    return summary, Plan.loads(plan_path.read_bytes()), out


def test_a_face_entering_and_leaving_between_two_would_be_analysed_frames_is_blurred_on_all_its_frames(
        tmp_path, faces_dir, pipeline_config):
    # analysed at the interval: frames 1, 3, 7, 15, 31, 47 (1-based); rose is there in frames 21..26 only
    clip = Clip(faces_dir, 48, [("obama", 56, 20, 40, 0, 47), ("rose_leslie", 52, 190, 30, 20, 25)])
    summary, plan, out = _run(tmp_path, clip, pipeline_config)
    assert summary.analysis.reasons["net"] >= 1, summary.analysis.line()
    assert summary.analysis.analysed < 48 / 2
    for i, boxes in enumerate(clip.truth):
        for box in boxes:
            assert _coverage(plan, i + 1, box) >= 0.95, (i + 1, box, plan.boxes(i + 1))
    blurred = read_frames(out)
    for i in range(20, 26):  # her face has lost its detail in the written video
        rose = clip.truth[i][1]
        assert detail(blurred[i], rose) < 0.5 * detail(clip.images[i], rose), i + 1


def test_without_the_cheap_net_that_face_would_be_missed(tmp_path, faces_dir, pipeline_config):
    """The counterpart of the test above: the same clip with a net that finds nothing."""
    from faceblur.adaptive import AdaptiveConfig, analyse_adaptive
    from handler.pipeline import load_pipeline
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan
    from postprocess.results import ResultStore

    class Blind:
        closeup = False

        def detect(self, image):
            return FrameFaces.empty()

        def boxes(self, faces):
            return np.zeros((0, 4), np.float32)

    clip = Clip(faces_dir, 48, [("obama", 56, 20, 40, 0, 47), ("rose_leslie", 52, 190, 30, 20, 25)])
    source = clip.write(tmp_path / "clip.mp4")
    store = ResultStore()
    try:
        tally = analyse_adaptive(load_pipeline(pipeline_config), source, store, AdaptiveConfig(), False, Blind(), 1,
                                 lambda n: None)
        plan = make_plan(store, PlanConfig())
    finally:
        store.close()
    assert tally.reasons["net"] == 0
    assert min(_coverage(plan, i + 1, clip.truth[i][1]) for i in range(20, 26)) < 0.5


def test_both_sides_of_a_shot_cut_are_analysed(tmp_path, faces_dir, pipeline_config):
    clip = Clip(faces_dir, 40, [("obama", 56, 20, 40, 0, 17), ("rose_leslie", 60, 180, 30, 18, 39)], cut=18)
    summary, plan, _ = _run(tmp_path, clip, pipeline_config)
    assert len(plan.shots) == 2
    analysed = set(plan.analysed.tolist())
    for first, _last in plan.shots[1:].tolist():
        assert {first - 1, first} <= analysed, (first, sorted(analysed))
    assert summary.analysis.reasons["cut"] >= 2
    for i, boxes in enumerate(clip.truth):
        for box in boxes:
            assert _coverage(plan, i + 1, box) >= 0.95, (i + 1, box)


def test_a_still_scene_is_analysed_on_far_fewer_frames_than_it_has(tmp_path, faces_dir, pipeline_config):
    clip = Clip(faces_dir, 64, [("obama", 56, 20, 40, 0, 63), ("rose_leslie", 52, 190, 30, 0, 63)])
    summary, plan, _ = _run(tmp_path, clip, pipeline_config)
    assert summary.analysis.frames == 64
    assert len(plan.analysed) == summary.analysis.analysed <= 12, summary.analysis.line()
    assert plan.summary["analysed_frames"] == len(plan.analysed)
    for i, boxes in enumerate(clip.truth):
        for box in boxes:
            assert _coverage(plan, i + 1, box) >= 0.95, (i + 1, box)
    assert f"{summary.analysis.analysed} of 64 frames fully analysed" in "\n".join(summary.lines())


def test_analysis_every_gives_the_plan_of_analysing_every_frame(tmp_path, faces_dir, pipeline_config):
    from faceblur.video import iter_frames
    from handler.pipeline import load_pipeline
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    clip = Clip(faces_dir, 20, [("obama", 56, 20, 40, 0, 19), ("rose_leslie", 52, 190, 30, 6, 12)], cut=14)
    summary, plan, _ = _run(tmp_path, clip, pipeline_config, analysis="every")
    assert summary.analysis is None and plan.analysed is None
    pipeline = load_pipeline(pipeline_config)
    direct = make_plan({f.index: pipeline.analyse(f.image, f.index) for f in iter_frames(tmp_path / "clip.mp4")},
                       PlanConfig())
    assert plan.to_dict() == json.loads(direct.dumps())
    assert "analysed" not in plan.to_dict()


def _result(frame: int, boxes, score: float = 0.9, analysed: bool = True) -> FrameResult:
    faces = _faces(*boxes) if analysed else FrameFaces.empty()
    faces.confidence[:] = score
    faces.frame_index = frame
    return FrameResult(W, H, faces, "centerface" if analysed else "", "", np.full(128, 1 / 128, np.float32), analysed)


def test_frames_not_analysed_are_covered_by_the_sequences_not_read_as_no_face_nor_blurred_whole():
    from postprocess.config import PlanConfig
    from postprocess.plan import Plan, make_plan

    box = (100, 40, 140, 90)
    analysed = {1, 9, 17}  # the interval; the face is found at each, nothing in between was looked at
    results = {f: _result(f, [box], analysed=f in analysed) for f in range(1, 18)}
    plan = make_plan(results, PlanConfig())
    assert plan.analysed.tolist() == [1, 9, 17] and not len(plan.full_frames)
    assert all(len(plan.boxes(f)) == 1 for f in range(1, 18))  # every frame covered, by interpolation
    assert [s.rows.count("d") for s in plan.sequences] == [3]
    again = Plan.loads(plan.dumps())
    assert again.analysed.tolist() == [1, 9, 17] and again.summary["analysed_frames"] == 3


def test_a_weak_face_seen_on_two_analysed_frames_with_unseen_frames_between_is_not_dropped():
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    box = (100, 40, 140, 90)
    # adaptive: detected (score 0.4) at frames 5 and 9, frames 6..8 not analysed: 5 frames of evidence
    adaptive = {f: _result(f, [box] if f in (5, 9) else [], 0.4, analysed=f in (1, 5, 9, 13)) for f in range(1, 14)}
    assert [s.decision for s in make_plan(adaptive, PlanConfig()).sequences] == ["blur"]
    # every frame analysed and the face found on only two of them: a likely false positive, as before
    every = {f: _result(f, [box] if f in (5, 9) else [], 0.4) for f in range(1, 14)}
    assert [s.decision for s in make_plan(every, PlanConfig()).sequences] == ["drop"]


def test_the_net_skips_a_frame_that_only_sensor_noise_changed_and_runs_where_a_face_enters(faces_dir):
    """Dim footage: the same room with fresh noise (sigma 8) on every frame reuses the net's pass,
    for at most ``span`` frames; a 32 px face entering (the smallest the net finds reliably at
    640x360, here on a 320x180 frame) or a camera move runs it."""
    from faceblur.adaptive import StillFrames

    rng = np.random.default_rng(0)
    room = background(W, H, seed=3).astype(np.float32) * 0.35  # dim

    def noisy(image):
        return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)

    still = StillFrames(below=4.0, span=8)
    fresh = [still.fresh(i, noisy(room)) for i in range(20)]
    assert fresh[0] and sum(fresh) == 3  # frames 0, 9, 18: the span bounds the reuse
    patch, box = face_patch(faces_dir, "obama", 32)
    entered = room.copy()
    paste(entered, (patch * 0.35).astype(np.uint8), box, 150, 60)
    assert still.fresh(20, noisy(entered))
    assert not still.fresh(21, noisy(entered))
    assert still.fresh(22, noisy(np.roll(entered, 6, axis=1)))  # the camera pans 6 px


def test_the_per_frame_pass_hands_frames_on_in_order_whatever_finishes_first():
    import time
    from types import SimpleNamespace

    from faceblur.adaptive import _in_order

    def slow_first(frame):
        time.sleep(0.2 if frame.index == 1 else 0.0)  # frame 1 finishes after frame 2
        return np.zeros(128, np.float32), np.zeros((0, 4), np.float32)

    frames = [SimpleNamespace(index=i, image=np.zeros((2, 2, 3), np.uint8)) for i in range(1, 9)]
    assert [p.index for p in _in_order(slow_first, iter(frames), 2)] == list(range(1, 9))


# ---------------------------------------------------------------------------------------------- full analysis


class _Counting:
    """An onnxruntime session that counts its runs (CenterFace passes)."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_at_1080p_the_cheap_pass_is_the_close_up_pass_of_a_full_analysis(faces_dir, pipeline_config):
    """A full-HD frame gets a fine pass and a close-up pass; the net's faces of that frame serve as
    the close-up pass, so a full analysis runs CenterFace once, and finds the faces as before."""
    from PIL import Image

    from faceblur.adaptive import AdaptiveConfig, Net
    from faceblur.inputs import read_image
    from handler.pipeline import load_pipeline

    pipeline = load_pipeline(pipeline_config)
    _, photo = read_image(faces_dir / "obama_and_biden.jpg")
    frame = np.asarray(Image.fromarray(photo).resize((1920, 1080)))  # faces well over 100 px
    net = Net(pipeline, None, ["CPUExecutionProvider"], AdaptiveConfig())
    detector = pipeline.detector
    assert net.closeup and detector.wants_coarse(1080, 1920)
    counting = _Counting(detector.backend.session)
    detector.backend.session = counting
    before = detector.detect(frame)
    assert counting.runs == 2  # fine + close-up
    counting.runs = 0
    reused = detector.detect(frame, coarse=net.detect(frame))
    assert counting.runs == 1
    confident = before[before.confidence >= 0.3]
    assert len(confident) >= 2
    for box in confident.xyxy:  # every face found before is found with the net's pass
        from contract.boxes import iou_matrix

        assert iou_matrix(box[None], reused.xyxy).max() >= 0.5


def test_identity_modes_embed_an_analysed_frame_as_analysing_every_frame_does(tmp_path, faces_dir, test_model_dir):
    """In the identity modes a fully analysed frame carries the vectors that ``--analysis every``
    (and the server) give it: confident faces embedded, candidates under the pipeline's
    ``embed_min_score`` (0.3) all zeros. Adaptive analysis once embedded every candidate, so its plan
    differed from the measured path and each stray of a noisy frame cost identity runs."""
    from faceblur.adaptive import AdaptiveConfig, Net, analyse_adaptive
    from faceblur.video import iter_frames
    from handler.pipeline import PipelineConfig, load_pipeline
    from postprocess.results import ResultStore

    pipeline = load_pipeline(PipelineConfig(model_dir=test_model_dir, embedder="mobilefacenet"))
    clip = Clip(faces_dir, 12, [("obama", 56, 20, 40, 0, 11), ("rose_leslie", 14, 200, 30, 0, 11)])  # far: low
    source = clip.write(tmp_path / "clip.mp4")
    net = Net(pipeline, test_model_dir, ["CPUExecutionProvider"], AdaptiveConfig())
    store = ResultStore()
    try:
        analyse_adaptive(pipeline, source, store, AdaptiveConfig(), True, net, 1, lambda n: None)
        analysed = {i: store[i] for i in store if store[i].analysed}
        direct = {f.index: pipeline.analyse(f.image, f.index) for f in iter_frames(source) if f.index in analysed}
    finally:
        store.close()
    low = 0
    for i, result in analysed.items():
        faces, every = result.faces, direct[i].faces
        assert result.embedder == "mobilefacenet"
        np.testing.assert_allclose(faces.xyxy, every.xyxy, atol=0.1)
        embedded = np.abs(faces.embedding).sum(axis=1) > 0
        assert (embedded == (faces.confidence >= pipeline.embed_min_score)).all(), (i, faces.confidence)
        np.testing.assert_allclose(faces.embedding, every.embedding, atol=1e-3)
        low += int((~embedded).sum())
    assert low >= 1  # the far face gives candidates under 0.3: the rule above was exercised
