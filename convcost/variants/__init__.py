"""The three "what if it were factorized" replacements and how well each keeps a trained kernel.

`base` holds the `Variant` interface, the options, the plan and the `VARIANTS` registry. Each
variant has a module with its plan and rank (`spatial`, `depthwise`, `grouped`) and one with
its fit to a trained weight (`spatial_svd`, `depthwise_svd`, `grouped_blocks` with
`permutation`); `spectra` holds what those fits share. `approximator` is the light hook that
computes errors only where a layer has weights; `autorank` picks the per-layer rank for
`--rank auto`. Importing this package registers the variants; numpy is imported only by the
fits, when a layer has weights.
"""

from convcost.variants.base import (
    VARIANTS,
    Approx,
    Plan,
    Variant,
    VariantOptions,
    active_axes,
    factorize,
    plan_variant,
    register_variant,
)
from convcost.variants.depthwise import DEPTHWISE
from convcost.variants.grouped import GROUPED
from convcost.variants.spatial import SPATIAL, spatial_rank

# The registration order is the order users see.
register_variant(SPATIAL)
register_variant(DEPTHWISE)
register_variant(GROUPED)

__all__ = ["DEPTHWISE", "GROUPED", "SPATIAL", "VARIANTS", "Approx", "Plan", "Variant", "VariantOptions",
           "active_axes", "factorize", "plan_variant", "register_variant", "spatial_rank"]
