"""The latency model: a roofline per op, with per-kind efficiency and per-call overhead.

    time = overhead[kind] + unfold + max(compute, memory) + beyond_cache
    compute = 2 * MACs / (peak[dtype] * efficiency[kind] * fill(kind, M, N, K))
    memory  = (weight + input + output bytes) / (bandwidth * memory_efficiency[kind])
    unfold  = 2 * K * M * dtype bytes / (bandwidth * memory_efficiency[kind]), for kernels that unfold
              (UNFOLDS, ConvTranspose), else 0
    beyond_cache = max(0, weight bytes - cache) / weight bandwidth, for convs (`WeightCache`), else 0

`kind` is one of KINDS (dense, pointwise, depthwise, grouped, small_channel, ...), decided by
`op_kind`; a kind a profile has no figures for takes its parent's (`lineage`). `fill` is 1
unless a profile sets saturation constants (calibrated profiles do): each factor x / (x + x_half)
says how well a kernel fills the machine when one of the three GEMM dimensions of the conv is
small (`gemm_dims`) -- M output pixels and N output channels per group (x_half per kind), K the
reduction depth C_in/groups * prod(kernel); or, for a kind with a `work` constant, M and the
product N x K (`Saturation`). memory_efficiency is likewise 1 unless a profile sets it. A variant
is priced stage by stage (analysis.py), so its intermediate activation is written by one stage
and read by the next.

This module holds the whole formula; devices.py only loads and checks the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from convcost.cost import bytes_per_element, cost_of
from convcost.ir.model import Conv, MatMul, Op
from convcost.latency.kinds import COLD_KINDS, KIND_RULES, computed_share, gemm_dims, lineage, nearest, op_kind

Bound = Literal["compute", "memory", "overhead"]


@dataclass(frozen=True)
class Estimate:
    """A latency estimate and the roofline bound that decided it."""

    ms: float
    bound: Bound = "compute"



@dataclass(frozen=True)
class Saturation:
    """Half-saturation constants of the fill factor x / (x + half); 0 (or absent) switches a factor off.

    The pixels and out_channels constants are per kind (a kind without one takes its parent's):
    kernels block over output pixels and channels differently. A direct 3x3 kernel wastes most of
    its register tile on a 7x7 map while a 1x1 conv flattened into a matrix product hardly
    notices; over output channels, the reference machine's fit puts the half point at about 10
    for a direct (oneDNN) conv and about 45 for vol2col's GEMM.

    A kind may instead have a `work` constant: one factor over N x K, the MACs per output pixel,
    in place of the separate out_channels and reduction factors. On the reference machine a
    dense 3x3 conv on a 56x56 map runs at 70 GFLOP/s for 32 -> 32 channels (N x K = 9,216) but at
    88-91 for 32 -> 128, 64 -> 64 and 128 -> 32 (all 36,864): N and K trade against each other,
    which a product of two factors cannot say (it prices DenseNet's 128 -> 32 growth convs like
    32 -> 32 ones, 20% too slow). Whichever form the nearest kind in the lineage states applies
    (work, where a kind states both).
    """

    pixels: dict[str, float] = field(default_factory=dict)
    out_channels: dict[str, float] = field(default_factory=dict)
    reduction: float = 0.0
    work: dict[str, float] = field(default_factory=dict)

    #: The constants given per kind; the rest are one figure.
    PER_KIND: ClassVar[tuple[str, ...]] = ("pixels", "out_channels", "work")

    def uses_work(self, kind: str) -> bool:
        """Whether the nearest kind in `kind`'s lineage with a channel constant gives a work one."""
        for k in lineage(kind):
            if k in self.work or k in self.out_channels:
                return k in self.work
        return False

    def fill(self, kind: str, m: int, n: int, k: int, pixels: bool = True) -> float:
        """The product of the factors; `pixels=False` leaves out the pixel factor (see `terms`)."""
        factors = [(m, nearest(self.pixels, kind, 0.0) if pixels else 0.0)]
        if self.uses_work(kind):
            factors.append((n * k, nearest(self.work, kind, 0.0)))
        else:
            factors += [(n, nearest(self.out_channels, kind, 0.0)), (k, self.reduction)]
        f = 1.0
        for x, half in factors:
            if half > 0:
                f *= x / (x + half)
        return f


@dataclass(frozen=True)
class WeightCache:
    """A conv's weights beyond what the core's cache holds arrive from the next level, and the
    kernel does not hide that read behind its arithmetic.

    The roofline's max(compute, memory) assumes it does, which holds while the weights fit in
    cache; a conv with more weights than that on a small map (ResNet's last stage: 9.4 MB of
    weights, each used by 49 output pixels) runs 10-20% slower than its compute. On a 2-vCPU Xeon
    VM with 2 MB of L2 per core, onnxruntime's 512 -> 2048 1x1 conv on a 7x7 map takes 0.66 ms
    where its compute and the other 1x1 convs imply 0.53, and a 512 -> 512 3x3 one 1.59 ms for 1.44.
    `calibrate` fits both figures with the rest of the roofline, starting from the machine's cache.
    """

    cache_mb: float  # weight bytes a conv keeps in cache, in units of 1e6
    bandwidth_gbs: float  # the rate the rest arrive at, in units of 1e9 bytes/s
    #: How many swept convs had more weights than the cache (a fit's evidence; 0 when read from a file).
    convs: int = field(default=0, compare=False)

    def seconds(self, weight_bytes: int) -> float:
        return max(0.0, weight_bytes - self.cache_mb * 1e6) / (self.bandwidth_gbs * 1e9)


@dataclass(frozen=True)
class Roofline:
    """The figures of one device, in the units the formula uses."""

    peak_gflops: dict[str, float]  # dense FLOP/s (int8: OP/s) per dtype, in units of 1e9
    bandwidth_gbs: float  # bytes/s to and from main memory, in units of 1e9
    efficiency: dict[str, float]  # per kind, 0 < e (share of peak reached)
    overhead_us: dict[str, float]  # per kind, fixed time per op call
    saturation: Saturation = field(default_factory=Saturation)
    #: Per kind, the share of `bandwidth_gbs` an op's own traffic moves at (1 where neither the kind nor
    #: its parents have one). A large copy streams; a conv that finds its input and weights cold reads
    #: them at a fraction of that: on the reference machine depthwise convs move 6-8 GB/s against a
    #: 17-18 GB/s copy, so a stride-2 one takes 0.6 of its stride-1 twin's time, not the 0.25 of its MACs.
    memory_efficiency: dict[str, float] = field(default_factory=dict)
    #: Convs' weights beyond the cache (None: no such term, as in profiles written without one).
    weight_cache: WeightCache | None = None
    #: Microseconds each megabyte of a conv's or matmul's weights adds because a model read them one
    #: run ago, not just before as the sweep did (latency.footprint.ColdWeights at the model's run
    #: time; 0 outside a model, or where the profile has no such figures).
    cold_weights_us_per_mb: float = 0.0

    def memory_share(self, kind: str) -> float:
        return nearest(self.memory_efficiency, kind, 1.0)


@dataclass(frozen=True)
class Terms:
    """The terms of one estimate, in seconds, and what decided it."""

    kind: str
    compute_s: float
    memory_s: float
    overhead_s: float
    unfold_s: float = 0.0  # the column-matrix pass of an unfolding kernel (UNFOLDS), before its GEMM
    beyond_cache_s: float = 0.0  # a conv's weights beyond the cache (WeightCache)
    cold_weights_s: float = 0.0  # its weights as a model's previous run left them (Roofline.cold_weights_us_per_mb)

    @property
    def seconds(self) -> float:
        return (self.overhead_s + self.unfold_s + max(self.compute_s, self.memory_s) + self.beyond_cache_s
                + self.cold_weights_s)

    @property
    def bound(self) -> Bound:
        """The largest term: 'overhead' when the fixed cost outweighs both roofs; the unfold pass,
        the weights beyond the cache and cold weights are memory traffic, so they count with the
        memory roof."""
        memory = self.memory_s + self.unfold_s + self.beyond_cache_s + self.cold_weights_s
        if self.overhead_s > max(self.compute_s, memory):
            return "overhead"
        return "compute" if self.compute_s >= memory else "memory"


class DtypeError(ValueError):
    """The device has no peak for the requested dtype."""


def peak_for(roof: Roofline, dtype: str) -> float:
    try:
        return roof.peak_gflops[dtype]
    except KeyError:
        have = ", ".join(sorted(roof.peak_gflops))
        raise DtypeError(f"no peak figure for {dtype} (it has: {have})") from None


#: Kinds whose kernel first copies its input into a K x M column matrix (vol2col) and then runs
#: one GEMM on it: the matrix is written and read once more, a pass of its own before the GEMM.
#: Its share is about 1/C_out of the compute, so it matters for thin layers: a 16 -> 32 (1,3,3)
#: conv on 8x28x28 spends 0.4 of its 2.2 ms on it here. (oneDNN's direct kernels do not unfold.)
#: A kind's rule decides, not the op's kind: a strided 3-D conv is priced as volumetric_strided and
#: still unfolds where the volumetric_small rule matches it.
UNFOLDS = frozenset({"volumetric_small"})


def unfold_bytes(op: Op, dtype: str) -> int:
    """Bytes the column matrix of an unfolding kernel moves, written and read: K x M elements for
    vol2col; for a ConvTranspose, C_out x prod(kernel) per input pixel, the matrix its GEMM writes
    and col2im then folds into the output (onnxruntime's and PyTorch's native kernels)."""
    if not isinstance(op, Conv):
        return 0
    if op.op == "ConvTranspose":
        inputs = op.input_shape[0] * math.prod(op.input_shape[2:])
        return 2 * op.out_channels * math.prod(op.kernel) * inputs * bytes_per_element(op.dtype or dtype)
    if not any(KIND_RULES[kind].test(op) for kind in UNFOLDS):
        return 0
    m, _, k = gemm_dims(op)
    return 2 * m * k * bytes_per_element(op.dtype or dtype)


def terms(roof: Roofline, op: Op, dtype: str) -> Terms:
    """Compute, memory and overhead time of one op on one device."""
    own = op.dtype or dtype
    cost = cost_of(op, own)
    kind = op_kind(op)
    # A matrix multiply with few rows is a GEMV that BLAS vectorizes across its outputs; the pixel
    # fill describes conv kernels blocked over output pixels, so it does not apply. Its rate is
    # then set by the memory term: it streams the weights.
    fill = roof.saturation.fill(kind, *gemm_dims(op), pixels=not isinstance(op, MatMul))
    rate = peak_for(roof, own) * 1e9 * roof.efficiency[kind] * fill
    compute = 2 * cost.macs * computed_share(op, kind) / rate if cost.macs else 0.0
    # The op's own traffic and its unfold pass move at its kind's share of the bandwidth (the share a
    # raised bandwidth leaves a kind that moved its bytes at the copy's: fit.raise_bandwidth).
    bandwidth = roof.bandwidth_gbs * 1e9 * roof.memory_share(kind)
    beyond = roof.weight_cache.seconds(cost.weight_bytes) if roof.weight_cache and isinstance(op, Conv) else 0.0
    # Kinds whose sweep probes run cold on every visit already read their weights as a model does.
    cold = cost.weight_bytes / 1e6 * roof.cold_weights_us_per_mb * 1e-6 if kind not in COLD_KINDS else 0.0
    return Terms(kind, compute, cost.traffic_bytes / bandwidth, roof.overhead_us[kind] * 1e-6,
                 unfold_bytes(op, own) / bandwidth, beyond, cold)


def estimate(roof: Roofline, op: Op, dtype: str) -> Estimate:
    t = terms(roof, op, dtype)
    return Estimate(t.seconds * 1e3, t.bound)
