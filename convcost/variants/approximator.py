"""The approximation-error hook the commands pass to `analyze`, light to import.

Every analysis gets one, but numpy and the SVD code are imported only when a layer actually has
weights, so the YAML and weightless paths start without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convcost.ir.model import Conv
from convcost.variants.base import VARIANTS, Approx, VariantOptions, plan_variant

if TYPE_CHECKING:
    from convcost.variants.spectra import LayerSpectra


class Approximator:
    """The `ApproxFn` the CLI uses: loads a layer's weight once and shares its SVDs.

    Only the latest layer is kept, since the analysis asks for every variant of one layer
    before moving on; a ResNet-50's float64 weights are never all in memory at once.
    `permute=True` adds the grouped variant's error after the channel-permutation heuristic
    (`approx_error_permuted`), which costs more than all the other errors together.
    """

    def __init__(self, permute: bool = False) -> None:
        self.permute = permute
        self._spectra: LayerSpectra | None = None

    def spectra(self, conv: Conv) -> LayerSpectra | None:
        """The conv's weight spectra (None without weights), computed lazily and cached."""
        if conv.weight is None:
            return None
        if self._spectra is None or self._spectra.conv is not conv:  # the cached one holds its conv
            from convcost.variants.spectra import LayerSpectra, group_major

            self._spectra = None  # the previous layer's weight can go before the next one is read
            self._spectra = LayerSpectra(conv, group_major(conv, conv.weight()))
        return self._spectra

    def __call__(self, variant: str, conv: Conv, options: VariantOptions) -> Approx | None:
        if conv.weight is None or not plan_variant(variant, conv, options).applicable:
            return None
        spectra = self.spectra(conv)
        return None if spectra is None else VARIANTS[variant].error(spectra, options, self.permute)


def approx_error(variant: str, conv: Conv, options: VariantOptions | None = None) -> float | None:
    """The optimal relative Frobenius error of one variant of one conv (None without weights)."""
    result = Approximator()(variant, conv, options or VariantOptions())
    return result.error if result else None
