"""What the depthwise variant keeps of a trained weight, at depth multiplier m.

Per input channel, the C_out × prod(k) slice of the kernel becomes m depthwise filters mixed by
the pointwise conv, so it has rank ≤ m: the error is each slice's tail singular values.
"""

from __future__ import annotations

import numpy as np

from convcost.ir.model import Conv
from convcost.variants.spectra import (
    Factorization,
    LayerSpectra,
    smallest_within,
    sq_singular_values,
    svd_split,
    tail_at,
    tails,
    to_layout,
)


def slice_tails(s: LayerSpectra) -> np.ndarray:
    """Energy lost at every multiplier, summed over the input channels' slices."""

    def compute() -> np.ndarray:
        g, ci, co = s.t.shape[:3]
        m = s.t.reshape(g * ci, co, -1)
        return tails(sq_singular_values(m)).sum(axis=0)

    return s.cached(("depthwise", "tails"), compute)


def lost_energy(s: LayerSpectra, m: int) -> float:
    """Energy lost at depth multiplier m."""
    return tail_at(slice_tails(s), m)


def smallest_multiplier(s: LayerSpectra, tol: float) -> int:
    """The smallest depth multiplier whose relative error is <= tol."""
    return smallest_within(slice_tails(s), tol * tol * s.energy)


def factors(conv: Conv, t: np.ndarray, m: int) -> Factorization:
    """The depthwise and pointwise weights: each input channel's slice split by a rank-m SVD."""
    g, ci, co = t.shape[:3]
    k = conv.kernel
    left, right = svd_split(t.reshape(g, ci, co, -1), m)  # (g, ci, co, m), (g, ci, m, K)
    n_in = g * ci
    pointwise = np.zeros((conv.out_channels, n_in * m))
    for gi in range(g):
        for c in range(ci):
            ch = gi * ci + c
            pointwise[gi * co:(gi + 1) * co, ch * m:(ch + 1) * m] = left[gi, c]
    dw = right.reshape(n_in, m, *k)  # ConvTranspose depthwise layout (C_in, m, *k)
    if conv.op == "Conv":
        dw = dw.reshape(n_in * m, 1, *k)
    stages = [dw, pointwise.reshape(*pointwise.shape, *(1,) * conv.rank)]
    hat = (left @ right).reshape(t.shape)
    return Factorization(stages, to_layout(conv.op, hat))
