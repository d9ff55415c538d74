"""Load a model and analyze it: the one path `analyze`, `report`, `check` and `bench` share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from convcost.analysis import Analysis, ApproxFn, Device, OptionsFn, Settings, analyze
from convcost.errors import UsageError
from convcost.loaders import load_model
from convcost.model import Model, Shape
from convcost.progress import progress
from convcost.variants import VARIANTS


@dataclass
class Request:
    """Everything the analysis commands take from the command line, parsed."""

    model: str
    inputs: dict[str, Shape] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    devices: Sequence[Device] = ()
    approx: ApproxFn | None = None
    #: Per-layer variant options (`--rank auto`); None: `settings.options` for every layer.
    options_for: OptionsFn | None = None


def parse_shape(text: str) -> tuple[str | None, Shape]:
    """'1x3x224x224' or 'input=1x3x224x224' (also ',' separated)."""
    name, _, dims = text.rpartition("=")
    parts = dims.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"-i {text!r}: expected a shape like 1x3x224x224 or NAME=1x3x224x224") from None
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"-i {text!r}: every dim must be a positive integer")
    return (name or None), shape


def parse_inputs(values: Sequence[str]) -> dict[str, Shape]:
    inputs: dict[str, Shape] = {}
    for value in values:
        name, shape = parse_shape(value)
        key = name or ""
        if key in inputs:
            raise UsageError(f"-i given twice for {'input ' + key if key else 'the input'}")
        inputs[key] = shape
    if "" in inputs and len(inputs) > 1:
        raise UsageError("with several -i, name each input: -i NAME=SHAPE")
    return inputs


def parse_variants(values: Sequence[str]) -> tuple[str, ...]:
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part == "all":
                names.extend(VARIANTS)
            elif part == "none":
                continue
            elif part in VARIANTS:
                names.append(part)
            elif part:
                raise UsageError(f"-V: unknown variant {part!r} (choose from {', '.join(VARIANTS)}, all, none)")
    return tuple(dict.fromkeys(names))


def load(request: Request) -> Model:
    return load_model(request.model, request.inputs or None)


def check_model(request: Request, model: Model) -> None:
    """Refuse a request the loaded model cannot serve: --rank auto picks ranks from weights."""
    if request.options_for and not any(c.weight for c in model.convs):
        raise UsageError("--rank auto needs weights (ONNX initializers or TorchScript parameters); "
                         "this model has none", source=model.source)


def run(request: Request, model: Model | None = None) -> Analysis:
    model = model or load(request)
    check_model(request, model)
    with progress(f"analyzing {len(model.convs)} convs") as tick:
        return analyze(model, request.settings, request.devices, request.approx, tick, request.options_for)
