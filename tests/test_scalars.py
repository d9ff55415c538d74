"""Scalar inputs: `-i NAME=VALUE` for rank-0 ONNX inputs and TorchScript int/float/bool arguments.

Counts are compared with PyTorch forward hooks on the eager module run at the same values.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from convcost.cost import cost_of  # noqa: E402
from convcost.ir.inputs import Given, InputSyntaxError, parse_inputs  # noqa: E402
from convcost.loaders import load_model  # noqa: E402
from convcost.util.errors import InputError  # noqa: E402
from tests.conftest import assert_one_line_error, invoke  # noqa: E402


def macs(conv: Any) -> int:
    return cost_of(conv).macs


def hook_macs(module: nn.Module, *args: Any) -> dict[str, int]:
    """MACs of every conv the eager forward runs, by module name: output elements x C_in/groups x kernel."""
    macs: dict[str, int] = {}
    handles = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            def hook(m: nn.Module, inp: Any, out: torch.Tensor, name: str = name) -> None:
                macs[name] = out.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        module(*args)
    for h in handles:
        h.remove()
    return macs


# --- parsing: what was typed, every reading kept ------------------------------------------------

def test_parse_keeps_both_readings() -> None:
    got = parse_inputs(["1x16000", "sr=16000", "gain=0.5", "on=TRUE", "off=false", "shift=-3"])
    assert got == {"": Given("1x16000", shape=(1, 16000)), "sr": Given("16000", shape=(16000,), value=16000),
                   "gain": Given("0.5", value=0.5), "on": Given("TRUE", value=True),
                   "off": Given("false", value=False), "shift": Given("-3", value=-3)}
    assert Given.of(16000).as_kind("float") == 16000.0
    assert Given.of(0.5).as_kind("int") is None and Given.of(2).as_kind("bool") is None
    assert Given.of(1).as_kind("bool") is True and Given.of(True).as_kind("int") is None


@pytest.mark.parametrize(("typed", "message"), [
    ("16000.5x2", "expected a shape"), ("sr=abc", "NAME=VALUE"), ("0.5", "a value needs its input's name"),
    ("1x0x3", "every dim must be a positive integer"), ("sr=nan", "expected a shape"),
])
def test_parse_refuses(typed: str, message: str) -> None:
    with pytest.raises(InputSyntaxError, match=message):
        parse_inputs([typed])


# --- TorchScript --------------------------------------------------------------------------------

class Branchy(nn.Module):
    """Two conv paths of different MACs; `sr` picks one; `scale` (default 2) resizes the input first."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv1d(1, 4, 3)
        self.big = nn.Conv1d(1, 16, 9)

    def forward(self, x: torch.Tensor, sr: int, scale: int = 2, gain: float = 1.0) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=float(scale))
        if sr > 16000:
            return self.big(x) * gain
        return self.small(x) * gain


class This(nn.Module):
    def __init__(this) -> None:  # noqa: N805 - the point: the module parameter is not named self
        super().__init__()
        this.conv = nn.Conv2d(3, 8, 3)

    def forward(this, x: torch.Tensor) -> torch.Tensor:  # noqa: N805
        return this.conv(x)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scalars")


@pytest.fixture(scope="module")
def branchy(folder: Path) -> tuple[nn.Module, Path]:
    eager = Branchy().eval()
    path = folder / "branchy.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(eager).save(str(path))
    return eager, path


@pytest.mark.parametrize(("sr", "layer"), [(16000, "small"), (22050, "big"), (16001, "big")])
def test_scripted_branch_follows_the_value(branchy: tuple[nn.Module, Path], sr: int, layer: str) -> None:
    eager, path = branchy
    x = torch.zeros(1, 1, 50)
    expected = hook_macs(eager, x, sr)
    model = load_model(path, parse_inputs(["1x1x50", f"sr={sr}"]))
    assert {c.name: macs(c) for c in model.convs} == expected
    assert list(expected) == [layer]
    assert model.inputs == {"x": (1, 1, 50)} and model.values == {"sr": sr}


def test_defaults_apply_unless_given(branchy: tuple[nn.Module, Path]) -> None:
    eager, path = branchy
    x = torch.zeros(1, 1, 50)
    by_default = load_model(path, {"": (1, 1, 50), "sr": 8000})
    assert [macs(c) for c in by_default.convs] == list(hook_macs(eager, x, 8000).values())  # scale 2
    given = load_model(path, parse_inputs(["1x1x50", "sr=8000", "scale=3", "gain=0.5"]))
    assert [macs(c) for c in given.convs] == list(hook_macs(eager, x, 8000, 3).values())
    assert given.convs[0].input_shape == (1, 1, 150)
    assert given.values == {"sr": 8000, "scale": 3, "gain": 0.5}


@pytest.mark.parametrize(("given", "message"), [
    (["1x1x50"], "input 'sr' needs a value: -i sr=VALUE"),
    (["1x1x50", "sr=1x16000"], "input 'sr' is an int argument: -i sr=1x16000 gives a shape"),
    (["1x1x50", "sr=0.5"], "-i sr=0.5 is not an int"),
    (["x=0.5", "sr=16000"], "input 'x' is a tensor: -i x=0.5 gives a value"),
    (["1x1x50", "rate=16000"], "the model has no input 'rate'"),
])
def test_scripted_refusals(branchy: tuple[nn.Module, Path], given: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_model(branchy[1], parse_inputs(given))


def test_first_parameter_is_the_module_whatever_its_name(folder: Path) -> None:
    eager = This().eval()
    path = folder / "this.pt"
    torch.jit.script(eager).save(str(path))
    model = load_model(path, {"": (1, 3, 10, 10)})
    assert {c.name: macs(c) for c in model.convs} == hook_macs(eager, torch.zeros(1, 3, 10, 10))
    assert model.inputs == {"x": (1, 3, 10, 10)}


@pytest.mark.parametrize("saved", ["1x3x12x12", "x=1x3x12x12", str(torch.Size([1, 3, 12, 12])), "[1, 3, 12, 12]"])
def test_archive_input_shape_without_i(folder: Path, saved: str) -> None:
    eager = This().eval()
    path = folder / "this_saved.pt"
    torch.jit.save(torch.jit.script(eager), str(path), _extra_files={"input_shape": saved})
    model = load_model(path, parse_inputs([]))
    assert {c.name: macs(c) for c in model.convs} == hook_macs(eager, torch.zeros(1, 3, 12, 12))


def test_archive_input_shape_beside_a_value(folder: Path) -> None:
    """`-i sr=...` names one argument; the saved tensor shape still applies to the other."""
    eager = Branchy().eval()
    path = folder / "branchy_saved.pt"
    torch.jit.save(torch.jit.script(eager), str(path), _extra_files={"input_shape": "1x1x40"})
    model = load_model(path, parse_inputs(["sr=22050"]))
    assert {c.name: macs(c) for c in model.convs} == hook_macs(eager, torch.zeros(1, 1, 40), 22050)
    both = folder / "branchy_both.pt"
    torch.jit.save(torch.jit.script(eager), str(both), _extra_files={"input_shape": "x=1x1x40 sr=8000"})
    assert [c.name for c in load_model(both, None).convs] == ["small"]
    assert [c.name for c in load_model(both, parse_inputs(["sr=44100"])).convs] == ["big"]


def test_eager_scalar_argument() -> None:
    """module:factory models bind the same way: `sr: int` by annotation."""
    from convcost.loaders.pytorch.capture import capture

    eager = Branchy().eval()
    model = capture(eager, {"": (1, 1, 30), "sr": 22050}, name="b", source="b", fmt="pytorch", what="m", eager=True)
    assert {c.name: macs(c) for c in model.convs} == hook_macs(eager, torch.zeros(1, 1, 30), 22050)


# --- ONNX ---------------------------------------------------------------------------------------

class Vad(nn.Module):
    """Every conv's input length is computed from the sample rate, as in voice-activity models."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, 8, 5, padding=2)
        self.c2 = nn.Conv1d(8, 16, 3, stride=2)
        self.c3 = nn.Conv1d(16, 4, 3)

    def forward(self, x: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
        y = self.c1(x[:, :, : sr // 100 * 4])  # 40 ms of audio
        y = F.interpolate(y, size=sr // 50)  # Resize to sizes computed from sr
        y = self.c2(y)
        return self.c3(y.reshape(1, 16, -1)[:, :, : sr // 400])


SAMPLES = 4000


@pytest.fixture(scope="module", params=[(11, (), False), (17, (), False), (13, (1,), False), (18, (), True)],
                ids=["opset11", "opset17", "shape1", "dynamo"])
def vad(request: pytest.FixtureRequest, folder: Path) -> tuple[nn.Module, Path]:
    """Legacy exports, and the dynamo exporter's, which writes `sr // 100` as Div, Mod, Less, Equal, And, Sub."""
    opset, sr_shape, dynamo = request.param
    if dynamo:
        pytest.importorskip("onnxscript")
    eager = Vad().eval()
    path = folder / f"vad_{opset}_{len(sr_shape)}_{dynamo}.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(eager, (torch.zeros(1, 1, SAMPLES), torch.full(sr_shape, 16000)), str(path),
                          input_names=["x", "sr"], dynamo=dynamo, opset_version=opset)
    declared = [d.dim_value for d in onnx.load(str(path)).graph.input[1].type.tensor_type.shape.dim]
    assert declared == list(sr_shape)
    return eager, path


@pytest.mark.parametrize("sr", [16000, 8000])
def test_onnx_shapes_follow_the_value(vad: tuple[nn.Module, Path], sr: int) -> None:
    eager, path = vad
    expected = hook_macs(eager, torch.zeros(1, 1, SAMPLES), torch.tensor(sr))
    model = load_model(path, parse_inputs([f"sr={sr}"]))
    assert [macs(c) for c in model.convs] == list(expected.values())
    assert len(model.convs) == 3 and not model.uncounted
    assert model.inputs == {"x": (1, 1, SAMPLES)} and model.values == {"sr": sr}
    # by hand at 16 kHz: c1 640 samples (8x1x5 MACs each), c2 320 -> 159 (16x8x3), c3 40 -> 38 (4x16x3)
    if sr == 16000:
        assert [macs(c) for c in model.convs] == [640 * 8 * 5, 159 * 16 * 8 * 3, 38 * 4 * 16 * 3]


def test_onnx_without_the_value_names_the_scalar(vad: tuple[nn.Module, Path]) -> None:
    with pytest.raises(InputError, match=r"computed from the value of scalar input 'sr'; give it: -i sr=VALUE"):
        load_model(vad[1], None)


def test_onnx_value_reaches_the_evaluator(vad: tuple[nn.Module, Path]) -> None:
    """A given scalar is a constant of the graph convcost infers on, so value folding (and If
    conditions) compute with it."""
    from convcost.loaders.onnx.graph import Table
    from convcost.loaders.onnx.loader import _parse
    from convcost.loaders.onnx.shapes import apply_inputs
    from convcost.loaders.onnx.values import Evaluator

    model = _parse(vad[1])
    inputs, values = apply_inputs(model, parse_inputs(["sr=12000"]), "vad")
    assert inputs == {"x": (1, 1, SAMPLES)} and values == {"sr": 12000}
    dims = len(onnx.load(str(vad[1])).graph.input[1].type.tensor_type.shape.dim)
    value = Evaluator(model.graph, Table(model.graph), {}).value("sr")
    assert value is not None and value.shape == (1,) * dims and value.reshape(-1).tolist() == [12000]


@pytest.fixture(scope="module")
def vad_cli(folder: Path) -> Path:
    path = folder / "vad_cli.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Vad().eval(), (torch.zeros(1, 1, SAMPLES), torch.tensor(16000)), str(path),
                          input_names=["x", "sr"], dynamo=False, opset_version=13)
    return path


@pytest.mark.parametrize(("args", "fragments"), [
    (["-i", "x=0.5", "-i", "sr=16000"], ["input 'x' is a float tensor [1, 1, 4000]: -i x=0.5 gives a value"]),
    (["-i", "x=true", "-i", "sr=16000"], ["input 'x' is a float tensor", "gives a value"]),
    (["-i", "sr=1x16000"], ["input 'sr' is a scalar (int64): -i sr=1x16000 gives a shape"]),
    (["-i", "sr=16000.5"], ["-i sr=16000.5 is not an int"]),
    (["-i", "sr=99999999999999999999"], ["out of its range"]),
    (["-i", "rate=16000"], ["the model has no input 'rate'"]),
    ([], ["scalar input 'sr'", "-i sr=VALUE"]),
])
def test_onnx_refusals_are_one_line(vad_cli: Path, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(invoke("analyze", str(vad_cli), "-V", "none", *args), str(vad_cli), *fragments)


def test_onnx_cli_records_the_value(vad_cli: Path) -> None:
    result = invoke("analyze", str(vad_cli), "-V", "none", "-i", "1x1x4000", "-i", "sr=8000", "-f", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["model"]["inputs"] == {"x": [1, 1, 4000]} and doc["model"]["values"] == {"sr": 8000}
    assert doc["totals"]["conv_macs"] == sum(hook_macs(Vad().eval(), torch.zeros(1, 1, 4000),
                                                       torch.tensor(8000)).values())
    text = invoke("analyze", str(vad_cli), "-V", "none", "-i", "sr=8000")
    assert "input 1x1x4000, sr=8000" in text.out


@pytest.mark.parametrize(("sr", "expected"), [(22050, True), (16000, False)])
def test_onnx_condition_on_a_given_value_folds(sr: int, expected: bool) -> None:
    """`Greater(sr, 16000)`, as an If on the sample rate reads it, evaluates once sr is given."""
    from onnx import TensorProto, helper

    from convcost.loaders.onnx.graph import Table
    from convcost.loaders.onnx.shapes import apply_inputs
    from convcost.loaders.onnx.values import Evaluator

    graph = helper.make_graph(
        [helper.make_node("Greater", ["sr", "limit"], ["cond"]), helper.make_node("Not", ["cond"], ["low"])], "g",
        [helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("low", TensorProto.BOOL, [])],
        [helper.make_tensor("limit", TensorProto.INT64, [], [16000])])
    model = helper.make_model(graph)
    assert apply_inputs(model, parse_inputs([f"sr={sr}"]), "g") == ({}, {"sr": sr})
    evaluator = Evaluator(model.graph, Table(model.graph), {})
    cond, low = evaluator.value("cond"), evaluator.value("low")
    assert cond is not None and cond.shape == () and bool(cond) is expected
    assert low is not None and low.shape == () and bool(low) is (not expected)
