"""`module:factory` models: an importable callable that returns an eager `torch.nn.Module`.

`pkg.models:resnet18` imports `pkg.models` (the current directory is importable, as with
`python -m`) and calls `resnet18()`; `path/to/file.py:make_model` loads that file (its folder
importable while it runs). The attribute may be dotted (`pkg.zoo:Nets.small`), and may be an
`nn.Module` instance instead of a factory. Importing and calling run the user's own code, as
`python -c` would; nothing is unpickled.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from convcost.ir.inputs import Inputs
from convcost.ir.model import Model
from convcost.util.errors import InputError

_IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def split_factory_spec(text: str) -> tuple[str, str] | None:
    """`module:attr` -> (module, attr) when `attr` is a dotted identifier, else None."""
    module, sep, attr = text.rpartition(":")
    if not sep or not module or not attr:
        return None
    parts = attr.split(".")
    if all(p and not p[0].isdigit() and set(p) <= _IDENT_CHARS for p in parts):
        return module, attr
    return None


def _summary(exc: BaseException) -> str:
    from convcost.loaders.pytorch.capture import summarize_error

    return f"{type(exc).__name__}: {summarize_error(exc)}"


def _import(module: str, spec: str) -> Any:
    if module.endswith(".py") or "/" in module or os.sep in module:
        path = Path(module)
        if not path.is_file():
            raise InputError(f"no such Python file: {module}", spec)
        name = f"_convcost_user_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise InputError(f"cannot import {module} as Python", spec)
        mod = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = mod
        sys.path.insert(0, str(path.resolve().parent))
        try:
            loader_spec.loader.exec_module(mod)
        except Exception as exc:  # noqa: BLE001 - the user's file failed; say how, in one line
            raise InputError(f"running {module} failed: {_summary(exc)}", spec) from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        return mod
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise InputError(f"no module named {exc.name!r} (not a file either; is it installed or in the "
                             "current directory?)", spec) from None
        raise InputError(f"importing {module} failed: {_summary(exc)}", spec) from None
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"importing {module} failed: {_summary(exc)}", spec) from None


def resolve_factory(spec: str) -> Any:
    """The `nn.Module` a `module:factory` spec names (built by calling the factory)."""
    parts = split_factory_spec(spec)
    if parts is None:
        raise InputError("expected module:factory, e.g. mypkg.models:resnet18 or path/to/file.py:make_model", spec)
    module, attr = parts
    from convcost.loaders.pytorch.torchscript import import_torch

    import_torch(spec)
    from torch import nn

    obj: Any = _import(module, spec)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"{module} has no attribute {attr!r}", spec) from None
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise InputError(f"{attr} is a {type(obj).__name__}, not a callable that returns a torch.nn.Module", spec)
    try:
        built = obj()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"calling {attr}() failed: {_summary(exc)}", spec) from None
    if not isinstance(built, nn.Module):
        raise InputError(f"{attr}() returned a {type(built).__name__}, not a torch.nn.Module", spec)
    return built


def load_factory(spec: str, inputs: Inputs | None) -> Model:
    """Build the model from `module:factory` and capture one forward pass on zeros."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the user's import-time warnings; errors stay one line
        module = resolve_factory(spec)
    from convcost.loaders.pytorch.capture import capture

    name = spec.rpartition(":")[2]
    return capture(module, inputs, name=name, source=spec, fmt="pytorch",
                   what="a module:factory model", eager=True)
