"""`convcost calibrate --runtime onnxruntime`: time small ONNX graphs in onnxruntime and fit a profile
whose figures describe onnxruntime on this machine.

What it measures, in one interleaved sampling (convcost.latency.ort_run):
- the conv sweep (convcost.latency.sweep) and a few matmuls, one graph each: each op's own kernel
  time from onnxruntime's profiler (layout reorders it inserts around a lone conv are not the conv's),
  on the fourth of four runs back to back per visit (ort_run.SAMPLED_RUN): the op as it runs with its
  data in cache. The first run of a visit finds it cold (a cold depthwise conv takes twice its
  in-model time), the second partly so. Where a model's data does not stay in cache, the footprint
  figures (below) slow its memory traffic down from there.
- each op family (convcost.cost.nodes.FAMILIES) at a few sizes: per-call overhead and the share of
  the bandwidth its traffic moves at;
- two chains of small Adds: the executor's cost per node, and per `run` call, and what the profiler
  adds to each kernel time it reports (taken off every probe's time before the fit);
- for each conv fusion convcost models, graphs a, b and a -> b: the fusion counts as applied when
  T(a) + T(b) - T(a -> b) > 0.5 x min(T(a), T(b)) (nn-Meter's rule), times net of the run overhead;
- after the sampling, one op of each family (and a depthwise conv) after a producer, run once after
  graphs touching 8 to 768 MB, over its time alone as the sweep takes it: how much faster or slower
  memory traffic moves in models that touch that much (convcost.latency.ort_footprint).

Peak is the best conv rate seen and bandwidth the best rate of a memory-bound op; where the fit
puts a kind above them, they are raised to what the fit implies (efficiencies stay shares of a peak).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from convcost import __version__
from convcost.cost import cost_of
from convcost.cost.nodes import node_work
from convcost.ir.model import Conv, MatMul
from convcost.latency.devices import DeviceProfile
from convcost.latency.fit import FitResult, Sample, fit_roofline, fit_sources, physical, raise_bandwidth
from convcost.latency.footprint import ColdWeights, Footprint
from convcost.latency.fusions import NCHWC
from convcost.latency.graph import ACTIVATION_PASS, RUN, FamilyFigures
from convcost.latency.kinds import COLD_KINDS, op_kind
from convcost.latency.layouts import ADDED_OPS
from convcost.latency.load import cache_start_mb, machine
from convcost.latency.ort_footprint import (
    ALONE,
    ColdTimes,
    FootprintTimes,
    measure_cold_weights,
    measure_footprint,
    rest_sessions,
)
from convcost.latency.ort_graphs import (
    BLOCKED_KERNELS,
    COLD_CHAINS,
    COLD_CONV,
    FOOTPRINT_MB,
    FOOTPRINT_SIZE,
    Probe,
    chain_probe,
    conv_probe,
    family_probes,
    fusion_probes,
    matmul_probe,
    pair_conv,
    sweep_matmuls,
)
from convcost.latency.ort_run import (
    INSERTED_OPS,
    SAMPLED_RUN,
    OrtTiming,
    Session,
    make_session,
    node_medians,
    runtime_info,
    share_threads,
    time_sessions,
)
from convcost.latency.sweep import full_convs, quick_convs, smoke_convs

CHAIN = 40


@dataclass(frozen=True)
class OrtSweep:
    convs: Callable[[], list[Conv]]
    matmul_step: int  # every n-th of sweep_matmuls
    family_step: int  # every n-th of the family sizes
    timing: OrtTiming
    footprint_mb: tuple[float, ...] = FOOTPRINT_MB  # the footprints it times ops at
    cold_chains: tuple[int, ...] = COLD_CHAINS  # the lengths of the weight chains it times


#: Runs per visit, and the ones before the sampled run (ort_run.SAMPLED_RUN).
_VISIT = {"burst": SAMPLED_RUN + 1, "settle": SAMPLED_RUN}
#: full: about 100 s in all (sessions, warm-up, a 60 s span); quick: under 30 s; smoke: for tests.
ORT_SWEEPS: dict[str, OrtSweep] = {
    "full": OrtSweep(full_convs, 1, 1, OrtTiming(warmup=3, repeats=9, span_s=60.0, **_VISIT)),
    "quick": OrtSweep(quick_convs, 1, 3, OrtTiming(warmup=2, repeats=5, span_s=12.0, **_VISIT), (8.0, 256.0),
                      (4, 12)),
    "smoke": OrtSweep(lambda: smoke_convs()[:4], 6, 3, OrtTiming(warmup=1, repeats=2, **_VISIT), (8.0, 32.0), (2,)),
}


@dataclass
class OrtCalibration:
    """What the onnxruntime calibration measured and fitted."""

    fit: FitResult
    samples: list[Sample]
    families: dict[str, FamilyFigures]
    family_quality: dict[str, tuple[int, float]]  # family -> (points, median |error|)
    fusions: dict[str, dict[str, float]]  # fusion -> {a_ms, b_ms, ab_ms, saved_share}
    applied: list[str]
    peak_gflops: float
    bandwidth_gbs: float
    node_gap_us: float
    run_overhead_us: float
    threads: int
    machine: str
    date: str
    others: float | None
    sweep: str
    raised: dict[str, float]  # "peak"/"bandwidth" -> the factor the fit raised it by
    #: What the profiler adds to each kernel time it reports, taken off before the fit.
    profiler_bias_us: float = 0.0
    #: How memory traffic's time changes with a model's footprint, and the times it comes from.
    footprint: FootprintTimes = field(default_factory=FootprintTimes)
    #: What a conv's weights add inside models of a given run time, and the times it comes from.
    cold: ColdTimes = field(default_factory=ColdTimes)
    #: Families whose probes all measured no time after the profiler's bias: the profile has no
    #: figures of theirs (their ops take their parent family's, or the defaults).
    unfitted: list[str] = field(default_factory=list)


def _probe_ms(session: Session, warmup: int, op: str | None = None, bias: float = 0.0) -> float:
    """The op's own kernel time: every node's median but the layout reorders onnxruntime inserts
    (or, given `op`, only the nodes of that op type, or of its blocked kernel: a reorder for the
    `layout` family's probe), each less the profiler's own `bias` per kernel."""
    medians = node_medians(session, warmup)
    ops = session.ops
    wanted = {op, BLOCKED_KERNELS[op]} if op in BLOCKED_KERNELS else {op}
    return sum(max(ms - bias, 0.0) for name, ms in medians.items()
               if (ops.get(name) not in INSERTED_OPS if op is None else ops.get(name) in wanted))


def _kernels(session: Session) -> int:
    """Kernel calls per run (reorders aside), from the profiler."""
    return sum(1 for name in session.kernel_ms() if session.ops.get(name) not in INSERTED_OPS)


def _fit_family(points: Sequence[tuple[int, int, float, float]], bandwidth: float) -> tuple[float, float, float]:
    """Least squares in relative error of t = steps x o + max(bytes / (bw x e), compute) over a family's
    points (bytes, steps, compute_ms, ms): returns (overhead_us, memory efficiency, median |error|)."""
    b = np.array([p[0] for p in points], float)
    steps = np.array([p[1] for p in points], float)
    compute = np.array([p[2] for p in points], float) * 1e-3
    t = np.array([p[3] for p in points], float) * 1e-3

    def predict(o: float, e: float) -> np.ndarray:
        return steps * o + np.maximum(b / (bandwidth * e), compute)

    best, best_err = (1e-6, 1.0), math.inf
    for e in np.geomspace(0.005, 4.0, 120):
        # for a fixed e the overhead is the weighted median-ish solution of a 1-D problem: scan it
        rest = t - np.maximum(b / (bandwidth * e), compute)
        candidates = np.clip(np.concatenate([rest / steps, [0.0]]), 0.0, None)
        for o in np.unique(candidates):
            err = float(np.sum(np.log(predict(o, e) / t) ** 2)) if np.all(predict(o, e) > 0) else math.inf
            if err < best_err:
                best, best_err = (float(o), float(e)), err
    o, e = best
    med = float(np.median(np.abs(predict(o, e) / t - 1)))
    return o * 1e6, e, med


def _pass_share(ms: float, bandwidth_gbs: float) -> float | None:
    """The bandwidth share of a fused HardSwish's pass over the pair conv's output that took `ms`
    (its bytes in and out, as graph.py prices the pass); None where noise left it no time, or less
    than the bandwidth allows (the profile then prices no pass)."""
    if ms <= 0:
        return None
    share = 2 * math.prod(pair_conv().output_shape) * 4 / (bandwidth_gbs * 1e9 * ms * 1e-3)
    return share if share <= 1 else None


def calibrate_ort(sweep: str = "full", threads: int | None = None,
                  tick: Callable[[int, int], None] | None = None) -> OrtCalibration:
    """Time the sweep in onnxruntime with `threads` intra-op threads (default: all cores) and fit."""
    from convcost.latency.ort_run import all_cores

    plan = ORT_SWEEPS[sweep]
    threads = threads or all_cores()
    share_threads(threads)
    convs = plan.convs()
    probes: list[Probe] = [conv_probe(c) for c in convs]
    probes += [matmul_probe(m) for m in sweep_matmuls(plan.matmul_step)]
    probes += family_probes(plan.family_step)
    profiled = [make_session(p.model, threads, profiling=True) for p in probes]
    for p, s in zip(probes, profiled, strict=True):
        if isinstance(p.op, MatMul) and op_kind(p.op) in COLD_KINDS:
            s.burst = 1  # weights beyond the cache are read from memory on every run of a model
    chains = {n: make_session(chain_probe(n), threads) for n in (1, CHAIN)}
    chains_profiled = {n: make_session(chain_probe(n), threads, profiling=True) for n in (1, CHAIN)}
    fusion = fusion_probes()
    fusion_sessions = [make_session(m, threads) for f in fusion for m in (f.a, f.b, f.ab)]
    fusion_counts = [make_session(m, threads, profiling=True) for f in fusion for m in (f.a, f.b, f.ab)]
    for s in fusion_counts:
        s.run()
    # A fused activation's pass over its conv's output (ACTIVATION_PASS): conv -> conv, and conv ->
    # HardSwish -> conv, profiled; kernel medians are steadier than the walls' difference at 2 threads.
    hardswish = next(f for f in fusion if f.fusion == "conv_hardswish")
    passes = [make_session(m, threads, profiling=True) for m in (hardswish.a, hardswish.ab)]
    sessions = [*profiled, *chains.values(), *chains_profiled.values(), *fusion_sessions, *passes]
    timed = time_sessions(sessions, plan.timing, tick)
    walls = timed.medians()
    warm = plan.timing.warmup

    # The executor: a run of n Adds costs R + n x (k + gap); k is the Add's own kernel time. The
    # profiler reports whole microseconds and times itself too: where its Add (a 512-element one) takes
    # longer than a node of the unprofiled chain does, kernel and executor together, the difference is
    # its bias, taken off every kernel time it reports (1.6 us here, at 1 thread: 106 kernels of
    # MobileNetV3-small add up to 1.81 ms profiled, the model runs in 1.59 ms).
    n_probes = len(profiled)
    w1, wk = walls[n_probes], walls[n_probes + 1]
    kk = _probe_ms(chains_profiled[CHAIN], warm) / CHAIN
    per_node = (wk - w1) / (CHAIN - 1)
    bias = max(kk - per_node, 0.0)
    gap = max(per_node - kk, 0.0)
    k1 = _probe_ms(chains_profiled[1], warm, bias=bias)
    run = max(w1 - k1 - gap, 0.0)
    probe_ms = [_probe_ms(s, warm, p.target.op if p.family else None, bias)
                for p, s in zip(probes, profiled, strict=True)]

    # Fusions: a -> b runs fewer kernels than a and b apart (the profiler's count), and the times
    # (net of the run overhead) show what it saves.
    fusion_walls = walls[n_probes + 4: n_probes + 4 + len(fusion_sessions)]
    checks: dict[str, dict[str, float]] = {}
    applied = ["constant_folding", "eliminate_identity"]  # applied at every optimization level above none
    for i, f in enumerate(fusion):
        a, b, ab = (max(w - run, 1e-6) for w in fusion_walls[3 * i: 3 * i + 3])
        ka, kb, kab = (_kernels(s) for s in fusion_counts[3 * i: 3 * i + 3])
        saved = (a + b - ab) / min(a, b)
        checks[f.fusion] = {"a_ms": round(a, 5), "b_ms": round(b, 5), "ab_ms": round(ab, 5),
                            "saved_share_of_min": round(saved, 3), "kernels_a_b": ka + kb, "kernels_ab": kab}
        if kab < ka + kb:
            applied.append(f.fusion)

    # The blocked layout: onnxruntime reorders a lone conv's input or output where it runs NCHWc.
    if any(op in ADDED_OPS for s in profiled for op in s.ops.values()):
        applied.append(NCHWC)

    op_samples = [Sample(p.op, ms) for p, ms in zip(probes, probe_ms, strict=True) if p.op is not None and ms > 0]
    peak = max(2 * cost_of(s.op).macs / (s.ms * 1e-3) for s in op_samples) / 1e9
    family_points: dict[str, list[tuple[int, int, float, float]]] = {}
    rates = []
    for p, ms in zip(probes, probe_ms, strict=True):
        if p.family is None or ms <= 0:
            continue
        work = node_work(p.target)
        assert work is not None
        compute = 2 * work.macs / (peak * 1e9) * 1e3 if work.macs else 0.0
        family_points.setdefault(p.family, []).append((work.bytes, work.steps, compute, ms))
        if p.family in ("elementwise", "data_movement") and work.bytes:
            rates.append(work.bytes / (ms * 1e-3))
    bandwidth = max(rates) / 1e9
    fit = fit_roofline(op_samples, peak, bandwidth, cache_mb=cache_start_mb(threads))
    roof, peak, bandwidth, raised = physical(fit.roofline, peak, bandwidth)
    families: dict[str, FamilyFigures] = {}
    quality: dict[str, tuple[int, float]] = {}
    top_share = 1.0
    fitted = {}
    for family, points in family_points.items():
        if family == "view":
            overhead = statistics.median(p[3] for p in points) * 1e3
            fitted[family] = (overhead, 1.0, 0.0)
        else:
            fitted[family] = _fit_family(points, bandwidth * 1e9)
        top_share = max(top_share, fitted[family][1])
    if top_share > 1:  # as for convs: the best copy rate seen was not the bandwidth
        raised["bandwidth"] = raised.get("bandwidth", 1.0) * top_share
        bandwidth *= top_share
        roof = raise_bandwidth(roof, top_share)
    for family, (overhead, share, med) in fitted.items():
        families[family] = FamilyFigures(overhead + gap * 1e3, share / top_share)
        quality[family] = (len(family_points[family]), med)
    families[RUN] = FamilyFigures(run * 1e3)
    plain, fused = (_probe_ms(s, warm, bias=bias) for s in passes)
    checks["conv_hardswish"]["pass_ms"] = round(fused - plain, 5)
    pass_share = _pass_share(fused - plain, bandwidth)
    if pass_share is not None:
        families[ACTIVATION_PASS] = FamilyFigures(0.0, pass_share)
    gap_us = gap * 1e3
    roof = replace(roof, overhead_us={k: v + gap_us for k, v in roof.overhead_us.items()})
    fit = FitResult(roof, fit.quality, fit.macs_per_ms)
    # The sweep's sessions go first: the footprint graphs and weight chains reuse their memory (on a
    # virtual machine, memory a process touches for the first time can cost seconds per GB).
    del profiled, chains, chains_profiled, fusion_sessions, fusion_counts, passes, sessions, s
    rests = rest_sessions(threads, plan.footprint_mb)
    footprint = measure_footprint(threads, plan.timing.repeats, plan.footprint_mb, bias, rests=rests)
    cold = measure_cold_weights(threads, plan.timing.repeats, bias, lengths=plan.cold_chains,
                                sizes=plan.footprint_mb, flush=rests[max(rests)])
    unfitted = sorted({p.family for p in probes if p.family} - set(family_points))
    return OrtCalibration(fit, op_samples, families, quality, checks, applied, peak, bandwidth, gap_us, run * 1e3,
                          threads, machine(), dt.date.today().isoformat(), timed.others, sweep, raised, bias * 1e3,
                          footprint, cold, unfitted)


def ort_profile(cal: OrtCalibration, name: str = "calibrated", path: str = "<calibrate>") -> DeviceProfile:
    """The profile `calibrate --runtime onnxruntime` writes: every figure says how it was measured or fitted."""
    roof = cal.fit.roofline
    runtime = runtime_info(cal.threads)
    where = f"calibrated on {cal.machine}, onnxruntime {runtime['version']}, {cal.threads} thread(s), {cal.date}"
    n = len(cal.samples)
    raised = {k: f" (raised x{v:.3g} to the rate the fit implies)" for k, v in cal.raised.items()}
    sources = {
        "peak_gflops.float32": f"{where}: best kernel rate of {n} swept convs and matmuls{raised.get('peak', '')}",
        "memory_bandwidth_gbs": f"{where}: best rate of the elementwise and copy probes{raised.get('bandwidth', '')}",
    }
    gap = f"; includes {cal.node_gap_us:.3g} us of executor time per node" + (
        f", kernel times less the profiler's {cal.profiler_bias_us:.3g} us per kernel" if cal.profiler_bias_us else "")
    sources.update(fit_sources(cal.fit, where, "ops", overhead_note=gap))
    sources["saturation.reduction"] = f"{where}: least-squares fit to all {n} swept ops"
    for family in cal.families:
        if family == RUN:
            sources[f"ops.{RUN}.overhead_us"] = (f"{where}: a 1-node graph's run time minus its kernel and executor "
                                                 f"time (chains of 1 and {CHAIN} Adds)")
            continue
        if family == ACTIVATION_PASS:
            c, hw = pair_conv().output_shape[1:3]
            sources[f"ops.{family}.overhead_us"] = f"{where}: none (the pass runs inside the conv's call)"
            sources[f"ops.{family}.memory_efficiency"] = (
                f"{where}: a 1x1 conv's kernel with HardSwish fused, less without it ({c} channels, {hw}x{hw}; "
                f"{cal.fusions['conv_hardswish']['pass_ms']} ms)")
            continue
        count, med = cal.family_quality[family]
        text = f"{where}: fit to {count} probe graphs (median |error| {med:.0%})"
        sources[f"ops.{family}.overhead_us"] = text + gap
        sources[f"ops.{family}.memory_efficiency"] = text
    c, hw = FOOTPRINT_SIZE
    for key, points in cal.footprint.shares.items():
        us = cal.footprint.us[key]
        for mb, _ in points:
            sources[f"footprint.{key}.{mb:g}"] = (
                f"{where}: {cal.footprint.ops[key]} on a {c}-channel {hw}x{hw} map after a 1x1 conv, once after a "
                f"graph touching {mb:g} MB ({us[f'{mb:g}']} us), over its time alone in the sweep ({us['sweep']} us)")
    cold_mb = cal.cold.weight_mb
    for length, (run_ms, _) in cal.cold.chains.items():
        us = cal.cold.us[length]
        if length == ALONE:
            sources[f"cold_weights.{run_ms:.3g}"] = (
                f"{where}: the {COLD_CONV[0]}->{COLD_CONV[0]} 3x3 conv on a {COLD_CONV[1]}x{COLD_CONV[1]} map "
                f"alone, as the sweep times it ({us['sweep']} us a run): its weights add nothing there")
            continue
        sources[f"cold_weights.{run_ms:.3g}"] = (
            f"{where}: a {COLD_CONV[0]}->{COLD_CONV[0]} 3x3 conv on a {COLD_CONV[1]}x{COLD_CONV[1]} map "
            f"({cold_mb:.3g} MB of weights) inside a chain of {length} such convs that runs {run_ms:.3g} ms: "
            f"{us['inside']} us, against {us['sweep']} us alone in the sweep, per MB of its weights")
    calibration: dict[str, Any] = {
        "machine": cal.machine, "date": cal.date, "sweep": cal.sweep, "threads": cal.threads,
        "other_processes_cpu": None if cal.others is None else round(cal.others, 3),
        "macs_per_ms": float(f"{cal.fit.macs_per_ms:.6g}"),
        "node_overhead_us": round(cal.node_gap_us, 3), "run_overhead_us": round(cal.run_overhead_us, 3),
        "profiler_bias_us": round(cal.profiler_bias_us, 3),
        "fusion_checks": cal.fusions,
        "footprint_us": cal.footprint.us,
        "cold_weights_us": cal.cold.us,
        "points_ms": {s.op.name: float(f"{s.ms:.4g}") for s in cal.samples},
    }
    return DeviceProfile(
        name=name, description=f"Calibrated with convcost {__version__}: {cal.machine}; onnxruntime "
                               f"{runtime['version']} CPUExecutionProvider, {cal.threads} intra-op "
                               f"thread{'s' if cal.threads > 1 else ''}",
        roofline=roof, path=path, sources=sources, threads=cal.threads, clock="wall", machine=cal.machine,
        calibration=calibration, runtime=runtime, fusions=tuple(cal.applied), ops=dict(cal.families),
        footprint=Footprint(cal.footprint.shares) if cal.footprint.shares else None,
        cold_weights=ColdWeights(cal.cold.points) if cal.cold.points else None)


__all__ = ["ORT_SWEEPS", "OrtCalibration", "calibrate_ort", "ort_profile"]
