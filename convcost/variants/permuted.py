"""The grouped variant after the channel permutation heuristic, as runnable weights.

`approx_error_permuted` is the error of a grouped conv that sees its inputs reordered and writes
its outputs reordered: `y = P_out^T · grouped(P_in · x)`. This module builds that replacement from
the same labels (`permutation.block_labels` on the same energies as `grouped_blocks`), so its
kernel reaches exactly the reported error: the grouped conv's weight (in the op's layout), the
input order `perm_in` (the grouped conv reads `x[:, perm_in]`) and the output order `perm_out`
(its output channel j is the conv's channel `perm_out[j]`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convcost.ir.model import Conv
from convcost.variants.grouped_blocks import channel_energy
from convcost.variants.permutation import block_labels, dense_energy
from convcost.variants.spectra import LayerSpectra, group_major


@dataclass(frozen=True)
class PermutedGrouped:
    """The permuted grouped replacement of one conv."""

    weight: np.ndarray  # the grouped conv's weight, op layout, channels in permuted order
    kernel: np.ndarray  # the kernel it realizes, original channel order and layout (for the error)
    perm_in: np.ndarray
    perm_out: np.ndarray


def _dense(conv: Conv, t: np.ndarray) -> np.ndarray:
    """The group-major weight as a dense (C_out, C_in, *k) kernel, zero between the conv's groups."""
    g, ci, co = t.shape[:3]
    dense = np.zeros((g * co, g * ci, *conv.kernel))
    for i in range(g):
        dense[i * co:(i + 1) * co, i * ci:(i + 1) * ci] = np.swapaxes(t[i], 0, 1)
    return dense


def permuted_grouped(conv: Conv, weight: np.ndarray, groups: int) -> PermutedGrouped:
    """The heuristic's grouping of `conv` (weight in the op's layout) into `groups` groups."""
    t = group_major(conv, weight)
    rows, cols = block_labels(dense_energy(channel_energy(LayerSpectra(conv, t))), groups)
    perm_out = np.argsort(rows, kind="stable")
    perm_in = np.argsort(cols, kind="stable")
    dense = _dense(conv, t)
    permuted = dense[perm_out][:, perm_in]
    co, ci = conv.out_channels // groups, conv.in_channels // groups
    blocks = np.stack([permuted[b * co:(b + 1) * co, b * ci:(b + 1) * ci] for b in range(groups)])  # (G, co, ci, k)
    kept = np.zeros_like(permuted)
    for b in range(groups):
        kept[b * co:(b + 1) * co, b * ci:(b + 1) * ci] = blocks[b]
    hat = np.zeros_like(dense)
    hat[np.ix_(perm_out, perm_in)] = kept
    if conv.op == "ConvTranspose":
        stage = np.swapaxes(blocks, 1, 2).reshape(conv.in_channels, co, *conv.kernel)
        kernel = _to_transpose_layout(hat, conv.groups)
    else:
        stage = blocks.reshape(conv.out_channels, ci, *conv.kernel)
        kernel = _to_conv_layout(hat, conv.groups)
    return PermutedGrouped(stage, kernel, perm_in, perm_out)


def _to_conv_layout(dense: np.ndarray, g: int) -> np.ndarray:
    """Dense (C_out, C_in, k) -> Conv layout (C_out, C_in/g, k) of a conv with g groups (its blocks)."""
    c_out, c_in = dense.shape[:2]
    co, ci = c_out // g, c_in // g
    return np.concatenate([dense[i * co:(i + 1) * co, i * ci:(i + 1) * ci] for i in range(g)])


def _to_transpose_layout(dense: np.ndarray, g: int) -> np.ndarray:
    """Dense (C_out, C_in, k) -> ConvTranspose layout (C_in, C_out/g, k) of a conv with g groups."""
    c_out, c_in = dense.shape[:2]
    co, ci = c_out // g, c_in // g
    return np.concatenate([np.swapaxes(dense[i * co:(i + 1) * co, i * ci:(i + 1) * ci], 0, 1) for i in range(g)])
