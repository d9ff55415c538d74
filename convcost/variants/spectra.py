"""How much of a trained kernel each variant can keep: the optimal relative Frobenius error.

For every variant the set of kernels it can express is known in closed form, so the best
approximation Ŵ and its error ‖W − Ŵ‖/‖W‖ come from SVDs (Eckart–Young):

- spatial, rank R: per group, W as a (C_in/g·k_a) × (C_out/g·k_b) matrix has rank ≤ R/g;
  error = tail singular values. Three axes with extent > 1 (the variant's three 1-D stages)
  form a tensor train of ranks (R, R); TT-SVD in both sweep directions gives an achievable
  error, and the two single unfoldings give a lower bound on the optimum (reported too).
- depthwise, multiplier m: per input channel the C_out × prod(k) slice has rank ≤ m.
- grouped, G groups: the kernel outside the G diagonal blocks is lost; a channel permutation
  heuristic (`convcost.variants.permutation`) is reported beside it.

Only numpy is used (never torch), so the ONNX and YAML paths stay light. Weights are loaded
when the first variant of a layer asks and dropped when the next layer comes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convcost.ir.model import Conv
from convcost.util.errors import InputError
from convcost.variants.base import Approx, VariantOptions, active_axes, spatial_rank
from convcost.variants.permutation import block_labels, dense_energy

#: Above this smaller matrix side, squared singular values come from the Gram matrix's
#: eigenvalues (about 3x faster than LAPACK's SVD here; absolute error ~1e-7 on the relative error).
GRAM_ABOVE = 384

# --- linear algebra helpers --------------------------------------------------------------------

def sq_singular_values(m: np.ndarray) -> np.ndarray:
    """Squared singular values, descending, of every matrix in a stack (..., p, q)."""
    p, q = m.shape[-2:]
    if min(p, q) == 0:
        return np.zeros((*m.shape[:-2], 0))
    if min(p, q) <= GRAM_ABOVE:
        s = np.linalg.svd(m, compute_uv=False)
        return np.asarray(s * s)
    mt = np.swapaxes(m, -1, -2)
    gram = m @ mt if p <= q else mt @ m
    return np.clip(np.linalg.eigvalsh(gram)[..., ::-1], 0.0, None)


def tails(sq: np.ndarray) -> np.ndarray:
    """tails[..., r] = energy lost keeping the top r values: sum of sq[..., r:], for r = 0..n."""
    rev = np.cumsum(sq[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([rev, np.zeros((*sq.shape[:-1], 1))], axis=-1)


def _tail_at(t: np.ndarray, r: int) -> float:
    """Energy lost at rank r from a summed tails vector (0 beyond full rank)."""
    return float(t[min(r, len(t) - 1)])


def _left_basis(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values (descending) and left singular vectors of a stack (..., p, q)."""
    if min(m.shape[-2:]) <= GRAM_ABOVE:
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        return s * s, u
    ev, vec = np.linalg.eigh(m @ np.swapaxes(m, -1, -2))
    return np.clip(ev[..., ::-1], 0.0, None), vec[..., ::-1]


# --- the weight, group-major ---------------------------------------------------------------------

def expected_weight_shape(conv: Conv) -> tuple[int, ...]:
    g = conv.groups
    if conv.op == "ConvTranspose":
        return (conv.in_channels, conv.out_channels // g, *conv.kernel)
    return (conv.out_channels, conv.in_channels // g, *conv.kernel)


def group_major(conv: Conv, weight: np.ndarray) -> np.ndarray:
    """The weight as float64 (g, C_in/g, C_out/g, *k), whatever the op's own layout."""
    w = np.asarray(weight, dtype=np.float64)
    want = expected_weight_shape(conv)
    if w.shape != want:
        raise InputError(f"conv {conv.name}: weight has shape {list(w.shape)}, expected {list(want)}")
    g, ci, co = conv.groups, conv.in_channels // conv.groups, conv.out_channels // conv.groups
    if conv.op == "ConvTranspose":
        return w.reshape(g, ci, co, *conv.kernel)
    return np.swapaxes(w.reshape(g, co, ci, *conv.kernel), 1, 2)


def to_layout(op: str, core: np.ndarray) -> np.ndarray:
    """Group-major (g, in/g, out/g, *k) back to the op's weight layout (inverse of group_major)."""
    g, ci, co, *k = core.shape
    if op == "ConvTranspose":
        return core.reshape(g * ci, co, *k)
    return np.swapaxes(core, 1, 2).reshape(g * co, ci, *k)


def _squeezed(conv: Conv, t: np.ndarray) -> np.ndarray:
    """(g, ci, co, k_a0, k_a1[, k_a2]) over the active axes only (flat axes have extent 1)."""
    return t.reshape(*t.shape[:3], *(conv.kernel[a] for a in active_axes(conv)))


# --- per-layer spectra, computed once and shared by the variants and --rank auto ---------------

@dataclass
class LayerSpectra:
    """Everything about one conv's weight that the error of any rank or grouping needs."""

    conv: Conv
    t: np.ndarray  # group-major weight
    energy: float = 0.0
    _spatial: np.ndarray | None = None
    _tt: dict[int, tuple[float, float]] = field(default_factory=dict)
    _tt_bases: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    _depthwise: np.ndarray | None = None
    _grouped: dict[int, tuple[float, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.energy = float(np.sum(self.t * self.t))

    def relative(self, lost: float) -> float:
        """sqrt(lost energy / total): the relative Frobenius error (0 for an all-zero kernel)."""
        return math.sqrt(max(lost, 0.0) / self.energy) if self.energy > 0 else 0.0

    # spatial, two active axes: one SVD per group gives every rank at once
    def spatial_tails(self) -> np.ndarray:
        if self._spatial is None:
            s = _squeezed(self.conv, self.t)
            g, ci, co, ka, kb = s.shape
            m = s.transpose(0, 1, 3, 2, 4).reshape(g, ci * ka, co * kb)
            self._spatial = tails(sq_singular_values(m)).sum(axis=0)
        return self._spatial

    def spatial_max_rank(self) -> int:
        """Per-group rank beyond which the spatial error is 0."""
        s = _squeezed(self.conv, self.t)
        if s.ndim == 5:
            return min(s.shape[1] * s.shape[3], s.shape[2] * s.shape[4])
        _, ci, co, k0, k1, k2 = s.shape
        return max(min(ci * k0, k1 * k2 * co), min(ci * k0 * k1, k2 * co))

    # spatial, three active axes: a tensor train (C_in,k0) -r- k1 -r- (k2,C_out)
    def spatial_tt(self, r: int) -> tuple[float, float]:
        """(achievable, lower bound) lost energy at per-group rank r: best TT-SVD sweep per group."""
        if r not in self._tt:
            s = _squeezed(self.conv, self.t)
            g, ci, co, k0, k1, k2 = s.shape
            x = s.transpose(0, 1, 3, 4, 5, 2)  # (g, ci, k0, k1, k2, co)
            m1 = x.reshape(g, ci * k0, k1 * k2 * co)
            m2 = x.reshape(g, ci * k0 * k1, k2 * co)
            if self._tt_bases is None:
                ev1, u1 = _left_basis(m1)
                ev2, v2 = _left_basis(np.swapaxes(m2, 1, 2))
                self._tt_bases = (ev1, u1, ev2, v2)
            ev1, u1, ev2, v2 = self._tt_bases
            first_l = tails(ev1)[:, min(r, ev1.shape[1])]
            first_r = tails(ev2)[:, min(r, ev2.shape[1])]
            ur = u1[:, :, :r]
            rest_l = (np.swapaxes(ur, 1, 2) @ m1).reshape(g, ur.shape[2] * k1, k2 * co)
            vr = v2[:, :, :r]
            rest_r = (m2 @ vr).reshape(g, ci * k0, k1 * vr.shape[2])
            second_l = tails(sq_singular_values(rest_l))[:, min(r, min(rest_l.shape[1:]))]
            second_r = tails(sq_singular_values(rest_r))[:, min(r, min(rest_r.shape[1:]))]
            lost = np.minimum(first_l + second_l, first_r + second_r)
            self._tt[r] = (float(lost.sum()), float(np.maximum(first_l, first_r).sum()))
        return self._tt[r]

    def depthwise_tails(self) -> np.ndarray:
        if self._depthwise is None:
            g, ci, co = self.t.shape[:3]
            m = self.t.reshape(g * ci, co, -1)
            self._depthwise = tails(sq_singular_values(m)).sum(axis=0)
        return self._depthwise

    def grouped(self, groups: int, permute: bool) -> tuple[float, float | None]:
        """(lost energy keeping the G diagonal blocks, the same after the permutation heuristic)."""
        if groups not in self._grouped or (permute and self._grouped[groups][1] is None):
            g, ci, co = self.t.shape[:3]
            h = groups // g
            e = (self.t * self.t).reshape(g, ci, co, -1).sum(axis=-1)
            # summed directly (not total - kept), so an exact block structure gives exactly 0
            off = 1.0 - np.eye(h)
            lost = float(np.einsum("gaibj,ab->", e.reshape(g, h, ci // h, h, co // h), off))
            permuted: float | None = None
            if permute:
                dense = dense_energy(e)
                rows, cols = block_labels(dense, groups)
                permuted = float(np.sum(dense, where=rows[:, None] != cols[None, :]))
            self._grouped[groups] = (lost, permuted)
        return self._grouped[groups]


# --- the error functions, one per variant -----------------------------------------------------------

ErrorFn = Callable[[LayerSpectra, VariantOptions, bool], Approx]
ERRORS: dict[str, ErrorFn] = {}


def register_error(name: str) -> Callable[[ErrorFn], ErrorFn]:
    def wrap(fn: ErrorFn) -> ErrorFn:
        ERRORS[name] = fn
        return fn

    return wrap


@register_error("spatial")
def _spatial_error(s: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
    r = spatial_rank(s.conv, options) // s.conv.groups
    if len(active_axes(s.conv)) == 2:
        return Approx(s.relative(_tail_at(s.spatial_tails(), r)))
    lost, bound = s.spatial_tt(r)
    return Approx(s.relative(lost), {"approx_error_lower_bound": s.relative(bound)})


@register_error("depthwise")
def _depthwise_error(s: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
    return Approx(s.relative(_tail_at(s.depthwise_tails(), options.depth_multiplier)))


@register_error("grouped")
def _grouped_error(s: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
    lost, permuted = s.grouped(options.groups, permute)
    extra = {"approx_error_permuted": s.relative(permuted)} if permuted is not None else {}
    return Approx(s.relative(lost), extra)


# --- the factors themselves: a runnable replacement with exactly that error ------------------------

@dataclass(frozen=True)
class Factorization:
    """Weights for each conv of the variant's plan (op layout), and the kernel they compose to."""

    stages: list[np.ndarray]
    kernel: np.ndarray


def _axis_kernel(conv: Conv, axis: int, values: np.ndarray) -> np.ndarray:
    """(..., k_axis) -> (..., *kernel) with extent 1 on every other spatial axis."""
    shape = [1] * conv.rank
    shape[axis] = conv.kernel[axis]
    return values.reshape(*values.shape[:-1], *shape)


def _svd_split(m: np.ndarray, r: int, weight_on: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """m (..., p, q) ≈ left (..., p, r) @ right (..., r, q): truncated SVD, zero-padded to r.

    The singular values go to `weight_on` ("left", "right" or sqrt to "both"); a TT-SVD sweep
    needs the side it leaves behind orthonormal so the next truncation stays optimal.
    """
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    k = min(r, s.shape[-1])
    power = {"left": (1.0, 0.0), "right": (0.0, 1.0), "both": (0.5, 0.5)}[weight_on]
    left = np.zeros((*m.shape[:-2], m.shape[-2], r))
    right = np.zeros((*m.shape[:-2], r, m.shape[-1]))
    left[..., :k] = u[..., :k] * (s[..., :k] ** power[0])[..., None, :]
    right[..., :k, :] = (s[..., :k] ** power[1])[..., :, None] * vt[..., :k, :]
    return left, right


def _factor_spatial(conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
    axes = active_axes(conv)
    r = spatial_rank(conv, options) // conv.groups
    s = _squeezed(conv, t)
    g, ci, co = s.shape[:3]
    ks = [conv.kernel[a] for a in axes]
    x = np.moveaxis(s, 2, -1)  # (g, ci, k_a0, ..., co)
    if len(axes) == 2:
        left, right = _svd_split(x.reshape(g, ci * ks[0], ks[1] * co), r)
        cores = [left.reshape(g, ci, ks[0], r).transpose(0, 1, 3, 2),  # (g, in, out, k)
                 right.reshape(g, r, ks[1], co).transpose(0, 1, 3, 2)]
    else:  # TT-SVD, left to right and right to left; each group keeps its better sweep
        k0, k1, k2 = ks
        a, rest = _svd_split(x.reshape(g, ci * k0, k1 * k2 * co), r, "right")
        b, c = _svd_split(rest.reshape(g, r * k1, k2 * co), r)
        lr = [a.reshape(g, ci, k0, r).transpose(0, 1, 3, 2), b.reshape(g, r, k1, r).transpose(0, 1, 3, 2),
              c.reshape(g, r, k2, co).transpose(0, 1, 3, 2)]
        rest2, c2 = _svd_split(x.reshape(g, ci * k0 * k1, k2 * co), r, "left")
        a2, b2 = _svd_split(rest2.reshape(g, ci * k0, k1 * r), r)
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


def _factor_depthwise(conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
    g, ci, co = t.shape[:3]
    m = options.depth_multiplier
    k = conv.kernel
    left, right = _svd_split(t.reshape(g, ci, co, -1), m)  # (g, ci, co, m), (g, ci, m, K)
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


def _factor_grouped(conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
    g, ci, co = t.shape[:3]
    h = options.groups // g
    blocks = t.reshape(g, h, ci // h, h, co // h, *conv.kernel)
    kept = np.einsum("gaiajk->gaijk", blocks.reshape(g, h, ci // h, h, co // h, -1))
    core = kept.reshape(g * h, ci // h, co // h, *conv.kernel)
    hat = np.zeros_like(blocks)
    for a in range(h):
        hat[:, a, :, a] = blocks[:, a, :, a]
    return Factorization([to_layout(conv.op, core)], to_layout(conv.op, hat.reshape(t.shape)))


FACTORS: dict[str, Callable[[Conv, np.ndarray, VariantOptions], Factorization]] = {
    "spatial": _factor_spatial,
    "depthwise": _factor_depthwise,
    "grouped": _factor_grouped,
}


def factorize(variant: str, conv: Conv, options: VariantOptions | None = None,
              weight: np.ndarray | None = None) -> Factorization:
    """Weights for the convs of `plan_variant(variant, conv, options)` realizing the optimum.

    Uses full SVDs (exact, slower than the error path); meant for exporting a replacement
    and for checking that the reported error is that of a runnable one.
    """
    if weight is None:
        if conv.weight is None:
            raise ValueError(f"conv {conv.name} has no weights")
        weight = conv.weight()
    return FACTORS[variant](conv, group_major(conv, weight), options or VariantOptions())
