"""dtype from the model: float16 / bfloat16 convs and matmuls are priced in that dtype (2 bytes per
element) unless `--dtype` is given; quantized ops stay int8. Bytes are checked against hand counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of
from convcost.loaders import load_model
from tests.conftest import assert_one_line_error, invoke

F16, BF16, F32 = TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT


def _save(tmp_path: Path, name: str, nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, list[int]]],
          inits: list[onnx.TensorProto], opset: int = 17, out: int | None = None) -> Path:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(nodes[-1].output[0], out or inputs["x"][0], None)], inits)
    model = helper.make_model(graph, producer_name="test", opset_imports=[helper.make_opsetid("", opset)])
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # a valid model
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _conv_matmul(tmp_path: Path, elem: int, name: str) -> Path:
    """x 1x2x5x5 -> Conv 3x3 pad 1, 4 channels, bias -> 1x4x5x5 -> MatMul by a 5x6 weight -> 1x4x5x6."""
    np_type = helper.tensor_dtype_to_np_dtype(elem)

    def tensor(n: str, shape: list[int]) -> onnx.TensorProto:
        if elem == BF16:  # numpy has no bfloat16: the raw 16-bit words
            return helper.make_tensor(n, BF16, shape, np.zeros(int(np.prod(shape)), np.uint16).tobytes(), raw=True)
        return numpy_helper.from_array(np.zeros(shape, np_type), n)

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("MatMul", ["y", "m"], ["z"], name="mm")]
    return _save(tmp_path, name, nodes, {"x": (elem, [1, 2, 5, 5])},
                 [tensor("w", [4, 2, 3, 3]), tensor("b", [4]), tensor("m", [5, 6])],
                 opset=22 if elem == BF16 else 17)  # Conv takes bfloat16 from opset 22


def _json(*args: str) -> dict[str, Any]:
    result = invoke("analyze", *args, "-V", "none", "-f", "json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


# Hand counts for _conv_matmul: weight 4*2*3*3 + 4 bias = 76 elements, input 2*5*5 = 50, output 4*5*5 = 100;
# the MatMul: input 4*5*5 = 100, weight 5*6 = 30, output 4*5*6 = 120.
CONV_ELEMENTS = {"weight_bytes": 76, "input_bytes": 50, "output_bytes": 100}


@pytest.mark.parametrize(("elem", "dtype"), [(F16, "float16"), (BF16, "bfloat16")])
def test_a_half_precision_onnx_model_prices_2_bytes_per_element(tmp_path: Path, elem: int, dtype: str) -> None:
    path = _conv_matmul(tmp_path, elem, dtype)
    data = _json(str(path))
    assert data["conventions"]["dtype"] == dtype and data["conventions"]["bytes_per_element"] == 2
    (layer,) = data["layers"]
    assert layer["dtype"] == dtype
    assert layer["memory"] == {k: 2 * v for k, v in CONV_ELEMENTS.items()}
    (mm,) = load_model(path, None).matmuls
    assert mm.dtype == dtype
    got = cost_of(mm, "float32")  # its own dtype wins over the default
    assert (got.input_bytes, got.weight_bytes, got.output_bytes) == (2 * 100, 2 * 30, 2 * 120)


def test_an_explicit_dtype_overrides_the_models(tmp_path: Path) -> None:
    path = _conv_matmul(tmp_path, F16, "f16")
    data = _json(str(path), "--dtype", "float32")
    assert data["conventions"]["dtype"] == "float32" and data["conventions"]["bytes_per_element"] == 4
    (layer,) = data["layers"]
    assert "dtype" not in layer
    assert layer["memory"] == {k: 4 * v for k, v in CONV_ELEMENTS.items()}
    # In the analysis, the matmul follows too (its latency uses the float32 peak).
    model = load_model(path, None)
    analysis = analyze(model, Settings(dtype="float32", dtype_from_model=False))
    assert [m.dtype for m in analysis.model.matmuls] == [None]
    assert analyze(model, Settings()).settings.dtype == "float16"


def test_a_mixed_model_keeps_float32_conventions_and_per_layer_dtypes(tmp_path: Path) -> None:
    """x (float32) -> conv a -> Cast to float16 -> conv b (float16 weights)."""
    w32 = numpy_helper.from_array(np.zeros((3, 3, 1, 1), np.float32), "wa")
    w16 = numpy_helper.from_array(np.zeros((3, 3, 1, 1), np.float16), "wb")
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="a"),
             helper.make_node("Cast", ["a"], ["h"], to=F16),
             helper.make_node("Conv", ["h", "wb"], ["y"], name="b")]
    path = _save(tmp_path, "mixed", nodes, {"x": (F32, [1, 3, 4, 4])}, [w32, w16], out=F16)
    data = _json(str(path))
    assert data["conventions"]["dtype"] == "float32"
    a, b = data["layers"]
    assert "dtype" not in a and b["dtype"] == "float16"
    assert a["memory"] == {"weight_bytes": 4 * 9, "input_bytes": 4 * 48, "output_bytes": 4 * 48}
    assert b["memory"] == {"weight_bytes": 2 * 9, "input_bytes": 2 * 48, "output_bytes": 2 * 48}


def _qdq(tmp_path: Path) -> Path:
    inits = [numpy_helper.from_array(np.ones((2, 4, 3, 3), np.int8), "wq"),
             helper.make_tensor("ws", F32, [], [0.5]), helper.make_tensor("wz", TensorProto.INT8, [], [0]),
             helper.make_tensor("xs", F32, [], [0.1]), helper.make_tensor("xz", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="qconv")]
    return _save(tmp_path, "qdq", nodes, {"x": (F32, [1, 4, 6, 6])}, inits)


@pytest.mark.parametrize("given", [[], ["--dtype", "float16"]])
def test_a_qdq_model_stays_int8(tmp_path: Path, given: list[str]) -> None:
    data = _json(str(_qdq(tmp_path)), *given)
    (layer,) = data["layers"]
    assert layer["dtype"] == "int8"
    # 1 byte per element: weight 2*4*3*3, input 4*6*6, output 2*4*4
    assert layer["memory"] == {"weight_bytes": 72, "input_bytes": 144, "output_bytes": 32}
    assert data["conventions"]["dtype"] == (given[-1] if given else "float32")


def test_integer_matmuls_are_int8(tmp_path: Path) -> None:
    a = helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 3])
    nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [a], [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(np.ones((3, 5), np.uint8), "w")])
    path = tmp_path / "mmi.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    (mm,) = load_model(path, None).matmuls
    assert mm.dtype == "int8" and cost_of(mm, "float32").weight_bytes == 15


# --- torch: the same net exported in half precision, and traced -----------------------------------

class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# (weight + bias, input, output) elements, by hand at 1x3x8x8: 8*3*9 + 8, 3*64, 8*64; 4*8 + 4, 8*64, 4*64.
SMALL = {"body.0": (224, 192, 512), "body.2": (36, 512, 256)}


@pytest.fixture(scope="module")
def half_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("half")
    torch.manual_seed(0)
    net = Small().eval().half()
    x = torch.randn(1, 3, 8, 8).half()
    onnx_path, pt_path = folder / "small.onnx", folder / "small.pt"
    torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, opset_version=17)
    torch.jit.save(torch.jit.trace(net, x), str(pt_path))
    return {"onnx": onnx_path, "torchscript": pt_path}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(("given", "size"), [([], 2), (["--dtype", "float32"], 4)])
def test_a_half_torch_model_prices_2_bytes_unless_told(half_files: dict[str, Path], fmt: str, given: list[str],
                                                       size: int) -> None:
    data = _json(str(half_files[fmt]), "-i", "1x3x8x8", *given)
    assert data["conventions"]["bytes_per_element"] == size
    got = {layer["name"]: tuple(layer["memory"].values()) for layer in data["layers"]}
    assert got == {name: tuple(size * n for n in counts) for name, counts in SMALL.items()}


def test_a_device_without_the_models_dtype_says_how_to_choose_one(tmp_path: Path) -> None:
    path = str(_conv_matmul(tmp_path, F16, "f16"))
    assert_one_line_error(invoke("analyze", path, "-d", "rpi4"), "float16", "rpi4", "--dtype float32")
    ok = _json(path, "-d", "rpi4", "--dtype", "float32")
    assert ok["totals"]["latency_ms"]["rpi4"] > 0
    a100 = _json(path, "-d", "a100")  # has a float16 peak
    assert a100["conventions"]["dtype"] == "float16" and a100["totals"]["latency_ms"]["a100"] > 0
