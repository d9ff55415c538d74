"""ONNX If / Loop / Scan: convs inside control-flow bodies are counted, checked against hand counts.

Every model here is built with onnx.helper and run once with onnxruntime (so each is a model a
runtime accepts, and the output shapes it produces confirm the shapes the hand counts assume).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of
from convcost.ir.model import Model
from convcost.loaders.onnx import control
from convcost.loaders.onnx.control import MAX_UNROLL
from convcost.loaders.onnx.loader import load_onnx

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def conv_macs(c_out: int, h_out: int, w_out: int, c_in: int, k: int, n: int = 1) -> int:
    """Hand count: every output element takes c_in x k x k multiply-accumulates."""
    return n * c_out * h_out * w_out * c_in * k * k


def weight(name: str, shape: list[int], seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def const(name: str, elem: int, value: int | bool) -> onnx.TensorProto:
    return helper.make_tensor(name, elem, [], [value])


def tensor(name: str, elem: int = F, shape: list[int | str] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def model_of(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto],
             outputs: list[str]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [tensor(o) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.x reads
    return model


def save_and_run(model: onnx.ModelProto, folder: Path, feeds: dict[str, np.ndarray],
                 name: str = "m.onnx") -> tuple[Path, list[np.ndarray]]:
    """Save the model, and run it with onnxruntime: its outputs (the model is valid)."""
    path = folder / name
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path, session.run(None, feeds)


def total_macs(model: Model) -> int:
    return analyze(model, Settings(variants=())).totals.macs


def total_params(model: Model) -> int:
    return analyze(model, Settings(variants=())).totals.params


X = np.zeros((1, 3, 8, 8), np.float32)
THEN_MACS = conv_macs(4, 8, 8, 3, 1)  # 1x1 conv, 3 -> 4 channels: 768
ELSE_MACS = conv_macs(8, 8, 8, 3, 3)  # 3x3 conv (pad 1), 3 -> 8 channels: 13,824


def if_model(cond: str, nodes: list[onnx.NodeProto] | None = None, inputs: list[onnx.ValueInfoProto] | None = None,
             inits: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    """If 'choose': then a cheap conv, else a costly one (the costlier branch is the second)."""
    then = helper.make_graph([helper.make_node("Conv", ["x", "w_then"], ["t"], name="cheap")], "then", [],
                             [tensor("t")])
    other = helper.make_graph([helper.make_node("Conv", ["x", "w_else"], ["e"], pads=[1] * 4, name="costly")],
                              "else", [], [tensor("e")])
    node = helper.make_node("If", [cond], ["y"], then_branch=then, else_branch=other, name="choose")
    return model_of([*(nodes or []), node], [tensor("x", F, [1, 3, 8, 8]), *(inputs or [])],
                    [weight("w_then", [4, 3, 1, 1]), weight("w_else", [8, 3, 3, 3], 1), *(inits or [])], ["y"])


@pytest.mark.parametrize(("flag", "name", "macs", "channels"), [
    (True, "choose/then/cheap", THEN_MACS, 4),
    (False, "choose/else/costly", ELSE_MACS, 8),
])
def test_if_with_a_constant_condition_counts_that_branch(tmp_path: Path, flag: bool, name: str, macs: int,
                                                         channels: int) -> None:
    path, (y,) = save_and_run(if_model("c", inits=[const("c", BOOL, flag)]), tmp_path, {"x": X})
    assert y.shape == (1, channels, 8, 8)
    model = load_onnx(path)
    assert [c.name for c in model.convs] == [name]
    assert total_macs(model) == macs
    assert not model.uncounted and not model.uncosted
    assert not any("condition" in w for w in model.warnings)


def test_if_whose_condition_folds_from_a_shape_takes_that_branch(tmp_path: Path) -> None:
    """`if x.shape[2] > 4`: Shape -> Gather -> Greater, folded by convcost's value folding."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "two"], ["h"], axis=0),
             helper.make_node("Greater", ["h", "four"], ["big"])]
    model = if_model("big", nodes, inits=[const("two", I64, 2), const("four", I64, 4)])
    path, (y,) = save_and_run(model, tmp_path, {"x": X})
    assert y.shape == (1, 4, 8, 8)  # 8 > 4: the then branch ran
    loaded = load_onnx(path)
    assert [c.name for c in loaded.convs] == ["choose/then/cheap"] and total_macs(loaded) == THEN_MACS


def test_if_with_an_unknown_condition_counts_the_costlier_branch_and_says_so(tmp_path: Path) -> None:
    model = if_model("c", inputs=[tensor("c", BOOL, [])])
    path, (y,) = save_and_run(model, tmp_path, {"x": X, "c": np.array(False)})
    assert y.shape == (1, 8, 8, 8)
    loaded = load_onnx(path)
    assert [c.name for c in loaded.convs] == ["choose/else/costly"]
    assert total_macs(loaded) == ELSE_MACS
    (warning,) = [w for w in loaded.warnings if "condition" in w]
    assert "'choose'" in warning and f"else: {ELSE_MACS:,} MACs" in warning and f"then: {THEN_MACS:,}" in warning
    assert not loaded.uncounted


@pytest.mark.parametrize(("flag", "size"), [(True, 8), (False, 4)])
def test_layers_after_an_if_take_the_shape_of_the_branch_it_takes(tmp_path: Path, flag: bool, size: int) -> None:
    """The branches differ in stride, so onnx's inference leaves the If's spatial dims open; the
    folded condition settles them and the conv after the If is counted."""
    then = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["t"], pads=[1] * 4, name="fine")], "then", [],
                             [tensor("t")])
    other = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["e"], pads=[1] * 4, strides=[2, 2],
                                                name="coarse")], "else", [], [tensor("e")])
    # c = x.shape[2] > 4 (true) or < 4 (false): a value convcost folds and onnx does not
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "two"], ["h"], axis=0),
             helper.make_node("Greater" if flag else "Less", ["h", "four"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="choose"),
             helper.make_node("Conv", ["y", "w2"], ["z"], name="after")]
    inits = [weight("w", [4, 3, 3, 3]), weight("w2", [2, 4, 3, 3], 1), const("two", I64, 2), const("four", I64, 4)]
    path, (z,) = save_and_run(model_of(nodes, [tensor("x", F, [1, 3, 8, 8])], inits, ["z"]), tmp_path, {"x": X})
    assert z.shape == (1, 2, size - 2, size - 2)
    model = load_onnx(path)
    assert [c.name for c in model.convs] == [f"choose/{'then/fine' if flag else 'else/coarse'}", "after"]
    assert model.convs[1].output_shape == z.shape
    assert total_macs(model) == conv_macs(4, size, size, 3, 3) + conv_macs(2, size - 2, size - 2, 4, 3)
    assert not model.uncounted


def loop_model(trip: onnx.TensorProto | None, stride: int = 1, size: int = 8, pad: int = 1,
               body_extra: list[onnx.NodeProto] | None = None) -> onnx.ModelProto:
    """Loop 'repeat': x = conv(x) per iteration (3 -> 3 channels, 3x3, pad 1, with bias)."""
    body_nodes = [*(body_extra or []),
                  helper.make_node("Conv", ["x_in", "w", "b"], ["x_out"], pads=[pad] * 4, strides=[stride] * 2,
                                   name="step"),
                  helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    body = helper.make_graph(body_nodes, "body", [tensor("i", I64, []), tensor("cond_in", BOOL, []), tensor("x_in")],
                             [tensor("cond_out", BOOL, []), tensor("x_out")])
    node = helper.make_node("Loop", ["n", "go", "x"], ["y"], body=body, name="repeat")
    inputs = [tensor("x", F, [1, 3, size, size])] + ([] if trip is not None else [tensor("n", I64, [])])
    inits = [weight("w", [3, 3, 3, 3]), weight("b", [3], 1), const("go", BOOL, True)]
    return model_of([node], inputs, inits + ([trip] if trip is not None else []), ["y"])


def test_loop_with_a_constant_trip_count_counts_its_body_that_many_times(tmp_path: Path) -> None:
    path, (y,) = save_and_run(loop_model(const("n", I64, 3)), tmp_path, {"x": X})
    assert y.shape == (1, 3, 8, 8)
    model = load_onnx(path)
    assert [c.name for c in model.convs] == ["repeat/body/step", "repeat/body/step#1", "repeat/body/step#2"]
    assert total_macs(model) == 3 * conv_macs(3, 8, 8, 3, 3)
    assert total_params(model) == 3 * 3 * 9 + 3  # one weight and one bias, however often they run
    assert not model.uncounted and not model.warnings


def test_loop_whose_body_shrinks_its_input_follows_each_iteration(tmp_path: Path) -> None:
    """A stride-2 conv carried three times: 16 -> 8 -> 4 -> 2, each iteration at its own size."""
    x = np.zeros((1, 3, 16, 16), np.float32)
    path, (y,) = save_and_run(loop_model(const("n", I64, 3), stride=2, size=16), tmp_path, {"x": x})
    assert y.shape == (1, 3, 2, 2)
    model = load_onnx(path)
    assert [c.output_shape for c in model.convs] == [(1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 2, 2)]
    assert total_macs(model) == sum(conv_macs(3, s, s, 3, 3) for s in (8, 4, 2))
    assert not model.uncounted


def test_loop_that_changes_shapes_too_often_is_not_counted_in_full(tmp_path: Path) -> None:
    """Pads of 2 around a 3x3 conv grow the carried tensor by 2 per iteration, one more than
    convcost follows: the Loop is listed as not counted (a budget check fails closed)."""
    runs = MAX_UNROLL + 1
    path, (y,) = save_and_run(loop_model(const("n", I64, runs), pad=2), tmp_path, {"x": X})
    assert y.shape == (1, 3, 8 + 2 * runs, 8 + 2 * runs)
    model = load_onnx(path)
    assert [(u.name, u.op) for u in model.uncounted] == [("repeat", "Loop")]
    assert [c.output_shape for c in model.convs] == [(1, 3, 10, 10)]  # the first iteration, at its size


def test_loop_with_an_unknown_trip_count_counts_its_body_once_and_says_so(tmp_path: Path) -> None:
    path, (y,) = save_and_run(loop_model(None), tmp_path, {"x": X, "n": np.array(3, np.int64)})
    assert y.shape == (1, 3, 8, 8)
    model = load_onnx(path)
    assert [c.name for c in model.convs] == ["repeat/body/step"]
    assert total_macs(model) == conv_macs(3, 8, 8, 3, 3)
    (warning,) = model.warnings
    assert "'repeat'" in warning and "counted once" in warning


def test_loop_whose_condition_can_stop_it_early_counts_once(tmp_path: Path) -> None:
    """cond_out = i < 1: the trip count 3 is only an upper bound."""
    model = loop_model(const("n", I64, 3), body_extra=[helper.make_node("Less", ["i", "one"], ["more"])])
    body = model.graph.node[0].attribute[0].g
    body.node[2].input[0] = "more"  # cond_out = Identity(i < 1)
    model.graph.initializer.append(const("one", I64, 1))
    path, (y,) = save_and_run(model, tmp_path, {"x": X})
    assert y.shape == (1, 3, 8, 8)
    model_loaded = load_onnx(path)
    assert len(model_loaded.convs) == 1
    assert any("'repeat'" in w and "before 3 iterations" in w for w in model_loaded.warnings)


def test_matmuls_in_a_loop_body_are_counted_per_iteration(tmp_path: Path) -> None:
    """h = h @ W four times (an RNN-like recurrence): 4 x 1x16x16 MACs, W's 256 params once."""
    body = helper.make_graph([helper.make_node("MatMul", ["h_in", "W"], ["h_out"], name="mix"),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"])],
                             "body", [tensor("i", I64, []), tensor("cond_in", BOOL, []), tensor("h_in")],
                             [tensor("cond_out", BOOL, []), tensor("h_out")])
    nodes = [helper.make_node("Loop", ["n", "", "h"], ["y"], body=body, name="recur")]
    inits = [weight("W", [16, 16]), const("n", I64, 4)]
    path, (y,) = save_and_run(model_of(nodes, [tensor("h", F, [1, 16])], inits, ["y"]), tmp_path,
                              {"h": np.ones((1, 16), np.float32)})
    assert y.shape == (1, 16)
    model = load_onnx(path)
    assert [m.name for m in model.matmuls] == ["recur/body/mix", "recur/body/mix#1", "recur/body/mix#2",
                                               "recur/body/mix#3"]
    assert total_macs(model) == 4 * 16 * 16
    assert total_params(model) == 16 * 16


def test_loop_with_more_rows_than_convcost_lists_is_not_counted_in_full(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "MAX_ROWS", 4)
    path, (y,) = save_and_run(loop_model(const("n", I64, 6)), tmp_path, {"x": X})
    assert y.shape == (1, 3, 8, 8)
    model = load_onnx(path)
    assert [c.name for c in model.convs][-1] == "repeat/body/step#3"
    assert [(u.name, u.op) for u in model.uncounted] == [("repeat", "Loop")]


def test_endless_loop_without_convs_adds_no_rows(tmp_path: Path) -> None:
    """A trip count of INT64_MAX (torch's marker for a while loop) over a body with no conv."""
    model = loop_model(helper.make_tensor("n", I64, [], [2**63 - 1]))
    body = model.graph.node[0].attribute[0].g
    body.node[0].CopyFrom(helper.make_node("Relu", ["x_in"], ["x_out"]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])  # valid; too long to run
    loaded = load_onnx(tmp_path / "m.onnx")
    assert not loaded.convs and not loaded.uncounted


def test_if_nested_in_a_loop_is_counted_per_iteration(tmp_path: Path) -> None:
    """Loop 'outer' (2 iterations) holds If 'inner', whose condition is an outer-scope constant."""
    then = helper.make_graph([helper.make_node("Conv", ["x_in", "w"], ["t"], pads=[1] * 4, name="a")], "then", [],
                             [tensor("t")])
    other = helper.make_graph([helper.make_node("Identity", ["x_in"], ["e"])], "else", [], [tensor("e")])
    body = helper.make_graph(
        [helper.make_node("If", ["flag"], ["x_out"], then_branch=then, else_branch=other, name="inner"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [tensor("i", I64, []), tensor("cond_in", BOOL, []), tensor("x_in")],
        [tensor("cond_out", BOOL, []), tensor("x_out")])
    nodes = [helper.make_node("Loop", ["n", "", "x"], ["y"], body=body, name="outer")]
    inits = [weight("w", [3, 3, 3, 3]), const("n", I64, 2), const("flag", BOOL, True)]
    path, (y,) = save_and_run(model_of(nodes, [tensor("x", F, [1, 3, 8, 8])], inits, ["y"]), tmp_path, {"x": X})
    assert y.shape == (1, 3, 8, 8)
    model = load_onnx(path)
    assert [c.name for c in model.convs] == ["outer/body/inner/then/a", "outer/body/inner/then/a#1"]
    assert total_macs(model) == 2 * conv_macs(3, 8, 8, 3, 3)
    assert not model.uncounted


def test_scan_counts_its_body_once_per_slice(tmp_path: Path) -> None:
    """Scan over axis 0 of a [5, 1, 3, 8, 8] input: five convs on [1, 3, 8, 8] slices."""
    body = helper.make_graph([helper.make_node("Conv", ["s", "w"], ["o"], pads=[1] * 4, name="per_step")], "body",
                             [tensor("s")], [tensor("o")])
    nodes = [helper.make_node("Scan", ["xs"], ["ys"], body=body, num_scan_inputs=1, name="scan")]
    model = model_of(nodes, [tensor("xs", F, [5, 1, 3, 8, 8])], [weight("w", [4, 3, 3, 3])], ["ys"])
    path, (y,) = save_and_run(model, tmp_path, {"xs": np.zeros((5, 1, 3, 8, 8), np.float32)})
    assert y.shape == (5, 1, 4, 8, 8)
    loaded = load_onnx(path)
    assert len(loaded.convs) == 5 and loaded.convs[4].name == "scan/body/per_step#4"
    assert total_macs(loaded) == 5 * conv_macs(4, 8, 8, 3, 3)


def test_a_body_conv_whose_shape_is_unknown_is_listed_as_not_counted(tmp_path: Path) -> None:
    """A Reshape to a target the model takes as an input: nobody knows the conv's input shape."""
    then = helper.make_graph([helper.make_node("Reshape", ["x", "target"], ["r"]),
                              helper.make_node("Conv", ["r", "w_then"], ["t"], name="cheap")],
                             "then", [], [tensor("t")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [tensor("e")])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="choose")
    model = model_of([node], [tensor("x", F, [1, 3, 8, 8]), tensor("target", I64, [4])],
                     [weight("w_then", [4, 3, 1, 1]), const("c", BOOL, True)], ["y"])
    path, (y,) = save_and_run(model, tmp_path, {"x": X, "target": np.array([1, 3, 4, 16], np.int64)})
    assert y.shape == (1, 4, 4, 16)
    loaded = load_onnx(path)
    assert not loaded.convs
    assert [(u.name, u.op) for u in loaded.uncounted] == [("choose/then/cheap", "Conv")]


def test_body_that_reads_an_outer_computed_shape_resolves(tmp_path: Path) -> None:
    """The Reshape target is computed outside the If (Shape -> Concat); the body sees its value."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "hw"], ["target"], axis=0)]
    then = helper.make_graph([helper.make_node("Reshape", ["x", "target"], ["r"]),
                              helper.make_node("Conv", ["r", "w_then"], ["t"], name="cheap")],
                             "then", [], [tensor("t")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [tensor("e")])
    nodes.append(helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="choose"))
    inits = [weight("w_then", [4, 3, 1, 1]), const("c", BOOL, True),
             helper.make_tensor("zero", I64, [1], [0]), helper.make_tensor("two", I64, [1], [2]),
             helper.make_tensor("hw", I64, [2], [4, 16])]
    path, (y,) = save_and_run(model_of(nodes, [tensor("x", F, [1, 3, 8, 8])], inits, ["y"]), tmp_path, {"x": X})
    assert y.shape == (1, 4, 4, 16)
    (conv,) = load_onnx(path).convs
    assert conv.name == "choose/then/cheap" and conv.input_shape == (1, 3, 4, 16)
    assert cost_of(conv).macs == conv_macs(4, 4, 16, 3, 1)


# --- torch.onnx's legacy exporter: a scripted `if` becomes an If --------------------------------


class Branchy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.small = torch.nn.Conv2d(3, 4, 1)
        self.big = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor, flag: bool) -> torch.Tensor:
        if flag:
            return self.small(x)
        return self.big(x)


@pytest.fixture(scope="module")
def branchy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Branchy]:
    module = Branchy().eval()
    path = tmp_path_factory.mktemp("scripted") / "branchy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.jit.script(module), (torch.zeros(1, 3, 8, 8), torch.tensor(True)), str(path),
                          dynamo=False, opset_version=17, input_names=["x", "flag"])
    return path, module


def test_scripted_if_exported_by_torch_counts_the_costlier_branch(branchy: tuple[Path, Branchy]) -> None:
    path, module = branchy
    assert [n.op_type for n in onnx.load(str(path)).graph.node][-1] == "If"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": X, "flag": np.array(False)})
    assert y.shape == (1, 8, 8, 8)
    ran: list[int] = []  # MACs of each conv that runs, from its real output (a forward hook)

    def hook(conv: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        assert isinstance(conv, torch.nn.Conv2d)
        ran.append(out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1])

    for layer in (module.small, module.big):
        layer.register_forward_hook(hook)
    with torch.no_grad():
        module(torch.zeros(1, 3, 8, 8), False)
    model = load_onnx(path)
    assert total_macs(model) == sum(ran) == ELSE_MACS
    (counted,) = model.convs
    # torch.onnx names layers by module path; the If's own node name prefixes its branch
    assert counted.out_channels == 8 and counted.name.split("/")[-2:] == ["else", "big"]
    assert "/else/" in counted.name
    assert any("condition is not known" in w for w in model.warnings)


def test_scripted_if_at_another_input_size_drops_the_branch_shapes_the_export_declared(
        branchy: tuple[Path, Branchy]) -> None:
    """The exporter declares each branch's output at 8x8; at -i 1x3x16x16 those are stale."""
    path, _ = branchy
    model = load_onnx(path, {"x": (1, 3, 16, 16)})
    (counted,) = model.convs
    assert counted.output_shape == (1, 8, 16, 16)
    assert total_macs(model) == conv_macs(8, 16, 16, 3, 3)
    assert not any("differs" in w for w in model.warnings)


class Cond(torch.nn.Module):
    """torch.cond: the dynamo exporter's If."""

    def __init__(self) -> None:
        super().__init__()
        self.small = torch.nn.Conv2d(3, 4, 1)
        self.big = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        return torch.cond(flag, lambda t: self.small(t), lambda t: self.big(t), (x,))


def test_torch_cond_exported_by_dynamo_counts_the_costlier_branch(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    path = tmp_path / "cond.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Cond().eval(), (torch.zeros(1, 3, 8, 8), torch.tensor(True)), str(path), dynamo=True,
                          input_names=["x", "flag"], verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": X, "flag": np.array(True)})[0].shape == (1, 4, 8, 8)
    model = load_onnx(path)
    (counted,) = model.convs
    assert "/else/" in counted.name and total_macs(model) == conv_macs(4, 8, 8, 3, 3)
    assert any("condition is not known" in w for w in model.warnings)


def test_a_scalar_input_given_with_i_selects_the_branch(branchy: tuple[Path, Branchy]) -> None:
    """`-i flag=true` makes the condition a constant: only that branch is counted, with no warning."""
    path, module = branchy
    for flag, conv in ((True, module.small), (False, module.big)):
        model = load_onnx(path, {"flag": flag})
        (counted,) = model.convs
        assert counted.out_channels == conv.out_channels
        assert counted.name.endswith("then/small" if flag else "else/big")
        assert not any("condition is not known" in w for w in model.warnings)
