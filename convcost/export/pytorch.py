"""Factorize a PyTorch model: each chosen `nn.ConvNd` becomes an `nn.Sequential` of its stages.

    from convcost.export.pytorch import factorize_module
    model = factorize_module(model, "plan.yaml")                 # a plan from `convcost plan`
    model = factorize_module(model, variant="spatial", rank="auto", tol=0.05, skip=["conv1"])
    # ... fine-tune `model` as usual: the stages are ordinary nn.Conv2d layers

The stages are ordinary `nn.Conv1d/2d/3d` (and `nn.ConvTranspose*d`) modules, named `0`, `1`, ...
inside the Sequential that takes the conv's place (`layer1.0.conv1` -> `layer1.0.conv1.0`,
`layer1.0.conv1.1`), carrying the SVD-optimal weights behind `analyze`'s `approx_error` (the
same `analysis.replacing.build` as `convcost apply`), the conv's bias on the last stage, its
dtype, device and `padding_mode`, and `requires_grad` set, ready for training. Layer names are
`named_modules()` names, as the TorchScript and module:factory loaders and torch.onnx exports name
them, so a plan made on any of those applies here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.analysis.replacing import Choice, Kept, Replacement, build
from convcost.ir.model import Conv
from convcost.ir.shapes import make_conv
from convcost.util.errors import InputError, UsageError
from convcost.variants import VARIANTS, VariantOptions

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Factorized:
    """What `factorize_module(..., report=True)` also returns: each conv replaced, and each kept with why."""

    replaced: list[Replacement]
    kept: list[Kept]


def conv_of(name: str, module: nn.Module, input_shape: tuple[int, ...] | None = None) -> Conv:
    """The IR conv an `nn.ConvNd` / `nn.ConvTransposeNd` computes (its weight attached).

    Without `input_shape` a nominal one is used: the stages' attributes do not depend on it."""
    from torch import nn

    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    assert isinstance(module, nn.modules.conv._ConvNd)
    rank = len(module.kernel_size)
    kernel, stride, dilation = tuple(module.kernel_size), tuple(module.stride), tuple(module.dilation)
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pads: tuple[int, ...] = (0,) * (2 * rank)
        else:  # 'same' (stride 1): torch puts the odd pixel at the end
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            pads = tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
    else:
        pads = tuple(module.padding) * 2
    c_in = module.in_channels
    if input_shape is None:
        spatial = tuple(max((k - 1) * d + 1, 1) + s for k, d, s in zip(kernel, dilation, stride, strict=True))
        input_shape = (1, c_in, *spatial)
    out_pad = tuple(module.output_padding) if transposed else None
    conv = make_conv(name, "ConvTranspose" if transposed else "Conv", input_shape, module.out_channels, kernel,
                     stride, pads, dilation, module.groups, module.bias is not None, out_pad)
    weight = module.weight
    return conv.with_changes(weight=lambda: weight.detach().cpu().double().numpy())


def _choices(names: list[str], plan: str | Path | Mapping[str, Any] | None, variant: str | None,
             options: VariantOptions, only: Iterable[str], skip: Iterable[str]) -> tuple[dict[str, Choice], bool]:
    from fnmatch import fnmatchcase

    if plan is not None:
        if variant is not None:
            raise UsageError("factorize_module: give a plan or a variant, not both")
        from convcost.analysis.planfile import PlanFile, parse_entry, read_plan

        if isinstance(plan, Mapping):
            source = "plan"
            layers = plan.get("layers", plan)
            parsed = PlanFile(source)
            for key, value in layers.items():
                parsed.layers[str(key)] = parse_entry(str(key), value, source)
        else:
            parsed = read_plan(plan)
        missing = [n for n in parsed.layers if n not in names]
        if missing:
            raise InputError(f"layer {missing[0]!r} is not a conv of the module (its convs: "
                             f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''})", parsed.source)
        choices: dict[str, Choice] = {}
        for name, entry in parsed.layers.items():
            if entry is not None:
                values = dict(entry[1])
                permute = bool(values.pop("permute", False))
                choices[name] = Choice(entry[0], VariantOptions(**values), permute=permute)
        return choices, True
    if variant not in VARIANTS:
        raise UsageError(f"factorize_module: variant {variant!r}: choose one of {', '.join(VARIANTS)} (or a plan)")
    only, skip = list(only), list(skip)
    chosen = [n for n in names if (not only or any(fnmatchcase(n, g) for g in only))
              and not any(fnmatchcase(n, g) for g in skip)]
    assert variant is not None
    return {n: Choice(variant, options) for n in chosen}, False


def _gather(order: Any) -> nn.Module:
    """A module taking the channels (dim 1) in `order`: the grouped variant's permutation."""
    import torch
    from torch import nn

    class Gather(nn.Module):
        def __init__(self, index: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("index", index)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            index: torch.Tensor = self.index  # type: ignore[assignment]
            return x.index_select(1, index)

    return Gather(torch.as_tensor(order, dtype=torch.long))


def stage_module(stage: Conv, weight: Any, original: Any, bias: Any | None) -> nn.Module:
    """One stage as an `nn.ConvNd` with `weight` (op layout, numpy) and `bias` (a tensor or None)."""
    import torch
    from torch import nn

    rank = stage.rank
    begin, end = stage.padding[:rank], stage.padding[rank:]
    same = isinstance(original.padding, str) and original.padding == "same"
    if begin != end and not same:
        raise ValueError(f"stage {stage.name}: asymmetric padding {list(stage.padding)} has no nn.Conv form")
    ref = original.weight
    kwargs: dict[str, Any] = {"kernel_size": stage.kernel, "stride": stage.stride, "dilation": stage.dilation,
                              "groups": stage.groups, "bias": bias is not None, "device": ref.device,
                              "dtype": ref.dtype}
    layer: Any
    if stage.op == "ConvTranspose":
        transposed: Any = [nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d][rank - 1]
        layer = transposed(stage.in_channels, stage.out_channels, padding=begin,
                           output_padding=stage.output_padding, **kwargs)
    else:
        plain: Any = [nn.Conv1d, nn.Conv2d, nn.Conv3d][rank - 1]
        padding: Any = "same" if same and all(s == 1 for s in stage.stride) else begin
        layer = plain(stage.in_channels, stage.out_channels, padding=padding,
                      padding_mode=getattr(original, "padding_mode", "zeros"), **kwargs)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=ref.dtype))
        if bias is not None:
            layer.bias.copy_(bias)
    module: nn.Module = layer
    return module


def replacement_module(r: Replacement, original: Any) -> nn.Module:
    """The `nn.Sequential` that replaces `original`: its stages, in order (and the permutation)."""
    import numpy as np
    from torch import nn

    bias = original.bias.detach() if original.bias is not None else None
    if r.perm_out is not None and bias is not None:
        bias = bias[np.asarray(r.perm_out)]
    layers: list[nn.Module] = []
    if r.perm_in is not None:
        layers.append(_gather(r.perm_in))
    last = len(r.stages) - 1
    for i, (stage, weight) in enumerate(zip(r.plan.layers, r.stages, strict=True)):
        layers.append(stage_module(stage, weight, original, bias if i == last else None))
    if r.perm_out is not None:
        layers.append(_gather(np.argsort(r.perm_out)))
    return nn.Sequential(*layers)


def factorize_module(module: nn.Module, plan: str | Path | Mapping[str, Any] | None = None, *,
                     variant: str | None = None, rank: int | str | None = None, depth_multiplier: int = 1,
                     groups: int = 4, tol: float = 0.05, only: Iterable[str] = (), skip: Iterable[str] = (),
                     permute: bool = False, inplace: bool = False, report: bool = False) -> Any:
    """`module` with each chosen conv replaced by an `nn.Sequential` of its variant's stages.

    Choose with `plan` (a PLAN.yaml path, or its `layers` mapping: name -> "keep" or
    {"variant": ..., "rank" | "depth_multiplier" | "groups": N}) or with `variant` plus its options
    for every conv `only` / `skip` (globs) select; `rank="auto"` picks each layer's smallest rank
    within `tol`. A copy is returned unless `inplace`; with `report`, also a `Factorized` listing
    each replacement (its weight error) and each conv kept with why. A plan naming a layer that is
    not a conv, or a size that makes a stage invalid, raises `InputError`.
    """
    from torch import nn

    target = module if inplace else copy.deepcopy(module)
    convs = {name: m for name, m in target.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    auto = isinstance(rank, str) and rank.strip().lower() == "auto"
    if isinstance(rank, str) and not auto:
        raise UsageError(f"factorize_module: rank {rank!r}: expected an int or 'auto'")
    options = VariantOptions(rank=None if auto or rank is None else int(rank), depth_multiplier=depth_multiplier,
                             groups=groups)
    choices, strict = _choices(list(convs), plan, variant, options, only, skip)
    replaced: list[Replacement] = []
    kept: list[Kept] = []
    autorank = None
    if auto:
        from convcost.variants.approximator import Approximator
        from convcost.variants.autorank import AutoRank

        autorank = AutoRank(Approximator(), tol)
    for name, choice in choices.items():
        original = convs[name]
        conv = conv_of(name, original)
        if autorank is not None:
            resolved, extra = autorank(choice.variant, conv, choice.options)
            choice = Choice(choice.variant, resolved, dict(extra), permute)
        elif permute and choice.variant == "grouped":
            choice = Choice(choice.variant, choice.options, choice.extra, True)
        found = build(conv, choice)
        if isinstance(found, Kept):
            if strict:
                raise InputError(f"layer {name!r}: {choice.variant} cannot be built: {found.reason}", "plan")
            kept.append(found)
            continue
        _set(target, name, replacement_module(found, original))
        replaced.append(found)
    return (target, Factorized(replaced, kept)) if report else target


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)

