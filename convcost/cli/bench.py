"""`convcost bench`: run every conv and its variants here, beside the latency estimates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for

if TYPE_CHECKING:
    from convcost.latency.devices import DeviceProfile


@o.with_options("input", "shape", "variants", "only", "skip", "rank", "depth_multiplier", "groups")
def bench(
    model: o.ModelArg,
    device: Annotated[str | None, typer.Option(
        "--device", "-d", metavar="DEVICE",
        help="Profile to compare with (a calibrate output or a shipped name); default: calibrate --quick first.")
    ] = None,
    opts: o.Options = o.DEFAULTS,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed samples per op, at least (median).")] = 11,
    seconds: Annotated[float, typer.Option(
        "--seconds", min=0, help="Keep sampling until this many seconds have gone by, so a drift of the host's "
                                 "speed averages out (0: just --repeats; 10: quicker, noisier).")] = 30.0,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {' or '.join(formats_for('bench'))}.")] = "table",
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
    from dataclasses import replace

    from convcost.cli.common import choose_format, emit

    fmt = choose_format("bench", fmt)
    request = replace(opts, device=[device] if device else None).request(model)
    from convcost.analysis.pipeline import check_model, load

    loaded = load(request)
    check_model(request, loaded)
    from convcost.analysis.bench import run_bench
    from convcost.latency import calibrate as cal_mod
    from convcost.latency.measure import Timing
    from convcost.util.progress import progress

    profile: DeviceProfile
    if request.devices:
        from convcost.latency.devices import DeviceProfile as Profile

        first = request.devices[0]
        assert isinstance(first, Profile)  # Options.request resolves -d into DeviceProfiles
        profile = first
    else:
        print("no -d: calibrating this machine first (calibrate --quick)", file=sys.stderr)
        with progress("calibrating (quick sweep)") as tick:
            profile = cal_mod.calibrated_profile(cal_mod.calibrate("quick", tick=tick), "here")
    with progress(f"benchmarking {len(loaded.convs)} convs and their variants") as tick:
        result = run_bench(loaded, profile, request.settings, Timing(repeats=repeats, span_s=seconds), tick)
    from convcost.render import render

    emit(render("bench", fmt, result), output)
