"""Shared fixtures: real photos, the real test embedder, and a real S3 API on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACE_BLUR_SHARED", REPO.parent / "shared")) / "testdata"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server we started, by its PID (its whole process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    path = SHARED / "faces"
    if not path.is_dir():
        pytest.skip(f"shared test photos not found at {path} (a clone without ../shared)")
    return path


@pytest.fixture(scope="session")
def mobilefacenet_path() -> Path:
    path = SHARED / "models" / "mobilefacenet.onnx"
    if not path.is_file():
        pytest.skip(f"shared MobileFaceNet weights not found at {path} (a clone without ../shared)")
    return path


@pytest.fixture(scope="session")
def test_model_dir(tmp_path_factory, mobilefacenet_path) -> Path:
    """A model directory as the fetch script leaves it, holding only what is offline here:
    MobileFaceNet from ../shared (MTCNN and CenterFace come from their installed packages)."""
    d = tmp_path_factory.mktemp("models")
    (d / "mobilefacenet.onnx").symlink_to(mobilefacenet_path)
    return d


@pytest.fixture(scope="session")
def t1_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        pytest.skip("insightface is not installed (its wheel carries data/images/t1.jpg)")
    path = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        pytest.skip(f"{path} missing from the insightface install")
    return path


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode on a loopback port, reached by boto3 over HTTP; stopped by PID."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto server exited at start") from None
            time.sleep(0.2)
    else:
        stop_pid(proc)
        raise RuntimeError("moto server did not start in 30 s")
    yield url
    stop_pid(proc)


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """Environment so that boto3 (ours and the code under test) talks to the moto server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # honoured by boto3 >= 1.28
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture
def s3(s3_env):
    import boto3

    return boto3.client("s3", endpoint_url=s3_env)


@pytest.fixture
def bucket(s3, request) -> str:
    name = "fb-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    name = "".join(c for c in name if c.isalnum() or c == "-")[:60]
    s3.create_bucket(Bucket=name)
    return name
