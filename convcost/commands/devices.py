"""`convcost devices`, `convcost calibrate` and `convcost bench`: the latency side of convcost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from convcost.cli import app
from convcost.commands import options as o

if TYPE_CHECKING:
    from convcost.devices import DeviceProfile

DEVICE_FORMATS = ("table", "json")
CLOCKS = ("wall", "thread")


@app.command()
def devices(
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output format: table or json.")] = "table",
    output: o.Output = None,
) -> None:
    """List the shipped device profiles: peak, bandwidth, efficiency per op kind, overhead.

    \b
    Every figure carries a source (see -f json); figures no document publishes say 'estimate'.
    Use one with `convcost analyze MODEL -d NAME`, or write your own with `convcost calibrate`.
    """
    import json

    from convcost.commands.common import emit
    from convcost.devices import load_profile, profile_document, shipped_profiles
    from convcost.errors import UsageError

    if fmt not in DEVICE_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(DEVICE_FORMATS)}")
    profiles = [load_profile(path) for path in shipped_profiles().values()]
    if fmt == "json":
        emit(json.dumps({"devices": [{**profile_document(p), "file": p.path} for p in profiles]}, indent=2) + "\n",
             output)
        return
    emit(_devices_table(profiles), output)


def _devices_table(profiles: list[DeviceProfile]) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    from convcost.devices import REQUIRED_KINDS

    table = Table(title="convcost device profiles", title_justify="left", header_style="bold")
    for header in ("name", "description", "peak GFLOP/s (GOP/s int8)", "GB/s"):
        table.add_column(header, justify="right" if header == "GB/s" else "left")
    for kind in REQUIRED_KINDS:
        table.add_column(f"eff {kind}", justify="right")
    table.add_column("overhead us", justify="right")
    table.add_column("estimated figures", justify="right")
    for p in profiles:
        roof = p.roofline
        peaks = ", ".join(f"{d} {v:g}" for d, v in roof.peak_gflops.items())
        figures = list(p.figures())
        estimated = sum(1 for _, _, source in figures if source.lower().startswith("estimate"))
        overheads = sorted(set(roof.overhead_us.values()))
        table.add_row(p.name, p.description, peaks, f"{roof.bandwidth_gbs:g}",
                      *(f"{roof.efficiency[k]:.2g}" for k in REQUIRED_KINDS),
                      "/".join(f"{v:.3g}" for v in overheads), f"{estimated}/{len(figures)}")
    buffer = io.StringIO()
    Console(file=buffer, width=250, no_color=True, highlight=False).print(table)
    buffer.write("Sources: convcost devices -f json. 'estimated figures' counts figures no datasheet or paper "
                 "publishes; `convcost calibrate` on the device replaces them with measured ones.\n")
    return buffer.getvalue()


@app.command()
def calibrate(
    output: o.Output = None,
    quick: Annotated[bool, typer.Option("--quick", help="A third of the sweep, spread over 15 s, not 60.")] = False,
    name: Annotated[str, typer.Option("--name", help="Profile name (what -d and output columns show).")] = "calibrated",
    threads: Annotated[int | None, typer.Option("--threads", min=1,
                                                help="torch threads (default: torch's choice, all cores).")] = None,
    clock: Annotated[str, typer.Option("--clock", help="wall (default), or thread: this thread's CPU time, which "
                                                       "other processes cannot inflate (needs --threads 1).")] = "wall",
    sweep: Annotated[str | None, typer.Option("--sweep", hidden=True)] = None,
) -> None:
    """Measure this machine with torch and write a device profile fitted to it.

    \b
    Runs a sweep of dense, pointwise, depthwise, grouped and small-channel convs (1-D, 2-D, 3-D,
    transposed) and a memory-bandwidth test (warm-up, interleaved repeats, median), then fits
    per-kind efficiency and overhead and the fill constants of the roofline (docs/latency.md).
    Every figure's source says 'calibrated on <machine> <date>'. About 70 s (samples are spread
    over a minute, since a shared host's speed drifts); --quick about 20 s.
    \b
    Examples:
      convcost calibrate -o myhost.yaml
      convcost analyze model.onnx -d myhost.yaml
      convcost bench model.onnx -d myhost.yaml
    """
    import sys
    import time

    from convcost.commands.common import emit
    from convcost.errors import UsageError

    plan = sweep or ("quick" if quick else "full")
    _check_clock(clock, threads)
    from convcost import calibrate as cal_mod

    if plan not in cal_mod.SWEEPS:
        raise UsageError(f"--sweep {plan!r}: choose one of {', '.join(cal_mod.SWEEPS)}")
    if not name or any(c.isspace() for c in name):
        raise UsageError(f"--name {name!r}: expected a name without spaces")
    from convcost.devices import dump_profile
    from convcost.progress import progress

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


def _check_clock(clock: str, threads: int | None) -> None:
    from convcost.errors import UsageError

    if clock not in CLOCKS:
        raise UsageError(f"--clock {clock!r}: choose one of {', '.join(CLOCKS)}")
    if clock == "thread" and threads != 1:
        raise UsageError("--clock thread measures one thread's CPU time: use it with --threads 1")


@app.command()
def bench(
    model: o.ModelArg,
    device: Annotated[str | None, typer.Option(
        "--device", "-d", metavar="DEVICE",
        help="Profile to compare with (a calibrate output or a shipped name); default: calibrate --quick first.")
    ] = None,
    input: o.Inputs = None,
    variants: o.Variants = None,
    only: o.Only = None,
    skip: o.Skip = None,
    rank: o.Rank = None,
    depth_multiplier: o.DepthMultiplier = 1,
    groups: o.Groups = 4,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed samples per op, at least (median).")] = 11,
    seconds: Annotated[float, typer.Option(
        "--seconds", min=0, help="Keep sampling until this many seconds have gone by, so a drift of the host's "
                                 "speed averages out (0: just --repeats; 10: quicker, noisier).")] = 30.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output format: table or json.")] = "table",
    output: o.Output = None,
) -> None:
    """Run every conv and its variants here with torch and compare with the latency estimates.

    \b
    Random weights at the model's shapes; each variant runs its stages back to back; the whole
    model runs all convs and matrix multiplies in order. Prints measured and estimated time,
    the error, and whether each variant's predicted speed-up has the right sign.
    Threads and clock follow the profile (what calibrate used).
    \b
    Examples:
      convcost calibrate -o here.yaml && convcost bench configs/models/mobilenet_v1.yaml -d here.yaml
      convcost bench model.onnx -i 1x3x224x224 -d here.yaml -f json -o bench.json
    """
    import sys

    from convcost.commands.common import emit, make_request
    from convcost.errors import UsageError

    if fmt not in DEVICE_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(DEVICE_FORMATS)}")
    request = make_request(model, input, variants, [device] if device else None, "float32", only, skip, rank,
                           depth_multiplier, groups)
    from convcost.pipeline import check_model, load

    loaded = load(request)
    check_model(request, loaded)
    from convcost import calibrate as cal_mod
    from convcost.bench import run_bench
    from convcost.measure import Timing
    from convcost.progress import progress

    profile: DeviceProfile
    if request.devices:
        from convcost.devices import DeviceProfile as Profile

        first = request.devices[0]
        assert isinstance(first, Profile)  # make_request resolves -d into DeviceProfiles
        profile = first
    else:
        print("no -d: calibrating this machine first (calibrate --quick)", file=sys.stderr)
        with progress("calibrating (quick sweep)") as tick:
            profile = cal_mod.calibrated_profile(cal_mod.calibrate("quick", tick=tick), "here")
    with progress(f"benchmarking {len(loaded.convs)} convs and their variants") as tick:
        result = run_bench(loaded, profile, request.settings, Timing(repeats=repeats, span_s=seconds), tick,
                           request.options_for)
    from convcost.render.bench import render_bench_json, render_bench_table

    emit(render_bench_json(result) if fmt == "json" else render_bench_table(result), output)
