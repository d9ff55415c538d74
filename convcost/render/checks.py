"""Renderers for `convcost check`: table, JSON, GitHub annotations + job summary, JUnit XML."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

from convcost.analysis.budget import Check, LayerDiff, rule_of
from convcost.render.markdown import table_lines
from convcost.render.numbers import si


def fmt_value(metric: str, value: float) -> str:
    if math.isinf(value):
        return "inf"
    if "%" in metric:
        return f"{value:+.2f}%" if metric.endswith("increase %") and value else f"{value:.2f}%"
    if metric.startswith("latency"):
        return f"{value:.3g} ms"
    return si(int(value)) if float(value).is_integer() else f"{value:.4g}"


def violation_line(c: Check) -> str:
    where = "model" if c.scope == "model" else f"layer {c.scope}"
    return f"{where}: {c.metric} {fmt_value(c.metric, c.value)} > limit {fmt_value(c.metric, c.limit)} ({c.rule})"


CHECK_COLUMNS = ("rule", "scope", "metric", "value", "limit", "result")
DIFF_COLUMNS = ("layer", "change", "baseline MACs", "MACs", "delta MACs")


def _check_rows(checks: list[Check], fail: str) -> list[list[str]]:
    """One row per check under CHECK_COLUMNS; `fail` is how the format marks a broken limit."""
    return [[c.rule, c.scope, c.metric, fmt_value(c.metric, c.value), fmt_value(c.metric, c.limit),
             "pass" if c.ok else fail] for c in checks]


def _tally(checks: list[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    return f"{len(checks) - failed} passed, {failed} failed"


def _diff_rows(diffs: list[LayerDiff]) -> list[list[str]]:
    return [[d.name, d.change, si(d.old_macs) if d.old_macs is not None else "",
             si(d.new_macs) if d.new_macs is not None else "", f"{d.delta:+,}"] for d in diffs]


def render_table(checks: list[Check], diffs: list[LayerDiff] | None, model: str) -> str:
    from rich.console import RenderableType
    from rich.table import Table

    from convcost.render.console import to_text

    table = Table(title=f"convcost check: {model}", title_justify="left")
    for col in CHECK_COLUMNS:
        table.add_column(col, justify="right" if col in ("value", "limit") else "left")
    for row in _check_rows(checks, "[bold red]FAIL[/]"):
        table.add_row(*row)
    out: list[RenderableType] = [table]
    if diffs is not None:
        if diffs:
            diff = Table(title="layers changed since the baseline", title_justify="left")
            for col in DIFF_COLUMNS:
                diff.add_column(col)
            for row in _diff_rows(diffs):
                diff.add_row(*row)
            out.append(diff)
        else:
            out.append("no layer changed since the baseline")
    out.append(_tally(checks))
    out += [f"FAIL {violation_line(c)}" for c in checks if not c.ok]
    return to_text(out, width=200)


def render_json(checks: list[Check], diffs: list[LayerDiff] | None, model: str) -> str:
    def num(x: float) -> float | None:
        return None if math.isinf(x) else x

    return json.dumps({
        "model": model,
        "passed": all(c.ok for c in checks),
        "checks": [{"rule": c.rule, "scope": c.scope, "metric": c.metric, "value": num(c.value),
                    "limit": c.limit, "ok": c.ok} for c in checks],
        "violations": [violation_line(c) for c in checks if not c.ok],
        "layer_diff": None if diffs is None else [
            {"name": d.name, "change": d.change, "old_macs": d.old_macs, "new_macs": d.new_macs, "delta": d.delta}
            for d in diffs],
    }, indent=2) + "\n"


def _escape_data(text: str) -> str:
    """GitHub workflow-command escaping for a message: a newline would end the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_annotation(text: str) -> str:
    """GitHub workflow-command escaping for a property (file=, title=): also ':' and ','."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(checks: list[Check], diffs: list[LayerDiff] | None, model: str, source: str) -> str:
    lines = []
    for c in checks:
        if not c.ok:
            title = f"convcost budget: {c.metric}"
            lines.append(f"::error file={_escape_annotation(source)},title={_escape_annotation(title)}::"
                         f"{_escape_data(violation_line(c))}")
    for d in diffs or []:
        if d.change != "changed" or d.delta > 0:
            lines.append(f"::warning title={_escape_annotation(f'convcost layer {d.change}')}::"
                         f"{_escape_data(f'{d.name}: MACs {d.delta:+,} since the baseline')}")
    lines.append(f"convcost check {model}: {_tally(checks)}")
    return "\n".join(lines) + "\n"


def summary_markdown(checks: list[Check], diffs: list[LayerDiff] | None, model: str) -> str:
    mark = "✅" if all(c.ok for c in checks) else "❌"
    lines = [f"### convcost check: `{model}` — {mark} {_tally(checks)}", "",
             *table_lines(list(CHECK_COLUMNS), _check_rows(checks, "**FAIL**"),
                          [False, False, False, True, True, False])]
    if diffs:
        lines += ["", "#### Layers changed since the baseline", "",
                  *table_lines(list(DIFF_COLUMNS), _diff_rows(diffs), [False, False, True, True, True])]
    return "\n".join(lines) + "\n"


def render_junit(checks: list[Check], model: str, rules: list[str]) -> str:
    """One <testcase> per budget rule (in file order); each broken limit under it is a <failure>."""
    by_rule: dict[str, list[Check]] = {rule: [] for rule in rules}
    for c in checks:
        by_rule.setdefault(rule_of(c), []).append(c)
    failures = sum(1 for cs in by_rule.values() if any(not c.ok for c in cs))
    suite = ET.Element("testsuite", name=f"convcost budget {model}", tests=str(len(by_rule)),
                       failures=str(failures), errors="0", skipped="0")
    for rule, cs in by_rule.items():
        case = ET.SubElement(suite, "testcase", classname=f"convcost.{model}", name=rule)
        bad = [c for c in cs if not c.ok]
        if bad:
            failure = ET.SubElement(case, "failure", message=f"{len(bad)} limit(s) exceeded", type="BudgetExceeded")
            failure.text = "\n".join(violation_line(c) for c in bad)
        elif not cs:
            ET.SubElement(case, "system-out").text = "rule matched no layer"
    root = ET.Element("testsuites", tests=str(len(by_rule)), failures=str(failures))
    root.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
