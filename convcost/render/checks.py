"""What every format of `convcost check` shows alike: how a value reads, one line per broken limit,
and the rows of the checks and layer-diff tables (table and GitHub step summary)."""

from __future__ import annotations

import math

from convcost.analysis.budget import Check, LayerDiff
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


def check_rows(checks: list[Check], fail: str) -> list[list[str]]:
    """One row per check under CHECK_COLUMNS; `fail` is how the format marks a broken limit."""
    return [[c.rule, c.scope, c.metric, fmt_value(c.metric, c.value), fmt_value(c.metric, c.limit),
             "pass" if c.ok else fail] for c in checks]


def tally(checks: list[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    return f"{len(checks) - failed} passed, {failed} failed"


def diff_rows(diffs: list[LayerDiff]) -> list[list[str]]:
    return [[d.name, d.change, si(d.old_macs) if d.old_macs is not None else "",
             si(d.new_macs) if d.new_macs is not None else "", f"{d.delta:+,}"] for d in diffs]
