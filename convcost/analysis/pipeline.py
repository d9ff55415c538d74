"""Load a model and analyze it: the one path `analyze`, `report`, `check` and `bench` share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Analysis, ApproxFn, Device, OptionsFn, Settings
from convcost.ir.model import Model, Shape
from convcost.loaders import load_model
from convcost.util.errors import UsageError
from convcost.util.progress import progress


@dataclass
class Request:
    """Everything the analysis commands take from the command line, parsed."""

    model: str
    inputs: dict[str, Shape] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    devices: Sequence[Device] = ()


def hooks(settings: Settings) -> tuple[ApproxFn | None, OptionsFn | None]:
    """The analysis hooks the settings ask for: the weight-based errors (`settings.approx`) and,
    with a tolerance set (`--rank auto`), the per-layer rank picked from them."""
    if not settings.approx:
        return None, None
    from convcost.variants.approximator import Approximator

    approximator = Approximator()
    if settings.options.tol is None:
        return approximator, None
    from convcost.variants.autorank import AutoRank

    return approximator, AutoRank(approximator, settings.options.tol)


def load(request: Request) -> Model:
    return load_model(request.model, request.inputs or None)


def check_model(request: Request, model: Model) -> None:
    """Refuse a request the loaded model cannot serve: --rank auto picks ranks from weights."""
    if request.settings.options.tol is not None and not any(c.weight for c in model.convs):
        raise UsageError("--rank auto needs weights (ONNX initializers or TorchScript parameters); "
                         "this model has none", source=model.source)


def run(request: Request, model: Model | None = None) -> Analysis:
    model = model or load(request)
    check_model(request, model)
    with progress(f"analyzing {len(model.convs)} convs") as tick:
        approx, options_for = hooks(request.settings)
        return analyze(model, request.settings, request.devices, approx, tick, options_for)
