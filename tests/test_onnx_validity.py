"""Invalid ONNX models and `-i` sizes a model cannot take exit 2 naming the node; an op convcost
does not know stays a warning, and `--shape` gets inference past it.

Every model called invalid here is cross-checked: onnxruntime refuses it too (at session creation
or when run at the given input). Every edge case kept valid is one onnxruntime runs, with the
output shape convcost computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convcost.loaders.onnx.loader import load_onnx
from tests.conftest import MODELS, assert_one_line_error, invoke

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT


def weight(name: str, dims: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, F, dims, np.full(int(np.prod(dims)), 0.01, np.float32))


def graph_model(nodes: list[onnx.NodeProto], x: list[int | str], inits: list[onnx.TensorProto],
                domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, x)],
                              [helper.make_tensor_value_info("y", F, None)], inits)
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def one_node(op: str, x: list[int], w: list[int], **attributes: object) -> onnx.ModelProto:
    return graph_model([helper.make_node(op, ["x", "w"], ["y"], name="bad", **attributes)], x, [weight("w", w)])


def ort_output(model: onnx.ModelProto, feed: tuple[int, ...]) -> tuple[int, ...] | None:
    """The output shape onnxruntime produces for a zero input of shape `feed`, or None when it
    refuses the model (at session creation or at run time)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    run = ort.RunOptions()
    run.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"x": np.zeros(feed, np.float32)}, run)
    except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types for every refusal
        return None
    return tuple(out.shape)


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def analyze_json(*args: str) -> dict:
    result = invoke("analyze", *args, "-f", "json", "-V", "none", "--no-approx")
    assert result.code == 0, result.err
    data: dict = json.loads(result.out)
    return data


# --- invalid convs and matrix products ----------------------------------------------------------

X8 = [1, 3, 8, 8]
W3 = [4, 3, 3, 3]
CT_X = [1, 4, 5, 5]
CT_W = [4, 2, 3, 3]

INVALID = {
    "negative pads": (one_node("Conv", X8, W3, pads=[-1, 0, 0, 0]), X8, "pads [-1, 0, 0, 0]"),
    "zero stride": (one_node("Conv", X8, W3, strides=[0, 1]), X8, "strides [0, 1]"),
    "negative stride": (one_node("Conv", X8, W3, strides=[-2, 1]), X8, "strides [-2, 1]"),
    "zero dilation": (one_node("Conv", X8, W3, dilations=[1, 0]), X8, "dilations [1, 0]"),
    "kernel larger than the padded input": (one_node("Conv", [1, 3, 2, 2], W3, pads=[1, 0, 0, 0]), [1, 3, 2, 2],
                                            "larger than the padded input"),
    "dilated kernel larger than the input": (one_node("Conv", [1, 3, 4, 4], W3, dilations=[2, 2]), [1, 3, 4, 4],
                                             "larger than the padded input"),
    "channel mismatch": (one_node("Conv", [1, 4, 8, 8], W3), [1, 4, 8, 8], "expects 3 input channels, input has 4"),
    "grouped channel mismatch": (one_node("Conv", [1, 6, 8, 8], [4, 2, 3, 3], group=2), [1, 6, 8, 8],
                                 "expects 4 input channels, input has 6"),
    "groups not dividing output channels": (one_node("Conv", [1, 6, 8, 8], [5, 2, 3, 3], group=3), [1, 6, 8, 8],
                                            "groups=3 must divide out_channels=5"),
    "zero group": (one_node("Conv", X8, W3, group=0), X8, "group must be positive"),
    "bad auto_pad": (one_node("Conv", X8, W3, auto_pad="BOGUS"), X8, "unknown auto_pad 'BOGUS'"),
    "lower-case auto_pad": (one_node("Conv", X8, W3, auto_pad="same_upper"), X8, "unknown auto_pad"),
    "kernel_shape not the weight's": (one_node("Conv", X8, W3, kernel_shape=[2, 2]), X8, "kernel_shape [2, 2]"),
    "ConvTranspose output_shape too large": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[18, 18]), CT_X,
        "output_shape [18, 18] is inconsistent with its input [5, 5]"),
    "ConvTranspose 1-D output_shape too large": (
        one_node("ConvTranspose", [1, 4, 5], [4, 2, 3], strides=[2], output_shape=[13]), [1, 4, 5],
        "at most [12] fits"),
    "ConvTranspose output_shape with N and C": (  # onnx's own inference refuses it too
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[1, 2, 10, 10]), CT_X,
        "output_shape [1, 2, 10, 10] must be 2 positive values"),
    "ConvTranspose zero output_shape": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[0, 10]), CT_X,
        "output_shape [0, 10] must be 2 positive values"),
    "ConvTranspose output_padding not below the stride": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_padding=[2, 2]), CT_X, "output_padding 2"),
    "ConvTranspose output_padding with output_shape": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[10, 10], output_padding=[2, 2]),
        CT_X, "output_padding 2"),
    "ConvTranspose channel mismatch": (one_node("ConvTranspose", [1, 3, 5, 5], CT_W), [1, 3, 5, 5],
                                       "expects 4 input channels, input has 3"),
    "ConvTranspose groups not dividing input channels": (one_node("ConvTranspose", CT_X, CT_W, group=3), CT_X,
                                                         "groups=3 must divide in_channels=4"),
    "MatMul operands that do not multiply": (one_node("MatMul", [2, 5], [4, 3]), [2, 5],
                                             "operands [2, 5] and [4, 3] do not multiply"),
    "MatMul batches that do not broadcast": (one_node("MatMul", [2, 3, 5], [4, 5, 3]), [2, 3, 5],
                                             "do not multiply"),
    "Gemm operands that do not multiply": (one_node("Gemm", [2, 5], [3, 4], transB=1), [2, 5],
                                           "operands [2, 5] and [4, 3] do not multiply"),
    "MatMul of a scalar weight": (one_node("MatMul", [2, 5], []), [2, 5], "a scalar cannot be matrix-multiplied"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_node_exits_2_naming_it_and_onnxruntime_refuses_it_too(case: str, tmp_path: Path) -> None:
    model, feed, problem = INVALID[case]
    assert ort_output(model, tuple(feed)) is None, "onnxruntime runs it: convcost must not call it invalid"
    path = save(model, tmp_path)
    op = model.graph.node[0].op_type
    result = invoke("analyze", path)
    assert_one_line_error(result, path, f"invalid model: {op} 'bad'", problem)


VALID_EDGES = {
    # output_shape up to stride - 1 past the natural 11: onnxruntime reads it as negative padding
    "ConvTranspose output_shape one past the natural size": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[12, 12]), CT_X),
    "ConvTranspose output_shape smaller than natural": (
        one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[9, 9]), CT_X),
    "pads as large as the kernel": (one_node("Conv", X8, W3, pads=[3, 3, 3, 3]), X8),
    "same padding on an input smaller than the kernel": (one_node("Conv", [1, 3, 2, 2], W3, auto_pad="SAME_UPPER"),
                                                         [1, 3, 2, 2]),
}


@pytest.mark.parametrize("case", list(VALID_EDGES))
def test_edge_cases_onnxruntime_runs_stay_valid_with_its_output_shape(case: str, tmp_path: Path) -> None:
    model, feed = VALID_EDGES[case]
    expected = ort_output(model, tuple(feed))
    assert expected is not None
    (layer,) = analyze_json(save(model, tmp_path))["layers"]
    assert tuple(layer["output_shape"]) == expected


def test_conv_transpose_past_its_natural_size_costs_what_its_input_scatters(tmp_path: Path) -> None:
    model = one_node("ConvTranspose", CT_X, CT_W, strides=[2, 2], output_shape=[12, 12])
    (conv,) = load_onnx(save(model, tmp_path)).convs
    assert conv.output_shape == (1, 2, 12, 12)
    assert [conv.padding[i] + conv.padding[i + 2] for i in (0, 1)] == [-1, -1]  # natural 11, one pixel more
    from convcost.cost import cost_of

    assert cost_of(conv).macs == 4 * 5 * 5 * 2 * 9  # each input element times C_out x k x k


def test_an_attribute_error_does_not_blame_the_input_size(tmp_path: Path) -> None:
    path = save(one_node("Conv", X8, W3, pads=[-1, 0, 0, 0]), tmp_path)
    result = invoke("analyze", path, "-i", "1x3x8x8")
    assert_one_line_error(result, "pads [-1, 0, 0, 0]")
    assert "-i" not in result.err


def test_the_first_invalid_conv_in_evaluation_order_is_named(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="ok"),
             helper.make_node("Conv", ["a", "w"], ["b"], name="first_bad", strides=[0, 0]),
             helper.make_node("Conv", ["b", "w"], ["y"], name="second_bad", pads=[-1, -1, -1, -1])]
    model = graph_model(nodes, [1, 4, 8, 8], [weight("w", [4, 4, 1, 1])])
    assert ort_output(model, (1, 4, 8, 8)) is None
    assert_one_line_error(invoke("analyze", save(model, tmp_path)), "Conv 'first_bad'", "strides [0, 0]")


# --- -i sizes the model cannot take ---------------------------------------------------------------


def symbolic_model() -> onnx.ModelProto:
    """conv (3 -> 4 channels) -> Reshape to a hard-coded [1, 256] -> MatMul: batch 1 and 3
    channels at 8x8 only, whatever the declared symbolic input says."""
    i64 = TensorProto.INT64
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "target"], ["r"], name="flatten"),
             helper.make_node("MatMul", ["r", "fw"], ["y"], name="fc")]
    inits = [weight("w", [4, 3, 3, 3]), helper.make_tensor("target", i64, [2], [1, 256]), weight("fw", [256, 10])]
    return graph_model(nodes, ["N", "C", "H", "W"], inits)


@pytest.mark.parametrize("shape,node,problem", [
    ("1x4x8x8", "Conv 'conv1'", "expects 3 input channels, input has 4"),
    ("2x3x8x8", "Reshape 'flatten'", "turns [2, 4, 8, 8] (512 elements) into [1, 256] (256 elements)"),
    ("1x3x9x9", "Reshape 'flatten'", "(324 elements) into [1, 256]"),
])
def test_an_input_size_the_model_cannot_take_exits_2_naming_the_node_and_the_input(
        shape: str, node: str, problem: str, tmp_path: Path) -> None:
    model = symbolic_model()
    feed = tuple(int(d) for d in shape.split("x"))
    assert ort_output(model, feed) is None
    result = invoke("analyze", save(model, tmp_path), "-i", shape)
    assert_one_line_error(result, f"invalid model: {node}", problem, f"-i {shape}: likely an input size")


def test_the_input_size_the_model_takes_is_counted(tmp_path: Path) -> None:
    model = symbolic_model()
    assert ort_output(model, (1, 3, 8, 8)) == (1, 10)
    data = analyze_json(save(model, tmp_path), "-i", "1x3x8x8")
    assert data["totals"]["macs"] == 4 * 64 * 27 + 256 * 10


def test_a_fixed_input_given_other_channels_names_the_i_value(tmp_path: Path) -> None:
    model = one_node("Conv", X8, W3)  # declares 1x3x8x8
    result = invoke("analyze", save(model, tmp_path), "-i", "x=1x4x8x8")
    assert_one_line_error(result, "Conv 'bad'", "input has 4", "-i x=1x4x8x8")


# --- unknown ops stay warnings; --shape gets past them ------------------------------------------


def mystery_model() -> onnx.ModelProto:
    """A custom-domain op nobody can shape, then a conv 8 -> 4 channels, 3x3, pad 1."""
    nodes = [helper.make_node("Mystery", ["x"], ["mystery_out"], domain="my.ops", name="mystery"),
             helper.make_node("Conv", ["mystery_out", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return graph_model(nodes, [1, 3, 16, 16], [weight("w", [4, 8, 3, 3])], domains=("my.ops",))


MYSTERY_MACS = 4 * 16 * 16 * 8 * 3 * 3  # C_out x output pixels x C_in x k x k


def test_an_unknown_op_leaves_the_conv_after_it_uncounted_with_a_warning(tmp_path: Path) -> None:
    result = invoke("analyze", save(mystery_model(), tmp_path), "-f", "json", "-V", "none", "--no-approx")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["layers"] == [] and data["totals"]["macs"] == 0
    assert any("Conv 'conv' not counted" in w for w in data["warnings"])
    assert any("unknown op my.ops::Mystery" in w for w in data["warnings"])


def test_shape_gives_the_unknown_ops_output_and_the_conv_is_counted(tmp_path: Path) -> None:
    data = analyze_json(save(mystery_model(), tmp_path), "--shape", "mystery_out=1x8x16x16")
    (layer,) = data["layers"]
    assert layer["name"] == "conv" and layer["macs"] == MYSTERY_MACS
    assert layer["output_shape"] == [1, 4, 16, 16]
    assert not any("not counted" in w for w in data["warnings"])


def test_shape_reaches_the_onnx_loader_as_its_own_keyword(tmp_path: Path) -> None:
    path = save(mystery_model(), tmp_path)
    (conv,) = load_onnx(path, tensor_shapes={"mystery_out": (2, 8, 10, 12)}).convs
    assert conv.input_shape == (2, 8, 10, 12) and conv.output_shape == (2, 4, 10, 12)


def test_shape_on_a_graph_output_and_in_comma_syntax(tmp_path: Path) -> None:
    nodes = [helper.make_node("Mystery", ["x"], ["y"], domain="my.ops", name="mystery")]
    model = graph_model(nodes, [1, 3, 4, 4], [], domains=("my.ops",))
    loaded = load_onnx(save(model, tmp_path), tensor_shapes={"y": (1, 5)})
    assert loaded.convs == []
    data = analyze_json(save(mystery_model(), tmp_path, "m.onnx"), "--shape", "mystery_out=1,8,16,16")
    assert data["totals"]["macs"] == MYSTERY_MACS


def test_check_report_and_bench_take_shape(tmp_path: Path) -> None:
    path = save(mystery_model(), tmp_path)
    budget = tmp_path / "budget.yaml"
    budget.write_text("model: {macs: 70K}\n")
    result = invoke("check", path, "--budget", str(budget), "--shape", "mystery_out=1x8x16x16", "-f", "json")
    assert result.code == 1, result.err  # 73,728 MACs counted: over the 70K budget
    (model_check,) = [c for c in json.loads(result.out)["checks"] if c["scope"] == "model"]
    assert model_check["value"] == MYSTERY_MACS
    report = invoke("report", path, "--shape", "mystery_out=1x8x16x16", "--no-approx", "-V", "none")
    assert report.code == 0 and "| conv |" in report.out, report.err
    bench = invoke("bench", "--help")
    assert "--shape" in bench.out


@pytest.mark.parametrize("value,fragments", [
    ("nope=1x8x16x16", ("--shape nope=...", "the graph has no tensor 'nope'")),
    ("mystery_ou=1x8x16x16", ("no tensor 'mystery_ou'", "did you mean 'mystery_out'")),
    ("x=1x3x16x16", ("'x' is a graph input", "-i x=SHAPE")),
    ("w=4x8x3x3", ("'w' is an initializer",)),
])
def test_shape_naming_no_tensor_it_can_set_exits_2(value: str, fragments: tuple[str, ...], tmp_path: Path) -> None:
    path = save(mystery_model(), tmp_path)
    assert_one_line_error(invoke("analyze", path, "--shape", value), path, *fragments)


@pytest.mark.parametrize("value,fragment", [
    ("1x8x16x16", "name the tensor: --shape TENSOR=SHAPE"),
    ("t=1xtwo", "expected a shape like"),
    ("t=0x8", "every dim must be a positive integer"),
])
def test_a_shape_that_does_not_parse_is_a_usage_error(value: str, fragment: str, tmp_path: Path) -> None:
    assert_one_line_error(invoke("analyze", save(mystery_model(), tmp_path), "--shape", value), "--shape", fragment)


def test_shape_twice_for_one_tensor_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("analyze", save(mystery_model(), tmp_path), "--shape", "t=1x2", "--shape", "t=1x3")
    assert_one_line_error(result, "given twice for tensor 't'")


def test_shape_on_a_spec_or_torchscript_model_is_a_usage_error(tmp_path: Path) -> None:
    spec = str(MODELS / "conv_mobilenet.yaml")
    assert_one_line_error(invoke("analyze", spec, "--shape", "a=1x2"), spec, "--shape", "ONNX graphs")
    torch = pytest.importorskip("torch")
    path = tmp_path / "conv.pt"
    torch.jit.script(torch.nn.Conv2d(3, 4, 3)).save(str(path))
    assert_one_line_error(invoke("analyze", str(path), "-i", "1x3x8x8", "--shape", "a=1x2"), str(path),
                          "--shape", "ONNX graphs")
