"""The approximation-error hook the commands pass to `analyze`, light to import.

Every analysis gets one, but numpy and the SVD code are imported only when a layer actually has
weights, so the YAML and weightless paths start without them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from convcost.ir.model import Conv
from convcost.variants.base import VARIANTS, Approx, VariantOptions, plan_variant, rank_within

if TYPE_CHECKING:
    from concurrent.futures import Future

    from convcost.variants.spectra import LayerSpectra


class Approximator:
    """The `ApproxFn` the CLI uses: loads a layer's weight once and shares its SVDs.

    Only the latest layer is kept, since the analysis asks for every variant of one layer
    before moving on; a ResNet-50's float64 weights are never all in memory at once.
    `permute=False` skips the grouped variant's channel-permutation heuristic. `prefetch`
    computes the layers' spectra ahead of the analysis, several at once, in worker threads.
    """

    def __init__(self, permute: bool = True) -> None:
        self.permute = permute
        self._spectra: LayerSpectra | None = None
        self._ahead: Ahead | None = None

    def spectra(self, conv: Conv) -> LayerSpectra | None:
        """The conv's weight spectra (None without weights), computed lazily and cached."""
        if conv.weight is None:
            return None
        if self._spectra is None or self._spectra.conv is not conv:  # the cached one holds its conv
            self._spectra = None  # the previous layer's weight can go before the next one is read
            found = self._ahead.take(conv) if self._ahead is not None else None
            self._spectra = found if found is not None else layer_spectra(conv)
        return self._spectra

    def __call__(self, variant: str, conv: Conv, options: VariantOptions) -> Approx | None:
        if conv.weight is None or not plan_variant(variant, conv, options).applicable:
            return None
        spectra = self.spectra(conv)
        return None if spectra is None else VARIANTS[variant].error(spectra, options, self.permute)

    def prefetch(self, convs: Sequence[Conv], variants: Sequence[str], options: VariantOptions,
                 workers: int) -> None:
        """Compute, `workers` layers at a time, what the analysis will ask of these convs' weights
        (in the order it will ask): each variant's error at `options`, and with `options.tol` the
        ranks `--rank auto` picks. Numpy's linear algebra runs without the interpreter lock, so
        the threads share the cores; at most `workers` layers are held ahead. `close` stops it."""
        self.close()
        convs = [c for c in convs if c.weight is not None
                 and any(plan_variant(name, c, options).applicable for name in variants)]
        if workers > 1 and len(convs) > 1:
            self._ahead = Ahead(convs, lambda conv: fill(conv, variants, options, self.permute), workers)

    def close(self) -> None:
        """Stop computing ahead (layers not yet started are dropped)."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None


def layer_spectra(conv: Conv) -> LayerSpectra:
    from convcost.variants.spectra import LayerSpectra, group_major

    assert conv.weight is not None
    return LayerSpectra(conv, group_major(conv, conv.weight()))


def fill(conv: Conv, variants: Sequence[str], options: VariantOptions, permute: bool) -> LayerSpectra:
    """One conv's spectra with what the analysis will ask already in its memo: each applicable
    variant's error, at the rank `--rank auto` picks where `options.tol` is set."""
    spectra = layer_spectra(conv)
    for name in variants:
        if not plan_variant(name, conv, options).applicable:
            continue
        chosen = rank_within(name, spectra, options, options.tol) if options.tol is not None else options
        if plan_variant(name, conv, chosen).applicable:
            VARIANTS[name].error(spectra, chosen, permute)
    return spectra


class Ahead:
    """Runs `work` on the convs in order in a thread pool, at most `workers` at a time (running or
    waiting to be taken); `take` hands the results out in the same order."""

    def __init__(self, convs: Sequence[Conv], work: Callable[[Conv], LayerSpectra], workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.work = work
        self.todo = deque(convs)
        self.queued: deque[tuple[Conv, Future[LayerSpectra]]] = deque()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="convcost-spectra")
        self.window = workers
        self._submit()

    def _submit(self) -> None:
        while self.todo and len(self.queued) < self.window:
            conv = self.todo.popleft()
            self.queued.append((conv, self.pool.submit(self.work, conv)))

    def take(self, conv: Conv) -> LayerSpectra | None:
        """The result for `conv` (waiting for it), or None if `conv` is not among those queued;
        queued convs before it were skipped by the analysis and are dropped."""
        if not any(queued is conv for queued, _ in self.queued):
            return None
        while True:
            queued, future = self.queued.popleft()
            if queued is conv:
                self._submit()
                return future.result()
            future.cancel()

    def close(self) -> None:
        self.todo.clear()
        for _, future in self.queued:
            future.cancel()
        self.queued.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)


def approx_error(variant: str, conv: Conv, options: VariantOptions | None = None) -> float | None:
    """The optimal relative Frobenius error of one variant of one conv (None without weights)."""
    result = Approximator()(variant, conv, options or VariantOptions())
    return result.error if result else None
