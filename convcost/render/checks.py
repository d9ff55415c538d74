"""What every format of `convcost check` shows alike: how a value reads, one line per broken limit
(or per uncounted node), and the rows of the checks and layer-diff tables (table and GitHub step
summary)."""

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
    """One line per check that failed (or, for an UNCOUNTED check, that `--allow-uncounted` passed)."""
    if c.value is None or c.limit is None:
        return f"{c.metric} {c.scope!r} not counted: {c.why}"
    where = "model" if c.scope == "model" else f"layer {c.scope}"
    return f"{where}: {c.metric} {fmt_value(c.metric, c.value)} > limit {fmt_value(c.metric, c.limit)} ({c.rule})"


def allowed(checks: list[Check]) -> list[Check]:
    """The UNCOUNTED checks `--allow-uncounted` passed: every format still names them."""
    return [c for c in checks if c.ok and c.value is None]


#: How an allowed UNCOUNTED check reads beside its `violation_line`.
ALLOWED = "allowed by --allow-uncounted"

CHECK_COLUMNS = ("rule", "scope", "metric", "value", "limit", "result")
DIFF_COLUMNS = ("layer", "change", "baseline MACs", "MACs", "delta MACs")


def _cells(c: Check) -> list[str]:
    """The value and limit cells: numbers for a limit, what was required for an UNCOUNTED check."""
    if c.value is None or c.limit is None:
        return ["not counted", "--allow-uncounted" if c.ok else "must be counted"]
    return [fmt_value(c.metric, c.value), fmt_value(c.metric, c.limit)]


def check_rows(checks: list[Check], fail: str) -> list[list[str]]:
    """One row per check under CHECK_COLUMNS; `fail` is how the format marks a broken limit."""
    return [[c.rule, c.scope, c.metric, *_cells(c), "pass" if c.ok else fail] for c in checks]


def tally(checks: list[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    return f"{len(checks) - failed} passed, {failed} failed"


def diff_rows(diffs: list[LayerDiff]) -> list[list[str]]:
    return [[d.name, d.change, si(d.old_macs) if d.old_macs is not None else "",
             si(d.new_macs) if d.new_macs is not None else "", f"{d.delta:+,}"] for d in diffs]
