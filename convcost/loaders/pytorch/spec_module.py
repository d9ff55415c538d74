"""An eager `torch.nn.Module` built from a YAML layer spec, with random weights.

A spec is a model convcost counts without running; this module makes it runnable, so that a spec's
whole-model latency can be measured on the real forward pass (torch, or onnxruntime after an ONNX
export) instead of a sum of its convs. The spec loader's walk resolves every layer (defaults,
'same' pads, `from:`/`inputs:` references, repeats), so the module has exactly the layers and
shapes convcost counts. Asymmetric pads, which torch's conv and pool layers do not take, become
an explicit `F.pad` before the layer (a crop after a transposed conv).

Each layer's module is stored under its spec name with '.' written as '/' (torch forbids dots in
module names): `layers["layer1/0/conv1"]`; `SpecModule.names` maps those keys back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convcost.ir.inputs import Inputs
from convcost.ir.model import Conv
from convcost.loaders.spec import PoolParams, SpecLayer, global_pool_mode, load_spec_layers, pool_params
from convcost.util.registry import Registry

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T: dict[int, type[nn.Module]] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX: dict[int, type[nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG: dict[int, type[nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_GMAX: dict[int, type[nn.Module]] = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}
_GAVG: dict[int, type[nn.Module]] = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def _torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX-order pads (begins..., ends...) -> F.pad's order (last axis first, (begin, end) pairs)."""
    rank = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(rank)):
        out += [pads[axis], pads[rank + axis]]
    return out


def _split(pads: Sequence[int]) -> tuple[tuple[int, ...], list[int]]:
    """Pads -> (the symmetric part torch's layer takes, the rest as ONNX-order pads)."""
    rank = len(pads) // 2
    sym = tuple(min(pads[i], pads[rank + i]) for i in range(rank))
    rest = [pads[i] - sym[i % rank] for i in range(2 * rank)]
    return sym, rest


#: How each spec layer type becomes torch: (resolved layer) -> (module or None, forward on inputs).
BUILDERS: Registry[str, Callable[[SpecLayer], tuple[nn.Module | None, Callable[..., torch.Tensor]]]] = Registry(
    "spec layer type")


@BUILDERS.register("conv")
def _conv(layer: SpecLayer) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    c = layer.conv
    assert isinstance(c, Conv)
    sym, rest = _split(c.padding)
    mod = _CONV[c.rank](c.in_channels, c.out_channels, c.kernel, stride=c.stride, padding=sym,
                        dilation=c.dilation, groups=c.groups, bias=c.bias)
    extra = _torch_pad(rest)

    def run(m: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
        x = F.pad(xs[0], extra) if any(extra) else xs[0]
        return m(x)
    return mod, run


@BUILDERS.register("conv_transpose")
def _conv_transpose(layer: SpecLayer) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    c = layer.conv
    assert isinstance(c, Conv)
    sym, rest = _split(c.padding)
    mod = _CONV_T[c.rank](c.in_channels, c.out_channels, c.kernel, stride=c.stride, padding=sym,
                          output_padding=c.output_padding, dilation=c.dilation, groups=c.groups, bias=c.bias)
    rank = c.rank

    def run(m: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
        y = m(xs[0])
        if any(rest):  # an asymmetric pad of a transposed conv crops its output
            index = [slice(None), slice(None)] + [
                slice(rest[i], y.shape[2 + i] - rest[rank + i]) for i in range(rank)]
            y = y[tuple(index)]
        return y
    return mod, run


@BUILDERS.register("pool")
def _pool(layer: SpecLayer) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    p: PoolParams = pool_params(layer.layer, layer.input_shapes[0], layer.name)
    rank = len(p.kernel)
    sym, rest = _split(p.pads)
    if any(2 * s > k for s, k in zip(sym, p.kernel, strict=True)):  # torch takes pads up to kernel / 2
        sym, rest = (0,) * rank, list(p.pads)
    kind = _MAX if p.mode == "max" else _AVG
    mod = kind[rank](p.kernel, p.stride, sym)
    extra = _torch_pad(rest)
    fill = float("-inf") if p.mode == "max" else 0.0

    def run(m: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
        x = F.pad(xs[0], extra, value=fill) if any(extra) else xs[0]
        return m(x)
    return mod, run


@BUILDERS.register("global_pool")
def _global_pool(layer: SpecLayer) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    rank = len(layer.input_shapes[0]) - 2
    kind = _GMAX if global_pool_mode(layer.layer, layer.name) == "max" else _GAVG
    return kind[rank](1), lambda m, xs: m(xs[0])


@BUILDERS.register("flatten")
def _flatten(layer: SpecLayer) -> tuple[None, Callable[..., torch.Tensor]]:
    return None, lambda m, xs: torch.flatten(xs[0], 1)


@BUILDERS.register("linear")
def _linear(layer: SpecLayer) -> tuple[nn.Module, Callable[..., torch.Tensor]]:
    bias = layer.layer.get("bias", True)
    return nn.Linear(layer.input_shapes[0][-1], layer.layer["out"], bias=bias), lambda m, xs: m(xs[0])


@BUILDERS.register("add")
def _add(layer: SpecLayer) -> tuple[None, Callable[..., torch.Tensor]]:
    def run(m: nn.Module | None, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out
    return None, run


@BUILDERS.register("concat")
def _concat(layer: SpecLayer) -> tuple[None, Callable[..., torch.Tensor]]:
    axis = layer.layer.get("axis", 1)
    return None, lambda m, xs: torch.cat(xs, dim=axis)


class SpecModule(nn.Module):
    """A spec's layers run in order; each reads the outputs of the layers it names."""

    def __init__(self, layers: list[SpecLayer], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.layers = nn.ModuleDict()
        #: ModuleDict key -> spec layer name.
        self.names: dict[str, str] = {}
        self._plan: list[tuple[str, str, tuple[str, ...], Callable[..., torch.Tensor]]] = []
        self._last_use: dict[str, int] = {}
        for index, layer in enumerate(layers):
            module, run = BUILDERS[layer.type](layer)
            key = self._key(layer.name)
            if module is not None:
                self.layers[key] = module
            self.names[key] = layer.name
            self._plan.append((layer.name, key, layer.inputs, run))
            for ref in layer.inputs:
                self._last_use[ref] = index
        self.output_name = layers[-1].name if layers else "input"

    def _key(self, name: str) -> str:
        key = name.replace(".", "/")
        while key in self.names or hasattr(self.layers, key):
            key += "_"
        return key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {"input": x}
        for index, (name, key, inputs, run) in enumerate(self._plan):
            module = self.layers[key] if key in self.layers else None  # noqa: SIM401 (ModuleDict.get is untyped)
            values[name] = run(module, [values[ref] for ref in inputs])
            for ref in inputs:  # free what no later layer reads
                if self._last_use.get(ref) == index and ref != self.output_name:
                    values.pop(ref, None)
        return values[self.output_name]


def spec_module(path: str | Path, inputs: Inputs | None = None) -> SpecModule:
    """The spec at `path` as an eager module with random weights (`inputs`: as `-i` overrides)."""
    model, layers = load_spec_layers(path, inputs)
    return SpecModule(layers, model.inputs["input"])
