"""`convcost report`: a Markdown report to paste in a pull request or a design doc."""

from __future__ import annotations

from convcost.cli import options as o


@o.with_options()
def report(
    model: o.ModelArg,
    opts: o.Options = o.DEFAULTS,
    top: o.Top = None,
    output: o.Output = None,
) -> None:
    """Write a GitHub-flavoured Markdown report: totals, top layers, variants, latency, Mermaid charts.

    \b
    Examples:
      convcost report configs/models/mobilenet_v1.yaml -o report.md
      convcost report model.onnx -d rpi4 -d t4 --top 15 -o docs/costs.md
    """
    from convcost.analysis.pipeline import run
    from convcost.cli.common import command_line, emit
    from convcost.render import View, render

    emit(render("analysis", "report", run(opts.request(model)), View(top=top, command=command_line())), output)
