"""`convcost plan`: choose per conv the variant and rank (or keep) that reach a target, write PLAN.yaml."""

from __future__ import annotations

from typing import Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for


@o.with_options("input", "variants", "device", "dtype", "only", "skip")
def plan(
    model: o.ModelArg,
    opts: o.Options = o.DEFAULTS,
    target_ms: Annotated[float | None, typer.Option(
        "--target-ms", metavar="MS", help="Reach this total estimated latency on the (first) -d device.")] = None,
    target_macs: Annotated[str | None, typer.Option(
        "--target-macs", metavar="N", help="Reach this many total MACs (suffixes K, M, G, T).")] = None,
    max_error: Annotated[float | None, typer.Option(
        "--max-error", metavar="E",
        help="No target: per layer, the fastest choice whose weight error is at most E.")] = None,
    tol: Annotated[float | None, typer.Option(
        "--tol", metavar="T", help="With a target: consider only choices whose weight error is at most T.")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="PLAN.yaml", help="Write the plan here (for `convcost apply --plan`).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {' or '.join(formats_for('plan'))}.")] = "table",
) -> None:
    """Choose what to factorize: per conv a variant and its rank, or keep, to reach a target.

    \b
    Each conv's candidates (every variant at a range of ranks, multipliers and groups) are priced
    on the device and scored by their weight error (analyze's approx_error); a variant slower than
    the conv on that device is never chosen. The greedy takes the best estimated saving per unit of
    squared error until the target is met. A target that cannot be met exits 1, saying how close
    the best plan gets, and writes no plan.
    \b
    Examples:
      convcost plan model.onnx -d rpi4 --target-ms 40 -o plan.yaml
      convcost plan model.onnx -d t4 --target-macs 1.2G --tol 0.3 -o plan.yaml
      convcost plan model.onnx -d rpi4 --max-error 0.1 -o plan.yaml
      convcost apply model.onnx --plan plan.yaml -o fast.onnx
    """
    from convcost.analysis.budget import parse_number
    from convcost.analysis.planner import Target
    from convcost.cli.common import choose_format, emit
    from convcost.export.planning import run_plan
    from convcost.render import render
    from convcost.util.errors import InputError, UsageError

    fmt = choose_format("plan", fmt)
    given = [t for t in (target_ms, target_macs, max_error) if t is not None]
    if len(given) != 1:
        raise UsageError("give one target: --target-ms MS, --target-macs N or --max-error E")
    if not opts.device:
        raise UsageError("plan prices each choice on a device: give -d DEVICE (see `convcost devices`)")
    if target_ms is not None:
        if target_ms <= 0:
            raise UsageError(f"--target-ms {target_ms:g}: expected a positive number of milliseconds")
        target = Target("latency_ms", target_ms)
    elif target_macs is not None:
        try:
            target = Target("macs", parse_number(target_macs, "--target-macs", "--target-macs"))
        except InputError as exc:
            raise UsageError(exc.message) from None
    else:
        assert max_error is not None
        if not 0 <= max_error <= 1:
            raise UsageError(f"--max-error {max_error:g}: expected a relative error in [0, 1]")
        target = Target("max_error", max_error)
    if tol is not None and not 0 <= tol <= 1:
        raise UsageError(f"--tol {tol:g}: expected a relative error in [0, 1]")
    result = run_plan(opts.request(model), target, tol)
    text = render("plan", fmt, result)
    if result.met and output:
        from convcost.render.planned import plan_yaml

        emit(plan_yaml(result), output)
    typer.echo(text, nl=False)
    if not result.met:
        raise typer.Exit(1)
