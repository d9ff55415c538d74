"""The spatial variant: a k x k conv as one 1-D conv per spatial axis, with R channels between.

This module holds its plan and its rank; `spatial_svd` holds what it keeps of a trained weight
and is imported only when a layer has weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convcost.ir.model import Conv
from convcost.ir.shapes import make_conv
from convcost.variants.base import Approx, Plan, Variant, VariantOptions, active_axes

if TYPE_CHECKING:
    import numpy as np

    from convcost.variants.spectra import Factorization, LayerSpectra


def spatial_rank(conv: Conv, options: VariantOptions) -> int:
    """Channels between the spatial variant's stages: --rank, or C_out."""
    return options.rank or conv.out_channels


def _on_axes(values: tuple[int, ...], axes: set[int], fill: int) -> tuple[int, ...]:
    """Keep `values` on `axes`, `fill` elsewhere."""
    return tuple(v if i in axes else fill for i, v in enumerate(values))


class Spatial(Variant):
    """One 1-D conv per spatial axis with extent > 1: k x k -> (k x 1) then (1 x k).

    Channels between stages: rank R (default C_out), a multiple of the conv's groups. Each
    axis's stride, padding and dilation go to its own stage; axes with kernel 1 keep theirs in
    the first stage. Groups are kept, so a depthwise k x k becomes two depthwise 1-D convs
    (9 -> 6 multiplications per output).
    """

    name = "spatial"
    fitting = "convcost.variants.spatial_svd"
    rank_field = "rank"

    def plan(self, conv: Conv, options: VariantOptions) -> Plan:
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

    def error(self, spectra: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
        from convcost.variants.spatial_svd import lost_energy

        lost, bound = lost_energy(spectra, spatial_rank(spectra.conv, options) // spectra.conv.groups)
        return Approx(spectra.relative(lost),
                      {} if bound is None else {"approx_error_lower_bound": spectra.relative(bound)})

    def factorize(self, conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
        from convcost.variants.spatial_svd import factors

        return factors(conv, t, spatial_rank(conv, options) // conv.groups)

    def rank_step(self, conv: Conv) -> int:
        return conv.groups

    def smallest_rank(self, spectra: LayerSpectra, tol: float) -> int:
        from convcost.variants.spatial_svd import smallest_group_rank

        return smallest_group_rank(spectra, tol) * spectra.conv.groups


SPATIAL = Spatial()
