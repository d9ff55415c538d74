"""The depthwise variant: a depthwise k x k conv (depth multiplier m), then a 1 x 1 pointwise conv.

This module holds its plan and its rank (the depth multiplier); `depthwise_svd` holds what it
keeps of a trained weight and is imported only when a layer has weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convcost.ir.model import Conv
from convcost.ir.shapes import make_conv
from convcost.variants.base import Approx, Plan, Variant, VariantOptions

if TYPE_CHECKING:
    import numpy as np

    from convcost.variants.spectra import Factorization, LayerSpectra


class Depthwise(Variant):
    """Depthwise k x k (groups = C_in, depth multiplier m) then a 1 x 1 pointwise conv to C_out."""

    name = "depthwise"
    fitting = "convcost.variants.depthwise_svd"
    rank_field = "depth_multiplier"

    def plan(self, conv: Conv, options: VariantOptions) -> Plan:
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

    def error(self, spectra: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
        from convcost.variants.depthwise_svd import lost_energy

        return Approx(spectra.relative(lost_energy(spectra, options.depth_multiplier)))

    def factorize(self, conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
        from convcost.variants.depthwise_svd import factors

        return factors(conv, t, options.depth_multiplier)

    def smallest_rank(self, spectra: LayerSpectra, tol: float) -> int:
        from convcost.variants.depthwise_svd import smallest_multiplier

        return smallest_multiplier(spectra, tol)


DEPTHWISE = Depthwise()
