"""``face-blur/frame/v1``: the JSON body the handler returns for one frame (SageMaker stores it as
``<frame key>.out``) and the post-processing stage reads.

    {"schema": "face-blur/frame/v1", "width": W, "height": H,
     "detector": "centerface", "embedder": "mobilefacenet",
     "signature": [f, ...],
     "faces": [{"bbox": [x1, y1, x2, y2], "score": s,
                "landmarks": [[x, y] x 5], "embedding": "<base64>"}]}

Coordinates are pixels of the original (upright) frame, rounded to 0.1 px. ``embedding`` is the base64 encoding of the
little-endian IEEE float16 values of the L2-normalised vector (512-d: 1,024 bytes, 1,368 characters),
so one face stays under 1.5 KB of JSON. ``embedder`` names the model so that embeddings of
different models are never compared; ``""`` with no embedding when the frame was not embedded.
``signature`` is a small frame descriptor for shot-cut detection (see ``handler/signature.py``).

Optional field (still v1): ``"analysed": false`` marks a frame that adaptive analysis
(``faceblur/schedule.py``) did not analyse: its ``faces`` is empty because nobody looked, not
because there are none, and its boxes come from the sequences around it. Absent means ``true``
(every frame of a v1 producer that does not know the field was analysed), so readers and writers of
older v1 results are unaffected.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract.faces import FrameFaces

SCHEMA = "face-blur/frame/v1"
_LE_F16 = np.dtype("<f2")


class ContractError(ValueError):
    """A frame result that does not follow ``face-blur/frame/v1``; the message names the field."""


def encode_embedding(vector: np.ndarray) -> str:
    """One embedding as base64 of little-endian float16."""
    return base64.b64encode(np.asarray(vector, dtype=_LE_F16).tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    """The inverse of :func:`encode_embedding`, as float32."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise ContractError(f"embedding is not valid base64: {exc}") from None
    if len(raw) % 2:
        raise ContractError(f"embedding has {len(raw)} bytes, not a whole number of float16 values")
    return np.frombuffer(raw, dtype=_LE_F16).astype(np.float32)


@dataclass
class FrameResult:
    """One frame's result: its size, which models ran, its signature and its faces."""

    width: int
    height: int
    faces: FrameFaces
    detector: str = ""
    embedder: str = ""
    signature: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    analysed: bool = True  # False: not analysed (adaptive analysis), faces come from the sequences

    def __post_init__(self) -> None:
        self.signature = np.asarray(self.signature, dtype=np.float32).reshape(-1)


def _r(value: float, digits: int) -> float:
    return round(float(value), digits)


def to_dict(result: FrameResult) -> dict[str, Any]:
    faces = result.faces
    out_faces = []
    for i in range(len(faces)):
        face: dict[str, Any] = {
            "bbox": [_r(v, 1) for v in faces.xyxy[i]],
            "score": _r(faces.confidence[i], 4),
            "landmarks": [[_r(x, 1), _r(y, 1)] for x, y in faces.landmarks[i]],
        }
        if faces.dim:
            face["embedding"] = encode_embedding(faces.embedding[i])
        out_faces.append(face)
    return {
        "schema": SCHEMA,
        "width": int(result.width),
        "height": int(result.height),
        "detector": result.detector,
        "embedder": result.embedder,
        "signature": [_r(v, 5) for v in result.signature],
        "faces": out_faces,
    } | ({} if result.analysed else {"analysed": False})


def dumps(result: FrameResult) -> bytes:
    return json.dumps(to_dict(result), separators=(",", ":")).encode("utf-8")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ContractError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def from_dict(data: Any, frame_index: int = -1) -> FrameResult:
    """Parse and validate one ``face-blur/frame/v1`` object; raises :class:`ContractError`."""
    if not isinstance(data, dict):
        raise ContractError(f"frame result must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ContractError(f"unsupported schema {schema!r}; this version reads {SCHEMA!r}")
    for key in ("width", "height"):
        if isinstance(data.get(key), bool) or not isinstance(data.get(key), int) or data[key] <= 0:
            raise ContractError(f"{key} must be a positive integer, got {data.get(key)!r}")
    faces_in = data.get("faces")
    if not isinstance(faces_in, list):
        raise ContractError("faces must be a list")
    embedder = data.get("embedder", "")
    detector = data.get("detector", "")
    if not isinstance(embedder, str) or not isinstance(detector, str):
        raise ContractError("detector and embedder must be strings")
    signature = data.get("signature", [])
    if not isinstance(signature, list):
        raise ContractError("signature must be a list of numbers")
    sig = np.array([_number(v, "signature[]") for v in signature], dtype=np.float32)
    analysed = data.get("analysed", True)
    if not isinstance(analysed, bool):
        raise ContractError(f"analysed must be true or false, got {analysed!r}")
    if not analysed and faces_in:
        raise ContractError("a frame marked analysed: false cannot carry faces")

    boxes, scores, marks, embs = [], [], [], []
    for i, face in enumerate(faces_in):
        where = f"faces[{i}]"
        if not isinstance(face, dict):
            raise ContractError(f"{where} must be an object")
        bbox = face.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ContractError(f"{where}.bbox must be [x1, y1, x2, y2]")
        box = [_number(v, f"{where}.bbox[]") for v in bbox]
        if box[2] < box[0] or box[3] < box[1]:
            raise ContractError(f"{where}.bbox has x2 < x1 or y2 < y1: {box}")
        boxes.append(box)
        scores.append(_number(face.get("score"), f"{where}.score"))
        lm = face.get("landmarks")
        if not isinstance(lm, list) or len(lm) != 5 or any(not isinstance(p, list) or len(p) != 2 for p in lm):
            raise ContractError(f"{where}.landmarks must be 5 [x, y] pairs")
        marks.append([[_number(v, f"{where}.landmarks[]") for v in p] for p in lm])
        if "embedding" in face:
            if not isinstance(face["embedding"], str):
                raise ContractError(f"{where}.embedding must be a base64 string")
            emb = decode_embedding(face["embedding"])
            if embs and len(emb) != len(embs[0]):
                raise ContractError(f"{where}.embedding has {len(emb)} values, faces[0] has {len(embs[0])}")
            embs.append(emb)
    if embs and len(embs) != len(boxes):
        raise ContractError("either every face has an embedding or none has")
    if embs and not embedder:
        raise ContractError("faces carry embeddings but embedder is empty")
    n = len(boxes)
    dim = len(embs[0]) if embs else 0
    faces = FrameFaces(
        xyxy=np.array(boxes, np.float32).reshape(n, 4),
        confidence=np.array(scores, np.float32),
        landmarks=np.array(marks, np.float32).reshape(n, 5, 2),
        embedding=np.array(embs, np.float32).reshape(n, dim),
        frame_index=frame_index,
    )
    return FrameResult(int(data["width"]), int(data["height"]), faces, detector, embedder, sig, analysed)


def loads(body: bytes | str, frame_index: int = -1) -> FrameResult:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"frame result is not JSON: {exc}") from None
    return from_dict(data, frame_index)
