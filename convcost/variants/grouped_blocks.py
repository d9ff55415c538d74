"""What the grouped variant keeps of a trained weight: the G diagonal blocks of channels.

The best kernel with `groups = G` is the weight itself inside the blocks and zero outside, so
the error is the energy outside them. The same with channels reordered by the heuristic in
`permutation` is reported beside it.
"""

from __future__ import annotations

import numpy as np

from convcost.ir.model import Conv
from convcost.variants.permutation import block_labels, dense_energy
from convcost.variants.spectra import Factorization, LayerSpectra, to_layout


def channel_energy(s: LayerSpectra) -> np.ndarray:
    """(g, C_in/g, C_out/g): the kernel's energy between each input and output channel."""

    def compute() -> np.ndarray:
        x = s.t.reshape(*s.t.shape[:3], -1)  # a view: `t` is contiguous
        return np.asarray(np.einsum("gijk,gijk->gij", x, x))

    return s.cached(("grouped", "energy"), compute)


def lost_energy(s: LayerSpectra, groups: int) -> float:
    """Energy outside the G diagonal blocks, channels in their order."""

    def compute() -> float:
        e = channel_energy(s)
        g, ci, co = e.shape
        h = groups // g
        # summed directly (not total - kept), so an exact block structure gives exactly 0
        off = 1.0 - np.eye(h)
        return float(np.einsum("gaibj,ab->", e.reshape(g, h, ci // h, h, co // h), off))

    return s.cached(("grouped", "lost", groups), compute)


def permuted_lost_energy(s: LayerSpectra, groups: int) -> float:
    """Energy outside the G blocks after the channel permutation heuristic."""

    def compute() -> float:
        dense = dense_energy(channel_energy(s))
        rows, cols = block_labels(dense, groups)
        return float(np.sum(dense, where=rows[:, None] != cols[None, :]))

    return s.cached(("grouped", "permuted", groups), compute)


def factors(conv: Conv, t: np.ndarray, groups: int) -> Factorization:
    """The diagonal blocks as the weight of the conv with `groups` groups."""
    g, ci, co = t.shape[:3]
    h = groups // g
    blocks = t.reshape(g, h, ci // h, h, co // h, *conv.kernel)
    kept = np.einsum("gaiajk->gaijk", blocks.reshape(g, h, ci // h, h, co // h, -1))
    core = kept.reshape(g * h, ci // h, co // h, *conv.kernel)
    hat = np.zeros_like(blocks)
    for a in range(h):
        hat[:, a, :, a] = blocks[:, a, :, a]
    return Factorization([to_layout(conv.op, core)], to_layout(conv.op, hat.reshape(t.shape)))
