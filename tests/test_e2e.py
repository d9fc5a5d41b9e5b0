"""End to end through the real parts on loopback: S3 (moto server), the inference server started by
``face-blur serve``, ``face-blur transform`` between them (the Batch Transform stand-in), then
``face-blur postprocess`` from S3 into S3, on a short scene of real faces with a pan, a zoom and a
cut (tests/scenes.py) whose face boxes are known.

Checked against the ground truth, for modes all, unknown and known: every face that must be hidden
is blurred in every frame it is visible in, and every face that must stay is untouched, except where
the plan blurs it to be safe (a borderline sequence, e.g. too few detections to be identified).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scenes import REFERENCES, make_scene
from video_helpers import detail

from faceblur.cli import main

pytestmark = pytest.mark.slow

MIN_SIDE = 12  # a face cut to a sliver by the frame edge is not measured (too few pixels to judge)
KEEP_MARGIN = 0.25  # kept faces are compared on their central part (a neighbour's soft edge may reach the rim)


@pytest.fixture(scope="module")
def scene(faces_dir):
    return make_scene(faces_dir, size=(640, 360), frames=14, empty=2)


@pytest.fixture(scope="module")
def endpoint(test_model_dir, tmp_path_factory):
    """The real inference server started the way a user starts it, ``face-blur serve``, on a free
    loopback port (tests/servers.py drives and stops it: by PID, its whole process group)."""
    import http.client
    import subprocess
    import sys
    import time

    from conftest import REPO, free_port, stop_pid
    from servers import START_TIMEOUT_S, RunningServer, ServerStartError

    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    command = [sys.executable, "-m", "faceblur.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model-dir", str(test_model_dir), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACE_BLUR_", "SAGEMAKER_"))}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = RunningServer(proc, "127.0.0.1", port, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise ServerStartError(f"face-blur serve exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if server.ping(timeout=2) == 200:
                    break
            if time.monotonic() > deadline:
                raise ServerStartError(f"no /ping 200 in {START_TIMEOUT_S} s:\n{server.log_text()[-4000:]}")
            time.sleep(0.3)
        yield server.url
    finally:
        stop_pid(proc)


def _upload(s3, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _download_frames(s3, bucket: str, prefix: str, count: int) -> list[np.ndarray]:
    out = []
    for n in range(1, count + 1):
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}img{n:07d}.png")["Body"].read()
        out.append(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
    return out


def _central(box, margin: float = KEEP_MARGIN):
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (x1 + dx, y1 + dy, x2 - dx, y2 - dy)


def _covered(face, box) -> float:
    """The fraction of ``face`` that ``box`` covers."""
    ix = max(0.0, min(face[2], box[2]) - max(face[0], box[0]))
    iy = max(0.0, min(face[3], box[3]) - max(face[1], box[1]))
    area = (face[2] - face[0]) * (face[3] - face[1])
    return ix * iy / area if area > 0 else 0.0


def _fail_safe(plan: dict, number: int, face) -> bool:
    """The plan blurs (part of) this face to be safe: a borderline sequence (identity not certain,
    e.g. only two detections in the degraded frames, padded at both ends) covers it in this frame.
    Blurring it is the designed outcome, recorded in the plan with its reason."""
    for seq in plan["sequences"]:
        k = number - seq["first"]
        if seq["borderline"] and seq["decision"] == "blur" and 0 <= k < len(seq["boxes"]):
            if _covered(face, seq["boxes"][k]) > 0.05:
                return True
    return False


def _measurable(box) -> bool:
    return box[2] - box[0] >= MIN_SIDE and box[3] - box[1] >= MIN_SIDE


def test_frames_through_server_transform_and_postprocess_in_s3(scene, endpoint, s3, bucket, faces_dir, capsys):
    job = "jobs/e2e"
    for i, frame in enumerate(scene.frames):
        _upload(s3, bucket, f"{job}/frames/img{i + 1:07d}.png", _png(frame))
    # one reference photo of obama (not the photo the scene was made from)
    _upload(s3, bucket, f"{job}/reference-photos/obama/{REFERENCES['obama']}",
            (Path(faces_dir) / REFERENCES["obama"]).read_bytes())

    for src, dst in (("frames", "results"), ("reference-photos", "references")):
        code = main(["transform", "--endpoint", endpoint, "--input", f"s3://{bucket}/{job}/{src}/",
                     "--output", f"s3://{bucket}/{job}/{dst}/", "--concurrency", "2", "--no-progress"])
        assert code == 0, capsys.readouterr().err
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{job}/results/")["Contents"]
    assert len(listed) == len(scene.frames)

    # who must be hidden in each mode (obama is the reference person)
    people = {"obama", "biden", "rose_leslie"}
    hidden = {"all": people, "unknown": people - {"obama"}, "known": {"obama"}}
    for mode, to_hide in hidden.items():
        argv = ["postprocess", f"s3://{bucket}/{job}/frames/", f"s3://{bucket}/{job}/results/",
                f"s3://{bucket}/{job}/out-{mode}/", "--mode", mode]
        if mode != "all":
            argv += ["--references", f"s3://{bucket}/{job}/references/"]
        assert main(argv) == 0, capsys.readouterr().err
        outputs = _download_frames(s3, bucket, f"{job}/out-{mode}/", len(scene.frames))
        plan = json.loads(s3.get_object(Bucket=bucket, Key=f"{job}/out-{mode}/face-blur-plan.json")["Body"].read())
        untouched = 0
        for i, (out, truth) in enumerate(zip(outputs, scene.truth, strict=True)):
            clean = scene.reference(i)
            for person, box in truth.items():
                if not _measurable(box):
                    continue
                if person in to_hide:
                    assert detail(out, box) < 0.5 * detail(clean, box), f"{mode}: {person} visible in frame {i + 1}"
                elif not _fail_safe(plan, i + 1, box):
                    x1, y1, x2, y2 = (int(round(v)) for v in _central(box))
                    same = np.array_equal(out[y1:y2, x1:x2], scene.frames[i][y1:y2, x1:x2])
                    assert same, f"{mode}: {person} was touched in frame {i + 1}"
                    untouched += 1
            if not truth:
                assert np.array_equal(out, scene.frames[i]), f"{mode}: empty frame {i + 1} changed"
        assert untouched >= (10 if mode != "all" else 0)  # the kept people were checked, not all excused
        marker = s3.head_object(Bucket=bucket, Key=f"{job}/out-{mode}/face-blur-complete.json")
        assert marker["ContentLength"] > 0
