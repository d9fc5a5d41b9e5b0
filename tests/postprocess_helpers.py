"""Helpers shared by the post-processing tests (usable by the CLI tests too).

- :func:`analysed_scene`: the moving test scene (tests/scenes.py) as PNG frames plus the results of
  the REAL inference pipeline (detector + MobileFaceNet) for every frame and for a reference photo of
  the person to keep, computed once per test process.
- :func:`new_bucket`, :func:`put_tree` / :func:`get_tree`: a fresh bucket; upload / download a
  ``{relative key: bytes}`` tree.
- :func:`face_hidden` / :func:`face_untouched`: what a viewer would notice about one face box.
"""

from __future__ import annotations

import functools
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scenes import REFERENCES, Scene, make_scene

from contract import dumps

SCENE_FRAMES = 16
KEPT = "obama"  # the person with a reference photo in the identity tests


@dataclass(frozen=True)
class AnalysedScene:
    scene: Scene
    frames: dict[str, bytes]  # "img0000001.png" -> PNG bytes (scene frame i is number i + 1)
    results: dict[str, bytes]  # "img0000001.png.out" -> face-blur/frame/v1 JSON
    references: dict[str, bytes]  # "obama/obama2.jpg.out" -> the reference photo's result

    @staticmethod
    def name(i: int) -> str:
        return f"img{i + 1:07d}.png"


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG")
    return buf.getvalue()


def decode(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as im:
        return np.asarray(im.convert("RGB"))


@functools.cache
def analysed_scene(faces_dir: Path, model_dir: Path) -> AnalysedScene:
    from conftest import load_rgb

    from handler.pipeline import PipelineConfig, load_pipeline

    scene = make_scene(faces_dir, frames=SCENE_FRAMES)
    pipeline = load_pipeline(PipelineConfig(model_dir=model_dir, embedder="mobilefacenet"))
    frames, results = {}, {}
    for i, frame in enumerate(scene.frames):
        name = AnalysedScene.name(i)
        frames[name] = png_bytes(frame)
        results[name + ".out"] = dumps(pipeline.analyse(frame, i + 1))
    photo = REFERENCES[KEPT]
    references = {f"{KEPT}/{photo}.out": dumps(pipeline.analyse(load_rgb(Path(faces_dir) / photo)))}
    return AnalysedScene(scene, frames, results, references)


def new_bucket(s3: Any) -> str:
    """A fresh, uniquely named bucket (conftest's ``bucket`` is named after the test, so the cases of a
    parametrised test would share one in the session-wide moto server)."""
    import uuid

    name = f"fb-pp-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    return name


def put_tree(s3: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    prefix = prefix.strip("/") + "/"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=prefix + kv[0], Body=kv[1]), files.items()))


def get_tree(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix`` as ``{key relative to prefix: bytes}``."""
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", ())]
    with ThreadPoolExecutor(8) as pool:
        bodies = pool.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys)
        return {k[len(prefix):]: b for k, b in zip(keys, bodies, strict=True)}


def _gray(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _detail(g: np.ndarray) -> float:
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def _inner(box: tuple[float, ...], fraction: float) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * fraction / 2, (y2 - y1) * fraction / 2
    return slice(int(cy - hh), int(np.ceil(cy + hh))), slice(int(cx - hw), int(np.ceil(cx + hw)))


def face_hidden(reference: np.ndarray, output: np.ndarray, box: tuple[float, ...],
                fraction: float = 0.7) -> tuple[bool, str]:
    """Is the face in ``box`` hidden in ``output``? The central ``fraction`` of the box must differ
    from the clear face (mean > 12 grey levels) and keep under 30% of its detail (mean gradient)."""
    rows, cols = _inner(box, fraction)
    a, b = _gray(reference[rows, cols]), _gray(output[rows, cols])
    if a.size == 0:
        return True, "empty"
    diff = float(np.abs(a - b).mean())
    ratio = _detail(b) / max(_detail(a), 1e-6)
    return diff > 12 and ratio < 0.3, f"mean diff {diff:.1f}, detail kept {ratio:.0%}"


def face_untouched(original: np.ndarray, output: np.ndarray, box: tuple[float, ...]) -> tuple[bool, str]:
    """The face box of ``output`` equals the input (under 1 grey level on average: PNG is lossless)."""
    rows, cols = _inner(box, 1.0)
    diff = float(np.abs(_gray(original[rows, cols]) - _gray(output[rows, cols])).mean())
    return diff < 1.0, f"mean diff {diff:.2f}"


def plan_coverage(plan: Any, frame: int, box: tuple[float, ...], size: tuple[int, int]) -> float:
    """Fraction of ``box`` inside the union of the plan's boxes for ``frame`` (before the mask
    scale) in a frame of ``size`` (width, height)."""
    mask = np.zeros((size[1], size[0]), bool)
    for x1, y1, x2, y2 in plan.boxes(frame):
        mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = True
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(mask[y1:y2, x1:x2].mean())


def moto_batch_queue(name: str) -> tuple[Any, str]:
    """A job queue named ``name`` on an unmanaged compute environment in moto's Batch (server
    mode; the environment's endpoint variables point boto3 at it): (the batch client, its name)."""
    import boto3

    iam, batch = boto3.client("iam"), boto3.client("batch")
    role = iam.create_role(RoleName=f"r-{name}"[:64], AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(computeEnvironmentName=f"ce-{name}"[:128], type="UNMANAGED",
                                          state="ENABLED", serviceRole=role)
    queue = batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1,
                                                             "computeEnvironment": ce["computeEnvironmentArn"]}])
    return batch, queue["jobQueueName"]
