"""The approximation-error hook the commands pass to `analyze`, light to import.

Every analysis gets one, but numpy and the SVD code are imported only when a layer actually has
weights, so the YAML and weightless paths start without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from convcost.ir.model import Conv
from convcost.variants.base import VARIANTS, Approx, VariantOptions, plan_variant

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

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
        #: id(conv) -> (conv, its float32 spatial tails being computed in a thread)
        self._ahead: dict[int, tuple[Conv, Future[Any]]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def ahead(self, convs: Sequence[Conv], options: VariantOptions, threads: int) -> None:
        """Start computing, in `threads` background threads, the costliest spectra the analysis of
        `convs` (in order, with these options) will ask for: the spatial variant's float32 tails.

        The threads take the layers from the last one back while the analysis works from the first,
        computing a layer itself when no thread has started it, so the two meet in the middle. LAPACK
        runs outside the interpreter lock, so a ResNet-50's default analysis takes about 30% less
        time on two cores. The values are those the analysis would compute (the same function on the
        same weight), so the output does not change; each thread holds one layer's weight at a time.
        `close()` stops them."""
        weighted = [c for c in convs if c.weight is not None]
        if threads < 1 or len(weighted) < 2:
            return  # (and numpy stays unimported for a model without weights)
        from concurrent.futures import ThreadPoolExecutor

        from convcost.variants.spatial import spatial_rank
        from convcost.variants.spatial_svd import takes_single_tails

        todo = [c for c in weighted if plan_variant("spatial", c, options).applicable
                and takes_single_tails(c, spatial_rank(c, options) // c.groups)]
        if len(todo) < 2:
            return
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="convcost-spectra")
        for conv in reversed(todo):
            self._ahead[id(conv)] = (conv, self._pool.submit(_single_tails, conv))

    @staticmethod
    def preload(variants: Sequence[str]) -> None:
        """Import what the errors of `variants` need (numpy, the spectra, each variant's fitting
        module), which a first weighted layer otherwise imports: before worker processes fork,
        so that each inherits them."""
        import importlib

        importlib.import_module("convcost.variants.spectra")
        for name in variants:
            importlib.import_module(VARIANTS[name].fitting)

    def close(self) -> None:
        """Stop the `ahead` threads: tails not started are dropped; a running one finishes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._ahead.clear()

    def spectra(self, conv: Conv) -> LayerSpectra | None:
        """The conv's weight spectra (None without weights), computed lazily and cached."""
        if conv.weight is None:
            return None
        if self._spectra is None or self._spectra.conv is not conv:  # the cached one holds its conv
            from convcost.variants.spectra import LayerSpectra, group_major

            self._spectra = None  # the previous layer's weight can go before the next one is read
            self._spectra = LayerSpectra(conv, group_major(conv, conv.weight()))
            started = self._ahead.pop(id(conv), None)
            if started is not None and started[0] is conv and not started[1].cancel():
                from convcost.variants.spatial_svd import SINGLE_TAILS

                self._spectra.memo[SINGLE_TAILS] = started[1]  # running or done: `cached` waits for it
        return self._spectra

    def __call__(self, variant: str, conv: Conv, options: VariantOptions) -> Approx | None:
        if conv.weight is None or not plan_variant(variant, conv, options).applicable:
            return None
        spectra = self.spectra(conv)
        return None if spectra is None else VARIANTS[variant].error(spectra, options, self.permute)


def _single_tails(conv: Conv) -> Any:
    """What `Approximator.ahead` computes in a thread: a layer's float32 spatial tails."""
    from convcost.variants.spatial_svd import single_tails
    from convcost.variants.spectra import group_major_view

    assert conv.weight is not None
    return single_tails(conv, group_major_view(conv, conv.weight()))


def approx_error(variant: str, conv: Conv, options: VariantOptions | None = None) -> float | None:
    """The optimal relative Frobenius error of one variant of one conv (None without weights)."""
    result = Approximator()(variant, conv, options or VariantOptions())
    return result.error if result else None
