"""`convcost apply`: choose, factorize, write, and prove the rewritten model.

1. Load and analyze the model (its totals and per-layer latency on the `-d` devices).
2. Choose each conv's replacement: one variant for every selected conv (`-V`, `--rank auto`), or
   a plan file's per-layer choices (`--plan`).
3. Factorize (`analysis.replacing`) and rewrite the graph (`onnx_writer`).
4. Write OUT (and its external data) into a staging folder beside it; check it there: the
   onnx.checker full check, re-analysis (params and MACs must equal the prediction) and, with
   onnxruntime, the output errors per conv and for the whole model. Only then is OUT renamed into
   place: a failed run leaves no file behind.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from convcost.analysis.applied import ApplyResult
from convcost.analysis.pipeline import check_model, load
from convcost.analysis.replacing import Kept, build_all, predicted_totals, require_weights
from convcost.export.request import ApplyRequest, analyze_plain, choose, reanalyze
from convcost.util.errors import InputError, UsageError
from convcost.util.progress import progress


def source_kind(spec: str) -> str:
    """The MODEL's format: onnx, spec, torchscript, or pytorch (module:factory)."""
    from convcost.loaders import detect
    from convcost.loaders.pytorch.factory import split_factory_spec

    path = Path(spec)
    if not path.exists() and split_factory_spec(spec):
        return "pytorch"
    return detect(path).name


def run_apply(req: ApplyRequest) -> ApplyResult:
    """Dispatch on the model's format and OUT's: ONNX in and out; PyTorch to ONNX (exported, then
    rewritten) or to TorchScript (modules swapped, `torch_apply`)."""
    source = Path(req.request.model)
    if source.exists() and req.output.exists() and source.resolve() == req.output.resolve():
        raise UsageError("-o must name a new file, not the model being rewritten", req.output)
    kind = source_kind(req.request.model)
    if kind == "spec":
        raise UsageError("a YAML layer spec has no weights to factorize: apply rewrites ONNX models and "
                         "PyTorch models (module:factory, TorchScript)", source)
    from convcost.export.torch_apply import TORCHSCRIPT_SUFFIXES

    wants_torchscript = req.output.suffix.lower() in TORCHSCRIPT_SUFFIXES
    if kind == "onnx":
        if wants_torchscript:
            raise UsageError("an ONNX model is written back as ONNX: name OUT .onnx", req.output)
        return run_onnx(req)
    if wants_torchscript:
        from convcost.export.torch_apply import run_torch

        return run_torch(req, kind)
    return _torch_to_onnx(req, kind)


def _torch_to_onnx(req: ApplyRequest, kind: str) -> ApplyResult:
    """Export the PyTorch model with torch.onnx, then rewrite that ONNX model."""
    import tempfile

    from convcost.export.torch_apply import example_inputs, export_onnx, load_module

    spec = req.request.model
    module = load_module(spec, kind)
    args, kwargs = example_inputs(module, req.request.inputs, spec, req.seed)
    with tempfile.TemporaryDirectory(prefix="convcost-apply-") as folder:
        name = Path(spec.rpartition(":")[2] if kind == "pytorch" else spec).stem or "model"
        exported = Path(folder) / f"{name}.onnx"
        export_onnx(module, args, kwargs, exported, spec)
        result = run_onnx(replace(req, request=replace(req.request, model=str(exported))))
    result.model.source = spec
    result.checks.insert(0, "exported with torch.onnx (TorchScript-based exporter, opset 17; BatchNorm folded "
                            "into the convs) before factorizing")
    return result


def run_onnx(req: ApplyRequest) -> ApplyResult:
    source = Path(req.request.model)
    model = load(req.request)
    check_model(req.request, model)
    require_weights(model, "apply")
    analysis = analyze_plain(model, req.request)
    choices, strict = choose(req, model)
    with progress(f"factorizing {len(choices)} convs") as tick:
        replacements, kept = build_all(model, choices, analysis.settings.dtype, strict, tick)

    from convcost.export import onnx_writer as w

    graph = w.load_ir(source)
    w.check_external_data(graph, source)
    replacements, unplaced = w.rewrite(graph, replacements)
    if strict and unplaced:
        k = unplaced[0]
        raise InputError(f"layer {k.conv.name!r} cannot be replaced: {k.reason}", req.plan)
    kept += unplaced
    predicted = predicted_totals(analysis, replacements, req.request.devices)
    result = ApplyResult(model=model, output=str(req.output), external_data=None, replaced=replacements,
                         kept=kept, before=analysis.totals, predicted=predicted, after=predicted)

    from convcost.util.staging import staging

    with staging(req.output) as stage:
        result.external_data = w.save(graph, stage.main, external=bool(w.external_tensors(graph)))
        _check(result, stage.main, source)
        result.after = reanalyze(stage.main, req.request)
        if not result.counts_match:
            result.warnings.append(
                f"re-analysing the written model gives {result.after.params} params and {result.after.macs} MACs; "
                f"the prediction was {result.predicted.params} and {result.predicted.macs}")
        if req.verify:
            _prove(result, req, stage.main, source)
        stage.commit()
    if result.external_data:
        result.external_data = str(req.output.parent / result.external_data)
    return result


def _check(result: ApplyResult, written: Path, source: Path) -> None:
    from convcost.export.onnx_writer import checker_error

    problem = checker_error(written)
    if problem is None:
        result.checks.append("onnx.checker full check (with shape inference): passed")
        return
    original = checker_error(source)
    if original is None:
        raise RuntimeError(f"the rewritten model fails onnx.checker: {problem}")
    result.checks.append("onnx.checker full check: not passed, as the original does not pass it either")
    result.warnings.append(f"the original model fails onnx.checker's full check: {original}")


def _prove(result: ApplyResult, req: ApplyRequest, written: Path, source: Path) -> None:
    from convcost.export import verify

    version = verify.runtime_version()
    if version is None:
        result.skipped = f"onnxruntime is not installed, so the outputs were not compared: {verify.INSTALL_HINT}"
        return
    result.runtime = version
    with progress(f"running {len(result.replaced)} replaced convs in onnxruntime") as tick:
        for i, r in enumerate(result.replaced):
            result.conv_errors[r.conv.name] = verify.conv_error(r, req.seed)
            tick(i + 1, len(result.replaced))
    # time with the threads the first device profile was calibrated with, where it says
    threads = next((t for d in req.request.devices if (t := getattr(d, "threads", None))), 0)
    try:
        errors, shapes, described, before, after, inputs = verify.compare(source, written, result.model.inputs,
                                                                           req.data, req.seed, threads)
    except verify.OriginalDoesNotRun as exc:
        result.skipped = f"{exc}; the model outputs were not compared"
        return
    result.output_errors, result.output_shapes, result.inputs_from = errors, shapes, described
    if not result.shapes_match:
        raise RuntimeError("the rewritten model's outputs differ in shape from the original's: " + ", ".join(
            f"{n} {a} -> {b}" for n, (a, b) in shapes.items() if a != b))
    if req.bench:
        result.timing = verify.bench(before, after, inputs)


__all__ = ["ApplyRequest", "Kept", "run_apply"]
