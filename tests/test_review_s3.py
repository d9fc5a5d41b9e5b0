"""The review on the AWS layout: frames and plan in S3 (a real S3 API: moto in server mode, reached
by boto3 over HTTP). The page opens them, saves the edited plan beside the original object, and
renders through the post-processing stage (``postprocess.edited.rerender``) into
``<plan folder>/reviewed/`` with a digest computed from the edited plan, so the output checks out
as a finished run of that plan."""

from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from review_helpers import ReviewServer, paint_two_people
from video_helpers import detail

pytestmark = pytest.mark.slow


def _plan(truth: dict, frames: int) -> dict:
    def seq(sid: int, boxes: list) -> dict:
        return {"id": sid, "shot": 0, "first": 1, "last": frames, "rows": "d" * frames,
                "boxes": [list(b) for b in boxes], "decision": "blur", "reason": "mode all blurs every face",
                "borderline": False, "confidence": [0.9] * frames}

    return {"schema": "face-blur/plan/v1", "width": 640, "height": 360, "detector": "centerface", "embedder": "",
            "options": {"mode": "all"}, "identity": {}, "frames": [[1, frames]], "full_frames": [],
            "shots": [[1, frames]], "sequences": [seq(1, truth["obama"]), seq(2, truth["biden"])]}


def test_review_opens_saves_and_renders_on_s3(s3, bucket, faces_dir):
    from postprocess.run import RunConfig, load_plan
    from postprocess.storage import Store

    frames, truth = paint_two_people(faces_dir, frames=8)
    for i, frame in enumerate(frames, start=1):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, "PNG")
        s3.put_object(Bucket=bucket, Key=f"input/job/frames/img{i:07d}.png", Body=buf.getvalue())
    plan_body = json.dumps(_plan(truth, len(frames))).encode()
    s3.put_object(Bucket=bucket, Key="output/job/face-blur-plan.json", Body=plan_body)
    frames_uri, plan_uri = f"s3://{bucket}/input/job/frames/", f"s3://{bucket}/output/job/face-blur-plan.json"

    with ReviewServer(frames_uri, "--plan", plan_uri) as server:
        summary = server.get("/api/state")["summary"]
        assert (summary["frames"], summary["width"], summary["height"], summary["cards"]) == (8, 640, 360, 2)
        import urllib.request

        with urllib.request.urlopen(server.url + "/thumb/seq-1.jpg", timeout=30) as r:
            thumb = np.asarray(Image.open(io.BytesIO(r.read())))
        assert thumb.shape[0] > 50  # obama's face, read from the frame object
        server.post("/api/decision", {"card": "seq-1", "toggle": True})  # keep obama clear
        state = server.post("/api/render")
        deadline = time.time() + 180
        while state["render"]["state"] == "running" and time.time() < deadline:
            time.sleep(0.5)
            state = server.get("/api/state")
        assert state["render"]["state"] == "done", state["render"]
        assert state["render"]["output"] == f"s3://{bucket}/output/job/reviewed/"
        assert state["render"]["done"] == 8

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "output/job/face-blur-plan.reviewed.json" in keys  # beside the original
    assert s3.get_object(Bucket=bucket, Key="output/job/face-blur-plan.json")["Body"].read() == plan_body
    edited = json.loads(s3.get_object(Bucket=bucket, Key="output/job/face-blur-plan.reviewed.json")["Body"].read())
    assert [a["action"] for a in edited["audit"]] == ["decision", "save"]
    assert edited["audit"][1]["sha256"] == hashlib.sha256(plan_body).hexdigest()
    assert "output/job/reviewed/face-blur-complete.json" in keys
    for i in range(1, 9):
        body = s3.get_object(Bucket=bucket, Key=f"output/job/reviewed/img{i:07d}.png")["Body"].read()
        got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        o, b = truth["obama"][i - 1], truth["biden"][i - 1]
        assert detail(got, o) > 0.9 * detail(frames[i - 1], o), f"frame {i}: obama kept clear"
        assert detail(got, b) < 0.5 * detail(frames[i - 1], b), f"frame {i}: biden blurred"
    # the edited plan is a recorded input of that output: the stage's own digest check accepts it
    plan, manifest = load_plan(Store(), f"s3://{bucket}/output/job/reviewed/", RunConfig())
    assert plan.summary["kept"] == 1 and len(manifest.frames) == 8
    marker = json.loads(s3.get_object(Bucket=bucket, Key="output/job/reviewed/face-blur-complete.json")["Body"].read())
    assert marker["digest"] == manifest.digest
