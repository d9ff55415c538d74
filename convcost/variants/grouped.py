"""The grouped variant: the same conv with `groups = G`, keeping only G diagonal blocks of channels.

This module holds its plan; `grouped_blocks` holds what it keeps of a trained weight and is
imported only when a layer has weights. It has no rank for `--rank auto` to pick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convcost.ir.model import Conv
from convcost.variants.base import Approx, Plan, Variant, VariantOptions

if TYPE_CHECKING:
    import numpy as np

    from convcost.variants.spectra import Factorization, LayerSpectra


class Grouped(Variant):
    """The same conv with `groups = G`; G must be a multiple of the current groups.

    Its error is reported twice: with the channels in their order, and after a channel
    permutation heuristic (`approx_error_permuted`) that a rewrite could apply first.
    """

    name = "grouped"
    fitting = "convcost.variants.grouped_blocks"

    def plan(self, conv: Conv, options: VariantOptions) -> Plan:
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

    def error(self, spectra: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
        from convcost.variants.grouped_blocks import lost_energy, permuted_lost_energy

        error = spectra.relative(lost_energy(spectra, options.groups))
        if not permute:
            return Approx(error)
        return Approx(error, {"approx_error_permuted": spectra.relative(permuted_lost_energy(spectra, options.groups))})

    def factorize(self, conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
        from convcost.variants.grouped_blocks import factors

        return factors(conv, t, options.groups)


GROUPED = Grouped()
