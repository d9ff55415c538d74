"""The three "what if it were factorized" replacements, each a short list of ordinary convs.

A variant builder takes one conv and returns the convs that would replace it, or a reason why
the replacement does not apply. The cost model prices the result like any other conv, so a
variant's cost always equals the sum of its parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convcost.ir.model import Conv
from convcost.ir.shapes import ShapeError, make_conv
from convcost.util.registry import Registry


@dataclass(frozen=True)
class VariantOptions:
    """User knobs: `--rank` (None = C_out), `--depth-multiplier`, `--groups`.

    `tol` is set by `--rank auto --tol T`: the spatial rank and the depth multiplier are then
    picked per layer from its weights (see `convcost.variants.autorank`), and `rank` and
    `depth_multiplier` here are only the fallbacks for layers without weights.
    """

    rank: int | None = None
    depth_multiplier: int = 1
    groups: int = 4
    tol: float | None = None


@dataclass(frozen=True)
class Plan:
    """A variant of one conv: the replacement layers, or why there are none."""

    applicable: bool
    reason: str | None = None
    layers: tuple[Conv, ...] = ()

    @staticmethod
    def na(reason: str) -> Plan:
        return Plan(False, reason)


@dataclass(frozen=True)
class Approx:
    """An approximation error, with any further keys to report beside it (e.g. the grouped
    variant's `approx_error_permuted`)."""

    error: float | None
    extra: Mapping[str, Any] = field(default_factory=dict)


Builder = Callable[[Conv, VariantOptions], Plan]
VARIANTS: Registry[str, Builder] = Registry("variant")


def register_variant(name: str) -> Callable[[Builder], Builder]:
    return VARIANTS.register(name)


def plan_variant(name: str, conv: Conv, options: VariantOptions) -> Plan:
    """Build variant `name` of `conv`; a stage whose shape is invalid makes it not applicable."""
    try:
        return VARIANTS[name](conv, options)
    except ShapeError as exc:
        return Plan.na(f"replacement is not a valid conv: {exc}")


def _on_axes(values: tuple[int, ...], axes: set[int], fill: int) -> tuple[int, ...]:
    """Keep `values` on `axes`, `fill` elsewhere."""
    return tuple(v if i in axes else fill for i, v in enumerate(values))


def active_axes(conv: Conv) -> list[int]:
    """Spatial axes with extent > 1: the spatial variant makes one 1-D stage per axis here, in this order."""
    return [i for i, k in enumerate(conv.kernel) if k > 1]


def spatial_rank(conv: Conv, options: VariantOptions) -> int:
    """Channels between the spatial variant's stages: --rank, or C_out."""
    return options.rank or conv.out_channels


@register_variant("spatial")
def spatial(conv: Conv, options: VariantOptions) -> Plan:
    """One 1-D conv per spatial axis with extent > 1: k x k -> (k x 1) then (1 x k).

    Channels between stages: rank R (default C_out). Each axis's stride, padding and dilation go
    to its own stage; axes with kernel 1 keep theirs in the first stage. Groups are kept, so a
    depthwise k x k becomes two depthwise 1-D convs (9 -> 6 multiplications per output).
    """
    axes = active_axes(conv)
    if conv.rank == 1:
        return Plan.na("a 1-D conv has a single spatial axis; nothing to separate")
    if not axes:
        return Plan.na("a 1x1 conv has no spatial kernel to separate")
    if len(axes) < 2:
        return Plan.na(f"kernel {list(conv.kernel)} has extent > 1 on only one axis; already separable")
    rank = spatial_rank(conv, options)
    if rank % conv.groups:
        return Plan.na(f"rank {rank} is not a multiple of groups={conv.groups}")
    r = conv.rank
    flat = [i for i in range(r) if i not in axes]
    layers: list[Conv] = []
    shape = conv.input_shape
    for j, axis in enumerate(axes):
        own = {axis, *(flat if j == 0 else ())}
        last = j == len(axes) - 1
        stage = make_conv(
            name=f"{conv.name}/spatial.{j}",
            op=conv.op,
            input_shape=shape,
            out_channels=conv.out_channels if last else rank,
            kernel=_on_axes(conv.kernel, own, 1),
            stride=_on_axes(conv.stride, own, 1),
            padding=_on_axes(conv.padding[:r], own, 0) + _on_axes(conv.padding[r:], own, 0),
            dilation=_on_axes(conv.dilation, own, 1),
            groups=conv.groups,
            bias=conv.bias and last,
            output_padding=_on_axes(conv.output_padding, own, 0) if conv.op == "ConvTranspose" else None,
            dtype=conv.dtype,
        )
        layers.append(stage)
        shape = stage.output_shape
    return Plan(True, None, tuple(layers))


@register_variant("depthwise")
def depthwise(conv: Conv, options: VariantOptions) -> Plan:
    """Depthwise k x k (groups = C_in, depth multiplier m) then a 1 x 1 pointwise conv to C_out."""
    if conv.is_pointwise:
        return Plan.na("a 1x1 conv has no spatial kernel to make depthwise")
    if conv.is_depthwise:
        return Plan.na("already depthwise (groups = C_in)")
    m = options.depth_multiplier
    dw = make_conv(
        name=f"{conv.name}/depthwise",
        op=conv.op,
        input_shape=conv.input_shape,
        out_channels=m * conv.in_channels,
        kernel=conv.kernel,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.in_channels,
        bias=False,
        output_padding=conv.output_padding or None,
        dtype=conv.dtype,
    )
    pw = make_conv(
        name=f"{conv.name}/pointwise",
        op="Conv",
        input_shape=dw.output_shape,
        out_channels=conv.out_channels,
        kernel=(1,) * conv.rank,
        bias=conv.bias,
        dtype=conv.dtype,
    )
    return Plan(True, None, (dw, pw))


@register_variant("grouped")
def grouped(conv: Conv, options: VariantOptions) -> Plan:
    """The same conv with `groups = G`; G must be a multiple of the current groups."""
    g = options.groups
    if conv.is_depthwise:
        return Plan.na("already depthwise (groups = C_in)")
    if g == conv.groups:
        return Plan.na(f"already has groups={g}")
    if g % conv.groups:
        return Plan.na(f"groups={g} is not a multiple of the current groups={conv.groups}")
    if conv.in_channels % g or conv.out_channels % g:
        return Plan.na(
            f"groups={g} does not divide C_in={conv.in_channels} and C_out={conv.out_channels}"
        )
    return Plan(True, None, (conv.with_changes(name=f"{conv.name}/grouped", groups=g),))
