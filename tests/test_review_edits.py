"""The review page without a browser: plan edits and their audit, cards per person or per sequence,
where saves and renders may go, the HTTP guards, random access to frames, and --draw-boxes."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from review_helpers import ReviewServer
from video_helpers import ClipSpec, make_clip, read_frames

from faceblur.review import edits
from faceblur.review.frames import FrameError, VideoFrames
from faceblur.review.session import ReviewError, ReviewSession, inside
from postprocess.plan_format import Plan

NOW = "2026-12-01T21:00:00+00:00"


def _seq(sid: int, first: int, n: int, x: float, decision: str = "blur", **extra) -> dict:
    boxes = [[x + i, 40.0, x + i + 30 + (i == n // 2) * 10, 80.0 + (i == n // 2) * 10] for i in range(n)]
    return {"id": sid, "shot": 0, "first": first, "last": first + n - 1, "rows": "d" * n, "boxes": boxes,
            "samples": 0, "scores": {}, "person": None, "threshold": None, "margin": None, "decision": decision,
            "reason": "mode all blurs every face", "borderline": False, "confidence": [0.9] * n, **extra}


def _plan(persons: bool = False) -> dict:
    plan = {"schema": "face-blur/plan/v1", "width": 320, "height": 180, "detector": "centerface", "embedder": "",
            "options": {"mode": "unknown"}, "identity": {}, "frames": [[1, 40]], "full_frames": [],
            "shots": [[1, 20], [21, 40]],
            "sequences": [_seq(7, 1, 20, 10), _seq(9, 21, 15, 20), _seq(12, 5, 10, 200, borderline=True,
                                                                          scores={"alice": 0.41})]}
    if persons:
        plan["persons"] = [
            {"id": "person-1", "sequences": [7, 9], "frames": 35, "shots": [0, 1],
             "thumbnail": {"frame": 11, "box": [20, 40, 60, 90]}, "decision": "blur", "borderline": False,
             "score": 0.61, "person": "alice", "reason": "matches alice"},
        ]
    return plan


# ---------------------------------------------------------------------------------------------- cards


def test_without_persons_there_is_one_card_per_sequence_borderline_first():
    cards = edits.cards(_plan())
    assert [c["id"] for c in cards] == ["seq-12", "seq-7", "seq-9"]
    first = cards[0]
    assert first["borderline"] and first["score"] == pytest.approx(0.41) and first["frames"] == 10
    # the thumbnail is the biggest confident detection: the middle row, drawn 10 px larger
    assert cards[1]["thumbnail"] == {"frame": 11, "box": [20.0, 40.0, 60.0, 90.0]}
    assert cards[1]["spans"] == [[1, 20]]


def test_with_persons_a_card_holds_all_of_its_sequences_and_strays_get_their_own():
    cards = edits.cards(_plan(persons=True))
    assert [c["id"] for c in cards] == ["seq-12", "person-1"]
    person = cards[1]
    assert person["sequences"] == [7, 9] and person["shots"] == [0, 1] and person["frames"] == 35
    assert person["spans"] == [[1, 35]] and person["label"] == "alice" and person["score"] == 0.61


def test_flipping_a_person_flips_every_sequence_and_is_audited():
    plan = _plan(persons=True)
    edited = edits.set_decision(plan, "person-1", "keep", "editor", NOW)
    by_id = {s["id"]: s for s in edited["sequences"]}
    assert by_id[7]["decision"] == by_id[9]["decision"] == "keep" and by_id[12]["decision"] == "blur"
    assert edited["persons"][0]["decision"] == "keep"
    assert edited["audit"] == [{"time": NOW, "user": "editor", "action": "decision", "card": "person-1",
                                "sequences": [7, 9], "old": "blur", "new": "keep"}]
    assert plan["sequences"][0]["decision"] == "blur" and "audit" not in plan  # the input is not changed
    rendered = Plan.from_dict(edited)  # the sequences stay authoritative for rendering
    assert len(rendered.boxes(3)) == 0 and len(rendered.boxes(6)) == 1  # only sequence 12 is blurred


@pytest.mark.parametrize("card, decision, message", [
    ("seq-99", "keep", "no card"),
    ("seq-7", "hide", "decision must be one of"),
])
def test_bad_decisions_are_refused(card, decision, message):
    with pytest.raises(edits.EditError, match=message):
        edits.set_decision(_plan(), card, decision, "editor", NOW)


def test_a_missed_face_is_carried_between_the_drawn_boxes_and_held_at_the_ends():
    keys = [edits.Keyframe(10, (100, 50, 140, 90)), edits.Keyframe(20, (200, 50, 240, 110))]
    edited, sid = edits.add_sequence(_plan(), keys, 5, 25, "editor", NOW)
    seq = next(s for s in edited["sequences"] if s["id"] == sid)
    assert sid == 13 and seq["first"] == 5 and seq["last"] == 25 and seq["decision"] == "blur"
    boxes = np.array(seq["boxes"])
    assert len(boxes) == 21
    assert boxes[0].tolist() == [100, 50, 140, 90]  # held before the first drawn frame
    assert boxes[10].tolist() == [150, 50, 190, 100]  # frame 15: halfway
    assert boxes[-1].tolist() == [200, 50, 240, 110]  # held after the last
    assert seq["rows"][5] == "d" and seq["rows"][15] == "d" and seq["rows"].count("d") == 2
    assert edited["audit"][-1]["action"] == "add" and edited["audit"][-1]["keyframes"] == [10, 20]
    plan = Plan.from_dict(edited)
    assert [150, 50, 190, 100] in plan.boxes(15).round(1).tolist()  # blurred there
    assert [c for c in edits.cards(edited) if c["id"] == f"seq-{sid}"][0]["added"]
    # undo
    undone = edits.remove_added(edited, sid, "editor", NOW)
    assert [s["id"] for s in undone["sequences"]] == [7, 9, 12]
    with pytest.raises(edits.EditError, match="not added in review"):
        edits.remove_added(edited, 7, "editor", NOW)


def test_a_missed_face_in_a_plan_with_persons_gets_its_own_person():
    edited, sid = edits.add_sequence(_plan(persons=True), [edits.Keyframe(3, (10, 10, 50, 50))], 1, 4, "e", NOW)
    assert edited["persons"][-1]["sequences"] == [sid]
    assert f"added-{sid}" in [c["id"] for c in edits.cards(edited)]


@pytest.mark.parametrize("keys, first, last, message", [
    ([], 1, 5, "at least one frame"),
    ([(3, (10, 10, 50, 50))], 6, 5, "after last frame"),
    ([(3, (10, 10, 50, 50))], 1, 41, "outside the video"),
    ([(9, (10, 10, 50, 50))], 1, 5, "outside the range"),
    ([(3, (50, 10, 50, 50))], 1, 5, "empty or reversed"),
    ([(3, (400, 10, 450, 50))], 1, 5, "outside the 320x180 frame"),
    ([(3, (10, 10, 50, 50)), (3, (20, 10, 60, 50))], 1, 5, "two boxes drawn on one frame"),
])
def test_bad_missed_faces_are_refused(keys, first, last, message):
    with pytest.raises(edits.EditError, match=message):
        edits.add_sequence(_plan(), [edits.Keyframe(f, b) for f, b in keys], first, last, "editor", NOW)


def test_plan_loading_accepts_the_audit_and_review_fields():
    edited = edits.set_decision(_plan(persons=True), "person-1", "keep", "editor", NOW)
    edited, _ = edits.add_sequence(edited, [edits.Keyframe(3, (10, 10, 50, 50))], 1, 4, "editor", NOW)
    edited = edits.note_save(edited, "plan.json", "ab" * 32, "editor", NOW)
    plan = Plan.loads(json.dumps(edited))
    assert plan.summary["kept"] == 2 and plan.summary["sequences"] == 4


# ---------------------------------------------------------------------------------------------- session


@pytest.fixture
def photo_review(tmp_path, faces_dir):
    """A photo and a hand-made plan of it in one folder."""
    work = tmp_path / "job"
    work.mkdir()
    photo = work / "two.jpg"
    photo.write_bytes((faces_dir / "two_people.jpg").read_bytes())
    from PIL import Image

    with Image.open(photo) as im:
        w, h = im.size
    plan = _plan()
    plan.update(width=w, height=h, frames=[[1, 1]], shots=[[1, 1]],
                sequences=[_seq(1, 1, 1, 10), _seq(2, 1, 1, w / 2)])
    path = work / "plan.json"
    path.write_text(json.dumps(plan))
    return photo, path


def test_saves_go_beside_the_original_never_over_it(photo_review):
    photo, plan_path = photo_review
    original = plan_path.read_bytes()
    (plan_path.parent / "plan.reviewed.json").write_text("{}")  # an earlier review is kept too
    session = ReviewSession(str(photo), str(plan_path), user="editor")
    session.toggle("seq-1")
    saved = Path(session.save())
    assert saved == plan_path.parent / "plan.reviewed-2.json"
    assert plan_path.read_bytes() == original and (plan_path.parent / "plan.reviewed.json").read_text() == "{}"
    data = json.loads(saved.read_text())
    assert [a["action"] for a in data["audit"]] == ["decision", "save"]
    assert data["audit"][1]["sha256"] == hashlib.sha256(original).hexdigest()
    assert data["audit"][0]["user"] == "editor" and data["audit"][0]["old"] == "blur"
    session.toggle("seq-2")
    assert Path(session.save()) == saved  # the session's own file is updated, nothing else
    assert session.render_output_uri() == str(photo.parent / "two_reviewed.jpg")
    session.close()


def test_the_os_user_is_recorded(photo_review):
    import getpass

    photo, plan_path = photo_review
    session = ReviewSession(str(photo), str(plan_path))
    session.toggle("seq-1")
    assert session.plan["audit"][0]["user"] == getpass.getuser()


@pytest.mark.parametrize("where", ["outside", "input", "plan", "climb"])
def test_outputs_outside_the_input_and_plan_folders_are_refused(photo_review, tmp_path_factory, where):
    photo, plan_path = photo_review
    output = {"outside": str(tmp_path_factory.mktemp("elsewhere") / "out.jpg"), "input": str(photo),
              "plan": str(plan_path), "climb": str(photo.parent / ".." / ".." / "out.jpg")}[where]
    with pytest.raises(ReviewError, match="outside the input's folder|over or into the input|outside"):
        ReviewSession(str(photo), str(plan_path), output=output)


def test_an_output_in_the_input_folder_is_accepted(photo_review):
    photo, plan_path = photo_review
    session = ReviewSession(str(photo), str(plan_path), output=str(photo.parent / "checked.jpg"))
    assert session.render_output_uri() == str(photo.parent / "checked.jpg")


def test_inside_handles_s3_and_local():
    assert inside("s3://b/out/job/reviewed/", "s3://b/out/job/")
    assert not inside("s3://b/out/job-x/", "s3://b/out/job/")
    assert not inside("s3://b/out/job/../other/", "s3://b/out/job/")
    assert not inside("/tmp/x", "s3://b/")


def test_a_plan_for_another_frame_size_is_refused(photo_review):
    photo, plan_path = photo_review
    data = json.loads(plan_path.read_text())
    data["width"] = 100
    plan_path.write_text(json.dumps(data))
    with pytest.raises(ReviewError, match="plan was made for 100x"):
        ReviewSession(str(photo), str(plan_path))


def test_the_server_refuses_other_hosts_cross_site_posts_and_paths(photo_review):
    photo, plan_path = photo_review
    with ReviewServer(str(photo), "--plan", str(plan_path)) as server:
        assert server.first_line.startswith(f"face-blur review: {server.url}/")

        def status(path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> int:
            req = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status("/api/state") == 200
        for path in ("/", "/cards", "/api/boxes/1", "/api/state"):  # embeddings never reach the page
            with urllib.request.urlopen(server.url + path, timeout=30) as r:
                assert b"embedding" not in r.read()
        assert status("/api/state", headers={"Host": "attacker.example"}) == 400  # DNS rebinding
        flip = json.dumps({"card": "seq-1", "toggle": True}).encode()
        assert status("/api/decision", "POST", flip, {"Content-Type": "text/plain"}) == 400  # a form post
        assert status("/api/decision", "POST", flip, {"Content-Type": "application/json",
                                                       "Origin": "https://attacker.example"}) == 403
        assert server.get("/api/state")["summary"]["changes"] == 0
        assert status("/thumb/..%2F..%2Fetc%2Fpasswd.jpg") in (400, 404)
        assert status("/frame/2.jpg") == 404  # a photo is frame 1
        assert status("/output") == 404  # nothing rendered
        assert status("/static/../app.py") == 404
        bad_box = json.dumps({"keyframes": [{"frame": 1, "box": "x"}], "first": 1, "last": 1}).encode()
        assert status("/api/faces", "POST", bad_box, {"Content-Type": "application/json"}) == 400
        # the API takes no path: a "path" or "output" in a body is ignored, the save goes beside the plan
        saved = server.post("/api/save", {"path": "/tmp/evil.json", "output": "/tmp/evil.mp4"})["saved"]
        assert saved == str(plan_path.parent / "plan.reviewed.json") and not Path("/tmp/evil.json").exists()


def test_review_refuses_a_missing_plan_with_one_line(tmp_path, capsys):
    from faceblur.cli import main

    photo = tmp_path / "p.jpg"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(photo)
    assert main(["review", str(photo), "--plan", str(tmp_path / "none.json")]) == 1
    assert "cannot read the plan" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- frames


def _numbered_clip(path: Path, spec: ClipSpec) -> list[np.ndarray]:
    """Frames that say their own number (a bright bar at x = 4 * number)."""
    def paint(i: int) -> np.ndarray:
        img = np.full((spec.height, spec.width, 3), 30, np.uint8)
        img[:, 4 * i:4 * i + 4] = 230
        return img

    make_clip(path, spec, paint)
    return read_frames(path)


@pytest.mark.parametrize("spec", [
    ClipSpec(width=320, height=96, frames=60, rate=Fraction(25), options={"preset": "ultrafast", "g": "12",
                                                                          "bf": "2"}),
    ClipSpec(width=320, height=96, frames=40, rate=Fraction(30), time_base=Fraction(1, 90000),
             pts=[i * 3000 + (i % 3) * 700 for i in range(40)], options={"preset": "ultrafast", "g": "8"}),
], ids=["constant rate with B-frames", "variable rate"])
def test_video_frames_are_read_by_seeking_as_decoding_gives_them(tmp_path, spec):
    path = tmp_path / "n.mp4"
    truth = _numbered_clip(path, spec)
    frames = VideoFrames(path)
    assert frames.wait_for_index(30)
    assert frames.count == len(truth)
    order = [37, 3, 38, 39, 12, 1, len(truth), 20, 21, 22, 5]
    for n in order:
        got = frames.frame(n)
        assert np.abs(got.astype(int) - truth[n - 1].astype(int)).mean() < 3, f"frame {n}"
    with pytest.raises(FrameError, match="frames 1.."):
        frames.frame(len(truth) + 1)
    frames.close()


# ---------------------------------------------------------------------------------------------- --draw-boxes


def test_render_draw_boxes_writes_a_debug_copy_with_every_box(tmp_path, faces_dir):
    from review_helpers import paint_two_people

    from faceblur.cli import main

    frames, truth = paint_two_people(faces_dir, frames=6)
    video = make_clip(tmp_path / "v.mp4", ClipSpec(width=640, height=360, frames=6, rate=Fraction(10)),
                      lambda i: frames[i])
    plan = _plan()
    plan.update(width=640, height=360, frames=[[1, 6]], shots=[[1, 6]], sequences=[
        {**_seq(1, 1, 6, 0), "boxes": [list(b) for b in truth["obama"]]},
        {**_seq(2, 1, 6, 0, decision="keep"), "boxes": [list(b) for b in truth["biden"]]}])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    assert main(["render", str(video), "--plan", str(plan_path), "--draw-boxes", "--no-progress"]) == 0
    out = read_frames(tmp_path / "v_boxes.mp4")  # not the _anonymized name: it shows faces
    assert len(out) == 6
    for i in (0, 5):
        for person, colour in (("obama", (230, 40, 40)), ("biden", (40, 200, 70))):
            x1, y1, x2, y2 = (int(round(v)) for v in truth[person][i])
            edge = out[i][(y1 + y2) // 2, x1 + 1].astype(int)  # the middle of the left side of the box
            main = int(np.argmax(colour))  # red for blur, green for keep (H.264 chroma blurs a thin line a bit)
            assert edge[main] - np.delete(edge, main).max() > 30, (person, edge)
            assert np.abs(edge - frames[i][(y1 + y2) // 2, x1 + 1]).max() > 40  # drawn, not the picture's own
            inner = out[i][y1 + 10:y2 - 10, x1 + 10:x2 - 10].astype(int)
            assert np.abs(inner - frames[i][y1 + 10:y2 - 10, x1 + 10:x2 - 10]).mean() < 6  # not blurred


def test_a_frames_folder_is_reviewed_and_rendered_beside_it(tmp_path, faces_dir, capsys):
    """A folder of numbered frames: read one file per frame, rendered to ``<name>_reviewed/`` by the
    same child-process entry point the page starts."""
    from PIL import Image
    from review_helpers import paint_two_people
    from video_helpers import detail

    from faceblur.review import job

    frames, truth = paint_two_people(faces_dir, frames=4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"img{i:07d}.png")
    plan = _plan()
    plan.update(width=640, height=360, frames=[[1, 4]], shots=[[1, 4]], sequences=[
        {**_seq(1, 1, 4, 0), "boxes": [list(b) for b in truth["obama"]]},
        {**_seq(2, 1, 4, 0), "boxes": [list(b) for b in truth["biden"]]}])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    session = ReviewSession(str(folder), str(plan_path))
    assert session.frames.count == 4 and np.array_equal(session.frames.frame(3), frames[2])
    session.toggle("seq-2")
    spec = {"input": session.input_uri, "plan": session.save(), "output": session.render_output_uri(),
            "render": session.render_config.to_dict(), "total": 4}
    assert job.main([json.dumps(spec)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {"ok": True, "output": str(tmp_path / "frames_reviewed")} and lines[-2]["done"] == 4
    for i in range(4):
        got = np.asarray(Image.open(tmp_path / "frames_reviewed" / f"img{i + 1:07d}.png"))
        assert detail(got, truth["obama"][i]) < 0.5 * detail(frames[i], truth["obama"][i])
        assert detail(got, truth["biden"][i]) > 0.9 * detail(frames[i], truth["biden"][i])
    session.close()


def test_the_blur_options_of_the_run_that_made_the_plan_are_used(photo_review):
    """A plan from the post-processing stage has its run's options in the marker beside it: the
    preview and the render blur as that run did, unless options are given."""
    photo, plan_path = photo_review
    (plan_path.parent / "face-blur-complete.json").write_text(json.dumps(
        {"options": {"render": {"style": "pixelate", "mask_scale": 1.6}}}))
    session = ReviewSession(str(photo), str(plan_path))
    assert (session.render_config.style, session.render_config.mask_scale) == ("pixelate", 1.6)
    given = ReviewSession(str(photo), str(plan_path), render_options={"style": "solid"})
    assert given.render_config.style == "solid"
    from faceblur.review import session as review_session
    from postprocess import run

    assert review_session.MARKER_NAME == run.MARKER_NAME


def test_the_plan_records_the_detector_score_of_each_frame():
    """The overlay's score comes from the plan: each detected row's detector score, 0 where the
    row was filled in or padded; it survives the JSON round trip and the overlay shows it."""
    from decisions_helpers import Appearance, box_at, build_results, people

    from faceblur.review.overlay import Overlay, label
    from postprocess.config import PlanConfig
    from postprocess.plan import make_plan

    (alice,) = people(1, seed=3)
    results = build_results([Appearance(alice, range(5, 40), lambda f: box_at(100 + f, 100, 60), missed={20},
                                        score=0.83)], 50)
    data = json.loads(make_plan(results, PlanConfig()).dumps())
    seq = data["sequences"][0]
    conf = dict(zip(range(seq["first"], seq["last"] + 1), seq["confidence"], strict=True))
    rows = dict(zip(range(seq["first"], seq["last"] + 1), seq["rows"], strict=True))
    assert conf[10] == pytest.approx(0.83, abs=0.01) and rows[10] == "d"
    assert conf[20] == 0 and rows[20] == "i" and conf[seq["first"]] == 0 and rows[seq["first"]] == "p"
    assert Plan.from_dict(data).sequences[0].confidence is not None
    overlay = Overlay(data)
    assert label(overlay.at(10)[0]) == f"#{seq['id']} blur 0.83" and label(overlay.at(20)[0]).endswith(" -")


def test_opening_the_review_does_not_load_the_planning_code(photo_review):
    """What keeps the first screen quick (bench/review_open.py): the review reads the plan through
    its format module and parses only its own options, so SciPy (a second of CPU) is not loaded."""
    import subprocess
    import sys

    from conftest import REPO

    photo, plan_path = photo_review
    code = ("import sys\nfrom faceblur.cli import _review_only_parser\n"
            "from faceblur.review.app import create_app\nfrom faceblur.review.session import ReviewSession\n"
            f"args = _review_only_parser().parse_args(['review', {str(photo)!r}, '--plan', {str(plan_path)!r}])\n"
            "create_app(ReviewSession(args.input, args.plan_path))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'onnxruntime', 'handler')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
