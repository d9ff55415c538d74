"""`convcost apply` on PyTorch models: `module:factory` or a TorchScript archive.

- To ONNX (`-o OUT.onnx`): the model is exported with torch.onnx (the TorchScript-based exporter,
  which folds each BatchNorm into its conv: the kernels factorized are the deployed ones), then
  rewritten like any ONNX model.
- To TorchScript (`-o OUT.pt`, module:factory only): each chosen conv module is swapped for the
  `nn.Sequential` of its stages (`export.pytorch`), the result traced and saved; the proof runs in
  torch: each conv against its stages, and the whole model, on random inputs.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.analysis.applied import ApplyResult, Timing
from convcost.analysis.pipeline import check_model
from convcost.analysis.replacing import Kept, Replacement, build_all, predicted_totals, require_weights
from convcost.ir.inputs import Inputs, givens
from convcost.loaders.pytorch.runnable import load_module
from convcost.util.errors import InputError, UsageError, first_line
from convcost.util.progress import progress

if TYPE_CHECKING:
    import torch
    from torch import nn

    from convcost.export.request import ApplyRequest

#: Output names that mean "write TorchScript".
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


def example_inputs(module: nn.Module, inputs: Inputs, source: str, seed: int) -> tuple[tuple, dict]:
    """Random tensors of the -i shapes (a `-i NAME=VALUE` that is no shape passes its value):
    positional for a single unnamed input, else by name."""
    import torch

    if not inputs:
        raise UsageError("-i is required to run a PyTorch model: give its input shape, e.g. -i 1x3x224x224",
                         source)
    dtype: torch.dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    gen = torch.Generator().manual_seed(seed)
    tensors = {name: given.value if given.shape is None else torch.randn(given.shape, generator=gen).to(dtype)
               for name, given in givens(inputs).items()}
    if "" in tensors:
        return (tensors[""],), {}
    return (), tensors


def export_onnx(module: nn.Module, args: tuple, kwargs: dict, path: Path, source: str) -> None:
    import torch

    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), kwargs=kwargs or None, dynamo=False, opset_version=17,
                              input_names=list(kwargs) if kwargs else ["input"])
    except Exception as exc:  # noqa: BLE001 - the exporter's own errors
        raise InputError(f"torch.onnx.export failed: {first_line(exc)}", source) from None


def _outputs(value: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _outputs(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _outputs(v)]
    return []


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    if a64.shape != b64.shape:
        return float("inf")
    norm = float(a64.norm())
    diff = float((b64 - a64).norm())
    return diff / norm if norm > 0 else diff


def conv_error(r: Replacement, original: Any, replacement: nn.Module, seed: int) -> float:
    """The stages against the conv on random input, in torch (bias included: it is the module)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *r.conv.input_shape[1:]), generator=gen).to(original.weight.dtype)
    with torch.no_grad():
        return _rel(original(x), replacement(x))


def run_torch(req: ApplyRequest, kind: str) -> ApplyResult:
    """module:factory -> TorchScript: swap the conv modules, trace, save, prove in torch."""
    import torch

    from convcost.analysis.replacing import Choice
    from convcost.export.pytorch import replacement_module
    from convcost.export.request import analyze_plain, choose
    from convcost.loaders.pytorch.capture import capture

    spec = req.request.model
    if kind != "pytorch":
        raise UsageError("a TorchScript archive's modules cannot be swapped: write ONNX instead (-o OUT.onnx), "
                         "or apply to the eager model (module:factory)", spec)
    module = load_module(spec, kind)
    model = capture(module, req.request.inputs, name=spec.rpartition(":")[2], source=spec, fmt="pytorch",
                    what="a module:factory model", eager=True)
    check_model(req.request, model)
    require_weights(model, "apply")
    analysis = analyze_plain(model, req.request)
    choices: dict[str, Choice]
    choices, strict = choose(req, model)
    with progress(f"factorizing {len(choices)} convs") as tick:
        replacements, kept = build_all(model, choices, analysis.settings.dtype, strict, tick)
    factorized = copy.deepcopy(module).eval()
    modules = dict(factorized.named_modules())
    placed: list[Replacement] = []
    originals: dict[str, nn.Module] = {}
    swapped: dict[str, nn.Module] = {}
    for r in replacements:
        name = r.conv.name.split("#")[0]
        original = modules.get(name)
        if not isinstance(original, torch.nn.modules.conv._ConvNd):
            kept.append(Kept(r.conv, r.variant, "not an nn.ConvNd module (a functional conv); nothing to swap"))
            continue
        if name not in swapped:
            swapped[name] = replacement_module(r, original)
            originals[name] = original
            from convcost.export.pytorch import _set

            _set(factorized, name, swapped[name])
        placed.append(r)
    predicted = predicted_totals(analysis, placed, req.request.devices)
    result = ApplyResult(model=model, output=str(req.output), external_data=None, replaced=placed, kept=kept,
                         before=analysis.totals, predicted=predicted, after=predicted)
    args, kwargs = example_inputs(module, req.request.inputs, spec, req.seed)
    from convcost.util.staging import staging

    with staging(req.output) as stage:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                traced = torch.jit.trace(factorized, args if args else (), example_kwarg_inputs=kwargs or None)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"torch.jit.trace of the factorized model failed: {first_line(exc)}", spec) \
                    from None
            torch.jit.save(traced, str(stage.main))
        result.checks.append("torch.jit.trace and torch.jit.save: the factorized module traced and saved")
        from convcost.export.request import reanalyze

        result.after = reanalyze(stage.main, req.request)
        if not result.counts_match:
            result.warnings.append(
                f"re-analysing the written model gives {result.after.params} params and {result.after.macs} MACs; "
                f"the prediction was {result.predicted.params} and {result.predicted.macs}")
        _prove(result, req, module, factorized, originals, swapped, args, kwargs)
        stage.commit()
    return result


def _prove(result: ApplyResult, req: ApplyRequest, module: nn.Module, factorized: nn.Module,
           originals: dict[str, nn.Module], swapped: dict[str, nn.Module], args: tuple, kwargs: dict) -> None:
    import torch

    result.runtime = f"torch {torch.__version__}"
    for r in result.replaced:
        name = r.conv.name.split("#")[0]
        result.conv_errors[r.conv.name] = conv_error(r, originals[name], swapped[name], req.seed)
    module.eval()
    with torch.no_grad():
        want = _outputs(module(*args, **kwargs))
        got = _outputs(factorized(*args, **kwargs))
    names = [f"output{i}" if len(want) > 1 else "output" for i in range(len(want))]
    result.output_errors = {n: _rel(a, b) for n, a, b in zip(names, want, got, strict=True)}
    result.output_shapes = {n: (list(a.shape), list(b.shape)) for n, a, b in zip(names, want, got, strict=True)}
    result.inputs_from = f"random (seed {req.seed})"
    if req.bench:
        result.timing = _bench(module, factorized, args, kwargs)


def _bench(before: nn.Module, after: nn.Module, args: tuple, kwargs: dict, seconds: float = 2.0) -> Timing:
    import torch

    a: list[float] = []
    b: list[float] = []
    with torch.no_grad():
        for m in (before, after):
            m(*args, **kwargs)
        start = time.perf_counter()
        while len(a) < 5 or (time.perf_counter() - start < seconds and len(a) < 1000):
            for m, times in ((before, a), (after, b)):
                t0 = time.perf_counter()
                m(*args, **kwargs)
                times.append((time.perf_counter() - t0) * 1e3)
    return Timing(f"torch {torch.__version__}", statistics.median(a), statistics.median(b), len(a),
                  torch.get_num_threads())
