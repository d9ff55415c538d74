"""`convcost report`: a Markdown report to paste in a pull request or a design doc."""

from __future__ import annotations

from convcost.cli import app
from convcost.commands import options as o


@app.command()
def report(
    model: o.ModelArg,
    output: o.Output = None,
    input: o.Inputs = None,
    variants: o.Variants = None,
    devices: o.Devices = None,
    dtype: o.Dtype = "float32",
    only: o.Only = None,
    skip: o.Skip = None,
    rank: o.Rank = None,
    depth_multiplier: o.DepthMultiplier = 1,
    groups: o.Groups = 4,
    tol: o.Tol = 0.05,
    no_approx: o.NoApprox = False,
    top: o.Top = None,
) -> None:
    """Write a GitHub-flavoured Markdown report: totals, top layers, variants, latency, Mermaid charts.

    \b
    Examples:
      convcost report configs/models/mobilenet_v1.yaml -o report.md
      convcost report model.onnx -d rpi4 -d t4 --top 15 -o docs/costs.md
    """
    from convcost.commands.common import command_line, emit, make_request
    from convcost.pipeline import run
    from convcost.render import View
    from convcost.render.report import render_report

    request = make_request(model, input, variants, devices, dtype, only, skip, rank, depth_multiplier, groups,
                           tol=tol, approx=not no_approx)
    emit(render_report(run(request), View(top=top, command=command_line())), output)
