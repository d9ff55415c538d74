"""Loaders turn a file into a `Model`. Each registers how it recognises its format by content.

Loaders import their heavy dependencies (onnx, torch) inside `load`, so the CLI and the YAML
path start fast and never import torch.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from convcost.ir.inputs import Inputs
from convcost.ir.model import Model, Shape
from convcost.util.errors import InputError, UsageError
from convcost.util.registry import Registry

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Loader:
    """A model format: `sniff(path, head)` says whether a file is one; `module:function` loads it."""

    name: str
    sniff: Callable[[Path, bytes], bool]
    target: str  # "package.module:function(path, inputs, **options) -> Model"
    #: What a load imports (the heavy parts: onnx's protobuf classes, torch): `prepare_loading`
    #: imports each module once, before the processes that load several models are forked; a
    #: "module:function" entry is also called (a module that loads its own parts on first use).
    preload: tuple[str, ...] = ()
    #: whether it takes `tensor_shapes` (--shape: any tensor's shape, for graphs with ops nobody can shape)
    tensor_shapes: bool = False
    #: "module:function(path) -> list of shapes": the stored weights' shapes, read without their
    #: data (a guess of the work before loading); "" where the format cannot say cheaply.
    weight_dims: str = ""
    #: whether its models may carry weights (for the SVD errors); a YAML spec never does
    weights: bool = True

    def load(self, path: Path, inputs: Inputs | None, tensor_shapes: dict[str, Shape] | None = None
             ) -> Model:
        options = {"tensor_shapes": tensor_shapes} if tensor_shapes else {}
        if options and not self.tensor_shapes:
            raise UsageError(f"--shape sets tensor shapes in ONNX graphs; this is a {self.name} model",
                             source=path)
        loaded: Model = _function(self.target)(path, inputs, **options)
        return loaded


def _function(target: str) -> Callable[..., Any]:
    """The function a "package.module:function" target names (importing its module)."""
    module, _, name = target.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))


#: Formats in the order `detect` tries them.
LOADERS: Registry[str, Loader] = Registry("model format")


def register_loader(loader: Loader) -> None:
    LOADERS.add(loader.name, loader)


def _looks_like_yaml(path: Path, head: bytes) -> bool:
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "layers:" in text and ("input:" in text or "name:" in text)


def _looks_like_onnx(path: Path, head: bytes) -> bool:
    """A serialized ModelProto; a `.onnx` name is enough unless the bytes are a zip (TorchScript)."""
    from convcost.loaders.onnx.wire import looks_like_onnx

    if path.suffix.lower() == ".onnx" and not head.startswith(b"PK"):
        return True
    return looks_like_onnx(head)


def _looks_like_pt2(path: Path, head: bytes) -> bool:
    """A torch.export archive: a zip with `archive_format` (checked before TorchScript, also a zip)."""
    from convcost.loaders.pt2.archive import looks_like_pt2

    return looks_like_pt2(path, head)


def _looks_like_torch(path: Path, head: bytes) -> bool:
    from convcost.loaders.pytorch.torchscript import looks_like_torch

    return looks_like_torch(path, head)


_TORCH = ("torch", "convcost.loaders.pytorch.capture")

register_loader(Loader("onnx", _looks_like_onnx, "convcost.loaders.onnx.loader:load_onnx",
                       ("convcost.loaders.onnx.proto:onnx", "numpy"), tensor_shapes=True,
                       weight_dims="convcost.loaders.onnx.wire:initializer_dims"))
register_loader(Loader("spec", _looks_like_yaml, "convcost.loaders.spec:load_spec", weights=False))
register_loader(Loader("pt2", _looks_like_pt2, "convcost.loaders.pt2.loader:load_pt2"))
register_loader(Loader("torchscript", _looks_like_torch, "convcost.loaders.pytorch.torchscript:load_torchscript",
                       _TORCH))


def detect(path: Path) -> Loader:
    """Recognise a model file by content (extension as a hint), or say what it is not."""
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except IsADirectoryError:
        raise InputError("is a directory, not a model file", path) from None
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    if not head:
        raise InputError("file is empty", path)
    for loader in LOADERS.values():
        if loader.sniff(path, head):
            return loader
    known = ", ".join(LOADERS)
    raise InputError(f"not a model convcost can read (recognised formats: {known})", path)


def load_model(model: str | Path, inputs: Inputs | None = None,
               tensor_shapes: dict[str, Shape] | None = None) -> Model:
    """Load a model file, or build a PyTorch model from `module:factory` (when no such file exists).

    `inputs` are the `-i` values by input name ("" for the one unnamed shape): shapes, values, or
    `Given`s that read as either, which each loader resolves by the model's signature.
    `tensor_shapes` (--shape) applies to ONNX graphs only; any other format refuses it (exit 2).
    """
    path = Path(model)
    if isinstance(model, str) and not path.exists():
        from convcost.loaders.pytorch.factory import split_factory_spec

        if split_factory_spec(model):
            if tensor_shapes:
                raise UsageError("--shape sets tensor shapes in ONNX graphs; this is a PyTorch factory",
                                 source=model)
            from convcost.loaders.pytorch.factory import load_factory

            return load_factory(model, inputs)
    return detect(path).load(path, inputs, tensor_shapes)


def stored_weight_dims(model: str) -> list[tuple[int, ...]]:
    """The shapes of a model file's stored weights where its format can tell without loading it
    (`Loader.weight_dims`), else [] (also for a file that is not readable: its load says why)."""
    path = Path(model)
    try:
        loader = detect(path)
    except (InputError, OSError):
        return []
    if not loader.weight_dims:
        return []
    try:
        dims: list[tuple[int, ...]] = _function(loader.weight_dims)(path)
    except OSError:
        return []
    return dims


def prepare_loading(models: Sequence[str]) -> bool:
    """Before loading several models: recognise each (a missing or unreadable file, or one of no
    known format, fails now, before any work, naming it) and import what their loaders need, once,
    so that worker processes forked afterwards inherit those modules instead of each importing them.
    Returns whether any of them may carry weights (`Loader.weights`)."""
    from convcost.loaders.pytorch.factory import split_factory_spec

    modules: dict[str, None] = {}
    weights = False
    for model in models:
        path = Path(model)
        if not path.exists() and split_factory_spec(model):
            modules.update(dict.fromkeys(("convcost.loaders.pytorch.factory", *_TORCH)))
            weights = True
            continue
        loader = detect(path)
        modules.update(dict.fromkeys((loader.target.partition(":")[0], *loader.preload)))
        weights = weights or loader.weights
    for entry in modules:
        with contextlib.suppress(ImportError):  # not installed: the load says so, naming the model
            if ":" in entry:
                _function(entry)()
            else:
                importlib.import_module(entry)
    return weights
