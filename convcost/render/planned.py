"""What `convcost plan` prints and writes: the chosen layers with their savings and errors, the
totals reached, and PLAN.yaml (the file `apply --plan` reads)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from convcost import __version__
from convcost.render.applied import choice_text
from convcost.render.numbers import compared, err, json_float, ms, si

if TYPE_CHECKING:
    from convcost.analysis.planner import Candidate, LayerChoice, PlanResult


def _reached(result: PlanResult) -> str:
    kind = result.target.kind
    if kind == "latency_ms":
        return f"{ms(result.reached())} ms"
    if kind == "macs":
        return f"{si(result.reached())} MACs"
    return f"largest layer error {err(result.reached())}"


def _start(result: PlanResult) -> str:
    kind = result.target.kind
    return f"{ms(result.start())} ms" if kind == "latency_ms" else f"{si(result.start())} MACs"


def headline(result: PlanResult) -> str:
    """Whether the target is met, and how close the best plan gets when it is not."""
    goal = result.target.describe(result.device)
    if result.target.kind == "max_error":
        return f"Plan: the fastest choice per layer on {result.device} within {goal}"
    if result.met:
        return f"Target {goal}: met, {_reached(result)} (from {_start(result)})"
    return (f"Target {goal}: NOT reachable; the best plan gets to {_reached(result)} (from {_start(result)})"
            + (f" with every layer's error within {result.tol:g}" if result.tol is not None else ""))


def choice_of(c: Candidate) -> str:
    if c.variant is None or c.key is None or c.value is None:
        return "keep"
    return choice_text(c.variant, c.key, c.value)


def summary_lines(result: PlanResult) -> list[str]:
    lines = [headline(result)]
    b, a = result.before, result.after
    lines.append(f"{result.model.name}: params {si(b.params)} -> {si(a.params)} ({compared(b.params, a.params)}), "
                 f"MACs {si(b.macs)} -> {si(a.macs)} ({compared(b.macs, a.macs)})")
    for dev in result.devices:
        lines.append(f"Estimated latency on {dev}: {ms(b.latency[dev])} ms -> {ms(a.latency[dev])} ms "
                     f"({compared(b.latency[dev], a.latency[dev])})")
    chosen = [c for c in result.layers if c.replaced]
    if chosen:
        worst = max(chosen, key=lambda c: c.chosen.error)
        total = sum(c.chosen.error ** 2 for c in chosen) ** 0.5
        lines.append(f"{len(chosen)} of {len(result.layers)} convs factorized; weight errors: largest "
                     f"{err(worst.chosen.error)} ({worst.conv.name}), root of their summed squares {err(total)}")
    kept = Counter(c.why_keep for c in result.layers if not c.replaced and c.why_keep)
    if kept:
        lines.append("Kept: " + "; ".join(f"{why} ({n})" for why, n in kept.most_common()))
    lines.append("weight error = analyze's approx_error (||W - W'|| / ||W||), not accuracy; "
                 "`convcost apply MODEL --plan PLAN.yaml -o OUT.onnx` writes the model and measures its output error")
    return lines


def plan_table(result: PlanResult, color: bool = False, width: int | None = None) -> str:
    from rich.table import Table
    from rich.text import Text

    from convcost.render.console import to_text

    dev = result.device
    table = Table(title=f"convcost plan: {result.model.name} on {dev}", title_justify="left", header_style="bold")
    for header in ("layer", "choice", "MACs", "MACs after", f"{dev} ms", f"{dev} ms after", "saved ms", "weight error"):
        table.add_column(header, justify="left" if header in ("layer", "choice") else "right",
                         no_wrap=header == "layer")
    for c in result.layers:
        if not c.replaced:
            continue
        table.add_row(Text(c.conv.name), Text(choice_of(c.chosen)), si(c.keep.macs), si(c.chosen.macs),
                      ms(c.keep.ms[dev]), ms(c.chosen.ms[dev]), ms(c.keep.ms[dev] - c.chosen.ms[dev]),
                      err(c.chosen.error))
    return to_text([table, *(Text(line) for line in summary_lines(result))], color, width)


def _layer(c: LayerChoice) -> dict[str, Any]:
    chosen = c.chosen
    return {
        "name": c.conv.name,
        "variant": chosen.variant,
        "options": {chosen.key: chosen.value} if chosen.key else None,
        "error": json_float(chosen.error),
        "params": {"before": c.keep.params, "after": chosen.params},
        "macs": {"before": c.keep.macs, "after": chosen.macs},
        "latency_ms": {d: {"before": json_float(v), "after": json_float(chosen.ms[d])} for d, v in c.keep.ms.items()},
        "reason": c.why_keep,
    }


def plan_dict(result: PlanResult) -> dict[str, Any]:
    def totals(t: Any) -> dict[str, Any]:
        return {"params": t.params, "macs": t.macs, "latency_ms": {d: json_float(v) for d, v in t.latency.items()}}

    return {
        "convcost_version": __version__,
        "model": {"name": result.model.name, "format": result.model.format, "source": result.model.source,
                  "inputs": {k: list(v) for k, v in result.model.inputs.items()}},
        "device": result.device,
        "target": {"kind": result.target.kind, "value": json_float(result.target.value)},
        "tol": result.tol,
        "met": result.met,
        "reached": json_float(result.reached()),
        "layers": [_layer(c) for c in result.layers],
        "totals": {"before": totals(result.before), "after": totals(result.after)},
    }


def plan_yaml(result: PlanResult) -> str:
    """PLAN.yaml: one line per conv (keep or the variant and its option), a comment with what it saves."""
    from convcost.analysis.planfile import Entry, plan_text

    dev = result.device
    layers: dict[str, tuple[Entry, str]] = {}
    for c in result.layers:
        if c.replaced and c.chosen.variant and c.chosen.key and c.chosen.value is not None:
            saved = c.keep.ms[dev] - c.chosen.ms[dev]
            layers[c.conv.name] = ((c.chosen.variant, {c.chosen.key: c.chosen.value}),
                                   f"saves {saved:.4g} ms on {dev}, MACs {si(c.keep.macs)} -> {si(c.chosen.macs)}, "
                                   f"weight error {err(c.chosen.error)}")
        else:
            layers[c.conv.name] = (None, c.why_keep or "")
    b, a = result.before, result.after
    header = {
        "model": result.model.source,
        "device": dev,
        "target": {result.target.kind: json_float(result.target.value)},
        "totals": {"latency_ms": {"before": json_float(b.latency[dev]), "after": json_float(a.latency[dev])},
                   "macs": {"before": b.macs, "after": a.macs}, "params": {"before": b.params, "after": a.params}},
    }
    intro = (f"convcost {__version__} plan for {result.model.name}: {headline(result)}\n"
             "Edit freely: a layer is `keep` or {variant: spatial, rank: R} | {variant: depthwise, "
             "depth_multiplier: m} |\n{variant: grouped, groups: G}; layers not listed are kept. "
             "Write the model with: convcost apply MODEL --plan THIS.yaml -o OUT.onnx")
    return plan_text(layers, header, intro)
