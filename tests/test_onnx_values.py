"""Value folding (convcost/loaders/onnx/values.py): each fold function gives what onnxruntime
computes for the same node, dtype included, across the attribute and input forms of the opsets
torch exports (11-18). The exporter patterns these ops come from are tested in test_exporters.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from convcost.loaders.onnx.graph import Table
from convcost.loaders.onnx.values import FOLDERS, MAX_ELEMENTS, Evaluator

I64_MIN = np.iinfo(np.int64).min
I64_MAX = np.iinfo(np.int64).max


def i64(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def f32(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def graph_of(node: onnx.NodeProto, consts: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> onnx.GraphProto:
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
              for k, v in feeds.items()]
    return helper.make_graph([node], "g", inputs, [helper.make_empty_tensor_value_info(node.output[0])],
                             initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])


def run_ort(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: int,
            feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
    model = helper.make_model(graph_of(node, consts, feeds or {}), opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds or {})[0]


def run_evaluator(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: int,
                  feeds: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
    """Inputs in `consts` are initializers (values); `feeds` are tensors only their dims are known of."""
    feeds = feeds or {}
    graph = graph_of(node, consts, feeds)
    shapes = {k: tuple(v.shape) for k, v in feeds.items()}
    types = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in feeds.items()}
    evaluator = Evaluator(graph, Table(graph), shapes, None, types, [helper.make_opsetid("", opset)])
    return evaluator.value(node.output[0])


CASES: list[tuple[str, int, onnx.NodeProto, dict[str, np.ndarray]]] = [
    # torch's legacy F.pad: pads [l, r, t, b] reshaped to [-1, 2], reversed along axis 0 (end INT64_MIN)
    ("slice 2-D reverse (F.pad)", 11, helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"]),
     {"x": i64(0, 0, 0, 0, 1, 2, 3, 4).reshape(4, 2), "s": i64(-1), "e": i64(I64_MIN), "a": i64(0), "st": i64(-1)}),
    ("slice rank 3, negative axes and steps", 13, helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"]),
     {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4), "s": i64(-1, 3), "e": i64(-100, 0),
      "a": i64(-1, 1), "st": i64(-2, -1)}),
    ("slice start before the first element, negative step", 13,
     helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"]),
     {"x": i64(1, 2, 3, 4, 5), "s": i64(-100), "e": i64(I64_MIN), "a": i64(0), "st": i64(-1)}),
    ("slice past the end, default axes and steps", 11, helper.make_node("Slice", ["x", "s", "e"], ["y"]),
     {"x": np.arange(12, dtype=np.int64).reshape(3, 4), "s": i64(1, -3), "e": i64(I64_MAX, 100)}),
    ("slice, attribute form", 9, helper.make_node("Slice", ["x"], ["y"], starts=[1], ends=[-1], axes=[1]),
     {"x": np.arange(12, dtype=np.int64).reshape(3, 4)}),
    ("transpose, default perm", 13, helper.make_node("Transpose", ["x"], ["y"]),
     {"x": np.arange(6, dtype=np.int64).reshape(2, 3)}),
    ("transpose rank 3", 13, helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1]),
     {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}),
    ("gather axis 1, negative indices", 13, helper.make_node("Gather", ["x", "i"], ["y"], axis=1),
     {"x": np.arange(12, dtype=np.int64).reshape(3, 4), "i": i64(-1, 0, 2).reshape(3, 1)}),
    ("gather scalar index", 11, helper.make_node("Gather", ["x", "i"], ["y"], axis=0),
     {"x": i64(1, 3, 32, 32), "i": np.array(2, dtype=np.int64)}),
    ("squeeze, attribute", 11, helper.make_node("Squeeze", ["x"], ["y"], axes=[0, -1]),
     {"x": i64(7, 8).reshape(1, 2, 1)}),
    ("squeeze, input", 13, helper.make_node("Squeeze", ["x", "a"], ["y"]),
     {"x": i64(7, 8).reshape(1, 2, 1), "a": i64(2)}),
    ("squeeze, every 1", 13, helper.make_node("Squeeze", ["x"], ["y"]), {"x": i64(7, 8).reshape(1, 2, 1)}),
    ("unsqueeze, attribute, negative axes", 11, helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, -1]),
     {"x": i64(3, 4)}),
    ("unsqueeze, input", 13, helper.make_node("Unsqueeze", ["x", "a"], ["y"]), {"x": np.array(5, dtype=np.int64),
                                                                               "a": i64(0)}),
    ("reshape with 0 and -1", 13, helper.make_node("Reshape", ["x", "s"], ["y"]),
     {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4), "s": i64(0, -1, 2)}),
    ("reshape, allowzero", 14, helper.make_node("Reshape", ["x", "s"], ["y"], allowzero=1),
     {"x": np.zeros((0, 3), dtype=np.int64), "s": i64(3, 0)}),
    ("concat axis -1, rank 2", 13, helper.make_node("Concat", ["a", "b"], ["y"], axis=-1),
     {"a": i64(1, 2).reshape(2, 1), "b": i64(3, 4, 5, 6).reshape(2, 2)}),
    ("constant of shape, int fill", 11,
     helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [3])),
     {"s": i64(2, 3)}),
    ("constant of shape, default fill", 11, helper.make_node("ConstantOfShape", ["s"], ["y"]), {"s": i64(4)}),
    ("div int64 truncates", 13, helper.make_node("Div", ["a", "b"], ["y"]),
     {"a": i64(-7, 7, -8, 9), "b": i64(2, -2, 3, 3)}),
    ("div float", 13, helper.make_node("Div", ["a", "b"], ["y"]), {"a": f32(30, -7), "b": f32(2)}),
    ("mod, divisor's sign", 13, helper.make_node("Mod", ["a", "b"], ["y"]), {"a": i64(-7, 7), "b": i64(3, -3)}),
    ("mod, fmod", 13, helper.make_node("Mod", ["a", "b"], ["y"], fmod=1), {"a": f32(-7.5, 7.5), "b": f32(2)}),
    ("sub broadcast", 13, helper.make_node("Sub", ["a", "b"], ["y"]),
     {"a": i64(5, 6).reshape(2, 1), "b": i64(1, 2, 3)}),
    ("mul", 13, helper.make_node("Mul", ["a", "b"], ["y"]), {"a": i64(3, 4), "b": i64(-1)}),
    ("add", 13, helper.make_node("Add", ["a", "b"], ["y"]), {"a": f32(0.5), "b": f32(1, 2)}),
    ("max of three", 13, helper.make_node("Max", ["a", "b", "c"], ["y"]),
     {"a": i64(1, 9), "b": i64(5), "c": i64(3, 4)}),
    ("min", 13, helper.make_node("Min", ["a", "b"], ["y"]), {"a": i64(1, 9), "b": i64(5)}),
    ("cast float to int truncates", 13, helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.INT64),
     {"x": f32(-2.7, 2.7, 15.0)}),
    ("cast int to float", 13, helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.FLOAT), {"x": i64(3, -4)}),
    ("cast int to bool", 13, helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.BOOL), {"x": i64(0, 2)}),
    ("ceil", 13, helper.make_node("Ceil", ["x"], ["y"]), {"x": f32(-1.5, 1.5, 16.0)}),
    ("floor", 13, helper.make_node("Floor", ["x"], ["y"]), {"x": f32(-1.5, 1.5, 48.0)}),
    ("neg", 13, helper.make_node("Neg", ["x"], ["y"]), {"x": i64(3, -4)}),
    ("abs", 13, helper.make_node("Abs", ["x"], ["y"]), {"x": i64(3, -4)}),
    ("identity", 13, helper.make_node("Identity", ["x"], ["y"]), {"x": i64(3, -4)}),
    ("equal", 13, helper.make_node("Equal", ["a", "b"], ["y"]), {"a": i64(-1, 2, -1), "b": i64(-1)}),
    # If conditions and the dynamo exporter's floor division (`sr // 100`: Div, Mod, Less, Equal, And)
    ("less", 13, helper.make_node("Less", ["a", "b"], ["y"]), {"a": i64(-3, 2, 7), "b": i64(2)}),
    ("less-or-equal", 16, helper.make_node("LessOrEqual", ["a", "b"], ["y"]), {"a": i64(-3, 2, 7), "b": i64(2)}),
    ("greater", 13, helper.make_node("Greater", ["a", "b"], ["y"]), {"a": i64(16000), "b": i64(16000)}),
    ("greater-or-equal", 16, helper.make_node("GreaterOrEqual", ["a", "b"], ["y"]),
     {"a": i64(16000, 8000), "b": i64(16000)}),
    ("and", 13, helper.make_node("And", ["a", "b"], ["y"]),
     {"a": np.array([True, False, True]), "b": np.array([True, True, False])}),
    ("or", 13, helper.make_node("Or", ["a", "b"], ["y"]),
     {"a": np.array([True, False, False]), "b": np.array([False, False, True])}),
    ("xor", 13, helper.make_node("Xor", ["a", "b"], ["y"]),
     {"a": np.array([True, False, True]), "b": np.array([True, True, False])}),
    ("not", 13, helper.make_node("Not", ["a"], ["y"]), {"a": np.array([True, False])}),
    # expand(-1, -1, h, w) from the legacy exporter: Where(Equal(shape, -1), ones, shape)
    ("where, broadcast", 13, helper.make_node("Where", ["c", "a", "b"], ["y"]),
     {"c": np.array([True, False, True]), "a": i64(1), "b": i64(-1, 8, -1)}),
    ("reduce prod, all", 13, helper.make_node("ReduceProd", ["x"], ["y"], keepdims=0), {"x": i64(1, 4, 30, 30)}),
    ("reduce prod, attribute axes", 13, helper.make_node("ReduceProd", ["x"], ["y"], axes=[-1]),
     {"x": np.arange(1, 7, dtype=np.int64).reshape(2, 3)}),
    ("reduce prod, input axes", 18, helper.make_node("ReduceProd", ["x", "a"], ["y"], keepdims=0),
     {"x": np.arange(1, 7, dtype=np.int64).reshape(2, 3), "a": i64(0)}),
]


@pytest.mark.parametrize(("case", "opset", "node", "consts"), CASES, ids=[c[0] for c in CASES])
def test_fold_equals_onnxruntime(case: str, opset: int, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> None:
    expected = run_ort(node, consts, opset)
    got = run_evaluator(node, consts, opset)
    assert got is not None, case
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got, expected)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("opset", "attrs", "expected"), [
    (13, {}, [2, 3, 16, 16]),
    (15, {"start": 2}, [16, 16]),
    (15, {"start": -3, "end": -1}, [3, 16]),
    (15, {"end": 100}, [2, 3, 16, 16]),
])
def test_shape_with_start_and_end_equals_onnxruntime(opset: int, attrs: dict[str, int], expected: list[int]) -> None:
    node = helper.make_node("Shape", ["x"], ["y"], **attrs)
    feeds = {"x": np.zeros((2, 3, 16, 16), dtype=np.float32)}
    ours = run_evaluator(node, {}, opset, feeds)
    assert ours is not None
    np.testing.assert_array_equal(ours, run_ort(node, {}, opset, feeds))
    assert ours.tolist() == expected


def test_size_equals_onnxruntime() -> None:
    node = helper.make_node("Size", ["x"], ["y"])
    feeds = {"x": np.zeros((2, 3, 5), dtype=np.float32)}
    ours = run_evaluator(node, {}, 13, feeds)
    assert ours is not None and int(ours) == int(run_ort(node, {}, 13, feeds)) == 30


def test_values_larger_than_the_limit_stay_unknown() -> None:
    """A shape tensor has a handful of values; a ConstantOfShape that big is data, not a shape."""
    node = helper.make_node("ConstantOfShape", ["s"], ["y"])
    assert run_evaluator(node, {"s": i64(MAX_ELEMENTS)}, 13) is not None
    assert run_evaluator(node, {"s": i64(MAX_ELEMENTS + 1)}, 13) is None
    assert run_evaluator(node, {"s": i64(10**12, 10**12)}, 13) is None  # refused before allocating


@pytest.mark.parametrize(("node", "consts"), [
    (helper.make_node("Div", ["a", "b"], ["y"]), {"a": i64(7), "b": i64(0)}),  # onnxruntime: undefined
    (helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"]),
     {"x": i64(1, 2), "s": i64(0), "e": i64(2), "a": i64(0), "st": i64(0)}),  # step 0 is invalid
    (helper.make_node("Gather", ["x", "i"], ["y"]), {"x": i64(1, 2), "i": i64(5)}),  # index out of range
    (helper.make_node("Reshape", ["x", "s"], ["y"]), {"x": i64(1, 2, 3), "s": i64(2, -1)}),  # 3 elements to 2 x ?
    (helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.STRING), {"x": i64(1)}),
])
def test_invalid_nodes_stay_unknown(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> None:
    assert run_evaluator(node, consts, 13) is None


def test_every_fold_function_is_covered() -> None:
    covered = {node.op_type for _, _, node, _ in CASES} | {"Shape", "Size", "Constant"}
    assert set(FOLDERS) == covered
