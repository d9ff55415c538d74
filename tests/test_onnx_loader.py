"""ONNX loader: counts checked against PyTorch forward hooks, torch's FlopCounterMode, onnx's own
shape inference and reference evaluator, torchvision's published `_ops`/params, and hand sums.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cli.app import main
from convcost.cost import cost_of
from convcost.ir.model import Conv, MatMul, Model
from convcost.loaders import LOADERS, detect
from convcost.loaders.onnx.loader import load_onnx
from convcost.util.errors import InputError
from tests import archs

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
F = TensorProto.FLOAT


def macs(op: Conv | MatMul) -> int:
    return cost_of(op).macs


def total_macs(model: Model) -> int:
    return analyze(model, Settings(variants=())).totals.macs


def total_params(model: Model) -> int:
    return analyze(model, Settings(variants=())).totals.params


# --- models exported with torch.onnx ----------------------------------------------------------


class Exported:
    def __init__(self, module: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
        self.module, self.x, self.path = module, x, path
        self.model = load_onnx(path)


#: Smaller inputs where no published 224x224 figure is checked (per-conv equality holds at any size).
SMALL_INPUTS = {"resnet18": (1, 3, 64, 64), "shufflenet_v2_x1_0": (1, 3, 96, 96)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    """Export an archs model once per module (random weights, every parameter distinct)."""
    cache: dict[tuple[str, bool], Exported] = {}
    folder = tmp_path_factory.mktemp("exported")

    def get(name: str, dynamo: bool = False) -> Exported:
        if (name, dynamo) not in cache:
            factory, shape = archs.MODELS[name]
            shape = SMALL_INPUTS.get(name, shape)
            torch.manual_seed(0)
            module = factory().eval()
            with torch.no_grad():  # distinct values: the exporter merges equal initializers
                for p in module.parameters():
                    p.normal_(0, 0.02)
            x = torch.randn(*shape)
            path = folder / f"{name}{'_dynamo' if dynamo else ''}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (x,), str(path), dynamo=dynamo, input_names=["input"])
            cache[(name, dynamo)] = Exported(module, x, path)
        return cache[(name, dynamo)]

    return get



HOOKED = ["resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "convnext_tiny", "efficientnet_b0",
          "audio1d", "video3d", "decoder"]


@pytest.mark.parametrize("name", HOOKED)
def test_per_conv_macs_equal_forward_hooks(exported: Callable[..., Exported], name: str) -> None:
    e = exported(name)
    hooks = archs.conv_hook_macs(e.module, e.x)  # in call order, as the exporter writes nodes
    assert [macs(c) for c in e.model.convs] == list(hooks.values())
    assert not e.model.warnings
    assert not e.model.uncosted


@pytest.mark.parametrize("name", HOOKED)
def test_total_macs_equal_torch_flop_counter(exported: Callable[..., Exported], name: str) -> None:
    e = exported(name)
    assert total_macs(e.model) == archs.flop_counter_macs(e.module, e.x)


@pytest.mark.parametrize(("name", "gmacs"), [("resnet50", 4.089), ("mobilenet_v2", 0.301),
                                              ("convnext_tiny", 4.456), ("efficientnet_b0", 0.386)])
def test_totals_match_torchvision_published_ops(exported: Callable[..., Exported], name: str,
                                                gmacs: float) -> None:
    assert round(total_macs(exported(name).model) / 1e9, 3) == gmacs


def test_convnext_params_equal_torch_parameters(exported: Callable[..., Exported]) -> None:
    """No BatchNorm to fold: LayerNorm weights, Linear biases (Add after MatMul) and layer scales
    all land in other_params, so the ONNX total is torch's parameter count (torchvision: 28,589,128)."""
    e = exported("convnext_tiny")
    assert total_params(e.model) == sum(p.numel() for p in e.module.parameters()) == 28_589_128


def test_resnet50_params_after_batchnorm_folding(exported: Callable[..., Exported]) -> None:
    """The exporter folds each BatchNorm (weight + bias: 2C params) into its conv's bias (C)."""
    e = exported("resnet50")
    bn_channels = sum(m.num_features for m in e.module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert total_params(e.model) == sum(p.numel() for p in e.module.parameters()) - bn_channels


def test_torch_export_names_are_module_names(exported: Callable[..., Exported]) -> None:
    """Named as `named_modules()` names the convs (tests/test_names.py covers the details)."""
    e = exported("resnet18")
    names = [c.name for c in e.model.convs]
    assert names == list(archs.conv_hook_macs(e.module, e.x))
    assert names[:2] == ["conv1", "layer1.0.conv1"]


def test_dynamo_export(exported: Callable[..., Exported]) -> None:
    e = exported("decoder", dynamo=True)
    assert [macs(c) for c in e.model.convs] == list(archs.conv_hook_macs(e.module, e.x).values())


def test_conv_weight_is_the_exported_tensor(exported: Callable[..., Exported]) -> None:
    e = exported("decoder")
    up1 = e.model.convs[0]
    assert up1.op == "ConvTranspose" and up1.weight is not None
    np.testing.assert_array_equal(up1.weight(), e.module.up1.weight.detach().numpy())


# --- the ONNX model zoo's "light" models shipped with the onnx wheel --------------------------


def light(name: str, inputs: dict[str, tuple[int, ...]] | None = None) -> Model:
    return load_onnx(LIGHT / f"light_{name}.onnx", inputs)


@pytest.mark.parametrize(("name", "gmacs", "params"), [
    ("resnet50", 4.089, 25_557_032),  # torchvision resnet50: _ops 4.089, 25,557,032 params
    ("vgg19", 19.632, 143_667_240),  # torchvision vgg19: _ops 19.632, 143,667,240 params
    ("squeezenet", 0.349, 1_235_496),  # SqueezeNet 1.1; torchvision squeezenet1_1: 0.349, 1,235,496
    ("densenet121", 2.834, None),  # torchvision densenet121: _ops 2.834
])
def test_light_zoo_totals_match_published(name: str, gmacs: float, params: int | None) -> None:
    model = light(name)
    assert round(total_macs(model) / 1e9, 3) == gmacs
    if params is not None:
        assert total_params(model) == params
    assert not model.warnings


def test_light_alexnet_at_227_matches_hand_count() -> None:
    """Caffe's AlexNet (two groups in conv2/4/5) at 227x227: the commonly quoted ~0.72 GMACs."""
    convs = (96 * 55 * 55 * 3 * 11 * 11 + 256 * 27 * 27 * 48 * 5 * 5 + 384 * 13 * 13 * 256 * 9
             + 384 * 13 * 13 * 192 * 9 + 256 * 13 * 13 * 192 * 9)
    fcs = 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    model = light("bvlc_alexnet", {"": (1, 3, 227, 227)})
    assert sum(macs(c) for c in model.convs) == convs
    assert total_macs(model) == convs + fcs == 724_406_816


@pytest.mark.parametrize(("name", "convs"), [("inception_v1", 57), ("inception_v2", 69), ("shufflenet", 49),
                                             ("zfnet512", 5), ("bvlc_alexnet", 5)])
def test_light_zoo_models_load_cleanly(name: str, convs: int) -> None:
    model = light(name)
    assert len(model.convs) == convs
    assert not model.warnings and not model.uncosted
    # ConstantOfShape weights load lazily, shaped as the conv says.
    first = model.convs[0]
    assert first.weight is not None
    assert first.weight().shape == (first.out_channels, first.in_channels // first.groups, *first.kernel)


# --- graphs built with onnx.helper -------------------------------------------------------------


def build(nodes: list[onnx.NodeProto], inputs: dict[str, list[int | str]], inits: list[onnx.TensorProto],
          outputs: list[str] | None = None, opset: int = 17,
          domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(k, F, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, F, None) for o in (outputs or [nodes[-1].output[0]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                             + [helper.make_opsetid(d, 1) for d in domains])


def weight(name: str, shape: list[int], seed: int = 0, dtype: type = np.float32) -> onnx.TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return numpy_helper.from_array(values, name)


def save(model: onnx.ModelProto, folder: Path, name: str = "m.onnx") -> Path:
    path = folder / name
    onnx.save(model, str(path))
    return path


def reference_output_shape(model: onnx.ModelProto, x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Run the model with onnx's reference evaluator: the shape an ONNX runtime really produces."""
    x = np.zeros(x_shape, np.float32)
    (y,) = ReferenceEvaluator(model).run(None, {"x": x})
    return tuple(y.shape)


def inferred_output_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """The output shape onnx's own (C++) shape inference gives."""
    out = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output[0]
    return tuple(d.dim_value for d in out.type.tensor_type.shape.dim)


CONV_CASES = [
    # (input, weight, attributes)
    ((1, 4, 13, 17), (8, 4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 3]}),
    ((1, 4, 13, 17), (8, 4, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((1, 4, 13, 17), (8, 2, 3, 5), {"auto_pad": "VALID", "group": 2, "dilations": [2, 1]}),
    ((2, 4, 13, 17), (8, 1, 3, 3), {"pads": [1, 0, 2, 3], "strides": [2, 1], "group": 4}),
    ((1, 4, 13, 17), (8, 4, 3, 3), {"auto_pad": "SAME_UPPER", "dilations": [2, 3]}),
    ((1, 3, 31), (6, 3, 5), {"auto_pad": "SAME_LOWER", "strides": [4]}),
    ((1, 2, 5, 9, 7), (4, 2, 3, 3, 1), {"pads": [1, 1, 0, 1, 1, 0], "strides": [1, 2, 1]}),
]


@pytest.mark.parametrize(("x", "w", "attrs"), CONV_CASES)
def test_conv_attributes_give_the_runtime_output_shape(tmp_path: Path, x: tuple[int, ...], w: tuple[int, ...],
                                                       attrs: dict[str, object]) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    model = build([node], {"x": list(x)}, [weight("w", list(w))])
    (conv,) = load_onnx(save(model, tmp_path)).convs
    out = reference_output_shape(model, x)
    assert conv.output_shape == out == inferred_output_shape(model)
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    assert macs(conv) == out[0] * w[0] * math.prod(out[2:]) * (x[1] // group) * math.prod(w[2:])


TRANSPOSE_CASES = [
    ((1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "output_padding": [1, 0]}),
    ((1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 12]}),
    ((1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 12], "auto_pad": "SAME_UPPER"}),
    ((1, 4, 5, 6), (4, 2, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_LOWER", "group": 2}),
    ((1, 4, 5, 6), (4, 2, 3, 3), {"pads": [1, 0, 0, 2], "dilations": [2, 1], "group": 2}),
    ((1, 4, 9), (4, 2, 5), {"strides": [3], "output_shape": [27]}),
    ((1, 2, 3, 4, 5), (2, 3, 2, 2, 2), {"strides": [2, 2, 2], "auto_pad": "VALID"}),
]


@pytest.mark.parametrize(("x", "w", "attrs"), TRANSPOSE_CASES)
def test_conv_transpose_attributes(tmp_path: Path, x: tuple[int, ...], w: tuple[int, ...],
                                   attrs: dict[str, object]) -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    model = build([node], {"x": list(x)}, [weight("w", list(w))])
    (conv,) = load_onnx(save(model, tmp_path)).convs
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    assert conv.output_shape == inferred_output_shape(model)
    if "output_shape" in attrs:
        assert conv.output_shape[2:] == tuple(attrs["output_shape"])  # type: ignore[arg-type]
    elif group == 1:  # onnx's reference ConvTranspose fails on groups and output_shape
        assert conv.output_shape == reference_output_shape(model, x)
    assert conv.out_channels == w[1] * group
    # Every input element is multiplied by C_out/g x prod(k) weights.
    assert macs(conv) == math.prod(x) * w[1] * math.prod(w[2:])


def test_quantized_convs_are_int8(tmp_path: Path) -> None:
    q = helper.make_tensor
    inits = [weight("w", [8, 4, 3, 3], dtype=np.int8), q("xs", F, [], [0.1]),
             q("xz", TensorProto.INT8, [], [0]), q("ws", F, [], [0.2]), q("wz", TensorProto.INT8, [], [0]),
             q("ys", F, [], [0.3]),
             q("yz", TensorProto.INT8, [], [0]), weight("b", [8], dtype=np.int32),
             weight("w2", [8, 8, 1, 1], dtype=np.int8)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                         pads=[1, 1, 1, 1], name="qconv"),
        helper.make_node("ConvInteger", ["y", "w2"], ["z"], name="iconv"),
    ]
    model = build(nodes, {"x": [1, 4, 10, 10]}, inits)
    qconv, iconv = load_onnx(save(model, tmp_path)).convs
    assert (qconv.name, qconv.dtype, qconv.bias) == ("qconv", "int8", True)
    assert macs(qconv) == 8 * 10 * 10 * 4 * 9
    assert cost_of(qconv, "float32").weight_bytes == 8 * 4 * 9 + 8  # one byte per element
    assert (iconv.dtype, iconv.bias, macs(iconv)) == ("int8", False, 8 * 100 * 8)
    assert iconv.weight is not None and iconv.weight().dtype == np.int8


def test_qdq_conv_counts_as_int8_and_dequantizes_its_weight(tmp_path: Path) -> None:
    w = np.arange(-36, 36, dtype=np.int8).reshape(2, 4, 3, 3)
    inits = [numpy_helper.from_array(w, "wq"),
             numpy_helper.from_array(np.array([0.5, 0.25], np.float32), "ws"),
             numpy_helper.from_array(np.array([1, -1], np.int8), "wz"),
             helper.make_tensor("xs", F, [], [0.1]), helper.make_tensor("xz", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"])]
    (conv,) = load_onnx(save(build(nodes, {"x": [1, 4, 6, 6]}, inits), tmp_path)).convs
    assert conv.dtype == "int8"
    expected = (w.astype(np.float32) - np.array([1, -1]).reshape(2, 1, 1, 1)) * np.array([0.5, 0.25]).reshape(
        2, 1, 1, 1)
    assert conv.weight is not None
    np.testing.assert_allclose(conv.weight(), expected)


def test_gemm_matmul_einsum(tmp_path: Path) -> None:
    inits = [weight("B", [16, 32]), weight("C", [16]), weight("W", [3, 8, 5])]
    nodes = [
        helper.make_node("Gemm", ["a", "B", "C"], ["g"], transB=1, name="gemm"),  # (4,32) x (32,16)^T
        helper.make_node("MatMul", ["m", "W"], ["mm"], name="batched"),  # (2,1,4,8) x (3,8,5)
        helper.make_node("MatMul", ["v", "v2"], ["dot"], name="vec"),  # (8,) x (8,)
        helper.make_node("Einsum", ["q", "k"], ["att"], equation="bhqd,bhkd->bhqk", name="attn"),
        helper.make_node("Einsum", ["e1", "e2"], ["ell"], equation="...ij,jk", name="ellipsis"),
        helper.make_node("Einsum", ["e3", "e4", "e5"], ["chain"], equation="ij,jk,kl->il", name="chain"),
        helper.make_node("Einsum", ["e3"], ["tr"], equation="ij->ji", name="transpose"),
    ]
    inputs: dict[str, list[int | str]] = {
        "a": [4, 32], "m": [2, 1, 4, 8], "v": [8], "v2": [8], "q": [2, 3, 5, 7], "k": [2, 3, 6, 7],
        "e1": [2, 3, 4, 6], "e2": [6, 5], "e3": [4, 6], "e4": [6, 5], "e5": [5, 9]}
    outputs = ["g", "mm", "dot", "att", "ell", "chain", "tr"]
    model = load_onnx(save(build(nodes, inputs, inits, outputs=outputs), tmp_path))
    got = {mm.name: (macs(mm), mm.params) for mm in model.matmuls}
    assert got == {
        "gemm": (4 * 32 * 16, 16 * 32 + 16),
        "batched": (2 * 3 * 4 * 8 * 5, 3 * 8 * 5),
        "vec": (8, 0),
        "attn": (2 * 3 * 5 * 6 * 7, 0),
        "ellipsis": (2 * 3 * 4 * 6 * 5, 0),
        "chain": (4 * 6 * 5, 0),  # ij,jk -> ik
        "chain#2": (4 * 5 * 9, 0),  # ik,kl -> il
    }
    assert not model.convs and not model.warnings


def test_contrib_gemm_and_matmul(tmp_path: Path) -> None:
    inits = [weight("B", [16, 32]), weight("W", [6, 5])]
    nodes = [helper.make_node("FusedGemm", ["a", "B"], ["g"], domain="com.microsoft", transB=1,
                              activation="Relu", name="fgemm"),  # (4,32) x (32,16)
             helper.make_node("FusedMatMul", ["g2", "W"], ["m"], domain="com.microsoft", transA=1,
                              name="fmm")]  # (2,6,3)^T -> (2,3,6) x (6,5)
    model = build(nodes, {"a": [4, 32], "g2": [2, 6, 3]}, inits, outputs=["g", "m"],
                  domains=("com.microsoft",))
    loaded = load_onnx(save(model, tmp_path))
    assert {mm.name: (macs(mm), mm.params) for mm in loaded.matmuls} == {
        "fgemm": (4 * 32 * 16, 16 * 32), "fmm": (2 * 3 * 6 * 5, 30)}


def test_other_params_are_normalization_scales_and_biases(tmp_path: Path) -> None:
    inits = [weight("w", [8, 3, 3, 3]), weight("s", [8]), weight("b", [8], 1), weight("mean", [8], 2),
             weight("var", [8], 3), weight("gamma", [8, 1, 1], 4), helper.make_tensor("two", F, [], [2.0])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["n"]),
             helper.make_node("Mul", ["n", "gamma"], ["g"]),
             helper.make_node("Mul", ["g", "two"], ["y"])]
    model = load_onnx(save(build(nodes, {"x": [1, 3, 8, 8]}, inits), tmp_path))
    # BN scale + bias (running stats are buffers), the layer scale; not the scalar.
    assert model.other_params == 8 + 8 + 8
    assert total_params(model) == 8 * 3 * 9 + 24


# --- weights: inline, external, constant nodes -------------------------------------------------


def test_inline_weights_are_left_on_disk_until_asked_for(tmp_path: Path) -> None:
    w = weight("w", [64, 32, 3, 3])
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    path = save(build([node], {"x": [1, 32, 8, 8]}, [w]), tmp_path)
    (conv,) = load_onnx(path).convs
    assert conv.weight is not None
    np.testing.assert_array_equal(conv.weight(), numpy_helper.to_array(w))


@pytest.mark.parametrize("whole", [True, False])
def test_lean_reading_keeps_everything_but_weight_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       whole: bool) -> None:
    """Large files are read through a small window (monkeypatched threshold): same model either way."""
    from convcost.loaders.onnx import wire as onnx_wire

    if not whole:
        monkeypatch.setattr(onnx_wire, "WHOLE_READ_BYTES", 0)
    inits = [weight(f"w{i}", [16, 16, 3, 3], i) for i in range(3)]
    inits.append(helper.make_tensor("s", TensorProto.INT64, [2], [1, -1]))
    nodes = [helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], pads=[1, 1, 1, 1], name=f"c{i}")
             for i in range(3)] + [helper.make_node("Reshape", ["x3", "s"], ["y"])]
    path = save(build(nodes, {"x0": [1, 16, 6, 6]}, inits), tmp_path)
    lean = onnx.ModelProto.FromString(onnx_wire.read_lean(path))
    full = onnx.load(str(path))
    for model in (lean, full):
        for t in model.graph.initializer:
            if t.dims != [2]:  # large tensors: data left out, marker added
                t.ClearField("raw_data")
                del t.external_data[:]
    assert lean == full
    assert [t.raw_data for t in lean.graph.initializer if t.name == "s"]  # small tensors stay inline
    loaded = load_onnx(path)
    for conv, init in zip(loaded.convs, inits, strict=False):
        assert conv.weight is not None
        np.testing.assert_array_equal(conv.weight(), numpy_helper.to_array(init))


def test_constant_node_weights(tmp_path: Path) -> None:
    w = numpy_helper.to_array(weight("w", [4, 3, 1, 1]))
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
             helper.make_node("Identity", ["w"], ["w2"]),
             helper.make_node("Conv", ["x", "w2"], ["y"])]
    (conv,) = load_onnx(save(build(nodes, {"x": [1, 3, 4, 4]}, []), tmp_path)).convs
    assert conv.weight is not None
    np.testing.assert_array_equal(conv.weight(), w)


def external_model(folder: Path, location: str = "weights.bin") -> tuple[Path, np.ndarray]:
    w = weight("w", [32, 16, 3, 3])
    model = build([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": [1, 16, 10, 10]}, [w])
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location=location, size_threshold=0)
    return folder / "m.onnx", numpy_helper.to_array(w)


def test_external_data_is_read_only_when_asked_for(tmp_path: Path) -> None:
    path, w = external_model(tmp_path)
    (tmp_path / "weights.bin").rename(tmp_path / "away.bin")
    (conv,) = load_onnx(path).convs  # shapes come from metadata: no weight file needed
    assert macs(conv) == 32 * 8 * 8 * 16 * 9
    assert conv.weight is not None
    with pytest.raises(InputError, match="external data file 'weights.bin' not found"):
        conv.weight()
    (tmp_path / "away.bin").rename(tmp_path / "weights.bin")
    np.testing.assert_array_equal(conv.weight(), w)


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "models"
    inner.mkdir()
    path, _ = external_model(inner)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../weights.bin"
    (inner / "weights.bin").rename(tmp_path / "weights.bin")
    onnx.save(model, str(path))
    (conv,) = load_onnx(path).convs
    assert conv.weight is not None
    with pytest.raises(InputError, match="outside the model's folder"):
        conv.weight()


# --- inputs, names ------------------------------------------------------------------------------


def symbolic_model(folder: Path) -> Path:
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return save(build([node], {"x": ["N", 3, "H", "W"]}, [weight("w", [8, 3, 3, 3])]), folder)


def test_symbolic_dims_need_i(tmp_path: Path) -> None:
    path = symbolic_model(tmp_path)
    with pytest.raises(InputError, match="input 'x' has symbolic dim 'N' \\(axis 0"):
        load_onnx(path)
    (conv,) = load_onnx(path, {"": (2, 3, 16, 20)}).convs
    assert conv.output_shape == (2, 8, 16, 20)
    assert load_onnx(path, {"x": (1, 3, 8, 8)}).inputs == {"x": (1, 3, 8, 8)}
    with pytest.raises(InputError, match="no input 'y'"):
        load_onnx(path, {"y": (1, 3, 8, 8)})
    with pytest.raises(InputError, match="model declares 4"):
        load_onnx(path, {"": (1, 3, 8)})


def test_i_overrides_a_fixed_input_size(tmp_path: Path) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2])
    path = save(build([node], {"x": [1, 3, 9, 9]}, [weight("w", [4, 3, 3, 3])]), tmp_path)
    (conv,) = load_onnx(path, {"": (1, 3, 17, 17)}).convs
    assert conv.output_shape == (1, 4, 8, 8)


def test_two_inputs_need_names(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    path = save(build(nodes, {"a": ["N", 4], "b": ["N", 4]}, []), tmp_path)
    with pytest.raises(InputError, match="2 inputs"):
        load_onnx(path, {"": (1, 4)})
    assert load_onnx(path, {"a": (2, 4), "b": (2, 4)}).inputs == {"a": (2, 4), "b": (2, 4)}


def test_names_fall_back_to_outputs_and_are_made_unique(tmp_path: Path) -> None:
    w = weight("w", [3, 3, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w"], ["first"]),
             helper.make_node("Conv", ["first", "w"], ["c1"], name="dup"),
             helper.make_node("Conv", ["c1", "w"], ["c2"], name="dup"),
             helper.make_node("Conv", ["c2", "w"], ["c3"], name="dup_2")]
    path = save(build(nodes, {"x": [1, 3, 4, 4]}, [w]), tmp_path)
    names = [c.name for c in load_onnx(path).convs]
    assert names == ["first", "dup", "dup_2", "dup_2_2"]
    assert [c.name for c in load_onnx(path).convs] == names


# --- shapes onnx cannot infer -------------------------------------------------------------------


def test_contrib_fused_conv_is_counted_and_shapes_flow_past_it(tmp_path: Path) -> None:
    nodes = [helper.make_node("FusedConv", ["x", "w", "b"], ["f"], domain="com.microsoft", activation="Relu",
                              strides=[2, 2], pads=[1, 1, 1, 1], name="fused"),
             helper.make_node("Conv", ["f", "w2"], ["y"], name="after")]
    inits = [weight("w", [8, 3, 3, 3]), weight("b", [8]), weight("w2", [4, 8, 3, 3])]
    model = load_onnx(save(build(nodes, {"x": [1, 3, 16, 16]}, inits, domains=("com.microsoft",)), tmp_path))
    fused, after = model.convs
    assert fused.output_shape == (1, 8, 8, 8) and after.output_shape == (1, 4, 6, 6)
    assert macs(after) == 4 * 36 * 8 * 9
    assert not model.warnings


def test_unknown_op_warns_and_later_convs_are_not_counted(tmp_path: Path) -> None:
    w = weight("w", [3, 3, 3, 3])
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="before"),
             helper.make_node("Mystery", ["a"], ["b"], domain="my.ops", name="mystery"),
             helper.make_node("Conv", ["b", "w"], ["y"], name="after")]
    model = load_onnx(save(build(nodes, {"x": [1, 3, 8, 8]}, [w]), tmp_path))  # no opset for my.ops
    assert [c.name for c in model.convs] == ["before"]
    assert any("unknown op my.ops::Mystery (node 'mystery')" in w for w in model.warnings)
    assert any("Conv 'after' not counted" in w for w in model.warnings)
    assert model.uncosted == {"my.ops::Mystery": 1, "Conv": 1}


def test_unknown_op_with_declared_shape_is_followed(tmp_path: Path) -> None:
    w = weight("w", [3, 3, 3, 3])
    nodes = [helper.make_node("Mystery", ["x"], ["b"], domain="my.ops"),
             helper.make_node("Conv", ["b", "w"], ["y"], name="after")]
    model = build(nodes, {"x": [1, 3, 8, 8]}, [w], domains=("my.ops",))
    model.graph.value_info.append(helper.make_tensor_value_info("b", F, [1, 3, 6, 6]))
    loaded = load_onnx(save(model, tmp_path))
    assert [c.output_shape for c in loaded.convs] == [(1, 3, 4, 4)]
    assert not loaded.warnings


def test_computed_split_points_are_folded(tmp_path: Path) -> None:
    """x.chunk(2, dim=1) as torch exports it: the Slice end comes from Shape -> Gather -> Div."""
    i64 = TensorProto.INT64
    inits = [helper.make_tensor("one", i64, [1], [1]), helper.make_tensor("two", i64, [1], [2]),
             helper.make_tensor("zero", i64, [1], [0]), weight("w", [4, 3, 3, 3])]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["c"], axis=0),
             helper.make_node("Div", ["c", "two"], ["half"]),
             helper.make_node("Slice", ["x", "zero", "half", "one"], ["part"]),
             helper.make_node("Conv", ["part", "w"], ["y"])]
    (conv,) = load_onnx(save(build(nodes, {"x": [1, 6, 8, 8]}, inits), tmp_path)).convs
    assert conv.input_shape == (1, 3, 8, 8)


def test_convs_inside_model_local_functions_are_counted(tmp_path: Path) -> None:
    block = helper.make_function("my.fn", "Block", ["x", "w"], ["y"],
                                 [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                                  helper.make_node("Relu", ["c"], ["y"])],
                                 opset_imports=[helper.make_opsetid("", 17)])
    model = build([helper.make_node("Block", ["x", "w"], ["y"], domain="my.fn")], {"x": [1, 3, 8, 8]},
                  [weight("w", [4, 3, 3, 3])], domains=("my.fn",))
    model.functions.append(block)
    loaded = load_onnx(save(model, tmp_path))
    assert [macs(c) for c in loaded.convs] == [4 * 64 * 3 * 9]
    assert not loaded.uncosted


def test_computed_reshape_targets_are_folded(tmp_path: Path) -> None:
    """x.view(n, c // 2, 2 * h, w) then a conv: the target goes Shape -> Gather -> Div/Mul ->
    Unsqueeze -> Concat, and Div is where onnx's data propagation stops."""
    i64 = TensorProto.INT64
    inits = [helper.make_tensor(f"i{v}", i64, [], [v]) for v in range(4)]
    inits += [helper.make_tensor("ax", i64, [1], [0]), weight("w", [5, 3, 3, 3])]
    nodes = [helper.make_node("Shape", ["x"], ["s"])]
    for i in range(4):
        nodes.append(helper.make_node("Gather", ["s", f"i{i}"], [f"d{i}"], axis=0))
    nodes += [helper.make_node("Div", ["d1", "i2"], ["half"]), helper.make_node("Mul", ["d2", "i2"], ["dbl"])]
    for name in ("d0", "half", "dbl", "d3"):
        nodes.append(helper.make_node("Unsqueeze", [name, "ax"], [f"u_{name}"]))
    nodes += [helper.make_node("Concat", ["u_d0", "u_half", "u_dbl", "u_d3"], ["target"], axis=0),
              helper.make_node("Reshape", ["x", "target"], ["r"]),
              helper.make_node("Conv", ["r", "w"], ["y"])]
    (conv,) = load_onnx(save(build(nodes, {"x": [1, 6, 4, 5]}, inits), tmp_path)).convs
    assert conv.input_shape == (1, 3, 8, 5) and conv.output_shape == (1, 5, 6, 3)


def test_bodies_of_ops_convcost_does_not_follow_are_listed_as_not_counted(tmp_path: Path) -> None:
    """If/Loop/Scan bodies are counted (tests/test_control_flow.py); a custom op's body is not."""
    w = weight("w", [3, 3, 1, 1])
    body = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["t"])], "body", [],
                             [helper.make_tensor_value_info("t", F, None)])
    nodes = [helper.make_node("Repeat", ["x"], ["y"], body=body, name="maybe", domain="my.ops")]
    model = load_onnx(save(build(nodes, {"x": [1, 3, 4, 4]}, [w], domains=("my.ops",)), tmp_path))
    assert model.uncosted == {"Repeat": 1}
    assert [(u.name, u.op) for u in model.uncounted] == [("maybe", "Repeat")]
    assert any("Repeat 'maybe'" in w for w in model.warnings)


# --- bad input -----------------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def resnet_bytes() -> bytes:
    return (LIGHT / "light_resnet50.onnx").read_bytes()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "file is empty"),
    (os.urandom(4096), "not a valid ONNX model"),
    (resnet_bytes()[: len(resnet_bytes()) // 2], "not a valid ONNX model: truncated"),
    (b"\x08\x07\x12\x04test", "it has no graph"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                       message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    code, out, err = run_cli([str(path), "-f", "json"], capsys)
    assert code == 2 and not out
    assert err.count("\n") == 1 and message in err and str(path) in err


def test_unsorted_graph_is_sorted_with_a_warning(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["a", "w"], ["y"], name="second"),
             helper.make_node("Relu", ["x"], ["a"], name="first")]
    model = load_onnx(save(build(nodes, {"x": [1, 3, 5, 5]}, [weight("w", [2, 3, 3, 3])], outputs=["y"]),
                           tmp_path))
    assert [macs(c) for c in model.convs] == [2 * 9 * 3 * 9]
    assert any("not in topological order" in w for w in model.warnings)


def test_cycle_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
             helper.make_node("Relu", ["a"], ["b"], name="n2")]
    path = save(build(nodes, {"x": [1, 3]}, [], outputs=["b"]), tmp_path)
    code, _, err = run_cli([str(path)], capsys)
    assert code == 2 and "cycle" in err and "'n1'" in err and err.count("\n") == 1


def test_dangling_input_is_an_error(tmp_path: Path) -> None:
    path = save(build([helper.make_node("Relu", ["ghost"], ["y"])], {"x": [1]}, []), tmp_path)
    with pytest.raises(InputError, match="reads 'ghost'"):
        load_onnx(path)


def test_symbolic_input_error_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([str(symbolic_model(tmp_path))], capsys)
    assert code == 2 and "symbolic dim 'N'" in err and "-i" in err


def test_cli_json_for_an_onnx_model(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    main(["analyze", str(LIGHT / "light_squeezenet.onnx"), "-f", "json", "-V", "none"])
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["format"] == "onnx" and data["model"]["inputs"] == {"data_0": [1, 3, 224, 224]}
    assert len(data["layers"]) == 26 and data["layers"][0]["padding"] == [0, 0, 0, 0]


# --- format detection ----------------------------------------------------------------------------


def test_onnx_is_recognised_by_content(tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(resnet_bytes())
    assert detect(renamed).name == "onnx"
    zipped = tmp_path / "traced.onnx"  # TorchScript archives are zips, whatever their name
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    onnx_loader = LOADERS["onnx"]
    assert not onnx_loader.sniff(zipped, zipped.read_bytes())
    spec = tmp_path / "spec.txt"
    spec.write_text("name: tiny\ninput: [1, 3, 8, 8]\nlayers:\n  - {type: conv, out: 4, kernel: 3}\n")
    assert detect(spec).name == "spec"
    noise = tmp_path / "noise.bin"
    noise.write_bytes(b"\x00\xff" * 100)
    with pytest.raises(InputError):
        detect(noise)


# --- onnx-tool, where installed ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "convnext_tiny", "shufflenet_v2_x1_0"])
def test_agrees_with_onnx_tool_plus_its_bias_convention(exported: Callable[..., Exported], name: str) -> None:
    onnx_tool = pytest.importorskip("onnx_tool")
    e = exported(name)
    graph = onnx_tool.Model(str(e.path)).graph
    graph.shape_infer()
    graph.profile()
    for op in [*e.model.convs, *e.model.matmuls]:
        if isinstance(op, Conv):
            bias_adds = math.prod(op.output_shape) if op.bias else 0
        else:  # Gemm with a bias (C) adds one per output; a MatMul's bias is a separate Add node
            bias_adds = op.batch * op.m * op.n if op.params > op.k * op.n else 0
        assert graph.nodemap[op.name].macs[0] == macs(op) + bias_adds, op.name
