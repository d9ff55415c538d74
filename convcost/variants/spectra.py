"""What the variants share to fit a trained weight: the weight group-major, its energy and SVDs.

Every variant's set of expressible kernels is known in closed form, so the best approximation Ŵ
and its relative Frobenius error ‖W − Ŵ‖/‖W‖ come from SVDs (Eckart–Young) of reshapes of the
group-major weight; each variant's own module says which. `LayerSpectra` holds one conv's weight
for all of them, with a memo so the SVDs behind every rank are done once; `Factorization` holds
the runnable factors a variant returns.

Only numpy is used (never torch), so the ONNX and YAML paths stay light; this module is imported
only when a layer has weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from convcost.ir.model import Conv
from convcost.util.errors import InputError

#: Above this smaller matrix side, squared singular values come from the Gram matrix's
#: eigenvalues (about 3x faster than LAPACK's SVD here; absolute error ~1e-7 on the relative error).
GRAM_ABOVE = 384
#: A stack of matrices at least this many times longer than wide (the depthwise variant's
#: C_out x k·k slices) also goes through the small side's Gram matrix: a batched k·k
#: eigenproblem costs a third of a batched tall SVD, with the same ~1e-7 on the relative error.
GRAM_TALL = 8
#: Above this smaller side, `sq_singular_values(single=True)` forms the Gram matrix and its
#: eigenvalues in float32: about twice as fast as float64 (a 1536 x 1536 Gram matrix: 0.17 s
#: against 0.30 s on one core), and for a 384 x 384 matrix four times faster than the SVD.
#: Each value may be off by ~50 float32 epsilons of the largest (6e-6), a sum of many by far less
#: (~1e-7 of the total), so callers use it only for sums well above that (see
#: `spatial_svd.lost_energy`). Below this side, float64 costs little.
SINGLE_ABOVE = 256

#: `group_major` copies this many output channels at a time. The reorder is a transpose (a 1x1
#: conv's C_out x C_in weight becomes C_in x C_out), which numpy does in one pass that reads the
#: source across rows; in blocks of output channels whose source rows stay in cache it is about
#: 8x faster for a 2048 x 1024 weight and 2x for a 512-channel 3x3.
COPY_BLOCK = 64

T = TypeVar("T")
_MISSING = object()


def _eigvalsh_single() -> Callable[[np.ndarray], np.ndarray] | None:
    """LAPACK's float32 symmetric eigenvalue solver (ssyevd), as numpy's own gufunc: numpy.linalg
    computes every type in float64. None where this numpy lacks it (float64 is used then)."""
    try:
        from numpy.linalg import _umath_linalg

        solver = cast(Callable[[np.ndarray], np.ndarray], _umath_linalg.eigvalsh_lo)
        probe = solver(np.eye(2, dtype=np.float32))
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    return solver if probe.dtype == np.float32 else None


_EIGVALSH_SINGLE = _eigvalsh_single()


# --- linear algebra helpers --------------------------------------------------------------------

def sq_singular_values(m: np.ndarray, single: bool = False) -> np.ndarray:
    """Squared singular values, descending, of every matrix in a stack (..., p, q).

    `single`: above SINGLE_ABOVE, in float32 (see there), and not clipped at 0: rounding leaves the
    smallest values a little above or below their true value, and a sum of them stays unbiased only
    with both signs (clipped, a rank-4 1536 x 1536 matrix's tail at rank 1 gains 1.6e-6 on the
    relative error; unclipped, 1e-7). The result is float64 either way; a float32 `m` is taken as is.
    """
    p, q = m.shape[-2:]
    if min(p, q) == 0:
        return np.zeros((*m.shape[:-2], 0))
    if single and min(p, q) > SINGLE_ABOVE and _EIGVALSH_SINGLE is not None:
        m32 = m.astype(np.float32, copy=False)
        mt = np.swapaxes(m32, -1, -2)
        return _EIGVALSH_SINGLE(_column_major(m32 @ mt if p <= q else mt @ m32)).astype(np.float64)[..., ::-1]
    if min(p, q) <= GRAM_ABOVE and max(p, q) < GRAM_TALL * min(p, q):
        s = np.linalg.svd(m.astype(np.float64, copy=False), compute_uv=False)
        return np.asarray(s * s)
    m = m.astype(np.float64, copy=False)
    mt = np.swapaxes(m, -1, -2)
    ev = np.linalg.eigvalsh(_column_major(m @ mt if p <= q else mt @ m))[..., ::-1]
    # Below max(p, q) x eps of the largest (numpy's matrix_rank tolerance, squared values) an
    # eigenvalue is rounding: zero, so an exactly low-rank matrix loses exactly nothing (through
    # the Gram matrix, rounding alone would report ~1e-9 of relative error).
    floor = max(p, q) * np.finfo(np.float64).eps * ev[..., :1]
    return np.where(ev > floor, ev, 0.0)


def _column_major(gram: np.ndarray) -> np.ndarray:
    """A stack of symmetric matrices as the transposed view, which is the same matrices: numpy's
    eigenvalue gufuncs copy their input into LAPACK's column-major layout, and from a row-major
    array that copy reads each column across rows (0.02 s of a 1536 x 1536 float32 solve's 0.17 s); from the
    transposed view it reads memory in order. The triangle LAPACK reads holds the same numbers
    (a Gram matrix from one operand and its transpose is exactly symmetric)."""
    return np.swapaxes(gram, -1, -2)


def tails(sq: np.ndarray) -> np.ndarray:
    """tails[..., r] = energy lost keeping the top r values: sum of sq[..., r:], for r = 0..n."""
    rev = np.cumsum(sq[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([rev, np.zeros((*sq.shape[:-1], 1))], axis=-1)


def tail_at(t: np.ndarray, r: int) -> float:
    """Energy lost at rank r from a summed tails vector (0 beyond full rank)."""
    return float(t[min(r, len(t) - 1)])


def smallest_within(t: np.ndarray, limit: float) -> int:
    """The smallest rank >= 1 whose energy lost in a summed tails vector is <= limit."""
    return int((t[1:] <= limit).argmax()) + 1


def left_basis(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values (descending) and left singular vectors of a stack (..., p, q)."""
    if min(m.shape[-2:]) <= GRAM_ABOVE:
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        return s * s, u
    ev, vec = np.linalg.eigh(m @ np.swapaxes(m, -1, -2))
    return np.clip(ev[..., ::-1], 0.0, None), vec[..., ::-1]


def svd_split(m: np.ndarray, r: int, weight_on: str = "both") -> tuple[np.ndarray, np.ndarray]:
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


# --- the weight, group-major ---------------------------------------------------------------------

def expected_weight_shape(conv: Conv) -> tuple[int, ...]:
    g = conv.groups
    if conv.op == "ConvTranspose":
        return (conv.in_channels, conv.out_channels // g, *conv.kernel)
    return (conv.out_channels, conv.in_channels // g, *conv.kernel)


def group_major(conv: Conv, weight: np.ndarray) -> np.ndarray:
    """The weight as contiguous float64 (g, C_in/g, C_out/g, *k), whatever the op's own layout:
    converted and reordered together (in blocks of COPY_BLOCK output channels), so the variants'
    reshapes of it are views."""
    view = group_major_view(conv, weight)
    out = np.empty(view.shape)
    for start in range(0, view.shape[2], COPY_BLOCK):
        out[:, :, start:start + COPY_BLOCK] = view[:, :, start:start + COPY_BLOCK]
    return out


def group_major_view(conv: Conv, weight: np.ndarray) -> np.ndarray:
    """The weight as (g, C_in/g, C_out/g, *k) in its own dtype, a view where the layout allows."""
    w = np.asarray(weight)
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


# --- one conv's weight, shared by the variants and --rank auto ------------------------------------

@dataclass
class LayerSpectra:
    """One conv's group-major weight `t` and its energy; `memo` keeps what the variants derive
    from it (keyed by variant name first), so every rank and grouping reuses one set of SVDs."""

    conv: Conv
    t: np.ndarray
    energy: float = 0.0
    memo: dict[Hashable, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        flat = self.t.reshape(-1)  # contiguous (group_major): a view
        self.energy = float(np.dot(flat, flat))

    def relative(self, lost: float) -> float:
        """sqrt(lost energy / total): the relative Frobenius error (0 for an all-zero kernel)."""
        return math.sqrt(max(lost, 0.0) / self.energy) if self.energy > 0 else 0.0

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """memo[key], computed by `compute()` the first time it is asked for. A memo entry may be
        a Future (the same value, computed in another thread): it is waited for on first use."""
        value = self.memo.get(key, _MISSING)
        if value is _MISSING:
            value = self.memo[key] = compute()
        elif isinstance(value, Future):
            value = self.memo[key] = value.result()
        return cast(T, value)


# --- the factors themselves: a runnable replacement with exactly the optimal error -------------------

@dataclass(frozen=True)
class Factorization:
    """Weights for each conv of the variant's plan (op layout), and the kernel they compose to."""

    stages: list[np.ndarray]
    kernel: np.ndarray

