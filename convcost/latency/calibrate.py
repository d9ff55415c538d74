"""`convcost calibrate`: measure this machine with torch and fit a device profile.

The sweep is a fixed grid of generic conv shapes of every kind (dense, pointwise, depthwise,
grouped, small-channel; 1-D, 2-D, 3-D, transposed; tiny ones that expose the per-call overhead),
not the layers of any particular model. Peak is the best dense rate seen, bandwidth a large
tensor copy; efficiencies, overheads and fill constants are fitted (convcost.latency.fit). Imports torch.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from convcost import __version__
from convcost.cost import cost_of
from convcost.ir.model import Conv, ConvOp
from convcost.ir.shapes import make_conv
from convcost.latency.devices import DeviceProfile
from convcost.latency.fit import FitResult, Sample, fit_roofline
from convcost.latency.kinds import lineage
from convcost.latency.measure import LoadMonitor, Timing, measure_many, runner, steady_allocator
from convcost.latency.roofline import Saturation
from convcost.util.progress import Tick


def _conv(cin: int, cout: int, k: int, hw: int, stride: int = 1, groups: int = 1, rank: int = 2,
          op: ConvOp = "Conv", depth: int | None = None) -> Conv:
    """A conv on a square (cubic) map of side `hw`; a 3-D one may have its own `depth` (frames)."""
    pad = (k - 1) // 2
    kind = op
    spatial = (hw,) * rank if depth is None else (depth,) + (hw,) * (rank - 1)
    where = "x".join(map(str, spatial)) if depth else str(hw)
    return make_conv(
        name=f"{kind}{rank}d {cin}->{cout} k{k} s{stride} g{groups} @{where}", op=kind,
        input_shape=(1, cin) + spatial, out_channels=cout, kernel=(k,) * rank, stride=(stride,) * rank,
        padding=(pad,) * (2 * rank), groups=groups,
        output_padding=(stride - 1,) * rank if kind == "ConvTranspose" else None)


def _full() -> list[Conv]:
    ops: list[Conv] = []
    # Dense 3x3: channels x resolution, as deep nets shrink the map while adding channels.
    for c in (16, 32, 64, 128, 256, 512, 1024):
        for hw in (7, 14, 28, 56, 112, 224):
            if 4 <= c * hw <= 8192 and c * c * hw * hw * 9 <= 2e9:
                ops.append(_conv(c, c, 3, hw))
    ops += [_conv(c, 2 * c, 3, hw, stride=2) for c, hw in ((32, 112), (64, 56), (128, 28), (256, 14), (512, 14))]
    ops += [_conv(64, 192, 5, 28), _conv(48, 128, 5, 56), _conv(32, 64, 7, 56, stride=2), _conv(128, 128, 7, 14)]
    # Channel counts that change by 4x (bottlenecks, dense-block growth, branch heads): few outputs
    # over a deep reduction, and the reverse; the grid above only has C_out = C_in (or 2 C_in).
    ops += [_conv(c, c // 4, 3, hw) for c, hw in ((64, 112), (128, 56), (256, 28), (512, 14), (1024, 7))]
    ops += [_conv(c // 4, c, 3, hw) for c, hw in ((128, 56), (512, 14))]
    # Pointwise: expansions, projections and square ones, small to large maps.
    for cin, cout in ((16, 64), (64, 16), (64, 64), (32, 192), (192, 32), (128, 512), (512, 128), (256, 256),
                      (256, 1024), (1024, 256), (512, 2048), (2048, 512), (960, 160), (160, 960)):
        for hw in (7, 14, 28, 56, 112):
            if cin * cout * hw * hw <= 8e8 and min(cin, cout) * hw >= 256:
                ops.append(_conv(cin, cout, 1, hw))
    ops += [_conv(512, 128, 1, 1), _conv(128, 512, 1, 1), _conv(1024, 1024, 1, 1)]
    # Depthwise 3x3 and 5x5, stride 1 and 2.
    for c in (16, 32, 64, 128, 256, 512, 1024):
        for hw in (7, 14, 28, 56, 112):
            if 1024 <= c * hw <= 16384:
                ops.append(_conv(c, c, 3, hw, groups=c))
                if hw >= 14:
                    ops.append(_conv(c, c, 3, hw, stride=2, groups=c))
    ops += [_conv(c, c, 5, hw, groups=c) for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7), (1024, 7))]
    ops += [_conv(c, c, 5, hw, stride=2, groups=c) for c, hw in ((96, 56), (384, 14))]
    # Grouped: few to many channels per group.
    for c, hw, g in ((64, 56, 4), (128, 28, 4), (256, 14, 4), (512, 7, 4), (64, 112, 32), (128, 56, 32),
                     (256, 28, 32), (512, 14, 32), (1024, 7, 32), (96, 56, 8), (192, 28, 8), (384, 14, 16),
                     (32, 112, 2), (240, 28, 3), (768, 14, 2)):
        ops.append(_conv(c, c, 3, hw, groups=g))
    ops += [_conv(256, 256, 1, 28, groups=8), _conv(96, 96, 1, 56, groups=4), _conv(512, 1024, 3, 14, 2, 32)]
    # Small channel counts: RGB stems, thin heads, squeeze convs.
    ops += [_conv(3, 32, 3, 224, 2), _conv(3, 64, 7, 224, 2), _conv(3, 16, 3, 112), _conv(3, 96, 11, 224, 4),
            _conv(16, 3, 3, 112), _conv(32, 2, 1, 56), _conv(2, 32, 1, 28), _conv(64, 3, 3, 56),
            _conv(3, 3, 3, 224, groups=3), _conv(480, 3, 1, 1), _conv(3, 480, 1, 1)]
    # 1-D, 3-D and transposed convs.
    ops += [_conv(128, 128, 3, 1024, rank=1), _conv(512, 512, 3, 128, rank=1), _conv(1, 64, 63, 8000, 4, rank=1),
            _conv(64, 64, 1, 512, rank=1), _conv(256, 256, 5, 64, groups=256, rank=1),
            _conv(64, 64, 3, 16, groups=64, rank=3), _conv(3, 32, 3, 32, rank=3), _conv(3, 64, 3, 32, rank=3)]
    ops += [_conv(c, c, 3, hw, rank=3)
            for c, hw in ((32, 16), (64, 16), (64, 32), (128, 8), (128, 16), (256, 8), (512, 4))]
    ops += [_conv(16, 64, 1, 16, rank=3), _conv(256, 64, 1, 8, rank=3), _conv(64, 64, 3, 16, 2, rank=3),
            _conv(32, 32, 3, 16, groups=4, rank=3)]
    # Video-shaped clips (few frames, wide maps) on both sides of PyTorch's oneDNN / vol2col line
    # (kinds.NATIVE_PLANE): the same conv can run at half the rate just below it.
    ops += [_conv(c, c, 3, hw, rank=3, depth=d) for c, d, hw in ((64, 16, 28), (256, 8, 14), (32, 16, 56), (512, 4, 7))]
    ops += [_conv(cin, cout, k, hw, s, op="ConvTranspose") for cin, cout, k, hw, s in (
        (128, 64, 4, 14, 2), (32, 16, 3, 56, 2), (256, 128, 2, 28, 2), (64, 64, 3, 28, 1), (512, 256, 4, 7, 2),
        (16, 8, 4, 112, 2), (64, 32, 3, 56, 2))]
    ops += _tiny()
    return ops


def _tiny() -> list[Conv]:
    """Tiny convs of every kind: their time is almost all per-call overhead."""
    return [_conv(8, 8, 3, 4), _conv(16, 16, 1, 4), _conv(16, 16, 3, 4, groups=16), _conv(16, 16, 3, 4, groups=4),
            _conv(3, 8, 3, 4), _conv(64, 64, 1, 1), _conv(32, 32, 3, 2, groups=32), _conv(32, 32, 3, 2, groups=8),
            _conv(8, 8, 3, 4, rank=3), _conv(8, 8, 5, 4, rank=3)]  # a vol2col and a oneDNN 3-D conv


def _quick() -> list[Conv]:
    """Every third op of the full grid, plus all the tiny ones: about a third of the time."""
    full = _full()
    tiny = _tiny()
    return [op for i, op in enumerate(full[: len(full) - len(tiny)]) if i % 3 == 0] + tiny


def _smoke() -> list[Conv]:
    """A handful of small convs, one or two of each kind: for tests of the command itself."""
    return [_conv(16, 16, 3, 14), _conv(16, 32, 1, 14), _conv(16, 16, 3, 14, groups=16), _conv(16, 16, 3, 14, groups=4),
            _conv(3, 16, 3, 28, 2)] + _tiny()[:3]


@dataclass(frozen=True)
class Sweep:
    ops: Callable[[], list[Conv]]
    timing: Timing
    copy_mib: int  # bandwidth test: bytes copied per call


#: The full sweep spreads its samples over a minute and the quick one over 15 s (Timing.span_s):
#: a shared host drifts by +-5% over tens of seconds, and a calibration that fell in one phase
#: of it put every later estimate off by that much.
SWEEPS: dict[str, Sweep] = {
    "full": Sweep(_full, Timing(warmup=2, repeats=11, cold=True, span_s=60.0), 256),
    "quick": Sweep(_quick, Timing(warmup=1, repeats=5, cold=True, span_s=15.0), 128),
    "smoke": Sweep(_smoke, Timing(warmup=1, repeats=1, cold=True), 8),
}


def machine_description() -> str:
    """CPU model, core count and the torch build, as a person would write them down."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"torch {torch.__version__}")


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
    fit = fit_roofline(samples, peak, bandwidth)
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
    for kind in roof.efficiency:
        count, med, within = cal.fit.quality.get(kind, (0, math.nan, math.nan))
        home = next((k for k in lineage(kind)[1:] if k in cal.fit.quality), None)
        fit = (f"{where}: least-squares fit to {count} swept convs of this kind "
               f"(median |error| {med:.0%}, {within:.0%} within 25%)") if count else \
            f"{where}: no swept conv of this kind; the {home} figures" if home else \
            f"{where}: no swept conv of this kind; starting value of the fit"
        sources[f"efficiency.{kind}"] = fit
        sources[f"overhead_us.{kind}"] = fit
        for key in (*(f"saturation.{k}" for k in Saturation.PER_KIND), "memory_efficiency"):
            sources[f"{key}.{kind}"] = fit
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
