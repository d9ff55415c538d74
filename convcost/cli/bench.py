"""`convcost bench`: run every conv and its variants here, beside the latency estimates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for

if TYPE_CHECKING:
    from convcost.analysis.pipeline import Request
    from convcost.ir.model import Model
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
    """Measure the model here and compare with the latency estimates.

    \b
    With an onnxruntime profile (calibrate --runtime onnxruntime), the ONNX model itself runs end
    to end in onnxruntime (random inputs, warm-up, median over --seconds), and node by node
    from onnxruntime's profiler: each kernel it ran (a fused conv with its activation, batch
    norm or residual add) beside the estimate of the nodes it computes. Each -V variant is
    written as a factorized model (as `convcost apply` writes it) and run end to end too.
    \b
    With a torch profile, every conv runs alone with torch on random data at the model's
    shapes; each variant runs its stages back to back; the whole model runs all convs and
    matrix multiplies in order.
    Threads (and the clock) follow the profile: what calibrate measured with.
    \b
    Examples:
      convcost calibrate --runtime onnxruntime --threads 1 -o ort1.yaml
      convcost bench model.onnx -d ort1.yaml -V depthwise
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
    if profile.runtime and profile.runtime.get("name") == "onnxruntime":
        _bench_ort(request, loaded, profile, seconds, fmt, output)
        return
    with progress(f"benchmarking {len(loaded.convs)} convs and their variants") as tick:
        result = run_bench(loaded, profile, request.settings,
                           Timing(repeats=repeats, span_s=seconds, max_passes=10**7), tick)
    from convcost.render import render

    emit(render("bench", fmt, result), output)


def _bench_ort(request: Request, loaded: Model, profile: DeviceProfile, seconds: float, fmt: str,
               output: str | None) -> None:
    """The model in onnxruntime with the profile's threads, and each variant's factorized model."""
    import sys
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from convcost.analysis.analyzer import analyze
    from convcost.analysis.pipeline import hooks
    from convcost.cli.common import choose_format, emit
    from convcost.latency.ort_run import all_cores, import_ort
    from convcost.render import render
    from convcost.util.errors import ConvcostError, UsageError
    from convcost.util.progress import progress

    fmt = choose_format("ort_bench", fmt)
    import_ort()
    if loaded.format != "onnx":
        raise UsageError(f"profile {profile.name} describes onnxruntime, which runs ONNX models; this is a "
                         f"{loaded.format} model: export it to ONNX, or bench it with a torch profile", loaded.source)
    from convcost.analysis.ort_bench import ort_bench
    from convcost.export.apply import run_onnx
    from convcost.export.request import ApplyRequest

    threads = int((profile.runtime or {}).get("threads") or all_cores())
    _, options_for = hooks(request.settings)
    analysis = analyze(loaded, request.settings, [profile], options_for=options_for)
    with tempfile.TemporaryDirectory(prefix="convcost-bench-") as tmp:
        files: dict[str, Path] = {}
        for variant in request.settings.variants:
            out = Path(tmp) / f"{variant}.onnx"
            one = replace(request, settings=replace(request.settings, variants=(variant,)))
            try:
                run_onnx(ApplyRequest(request=one, output=out, verify=False))
            except ConvcostError as exc:
                print(f"note: variant {variant} not run: {exc}", file=sys.stderr)
                continue
            files[variant] = out
        with progress(f"running {loaded.name} in onnxruntime ({threads} thread{'s' if threads > 1 else ''})") as tick:
            result = ort_bench(analysis, profile, seconds, threads, files, tick)
    emit(render("ort_bench", fmt, result), output)
