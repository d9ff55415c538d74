"""`--rank auto --tol T`: per layer, the smallest rank whose optimal error is within T.

A variant's rank is the `VariantOptions` field it names in `rank_field` (the spatial variant's
R, the depthwise variant's depth multiplier m); variants without one keep their options. Each
layer also reports its break-even rank: the largest rank at which the variant still needs fewer
MACs than the original conv, priced by the cost model itself rather than by a formula of its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from convcost.cost import cost_of
from convcost.ir.model import Conv
from convcost.variants.approximator import Approximator
from convcost.variants.base import VARIANTS, VariantOptions, plan_variant


def _macs(variant: str, conv: Conv, options: VariantOptions) -> int | None:
    plan = plan_variant(variant, conv, options)
    return sum(cost_of(c).macs for c in plan.layers) if plan.applicable else None


def break_even_rank(variant: str, conv: Conv, options: VariantOptions) -> int:
    """The largest rank whose variant has fewer MACs than `conv` (0: no rank saves MACs).

    Variant MACs grow with the rank (linearly, or quadratically for 3-D's middle stage), so a
    doubling search then bisection finds it with a few dozen plans.
    """
    v = VARIANTS[variant]
    if v.rank_field is None:
        raise ValueError(f"variant {variant!r} has no rank")
    field, step = v.rank_field, v.rank_step(conv)
    original = cost_of(conv).macs

    def saves(n: int) -> bool:
        macs = _macs(variant, conv, replace(options, **{field: n * step}))
        return macs is not None and macs < original

    if not saves(1):
        return 0
    lo, hi = 1, 2
    while saves(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if saves(mid) else (lo, mid)
    return lo * step


class AutoRank:
    """An `OptionsFn`: resolves each layer's rank from its weights before its variant is planned."""

    def __init__(self, approximator: Approximator, tol: float) -> None:
        self.approximator = approximator
        self.tol = tol

    def __call__(
        self, variant: str, conv: Conv, options: VariantOptions
    ) -> tuple[VariantOptions, dict[str, Any]]:
        v = VARIANTS[variant]
        field = v.rank_field
        if field is None or not plan_variant(variant, conv, options).applicable:
            return options, {}
        extra: dict[str, Any] = {"tol": self.tol, "break_even_rank": break_even_rank(variant, conv, options)}
        spectra = self.approximator.spectra(conv)
        if spectra is None:  # no weights: the fixed option applies
            current = getattr(options, field) or conv.out_channels
            return options, {**extra, "rank": current, "rank_auto": False}
        rank = v.smallest_rank(spectra, self.tol)
        return replace(options, **{field: rank}), {**extra, "rank": rank, "rank_auto": True}
