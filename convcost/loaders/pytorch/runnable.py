"""A loaded model as a module torch can run: what `bench` runs end to end with a torch profile, and
what `apply` rewrites. Imports torch."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from convcost.ir.model import Model
from convcost.util.errors import InputError, first_line


def load_module(spec: str, kind: str) -> nn.Module:
    """The eager module of a `module:factory` spec, or the ScriptModule of a TorchScript archive."""
    if kind == "pytorch":
        from convcost.loaders.pytorch.factory import resolve_factory

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resolve_factory(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module: nn.Module = torch.jit.load(spec, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch's errors for a bad archive
            raise InputError(f"cannot load the TorchScript archive: {first_line(exc)}", spec) from None
    return module


def runnable(model: Model) -> nn.Module | None:
    """The model as torch runs it: a spec's module built from it (random weights), a TorchScript
    archive, a `module:factory`'s module, a `.pt2`'s exported program; None for ONNX (torch does
    not run ONNX)."""
    if model.format == "spec":
        from convcost.loaders.pytorch.spec_module import spec_module

        return spec_module(model.source, {"input": model.inputs["input"]}).eval()
    if model.format in ("torchscript", "pytorch"):
        return load_module(model.source, model.format).eval()
    if model.format == "pt2":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(model.source).module()
    return None


def forward_call(model: Model, module: nn.Module, dtype: torch.dtype = torch.float32) -> Any:
    """A callable running `module` once on random inputs at the model's analysed shapes and values."""
    tensors = [torch.randn(shape, dtype=dtype) for shape in model.inputs.values()]
    values = dict(model.values)

    def run() -> object:
        return module(*tensors, **values)

    return run
