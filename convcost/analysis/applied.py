"""What `convcost apply` did and how it proved it: plain data the writers fill and renderers format."""

from __future__ import annotations

from dataclasses import dataclass, field

from convcost.analysis.replacing import Kept, Replacement
from convcost.analysis.result import Totals
from convcost.ir.model import Model


@dataclass
class Timing:
    """Measured latency of the original and the rewritten model, one runtime, same inputs."""

    runtime: str
    before_ms: float
    after_ms: float
    runs: int
    threads: int


@dataclass
class ApplyResult:
    """The rewritten model and its proof.

    `before` is the original's analysis totals, `predicted` what the cost model says the rewritten
    model costs (the replaced convs' stages priced instead of them), `after` what analysing the
    written file gives (params and MACs; equal to `predicted` unless something is wrong).
    """

    model: Model
    output: str
    external_data: str | None
    replaced: list[Replacement]
    kept: list[Kept]
    before: Totals
    predicted: Totals
    after: Totals
    #: How OUT was checked: "onnx.checker (full_check)" and so on, one line each.
    checks: list[str] = field(default_factory=list)
    #: The runtime that ran the proof ("onnxruntime 1.32.0"), or None where it was skipped.
    runtime: str | None = None
    #: Why the runtime proof was skipped (and how to get it), or None.
    skipped: str | None = None
    #: Per replaced conv: relative output error of its stages against the conv, on random input.
    conv_errors: dict[str, float] = field(default_factory=dict)
    #: Per model output: relative error of the rewritten model's output against the original's.
    output_errors: dict[str, float] = field(default_factory=dict)
    #: Per model output: its shape from the original and from the rewritten model.
    output_shapes: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    #: Where the inputs came from: "random (seed N)" or the --data file.
    inputs_from: str = ""
    timing: Timing | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def counts_match(self) -> bool:
        return (self.after.params, self.after.macs) == (self.predicted.params, self.predicted.macs)

    @property
    def shapes_match(self) -> bool:
        return all(a == b for a, b in self.output_shapes.values())
