"""`convcost plan`'s run: load, analyze on the devices, choose (`analysis.planner`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from convcost.analysis.analyzer import analyze
from convcost.analysis.pipeline import Request, check_model, load
from convcost.analysis.planner import PlanResult, Target, make_plan
from convcost.analysis.replacing import require_weights
from convcost.analysis.result import Analysis, Device
from convcost.util.progress import progress


def run_plan(request: Request, target: Target, tol: float | None) -> PlanResult:
    model = load(request)
    check_model(request, model)
    require_weights(model, "plan")
    analysis = analyze(model, replace(request.settings, variants=(), approx=False), request.devices)
    with progress(f"planning {len(model.convs)} convs") as tick:
        return make_plan(model, analysis, request.devices, target, tol, request.settings, tick)


def report_plans(analysis: Analysis, devices: Sequence[Device], error: float) -> list[PlanResult]:
    """The report's "What to factorize": per device, the fastest choice per conv within `error`,
    with the savings on every device (that device's own plan first). None without weights."""
    if not devices or not analysis.settings.approx or not any(c.weight for c in analysis.model.convs):
        return []
    plans = []
    with progress(f"planning what to factorize on {len(devices)} device(s)") as tick:
        for i, device in enumerate(devices):
            ordered = [device, *devices[:i], *devices[i + 1:]]
            plans.append(make_plan(analysis.model, analysis, ordered, Target("max_error", error), None,
                                   analysis.settings))
            tick(i + 1, len(devices))
    return plans
