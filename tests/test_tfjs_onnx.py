"""bench/tfjs_onnx.py: a TF.js graph model converts to an ONNX model computing the same thing.

The graph is a small one written here in the TF.js format (the ops of the face embedders measured:
a strided SAME convolution, a folded batch norm, ReLU6 as TF writes it, a depthwise convolution,
global mean pooling, a fused matmul), with float16-quantised weights as TF.js stores them; the
reference is the same computation in numpy.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import onnxruntime as ort

from bench.tfjs_onnx import convert


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _conv_same(x: np.ndarray, w: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    """NHWC convolution with TF's SAME padding; ``w`` HWIO (depthwise: HWC1)."""
    n, h, width, _ = x.shape
    kh, kw = w.shape[:2]
    oh, ow = -(-h // stride), -(-width // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - width, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
            out = out + (patch * w[i, j, :, 0] if depthwise else patch @ w[i, j])
    return out


def test_a_tfjs_graph_converts_to_the_same_function(tmp_path):
    rng = np.random.default_rng(0)
    weights = {
        "conv/W": rng.normal(size=(3, 3, 3, 8)).astype(np.float16),
        "bn/add": rng.normal(size=(8,)).astype(np.float16),
        "six": np.array(6.0, np.float16),
        "zero": np.array(0.0, np.float16),
        "dw/W": rng.normal(size=(3, 3, 8, 1)).astype(np.float16),
        "axes": np.array([1, 2], np.int32),
        "fc/W": rng.normal(size=(8, 4)).astype(np.float16),
        "fc/b": rng.normal(size=(4,)).astype(np.float16),
    }
    specs, blobs = [], []
    for name, value in weights.items():
        if value.dtype == np.int32:
            specs.append({"name": name, "shape": list(value.shape), "dtype": "int32"})
        else:
            specs.append({"name": name, "shape": list(value.shape), "dtype": "float32",
                          "quantization": {"dtype": "float16", "original_dtype": "float32"}})
        blobs.append(value.tobytes())
    (tmp_path / "m.bin").write_bytes(b"".join(blobs))
    strides2 = {"list": {"i": ["1", "2", "2", "1"]}}
    nodes = [{"name": n, "op": "Const"} for n in weights] + [
        {"name": "x", "op": "Placeholder",
         "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "16"}, {"size": "16"}, {"size": "3"}]}}}},
        {"name": "conv", "op": "Conv2D", "input": ["x", "conv/W"],
         "attr": {"strides": strides2, "padding": _s("SAME")}},  # 16 px, stride 2: padded 0 before, 1 after
        {"name": "bn", "op": "Add", "input": ["conv", "bn/add"]},
        {"name": "relu", "op": "Relu", "input": ["bn"]},
        {"name": "min", "op": "Minimum", "input": ["relu", "six"]},
        {"name": "relu6", "op": "Maximum", "input": ["min", "zero"]},
        {"name": "dw", "op": "DepthwiseConv2dNative", "input": ["relu6", "dw/W"],
         "attr": {"strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": _s("SAME")}},
        {"name": "pool", "op": "Mean", "input": ["dw", "axes"], "attr": {"keep_dims": {"b": False}}},
        {"name": "fc", "op": "_FusedMatMul", "input": ["pool", "fc/W", "fc/b"],
         "attr": {"fused_ops": {"list": {"s": [_s("BiasAdd")["s"], _s("Relu")["s"]]}}}},
    ]
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["m.bin"], "weights": specs}]}
    (tmp_path / "m.json").write_text(json.dumps(model))

    convert(tmp_path / "m.json", ["fc"], tmp_path / "m.onnx")

    x = rng.uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    w = {k: v.astype(np.float32) for k, v in weights.items()}
    y = np.clip(_conv_same(x, w["conv/W"], 2, False) + w["bn/add"], 0, 6)
    y = _conv_same(y, w["dw/W"], 1, True).mean(axis=(1, 2))
    expected = np.maximum(y @ w["fc/W"] + w["fc/b"], 0)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["embedding"], {"x": x})[0]
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
