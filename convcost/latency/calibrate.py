"""`convcost calibrate`: measure this machine with torch and fit a device profile.

The sweep is a fixed grid of generic conv shapes of every kind (dense, pointwise, depthwise,
grouped, small-channel; 1-D, 2-D, 3-D, transposed; tiny ones that expose the per-call overhead),
not the layers of any particular model. Peak is the best dense rate seen, bandwidth a large
tensor copy; efficiencies, overheads and fill constants are fitted (convcost.latency.fit). Imports torch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from convcost import __version__
from convcost.cost import cost_of
from convcost.ir.model import Conv
from convcost.latency.devices import DeviceProfile
from convcost.latency.fit import FitResult, Sample, fit_roofline, fit_sources, physical
from convcost.latency.load import cache_start_mb, machine
from convcost.latency.measure import LoadMonitor, Timing, measure_many, runner, steady_allocator
from convcost.latency.sweep import full_convs, quick_convs, smoke_convs
from convcost.util.progress import Tick


@dataclass(frozen=True)
class Sweep:
    ops: Callable[[], list[Conv]]
    timing: Timing
    copy_mib: int  # bandwidth test: bytes copied per call


#: The full sweep spreads its samples over a minute and the quick one over 15 s (Timing.span_s):
#: a shared host drifts by +-5% over tens of seconds, and a calibration that fell in one phase
#: of it put every later estimate off by that much.
SWEEPS: dict[str, Sweep] = {
    "full": Sweep(full_convs, Timing(warmup=2, repeats=11, cold=True, span_s=60.0), 256),
    "quick": Sweep(quick_convs, Timing(warmup=1, repeats=5, cold=True, span_s=15.0), 128),
    "smoke": Sweep(smoke_convs, Timing(warmup=1, repeats=1, cold=True), 8),
}


def machine_description() -> str:
    """The machine and the torch build, as a person would write them down."""
    return f"{machine()}, torch {torch.__version__}"


def bandwidth_gbs(mib: int, timing: Timing) -> float:
    """Copy bandwidth: `mib` MiB read and written per call, median of `timing.repeats` samples."""
    n = mib * 2**20 // 4
    src, dst = torch.rand(n), torch.empty(n)
    ms = measure_many([lambda: dst.copy_(src)], timing).ms[0]
    return 2 * n * 4 / (ms * 1e-3) / 1e9


@dataclass
class Calibration:
    """Everything `calibrate` learned: the fitted roofline, the raw points and the conditions."""

    fit: FitResult
    samples: list[Sample]
    peak_gflops: float
    bandwidth_gbs: float
    threads: int
    clock: str
    machine: str
    date: str
    others: float | None  # share of CPU other processes used while we measured
    sweep: str


def calibrate(sweep: str = "full", threads: int | None = None, clock: str = "wall",
              tick: Tick | None = None) -> Calibration:
    """Measure the sweep on this machine and fit a roofline to it."""
    plan = SWEEPS[sweep]
    steady_allocator()
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    timing = replace(plan.timing, clock=clock)
    monitor = LoadMonitor()
    ops = plan.ops()
    measured = measure_many([runner([op]) for op in ops], timing, tick)
    bandwidth = bandwidth_gbs(plan.copy_mib, Timing(1, max(3, timing.repeats), 0.01, clock=clock))
    return calibration_from(ops, measured.ms, bandwidth, sweep, clock, monitor.others())


def calibration_from(ops: list[Conv], ms: list[float], bandwidth: float, sweep: str, clock: str,
                     others: float | None) -> Calibration:
    """Fit the roofline to the sweep's median times (ms, in `ops` order) and the copy bandwidth."""
    samples = [Sample(op, t) for op, t in zip(ops, ms, strict=True)]
    peak = max(2 * cost_of(s.op).macs / (s.ms * 1e-3) for s in samples) / 1e9
    fit = fit_roofline(samples, peak, bandwidth, cache_mb=cache_start_mb(torch.get_num_threads()))
    roof, peak, bandwidth, _ = physical(fit.roofline, peak, bandwidth)
    fit = FitResult(roof, fit.quality, fit.macs_per_ms)
    return Calibration(fit, samples, peak, bandwidth, torch.get_num_threads(), clock, machine_description(),
                       dt.date.today().isoformat(), others, sweep)


def calibrated_profile(cal: Calibration, name: str = "calibrated", path: str = "<calibrate>") -> DeviceProfile:
    """The device profile `calibrate` writes: every figure says how it was measured or fitted."""
    roof = cal.fit.roofline
    where = f"calibrated on {cal.machine} {cal.date}"
    n = len(cal.samples)
    best = max(cal.samples, key=lambda s: cost_of(s.op).macs / s.ms)
    sources = {
        "peak_gflops.float32": f"{where}: best rate of {n} swept convs ({best.op.name}, {best.ms:.3g} ms)",
        "memory_bandwidth_gbs": f"{where}: torch copy of {SWEEPS[cal.sweep].copy_mib} MiB, median of the samples",
    }
    sources.update(fit_sources(cal.fit, where, "convs"))
    sources["saturation.reduction"] = f"{where}: least-squares fit to all {n} swept convs"
    calibration = {
        "machine": cal.machine, "date": cal.date, "sweep": cal.sweep, "threads": cal.threads, "clock": cal.clock,
        "other_processes_cpu": None if cal.others is None else round(cal.others, 3),
        "macs_per_ms": float(f"{cal.fit.macs_per_ms:.6g}"),
        "points_ms": {s.op.name: float(f"{s.ms:.4g}") for s in cal.samples},
    }
    return DeviceProfile(
        name=name, description=f"Calibrated with convcost {__version__}: {cal.machine}; {cal.threads} torch "
                               f"thread{'s' if cal.threads > 1 else ''}, {cal.clock} clock",
        roofline=roof, path=path, sources=sources, threads=cal.threads, clock=cal.clock, machine=cal.machine,
        calibration=calibration)
