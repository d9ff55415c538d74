"""TorchScript archives (`torch.jit.save`), recognised without unpickling anything.

A `.pt` can be three different things: a TorchScript archive (zip with `code/`), a
`torch.save` pickle (zip with `data.pkl` and no code, or a raw pickle in the legacy format),
or some other zip. Only the first is loaded, with `torch.jit.load`, whose unpickler builds
TorchScript types only. The others are identified by their zip entry names and, for pickles,
by listing the pickle's opcodes (`pickletools.genops` decodes, it never executes), so the
error can say whether the file holds a state dict or a whole pickled model.

torch is imported only once a file is known to be TorchScript.
"""

from __future__ import annotations

import pickletools
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from convcost.ir.inputs import Given, Inputs, InputSyntaxError, parse_inputs
from convcost.ir.model import Model
from convcost.util.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
TORCH_SUFFIXES = {".pt", ".pth", ".pt2", ".ptl", ".jit", ".torchscript"}
#: Entry names that show a zip is PyTorch's; the first entry is often a tensor (`top/data/0`).
_ZIP_MARKERS = (b"/data.pkl", b"/constants.pkl", b"/code/", b"/data/0", b"/version", b"/byteorder",
                b"/archive_format")
#: `torch.jit.save(..., _extra_files={"input_shape": "1x3x224x224"})`: the archive's own -i.
INPUT_SHAPE_EXTRA = "input_shape"
#: A saved shape written as Python prints one: `str(x.shape)` ("torch.Size([1, 3, 224, 224])"), a list, a tuple.
_PRINTED_SHAPE = re.compile(r"\s*(?:torch\.Size\(\s*)?[\[(]\s*(\d+(?:\s*,\s*\d+)*)\s*,?\s*[\])]\s*\)?\s*")

_EXPORT_HINT = ("export it with torch.jit.trace(model, example).save(...) or torch.onnx.export, "
                "or analyze the model class directly as module:factory (e.g. mypkg.models:build_model)")
#: Pickle globals a weights-only checkpoint refers to; anything else is a pickled object.
_TENSOR_GLOBAL_MODULES = ("collections", "torch._utils", "torch", "torch._tensor", "torch.nn.parameter",
                          "builtins", "_codecs", "copyreg", "numpy", "numpy.core.multiarray",
                          "numpy._core.multiarray")


def is_pickle(head: bytes) -> bool:
    """Pickle protocol 2-5 header (torch.save's legacy format, pickle.dump)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def looks_like_torch(path: Path, head: bytes) -> bool:
    """Sniffer: a zip that looks like a PyTorch archive, or a pickle (for a clear refusal)."""
    if head.startswith(ZIP_MAGIC):
        return path.suffix.lower() in TORCH_SUFFIXES or any(m in head for m in _ZIP_MARKERS)
    return is_pickle(head)


def _pickle_globals(stream: IO[bytes], pickles: int = 1) -> list[str]:
    """`module.name` of every class or function the pickle(s) would import, in order."""
    found: list[str] = []
    for _ in range(pickles):
        strings: list[str] = []
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name == "GLOBAL" and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - end of pickles, tensor bytes, or damage: stop listing
            break
    return found


def _describe_pickle(globals_: Iterable[str], what: str) -> str:
    names = list(globals_)
    objects = [g for g in names if g.rpartition(".")[0] not in _TENSOR_GLOBAL_MODULES]
    if not any(g.startswith("torch") for g in names) and not objects:
        return f"is {what} of plain Python data (no tensors, no model), not a TorchScript archive"
    if objects:
        return (f"is {what} of a whole Python object (unpickling would import {objects[0]}), not a TorchScript "
                f"archive; convcost does not unpickle it, since unpickling can run arbitrary code: {_EXPORT_HINT}")
    return (f"is {what} of tensors only (a state dict or checkpoint: weights without the architecture), "
            "not a TorchScript archive; give a module:factory that builds the model and loads these "
            "weights (e.g. mypkg.models:build_model), or export the model with torch.jit.trace / torch.onnx")


def check_archive(path: Path) -> tuple[str, str | None]:
    """The TorchScript archive's top folder and its saved input shapes (`_archived_inputs`), if any;
    otherwise InputError saying what the file is."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if not head.startswith(ZIP_MAGIC):
            if is_pickle(head):
                fh.seek(0)
                # Legacy torch.save: magic number, protocol, sys info, then the object.
                raise InputError(_describe_pickle(_pickle_globals(fh, pickles=4), "a pickle (legacy torch.save "
                                                                                    "or pickle.dump)"), path)
            raise InputError("not a zip archive, so not TorchScript", path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            tops = {n.split("/", 1)[0] for n in names if "/" in n}
            for top in sorted(tops):
                if any(n.startswith(f"{top}/code/") for n in names) and (
                        f"{top}/data.pkl" in names or f"{top}/constants.pkl" in names):
                    _check_structure(zf, top)
                    return top, _extra_text(zf, f"{top}/extra/{INPUT_SHAPE_EXTRA}")
            pkl = next((n for n in names if n.endswith("/data.pkl")), None)
            if pkl is not None:
                with zf.open(pkl) as data:
                    raise InputError(_describe_pickle(_pickle_globals(data), "a torch.save() archive"), path)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"corrupt or truncated zip archive ({exc}); save it again with torch.jit.save",
                         path) from None
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"cannot read the zip archive: {exc}", path) from None
    if any(n.endswith("/archive_format") for n in names):
        raise InputError("is a torch.export archive (.pt2), not TorchScript; convcost reads it with its .pt2 loader "
                         "(give the file to convcost analyze)", path)
    shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    raise InputError(f"is a zip archive without TorchScript code (entries: {shown or 'none'}); {_EXPORT_HINT}",
                     path)


def _check_structure(zf: zipfile.ZipFile, top: str) -> None:
    """CRC-check the archive's code and pickles (not the tensor data): torch's reader does not,
    and a damaged pickle makes it fail with an internal assertion instead of saying so."""
    for info in zf.infolist():
        if not info.filename.startswith(f"{top}/data/"):
            with zf.open(info) as entry:
                while entry.read(1 << 20):
                    pass


def _extra_text(zf: zipfile.ZipFile, name: str) -> str | None:
    try:
        return zf.read(name).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def _archived_inputs(path: Path, text: str | None) -> dict[str, Given]:
    """Inputs saved with the archive as `_extra_files={"input_shape": "1x3x224x224"}`, if any: the
    `-i` syntax, several separated by spaces, `;` or lines ("x=1x16000 sr=16000"), or one shape as
    Python prints it (`str(x.shape)`)."""
    if text is None:
        return {}
    printed = _PRINTED_SHAPE.fullmatch(text)
    if printed:
        text = "x".join(d.strip() for d in printed.group(1).split(","))
    try:
        return parse_inputs(text.replace(";", " ").split())
    except InputSyntaxError as exc:
        raise InputError(f"extra/{INPUT_SHAPE_EXTRA} in the archive: {exc}", path) from None


def import_torch(source: str | Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("reading PyTorch models needs PyTorch, which is not installed: pip install torch",
                         source) from None


def load_torchscript(path: Path, inputs: Inputs | None) -> Model:
    """Load a `torch.jit.save` archive on CPU and capture one forward pass on zeros.

    The inputs saved in the archive apply where `-i` does not name the same argument: `-i sr=8000`
    changes a sample rate and keeps the saved tensor shape."""
    _, text = check_archive(path)
    saved = _archived_inputs(path, text)
    import_torch(path)
    import torch

    from convcost.loaders.pytorch.capture import capture, summarize_error

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and friends for bad archives
        text = summarize_error(exc)
        if "maximum supported version" in text:
            raise InputError(f"written by a newer PyTorch than the installed torch {torch.__version__} "
                             f"({text.split('. The version')[0]}); upgrade torch, or save it again with this "
                             "version", path) from None
        raise InputError(f"cannot load the TorchScript archive: {text}", path) from None
    return capture(module, inputs, name=path.stem, source=str(path), fmt="torchscript",
                   what="a TorchScript archive", eager=False, saved=saved)
