"""What the formats of `convcost bench` share: errors as percentages, the variants' column order and
the summary under the table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from convcost.render.numbers import count, ms
from convcost.variants import VARIANTS

if TYPE_CHECKING:
    from convcost.analysis.bench import BenchResult
    from convcost.ir.model import Model


#: Share of the CPU taken by other processes above which timings get a warning.
BUSY_WARNING = 0.2


def bench_model(model: Model) -> dict[str, Any]:
    """The `model` of a bench JSON document: which file ran, at which input shapes."""
    return {"name": model.name, "format": model.format, "source": model.source,
            "inputs": {k: list(v) for k, v in model.inputs.items()}}


def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) or math.isinf(x) else f"{x:+.0%}"


def share(num: int | float | None, den: int | float | None) -> str:
    if not den or num is None:
        return "n/a"
    return f"{num}/{den} ({num / den:.0%})"


def summary_lines(result: BenchResult) -> list[str]:
    s = result.summary()
    what = "its forward pass in torch" if result.forward_pass else \
        (f"{count(len(result.model.convs), 'conv')} and "
         f"{count(len(result.model.matmuls), 'matrix multiply', 'matrix multiplies')} run back to back")
    lines = [
        f"Whole model ({what}): measured {ms(result.whole_measured_ms)} ms, estimated "
        f"{ms(result.whole_estimated_ms)} ms ({pct(result.whole_error)}); every op sampled "
        f"{result.passes} times",
        f"Layers within 25%: {share(s['layers_within_25pct'], s['layers'])}; median |error| "
        f"{pct(s['median_abs_error']).lstrip('+')}",
        f"Variant speed-up sign right: {share(s['signs_right'], s['variant_pairs'])}",
    ]
    b = result.summary(baseline=True)
    if b:
        lines.append(
            f"Baseline 'time proportional to MACs' (fitted on the same calibration): whole model "
            f"{pct(b['whole_model_error'])}, layers within 25% {share(b['layers_within_25pct'], b['layers'])}, "
            f"signs right {share(b['signs_right'], b['variant_pairs'])}")
    others = "unknown" if result.others is None else f"{result.others:.0%}"
    lines.append(
        f"Device profile {result.device.name} ({result.device.path}); torch threads {result.threads}, "
        f"{result.clock} clock; other processes used {others} of the CPU while measuring"
        + (f", {result.rounds_retaken} busy rounds retaken" if result.rounds_retaken else ""))
    if result.clock == "wall" and result.others is not None and result.others > BUSY_WARNING:
        lines.append(f"warning: other processes used {result.others:.0%} of the CPU; wall-clock times on a busy "
                     "machine are unreliable (calibrate --threads 1 --clock thread measures CPU time instead)")
    lines.append("error = estimated / measured - 1; a variant's sign is right when the estimate calls it faster "
                 "than the original exactly when the measurement does")
    return lines


def variant_names(result: BenchResult) -> list[str]:
    """The variants any layer ran, in the order of the variants registry (the order -V lists them)."""
    ran = {name for layer in result.layers for name in layer.variants}
    return [name for name in VARIANTS if name in ran] + sorted(ran.difference(VARIANTS))
