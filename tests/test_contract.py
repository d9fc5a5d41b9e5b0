"""The wire contract face-blur/frame/v1, from both sides: what the handler writes, the parser reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract import SCHEMA, ContractError, FrameFaces, FrameResult, decode_embedding, dumps, encode_embedding, loads


def _faces(n: int, dim: int, seed: int = 0) -> FrameFaces:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 500, (n, 2))
    wh = rng.uniform(10, 120, (n, 2))
    emb = rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return FrameFaces(
        xyxy=np.hstack([xy, xy + wh]),
        confidence=rng.uniform(0.5, 1, n),
        landmarks=xy[:, None, :] + rng.uniform(0, 10, (n, 5, 2)),
        embedding=emb,
    )


@pytest.mark.parametrize("dim", [0, 128, 192, 512])
def test_round_trip_keeps_boxes_scores_landmarks_and_embeddings(dim):
    faces = _faces(4, dim)
    result = FrameResult(1920, 1080, faces, "centerface", "mobilefacenet" if dim else "", np.linspace(0, 1, 128))
    back = loads(dumps(result), frame_index=7)
    assert back.width == 1920 and back.height == 1080
    assert back.detector == "centerface"
    assert back.faces.frame_index == 7
    np.testing.assert_allclose(back.faces.xyxy, faces.xyxy, atol=0.051)
    np.testing.assert_allclose(back.faces.landmarks, faces.landmarks, atol=0.051)
    np.testing.assert_allclose(back.faces.confidence, faces.confidence, atol=1e-4)
    assert back.faces.embedding.shape == (4, dim)
    if dim:
        # float16 keeps cosine similarity to within 1e-3 of the float32 original
        cos = np.sum(back.faces.embedding * faces.embedding, axis=1)
        assert np.all(cos > 0.999)


def test_a_512d_face_stays_under_one_and_a_half_kilobytes():
    one = dumps(FrameResult(1920, 1080, _faces(1, 512), "mtcnn", "arcface-r100"))
    none = dumps(FrameResult(1920, 1080, FrameFaces.empty(512), "mtcnn", "arcface-r100"))
    assert len(one) - len(none) < 1536  # 1.5 KiB


def test_embedding_encoding_is_little_endian_float16_base64():
    vec = np.array([1.0, -0.5, 0.25], np.float32)
    text = encode_embedding(vec)
    import base64

    assert base64.b64decode(text) == vec.astype("<f2").tobytes()
    np.testing.assert_array_equal(decode_embedding(text), vec)


def _body(**over):
    face = {"bbox": [1, 2, 30, 40], "score": 0.9, "landmarks": [[5, 6]] * 5}
    data = {"schema": SCHEMA, "width": 64, "height": 48, "detector": "mtcnn", "embedder": "",
            "signature": [0.5, 0.5], "faces": [face]}
    data.update(over)
    return data


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schema": "face-blur/frame/v2"}, "unsupported schema"),
        ({"width": 0}, "width"),
        ({"height": "48"}, "height"),
        ({"faces": {}}, "faces must be a list"),
        ({"faces": [{"bbox": [1, 2, 3], "score": 1, "landmarks": [[0, 0]] * 5}]}, "faces[0].bbox"),
        ({"faces": [{"bbox": [9, 2, 3, 4], "score": 1, "landmarks": [[0, 0]] * 5}]}, "x2 < x1"),
        ({"faces": [{"bbox": [1, 2, 3, 4], "score": None, "landmarks": [[0, 0]] * 5}]}, "faces[0].score"),
        ({"faces": [{"bbox": [1, 2, 3, 4], "score": 1, "landmarks": [[0, 0]] * 4}]}, "faces[0].landmarks"),
        ({"faces": [{"bbox": [1, 2, 3, 4], "score": 1, "landmarks": [[0, 0]] * 5, "embedding": "!!"}]},
         "base64"),
        ({"faces": [{"bbox": [1, 2, 3, 4], "score": 1, "landmarks": [[0, 0]] * 5, "embedding": "AAA="}]},
         "embedder is empty"),
        ({"signature": "x"}, "signature"),
    ],
)
def test_bad_results_are_refused_naming_the_field(change, message):
    with pytest.raises(ContractError, match=None) as info:
        loads(json.dumps(_body(**change)))
    assert message in str(info.value)


def test_not_json_is_a_contract_error():
    with pytest.raises(ContractError, match="not JSON"):
        loads(b"\x89PNG...")


def test_frame_faces_names_the_bad_column():
    with pytest.raises(ValueError, match="landmarks"):
        FrameFaces(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 4, 2)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="confidence"):
        FrameFaces(np.zeros((2, 4)), np.zeros(3), np.zeros((2, 5, 2)), np.zeros((2, 0)))


def test_boolean_mask_returns_a_new_object():
    faces = _faces(3, 8)
    keep = faces[faces.confidence > -1]
    keep.xyxy[0, 0] = -99
    assert faces.xyxy[0, 0] != -99
    assert len(faces[np.zeros(3, bool)]) == 0
    assert len(FrameFaces.empty(8)) == 0 and FrameFaces.empty(8).dim == 8
