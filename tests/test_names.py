"""Layer names: one net exported with torch.onnx's dynamo and legacy exporters and traced to
TorchScript gets the same conv and matmul names, its `named_modules()` names, so one budget file
works for all three."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from convcost.ir.model import Model
from convcost.loaders import load_model
from convcost.loaders.onnx.naming import dynamo_path, legacy_path, param_layer
from tests.conftest import invoke

X = (1, 3, 16, 16)


class Block(nn.Module):
    """A ResNet basic block: conv-bn-relu-conv-bn, plus a residual (a downsampling Sequential
    where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.down(x) if self.down is not None else x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 8, 1))
        self.layer2 = nn.Sequential(Block(8, 16, 2))
        self.shared = nn.Conv2d(16, 16, 1)  # called twice
        self.twice = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))  # folded, twice
        self.w = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)  # a functional conv's weight
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        x = self.twice(self.twice(self.shared(self.shared(x))))
        x = F.conv2d(x, self.w, padding=1)
        return self.head(x.mean((2, 3)))


def _net() -> Net:
    torch.manual_seed(0)
    net = Net().eval()
    for m in net.modules():  # BatchNorm statistics that fold into something other than a no-op
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    return net


def _hooked(net: nn.Module) -> list[tuple[str, int]]:
    """(module name, MACs) of every nn.Conv2d call in call order, from forward hooks: named as
    `named_modules()` names them, a repeated call with its call index (`shared#1`)."""
    calls: list[tuple[str, int]] = []
    handles = []
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Conv2d):
            def hook(m: nn.Conv2d, inp: object, out: torch.Tensor, name: str = name) -> None:
                k = m.kernel_size[0] * m.kernel_size[1]
                calls.append((name, out.numel() * m.in_channels // m.groups * k))
            handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        net(torch.zeros(X))
    for h in handles:
        h.remove()
    seen: Counter[str] = Counter()
    named = []
    for name, macs in calls:
        named.append((name if not seen[name] else f"{name}#{seen[name]}", macs))
        seen[name] += 1
    return named


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    folder = tmp_path_factory.mktemp("names")
    net = _net()
    x = torch.randn(X)
    out: dict[str, Model] = {}
    for opset in (11, 17):
        path = folder / f"legacy{opset}.onnx"
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset)
        out[f"legacy{opset}"] = load_model(path, None)
    path = folder / "dynamo.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False)
    out["dynamo"] = load_model(path, None)
    path = folder / "traced.pt"
    torch.jit.save(torch.jit.trace(net, x), str(path))
    out["traced"] = load_model(path, {"": X})
    return out


def test_export_keeps_what_naming_reads(models: dict[str, Model]) -> None:
    """The premise: the dynamo export names its nodes `node_...`, the legacy one `/a/b/Conv`, and
    the legacy export folds BatchNorm into made-up weight names."""
    dynamo = onnx.load(models["dynamo"].source)
    assert all(n.name.startswith("node_") for n in dynamo.graph.node if n.op_type == "Conv")
    legacy = onnx.load(models["legacy17"].source)
    convs = [n for n in legacy.graph.node if n.op_type == "Conv"]
    assert convs[1].name == "/layer1/layer1.0/conv1/Conv" and convs[1].input[1].startswith("onnx::")


def test_the_three_formats_name_convs_alike(models: dict[str, Model]) -> None:
    expected = [*_hooked(_net()), ("w", 16 * 8 * 8 * 16 * 9)]  # the functional conv at 8x8: hand count
    names = [n for n, _ in expected]
    assert names[:3] == ["stem.0", "layer1.0.conv1", "layer1.0.conv2"]
    assert "layer2.0.down.0" in names and names[-5:] == ["shared", "shared#1", "twice.0", "twice.0#1", "w"]
    for key, model in models.items():
        assert [(c.name, c.output_shape[1] * c.output_shape[2] * c.output_shape[3] * c.in_channels
                 // c.groups * c.kernel[0] * c.kernel[1]) for c in model.convs] == expected, key


def test_matmuls_are_named_alike(models: dict[str, Model]) -> None:
    for key, model in models.items():
        assert [(m.name, m.batch * m.m * m.k * m.n) for m in model.matmuls] == [("head", 16 * 10)], key


def test_a_layer_glob_rule_matches_the_same_layers(models: dict[str, Model], tmp_path: Path) -> None:
    budget = tmp_path / "budget.yaml"
    budget.write_text('layers:\n  - {match: "layer1.*", macs: 1G}\n  - {match: "shared*", params: 1}\n')
    seen = {}
    for key, model in models.items():
        args = ["check", model.source, "--budget", str(budget), "-f", "json"]
        if model.format == "torchscript":
            args += ["-i", "1x3x16x16"]
        result = invoke(*args)
        assert result.code == 1, (key, result.err)  # shared* breaks its params limit
        checks = json.loads(result.out)["checks"]
        seen[key] = sorted((c["rule"], c["scope"], c["value"], c["ok"]) for c in checks if c["rule"] != "uncounted")
    first = seen["traced"]
    assert [s for _, s, _, _ in first] == sorted(["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1",
                                                  "layer1.1.conv2", "shared", "shared#1"])
    assert all(v == first for v in seen.values()), seen


# --- the rules, on their own ------------------------------------------------------------------


@pytest.mark.parametrize(("node_name", "path"), [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/layer1/layer1.0/downsample/downsample.0/Conv", "layer1.0.downsample.0"),
    ("/features.0/features.0.0/Conv", "features.0.0"),  # `features` itself never ran
    ("/features.1.0/Conv", "features.1.0"),
    ("/blk/blk/Conv", "blk.blk"),
    ("/conv1/Conv", "conv1"),
    ("/Conv", ""),
    ("Conv_0", ""),
    ("node_Conv_754", ""),
])
def test_legacy_node_names_give_the_module_path(node_name: str, path: str) -> None:
    assert legacy_path(node_name) == path


@pytest.mark.parametrize(("name", "layer"), [
    ("layer1.0.conv1.weight", "layer1.0.conv1"), ("w", "w"), ("blocks.0.proj", "blocks.0.proj"),
    ("onnx::Conv_43", None), ("val_31", None), ("_val_2", None), ("/conv/Constant_output_0", None), ("123", None),
])
def test_parameter_names(name: str, layer: str | None) -> None:
    assert param_layer(name) == layer


def test_dynamo_metadata() -> None:
    node = helper.make_node("Conv", ["x", "val_3"], ["y"], name="node_Conv_7")
    assert dynamo_path(node) == ""
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_1']"
    assert dynamo_path(node) == "layer1.0.conv1"
    entry.value = "['', 'conv2d_7']"
    assert dynamo_path(node) == ""
    entry.value = "__import__('os').system('false')"  # read as a literal, never run
    assert dynamo_path(node) == ""
    entry.key = "namespace"
    entry.value = ": m.Net/blocks: torch.nn.Sequential/blocks.0@1: m.Block/conv2d_3: aten.conv2d.default"
    assert dynamo_path(node) == "blocks.0"


def _tiny(tmp_path: Path, producer: str, weight: str, node_name: str, weight_input: bool = False) -> Model:
    """One 1x1 conv 2 -> 4 channels on 1x2x3x3, written with onnx.helper."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor(weight, TensorProto.FLOAT, [4, 2, 1, 1], [0.5] * 8)
    inputs = [x, helper.make_tensor_value_info(weight, TensorProto.FLOAT, [4, 2, 1, 1])] if weight_input else [x]
    graph = helper.make_graph([helper.make_node("Conv", ["x", weight], ["y"], name=node_name)], "g", inputs, [y],
                              [] if weight_input else [w])
    model = helper.make_model(graph, producer_name=producer, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{producer}.onnx"
    onnx.save(model, path)
    return load_model(path, None)


def test_other_producers_keep_node_names(tmp_path: Path) -> None:
    assert [c.name for c in _tiny(tmp_path, "tf2onnx", "conv.weight", "/a/Conv").convs] == ["/a/Conv"]
    assert [c.name for c in _tiny(tmp_path, "pytorch", "conv.weight", "/a/Conv").convs] == ["conv"]


def test_a_torch_conv_without_parameter_or_module_is_named_as_torchscript_does(tmp_path: Path) -> None:
    assert [c.name for c in _tiny(tmp_path, "pytorch", "w", "/Conv", weight_input=True).convs] == ["convolution"]
    assert [c.name for c in _tiny(tmp_path, "pytorch", "w", "/b/Conv", weight_input=True).convs] == ["b"]
