"""The three "what if it were factorized" replacements and how well each keeps a trained kernel.

`base` holds the options, the plan and the registry; `spectra` the SVD errors and factorizations;
`approximator` the light hook that computes them only where a layer has weights; `autorank` the
per-layer rank for `--rank auto`.
"""

from convcost.variants.base import (
    VARIANTS,
    Approx,
    Plan,
    VariantOptions,
    active_axes,
    plan_variant,
    register_variant,
    spatial_rank,
)

__all__ = ["VARIANTS", "Approx", "Plan", "VariantOptions", "active_axes", "plan_variant", "register_variant",
           "spatial_rank"]
