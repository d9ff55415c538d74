"""`convcost check`: fail a CI job when a model breaks its FLOP/params/latency budget."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Annotated

import typer

from convcost.cli import options as o
from convcost.render import formats_for


@o.with_options("input", "shape", "device", "dtype")
def check(
    model: o.ModelArg,
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
) -> None:
    """Check a model against a budget: exit 0 within budget, 1 when a limit is broken or a conv/matmul
    could not be counted (rule 'uncounted'), 2 for bad input.

    \b
    Examples:
      convcost check model.onnx --budget configs/budgets/mobilenet_v1.yaml
      convcost check model.onnx -b budget.yaml --baseline main.json -f github --junit convcost.xml
    """
    from convcost.analysis.budget import (
        UNCOUNTED,
        budget_warnings,
        diff_layers,
        evaluate,
        load_baseline,
        load_budget,
        rule_names,
    )
    from convcost.analysis.pipeline import load, run
    from convcost.cli.common import choose_format, emit
    from convcost.render import CheckReport, render
    from convcost.render.checks import violation_line
    from convcost.util.outfile import write_atomic

    fmt = choose_format("checks", fmt)
    spec = load_budget(budget)
    request = replace(opts, variants=["none"], device=[*(opts.device or []), *spec.devices()]).request(model)
    loaded = load(request)
    base = load_baseline(baseline, loaded.name) if baseline else None
    analysis = run(request, loaded)
    checks = evaluate(spec, analysis, base, allow_uncounted)
    diffs = diff_layers(analysis, base) if base is not None else None
    said = {violation_line(c) for c in checks if c.rule == UNCOUNTED}  # the loader's line for a node, repeated
    notes = [w for w in analysis.warnings if w not in said] + budget_warnings(spec, analysis, base)
    report = CheckReport(loaded.name, model, checks, diffs, rule_names(spec, analysis, baseline=base is not None),
                         notes)
    text = render("checks", fmt, report)
    if fmt == "github" and (summary := os.environ.get("GITHUB_STEP_SUMMARY")):
        from convcost.render.github import GitHubFormat

        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(GitHubFormat().step_summary(report))
    if junit:
        write_atomic(junit, render("checks", "junit", report))
    emit(text, None)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
