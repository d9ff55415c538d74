"""Load a model and analyze it: the one path `analyze`, `report`, `check` and `bench` share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Analysis, ApproxFn, Device, OptionsFn, Settings
from convcost.ir.inputs import Given
from convcost.ir.model import Model, Shape
from convcost.loaders import load_model, prepare_loading
from convcost.util.errors import UsageError
from convcost.util.parallel import spare_cores
from convcost.util.progress import progress
from convcost.variants.approximator import Approximator


@dataclass
class Request:
    """Everything the analysis commands take from the command line, parsed."""

    model: str
    inputs: dict[str, Given] = field(default_factory=dict)
    #: --shape: tensor name -> shape, set inside an ONNX graph
    tensor_shapes: dict[str, Shape] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    devices: Sequence[Device] = ()


def hooks(settings: Settings) -> tuple[ApproxFn | None, OptionsFn | None]:
    """The analysis hooks the settings ask for: the weight-based errors (`settings.approx`) and,
    with a tolerance set (`--rank auto`), the per-layer rank picked from them."""
    if not settings.approx:
        return None, None
    approximator = Approximator(permute=settings.permute)
    if settings.options.tol is None:
        return approximator, None
    from convcost.variants.autorank import AutoRank

    return approximator, AutoRank(approximator, settings.options.tol)


def load(request: Request) -> Model:
    return load_model(request.model, request.inputs or None, request.tensor_shapes or None)


def check_model(request: Request, model: Model) -> None:
    """Refuse a request the loaded model cannot serve: --rank auto picks ranks from weights; a
    device with no peak for the dtype the model is priced in (without --dtype: its own)."""
    if request.settings.options.tol is not None and not any(c.weight for c in model.convs):
        raise UsageError("--rank auto needs weights (ONNX initializers or TorchScript parameters); "
                         "this model has none", source=model.source)
    if request.settings.dtype_from_model:  # (an explicit --dtype was checked when parsed)
        _check_peaks(request, model)


def _check_peaks(request: Request, model: Model) -> None:
    from convcost.analysis.dtypes import resolve_dtype, stored_dtypes
    from convcost.latency.devices import DeviceProfile

    resolved, settings = resolve_dtype(model, request.settings)
    stored = stored_dtypes(resolved)
    for device in request.devices:
        if not isinstance(device, DeviceProfile):
            continue
        peaks = device.roofline.peak_gflops
        for dtype in sorted({settings.dtype} | stored):
            if dtype not in peaks:
                why = f"the model stores {dtype} tensors" if dtype in stored else \
                    f"the model is priced in {dtype} (the default)"
                raise UsageError(f"{why}, and device {device.name} has no {dtype} peak (it has "
                                 f"{', '.join(peaks)}): price it in one it has with --dtype, e.g. "
                                 f"--dtype {next(iter(peaks))}",
                                 source=model.source)


def prepare(requests: Sequence[Request]) -> None:
    """Before analyzing several models: recognise every model file (fail fast, naming a bad one)
    and import what loading and analyzing them needs, once, before worker processes fork."""
    weights = prepare_loading([r.model for r in requests])
    distinct: list[Settings] = []
    for request in requests:
        if request.settings not in distinct:
            distinct.append(request.settings)
            approx, _ = hooks(request.settings)
            if weights and isinstance(approx, Approximator):
                approx.preload(request.settings.variants)


def run(request: Request, model: Model | None = None) -> Analysis:
    model = model or load(request)
    check_model(request, model)
    settings = request.settings
    with progress(f"analyzing {len(model.convs)} convs") as tick:
        approx, options_for = hooks(settings)
        if isinstance(approx, Approximator) and options_for is None and "spatial" in settings.variants:
            approx.ahead([c for c in model.convs if settings.selects(c.name)], settings.options, spare_cores())
        try:
            return analyze(model, settings, request.devices, approx, tick, options_for)
        finally:
            if isinstance(approx, Approximator):
                approx.close()
