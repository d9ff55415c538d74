"""`convcost calibrate`: measure this machine and write a device profile fitted to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from convcost.cli import options as o

if TYPE_CHECKING:
    from convcost.latency.roofline import Roofline

CLOCKS = ("wall", "thread")
CALIBRATE_RUNTIMES = ("torch", "onnxruntime")


def calibrate(
    output: o.Output = None,
    quick: Annotated[bool, typer.Option("--quick", help="A third of the sweep, spread over 15 s, not 60.")] = False,
    name: Annotated[str, typer.Option("--name", help="Profile name (what -d and output columns show).")] = "calibrated",
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="torch threads, or onnxruntime intra-op threads (default: all cores).")] = None,
    clock: Annotated[str, typer.Option("--clock", help="wall (default), or thread: this thread's CPU time, which "
                                                       "other processes cannot inflate (needs --threads 1).")] = "wall",
    sweep: Annotated[str | None, typer.Option("--sweep", hidden=True)] = None,
    runtime: Annotated[str, typer.Option(
        "--runtime", help="What to time: torch (eager conv kernels) or onnxruntime (small ONNX graphs in "
                          "onnxruntime sessions: convs, matmuls, every op family, fusions).")] = "torch",
) -> None:
    """Measure this machine and write a device profile fitted to it.

    \b
    Runs a sweep of dense, pointwise, depthwise, grouped and small-channel convs (1-D, 2-D, 3-D,
    transposed) and a memory-bandwidth test (warm-up, interleaved repeats, median), then fits
    per-kind efficiency and overhead and the fill constants of the roofline (docs/latency.md).
    Every figure's source says 'calibrated on <machine> <date>'. About 70 s (samples are spread
    over a minute, since a shared host's speed drifts); --quick about 20 s.
    \b
    With --runtime onnxruntime the graphs run in onnxruntime sessions with --threads intra-op
    threads (default: all cores); the profile also prices every other op family (activations,
    pooling, concat, resize, softmax, LSTM...), the executor's cost per node and per run, and
    lists the fusions this onnxruntime build applies (each checked by timing a, b and a -> b).
    About 100 s; --quick under 30 s.
    \b
    Examples:
      convcost calibrate -o myhost.yaml
      convcost calibrate --runtime onnxruntime --threads 1 -o ort1.yaml
      convcost analyze model.onnx -d myhost.yaml
      convcost bench model.onnx -d ort1.yaml
    """
    import sys
    import time

    from convcost.cli.common import emit
    from convcost.util.errors import UsageError

    plan = sweep or ("quick" if quick else "full")
    if runtime not in CALIBRATE_RUNTIMES:
        raise UsageError(f"--runtime {runtime!r}: choose one of {', '.join(CALIBRATE_RUNTIMES)}")
    if not name or any(c.isspace() for c in name):
        raise UsageError(f"--name {name!r}: expected a name without spaces")
    if runtime == "onnxruntime":
        if clock != "wall":
            raise UsageError("--clock thread is for --runtime torch; onnxruntime is timed by the wall clock")
        _calibrate_ort(plan, threads, name, output)
        return
    _check_clock(clock, threads)
    from convcost.latency import calibrate as cal_mod

    if plan not in cal_mod.SWEEPS:
        raise UsageError(f"--sweep {plan!r}: choose one of {', '.join(cal_mod.SWEEPS)}")
    from convcost.latency.devices import dump_profile
    from convcost.util.progress import progress

    start = time.monotonic()
    with progress(f"calibrating ({plan} sweep)") as tick:
        cal = cal_mod.calibrate(plan, threads, clock, tick)
    profile = cal_mod.calibrated_profile(cal, name, output or "<stdout>")
    header = (f"# convcost calibrate ({plan} sweep) on {cal.machine}, {cal.date}.\n"
              "# Every figure's source says how it was measured or fitted; see docs/latency.md.\n")
    emit(header + dump_profile(profile), output)
    roof = cal.fit.roofline
    others = "unknown" if cal.others is None else f"{cal.others:.0%}"
    print(f"calibrated in {time.monotonic() - start:.0f} s: peak {cal.peak_gflops:.4g} GFLOP/s, copy bandwidth "
          f"{cal.bandwidth_gbs:.3g} GB/s, {cal.threads} thread(s), {cal.clock} clock; other processes used {others} "
          "of the CPU", file=sys.stderr)
    if cal.clock == "wall" and cal.others is not None and cal.others > 0.2:
        print(f"warning: other processes used {cal.others:.0%} of the CPU; wall-clock figures from a busy machine "
              "are unreliable (--threads 1 --clock thread measures CPU time instead)", file=sys.stderr)
    for kind, (count, med, within) in cal.fit.quality.items():
        print(f"  {kind:14s} efficiency {roof.efficiency[kind]:.3g}  overhead {roof.overhead_us[kind]:.3g} us  "
              f"fit: {count} convs, median |error| {med:.0%}, {within:.0%} within 25%", file=sys.stderr)
    _print_weight_cache(roof)


def _calibrate_ort(plan: str, threads: int | None, name: str, output: str | None) -> None:
    import sys
    import time

    from convcost.cli.common import emit
    from convcost.latency.ort_run import import_ort
    from convcost.util.errors import UsageError

    import_ort()  # a missing extra is said before anything is built
    from convcost.latency import ort_calibrate as cal_mod
    from convcost.latency.devices import dump_profile
    from convcost.latency.graph import ACTIVATION_PASS
    from convcost.util.progress import progress

    if plan not in cal_mod.ORT_SWEEPS:
        raise UsageError(f"--sweep {plan!r}: choose one of {', '.join(cal_mod.ORT_SWEEPS)}")
    start = time.monotonic()
    with progress(f"calibrating onnxruntime ({plan} sweep)") as tick:
        cal = cal_mod.calibrate_ort(plan, threads, tick)
    profile = cal_mod.ort_profile(cal, name, output or "<stdout>")
    header = (f"# convcost calibrate --runtime onnxruntime ({plan} sweep) on {cal.machine}, {cal.date}.\n"
              "# Every figure's source says how it was measured or fitted; see docs/latency.md.\n")
    emit(header + dump_profile(profile), output)
    others = "unknown" if cal.others is None else f"{cal.others:.0%}"
    version = profile.runtime["version"] if profile.runtime else ""
    print(f"calibrated in {time.monotonic() - start:.0f} s: onnxruntime {version}, {cal.threads} thread(s); "
          f"peak {cal.peak_gflops:.4g} GFLOP/s, bandwidth {cal.bandwidth_gbs:.3g} GB/s, "
          f"{cal.run_overhead_us:.3g} us per run, {cal.node_gap_us:.3g} us per node, profiler bias "
          f"{cal.profiler_bias_us:.3g} us per kernel; other processes used {others} "
          "of the CPU", file=sys.stderr)
    for fusion, check in cal.fusions.items():
        verdict = "applied" if fusion in cal.applied else "not applied"
        print(f"  fusion {fusion:20s} {verdict}: kernels {check['kernels_a_b']:g} -> {check['kernels_ab']:g}; "
              f"a {check['a_ms']:.3g} ms, b {check['b_ms']:.3g} ms, a->b {check['ab_ms']:.3g} ms "
              f"(saves {check['saved_share_of_min']:.0%} of the smaller)", file=sys.stderr)
    pass_ms = cal.fusions["conv_hardswish"]["pass_ms"]
    passing = cal.families.get(ACTIVATION_PASS)
    print(f"  activation pass: a fused HardSwish adds {pass_ms:.3g} ms to its conv's kernel: "
          + (f"bandwidth share {passing.memory_efficiency:.3g}" if passing else "too little to price, no pass priced"),
          file=sys.stderr)
    roof = cal.fit.roofline
    for kind, (count, med, within) in cal.fit.quality.items():
        print(f"  {kind:14s} efficiency {roof.efficiency[kind]:.3g}  overhead {roof.overhead_us[kind]:.3g} us  "
              f"fit: {count} ops, median |error| {med:.0%}, {within:.0%} within 25%", file=sys.stderr)
    _print_weight_cache(roof)
    for family, (count, med) in cal.family_quality.items():
        fig = cal.families[family]
        print(f"  {family:14s} bandwidth share {fig.memory_efficiency:.3g}  overhead {fig.overhead_us:.3g} us  "
              f"fit: {count} graphs, median |error| {med:.0%}", file=sys.stderr)
    for family in cal.unfitted:
        print(f"  {family:14s} not calibrated: its probes took no time after the profiler's bias "
              f"({cal.profiler_bias_us:.3g} us); its ops take its parent family's figures or the defaults",
              file=sys.stderr)
    for key, points in cal.footprint.shares.items():
        shares = ", ".join(f"{share:.2f} at {mb:g} MB" for mb, share in points)
        print(f"  footprint {key:14s} {cal.footprint.ops[key]}: {shares} of its sweep time", file=sys.stderr)
    if cal.cold.points:
        added = ", ".join(f"{us:.3g} us at {ms:.3g} ms" for ms, us in cal.cold.points)
        print(f"  cold weights: each MB of a conv's or matmul's weights adds {added} of a model's run",
              file=sys.stderr)


def _print_weight_cache(roof: Roofline) -> None:
    import sys

    if roof.weight_cache is not None:
        wc = roof.weight_cache
        print(f"  weights beyond {wc.cache_mb:.3g} MB of cache per conv arrive at {wc.bandwidth_gbs:.3g} GB/s "
              f"({wc.convs} swept convs have more)", file=sys.stderr)


def _check_clock(clock: str, threads: int | None) -> None:
    from convcost.util.errors import UsageError

    if clock not in CLOCKS:
        raise UsageError(f"--clock {clock!r}: choose one of {', '.join(CLOCKS)}")
    if clock == "thread" and threads != 1:
        raise UsageError("--clock thread measures one thread's CPU time: use it with --threads 1")


