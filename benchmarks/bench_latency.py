"""Issue 6 benchmark: how well do convcost's latency estimates predict measured time on this machine?

Calibrates this machine (`convcost calibrate`), then benches (`convcost bench`) the shipped example
specs (configs/models/*.yaml) and the torchvision-style models of tests/archs.py at their usual
input sizes, with random weights. Reports, beside the "time proportional to MACs" baseline fitted on
the same calibration data:

- whole-model estimate within 10% of measured, for what share of models;
- per-layer estimate within 25%, for what share of conv layers (and per op kind);
- the sign of each variant's predicted speed-up right, for what share of (layer, variant) pairs.

    python benchmarks/bench_latency.py                     # torch's threads (all cores), wall clock
    python benchmarks/bench_latency.py --threads 1 --clock thread   # robust on a busy machine
    python benchmarks/bench_latency.py --quick              # a smoke run: quick sweep, 4 models
    python benchmarks/bench_latency.py --threads 1 --clock thread --interleave 15

`--interleave N` is the drift-controlled protocol: instead of calibrating first and then benching
one model after another (so that each model is measured minutes after the calibration, in a phase
of the host's speed of its own), it visits the calibration sweep and every model in turn, N times
over, a few samples each visit, and takes each op's median over the visits. Calibration and models
then see the same mixture of the host's phases. It has a bias of its own, so it is a diagnostic
rather than the benchmark: each visit to the sweep follows a model's ops, and the fit finds
per-call overheads 10-60% larger than a plain calibration does (benchmarks/RESULTS.md, Issue 6).

Writes Markdown to stdout (or --out) and the calibrated profile to --profile-out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convcost.analysis.result import Settings  # noqa: E402
from convcost.ir.model import Model  # noqa: E402
from convcost.loaders import load_model  # noqa: E402

if TYPE_CHECKING:
    from convcost.analysis.bench import BenchResult
    from convcost.latency.calibrate import Calibration
    from convcost.latency.devices import DeviceProfile


def models(spec_dir: Path, only: set[str] | None) -> list[Model]:
    from tests import archs

    found = [load_model(p) for p in sorted(spec_dir.glob("*.yaml"))]
    for m in found:
        m.name = f"{m.name} (spec)"
    for name, (factory, shape) in archs.ALL_MODELS.items():
        found.append(archs.to_model(factory(), shape, name))
    return [m for m in found if not only or m.name.split(" ")[0] in only]


def eager_forward_ms(name: str, threads: int) -> float | None:
    """The real torch forward of a tests/archs.py model (with BN, activations, pooling: not modeled)."""
    import torch

    from convcost.latency.measure import Timing, measure_many
    from tests import archs

    if name not in archs.ALL_MODELS:
        return None
    factory, shape = archs.ALL_MODELS[name]
    module = factory().eval()
    x = torch.randn(shape)
    torch.set_num_threads(threads)
    return measure_many([lambda: module(x)], Timing(warmup=2, repeats=5)).ms[0]


def interleaved(cycles: int, sweep: str, repeats: int, threads: int | None, clock: str,
                chosen: list[Model]) -> tuple[Calibration, DeviceProfile, list[BenchResult]]:
    """Calibration sweep and every model's bench runners, visited in turn `cycles` times."""
    import torch

    from convcost.analysis.analyzer import analyze
    from convcost.analysis.bench import bench_result, bench_runners
    from convcost.latency.calibrate import SWEEPS, bandwidth_gbs, calibrated_profile, calibration_from
    from convcost.latency.measure import LoadMonitor, Measured, Timing, measure_many, runner, steady_allocator

    steady_allocator()
    if threads:
        torch.set_num_threads(threads)
    plan = SWEEPS[sweep]
    ops = plan.ops()
    units = [[runner([op]) for op in ops]] + [bench_runners(analyze(m, Settings()))[0] for m in chosen]
    timing = Timing(warmup=1, repeats=repeats, cold=True, clock=clock)
    visits: list[list[list[float]]] = [[[] for _ in fns] for fns in units]  # unit, function, visit
    copies: list[float] = []
    monitor = LoadMonitor()
    start = time.monotonic()
    for cycle in range(cycles):
        for fns, got in zip(units, visits, strict=True):
            for times, ms in zip(got, measure_many(fns, timing).ms, strict=True):
                times.append(ms)
        copies.append(bandwidth_gbs(plan.copy_mib, Timing(1, 3, 0.01, clock=clock)))
        print(f"cycle {cycle + 1}/{cycles}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    medians = [[statistics.median(times) for times in got] for got in visits]
    cal = calibration_from(ops, medians[0], statistics.median(copies), sweep, clock, monitor.others())
    profile = calibrated_profile(cal, "here", "<benchmark>")
    results = [bench_result(analyze(m, Settings(), [profile]), profile, Measured(ms, None, 0),
                            torch.get_num_threads(), "thread" if clock == "thread" else "wall")
               for m, ms in zip(chosen, medians[1:], strict=True)]
    return cal, profile, results


def pct(x: float) -> str:
    return f"{x:+.1%}"


def share(n: int, d: int) -> str:
    return f"{n}/{d} ({n / d:.0%})" if d else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall")
    ap.add_argument("--sweep", default="full")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--seconds", type=float, default=30.0, help="sample each model for at least this long")
    ap.add_argument("--specs", type=Path, default=ROOT / "configs" / "models")
    ap.add_argument("--models", default="", help="comma-separated subset (spec or archs names)")
    ap.add_argument("--quick", action="store_true", help="quick sweep, 3 repeats, 4 small models")
    ap.add_argument("--interleave", type=int, default=0, metavar="N",
                    help="visit the sweep and every model in turn N times (drift-controlled protocol)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--profile-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.sweep, args.repeats, args.seconds = "quick", 3, 0.0
        args.models = args.models or "mobilenet_v1,resnet18,mobilenet_v2,audio1d"

    from convcost.analysis.bench import error, run_bench
    from convcost.latency.calibrate import calibrate, calibrated_profile
    from convcost.latency.devices import dump_profile
    from convcost.latency.fit import fit_roofline
    from convcost.latency.kinds import nearest
    from convcost.latency.measure import Timing

    t0 = time.monotonic()
    only = {m for m in args.models.split(",") if m} or None
    if args.interleave:
        cal, profile, results = interleaved(args.interleave, args.sweep, args.repeats, args.threads, args.clock,
                                            models(args.specs, only))
        calibrate_s = time.monotonic() - t0
    else:
        cal = calibrate(args.sweep, args.threads, args.clock)
        profile = calibrated_profile(cal, "here", str(args.profile_out or "<benchmark>"))
        calibrate_s = time.monotonic() - t0
        print(f"calibrated in {calibrate_s:.0f} s", file=sys.stderr)
        results = []
        for model in models(args.specs, only):
            t1 = time.monotonic()
            r = run_bench(model, profile, Settings(), Timing(repeats=args.repeats, span_s=args.seconds))
            results.append(r)
            print(f"{model.name}: {len(model.convs)} convs, measured {r.whole_measured_ms:.2f} ms, "
                  f"estimate {pct(r.whole_error)}, {time.monotonic() - t1:.0f} s", file=sys.stderr)
    if args.profile_out:
        args.profile_out.write_text(dump_profile(profile))

    how = (f"interleaved with the models' measurements: {args.interleave} visits of {args.repeats} samples to "
           f"the sweep and to each model, {calibrate_s:.0f} s in all" if args.interleave else f"in {calibrate_s:.0f} s")
    lines = [f"Calibration: `{args.sweep}` sweep ({len(cal.samples)} convs) {how} on "
             f"{cal.machine}; torch threads {cal.threads}, {cal.clock} clock; other processes used "
             f"{'?' if cal.others is None else f'{cal.others:.0%}'} of the CPU meanwhile.", ""]
    # Per model.
    lines += ["| model | convs | measured ms (convs + matmuls) | convcost error | ∝MACs error | layers ±25% convcost |"
              " layers ±25% ∝MACs | signs right convcost | signs right ∝MACs | busy CPU |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals = defaultdict(int)
    kinds: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        s, b = r.summary(), r.summary(baseline=True)
        totals["models"] += 1
        totals["whole_ok"] += abs(r.whole_error) <= 0.10
        totals["whole_ok_b"] += abs(b["whole_model_error"]) <= 0.10  # type: ignore[operator]
        for key in ("layers", "layers_within_25pct", "variant_pairs", "signs_right"):
            totals[key] += s[key]  # type: ignore[operator]
            totals[key + "_b"] += b[key]  # type: ignore[operator]
        for layer in r.layers:
            kinds[layer.kind].append((layer.error, error(layer.baseline_ms or 0.0, layer.measured_ms)))
        busy = "?" if r.others is None else f"{r.others:.0%}"
        lines.append(
            f"| {r.model.name} | {len(r.layers)} | {r.whole_measured_ms:.3g} | {pct(r.whole_error)} | "
            f"{pct(b['whole_model_error'])} | {share(s['layers_within_25pct'], s['layers'])} | "  # type: ignore[arg-type]
            f"{share(b['layers_within_25pct'], b['layers'])} | {share(s['signs_right'], s['variant_pairs'])} | "
            f"{share(b['signs_right'], b['variant_pairs'])} | {busy} |")
    lines += ["", "| | convcost | time ∝ MACs | target |", "|---|---:|---:|---:|",
              f"| whole model within ±10% | {share(totals['whole_ok'], totals['models'])} | "
              f"{share(totals['whole_ok_b'], totals['models'])} | ≥ 90% |",
              f"| conv layers within ±25% | {share(totals['layers_within_25pct'], totals['layers'])} | "
              f"{share(totals['layers_within_25pct_b'], totals['layers_b'])} | ≥ 80% |",
              f"| variant speed-up sign right | {share(totals['signs_right'], totals['variant_pairs'])} | "
              f"{share(totals['signs_right_b'], totals['variant_pairs_b'])} | ≥ 90% |", ""]
    lines += ["| op kind | layers | within ±25% convcost | within ±25% ∝MACs | median error convcost |"
              " median error ∝MACs |", "|---|---:|---:|---:|---:|---:|"]
    for kind, errs in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        ours = sum(abs(e) <= 0.25 for e, _ in errs)
        base = sum(abs(e) <= 0.25 for _, e in errs)
        lines.append(f"| {kind} | {len(errs)} | {share(ours, len(errs))} | {share(base, len(errs))} | "
                     f"{pct(statistics.median(e for e, _ in errs))} | {pct(statistics.median(e for _, e in errs))} |")
    # Per variant: where the wrong signs are, and how many of them are near-ties.
    lines += ["", "| variant | pairs | signs right convcost | signs right ∝MACs | wrong convcost, of them "
              "measured within ±5% of the original |", "|---|---:|---:|---:|---:|"]
    for name in sorted({n for r in results for _, n in r.pairs()}):
        pairs = [(layer, n) for r in results for layer, n in r.pairs() if n == name]
        wrong = [layer for layer, n in pairs if not layer.sign_right(n)]
        ties = sum(abs(layer.variants[name].measured_ms / layer.measured_ms - 1) <= 0.05 for layer in wrong)
        base = sum(layer.sign_right(n, baseline=True) for layer, n in pairs if layer.baseline_ms is not None)
        lines.append(f"| {name} | {len(pairs)} | {share(len(pairs) - len(wrong), len(pairs))} | "
                     f"{share(base, len(pairs))} | {len(wrong)}, {ties} |")
    roof = profile.roofline
    nofill = fit_roofline(cal.samples, cal.peak_gflops, cal.bandwidth_gbs, fills=()).roofline
    lines += ["", f"Fitted profile: peak {cal.peak_gflops:.4g} GFLOP/s (best swept conv), copy bandwidth "
              f"{cal.bandwidth_gbs:.3g} GB/s; reduction fill constant {roof.saturation.reduction:.3g}.", "",
              "| kind | efficiency | overhead us | pixels half | out-channels half | work (N x K) half | memory share |"
              " efficiency, fit without fill factors |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    sat = roof.saturation
    for kind in roof.efficiency:
        # The figures the estimate uses: a kind without its own takes its parent's (latency.nearest).
        channels = (f"| | {nearest(sat.work, kind, 0):.3g} " if sat.uses_work(kind) else
                    f"| {nearest(sat.out_channels, kind, 0):.3g} | ")
        lines.append(f"| {kind} | {roof.efficiency[kind]:.3g} | {roof.overhead_us[kind]:.3g} | "
                     f"{nearest(sat.pixels, kind, 0):.3g} {channels}| {roof.memory_share(kind):.3g} | "
                     f"{nofill.efficiency[kind]:.3g} |")
    eager = [(r.model.name, r.whole_measured_ms, eager_forward_ms(r.model.name, cal.threads)) for r in results]
    eager = [e for e in eager if e[2]]
    if eager:
        lines += ["", "Share of the real eager forward (BN, activations, pooling included; convcost does not model "
                  "them) spent in the convs and matmuls measured above:",
                  "", "| model | convs + matmuls ms | eager forward ms | share |", "|---|---:|---:|---:|"]
        lines += [f"| {n} | {c:.3g} | {f:.3g} | {c / f:.0%} |" for n, c, f in eager]
    lines.append(f"\nTotal benchmark time {time.monotonic() - t0:.0f} s.")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
