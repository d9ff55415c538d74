"""What `convcost apply` prints: the replaced convs with their errors, then the proof, line by line."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from convcost import __version__
from convcost.render.numbers import compared, err, json_float, ms, si

if TYPE_CHECKING:
    from convcost.analysis.applied import ApplyResult
    from convcost.analysis.replacing import Replacement
    from convcost.analysis.result import Totals


def choice_text(variant: str, key: str, value: int) -> str:
    """'spatial R=24', 'depthwise m=2', 'grouped G=4'."""
    short = {"rank": "R", "depth_multiplier": "m", "groups": "G"}.get(key, key)
    return f"{variant} {short}={value}"


def _totals_line(label: str, before: Totals, after: Totals) -> str:
    return (f"{label}: params {si(before.params)} -> {si(after.params)} ({compared(before.params, after.params)}), "
            f"MACs {si(before.macs)} -> {si(after.macs)} ({compared(before.macs, after.macs)})")


def summary_lines(result: ApplyResult) -> list[str]:
    """The proof, one sentence a line, as the table and the report print it."""
    lines = [_totals_line(f"{result.model.name}", result.before, result.predicted)]
    if result.counts_match:
        lines.append("Re-analysing the written model gives exactly these params and MACs (the prediction).")
    else:
        lines.append(f"Re-analysing the written model gives params {result.after.params} and MACs "
                     f"{result.after.macs}: NOT the prediction ({result.predicted.params}, {result.predicted.macs})")
    for dev, before in result.before.latency.items():
        lines.append(f"Estimated latency on {dev}: {ms(before)} ms -> {ms(result.predicted.latency[dev])} ms "
                     f"({compared(before, result.predicted.latency[dev])})")
    if result.output_errors:
        outs = ", ".join(f"{name!r} {err(e)}" for name, e in result.output_errors.items())
        lines.append(f"Model outputs in {result.runtime} on {result.inputs_from} inputs: relative error {outs}; "
                     f"output shapes {'match' if result.shapes_match else 'DIFFER'}")
    if result.skipped:
        lines.append(f"Runtime proof skipped: {result.skipped}")
    if result.timing:
        t = result.timing
        lines.append(f"Measured in {t.runtime} ({t.runs} runs each, median): {ms(t.before_ms)} ms -> "
                     f"{ms(t.after_ms)} ms ({compared(t.before_ms, t.after_ms)})")
    sides = [side for r in result.replaced for side in r.permutation.values()]
    if sides:
        gathers = sum(1 for s in sides if s == "Gather")
        lines.append(f"Channel permutations: {len(sides) - gathers} folded into neighbouring convs' weights, "
                     f"{gathers} done by Gather ops (no MACs; each reads and writes one activation)")
    lines += result.checks
    if result.kept:
        reasons = Counter(k.reason for k in result.kept)
        lines.append(f"Kept {len(result.kept)} selected conv{'s' if len(result.kept) != 1 else ''} as they are: "
                     + "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common()))
    lines.append("weight error = ||W - W'|| / ||W|| of the kernel (analyze's approx_error); output error = "
                 "||y' - y|| / ||y|| on random input; weight error is not accuracy: fine-tune to recover it")
    lines += [f"warning: {w}" for w in result.warnings]
    written = result.output + (f" and {result.external_data}" if result.external_data else "")
    lines.append(f"wrote {written}")
    return lines


def apply_table(result: ApplyResult, color: bool = False, width: int | None = None) -> str:
    from rich.table import Table
    from rich.text import Text

    from convcost.render.console import to_text

    n = len(result.replaced)
    table = Table(title=f"convcost apply: {result.model.name} -> {result.output} ({n} conv{'s' if n != 1 else ''} "
                        "replaced)", title_justify="left", header_style="bold")
    for header in ("layer", "replaced by", "stages", "MACs", "MACs after", "weight error", "output error"):
        table.add_column(header, justify="left" if header in ("layer", "replaced by") else "right",
                         no_wrap=header == "layer")
    for r in result.replaced:
        key, value = r.parameter
        text = choice_text(r.variant, key, value) + (" permuted" if r.perm_in is not None else "")
        table.add_row(Text(r.conv.name), Text(text), str(len(r.plan.layers)),
                      si(_macs(r)), si(r.cost.macs),
                      err(r.weight_error),
                      err(result.conv_errors.get(r.conv.name)) if r.conv.name in result.conv_errors else "n/a")
    return to_text([table, *(Text(line) for line in summary_lines(result))], color, width)


def _macs(r: Replacement) -> int:
    from convcost.cost import cost_of

    return cost_of(r.conv).macs


def _totals(t: Totals) -> dict[str, Any]:
    return {"params": t.params, "macs": t.macs, "latency_ms": {d: json_float(v) for d, v in t.latency.items()}}


def apply_dict(result: ApplyResult) -> dict[str, Any]:
    from convcost.cost import cost_of

    def layer(r: Replacement) -> dict[str, Any]:
        key, value = r.parameter
        original = cost_of(r.conv)
        return {
            "name": r.conv.name,
            "variant": r.variant,
            "options": {key: value},
            "stages": [c.name for c in r.plan.layers],
            "approx_error": json_float(r.approx_error),
            "weight_error": json_float(r.weight_error),
            "output_error": json_float(result.conv_errors.get(r.conv.name)),
            "params": {"before": original.params, "after": r.cost.params},
            "macs": {"before": original.macs, "after": r.cost.macs},
            **{k: json_float(v) if isinstance(v, float) else v for k, v in r.extra.items()},
            **({"permutation": dict(r.permutation)} if r.permutation else {}),
        }

    t = result.timing
    return {
        "convcost_version": __version__,
        "model": {"name": result.model.name, "format": result.model.format, "source": result.model.source,
                  "inputs": {k: list(v) for k, v in result.model.inputs.items()}},
        "output": result.output,
        "external_data": result.external_data,
        "layers": [layer(r) for r in result.replaced],
        "kept": [{"name": k.conv.name, "variant": k.variant, "reason": k.reason} for k in result.kept],
        "totals": {"before": _totals(result.before), "predicted": _totals(result.predicted),
                   "after": _totals(result.after), "counts_match": result.counts_match},
        "proof": {
            "checks": result.checks,
            "runtime": result.runtime,
            "skipped": result.skipped,
            "inputs": result.inputs_from or None,
            "output_errors": {k: json_float(v) for k, v in result.output_errors.items()},
            "output_shapes": {k: {"original": a, "applied": b} for k, (a, b) in result.output_shapes.items()},
        },
        "bench": None if t is None else {"runtime": t.runtime, "before_ms": json_float(t.before_ms),
                                         "after_ms": json_float(t.after_ms), "runs": t.runs, "threads": t.threads},
        "warnings": result.warnings,
    }
