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
    """Write a GitHub-flavoured Markdown report: totals, what to factorize, top layers, variants, charts.

    With -d, "What to factorize" lists per device the convs worth replacing: the fastest variant
    within weight error --tol (default 0.05) that is estimated faster there.

    \b
    Examples:
      convcost report configs/models/mobilenet_v1.yaml -o report.md
      convcost report model.onnx -d rpi4 -d t4 --top 15 -o docs/costs.md
    """
    from convcost.analysis.pipeline import run
    from convcost.cli.common import command_line, emit
    from convcost.export.planning import report_plans
    from convcost.render import View, render

    request = opts.request(model)
    analysis = run(request)
    plans = tuple(report_plans(analysis, request.devices, opts.tol))
    view = View(top=top, command=command_line(), plans=plans, plan_error=opts.tol)
    emit(render("analysis", "report", analysis, view), output)
