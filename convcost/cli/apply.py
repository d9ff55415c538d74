"""`convcost apply`: write the factorized model, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for


@o.with_options("input", "variants", "device", "dtype", "only", "skip", "rank", "depth_multiplier", "groups", "tol")
def apply(
    model: o.ModelArg,
    output: Annotated[str, typer.Option("--output", "-o", metavar="OUT.onnx",
                                        help="The factorized model to write (its external data beside it).")],
    opts: o.Options = o.DEFAULTS,
    plan: Annotated[str | None, typer.Option(
        "--plan", metavar="PLAN.yaml", help="Per-layer choices from `convcost plan` (instead of -V).")] = None,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="inputs.npz",
        help="Compare the outputs on these inputs (one array per model input) instead of random ones.")] = None,
    bench: Annotated[bool, typer.Option("--bench", help="Also time both models in onnxruntime.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs.")] = 0,
    permute: Annotated[bool, typer.Option(
        "--permute", help="-V grouped: group the channels after the permutation heuristic (analyze's "
                          "approx_error_permuted); the reordering is folded into neighbouring convs where "
                          "the graph allows, else done by Gather ops.")] = False,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {' or '.join(formats_for('apply'))}.")] = "table",
) -> None:
    """Write MODEL with its convs replaced by a variant's stages, carrying the SVD-optimal weights.

    \b
    Each selected conv becomes its variant's convs (named <conv>/spatial.0, ... as analyze names
    them) with the weights whose error analyze reports as approx_error; the bias moves to the last
    stage. The written model is checked before it replaces OUT: onnx.checker, re-analysis (params
    and MACs equal the prediction), and in onnxruntime each replaced conv's output error and the
    whole model's, on random inputs or --data.
    \b
    Examples:
      convcost apply model.onnx -V spatial --rank auto --tol 0.05 -o model.spatial.onnx
      convcost apply model.onnx -V depthwise --skip conv1 -o model.dw.onnx -d rpi4 --bench
      convcost plan model.onnx -d rpi4 --target-ms 40 -o plan.yaml
      convcost apply model.onnx --plan plan.yaml -o fast.onnx
    """
    from dataclasses import replace

    from convcost.cli.common import choose_format
    from convcost.export.apply import ApplyRequest, run_apply
    from convcost.render import render
    from convcost.util.errors import UsageError

    fmt = choose_format("apply", fmt)
    if plan is not None and opts.variants:
        raise UsageError("--plan chooses each layer's variant: not with -V")
    if plan is not None and (opts.only or opts.skip or opts.rank):
        raise UsageError("--plan chooses the layers and their ranks: not with --only, --skip or --rank")
    request = opts.request(model)
    if plan is None and not opts.variants:
        raise UsageError("choose the replacement: -V spatial, -V depthwise or -V grouped, or --plan PLAN.yaml")
    if permute and (plan is not None or request.settings.variants != ("grouped",)):
        raise UsageError("--permute goes with -V grouped (in a plan: permute: true on a grouped layer)")
    if plan is not None:
        request = replace(request, settings=replace(request.settings, variants=()))
    result = run_apply(ApplyRequest(request, Path(output), Path(plan) if plan else None,
                                    Path(data) if data else None, bench, seed, permute=permute))
    typer.echo(render("apply", fmt, result), nl=False)
