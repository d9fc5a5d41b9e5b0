"""The inference server, for real: ``python -m handler.serve`` (multi-model-server, the toolkit, the
real detector and MobileFaceNet) on a loopback port, driven over HTTP, stopped by PID.

Only one server runs at a time: the start-up failures and the second configuration come first,
then one module-scoped server serves the rest; the last test stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from dataclasses import replace
from operator import attrgetter
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from servers import run_to_exit, serving
from serving_helpers import (
    bomb_png,
    encode,
    exif_rotated_jpeg,
    noisy_4k_png,
    photo,
    png16_grey,
    png16_rgb,
    with_alpha,
)

from contract import decode_embedding, loads
from handler.detector import DetectorConfig
from handler.pipeline import DEFAULT_MODEL_DIR
from handler.serving.config import ConfigError, ServingConfig
from handler.serving.errors import NotAcceptableError
from handler.serving.machine import default_workers, worker_bytes
from handler.serving.serve import build_parser, config_from
from handler.serving.service import check_accept

slow = pytest.mark.slow

EMBEDDER = "mobilefacenet"  # test_model_dir holds only MobileFaceNet: "auto" must choose it
EMBEDDING_DIM = 192


@pytest.fixture(scope="module")
def people(faces_dir) -> Image.Image:
    return photo(faces_dir / "two_people.jpg", width=480)


@pytest.fixture(scope="module")
def small_jpeg(faces_dir) -> bytes:
    return encode(photo(faces_dir / "two_people.jpg", width=320), "JPEG")


def json_error(status: int, body: bytes) -> str:
    """The message of a JSON error body; fails when the body is MMS's raw text or a traceback."""
    data = json.loads(body)
    assert data["code"] == status and isinstance(data["message"], str) and data["message"]
    assert "Traceback" not in data["message"] and "Prediction failed" not in data["message"]
    return data["message"]


def assert_sane_faces(result, width: int, height: int, at_least: int) -> None:
    faces = result.faces
    assert (result.width, result.height) == (width, height)
    assert len(faces) >= at_least
    x1, y1, x2, y2 = faces.xyxy.T
    assert np.all(x2 > x1) and np.all(y2 > y1)
    assert np.all(x1 >= -1) and np.all(y1 >= -1) and np.all(x2 <= width + 1) and np.all(y2 <= height + 1)
    assert np.all((x2 - x1) < width) and np.all((y2 - y1) < height)
    assert np.all((faces.confidence > 0) & (faces.confidence <= 1))
    assert faces.embedding.shape == (len(faces), EMBEDDING_DIM)
    # faces scoring the embedding floor are embedded (unit vectors); low candidates carry zeros (README)
    from handler.pipeline import EMBED_MIN_SCORE

    norms = np.linalg.norm(faces.embedding, axis=1)
    embedded = faces.confidence >= EMBED_MIN_SCORE
    assert embedded.any()
    assert np.allclose(norms[embedded], 1.0, atol=0.01) and np.allclose(norms[~embedded], 0.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- settings, without a server -------------------------------------------------------------------

def test_settings_default_as_documented(tmp_path):
    config = ServingConfig.from_env({"FACE_BLUR_MODEL_DIR": str(tmp_path)})
    assert (config.host, config.port, config.model_dir) == ("127.0.0.1", 8080, tmp_path)
    pipeline = config.pipeline
    assert (pipeline.embedder, pipeline.device, pipeline.gpu_fallback) == ("auto", "auto", True)
    assert pipeline.detector == DetectorConfig()
    assert (config.max_payload_bytes, config.max_pixels) == (6 * 2**20, 36_000_000)
    assert (config.workers, config.response_timeout_s, config.startup_timeout_s) == (None, 60, 600)


@pytest.mark.parametrize("env, field, value", [
    ({"SAGEMAKER_BIND_TO_PORT": "9090"}, "port", 9090),
    ({"FACE_BLUR_BIND_HOST": "0.0.0.0"}, "host", "0.0.0.0"),
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}, "max_payload_bytes", 100 * 2**20),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, "workers", 3),
    ({"SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "45"}, "response_timeout_s", 45),
    ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"}, "response_timeout_s", 120),  # minutes, as MMS 1.1.11 reads it
    ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "30"}, "response_timeout_s", 30),
    ({"FACE_BLUR_GPU_FALLBACK": "false"}, "pipeline.gpu_fallback", False),
    ({"FACE_BLUR_DEVICE": "CPU"}, "pipeline.device", "cpu"),
    ({"FACE_BLUR_EMBEDDER": "none"}, "pipeline.embedder", "none"),
    ({"FACE_BLUR_DETECTOR": "centerface"}, "pipeline.detector", replace(DetectorConfig(), backend="centerface")),
    ({"FACE_BLUR_MIN_FACE": "24"}, "pipeline.detector", replace(DetectorConfig(), min_face=24)),
])
def test_each_variable_sets_its_setting(env, field, value):
    assert attrgetter(field)(ServingConfig.from_env(env)) == value


@pytest.mark.parametrize("env, name", [
    ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT"),
    ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "SAGEMAKER_BIND_TO_PORT"),
    ({"FACE_BLUR_DEVICE": "tpu"}, "FACE_BLUR_DEVICE"),
    ({"FACE_BLUR_GPU_FALLBACK": "maybe"}, "FACE_BLUR_GPU_FALLBACK"),
    ({"FACE_BLUR_EMBEDDER": "facenet"}, "FACE_BLUR_EMBEDDER"),
    ({"FACE_BLUR_DETECTOR": "yolo"}, "FACE_BLUR_DETECTOR"),
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, "SAGEMAKER_MODEL_SERVER_WORKERS"),
    ({"FACE_BLUR_MAX_PIXELS": "-5"}, "FACE_BLUR_MAX_PIXELS"),
])
def test_a_bad_value_is_refused_naming_its_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        ServingConfig.from_env(env)


def test_workers_get_the_same_settings_as_the_supervisor(tmp_path):
    env = {"FACE_BLUR_MODEL_DIR": str(tmp_path), "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3",
           "FACE_BLUR_EMBEDDER": "dlib", "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "FACE_BLUR_MIN_FACE": "20"}
    config = ServingConfig.from_env(env)
    assert ServingConfig.from_env(config.to_env()) == config


def test_options_override_the_environment(tmp_path):
    args = build_parser().parse_args(["serve", "--port", "9000", "--embedder", "none", "--detector", "mtcnn",
                                      "--model-dir", str(tmp_path)])
    config = config_from(args, {"SAGEMAKER_BIND_TO_PORT": "8081", "FACE_BLUR_EMBEDDER": "dlib",
                                "SAGEMAKER_MAX_PAYLOAD_IN_MB": "50"})
    assert (config.port, config.pipeline.embedder, config.pipeline.detector.backend, config.model_dir) == (
        9000, "none", "mtcnn", tmp_path)
    assert config.max_payload_mb == 50


def test_the_model_directory_is_sagemakers_when_it_exists(tmp_path):
    (tmp_path / "model").mkdir()
    assert ServingConfig.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).model_dir == tmp_path / "model"
    chosen = ServingConfig.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "FACE_BLUR_MODEL_DIR": "/x"})
    assert chosen.model_dir == Path("/x")
    assert ServingConfig.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path / "none")}).model_dir == DEFAULT_MODEL_DIR


def test_the_command_line_and_the_server_look_for_models_in_the_same_place(tmp_path, monkeypatch):
    from handler.pipeline import PipelineConfig

    (tmp_path / "model").mkdir()
    monkeypatch.delenv("FACE_BLUR_MODEL_DIR", raising=False)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    import os

    assert PipelineConfig().resolved_model_dir() == ServingConfig.from_env(dict(os.environ)).model_dir
    monkeypatch.setenv("FACE_BLUR_MODEL_DIR", "~/models")
    assert PipelineConfig().resolved_model_dir() == Path("~/models").expanduser()


GIB = 2**30


@pytest.mark.parametrize("cpus, memory, gpus, per_worker, expected", [
    (4, 16 * GIB, 0, 2 * GIB, 4),  # ml.m5.xlarge: one per core
    (4, 8 * GIB, 0, 2 * GIB, 3),  # ml.c5.xlarge: memory decides
    (2, 4 * GIB, 0, 2 * GIB, 1),  # ml.c5.large
    (16, 32 * GIB, 0, 2 * GIB, 15),
    (1, 1 * GIB, 0, 2 * GIB, 1),  # never fewer than one
    (8, 32 * GIB, 1, 2 * GIB, 1),  # ml.g4dn.2xlarge: one CUDA context per GPU
    (48, 192 * GIB, 4, 2 * GIB, 4),  # ml.g4dn.12xlarge
])
def test_default_workers_follow_cores_memory_and_gpus(cpus, memory, gpus, per_worker, expected):
    assert default_workers(cpus, memory, gpus, per_worker) == expected


def test_a_larger_embedder_file_raises_the_memory_per_worker(tmp_path):
    base = worker_bytes(tmp_path)
    (tmp_path / "arcfaceresnet100-8.onnx").write_bytes(bytes(10 * 2**20))
    assert worker_bytes(tmp_path) > base


@pytest.mark.parametrize("accept, ok", [
    (None, True), ("", True), ("*/*", True), ("application/json", True), ("application/*", True),
    ("Application/JSON; charset=utf-8", True), ("text/html, application/json;q=0.9", True),
    ("text/csv", False), ("image/png", False), ("application/json;q=0", False),
])
def test_accept_header_negotiation(accept, ok):
    if ok:
        assert check_accept(accept) == "application/json"
    else:
        with pytest.raises(NotAcceptableError) as caught:
            check_accept(accept)
        assert caught.value.status_code == 406


# --- start-up that must fail, before any server is up -------------------------------------------

@slow
def test_a_missing_model_file_stops_start_up_naming_the_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    code, out = run_to_exit(models, tmp_path / "serve.log", env={"FACE_BLUR_EMBEDDER": EMBEDDER})
    assert code is not None and code != 0, out[-3000:]
    assert str(models / "mobilefacenet.onnx") in out and "start-up failed" in out


@slow
def test_a_corrupt_model_file_stops_start_up_naming_the_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "mobilefacenet.onnx").write_bytes(b"this is not an ONNX model" * 40)
    code, out = run_to_exit(models, tmp_path / "serve.log")  # embedder "auto" finds the broken file
    assert code is not None and code != 0, out[-3000:]
    assert str(models / "mobilefacenet.onnx") in out and "start-up failed" in out


@slow
def test_a_gpu_required_but_absent_refuses_to_start(tmp_path, test_model_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider; the refusal needs one without")
    code, out = run_to_exit(test_model_dir, tmp_path / "serve.log",
                            env={"FACE_BLUR_DEVICE": "gpu", "FACE_BLUR_GPU_FALLBACK": "false"})
    assert code is not None and code != 0, out[-3000:]
    assert "GPU REQUESTED BUT NOT AVAILABLE" in out


@slow
def test_a_taken_port_refuses_to_start(tmp_path, test_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = run_to_exit(test_model_dir, tmp_path / "serve.log", args=("--port", str(port)))
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in out


@slow
def test_a_4k_png_is_served_with_the_payload_setting_and_gpu_fallback_is_loud(tmp_path, test_model_dir, people):
    body = noisy_4k_png(people)
    assert len(body) > 6 * 2**20  # over the default limit, the case that fails with MMS's defaults
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100", "FACE_BLUR_DEVICE": "gpu", "FACE_BLUR_GPU_FALLBACK": "true"}
    with serving(test_model_dir, tmp_path / "serve.log", env=env) as server:
        status, headers, answer = server.invoke(body, "image/png", timeout=300)
        log = server.wait_for_log("ready in")
    assert status == 200, answer[:500]
    assert_sane_faces(loads(answer), 3840, 2160, at_least=2)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "GPU REQUESTED BUT NOT AVAILABLE" in log and "Falling back to the CPU" in log
        assert "execution provider=CPUExecutionProvider" in log


# --- one server for the rest -------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(test_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(test_model_dir, log, workers=2) as running:
        yield running


@slow
def test_ping_is_503_while_models_load_and_200_once_every_worker_has_them(server, small_jpeg):
    statuses = [status for status, _ in server.startup_pings]
    assert statuses[-1] == 200 and 503 in statuses and set(statuses) == {200, 503}
    first = json.loads(server.startup_pings[0][1])
    assert first["status"] == "Unhealthy" and first["workers"] in ("0/2 loaded", "1/2 loaded")
    status, headers, body = server.request("GET", "/ping")
    assert status == 200 and json.loads(body) == {"status": "Healthy", "workers": "2/2 loaded"}
    log = server.wait_for_log("ready in")
    assert f"embedder={EMBEDDER}" in log and "execution provider=CPUExecutionProvider" in log


@slow
def test_a_real_photo_gives_its_faces(server, faces_dir):
    body = (faces_dir / "obama_and_biden.jpg").read_bytes()
    status, headers, answer = server.invoke(body, "image/jpeg", accept="application/json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    result = loads(answer)
    with Image.open(faces_dir / "obama_and_biden.jpg") as im:
        width, height = im.size
    assert_sane_faces(result, width, height, at_least=2)
    assert result.detector == DetectorConfig().backend and result.embedder == EMBEDDER
    assert len(result.signature) > 0
    raw = json.loads(answer)["faces"][0]["embedding"]  # the wire encoding decodes to the vector
    assert np.allclose(decode_embedding(raw), result.faces.embedding[0])


@slow
def test_a_frame_without_faces_gives_an_empty_list(server):
    ramp = np.linspace(0, 255, 640, dtype=np.uint8)
    frame = np.stack([np.tile(ramp, (360, 1))] * 3, axis=2)
    status, _, answer = server.invoke(encode(Image.fromarray(frame), "PNG"), "image/png")
    assert status == 200
    result = loads(answer)
    assert (result.width, result.height, len(result.faces)) == (640, 360, 0)


@slow
def test_boxes_of_an_exif_rotated_photo_are_in_the_upright_frame(server, people):
    status, _, upright = server.invoke(encode(people, "JPEG", quality=95), "image/jpeg")
    assert status == 200
    status, _, turned = server.invoke(exif_rotated_jpeg(people, 6), "application/x-image")
    assert status == 200
    upright, turned = loads(upright), loads(turned)
    assert (turned.width, turned.height) == (people.width, people.height)
    assert len(upright.faces) >= 2
    for box in upright.faces.xyxy:
        assert max(iou(box, other) for other in turned.faces.xyxy) > 0.7


@pytest.mark.parametrize("kind", ["png16", "grey16", "palette", "cmyk", "grey-jpeg", "rgba", "webp", "bmp", "tiff"])
@slow
def test_every_image_mode_is_decoded_and_its_faces_found(server, people, kind):
    rgb = np.asarray(people)
    body, content_type = {
        "png16": lambda: (png16_rgb(rgb), "image/png"),
        "grey16": lambda: (png16_grey(np.asarray(people.convert("L"))), "image/png"),
        "palette": lambda: (encode(people.quantize(256), "PNG"), "image/png"),
        "cmyk": lambda: (encode(people.convert("CMYK"), "JPEG", quality=95), "image/jpeg"),
        "grey-jpeg": lambda: (encode(people.convert("L"), "JPEG", quality=95), "image/jpeg"),
        "rgba": lambda: (encode(with_alpha(people), "PNG"), "image/png"),
        "webp": lambda: (encode(people, "WEBP", quality=95), "image/webp"),
        "bmp": lambda: (encode(people, "BMP"), "image/bmp"),
        "tiff": lambda: (encode(people, "TIFF"), "image/tiff"),
    }[kind]()
    status, _, answer = server.invoke(body, content_type)
    assert status == 200, answer[:300]
    assert_sane_faces(loads(answer), people.width, people.height, at_least=2)


def _truncated(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2]


@pytest.mark.parametrize("make, content_type, accept, status, words", [
    (lambda j: b"", "image/jpeg", None, 400, "empty"),
    (lambda j: b"GIF89a but not really", "image/gif", None, 400, "not an image"),
    (lambda j: b"\x80\x04\x95pickled", "application/octet-stream", None, 400, "not an image"),
    (_truncated, "image/jpeg", None, 400, "truncated"),
    (lambda j: j, "text/plain", None, 415, "text/plain"),
    (lambda j: j, "application/json", None, 415, "application/json"),
    (lambda j: j, "image/jpeg", "text/csv", 406, "text/csv"),
    (lambda j: j, "image/jpeg", "application/json;q=0, image/png", 406, "application/json"),
    (lambda j: bomb_png(30000), "image/png", None, 413, "pixels"),
    (lambda j: bomb_png(7000), "image/png", None, 413, "FACE_BLUR_MAX_PIXELS"),
])
@slow
def test_bad_input_gets_its_status_and_a_json_message_and_the_next_frame_is_served(
        server, small_jpeg, make, content_type, accept, status, words):
    got, headers, body = server.invoke(make(small_jpeg), content_type, accept=accept)
    assert got == status, body[:500]
    assert headers["content-type"].startswith("application/json")
    assert words in json_error(status, body)
    after, _, answer = server.invoke(small_jpeg, "image/jpeg")
    assert after == 200 and loads(answer).embedder == EMBEDDER


@slow
def test_a_4k_png_over_the_default_payload_limit_gets_413_and_the_server_keeps_serving(server, people, small_jpeg):
    body = noisy_4k_png(people)
    status, _, answer = server.invoke(body, "image/png")
    assert status == 413
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in json_error(413, answer)
    assert server.invoke(small_jpeg, "image/jpeg")[0] == 200


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*",
                                    "text/html, application/json;q=0.5"])
@slow
def test_accept_headers_that_allow_json_are_served(server, small_jpeg, accept):
    status, headers, _ = server.invoke(small_jpeg, "image/jpeg", accept=accept)
    assert status == 200 and headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("method, path, status", [("GET", "/invocations", 405), ("GET", "/models", 404),
                                                  ("POST", "/predictions/model", 404)])
@slow
def test_other_resources_are_not_exposed(server, small_jpeg, method, path, status):
    body = small_jpeg if method == "POST" else None
    got, _, answer = server.request(method, path, body, {"Content-Type": "image/jpeg"} if body else {})
    assert got == status
    json_error(status, answer)


@slow
def test_concurrent_requests_each_get_their_own_answer(server, faces_dir):
    names = ["two_people.jpg", "kit_with_rose.jpg", "obama_and_biden.jpg"]
    bodies = {n: encode(photo(faces_dir / n, width=400), "JPEG") for n in names}
    expected = {n: loads(server.invoke(b, "image/jpeg")[2]) for n, b in bodies.items()}
    answers: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        for i in range(2):
            name = names[(offset + i) % len(names)]
            status, _, body = server.invoke(bodies[name], "image/jpeg")
            with lock:
                answers.append((name, status, body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(answers) == 12
    for name, status, body in answers:
        assert status == 200
        result = loads(body)
        assert (result.width, result.height) == (expected[name].width, expected[name].height)
        assert np.allclose(result.faces.xyxy, expected[name].faces.xyxy, atol=0.5)


@slow
def test_sigterm_to_the_server_stops_it_and_everything_it_started(server):
    """Last in this module: what `docker stop` does (SIGTERM to the entry point's process)."""
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert any("java" in " ".join(c.cmdline()) for c in children)  # the JVM and its workers
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(60) == 0
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.pid for p in alive]
