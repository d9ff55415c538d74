"""Model.nodes: every op of the model, from each loader, checked against what torch itself runs
(a TorchDispatchMode of the test's own, forward hooks, the exported FX graph), the ONNX file's
own node list, and hand-written lists for a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from convcost.ir.model import Model
from convcost.loaders import load_model
from convcost.loaders.spec import model_from_spec
from tests import archs

SHAPE = (1, 3, 16, 16)


class Net(nn.Module):
    """conv-bn-relu-maxpool, a residual conv + add, global pool, linear, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.relu(self.bn(self.conv(x))))
        y = y + self.conv2(y)
        return torch.softmax(self.fc(torch.flatten(self.gap(y), 1)), -1)


class _Ops(TorchDispatchMode):
    """What torch runs: (op, output shapes) of every op that returns a tensor it computed: not one
    that returns a new tensor over an input's memory (a view); composite ops broken down as torch's
    own FlopCounterMode does."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        with self:
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        out = func(*args, **kwargs)
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        memory = {t.untyped_storage().data_ptr() for t in ins if t.numel()}
        view = any(t.numel() and t.untyped_storage().data_ptr() in memory for t in outs) and \
            not any(o is i for o in outs for i in ins)  # an in-place op returns its input itself
        if outs and not view:
            self.ops.append((func._schema.name, [tuple(t.shape) for t in outs]))
        return out


def _eager() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _check_counted(model: Model) -> None:
    """Each conv and matmul is one node, and the node writes the counted op's output."""
    counted = [n.counted for n in model.nodes if n.counted]
    assert sorted(c for c in counted if c[0] == "conv") == [("conv", i) for i in range(len(model.convs))]
    assert sorted(c for c in counted if c[0] == "matmul") == [("matmul", i) for i in range(len(model.matmuls))]
    for n in model.nodes:
        if n.counted and n.counted[0] == "conv":
            assert n.output_shapes[0] == model.convs[n.counted[1]].output_shape
        elif n.counted:
            mm = model.matmuls[n.counted[1]]
            out = n.output_shapes[0]
            assert out is not None and mm.batch * mm.m * mm.n == torch.Size(out).numel()


def _check_edges(model: Model, constants: set[str]) -> None:
    """Every activation a node reads is a model input or an earlier node's output; constants are
    exactly the weights and buffers."""
    seen = set(model.inputs)
    for n in model.nodes:
        for i, (t, shape) in enumerate(zip(n.inputs, n.input_shapes, strict=True)):
            if i in n.constant:
                assert t in constants, (n.name, t)
            else:
                assert t in seen, (n.name, t)
                assert shape is not None
        seen.update(n.outputs)
    assert len({n.name for n in model.nodes}) == len(model.nodes)


def _dispatched(module: nn.Module) -> list[tuple[str, list[tuple[int, ...]]]]:
    mode, x = _Ops(), torch.zeros(SHAPE)
    with torch.inference_mode(), mode:
        module(x)
    return mode.ops


@pytest.fixture(scope="module")
def torch_ops() -> list[tuple[str, list[tuple[int, ...]]]]:
    return _dispatched(_eager())


@pytest.fixture(scope="module")
def eager() -> Model:
    return load_model("tests.test_nodes:_eager", {"": SHAPE})


def test_eager_capture_records_every_op_torch_runs(eager: Model, torch_ops: list[Any]) -> None:
    assert [n.op for n in eager.nodes] == [op for op, _ in torch_ops]
    assert [list(n.output_shapes) for n in eager.nodes] == [shapes for _, shapes in torch_ops]
    assert {"aten::convolution", "aten::relu", "aten::max_pool2d_with_indices", "aten::add", "aten::addmm",
            "aten::_softmax"} <= {n.op for n in eager.nodes}
    assert all(n.dtype == "float32" for n in eager.nodes if n.op != "aten::empty")
    _check_counted(eager)
    net = _eager()
    _check_edges(eager, {k for k, _ in [*net.named_parameters(), *net.named_buffers()]})


def test_eager_nodes_are_named_by_module_with_hook_shapes(eager: Model) -> None:
    net, outputs = _eager(), {}
    for name, m in net.named_children():
        m.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, tuple(out.shape)))
    net(torch.zeros(SHAPE))
    for module, shape in outputs.items():
        ran = [n for n in eager.nodes if n.name.startswith(f"{module}/") and n.op != "aten::empty"]
        assert ran, module
        assert ran[-1].output_shapes[0] == shape, module
    pool = next(n for n in eager.nodes if n.name == "pool/max_pool2d_with_indices")
    assert pool.attrs["kernel_size"] == [2, 2] and pool.attrs["stride"] == [2, 2]
    assert next(n for n in eager.nodes if n.op == "aten::_softmax").attrs["dim"] == -1
    conv = next(n for n in eager.nodes if n.name == "conv/convolution")
    assert conv.inputs == ("x", "conv.weight", "conv.bias") and conv.constant == {1, 2}


def test_torchscript_nodes_match_eager(eager: Model, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.jit.trace(_eager(), torch.zeros(SHAPE)).save(str(path))
    model = load_model(path, {"": SHAPE})
    ops = _dispatched(torch.jit.load(str(path)))
    assert [(n.op, list(n.output_shapes)) for n in model.nodes] == ops
    # The same ops as eager, but a traced conv calls aten::_convolution.
    assert [n.op.replace("_convolution", "convolution") for n in model.nodes] == [n.op for n in eager.nodes]
    assert [n.name for n in model.nodes if n.counted] == ["conv/_convolution", "conv2/_convolution", "fc/addmm"]
    _check_counted(model)
    _check_edges(model, {k for k, _ in [*model_params(path)]})


def model_params(path: Path) -> list[tuple[str, torch.Tensor]]:
    m = torch.jit.load(str(path))
    return [*m.named_parameters(), *m.named_buffers()]


def _exported_calls(ep: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    """The exported graph's calls that compute: not views, except a reshape of a non-contiguous
    tensor, which copies. (The archive stores a split's parts as its outputs, not as getitem calls.)"""
    def copies(n: torch.fx.Node) -> bool:
        x = n.args[0]
        return isinstance(x, torch.fx.Node) and not x.meta["val"].is_contiguous()

    return [n for n in ep.graph.nodes if isinstance(n.target, torch._ops.OpOverload)
            and (not n.target.is_view or (n.target._opname in ("reshape", "flatten", "contiguous") and copies(n)))]


def test_pt2_nodes_are_the_exported_graph(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    ep = torch.export.export(_eager(), (torch.zeros(SHAPE),))
    torch.export.save(ep, str(path))
    model = load_model(path, {})
    calls = _exported_calls(ep)
    assert [n.op for n in model.nodes] == [f"aten::{n.target._opname}" for n in calls]
    assert [n.output_shapes[0] for n in model.nodes] == [tuple(n.meta["val"].shape) for n in calls]
    assert [n.source for n in model.nodes] == [n.name for n in calls]
    assert "aten::flatten" not in {n.op for n in model.nodes}
    linear = next(n for n in model.nodes if n.op == "aten::linear")
    assert linear.inputs[0] == "adaptive_avg_pool2d" and linear.input_shapes[0] == (1, 8)  # through the flatten
    pool = next(n for n in model.nodes if n.op == "aten::max_pool2d")
    assert pool.attrs["kernel_size"] == [2, 2] and pool.name == "pool/max_pool2d"
    _check_counted(model)
    _check_edges(model, {s.arg.name for s in ep.graph_signature.input_specs if s.kind.name != "USER_INPUT"})


def test_onnx_nodes_are_the_graph_nodes(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    torch.onnx.export(_eager(), (torch.zeros(SHAPE),), str(path), dynamo=False, opset_version=17)
    model = load_model(path, {})
    graph = onnx.load(str(path)).graph
    assert [n.op for n in model.nodes] == [n.op_type for n in graph.node if n.op_type != "Constant"]
    assert [n.op for n in model.nodes if n.counted] == ["Conv", "Conv", "Gemm"]
    _check_counted(model)


SPEC = {
    "input": [1, 3, 32, 32],
    "layers": [
        {"name": "c1", "type": "conv", "out": 8, "kernel": 3, "padding": 1},
        {"name": "p", "type": "pool", "kernel": 2},
        {"name": "blocks", "type": "repeat", "times": 2,
         "layers": [{"name": "a", "type": "conv", "out": 8, "kernel": 3, "padding": "same"}]},
        {"name": "s", "type": "add", "inputs": ["p", "blocks"]},
        {"name": "cat", "type": "concat", "inputs": ["s", "blocks.0.a"]},
        {"name": "up", "type": "conv_transpose", "out": 4, "kernel": 2, "stride": 2, "from": "cat"},
        {"name": "g", "type": "global_pool"},
        {"type": "flatten"},
        {"name": "fc", "type": "linear", "out": 10},
    ],
}


def test_spec_nodes_are_its_layers() -> None:
    model = model_from_spec(SPEC, "net.yaml")
    expected = [  # name, op, inputs, input shapes, output shape (worked out by hand)
        ("c1", "conv", ["input"], [(1, 3, 32, 32)], (1, 8, 32, 32)),
        ("p", "pool", ["c1"], [(1, 8, 32, 32)], (1, 8, 16, 16)),
        ("blocks.0.a", "conv", ["p"], [(1, 8, 16, 16)], (1, 8, 16, 16)),
        ("blocks.1.a", "conv", ["blocks.0.a"], [(1, 8, 16, 16)], (1, 8, 16, 16)),
        ("s", "add", ["p", "blocks.1.a"], [(1, 8, 16, 16)] * 2, (1, 8, 16, 16)),
        ("cat", "concat", ["s", "blocks.0.a"], [(1, 8, 16, 16)] * 2, (1, 16, 16, 16)),
        ("up", "conv_transpose", ["cat"], [(1, 16, 16, 16)], (1, 4, 32, 32)),
        ("g", "global_pool", ["up"], [(1, 4, 32, 32)], (1, 4, 1, 1)),
        ("flatten_7", "flatten", ["g"], [(1, 4, 1, 1)], (1, 4)),
        ("fc", "linear", ["flatten_7"], [(1, 4)], (1, 10)),
    ]
    assert [(n.name, n.op, list(n.inputs), list(n.input_shapes), n.output_shapes[0]) for n in model.nodes] == expected
    assert [n.counted for n in model.nodes] == [("conv", 0), None, ("conv", 1), ("conv", 2), None, None, ("conv", 3),
                                                None, None, ("matmul", 0)]
    assert model.nodes[1].attrs == {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0, 0, 0], "mode": "max"}
    assert model.nodes[5].attrs == {"axis": 1}
    _check_counted(model)
    _check_edges(model, set())


def _shufflenet() -> nn.Module:
    return archs.shufflenet_v2_x1_0().eval()


def test_views_and_inplace_ops_keep_the_graph_connected(tmp_path: Path) -> None:
    """ShuffleNet's channel shuffle (view, transpose, contiguous, chunk) and in-place ReLUs: every
    activation a node reads still comes from the node that computed it, in both torch graphs."""
    net = _shufflenet()
    weights = {k for k, _ in [*net.named_parameters(), *net.named_buffers()]}
    eager = load_model("tests.test_nodes:_shufflenet", {"": (1, 3, 64, 64)})
    mode, x = _Ops(), torch.zeros(1, 3, 64, 64)
    with torch.inference_mode(), mode:
        net(x)
    assert [(n.op, list(n.output_shapes)) for n in eager.nodes] == mode.ops
    assert {"aten::relu_", "aten::clone", "aten::cat"} <= {n.op for n in eager.nodes}
    _check_counted(eager)
    _check_edges(eager, weights)
    path = tmp_path / "shufflenet.pt2"
    ep = torch.export.export(net, (x,))
    torch.export.save(ep, str(path))
    exported = load_model(path, {})
    calls = _exported_calls(ep)
    assert [n.source for n in exported.nodes] == [n.name for n in calls]
    assert sum(n.op == "aten::reshape" for n in exported.nodes) == 16  # the channel shuffles' copies
    _check_counted(exported)
    _check_edges(exported, {s.arg.name for s in ep.graph_signature.input_specs if s.kind.name != "USER_INPUT"})
