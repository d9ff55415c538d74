"""`convcost check`: fail a CI job when a model breaks its FLOP/params/latency budget."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.cli import options as o
from convcost.render import formats_for

if TYPE_CHECKING:
    from convcost.analysis.budget import Budget
    from convcost.analysis.pipeline import Request
    from convcost.render import CheckReport


@o.with_options("input", "shape", "device", "dtype")
def check(
    models: o.ModelsArg,
    budget: Annotated[str, typer.Option("--budget", "-b", metavar="FILE", help="Budget YAML (see README).")],
    baseline: Annotated[
        str | None, typer.Option("--baseline", metavar="FILE", help="An earlier `analyze -f json` to diff against.")
    ] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output: {', '.join(formats_for('checks'))}.")] = "table",
    junit: Annotated[str | None, typer.Option("--junit", metavar="FILE", help="Also write JUnit XML.")] = None,
    allow_uncounted: Annotated[bool, typer.Option(
        "--allow-uncounted",
        help="Accept a partial count: pass the 'uncounted' rule when convs or matmuls could not be counted "
             "(they are still listed). Without it such a model fails the check.")] = False,
    opts: o.Options = o.DEFAULTS,
    jobs: o.Jobs = None,
) -> None:
    """Check models against a budget: exit 0 within budget, 1 when a limit is broken or a conv/matmul
    could not be counted (rule 'uncounted'), 2 for bad input.

    Several models: each against the budget of the first 'models:' glob that matches its file name
    or stem (a model no glob matches is bad input); exit 1 when any model fails.

    \b
    Examples:
      convcost check model.onnx --budget configs/budgets/mobilenet_v1.yaml
      convcost check model.onnx -b budget.yaml --baseline main.json -f github --junit convcost.xml
      convcost check models/*.onnx -b budgets.yaml --baseline main.json -f github
    """
    from convcost.analysis.budget import load_budgets, read_baseline
    from convcost.cli.common import choose_format, emit
    from convcost.render import render
    from convcost.util.outfile import write_atomic

    several = len(models) > 1
    fmt = choose_format("check_reports" if several else "checks", fmt)
    budgets = load_budgets(budget)
    # Every model's budget and request first: a model no glob matches, or a bad option, fails
    # before any model is read.
    resolved: dict[tuple[str, ...], Request] = {}

    def request_for(model: str, spec: Budget) -> Request:
        devices = (*(opts.device or []), *spec.devices())
        if devices not in resolved:
            resolved[devices] = replace(opts, variants=["none"], device=list(devices)).request(model)
        return replace(resolved[devices], model=model)

    specs = [budgets.for_model(m) for m in models]
    items = [(request_for(m, spec), spec) for m, spec in zip(models, specs, strict=True)]
    docs = read_baseline(baseline) if baseline else None

    def one(item: tuple[Request, Budget]) -> CheckReport:
        return _check_model(*item, docs, baseline, allow_uncounted)

    if several:
        from convcost.cli.multi import run_all

        reports = run_all(one, items, [r for r, _ in items], fmt, jobs, f"checking {len(models)} models")
    else:
        reports = [one(items[0])]

    def output(fmt: str) -> str:
        return render("check_reports", fmt, reports) if several else render("checks", fmt, reports[0])

    text = output(fmt)
    if fmt == "github" and (summary := os.environ.get("GITHUB_STEP_SUMMARY")):
        from convcost.render.github import GitHubFormat

        github = GitHubFormat()
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(github.step_summaries(reports) if several else github.step_summary(reports[0]))
    if junit:
        write_atomic(junit, output("junit"))
    emit(text, None)
    if not all(c.ok for r in reports for c in r.checks):
        raise typer.Exit(1)


def _check_model(request: Request, spec: Budget, docs: list[dict[str, Any]] | None, baseline: str | None,
                 allow_uncounted: bool) -> CheckReport:
    """One model against its budget (and its document of the baseline, picked by model name)."""
    from convcost.analysis.budget import UNCOUNTED, budget_warnings, diff_layers, evaluate, pick_baseline, rule_names
    from convcost.analysis.pipeline import load, run
    from convcost.render import CheckReport
    from convcost.render.checks import violation_line

    loaded = load(request)
    base = pick_baseline(docs, loaded.name, str(baseline)) if docs is not None else None
    analysis = run(request, loaded)
    checks = evaluate(spec, analysis, base, allow_uncounted)
    diffs = diff_layers(analysis, base) if base is not None else None
    said = {violation_line(c) for c in checks if c.rule == UNCOUNTED}  # the loader's line for a node, repeated
    notes = [w for w in analysis.warnings if w not in said] + budget_warnings(spec, analysis, base)
    return CheckReport(loaded.name, request.model, checks, diffs,
                       rule_names(spec, analysis, baseline=base is not None), notes)
