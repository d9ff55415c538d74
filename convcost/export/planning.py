"""`convcost plan`'s run: load, analyze on the devices, choose (`analysis.planner`)."""

from __future__ import annotations

from dataclasses import replace

from convcost.analysis.analyzer import analyze
from convcost.analysis.pipeline import Request, check_model, load
from convcost.analysis.planner import PlanResult, Target, make_plan
from convcost.analysis.replacing import require_weights
from convcost.util.progress import progress


def run_plan(request: Request, target: Target, tol: float | None) -> PlanResult:
    model = load(request)
    check_model(request, model)
    require_weights(model, "plan")
    analysis = analyze(model, replace(request.settings, variants=(), approx=False), request.devices)
    with progress(f"planning {len(model.convs)} convs") as tick:
        return make_plan(model, analysis, request.devices, target, tol, request.settings, tick)
