"""What `apply` shares across model formats: the request, the per-conv choice, the analyses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from convcost.analysis.pipeline import Request, hooks
from convcost.analysis.replacing import Choice, plan_choices, uniform_choices
from convcost.analysis.result import Analysis, Totals
from convcost.ir.model import Model
from convcost.util.errors import UsageError


@dataclass(frozen=True)
class ApplyRequest:
    """What `convcost apply` was asked: the analysis request, the choice and the proof's options."""

    request: Request
    output: Path
    plan: Path | None = None
    data: Path | None = None
    bench: bool = False
    seed: int = 0
    #: Run the onnxruntime proof (when onnxruntime is installed).
    verify: bool = True
    #: -V grouped --permute: the channel permutation heuristic.
    permute: bool = False


def choose(req: ApplyRequest, model: Model) -> tuple[dict[str, Choice], bool]:
    """Each conv's replacement, and whether a plan file fixed them (then each must be buildable)."""
    settings = req.request.settings
    if req.plan is not None:
        from convcost.analysis.planfile import read_plan

        return plan_choices(model, read_plan(req.plan)), True
    if len(settings.variants) != 1:
        raise UsageError("apply replaces each conv by one variant: give -V spatial, -V depthwise or -V grouped "
                         "(or a plan with --plan)")
    _, options_for = hooks(settings)
    return uniform_choices(model, settings, settings.variants[0], options_for, req.permute), False


def analyze_plain(model: Model, req: Request) -> Analysis:
    """The model's own totals and per-layer latency (no variants, no weights read)."""
    from convcost.analysis.analyzer import analyze

    return analyze(model, replace(req.settings, variants=(), approx=False), req.devices)


def reanalyze(written: Path, request: Request) -> Totals:
    from convcost.analysis.analyzer import analyze
    from convcost.loaders import load_model

    model = load_model(written, request.inputs or None)
    return analyze(model, replace(request.settings, variants=(), approx=False), request.devices).totals
