"""Fit a device's efficiencies, overheads and fill factors to measured op times (for `calibrate`).

Peak and bandwidth are measured directly (best dense conv rate, a large tensor copy); the rest
of the roofline is fitted by least squares on log(estimate / measured), so a 2x error counts the
same on a 20 us layer as on a 20 ms one. numpy only; Levenberg-Marquardt with a numeric Jacobian
(a dozen parameters, a couple of hundred points).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from convcost.cost import cost_of
from convcost.ir.model import Conv, MatMul, Op
from convcost.latency.kinds import KINDS, computed_share, gemm_dims, lineage, op_kind
from convcost.latency.roofline import Roofline, Saturation, WeightCache, unfold_bytes


@dataclass(frozen=True)
class Sample:
    """One measured op: what ran and its median time."""

    op: Op
    ms: float


@dataclass(frozen=True)
class FitResult:
    roofline: Roofline
    #: Per kind: (points, median |error|, share of points within 25%) on the calibration sweep.
    quality: dict[str, tuple[int, float, float]]
    #: MACs per millisecond of the "time is proportional to MACs" baseline: the sweep's average throughput.
    macs_per_ms: float


def _arrays(samples: Sequence[Sample], dtype: str, work_kinds: tuple[str, ...],
            memory_kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    costs = [cost_of(s.op, dtype) for s in samples]
    dims = np.array([gemm_dims(s.op) for s in samples], dtype=float)
    kinds = [op_kind(s.op) for s in samples]
    return {
        # The MACs a kernel computes (a direct kernel skips rows of padding), and as counted.
        "flops": np.array([2.0 * c.macs * computed_share(s.op, k) for c, s, k in zip(costs, samples, kinds,
                                                                                       strict=True)]),
        "macs": np.array([float(c.macs) for c in costs]),
        "bytes": np.array([float(c.traffic_bytes) for c in costs]),
        "unfold": np.array([float(unfold_bytes(s.op, dtype)) for s in samples]),
        # Weight bytes of the convs (roofline.WeightCache); matrix multiplies have none there.
        "weights": np.array([float(c.weight_bytes) if isinstance(s.op, Conv) else 0.0 for c, s in zip(
            costs, samples, strict=True)]),
        "kind": np.array([KINDS.index(k) for k in kinds]),
        "work_kind": np.array([k in work_kinds for k in kinds]),
        # Which memory share an op takes (its place in memory_kinds), or -1 for the copy's bandwidth.
        "memory_slot": np.array([memory_kinds.index(k) if k in memory_kinds else -1 for k in kinds]),
        # The pixel fill is a conv kernel's (roofline.terms leaves it out for a matrix multiply).
        "pixel_fill": np.array([not isinstance(s.op, MatMul) for s in samples]),
        "m": dims[:, 0], "n": dims[:, 1], "k": dims[:, 2],
        "ms": np.array([s.ms for s in samples]),
    }


#: The fitted refinements of the plain roofline: the fill factors over output pixels, output
#: channels, reduction depth and work per pixel (N x K), and the share of the copy bandwidth
#: ("memory") for MEMORY_KINDS, and the convs' weights beyond the cache ("cache": roofline.WeightCache).
#: `fit_roofline(fills=())` fits efficiencies and overheads alone.
FILLS = ("pixels", "out_channels", "reduction", "work", "memory", "cache")
#: Kinds fitted with the work factor (N x K) instead of separate out_channels and reduction ones
#: (roofline.Saturation says why). Scored offline on seven sets of model measurements against 21
#: calibrations (benchmarks/latency_offline.py), dense alone gives the most models within 10%;
#: adding pointwise gives better layers but fewer whole models, grouped and small-channel worse on both.
WORK_KINDS = ("dense",)
#: Kinds fitted with a memory share (Roofline.memory_efficiency); the rest move their bytes at the
#: copy's bandwidth. Depthwise convs read and write cold data at about half of it. Not every kind:
#: fitted for grouped convs too, the share comes out at 0.15-0.18, explaining the narrow groups'
#: slow compute (a 128 -> 128 conv in 32 groups runs at 9 GFLOP/s) as memory traffic, and prices a
#: 4-group 1x1 conv on a large map as memory-bound at 2.6 GB/s, 80% too slow, so most grouped
#: variants of MobileNet v2's 1x1 convs get the wrong speed-up sign (benchmarks/RESULTS.md).
#: A matrix-vector product (a classifier at batch 1) reads its weights once per run, from memory:
#: in onnxruntime here a 2048 x 1000 one streams them at 13 GB/s, a fifth of a warm copy.
MEMORY_KINDS = ("depthwise", "depthwise_unaligned", "matvec", "matvec_large")


def _layout(fills: tuple[str, ...], memory_shares: int) -> dict[str, slice]:
    """Where each group of parameters sits in the vector: log efficiency and log overhead per kind,
    log pixel halves per kind, one log channel half per kind (over N x K for a work kind, over N
    for the others), one log half for reduction, one log memory share per memory kind, and the log
    cache size and log rate of the weights beyond it."""
    nk, at, out = len(KINDS), 0, {}
    channels = "out_channels" in fills or "work" in fills
    for name, size in (("eff", nk), ("overhead", nk), ("pixels", nk if "pixels" in fills else 0),
                       ("channels", nk if channels else 0), ("reduction", int("reduction" in fills)),
                       ("memory", memory_shares if "memory" in fills else 0),
                       ("cache", 2 if "cache" in fills else 0)):
        out[name] = slice(at, at + size)
        at += size
    return out


def _predict(p: np.ndarray, a: dict[str, np.ndarray], peak: float, bandwidth: float,
             fills: tuple[str, ...], at: dict[str, slice]) -> np.ndarray:
    kind = a["kind"]
    eff = np.exp(p[at["eff"]])[kind]
    overhead = np.exp(p[at["overhead"]])[kind]
    fill = np.ones_like(a["m"])
    if "pixels" in fills:
        fill = np.where(a["pixel_fill"], a["m"] / (a["m"] + np.exp(p[at["pixels"]])[kind]), fill)
    nk = np.ones_like(a["m"])
    if "reduction" in fills:
        nk = a["k"] / (a["k"] + np.exp(p[at["reduction"]][0]))
    if at["channels"].stop > at["channels"].start:
        half = np.exp(p[at["channels"]])[kind]
        if "out_channels" in fills:
            nk = nk * a["n"] / (a["n"] + half)
        work = a["n"] * a["k"]
        nk = np.where(a["work_kind"], work / (work + half), nk)
    fill = fill * nk
    compute = a["flops"] / (peak * eff * fill)
    rate = np.full_like(a["m"], bandwidth)  # what the op's own traffic and its unfold pass move at
    if at["memory"].stop > at["memory"].start:
        slot = a["memory_slot"]
        rate = rate * np.where(slot >= 0, np.exp(p[at["memory"]])[np.maximum(slot, 0)], 1.0)
    memory = a["bytes"] / rate
    beyond = 0.0
    if at["cache"].stop > at["cache"].start:
        cache, weight_rate = np.exp(p[at["cache"]])
        beyond = np.maximum(a["weights"] - cache, 0.0) / weight_rate
    return 1e3 * (overhead + a["unfold"] / rate + np.maximum(compute, memory) + beyond)


def _levenberg_marquardt(residual: Callable[[np.ndarray], np.ndarray], p0: np.ndarray,
                         iters: int = 200) -> np.ndarray:
    p, lam = p0.copy(), 1e-2
    improvement = 0.0
    r = residual(p)
    cost = float(r @ r)
    for _ in range(iters):
        jac = np.empty((r.size, p.size))
        for j in range(p.size):
            dp = np.zeros_like(p)
            dp[j] = 1e-6
            jac[:, j] = (residual(p + dp) - r) / 1e-6
        jtj, jtr = jac.T @ jac, jac.T @ r
        while True:
            step = np.linalg.solve(jtj + lam * (np.diag(np.diag(jtj)) + 1e-9 * np.eye(p.size)), -jtr)
            trial = p + step
            rt = residual(trial)
            ct = float(rt @ rt)
            if ct < cost:
                p, r, lam = trial, rt, max(lam / 3, 1e-9)
                improvement, cost = cost - ct, ct
                break
            lam *= 4
            if lam > 1e9:
                return p
        if improvement < 1e-10 * max(cost, 1e-12):
            break
    return p


def _inherit(p: np.ndarray, at: dict[str, slice], swept: set[int]) -> None:
    """A kind no swept conv measured takes the figures of its nearest measured parent kind
    (a sweep without 3-D convs prices them as dense, not with the fit's starting values).
    Channel constants and memory shares need no copy: an unswept kind is written without one
    (`fit_roofline`), so it takes its parent's through the lineage."""
    for i, kind in enumerate(KINDS):
        if i in swept:
            continue
        home = next((KINDS.index(k) for k in lineage(kind)[1:] if KINDS.index(k) in swept), None)
        if home is None:
            continue
        for group in ("eff", "overhead", "pixels"):
            sl = at[group]
            if sl.stop > sl.start:
                p[sl.start + i] = p[sl.start + home]


def fit_roofline(samples: Sequence[Sample], peak_gflops: float, bandwidth_gbs: float, dtype: str = "float32",
                 extra_peaks: dict[str, float] | None = None, fills: tuple[str, ...] = FILLS,
                 work_kinds: tuple[str, ...] = WORK_KINDS, memory_kinds: tuple[str, ...] = MEMORY_KINDS,
                 cache_mb: float = 1.0) -> FitResult:
    """Fit efficiency and overhead per kind, and the fill constants, to `samples`.

    `fills`, `work_kinds` and `memory_kinds` choose the model's refinements
    (benchmarks/latency_offline.py compares them); `cache_mb` is where the fit of the cache a conv
    keeps its weights in starts (the machine's per-core cache times the threads)."""
    work_kinds = work_kinds if "work" in fills else ()
    memory_kinds = memory_kinds if "memory" in fills else ()
    a = _arrays(samples, dtype, work_kinds, memory_kinds)
    peak, bandwidth = peak_gflops * 1e9, bandwidth_gbs * 1e9
    valid = a["ms"] > 0
    a = {k: v[valid] for k, v in a.items()}

    # The fixed cost of a call cannot exceed the fastest call measured: a kind with a handful of large
    # points could otherwise trade its efficiency for an overhead of milliseconds.
    swept_kinds = sorted(set(a["kind"].tolist()))
    fastest = np.log(np.array([a["ms"][a["kind"] == k].min() * 1e-3 for k in swept_kinds]))

    def residual_from(start: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def residual(p: np.ndarray) -> np.ndarray:
            # A weak pull of every parameter towards its start keeps kinds with few points sane.
            over = np.maximum(p[at["overhead"]][swept_kinds] - fastest, 0.0)
            return np.concatenate([np.log(_predict(p, a, peak, bandwidth, fills, at) / a["ms"]), 0.01 * (p - start),
                                   10.0 * over])

        return residual

    at = _layout(fills, len(memory_kinds))
    size = max(sl.stop for sl in at.values())
    best: np.ndarray | None = None
    best_cost = math.inf
    for eff0, ov0, half0 in ((0.5, 20e-6, 8.0), (0.2, 60e-6, 32.0), (1.0, 5e-6, 2.0)):
        start = np.full(size, math.log(half0))
        start[at["eff"]], start[at["overhead"]] = math.log(eff0), math.log(ov0)
        # N x K: products of two channel-sized numbers
        start[[at["channels"].start + KINDS.index(k) for k in work_kinds]] = math.log(half0 * 500)
        start[at["memory"]] = 0.0  # the copy's bandwidth
        if "cache" in fills:  # the machine's cache, and half the copy's bandwidth beyond it
            start[at["cache"]] = (math.log(cache_mb * 1e6), math.log(bandwidth / 2))
        residual = residual_from(start)
        p = _levenberg_marquardt(residual, start)
        r = residual(p)
        if float(r @ r) < best_cost:
            best, best_cost = p, float(r @ r)
    assert best is not None
    _inherit(best, at, set(a["kind"].tolist()))
    eff = np.exp(best[at["eff"]])
    overhead = np.exp(best[at["overhead"]])
    err = _predict(best, a, peak, bandwidth, fills, at) / a["ms"] - 1
    quality = {}
    for i, kind in enumerate(KINDS):
        e = np.abs(err[a["kind"] == i])
        if e.size:
            quality[kind] = (int(e.size), float(np.median(e)), float(np.mean(e < 0.25)))
    halves = {g: dict(zip(KINDS, np.exp(best[at[g]]).tolist(), strict=False)) for g in ("pixels", "channels")}
    # A kind states the channel constant of its own form; an unswept kind states none and so takes
    # its parent's, whichever form that is (Saturation.uses_work).
    work = set(work_kinds)
    swept = {KINDS[i] for i in set(a["kind"].tolist())}
    saturation = Saturation(
        pixels=halves["pixels"],
        out_channels={k: h for k, h in halves["channels"].items()
                      if k in swept - work and "out_channels" in fills},
        work={k: h for k, h in halves["channels"].items() if k in swept & work},
        reduction=float(np.exp(best[at["reduction"]][0])) if "reduction" in fills else 0.0)
    roof = Roofline(
        peak_gflops={dtype: peak_gflops, **(extra_peaks or {})},
        bandwidth_gbs=bandwidth_gbs,
        efficiency={k: float(eff[i]) for i, k in enumerate(KINDS)},
        overhead_us={k: float(overhead[i] * 1e6) for i, k in enumerate(KINDS)},
        saturation=saturation,
        memory_efficiency={k: share for k, share in zip(memory_kinds, np.exp(best[at["memory"]]).tolist(), strict=True)
                           if k in swept},
        weight_cache=_weight_cache(best, at, a),
    )
    # The baseline's one rate: total MACs over total time of the sweep (its average throughput).
    macs_per_ms = float(np.sum(a["macs"]) / np.sum(a["ms"]))
    return FitResult(roof, quality, macs_per_ms)


def _weight_cache(p: np.ndarray, at: dict[str, slice], a: dict[str, np.ndarray]) -> WeightCache | None:
    """The fitted cache figures, where some swept conv has more weights than the cache: otherwise the
    sweep said nothing about the rate beyond it."""
    if at["cache"].stop == at["cache"].start:
        return None
    cache, rate = np.exp(p[at["cache"]]).tolist()
    beyond = int(np.sum(a["weights"] > cache))
    return WeightCache(cache / 1e6, rate / 1e9, beyond) if beyond else None


def physical(roof: Roofline, peak: float, bandwidth: float) -> tuple[Roofline, float, float, dict[str, float]]:
    """Efficiencies and memory shares are shares of the peak and the bandwidth: where the fit put one
    above 1, the best rate the sweep saw was not the peak -- raise the peak (bandwidth) to the rate the
    fit implies and rescale every share, which leaves every estimate as it was."""
    raised: dict[str, float] = {}
    top = max(roof.efficiency.values())
    if top > 1:
        raised["peak"] = top
        peak *= top
        roof = replace(roof, peak_gflops={d: v * top for d, v in roof.peak_gflops.items()},
                       efficiency={k: v / top for k, v in roof.efficiency.items()})
    top = max(roof.memory_efficiency.values(), default=1.0)
    if top > 1:
        raised["bandwidth"] = top
        bandwidth *= top
        roof = raise_bandwidth(roof, top)
    return roof, peak, bandwidth, raised


def raise_bandwidth(roof: Roofline, factor: float) -> Roofline:
    """The roofline with a `factor` times higher bandwidth and every kind's memory share divided by it:
    a kind that moved its bytes at the old bandwidth (no share of its own) now states 1 / factor, so
    every estimate stays as it was."""
    return replace(roof, bandwidth_gbs=roof.bandwidth_gbs * factor,
                   memory_efficiency={k: roof.memory_share(k) / factor for k in KINDS})


def fit_sources(fit: FitResult, where: str, what: str, overhead_note: str = "") -> dict[str, str]:
    """The `source` of every per-kind figure a calibration fitted: how many swept `what` (convs, ops)
    of the kind the fit saw and how well it matches them, or which kind's figures it took instead.
    `overhead_note` is added to the overheads' sources (what else they include)."""
    sources: dict[str, str] = {}
    for kind in fit.roofline.efficiency:
        count, med, within = fit.quality.get(kind, (0, math.nan, math.nan))
        home = next((k for k in lineage(kind)[1:] if k in fit.quality), None)
        text = (f"{where}: least-squares fit to {count} swept {what} of this kind "
                f"(median |error| {med:.0%}, {within:.0%} within 25%)") if count else \
            f"{where}: no swept {what[:-1]} of this kind; the {home} figures" if home else \
            f"{where}: no swept {what[:-1]} of this kind; starting value of the fit"
        sources[f"efficiency.{kind}"] = text
        sources[f"overhead_us.{kind}"] = text + overhead_note
        for key in (*(f"saturation.{k}" for k in Saturation.PER_KIND), "memory_efficiency"):
            sources[f"{key}.{kind}"] = text
    cache = fit.roofline.weight_cache
    if cache is not None:
        text = (f"{where}: least-squares fit with the rest, to the {cache.convs} swept convs with more weights "
                f"than the cache (fit started from the machine's L2 per core x threads)")
        sources["weight_cache.cache_mb"] = sources["weight_cache.bandwidth_gbs"] = text
    return sources
