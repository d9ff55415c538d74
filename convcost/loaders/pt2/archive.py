"""A `.pt2` file (torch.export.save) opened with zipfile and json only: never unpickled.

The archive is a zip under one top folder: `archive_format` ("pt2"), the exported program as JSON
(`models/<name>.json`: the graph, its tensors' sizes and dtypes, the signature), and weights as
raw tensor bytes (`data/weights/weight_N`) described by `data/weights/model_weights_config.json`.
Its pickled members (the example inputs, `data/sample_inputs/*.pt`, and any weight or constant
saved with `use_pickle`) are never read: unpickling can run arbitrary code, which is why
`torch.export.load` must not be called on a file nobody vouched for. Archives from torch 2.7 and
older keep the program in `serialized_exported_program.json` beside pickled weights; their graph is
read the same way, their weights not at all.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from convcost.util.errors import InputError

if TYPE_CHECKING:
    import numpy as np

ZIP_MAGIC = b"PK\x03\x04"
FORMAT_MEMBER = "archive_format"
LEGACY_PROGRAM = "serialized_exported_program.json"
#: Largest JSON member read (a 100k-node graph is well under 100 MiB).
MAX_JSON_BYTES = 512 * 2**20
#: Largest single weight read for the SVD features.
MAX_WEIGHT_BYTES = 4 * 2**30

#: torch's ScalarType numbers (torch/_export/serde/schema.py); older archives write the member name.
SCALAR_TYPES: dict[int, str] = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    12: "bool", 13: "bfloat16",
}
_SCALAR_NAMES = {"BYTE": 1, "CHAR": 2, "SHORT": 3, "INT": 4, "LONG": 5, "HALF": 6, "FLOAT": 7, "DOUBLE": 8,
                 "BOOL": 12, "BFLOAT16": 13}
_ITEMSIZE = {"uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "float16": 2, "float32": 4, "float64": 8,
             "bool": 1, "bfloat16": 2}


def dtype_name(code: object) -> str | None:
    """`float32`, `float16`... for a serialized ScalarType (number or member name)."""
    if isinstance(code, str):
        code = _SCALAR_NAMES.get(code.upper())
    return SCALAR_TYPES.get(code) if isinstance(code, int) else None


def _top_members(names: list[str], leaf: str) -> list[str]:
    """Members named `leaf` at the root or one folder down (the archive's top folder)."""
    return [n for n in names if n == leaf or (n.endswith("/" + leaf) and n.count("/") == 1)]


def _is_torchscript(names: list[str]) -> bool:
    return any("/code/" in n for n in names) or any(n.endswith(("/data.pkl", "/constants.pkl")) for n in names)


def looks_like_pt2(path: Path, head: bytes) -> bool:
    """Sniffer: a zip with an `archive_format` member or a legacy exported-program JSON; a `.pt2`
    zip that holds no TorchScript or `torch.save` pickle too, so that it gets a .pt2 error."""
    if not head.startswith(ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return path.suffix.lower() == ".pt2"
    if _top_members(names, FORMAT_MEMBER) or _top_members(names, LEGACY_PROGRAM):
        return True
    return path.suffix.lower() == ".pt2" and not _is_torchscript(names)


@dataclass(frozen=True)
class StoredTensor:
    """A tensor stored as raw bytes in the archive: its member and layout (strides in elements)."""

    member: str
    dtype: str
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int


@dataclass
class Archive:
    """What convcost reads from a `.pt2`: the exported program (parsed JSON) and where raw weights are."""

    path: Path
    program: dict[str, Any]
    #: Parameter, buffer and constant names -> raw bytes; pickled or legacy weights are absent.
    tensors: dict[str, StoredTensor] = field(default_factory=dict)
    #: Names of weights stored as pickles (never read).
    pickled: set[str] = field(default_factory=set)
    byteorder: str = "little"
    legacy: bool = False

    def weight_loader(self, fqn: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray] | None:
        """A lazy reader of a parameter's values (float32), or None if the archive has no raw copy
        of that shape."""
        stored = self.tensors.get(fqn)
        if stored is None or stored.sizes != shape:
            return None
        path, byteorder = self.path, self.byteorder

        def load() -> np.ndarray:
            return read_tensor(path, stored, byteorder)

        return load


def _read_json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    info = zf.getinfo(name)
    if info.file_size > MAX_JSON_BYTES:
        raise InputError(f"{name} is larger than {MAX_JSON_BYTES // 2**20} MiB; not read", path)
    try:
        return json.loads(zf.read(name))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name} is not valid JSON ({exc})", path) from None
    except RecursionError:
        raise InputError(f"{name} is nested too deeply to be an exported program", path) from None


def _read_small(zf: zipfile.ZipFile, name: str, limit: int = 64) -> bytes:
    """A marker member's first bytes, without inflating more than that."""
    with zf.open(name) as fh:
        return fh.read(limit)


def _choose_program(names: list[str], top: str, path: Path) -> str:
    prefix = f"{top}/models/" if top else "models/"
    depth = prefix.count("/")
    programs = sorted(n for n in names if n.startswith(prefix) and n.endswith(".json") and n.count("/") == depth)
    if not programs:
        if any("/aotinductor/" in n for n in names):
            raise InputError("is an AOTInductor package (compiled kernels, no exported graph): convcost reads "
                             "torch.export.save archives; save the ExportedProgram with torch.export.save", path)
        raise InputError(f"is a .pt2 archive without an exported program ({prefix}*.json is missing)", path)
    preferred = f"{prefix}model.json"
    if preferred in programs:
        return preferred
    if len(programs) == 1:
        return programs[0]
    shown = ", ".join(p[len(prefix):-5] for p in programs[:6])
    raise InputError(f"holds {len(programs)} exported programs ({shown}); convcost reads an archive with one "
                     "program, as torch.export.save writes", path)


def open_archive(path: Path) -> Archive:
    """Read the exported program and the raw-weight index, or say why this is not a readable `.pt2`."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            formats = _top_members(names, FORMAT_MEMBER)
            if formats:
                return _open_current(zf, names, formats[0], path)
            legacy = _top_members(names, LEGACY_PROGRAM)
            if legacy:
                return Archive(path, _read_json(zf, legacy[0], path), legacy=True)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"corrupt or truncated zip archive ({exc}); save it again with torch.export.save",
                         path) from None
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the zip archive: {exc}", path) from None
    if _is_torchscript(names):
        raise InputError("is a TorchScript or torch.save archive, not a torch.export archive", path)
    shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    raise InputError(f"is a zip archive but not a torch.export (.pt2) archive: it has no archive_format entry "
                     f"(entries: {shown or 'none'}); save the model with torch.export.save", path)


def _open_current(zf: zipfile.ZipFile, names: list[str], format_member: str, path: Path) -> Archive:
    top = format_member.rpartition("/")[0]
    value = _read_small(zf, format_member).strip()
    if value != b"pt2":
        raise InputError(f"{format_member} says {value.decode('utf-8', 'replace')!r}, not 'pt2': not a torch.export "
                         "archive convcost knows", path)
    program_member = _choose_program(names, top, path)
    archive = Archive(path, _read_json(zf, program_member, path))
    prefix = f"{top}/" if top else ""
    byteorder_member = f"{prefix}byteorder"
    if byteorder_member in names:
        archive.byteorder = "big" if _read_small(zf, byteorder_member).strip() == b"big" else "little"
    model = program_member.rsplit("/", 1)[1][: -len(".json")]
    for kind, folder in (("weights", "data/weights"), ("constants", "data/constants")):
        config_member = f"{prefix}{folder}/{model}_{kind}_config.json"
        if config_member not in names:
            continue
        config = _read_json(zf, config_member, path)
        entries = config.get("config", {}) if isinstance(config, dict) else {}
        for fqn, entry in entries.items() if isinstance(entries, dict) else ():
            stored = _stored(entry, f"{prefix}{folder}/", names)
            if stored is not None:
                archive.tensors[fqn] = stored
            elif isinstance(entry, dict) and entry.get("use_pickle"):
                archive.pickled.add(fqn)
    return archive


def _stored(entry: object, folder: str, names: list[str]) -> StoredTensor | None:
    """The raw-bytes description of one config entry; None for pickled or malformed entries."""
    if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
        return None
    meta = entry.get("tensor_meta")
    member = f"{folder}{entry.get('path_name')}"
    if not isinstance(meta, dict) or member not in names:
        return None
    dtype = dtype_name(meta.get("dtype"))
    sizes = static_ints(meta.get("sizes"))
    strides = static_ints(meta.get("strides"))
    offset = static_ints([meta.get("storage_offset")])
    if dtype is None or sizes is None or strides is None or offset is None or len(sizes) != len(strides):
        return None
    return StoredTensor(member, dtype, sizes, strides, offset[0])


def static_ints(values: object) -> tuple[int, ...] | None:
    """`[{"as_int": 3}, ...]` as ints; None if any is symbolic or malformed."""
    if not isinstance(values, list):
        return None
    out = []
    for v in values:
        if not isinstance(v, dict) or not isinstance(v.get("as_int"), int) or isinstance(v.get("as_int"), bool):
            return None
        out.append(v["as_int"])
    return tuple(out)


def read_tensor(path: Path, stored: StoredTensor, byteorder: str = "little") -> np.ndarray:
    """A stored tensor as a float32 numpy array, its layout checked against the bytes first
    (strides and offset come from the file, and numpy's as_strided trusts them blindly)."""
    import numpy as np

    itemsize = _ITEMSIZE[stored.dtype]
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(stored.member)
            if info.file_size > MAX_WEIGHT_BYTES:
                raise InputError(f"{stored.member} is larger than {MAX_WEIGHT_BYTES // 2**30} GiB; not read", path)
            data = zf.read(stored.member)
    except (zipfile.BadZipFile, zlib.error, OSError, KeyError) as exc:
        raise InputError(f"cannot read {stored.member}: {exc}", path) from None
    count = len(data) // itemsize
    if any(s < 0 for s in stored.sizes) or any(s < 0 for s in stored.strides) or stored.offset < 0:
        raise InputError(f"{stored.member}: negative size, stride or offset in its tensor_meta", path)
    if 0 in stored.sizes:
        return np.zeros(stored.sizes, dtype=np.float32)
    last = stored.offset + sum((n - 1) * s for n, s in zip(stored.sizes, stored.strides, strict=True))
    if len(data) % itemsize or last >= count:
        raise InputError(f"{stored.member}: {len(data)} bytes cannot hold a {stored.dtype} tensor of sizes "
                         f"{list(stored.sizes)} with strides {list(stored.strides)}", path)
    order: Literal["<", ">"] = ">" if byteorder == "big" else "<"
    flat: np.ndarray
    if stored.dtype == "bfloat16":  # the high half of a float32
        flat = (np.frombuffer(data, dtype=f"{order}u2").astype(np.uint32) << 16).view(np.float32)
    else:
        flat = np.frombuffer(data, dtype=np.dtype(stored.dtype).newbyteorder(order))
    view = np.lib.stride_tricks.as_strided(flat[stored.offset:], shape=stored.sizes,
                                           strides=tuple(s * flat.itemsize for s in stored.strides), writeable=False)
    return np.array(view, dtype=np.float32)
