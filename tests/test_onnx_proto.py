"""The ONNX loader's lean use of onnx (`loaders/onnx/proto.py`): an analysis never imports the onnx
package (its `import` costs 0.6 s), gives the same output as with the package imported, and a
later `import onnx` shares its classes; each helper agrees with the onnx function it stands for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

from convcost.loaders.onnx import proto

ROOT = Path(__file__).resolve().parent.parent
#: One BLAS thread in both runs, as the CLI sets (importing onnx first imports numpy before the CLI
#: can; threaded BLAS rounds float32 spectra differently in the last digit).
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}

# A probe run in a fresh interpreter: analyze, then say which heavy packages got imported, then
# import onnx and check the classes are shared and the model still loads and checks.
PROBE = """
import json, sys
first = sys.argv[3] == "onnx-first"
if first:
    import onnx
from convcost.cli.app import main
try:
    main(["analyze", sys.argv[1], "-f", "json", "-o", sys.argv[2]])
except SystemExit:
    pass
imported = sorted(m for m in ("onnx", "ml_dtypes", "onnx.helper") if m in sys.modules)
import onnx
from convcost.loaders.onnx import proto
assert onnx.ModelProto is proto.onnx().pb.ModelProto
onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)
print(json.dumps(imported))
"""


def _model(path: Path) -> None:
    """Three 3x3 convs of 96 channels (unfoldings above SINGLE_ABOVE: float32 spectra, computed
    ahead in a thread) after a small stem, a Reshape whose target onnx's inference folds."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((96, 8, 3, 3)).astype(np.float32), "w0")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["y0"], pads=[1, 1, 1, 1])]
    for i in range(1, 4):
        inits.append(numpy_helper.from_array(rng.standard_normal((96, 96, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"y{i - 1}", f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["y3", "shape"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 9600])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_an_analysis_never_imports_the_onnx_package_and_matches_one_that_does(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _model(model)
    imported = {}
    for how in ("lean", "onnx-first"):
        proc = subprocess.run([sys.executable, "-c", PROBE, str(model), str(tmp_path / f"{how}.json"), how],
                              capture_output=True, text=True, cwd=ROOT, env=ENV)
        assert proc.returncode == 0, proc.stderr
        imported[how] = proc.stdout.strip()
    assert imported["lean"] == "[]"  # neither onnx (and its ml_dtypes) nor its helpers
    assert '"onnx"' in imported["onnx-first"]
    lean, full = (tmp_path / "lean.json").read_text(), (tmp_path / "onnx-first.json").read_text()
    assert lean == full
    assert '"approx_error": 0.' in lean  # the errors were computed, not skipped


# --- each helper against the onnx function it stands for ------------------------------------------

@pytest.mark.parametrize("shape", [None, [], [1, "N", None, 3]])
@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.INT64, TensorProto.BFLOAT16])
def test_value_infos_are_onnx_helpers(shape, elem) -> None:
    ours = proto.make_tensor_value_info("t", elem, shape)
    assert ours.SerializeToString() == helper.make_tensor_value_info("t", elem, shape).SerializeToString()
    assert proto.make_tensor_type_proto(elem, shape) == helper.make_tensor_type_proto(elem, shape)


NATIVE_ARRAYS = [
    np.arange(-6, 6, dtype=np.float32).reshape(3, 4) / 7,
    np.arange(6, dtype=np.float64).reshape(2, 3) / 3,
    np.arange(-3, 3, dtype=np.int64),
    np.arange(-3, 3, dtype=np.int32).reshape(1, 2, 3),
    np.arange(6, dtype=np.uint8),
    np.arange(-3, 3, dtype=np.int8),
    np.arange(6, dtype=np.uint16),
    np.arange(-3, 3, dtype=np.int16),
    np.arange(6, dtype=np.uint32),
    np.arange(6, dtype=np.uint64),
    np.array([0.5, -2.25, 65504], dtype=np.float16),
    np.array([True, False, True]),
    np.array([1 + 2j, -0.5j], dtype=np.complex64),
    np.array([1 + 2j, -0.5j], dtype=np.complex128),
    np.array(3.5, dtype=np.float32),  # 0-d
]


@pytest.mark.parametrize("array", NATIVE_ARRAYS, ids=lambda a: a.dtype.str)
def test_arrays_convert_as_onnx_numpy_helper(array: np.ndarray) -> None:
    ours, theirs = proto.from_array(array, "t"), numpy_helper.from_array(array, "t")
    assert ours.SerializeToString() == theirs.SerializeToString()
    got = proto.to_array(theirs)
    want = numpy_helper.to_array(theirs)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


def test_other_tensors_go_to_onnx_itself() -> None:
    with pytest.raises(ValueError):  # as onnx's: a big-endian array has no element type
        proto.from_array(np.arange(4, dtype=">f4"))
    typed = helper.make_tensor("t", TensorProto.FLOAT, [2], [1.5, -2.0])  # float_data, not raw_data
    assert np.array_equal(proto.to_array(typed), [1.5, -2.0])
    bf16 = helper.make_tensor("b", TensorProto.BFLOAT16, [2], [1.0, 2.0])
    assert np.array_equal(proto.to_array(bf16).astype(np.float32), [1.0, 2.0])
    assert proto.np_dtype(TensorProto.BFLOAT16) == helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16)
    for elem in proto.NATIVE:
        assert proto.np_dtype(elem) == helper.tensor_dtype_to_np_dtype(elem)
    empty = TensorProto(name="gone", data_type=TensorProto.FLOAT, dims=[4])  # data stripped: an error
    with pytest.raises(ValueError, match="gone"):
        proto.to_array(empty)


def test_inference_and_schemas_are_onnx() -> None:
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    types = {"x": helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 6]),
             "s": helper.make_tensor_type_proto(TensorProto.INT64, [2])}
    data = {"s": numpy_helper.from_array(np.array([3, 4], np.int64), "s")}
    opsets = [helper.make_opsetid("", 17)]
    schema = proto.get_schema("Reshape", 17)
    assert schema.name == "Reshape" and schema.since_version == onnx.defs.get_schema("Reshape", 17).since_version
    ours = proto.infer_node_outputs(schema, node, types, data, opsets)
    theirs = shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=opsets)
    assert ours == theirs and [d.dim_value for d in ours["y"].tensor_type.shape.dim] == [3, 4]
    assert proto.opset_version() == onnx.defs.onnx_opset_version()
    assert proto.has_schema("Conv") and not proto.has_schema("NoSuchOp")
    assert onnx.shape_inference.InferenceError in proto.errors() and KeyError in proto.errors(KeyError)
    with pytest.raises(proto.errors()):
        proto.get_schema("NoSuchOp", 17)
