"""What the spatial variant keeps of a trained weight, at per-group rank r (R / groups).

Two active axes: per group, W as a (C_in/g·k_a) × (C_out/g·k_b) matrix has rank ≤ r, so the
error is its tail singular values and one SVD per group gives every rank at once. Three active
axes (three 1-D stages) form a tensor train (C_in,k0) -r- k1 -r- (k2,C_out): TT-SVD in both
sweep directions gives an achievable error, and the two single unfoldings a lower bound on the
optimum (reported too).
"""

from __future__ import annotations

import numpy as np

from convcost.ir.model import Conv
from convcost.variants.base import active_axes
from convcost.variants.spectra import (
    SINGLE_ABOVE,
    Factorization,
    LayerSpectra,
    left_basis,
    smallest_within,
    sq_singular_values,
    svd_split,
    tail_at,
    tails,
    to_layout,
)


def squeezed(conv: Conv, t: np.ndarray) -> np.ndarray:
    """(g, ci, co, k_a0, k_a1[, k_a2]) over the active axes only (flat axes have extent 1)."""
    return t.reshape(*t.shape[:3], *(conv.kernel[a] for a in active_axes(conv)))


# --- the error -------------------------------------------------------------------------------------

#: Below this fraction of the kernel's energy lost (a relative error of 0.1), the float32 spectrum
#: is not precise enough and `lost_energy` takes the float64 one: its ~1e-7 absolute error on the
#: lost fraction then stays below 1e-6 on the relative error, and an exactly low-rank kernel still
#: reports 0.
SINGLE_MIN_LOST = 1e-2


def _pair_matrix(conv: Conv, t: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """Per group, W as a (C_in/g·k_a) × (C_out/g·k_b) matrix, copied once into `dtype` from the
    group-major weight `t` (a view will do)."""
    x = squeezed(conv, t)
    g, ci, co, ka, kb = x.shape
    m = np.empty((g, ci, ka, co, kb), dtype)
    m[...] = x.transpose(0, 1, 3, 2, 4)
    return m.reshape(g, ci * ka, co * kb)


#: The memo key of the float32 tails (`pair_tails(single=True)` above SINGLE_ABOVE).
SINGLE_TAILS = ("spatial", "tails", "single")


def pair_tails(s: LayerSpectra, single: bool = False) -> np.ndarray:
    """Two active axes: energy lost at every per-group rank, summed over groups; `single` allows
    the float32 spectrum of large matrices (`sq_singular_values`)."""
    if single and min(_pair_shape(s.conv)) > SINGLE_ABOVE:
        return s.cached(SINGLE_TAILS, lambda: single_tails(s.conv, s.t))
    return s.cached(("spatial", "tails"), lambda: tails(sq_singular_values(_pair_matrix(s.conv, s.t))).sum(axis=0))


def single_tails(conv: Conv, t: np.ndarray) -> np.ndarray:
    """The float32 tails of a conv that `takes_single_tails`, from its group-major weight `t` in
    any float type (a float32 view gives the same values as the float64 copy: every float32 is a
    float64). `Approximator.ahead` computes them in threads from the stored weight."""
    return tails(sq_singular_values(_pair_matrix(conv, t, np.float32), single=True)).sum(axis=0)


def _pair_shape(conv: Conv) -> tuple[int, int]:
    """Per group, the (C_in/g·k_a) × (C_out/g·k_b) shape of the matrix whose spectrum is the error."""
    ka, kb = (conv.kernel[a] for a in active_axes(conv))
    return conv.in_channels // conv.groups * ka, conv.out_channels // conv.groups * kb


def max_group_rank(s: LayerSpectra) -> int:
    """Per-group rank beyond which the spatial error is 0."""
    x = squeezed(s.conv, s.t)
    if x.ndim == 5:
        return min(x.shape[1] * x.shape[3], x.shape[2] * x.shape[4])
    _, ci, co, k0, k1, k2 = x.shape
    return max(min(ci * k0, k1 * k2 * co), min(ci * k0 * k1, k2 * co))


def train_lost(s: LayerSpectra, r: int) -> tuple[float, float]:
    """Three active axes: (achievable, lower bound) lost energy at per-group rank r, each group
    taking its better TT-SVD sweep."""
    return s.cached(("spatial", "tt", r), lambda: _train_lost(s, r))


def _train_lost(s: LayerSpectra, r: int) -> tuple[float, float]:
    x = squeezed(s.conv, s.t)
    g, ci, co, k0, k1, k2 = x.shape
    x = x.transpose(0, 1, 3, 4, 5, 2)  # (g, ci, k0, k1, k2, co)
    m1 = x.reshape(g, ci * k0, k1 * k2 * co)
    m2 = x.reshape(g, ci * k0 * k1, k2 * co)

    def bases() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ev1, u1 = left_basis(m1)
        ev2, v2 = left_basis(np.swapaxes(m2, 1, 2))
        return ev1, u1, ev2, v2

    ev1, u1, ev2, v2 = s.cached(("spatial", "tt bases"), bases)
    first_l = tails(ev1)[:, min(r, ev1.shape[1])]
    first_r = tails(ev2)[:, min(r, ev2.shape[1])]
    ur = u1[:, :, :r]
    rest_l = (np.swapaxes(ur, 1, 2) @ m1).reshape(g, ur.shape[2] * k1, k2 * co)
    vr = v2[:, :, :r]
    rest_r = (m2 @ vr).reshape(g, ci * k0, k1 * vr.shape[2])
    second_l = tails(sq_singular_values(rest_l))[:, min(r, min(rest_l.shape[1:]))]
    second_r = tails(sq_singular_values(rest_r))[:, min(r, min(rest_r.shape[1:]))]
    lost = np.minimum(first_l + second_l, first_r + second_r)
    return float(lost.sum()), float(np.maximum(first_l, first_r).sum())


def takes_single_tails(conv: Conv, r: int) -> bool:
    """Whether `lost_energy(s, r)` starts from the float32 tails (`SINGLE_TAILS`): two active axes,
    r below full rank, matrices above SINGLE_ABOVE. These are the costliest spectra of a default
    analysis (a 512-channel 3x3 conv: 0.2 s), which `Approximator.ahead` computes in threads."""
    if len(active_axes(conv)) != 2:
        return False
    side = min(_pair_shape(conv))
    return r < side and side > SINGLE_ABOVE


def lost_energy(s: LayerSpectra, r: int) -> tuple[float, float | None]:
    """Energy lost at per-group rank r, and a lower bound on the optimum where it is not exact."""
    if len(active_axes(s.conv)) == 2:
        if r >= min(_pair_shape(s.conv)):  # full rank: nothing is lost
            return 0.0, None
        lost = tail_at(pair_tails(s, single=True), r)
        if lost >= SINGLE_MIN_LOST * s.energy:
            return lost, None
        return tail_at(pair_tails(s), r), None
    return train_lost(s, r)


def smallest_group_rank(s: LayerSpectra, tol: float) -> int:
    """The smallest per-group rank whose relative error is <= tol."""
    limit = tol * tol * s.energy
    if len(active_axes(s.conv)) == 2:
        return smallest_within(pair_tails(s), limit)
    # three stages: TT-SVD error per rank, bisected (the error falls as the rank grows)
    lo, hi = 0, max_group_rank(s)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if train_lost(s, mid)[0] <= limit else (mid, hi)
    return hi


# --- the factors -----------------------------------------------------------------------------------

def _axis_kernel(conv: Conv, axis: int, values: np.ndarray) -> np.ndarray:
    """(..., k_axis) -> (..., *kernel) with extent 1 on every other spatial axis."""
    shape = [1] * conv.rank
    shape[axis] = conv.kernel[axis]
    return values.reshape(*values.shape[:-1], *shape)


def factors(conv: Conv, t: np.ndarray, r: int) -> Factorization:
    """The 1-D stages' weights at per-group rank r: one SVD split for two axes, for three the
    better of the two TT-SVD sweeps per group."""
    axes = active_axes(conv)
    s = squeezed(conv, t)
    g, ci, co = s.shape[:3]
    ks = [conv.kernel[a] for a in axes]
    x = np.moveaxis(s, 2, -1)  # (g, ci, k_a0, ..., co)
    if len(axes) == 2:
        left, right = svd_split(x.reshape(g, ci * ks[0], ks[1] * co), r)
        cores = [left.reshape(g, ci, ks[0], r).transpose(0, 1, 3, 2),  # (g, in, out, k)
                 right.reshape(g, r, ks[1], co).transpose(0, 1, 3, 2)]
    else:  # TT-SVD, left to right and right to left; each group keeps its better sweep
        k0, k1, k2 = ks
        a, rest = svd_split(x.reshape(g, ci * k0, k1 * k2 * co), r, "right")
        b, c = svd_split(rest.reshape(g, r * k1, k2 * co), r)
        lr = [a.reshape(g, ci, k0, r).transpose(0, 1, 3, 2), b.reshape(g, r, k1, r).transpose(0, 1, 3, 2),
              c.reshape(g, r, k2, co).transpose(0, 1, 3, 2)]
        rest2, c2 = svd_split(x.reshape(g, ci * k0 * k1, k2 * co), r, "left")
        a2, b2 = svd_split(rest2.reshape(g, ci * k0, k1 * r), r)
        rl = [a2.reshape(g, ci, k0, r).transpose(0, 1, 3, 2), b2.reshape(g, r, k1, r).transpose(0, 1, 3, 2),
              c2.reshape(g, r, k2, co).transpose(0, 1, 3, 2)]

        def compose(cs: list[np.ndarray]) -> np.ndarray:
            return np.einsum("giaP,gabQ,gboR->giPQRo", *cs).reshape(x.shape)
        err_lr = ((compose(lr) - x) ** 2).reshape(g, -1).sum(axis=1)
        err_rl = ((compose(rl) - x) ** 2).reshape(g, -1).sum(axis=1)
        pick = (err_rl < err_lr)[:, None, None, None]
        cores = [np.where(pick, q, p) for p, q in zip(lr, rl, strict=True)]
    stages = [to_layout(conv.op, _axis_kernel(conv, axis, core))
              for axis, core in zip(axes, cores, strict=True)]
    spec = "gira,grob->gioab" if len(axes) == 2 else "gira,grsb,gsoc->gioabc"
    full = np.einsum(spec, *cores).reshape(t.shape)  # flat axes have extent 1
    return Factorization(stages, to_layout(conv.op, full))
