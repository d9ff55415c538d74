"""Whole-model latency: every op priced, runtimes and their fusions, calibrate and bench in onnxruntime.

Independent sources: hand calculations of the formulas, onnxruntime's own optimized graph and
profiler (which kernels it runs), and the ONNX file's own node list.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from convcost.cost.nodes import family_of, lineage, node_family, node_work
from convcost.ir.model import Node
from convcost.latency.fusions import fuse
from convcost.latency.graph import FamilyFigures, whole_model
from convcost.latency.kinds import KINDS
from convcost.latency.roofline import Roofline
from tests.conftest import assert_one_line_error, invoke, run_cli
from tests.factorize_models import torch_export

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    """conv-BN-ReLU, a residual conv-BN + add + ReLU, a SE-style gate, max pool, an upsample and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        z = torch.relu(self.b2(self.c2(y)) + y)
        z = torch.sigmoid(self.c3(z)) * z
        z = nn.functional.max_pool2d(z, 2)
        z = nn.functional.interpolate(z, scale_factor=2.0, mode="nearest")
        return self.fc(z.mean((2, 3)))


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runtime")
    return torch_export(Block(), torch.randn(1, 3, 32, 32), folder / "block.onnx")


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke-sweep onnxruntime profile (seconds, not minutes: only the command's plumbing)."""
    out = tmp_path_factory.mktemp("profile") / "ort.yaml"
    # in a process of its own: a calibration gives its process one shared thread pool for good
    result = run_cli("calibrate", "--runtime", "onnxruntime", "--sweep", "smoke", "--threads", "1", "-o", str(out))
    assert result.code == 0, result.err
    return out


# --- the formulas ----------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "family"), [
    ("Relu", "elementwise"), ("aten::relu_", "elementwise"), ("aten::add.Tensor", "elementwise"),
    ("Sigmoid", "transcendental"), ("HardSwish", "transcendental"), ("com.microsoft::QuickGelu", "swish"),
    ("Erf", "transcendental"), ("com.microsoft::Gelu", "gelu"), ("gelu", "gelu"),
    ("aten::silu", "swish"), ("Concat", "data_movement"),
    ("aten::cat", "data_movement"), ("MaxPool", "pooling"), ("pool", "pooling"), ("global_pool", "pooling"),
    ("ReduceMean", "reduction"), ("Softmax", "softmax"), ("LayerNormalization", "normalization"),
    ("Resize", "resize"), ("aten::upsample_bilinear2d", "resize_linear"), ("LSTM", "recurrent"), ("Reshape", "view"),
    ("Shape", "shape"), ("NonMaxSuppression", None), ("com.microsoft::SomethingNew", None),
])
def test_every_op_type_has_a_family_or_none(op: str, family: str | None) -> None:
    assert family_of(op) == family


def test_a_resize_that_interpolates_is_priced_apart_from_a_nearest_copy(tmp_path: Path) -> None:
    """torch's exports of F.interpolate: nearest (asymmetric, floor) and bilinear (half_pixel). In
    onnxruntime the bilinear one runs 7-15x slower on the same map, so it has a family of its own;
    a profile without its figures prices it as `resize`."""
    from convcost.loaders import load_model

    class Up(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"),
                    nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear"))

    path = tmp_path / "up.onnx"
    torch.onnx.export(Up(), (torch.randn(1, 8, 4, 4),), str(path), dynamo=False)
    resizes = [n for n in load_model(path).nodes if n.op == "Resize"]
    assert [node_family(n) for n in resizes] == ["resize", "resize_linear"]
    assert lineage("resize_linear") == ["resize_linear", "resize"]
    assert node_work(resizes[1]).bytes == (8 * 16 + 8 * 64 + 4) * 4  # type: ignore[union-attr]  # x, y, scales


def test_elementwise_bytes_are_inputs_and_output_once() -> None:
    add = Node("a", "Add", ("x", "y"), ("z",), ((1, 8, 4, 4), (1, 8, 1, 1)), ((1, 8, 4, 4),), "float32")
    assert node_work(add).bytes == (128 + 8 + 128) * 4  # type: ignore[union-attr]
    assert node_work(add, "float16").bytes == (128 + 8 + 128) * 2  # type: ignore[union-attr]
    assert node_work(Node("r", "Reshape", ("x", "s"), ("y",), ((1, 8), (2,)), ((8,),))).bytes == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(("kernel", "stride", "pads", "side", "reads"), [
    (3, 2, 1, 112, 64 * 112 * 112),  # ResNet's stem pool: overlapping windows read the input once
    (2, 2, 0, 112, 64 * 112 * 112),  # VGG's: windows tile the input
    (2, 3, 0, 9, 64 * 3 * 3 * 4),    # windows that skip elements read only theirs
])
def test_a_pool_reads_its_input_once_and_writes_its_output(kernel: int, stride: int, pads: int, side: int,
                                                           reads: int) -> None:
    """By hand: a 3x3 / 2 max pool with padding 1 on 64x112x112 reads 64 x 112 x 112 elements (not
    the 56 x 56 x 9 of its windows) and writes 64 x 56 x 56."""
    out = (side + 2 * pads - kernel) // stride + 1
    pool = Node("p", "MaxPool", ("x",), ("y",), ((1, 64, side, side),), ((1, 64, out, out),), "float32",
                attrs={"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [pads] * 4})
    assert node_work(pool).bytes == (reads + 64 * out * out) * 4  # type: ignore[union-attr]


def test_lstm_macs_by_hand_from_a_real_export(tmp_path: Path) -> None:
    """nn.LSTM(8, 16), 5 steps, batch 1, bidirectional: per step and direction x @ W (8 x 64) and
    h @ R (16 x 64): 5 x 2 x 64 x (8 + 16) MACs, as 10 kernel calls."""
    from convcost.loaders import load_model

    class Rnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 16, bidirectional=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    path = torch_export(Rnn(), torch.randn(5, 1, 8), tmp_path / "lstm.onnx")
    (lstm,) = [n for n in load_model(path).nodes if n.op == "LSTM"]
    work = node_work(lstm)
    assert work is not None
    assert (work.macs, work.steps) == (5 * 2 * 64 * (8 + 16), 10)


def test_whole_model_formula_by_hand() -> None:
    """Run overhead + a counted conv's own estimate + a Relu's overhead + bytes / (bandwidth x share)."""
    roof = Roofline({"float32": 100.0}, 10.0, dict.fromkeys(("dense", "pointwise"), 0.5) | {
        k: 0.5 for k in ("depthwise", "grouped", "small_channel", "transposed", "volumetric", "volumetric_small",
                         "rectangular", "matmul")}, dict.fromkeys(("dense",), 1.0))
    conv = Node("c", "Conv", ("x", "w"), ("y",), ((1, 4, 8, 8), (4, 4, 3, 3)), ((1, 4, 8, 8),), "float32",
                frozenset({1}), counted=("conv", 0))
    relu = Node("r", "Relu", ("y",), ("z",), ((1, 4, 8, 8),), ((1, 4, 8, 8),), "float32")
    figures = {"run": FamilyFigures(20.0), "elementwise": FamilyFigures(3.0, 0.5)}
    unfused = whole_model([conv, relu], roof, figures, (), "float32", [0.25], [])
    relu_ms = 3e-3 + 2 * 256 * 4 / (10e9 * 0.5) * 1e3
    assert unfused.ms == pytest.approx(0.020 + 0.25 + relu_ms)
    fused = whole_model([conv, relu], roof, figures, ("conv_activation",), "float32", [0.25], [])
    assert fused.ms == pytest.approx(0.020 + 0.25)
    assert [e.fate.by for e in fused.nodes] == [None, "conv_activation"]


def test_a_fusion_needs_the_conv_output_to_have_one_reader() -> None:
    conv = Node("c", "Conv", ("x", "w"), ("y",), ((1, 4, 8, 8), None), ((1, 4, 8, 8),), counted=("conv", 0))
    relu = Node("r", "Relu", ("y",), ("z",), ((1, 4, 8, 8),), ((1, 4, 8, 8),))
    other = Node("o", "Sigmoid", ("y",), ("s",), ((1, 4, 8, 8),), ((1, 4, 8, 8),))
    fates = fuse([conv, relu, other], ("conv_activation",))
    assert fates["r"].runs and fates["o"].runs


@pytest.mark.parametrize(("act", "fusion", "runtime", "with_figures", "passes"), [
    ("HardSwish", "conv_hardswish", "onnxruntime", True, True),
    ("HardSigmoid", "conv_activation", "onnxruntime", True, True),
    ("Relu", "conv_activation", "onnxruntime", True, False),  # applied as the kernel stores each output
    ("HardSwish", "conv_hardswish", "onnxruntime", False, False),  # a profile without the figures
    ("HardSwish", "conv_hardswish", "tensorrt", True, False),  # TensorRT's epilogues apply all of them
])
def test_an_activation_the_conv_kernel_does_not_store_with_is_a_pass_over_its_output(
        act: str, fusion: str, runtime: str, with_figures: bool, passes: bool) -> None:
    """onnxruntime applies a fused Relu as its conv kernels store each output and any other fused
    activation in a pass over the output after the kernel wrote it: by hand, 256 elements read and
    written, 4 bytes each, at 10 GB/s x the profile's activation_pass share 0.4, and no call overhead."""
    from convcost.latency.devices import DeviceProfile

    roof = Roofline({"float32": 100.0}, 10.0, dict.fromkeys(KINDS, 0.5), dict.fromkeys(KINDS, 1.0))
    conv = Node("c", "Conv", ("x", "w"), ("y",), ((1, 4, 8, 8), (4, 4, 3, 3)), ((1, 4, 8, 8),), "float32",
                frozenset({1}), counted=("conv", 0))
    nodes = [conv, Node("a", act, ("y",), ("z",), ((1, 4, 8, 8),), ((1, 4, 8, 8),), "float32")]
    ops = {"run": FamilyFigures(20.0), "elementwise": FamilyFigures(3.0, 0.5)}
    if with_figures:
        ops["activation_pass"] = FamilyFigures(0.0, 0.4)
    p = DeviceProfile("p", "test", roof, "<test>", runtime={"name": runtime}, ops=ops, fusions=(fusion,))
    whole = p.whole(nodes, "float32", [0.25], [])
    assert [e.fate.by for e in whole.nodes] == [None, fusion]
    assert whole.ms == pytest.approx(0.020 + 0.25 + (2 * 256 * 4 / (10e9 * 0.4) * 1e3 if passes else 0.0))


def _silu_nodes(n: int) -> list[Node]:
    shape = (1, n, 1, 1)
    return [Node("s", "Sigmoid", ("x",), ("g",), (shape,), (shape,), "float32"),
            Node("m", "Mul", ("x", "g"), ("y",), (shape, shape), (shape,), "float32")]


def test_silu_is_one_kernel_priced_by_its_own_family() -> None:
    """x * Sigmoid(x): the Mul runs no kernel and the Sigmoid is priced as the QuickGelu onnxruntime
    runs, by the `swish` figures where the profile has them, else by `transcendental`'s (by hand:
    1000 elements read and 1000 written, 4 bytes each, at 10 GB/s x share)."""
    roof = Roofline({"float32": 100.0}, 10.0, {"dense": 0.5}, {"dense": 1.0})
    nodes = _silu_nodes(1000)
    tanh = {"transcendental": FamilyFigures(3.0, 0.5)}
    swish = tanh | {"swish": FamilyFigures(1.0, 0.8)}
    fusions = ("sigmoid_mul",)
    assert whole_model(nodes, roof, tanh, fusions, "float32", [], []).ms == pytest.approx(3e-3 + 8000 / 5e9 * 1e3)
    fused = whole_model(nodes, roof, swish, fusions, "float32", [], [])
    assert fused.ms == pytest.approx(1e-3 + 8000 / 8e9 * 1e3)
    assert [(e.family, e.fate.runs) for e in fused.nodes] == [("swish", True), ("elementwise", False)]
    apart = whole_model(nodes, roof, swish | {"elementwise": FamilyFigures(2.0, 1.0)}, (), "float32", [], [])
    assert apart.ms == pytest.approx(3e-3 + 8000 / 5e9 * 1e3 + 2e-3 + 12000 / 10e9 * 1e3)


def _gelu_nodes(n: int) -> list[Node]:
    """0.5 * x * (1 + Erf(x / sqrt(2))) as torch exports nn.GELU: constants are initializers."""
    shape, one = (1, n, 1, 1), ()
    return [Node("d", "Div", ("x", "r2"), ("s",), (shape, one), (shape,), "float32", frozenset({1})),
            Node("e", "Erf", ("s",), ("f",), (shape,), (shape,), "float32"),
            Node("a", "Add", ("f", "one"), ("g",), (shape, one), (shape,), "float32", frozenset({1})),
            Node("m", "Mul", ("x", "g"), ("h",), (shape, shape), (shape,), "float32"),
            Node("h", "Mul", ("h", "half"), ("y",), (shape, one), (shape,), "float32", frozenset({1}))]


def test_gelu_is_one_kernel_priced_by_its_own_family() -> None:
    """The erf form of GELU: only the Erf runs, as the Gelu kernel onnxruntime runs, priced by the
    `gelu` figures where the profile has them, else by `transcendental`'s (by hand: 1000 elements
    read and 1000 written, 4 bytes each, at 10 GB/s x share); without the fusion, five kernels."""
    roof = Roofline({"float32": 100.0}, 10.0, {"dense": 0.5}, {"dense": 1.0})
    nodes = _gelu_nodes(1000)
    erf = {"transcendental": FamilyFigures(3.0, 0.5), "elementwise": FamilyFigures(2.0, 1.0)}
    gelu = erf | {"gelu": FamilyFigures(1.0, 0.4)}
    assert whole_model(nodes, roof, erf, ("gelu",), "float32", [], []).ms == pytest.approx(3e-3 + 8000 / 5e9 * 1e3)
    fused = whole_model(nodes, roof, gelu, ("gelu",), "float32", [], [])
    assert fused.ms == pytest.approx(1e-3 + 8000 / 4e9 * 1e3)
    assert [(e.family, e.fate.runs) for e in fused.nodes] == [
        ("elementwise", False), ("gelu", True), ("elementwise", False), ("elementwise", False), ("elementwise", False)]
    apart = whole_model(nodes, roof, gelu, (), "float32", [], [])
    elementwise = 8004 + 8004 + 12000 + 8004  # Div, Add, Mul, Mul: each scalar constant is 4 bytes
    assert apart.ms == pytest.approx(4 * 2e-3 + elementwise / 10e9 * 1e3 + 3e-3 + 8000 / 5e9 * 1e3)


@pytest.mark.parametrize(("family", "kernel"), [("swish", "QuickGelu"), ("gelu", "Gelu")])
def test_a_fused_family_probe_times_the_one_kernel_onnxruntime_runs(tmp_path: Path, family: str, kernel: str) -> None:
    """calibrate's `swish` graphs hold x * Sigmoid(x) and its `gelu` graphs GELU's erf form as torch
    exports them; onnxruntime's optimized graph runs each as one kernel (QuickGelu, Gelu), and the
    probe prices that one node: x read and the result written."""
    import onnx

    from convcost.latency.ort_graphs import family_probes

    probes = [p for p in family_probes() if p.family == family]
    assert len(probes) >= 5
    for p in probes[:2]:
        path = tmp_path / f"{family}.onnx"
        onnx.save(p.model, path)
        assert _optimized_kernels(path) == Counter({kernel: 1})
        shape = p.model.graph.input[0].type.tensor_type.shape
        elements = math.prod(d.dim_value for d in shape.dim)
        assert (p.target.op, node_work(p.target).bytes) == (kernel, 2 * elements * 4)  # type: ignore[union-attr]


def _optimized_kernels(path: Path) -> Counter[str]:
    """The kernels onnxruntime runs for a model at threads=1 (its optimized graph), reorders aside."""
    import onnx

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    nodes = onnx.load(so.optimized_model_filepath).graph.node
    return Counter(n.op_type for n in nodes if n.op_type not in ("ReorderInput", "ReorderOutput"))


def test_fusions_leave_the_kernels_onnxruntime_runs(block: Path) -> None:
    """convcost's onnxruntime fusions predict as many running ops as onnxruntime's optimized graph has."""
    from convcost.latency.fusions import RUNTIMES
    from convcost.loaders import load_model

    model = load_model(block)
    fates = fuse(model.nodes, RUNTIMES["onnxruntime"].default_fusions)
    running = [n for n in model.nodes if fates[n.name].runs]
    kernels = _optimized_kernels(block)
    assert len(running) == sum(kernels.values()), (Counter(n.op for n in running), kernels)
    assert sum(1 for n in running if n.op == "Conv") == kernels["Conv"] + kernels.get("FusedConv", 0)


class Attention(nn.Module):
    """Two-head self-attention on 64 tokens: Linear layers on 3-D inputs (MatMul + bias Add, as torch
    exports them) and scaled scores (MatMul, then Mul by a scalar)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(32, 96), nn.Linear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).reshape(1, 64, 3, 2, 16).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * 0.25
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 64, 32)
        return torch.relu(self.proj(y))


def test_matmul_fusions_leave_the_products_onnxruntime_runs(tmp_path: Path) -> None:
    """onnxruntime runs each MatMul + bias Add as one Gemm and the scaled scores as one FusedMatMul:
    its optimized graph has no Add or Mul left, and as many products as convcost's fusions keep."""
    from convcost.latency.fusions import RUNTIMES
    from convcost.loaders import load_model

    path = torch_export(Attention().eval(), torch.randn(1, 64, 32), tmp_path / "attention.onnx")
    model = load_model(path)
    fates = fuse(model.nodes, RUNTIMES["onnxruntime"].default_fusions)
    running = Counter(n.op for n in model.nodes if fates[n.name].runs)
    kernels = _optimized_kernels(path)
    assert kernels["Add"] == kernels["Mul"] == 0 and kernels["Gemm"] == 2 and kernels["FusedMatMul"] == 1
    assert running["Add"] == running["Mul"] == 0
    assert running["MatMul"] == kernels["Gemm"] + kernels["FusedMatMul"] + kernels["MatMul"]
    assert {fates[n.name].by for n in model.nodes if n.op in ("Add", "Mul")} == {"matmul_add", "matmul_scale"}


@pytest.mark.parametrize(("a", "bias", "fused"), [
    ((8, 32), (48,), True), ((8, 32), (1, 48), True), ((8, 32), (8, 1), True), ((2, 8, 32), (48,), True),
    ((2, 8, 32), (1, 48), False),  # a reshaped input takes a 1-D bias only
    ((8, 32), (8, 48, 1), False), ((8, 32), (2, 48), False)])
def test_matmul_add_takes_the_biases_a_gemm_takes(a: tuple[int, ...], bias: tuple[int, ...], fused: bool) -> None:
    """onnxruntime's MatMulAddFusion: a bias (N), or for a 2-D input (1, N), (M, 1) or (M, N)."""
    out = (*a[:-1], 48)
    matmul = Node("m", "MatMul", ("x", "w"), ("y",), (a, (32, 48)), (out,), "float32", frozenset({1}),
                  counted=("matmul", 0))
    add = Node("a", "Add", ("y", "b"), ("z",), (out, bias), (out,), "float32", frozenset({1}))
    fate = fuse([matmul, add], ("matmul_add",))["a"]
    assert fate.runs is not fused
    assert fate.leaves == ("view" if fused and len(a) > 2 else None)  # the reshape back to rank 3


def test_the_reshape_a_gemm_leaves_costs_one_view_call() -> None:
    """A MatMul of a (2, 8, 32) input + bias: the Gemm's estimate, and one reshape call for the Add."""
    roof = Roofline({"float32": 100.0}, 10.0, {"dense": 0.5, "pointwise": 0.5, "matmul": 0.5}, {"dense": 1.0})
    matmul = Node("m", "MatMul", ("x", "w"), ("y",), ((2, 8, 32), (32, 48)), ((2, 8, 48),), "float32",
                  frozenset({1}), counted=("matmul", 0))
    add = Node("a", "Add", ("y", "b"), ("z",), ((2, 8, 48), (48,)), ((2, 8, 48),), "float32", frozenset({1}))
    figures = {"run": FamilyFigures(20.0), "view": FamilyFigures(3.0), "elementwise": FamilyFigures(5.0, 0.5)}
    fused = whole_model([matmul, add], roof, figures, ("matmul_add",), "float32", [], [0.1])
    assert fused.ms == pytest.approx(0.020 + 0.1 + 0.003)
    unfused = whole_model([matmul, add], roof, figures, (), "float32", [], [0.1])
    add_ms = 5e-3 + (2 * 768 + 48) * 4 / (10e9 * 0.5) * 1e3
    assert unfused.ms == pytest.approx(0.020 + 0.1 + add_ms)


def test_matmul_scale_takes_a_scalar_on_either_side_but_not_its_inverse() -> None:
    scores = (1, 2, 8, 8)
    matmul = Node("m", "MatMul", ("q", "k"), ("s",), ((1, 2, 8, 4), (1, 2, 4, 8)), (scores,), counted=("matmul", 0))
    after = Node("x", "Mul", ("s", "c"), ("t",), (scores, ()), (scores,), constant=frozenset({1}))
    inverse = Node("d", "Div", ("c", "s"), ("t",), ((), scores), (scores,), constant=frozenset({0}))
    vector = Node("v", "Mul", ("s", "c"), ("t",), (scores, (8,)), (scores,), constant=frozenset({1}))
    before = Node("b", "Div", ("q0", "c"), ("q",), ((1, 2, 8, 4), ()), ((1, 2, 8, 4),), constant=frozenset({1}))
    assert not fuse([matmul, after], ("matmul_scale",))["x"].runs
    assert fuse([matmul, inverse], ("matmul_scale",))["d"].runs
    assert fuse([matmul, vector], ("matmul_scale",))["v"].runs
    assert fuse([before, matmul], ("matmul_scale",))["b"].host == "m"


# --- JSON ------------------------------------------------------------------------------------


def test_op_types_count_every_node_of_the_file(block: Path, profile: Path) -> None:
    import onnx

    doc = json.loads(invoke("analyze", str(block), "-V", "none", "-d", str(profile), "-f", "json").out)
    expected = Counter(n.op_type for n in onnx.load(str(block)).graph.node if n.op_type != "Constant")
    counts = {op: t["count"] for op, t in doc["op_types"].items()}
    # and the layout reorders onnxruntime adds, which calibrate found on this CPU (or not)
    added = {op: counts.pop(op) for op in ("ReorderInput", "ReorderOutput") if op in counts}
    assert counts == dict(expected)
    assert added == ({"ReorderOutput": _optimized_reorders(block)["ReorderOutput"]} if _nchwc_block() == 16 else {})
    total = sum(t["latency_ms"]["calibrated"] for t in doc["op_types"].values())
    run = yaml.safe_load(profile.read_text())["ops"]["run"]["overhead_us"]["value"] * 1e-3
    assert total + run == pytest.approx(doc["totals"]["latency_ms"]["calibrated"], rel=1e-5)
    assert doc["op_types"]["Relu"]["latency_ms"]["calibrated"] == 0  # fused into the convs
    assert doc["totals"]["unpriced_ops"] == {}


def test_an_op_without_a_formula_is_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="act"), helper.make_node("Det", ["r"], ["d"], name="det")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2])])
    path = tmp_path / "det.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    doc = json.loads(invoke("analyze", str(path), "-d", "rpi4", "-f", "json").out)
    assert doc["totals"]["unpriced_ops"] == {"Det": ["det"]}
    assert doc["op_types"]["Det"]["priced"] is False and doc["op_types"]["Relu"]["priced"] is True
    csv = invoke("analyze", str(path), "-d", "rpi4", "-f", "csv").out
    assert "No latency formula" in csv and "Det x1 (det)" in csv


# --- profiles --------------------------------------------------------------------------------


def _profile(tmp_path: Path, **extra: object) -> Path:
    doc = yaml.safe_load(Path("convcost/latency/profiles/rpi4.yaml").read_text())
    doc.update(extra)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"runtime": {"name": "tvm"}}, "runtime.name: unknown runtime 'tvm' (known: onnxruntime, torch"),
    ({"runtime": "onnxruntime"}, "runtime: expected a mapping"),
    ({"runtime": {"name": "onnxruntime", "thread": 1}}, "runtime: unknown key(s) thread"),
    ({"fusions": "conv_bn"}, "fusions: expected a list of fusion names"),
    ({"fusions": ["conv_bn", "conv_gelu"]}, "fusions: unknown fusion(s) 'conv_gelu'"),
    ({"fusions": [1]}, "fusions: expected a list of fusion names"),
    ({"ops": {"activations": {"overhead_us": {"value": 1, "source": "x"}}}}, "ops: unknown op family activations"),
    ({"ops": {"elementwise": {"overhead_us": {"value": 1}}}}, "ops.elementwise.overhead_us.source: missing"),
])
def test_a_bad_runtime_or_fusion_list_is_exit_2(tmp_path: Path, extra: dict, fragment: str) -> None:
    path = _profile(tmp_path, **extra)
    assert_one_line_error(invoke("analyze", "configs/models/mobilenet_v1.yaml", "-d", str(path)), str(path), fragment)


def test_every_shipped_profile_names_its_runtime() -> None:
    from convcost.latency.devices import load_profile, shipped_profiles

    for name, path in shipped_profiles().items():
        assert load_profile(path).runtime is not None, name


def test_runtime_onnxruntime_without_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    result = invoke("calibrate", "--runtime", "onnxruntime", "--quick")
    assert_one_line_error(result, "onnxruntime", "pip install 'convcost[ort]'")
    assert_one_line_error(invoke("calibrate", "--runtime", "tvm"), "--runtime 'tvm'")


# --- calibrate and bench in onnxruntime -------------------------------------------------------


def checks_of(profile: Path) -> dict:
    """The fusion checks calibrate recorded in a profile."""
    return yaml.safe_load(profile.read_text())["calibration"]["fusion_checks"]


def test_calibrate_onnxruntime_writes_a_physical_profile_with_the_fusions_onnxruntime_applies(profile: Path) -> None:
    from convcost.latency.devices import load_profile

    p = load_profile(profile)
    assert p.runtime is not None and p.runtime["name"] == "onnxruntime" and p.runtime["threads"] == 1
    assert p.runtime["version"] == ort.__version__
    # onnxruntime's CPU provider fuses all three (its optimized graph says so: see the fusion test above)
    assert {"conv_bn", "conv_activation", "conv_add_activation"} <= set(p.fusions)
    assert all(0 < e <= 1 for e in p.roofline.efficiency.values())
    assert all(0 < f.memory_efficiency <= 1 for f in p.ops.values())
    # a fused HardSwish's pass over its conv's output: its kernel less the plain conv's, no overhead
    pass_ms = checks_of(profile)["conv_hardswish"]["pass_ms"]
    if "activation_pass" in p.ops:
        assert p.ops["activation_pass"].overhead_us == 0
        share = 2 * 64 * 56 * 56 * 4 / (p.roofline.bandwidth_gbs * 1e9 * pass_ms * 1e-3)
        assert p.ops["activation_pass"].memory_efficiency == pytest.approx(share, rel=5e-3)
    else:  # noise left the pass no time, or less than the bandwidth allows
        assert pass_ms <= 2 * 64 * 56 * 56 * 4 / (p.roofline.bandwidth_gbs * 1e9) * 1e3 * 1.001
    assert set(p.ops) >= {"run", "elementwise", "pooling", "resize", "recurrent"}
    checks = checks_of(profile)
    assert checks["conv_activation"]["kernels_ab"] < checks["conv_activation"]["kernels_a_b"]
    # the footprint shares, per family and for conv kinds, at the smoke sweep's two footprints
    assert p.footprint is not None and {"elementwise", "conv"} <= set(p.footprint.points)
    for key, points in p.footprint.points.items():
        assert [mb for mb, _ in points] == [8.0, 32.0], key
        assert all(0.1 < share < 10 for _, share in points), (key, points)
        assert all(p.sources[f"footprint.{key}.{mb:g}"].startswith("calibrated on") for mb, _ in points)
    # what weights add inside a chain of two weight-heavy convs (the smoke sweep's one chain), after
    # the conv alone, where they add nothing
    assert p.cold_weights is not None and len(p.cold_weights.points) == 2
    (alone_ms, nothing), (run_ms, us) = p.cold_weights.points
    assert nothing == 0 and 0 < alone_ms < run_ms < 1000 and 0 <= us < 1000
    assert all(p.sources[f"cold_weights.{ms:.3g}"].startswith("calibrated on") for ms in (alone_ms, run_ms))
    assert "alone" in p.sources[f"cold_weights.{alone_ms:.3g}"]


def test_calibrate_names_a_family_whose_probes_took_no_time() -> None:
    """A family whose every probe measured nothing after the profiler's bias gets no figures: the
    calibration names it (calibrate prints it) rather than leaving it out in silence."""
    import subprocess
    import sys

    code = (
        "import convcost.latency.ort_calibrate as oc\n"
        "real = oc._probe_ms\n"
        "oc._probe_ms = lambda s, w, op=None, bias=0.0: 0.0 if op in ('LSTM', 'GRU') else real(s, w, op, bias)\n"
        "cal = oc.calibrate_ort('smoke', 1)\n"
        "print(cal.unfitted, 'recurrent' in cal.families, 'elementwise' in cal.families)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["['recurrent']", "False", "True"], proc.stderr


def test_bench_runs_the_model_in_onnxruntime_and_maps_every_kernel(block: Path, profile: Path) -> None:
    result = run_cli("bench", str(block), "-d", str(profile), "--seconds", "0.5", "-V", "depthwise", "-f", "json",
                     timeout=300)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["totals"]["measured_ms"] > 0 and doc["totals"]["runs"] >= 10
    analyzed = json.loads(invoke("analyze", str(block), "-V", "depthwise", "-d", str(profile), "-f", "json").out)
    assert doc["totals"]["estimated_ms"] == pytest.approx(analyzed["totals"]["latency_ms"]["calibrated"], rel=1e-5)
    assert doc["variants"]["depthwise"]["estimated_ms"] == pytest.approx(
        analyzed["variant_totals"]["depthwise"]["latency_ms"]["calibrated"], rel=1e-5)
    # one kernel per node of onnxruntime's optimized graph, each with the model nodes it computes
    kernels = _optimized_kernels(block)
    assert len(doc["kernels"]) == sum(kernels.values())
    covered = [n for k in doc["kernels"] for n in k["nodes"]]
    convs = [n for n in covered if n.endswith("Conv")]
    assert len(convs) == len(set(convs)) == 3
    variant = doc["variants"]["depthwise"]  # timed in turns with the original: the speed-up is theirs
    assert variant["speedup_measured"] == pytest.approx(variant["original_measured_ms"] / variant["measured_ms"],
                                                        rel=1e-5)
    fused = next(k for k in doc["kernels"] if "/c2/Conv" in k["nodes"])
    assert "/Add" in fused["nodes"] and "/Relu_1" in fused["nodes"]  # the residual add and its ReLU
    assert all(math.isfinite(k["estimated_ms"]) for k in doc["kernels"])


def test_bench_with_an_onnxruntime_profile_refuses_a_spec(profile: Path) -> None:
    result = invoke("bench", "configs/models/mobilenet_v1.yaml", "-d", str(profile), "--seconds", "0")
    assert_one_line_error(result, "describes onnxruntime, which runs ONNX models")


def test_random_inputs_reach_the_analysed_shapes(tmp_path: Path) -> None:
    from convcost.latency.ort_run import make_session

    path = torch_export(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 9, 9), tmp_path / "c.onnx")
    s = make_session(path.read_bytes(), 1)
    assert {k: v.shape for k, v in s.feeds.items()} == {"input.1": (1, 3, 9, 9)} or \
        all(v.shape == (1, 3, 9, 9) for v in s.feeds.values())
    assert np.all(np.isfinite(s.run()[0]))  # type: ignore[index]


def test_a_burst_samples_its_runs_after_the_settling_ones(tmp_path: Path) -> None:
    """Bursts of 3 with 1 settling run: 2 wall samples per round, and the node medians come from the
    profiler events of exactly those runs (the warm-up and settling runs' events are left out)."""
    import statistics

    from convcost.latency.ort_run import OrtTiming, make_session, node_medians, time_sessions

    path = torch_export(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 9, 9), tmp_path / "c.onnx")
    s = make_session(path.read_bytes(), 1, profiling=True)
    timed = time_sessions([s], OrtTiming(warmup=2, repeats=4, burst=3, settle=1))
    assert timed.rounds == 4 and len(timed.ms[0]) == 8
    assert s.sampled == [False, False] + [False, True, True] * 4
    name, durs = next((n, d) for n, d in s.kernel_ms().items() if s.ops[n] in ("Conv", "FusedConv"))
    assert len(durs) == 14
    kept = [d for i, d in enumerate(durs) if i >= 2 and (i - 2) % 3 != 0]
    assert node_medians(s, 2)[name] == statistics.median(kept)


def test_calibrate_and_the_footprint_sample_the_same_run_of_a_visit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The footprint shares are times inside a model over the sweep's: the 'alone' reference must be
    the run of each visit the sweep samples (ort_run.SAMPLED_RUN), for every sweep size."""
    from convcost.latency import ort_footprint
    from convcost.latency.ort_calibrate import ORT_SWEEPS
    from convcost.latency.ort_run import SAMPLED_RUN

    for sweep in ORT_SWEEPS.values():
        visit = sweep.timing.burst
        assert [j >= sweep.timing.settle for j in range(visit)] == [j == SAMPLED_RUN for j in range(visit)]

    class Fake:
        """A session of any probe's op, which takes 1 ms on each visit's sampled run and 5 ms on the others."""

        def __init__(self, probe_op: str) -> None:
            self.runs = 0
            self.ops = {"n": probe_op}

        def run(self) -> None:
            self.runs += 1

        def kernel_ms(self) -> dict[str, list[float]]:
            at = [(i - ort_footprint.WARMUP) % (SAMPLED_RUN + 1) for i in range(self.runs)]
            return {"n": [1.0 if i >= ort_footprint.WARMUP and a == SAMPLED_RUN else 5.0
                          for i, a in enumerate(at)]}

    probes = ort_footprint.footprint_probes()
    op_of = {id(g): p.op for p in probes for g in (p.alone, p.produced)}
    monkeypatch.setattr(ort_footprint, "footprint_probes", lambda: probes)
    monkeypatch.setattr(ort_footprint, "make_session", lambda model, *a, **k: Fake(op_of.get(id(model), "Relu")))
    monkeypatch.setattr(ort_footprint, "_runs_op", lambda *a: True)
    times = ort_footprint.measure_footprint(1, 5, (8.0,))
    assert times.us and all(us["sweep"] == 1000.0 for us in times.us.values())
    monkeypatch.setattr(ort_footprint, "make_session", lambda model, *a, **k: Fake("Conv"))
    cold = ort_footprint.measure_cold_weights(1, 5, lengths=(2,), conv=(8, 5), sizes=(8.0,))
    assert cold.us["2"]["sweep"] == 1000.0


def test_cold_weights_time_a_conv_inside_chains_of_its_kind() -> None:
    """Two chains of 32-channel 3x3 convs on 7x7: the longer runs longer; each point says what a MB of
    weights adds there, never less than nothing."""
    from convcost.latency.ort_footprint import measure_cold_weights

    cold = measure_cold_weights(1, 5, lengths=(2, 4), conv=(32, 7), sizes=(8.0,))
    assert cold.weight_mb == pytest.approx(32 * 32 * 9 * 4 / 1e6)
    assert list(cold.us) == ["1", "2", "4"]
    assert cold.us["1"]["run"] < cold.us["2"]["run"] < cold.us["4"]["run"]
    assert [ms for ms, _ in cold.points] == sorted(ms for ms, _ in cold.points) and len(cold.points) == 3
    # the conv alone, as the sweep times it: a chain of one whose weights add nothing
    assert cold.points[0] == (pytest.approx(cold.us["1"]["sweep"] / 1e3), 0.0)
    assert all(us >= 0 for _, us in cold.points)


def test_the_layout_probe_times_the_reorder_onnxruntime_inserts() -> None:
    """calibrate's `layout` graphs are a 1x1 conv read by a ReduceMean: onnxruntime runs the conv
    blocked and inserts one ReorderOutput for the ReduceMean. The probe prices that copy (the map
    read and written) and calibrate times that kernel, not the conv."""
    from convcost.latency.ort_calibrate import _probe_ms
    from convcost.latency.ort_graphs import family_probes
    from convcost.latency.ort_run import make_session, node_medians

    if _nchwc_block() is None:
        pytest.skip("this CPU's onnxruntime has no blocked layout")
    probe = next(p for p in family_probes() if p.family == "layout" and p.name.endswith("64x56x56"))
    assert (probe.target.op, node_work(probe.target).bytes) == ("ReorderOutput", 2 * 64 * 56 * 56 * 4)  # type: ignore[union-attr]
    session = make_session(probe.model, 1, profiling=True)
    for _ in range(4):
        session.run()
    medians = node_medians(session, 1)  # reads the profile, and with it the kernels' op types
    (copy,) = [name for name, op in session.ops.items() if op == "ReorderOutput"]
    assert 0 < _probe_ms(session, 1, "ReorderOutput") == pytest.approx(medians[copy])


def test_the_resize_probe_times_the_kernel_a_decoder_runs() -> None:
    """The linear resize probe upsamples a conv's output: x86 builds run it on the blocked layout,
    where the profiler names the kernel Upsample. The probe's time is that kernel's, not the conv's
    or the reorders'."""
    from convcost.latency.ort_calibrate import _probe_ms
    from convcost.latency.ort_graphs import family_probes
    from convcost.latency.ort_run import make_session, node_medians

    probe = next(p for p in family_probes() if p.family == "resize_linear" and p.name.endswith("64x56x56"))
    s = make_session(probe.model, 1, profiling=True)
    for _ in range(4):
        s.run()
    medians = node_medians(s, 1)
    resize = [ms for name, ms in medians.items() if s.ops[name] in ("Resize", "Upsample")]
    assert len(resize) == 1 and any(op == "Conv" for op in s.ops.values())
    assert _probe_ms(s, 1, probe.target.op) == pytest.approx(resize[0])


def test_an_efficiency_above_1_raises_the_peak_and_keeps_every_estimate() -> None:
    """A fit that puts a kind above the best rate the sweep saw: the peak was not the peak. Raising it
    to the rate the fit implies keeps each share at most 1 and every estimate as it was."""
    from dataclasses import replace

    from convcost.ir.shapes import make_conv
    from convcost.latency.fit import physical
    from convcost.latency.kinds import KINDS
    from convcost.latency.roofline import estimate

    roof = Roofline({"float32": 100.0}, 10.0, dict.fromkeys(KINDS, 0.5) | {"transposed": 2.5},
                    dict.fromkeys(KINDS, 5.0), memory_efficiency={"depthwise": 1.6})
    fixed, peak, bandwidth, raised = physical(roof, 100.0, 10.0)
    assert (peak, bandwidth, raised) == (250.0, 16.0, {"peak": 2.5, "bandwidth": 1.6})
    assert max(fixed.efficiency.values()) == 1.0 and max(fixed.memory_efficiency.values()) == 1.0
    assert fixed.memory_share("dense") == pytest.approx(1 / 1.6)  # it moved its bytes at the old bandwidth
    ops = [make_conv("t", "ConvTranspose", (1, 16, 8, 8), 8, (2, 2), (2, 2), (0, 0, 0, 0)),
           make_conv("d", "Conv", (1, 32, 56, 56), 32, (3, 3), (1, 1), (1, 1, 1, 1), groups=32),
           make_conv("c", "Conv", (1, 32, 28, 28), 64, (3, 3), (1, 1), (1, 1, 1, 1))]
    for op in ops:
        assert estimate(fixed, op, "float32").ms == pytest.approx(estimate(roof, op, "float32").ms)
    assert physical(replace(roof, efficiency=dict.fromkeys(KINDS, 0.5)), 100.0, 10.0)[3] == {"bandwidth": 1.6}


class LayoutNet(nn.Module):
    """Where onnxruntime's blocked layout meets ops that read NCHW: a stem conv on 3 channels, a
    3-group 1x1 conv with 8 channels per group, a squeeze-excite gate (broadcast Mul), a channel
    shuffle, a conv, pooling and a depthwise conv that stay blocked, and the model's output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.grouped = nn.Conv2d(3, 24, 3, padding=1), nn.Conv2d(24, 24, 1, groups=3)
        self.squeeze, self.excite = nn.Conv2d(24, 8, 1), nn.Conv2d(8, 24, 1)
        self.conv, self.depthwise = nn.Conv2d(24, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1, groups=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.grouped(torch.relu(self.stem(x))))
        gate = nn.functional.hardsigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        x = x * gate
        x = x.reshape(1, 3, 8, 16, 16).transpose(1, 2).reshape(1, 24, 16, 16)
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.depthwise(x)


def _nchwc_block() -> int | None:
    """The channel block onnxruntime's NCHWc layout uses on this CPU (None: it has no such layout):
    a 2-group conv with 8 channels per group runs blocked only with blocks of 8."""
    import onnx
    from onnx import helper, numpy_helper

    def reorders(groups: int) -> int:
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], group=groups)], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16, 8, 8])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 6, 6])],
            [numpy_helper.from_array(np.ones((16, 16 // groups, 3, 3), np.float32), "w")]),
            opset_imports=[helper.make_opsetid("", 17)])
        return sum(_optimized_reorders(model.SerializeToString()).values())

    if not reorders(1):
        return None
    return 8 if reorders(2) else 16


def _optimized_reorders(model: bytes | Path) -> Counter[str]:
    import onnx

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                             providers=["CPUExecutionProvider"])
        nodes = onnx.load(so.optimized_model_filepath).graph.node
    return Counter(n.op_type for n in nodes if n.op_type in ("ReorderInput", "ReorderOutput"))


def test_layout_reorders_are_the_ones_onnxruntime_inserts(tmp_path: Path) -> None:
    """convcost's NCHWc layout puts a ReorderInput / ReorderOutput where onnxruntime's optimized graph
    has one; each is priced as a copy of its tensor by the data-movement figures."""
    from convcost.latency.fusions import NCHWC, RUNTIMES
    from convcost.latency.layouts import BLOCK, reorders
    from convcost.loaders import load_model

    if _nchwc_block() != BLOCK:
        pytest.skip(f"this CPU's onnxruntime does not block channels by {BLOCK}")
    path = torch_export(LayoutNet().eval(), torch.randn(1, 3, 16, 16), tmp_path / "layout.onnx")
    model = load_model(path)
    fusions = (*RUNTIMES["onnxruntime"].default_fusions, NCHWC)
    added = reorders(model.nodes, fuse(model.nodes, fusions))
    real = _optimized_reorders(path)
    assert Counter(n.op for n in added) == real and sum(real.values()) >= 6, real
    roof = Roofline({"float32": 100.0}, 10.0, {"pointwise": 0.5}, {"pointwise": 1.0})
    figures = {"data_movement": FamilyFigures(3.0, 0.5)}
    with_layout = whole_model(model.nodes, roof, figures, fusions, "float32", [0.0] * len(model.convs), [])
    without = whole_model(model.nodes, roof, figures, fusions[:-1], "float32", [0.0] * len(model.convs), [])
    by_hand = sum(3e-3 + 2 * math.prod(n.input_shapes[0]) * 4 / (10e9 * 0.5) * 1e3 for n in added)
    assert with_layout.ms - without.ms == pytest.approx(by_hand)


def test_a_swish_gate_maps_to_the_quickgelu_kernel_not_the_conv() -> None:
    """onnxruntime runs conv -> x * Sigmoid(x) as a conv and a QuickGelu kernel: bench compares the
    Sigmoid's and the Mul's estimate with the QuickGelu kernel, the conv's with the conv kernel (a
    plain activation after a conv still joins the conv kernel)."""
    from convcost.analysis.ort_bench import kernel_groups

    shape = (1, 8, 4, 4)
    conv = Node("c", "Conv", ("in", "w"), ("x",), (shape, None), (shape,), constant=frozenset({1}),
                counted=("conv", 0))
    gate = Node("s", "Sigmoid", ("x",), ("g",), (shape,), (shape,))
    mul = Node("m", "Mul", ("x", "g"), ("y",), (shape, shape), (shape,))
    conv2 = Node("c2", "Conv", ("y", "w2"), ("z",), (shape, None), (shape,), constant=frozenset({1}),
                 counted=("conv", 1))
    relu = Node("r", "Relu", ("z",), ("out",), (shape,), (shape,))
    optimized = [("x_nchwc", "Conv", ["x_nchwc"]), ("m/QuickGeluFusion/", "QuickGelu", ["y"]),
                 ("out_nchwc", "Conv", ["out_nchwc"])]
    assert kernel_groups([conv, gate, mul, conv2, relu], optimized) == {
        "x_nchwc": ["c"], "m/QuickGeluFusion/": ["s", "m"], "out_nchwc": ["c2", "r"]}


@pytest.mark.parametrize("channels", [12, 18, 20, 59, 64, 77])
def test_a_conv_runs_blocked_where_onnxruntime_blocks_it(channels: int) -> None:
    """A conv reading 16 or more channels runs on onnxruntime's blocked kernels only when the count is a
    multiple of 4 (kinds.ALIGN); otherwise it runs in NCHW between two reorders. The layout (and the
    copies) convcost predicts is the one in onnxruntime's optimized graph."""
    import onnx
    from onnx import helper, numpy_helper

    from convcost.latency.fusions import NCHWC, RUNTIMES
    from convcost.latency.layouts import BLOCK, blocked_layout, reorders
    from convcost.loaders import load_model

    if _nchwc_block() != BLOCK:
        pytest.skip(f"this CPU's onnxruntime does not block channels by {BLOCK}")
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), f"w{i}")
               for i, s in enumerate([(channels, 32, 3, 3), (32, channels, 1, 3), (32, 32, 3, 3)])]
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1], name="c0"),
         helper.make_node("Conv", ["a", "w1"], ["b"], pads=[0, 1, 0, 1], name="c1"),
         helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1], name="c2")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 14, 14])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 32, 14, 14])], weights),
        opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, path)
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        optimized = onnx.load(so.optimized_model_filepath).graph.node
        loaded = load_model(path)
        real = _optimized_reorders(path)
    second = [n for n in optimized if n.op_type == "Conv"][1]  # in the order of the chain
    assert blocked_layout(channels, 32, 1)[0] == (second.domain == "com.microsoft.nchwc")
    assert blocked_layout(channels, 32, 1)[0] == (channels < BLOCK or channels % 4 == 0)
    fusions = (*RUNTIMES["onnxruntime"].default_fusions, NCHWC)
    added = Counter(n.op for n in reorders(loaded.nodes, fuse(loaded.nodes, fusions)))
    assert added == real



@pytest.mark.parametrize("channels", [56, 58, 60, 62, 116])
def test_a_depthwise_conv_runs_blocked_unless_its_channels_are_no_multiple_of_4(channels: int) -> None:
    """onnxruntime's optimized graph: a depthwise conv runs on the blocked (NCHWc) kernels when its
    channel count is a multiple of 4 and plainly (group by group) otherwise; the kind says which."""
    import onnx
    from onnx import helper, numpy_helper

    from convcost.ir.shapes import make_conv
    from convcost.latency.kinds import op_kind

    if _nchwc_block() is None:
        pytest.skip("this CPU's onnxruntime has no blocked layout")
    weight = numpy_helper.from_array(np.ones((channels, 1, 3, 3), np.float32), "w")
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=channels, pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, channels, 28, 28])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, channels, 28, 28])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        (conv,) = [n for n in onnx.load(so.optimized_model_filepath).graph.node if n.op_type == "Conv"]
    dw = make_conv("dw", "Conv", (1, channels, 28, 28), channels, (3, 3), (1, 1), (1, 1, 1, 1), groups=channels)
    assert (conv.domain == "com.microsoft.nchwc") == (op_kind(dw) != "depthwise_unblocked")


def test_a_variants_speed_up_comes_from_the_runs_taken_in_turns_with_the_original() -> None:
    """The original measured alone at 10.0 ms, then in turns with its variant at 11.0 ms (the host
    slowed down) against the variant's 10.5 ms: the variant is 11.0 / 10.5 = 1.048x faster, as the
    estimate (10.0 -> 9.5 ms, 1.053x) says, though 10.5 ms is more than the 10.0 measured apart."""
    from convcost.analysis.ort_bench import OrtBenchResult, WholeBench

    whole = WholeBench("m", 10.0, 10.0, None, 100)
    variant = WholeBench("depthwise", 10.5, 9.5, None, 100, reference_ms=11.0)
    result = OrtBenchResult(None, None, 1, whole, [], [], {"depthwise": variant})  # type: ignore[arg-type]
    assert result.speedup_measured(variant) == pytest.approx(11.0 / 10.5)
    assert result.speedup_estimated(variant) == pytest.approx(10.0 / 9.5)
    assert result.sign_right(variant) and result.summary()["signs_right"] == 1
    apart = WholeBench("depthwise", 10.5, 9.5, None, 100)  # no runs in turns: against the original's own
    assert result.speedup_measured(apart) == pytest.approx(10.0 / 10.5) and not result.sign_right(apart)
