"""What torch 2.13's exporters emit, counted exactly: nets that compute pads, resize sizes, split
points, view targets and expand shapes at run time, exported with the legacy exporter at opsets
11-18 and with the dynamo exporter, and with dynamic axes read at another input size.

Each net combines one family of shape patterns (docs/onnx.md lists the ops each one needs). The
numbers come from elsewhere: PyTorch forward hooks (per-conv MACs and output shapes, in call
order), torch's FlopCounterMode (the total) and onnxruntime's real output shape of every conv node.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of
from convcost.ir.model import Model
from convcost.loaders.onnx.loader import load_onnx
from tests import archs

SIZE = (1, 3, 32, 32)
#: Dynamic-axes exports are read at this size (batch 2, a non-square input) and checked against onnxruntime.
OTHER_SIZE = (2, 3, 40, 48)


def tf_same_pad(x: torch.Tensor, k: int, s: int, d: int = 1) -> torch.Tensor:
    """TensorFlow's "same" padding, computed from the input size as YOLO and EfficientNet ports do."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + (k - 1) * d + 1 - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + (k - 1) * d + 1 - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class PadNet(nn.Module):
    """F.pad (constant pads, a fill value), ZeroPad2d, ReflectionPad2d, ReplicationPad2d, TF-same."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.ModuleList([nn.Conv2d(4 if i else 3, 4, 3, stride=2 if i == 5 else 1) for i in range(7)])
        self.zero = nn.ZeroPad2d((1, 2, 0, 1))
        self.reflect = nn.ReflectionPad2d(1)
        self.replicate = nn.ReplicationPad2d((1, 0, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c[0](x)
        x = self.c[1](F.pad(x, (1, 1, 2, 0)))
        x = self.c[2](self.zero(x))
        x = self.c[3](self.reflect(x))
        x = self.c[4](self.replicate(x))
        x = self.c[5](tf_same_pad(x, 3, 2))
        return self.c[6](F.pad(x, (1, 1, 1, 1), value=0.5))


class InterpolateNet(nn.Module):
    """F.interpolate by scale and by size (constant, and another tensor's), nearest and bilinear."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.ModuleList([nn.Conv2d(4 if i else 3, 4, 3, padding=1) for i in range(7)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.c[0](x)
        x = self.c[1](F.interpolate(skip, scale_factor=0.5, mode="nearest"))
        x = self.c[2](F.interpolate(x, size=(12, 20), mode="bilinear", align_corners=False))
        x = self.c[3](F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True) + skip)
        x = self.c[4](F.interpolate(x, scale_factor=1.5, mode="bilinear"))
        x = self.c[5](F.interpolate(x, scale_factor=(2, 1), mode="nearest"))
        return self.c[6](F.interpolate(x, scale_factor=0.75, mode="nearest", recompute_scale_factor=True))


class SplitNet(nn.Module):
    """x.chunk (even and uneven), torch.split by sizes, a slice at a computed row."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 6, 1)
        self.c = nn.Conv2d(2, 2, 3)
        self.d = nn.Conv2d(4, 4, 1)
        self.e = nn.Conv2d(6, 6, 3, groups=3)
        self.f = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        p, q = x.chunk(2, dim=1)
        y = torch.cat([self.a(p), self.b(q)], dim=1)  # 10 channels
        u, v, w = torch.split(y, [2, 4, 4], dim=1)
        g1, g2, g3 = y.chunk(4, dim=1)[:3]  # 3, 3, 3 (and 1)
        h = y.shape[2] // 2
        top, bottom = y[:, :6, :h], y[:, :6, h:]
        return (self.c(u).sum() + self.d(v).sum() + self.d(w).sum() + self.e(top).sum() + self.e(bottom).sum()
                + self.f(g1 + g2 + g3).sum())


class ViewNet(nn.Module):
    """x.view with -1, transpose / permute / reshape round trips, view(x.size(0), -1), flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv1d(16, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)  # the exporters bake other output sizes for the traced input
        self.fc = nn.Linear(8, 10)
        self.fc2 = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        b, c, h, w = x.shape
        y = x.view(b, c, -1).transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        y = self.c2(y.contiguous())
        z = self.c3(y.view(x.size(0), -1).view(b, 2 * c, -1))
        head = self.fc(self.pool(y).view(y.size(0), -1))
        return head + self.fc2(torch.flatten(z, 1).view(b, 4, -1).mean(-1))


class SENet(nn.Module):
    """Squeeze-and-excitation: x * se(x) with expand_as and expand(-1, -1, h, w); torch.where."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(8, 2, 1)
        self.fc2 = nn.Conv2d(2, 8, 1)
        self.lin = nn.Linear(8, 8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))
        x = x * s.expand_as(x)
        b, c, _, _ = x.shape
        t = torch.sigmoid(self.lin(F.adaptive_avg_pool2d(x, 1).view(b, c))).view(b, c, 1, 1)
        x = self.c2(x * t.expand(-1, -1, x.size(2), x.size(3)))
        x = torch.where(x.mean(dim=1, keepdim=True) > 0, x, x * 0.1)
        return self.c3(torch.where(x.sum(dim=(2, 3), keepdim=True) > 0, x, torch.zeros_like(x)))


class DeconvNet(nn.Module):
    """ConvTranspose with output_padding, and with output_size given in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up1(self.c1(x))
        y = self.up2(y, output_size=[2 * y.shape[2], 2 * y.shape[3]])
        return self.c2(y)


NETS: dict[str, type[nn.Module]] = {"pad": PadNet, "interpolate": InterpolateNet, "split": SplitNet,
                                    "view": ViewNet, "se": SENet, "deconv": DeconvNet}
EXPORTERS = [("legacy", 11), ("legacy", 13), ("legacy", 15), ("legacy", 17), ("legacy", 18), ("dynamo", 18)]
CASES = [(net, exporter, opset) for net in NETS for exporter, opset in EXPORTERS]


@dataclass
class Exported:
    module: nn.Module
    x: torch.Tensor
    path: Path
    model: Model


def conv_calls(module: nn.Module, x: torch.Tensor) -> list[tuple[int, tuple[int, ...]]]:
    """(MACs, output shape) of every conv call, in call order (a module called twice appears twice).

    Conv: out.numel() * C_in/g * prod(k). ConvTranspose: in.numel() * C_out/g * prod(k)."""
    calls: list[tuple[int, tuple[int, ...]]] = []

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        assert isinstance(m, nn.modules.conv._ConvNd)
        k = math.prod(m.kernel_size)
        macs = inp[0].numel() * (m.out_channels // m.groups) * k if m.transposed \
            else out.numel() * (m.in_channels // m.groups) * k
        calls.append((macs, tuple(out.shape)))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return calls



def onnxruntime_convs(path: Path, x: np.ndarray) -> list[tuple[int, tuple[int, ...]]]:
    """(MACs, output shape) of every Conv / ConvTranspose node as onnxruntime runs the file, in
    graph order; MACs from onnxruntime's input and output shapes and the stored weight's shape."""
    model = onnx.load(str(path))
    graph = model.graph
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    inputs = {i.name for i in graph.input}
    wanted = list(dict.fromkeys([n.output[0] for n in nodes] + [n.input[0] for n in nodes if n.input[0] not in inputs]))
    declared = {o.name for o in graph.output}
    graph.output.extend(helper.make_empty_tensor_value_info(name) for name in wanted if name not in declared)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    shapes = dict(zip(wanted, (tuple(a.shape) for a in session.run(wanted, {feed: x})), strict=True))
    shapes[feed] = tuple(x.shape)
    out = []
    for n in nodes:
        w = weights[n.input[1]]
        per_element = w[1] * math.prod(w[2:])  # Conv: C_in/g * prod(k); ConvTranspose: C_out/g * prod(k)
        counted = shapes[n.input[0]] if n.op_type == "ConvTranspose" else shapes[n.output[0]]
        out.append((math.prod(counted) * per_element, shapes[n.output[0]]))
    return out


def export(module: nn.Module, x: torch.Tensor, path: Path, exporter: str, opset: int, dynamic: bool = False) -> None:
    kwargs: dict[str, object] = {"dynamo": exporter == "dynamo", "opset_version": opset, "input_names": ["x"]}
    if dynamic and exporter == "legacy":
        kwargs["dynamic_axes"] = {"x": {0: "n", 2: "h", 3: "w"}}
    elif dynamic:
        dim = torch.export.Dim
        kwargs["dynamic_shapes"] = ({0: dim("n", max=64), 2: dim("h", min=16, max=256),
                                     3: dim("w", min=16, max=256)},)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    """Export each (net, exporter, opset) once per module; an export that fails skips its tests."""
    cache: dict[tuple[str, str, int, bool], Exported | str] = {}
    folder = tmp_path_factory.mktemp("exporters")

    def get(net: str, exporter: str, opset: int, dynamic: bool = False) -> Exported:
        key = (net, exporter, opset, dynamic)
        if key not in cache:
            torch.manual_seed(0)
            module = NETS[net]().eval()
            x = torch.randn(*SIZE)
            path = folder / f"{net}_{exporter}{opset}{'_dynamic' if dynamic else ''}.onnx"
            try:
                export(module, x, path, exporter, opset, dynamic)
            except Exception as exc:  # the exporter's own failure: recorded, and the case skipped
                cache[key] = f"torch.onnx.export({exporter}, opset {opset}) fails on {net}: {exc}".splitlines()[0]
            else:
                cache[key] = Exported(module, x, path, load_onnx(path, {"": OTHER_SIZE if dynamic else SIZE}))
        got = cache[key]
        if isinstance(got, str):
            pytest.skip(got)
        return got

    return get


def case_id(case: tuple[str, str, int]) -> str:
    return f"{case[0]}-{case[1]}{case[2]}"


@pytest.mark.parametrize(("net", "exporter", "opset"), CASES, ids=[case_id(c) for c in CASES])
def test_every_conv_counted_as_forward_hooks_count_it(exported: Callable[..., Exported], net: str,
                                                      exporter: str, opset: int) -> None:
    e = exported(net, exporter, opset)
    hooks = conv_calls(e.module, e.x)
    assert not e.model.uncounted and not e.model.warnings, (e.model.uncounted, e.model.warnings)
    assert [cost_of(c).macs for c in e.model.convs] == [macs for macs, _ in hooks]
    assert [c.output_shape for c in e.model.convs] == [shape for _, shape in hooks]
    assert analyze(e.model, Settings(variants=())).totals.macs == archs.flop_counter_macs(e.module, e.x)


@pytest.mark.parametrize(("net", "exporter", "opset"), CASES, ids=[case_id(c) for c in CASES])
def test_conv_shapes_equal_onnxruntime(exported: Callable[..., Exported], net: str, exporter: str, opset: int) -> None:
    e = exported(net, exporter, opset)
    runtime = onnxruntime_convs(e.path, e.x.numpy())
    assert [c.output_shape for c in e.model.convs] == [shape for _, shape in runtime]
    assert [cost_of(c).macs for c in e.model.convs] == [macs for macs, _ in runtime]


DYNAMIC = [(net, exporter, opset) for net in NETS for exporter, opset in (("legacy", 17), ("dynamo", 18))]


@pytest.mark.parametrize(("net", "exporter", "opset"), DYNAMIC, ids=[case_id(c) for c in DYNAMIC])
def test_dynamic_axes_read_at_another_size_equal_onnxruntime(exported: Callable[..., Exported], net: str,
                                                             exporter: str, opset: int) -> None:
    """With dynamic axes every size is computed in the graph from `-i`: here every pattern's
    shape subgraph is folded. onnxruntime is the reference (the legacy exporter bakes Python
    arithmetic on sizes, such as TF-same's ceil and max, into constants, so torch at this size
    can differ from the file)."""
    e = exported(net, exporter, opset, dynamic=True)
    assert not e.model.uncounted and not e.model.warnings, (e.model.uncounted, e.model.warnings)
    runtime = onnxruntime_convs(e.path, np.random.default_rng(0).standard_normal(OTHER_SIZE).astype(np.float32))
    assert [c.output_shape for c in e.model.convs] == [shape for _, shape in runtime]
    assert [cost_of(c).macs for c in e.model.convs] == [macs for macs, _ in runtime]


class Conv2dSame(nn.Conv2d):
    """A conv with TF-same padding from the input size (timm's Conv2dSame, EfficientNet ports)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(tf_same_pad(x, self.kernel_size[0], self.stride[0], self.dilation[0]))


def test_a_long_chain_of_computed_pads_is_counted(tmp_path: Path) -> None:
    """Each conv's pads come from the previous conv's output size: 16 convs in a row need more
    rounds than shape inference runs, unless the folding infers the dims it needs itself."""
    torch.manual_seed(0)
    module = nn.Sequential(*[Conv2dSame(3 if i == 0 else 8, 8, 3, stride=2 if i % 4 == 0 else 1)
                             for i in range(16)]).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "same.onnx"
    export(module, x, path, "legacy", 17)
    model = load_onnx(path)
    assert not model.uncounted and not model.warnings
    assert [cost_of(c).macs for c in model.convs] == [macs for macs, _ in conv_calls(module, x)]
