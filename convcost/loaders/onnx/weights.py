"""Weights on demand: a conv's weight tensor is read only when a weight-based feature calls for it.

A weight may be an initializer (inline, left in the file by the lean reader, or external data),
a `Constant` node, a `ConstantOfShape` (the "light" zoo models), or any of those behind
Identity / Cast / Transpose / DequantizeLinear. External data is read from the model's folder
only: a location that points elsewhere, or a missing file, is an InputError raised when the
weight is asked for, not before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.ir.model import WeightLoader
from convcost.loaders.onnx import proto
from convcost.loaders.onnx.graph import attrs, quote
from convcost.loaders.onnx.wire import SPAN_KEY, WireError, read_span
from convcost.util.errors import InputError, first_line

if TYPE_CHECKING:
    import numpy as np
    from onnx import NodeProto, TensorProto

#: Ops a weight may pass through on its way to a conv; each maps its first input to its output.
PASS_THROUGH = frozenset({"Identity", "Cast", "Transpose", "DequantizeLinear"})
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class Weights:
    """Resolves a tensor name to a lazy loader of its value."""

    def __init__(self, path: Path, initializers: dict[str, TensorProto],
                 made_by: dict[str, NodeProto]) -> None:
        self.path = path
        self.initializers = initializers
        self.made_by = made_by

    def loader(self, name: str) -> WeightLoader | None:
        """A callable returning the tensor as an array, or None where we cannot compute it."""
        if not self._resolvable(name, 0):
            return None
        return lambda: self.value(name)

    def _resolvable(self, name: str, depth: int) -> bool:
        if depth > 16:
            return False
        if name in self.initializers:
            return True
        node = self.made_by.get(name)
        if node is None:
            return False
        if node.op_type == "Constant":
            return any(a.name in ("value", "value_float", "value_floats", "value_int", "value_ints")
                       for a in node.attribute)
        if node.op_type == "ConstantOfShape":
            return self._resolvable(node.input[0], depth + 1)
        if node.op_type in PASS_THROUGH:
            if node.op_type == "DequantizeLinear" and attrs(node).get("block_size"):
                return False
            return all(self._resolvable(x, depth + 1) for x in node.input if x)
        return False

    def value(self, name: str) -> np.ndarray:
        """Read and compute the tensor now."""
        import numpy as np

        if name in self.initializers:
            return self.tensor(self.initializers[name], name)
        node = self.made_by[name]
        a = attrs(node)
        op = node.op_type
        if op == "Constant":
            if "value" in a:
                return self.tensor(a["value"], name)
            for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                               ("value_int", np.int64), ("value_ints", np.int64)):
                if key in a:
                    return np.asarray(a[key], dtype=dtype)
        if op == "ConstantOfShape":
            shape = [int(d) for d in self.value(node.input[0]).reshape(-1)]
            fill = self.tensor(a["value"], name).reshape(-1) if "value" in a else np.zeros(1, np.float32)
            return np.full(shape, fill[0], dtype=fill.dtype)
        x = self.value(node.input[0])
        if op == "Identity":
            return x
        if op == "Cast":
            return x.astype(proto.np_dtype(a["to"]))
        if op == "Transpose":
            return np.transpose(x, a.get("perm"))
        # DequantizeLinear: (x - zero_point) * scale, per tensor or per `axis`.
        scale = self.value(node.input[1]).astype(np.float32)
        zero = self.value(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int32)
        axis = a.get("axis", 1) % max(x.ndim, 1)

        def along(v: Any) -> Any:
            if v.size == 1:
                return v.reshape(())
            shape = [1] * x.ndim
            shape[axis] = v.size
            return v.reshape(shape)

        return ((x.astype(np.int32) - along(zero).astype(np.int32)) * along(scale)).astype(np.float32)

    def tensor(self, t: TensorProto, name: str) -> np.ndarray:
        """A TensorProto's value, reading what the lean reader or external data left on disk."""
        from google.protobuf.message import DecodeError

        TP = proto.onnx().pb.TensorProto  # noqa: N806
        to_array = proto.to_array

        entries = {e.key: e.value for e in t.external_data}
        try:
            if t.data_location == _EXTERNAL:
                full = TP()
                full.CopyFrom(t)
                full.raw_data = self._external(entries, name)
                full.data_location = TP.DEFAULT
                del full.external_data[:]
                return to_array(full)
            if SPAN_KEY in entries:
                return to_array(TP.FromString(read_span(self.path, entries[SPAN_KEY])))
            return to_array(t)
        except (OSError, WireError, ValueError, TypeError, KeyError, DecodeError) as exc:
            # onnx's to_array raises TypeError for an UNDEFINED element type (found by the 50k fuzz run)
            first = first_line(exc)
            raise InputError(f"cannot read weight {quote(name)}: {first}", self.path) from None

    def _external(self, entries: dict[str, str], name: str) -> bytes:
        location = entries.get("location", "")
        folder = os.path.realpath(self.path.parent)
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise InputError(f"weight {quote(name)}: external data location {quote(location)} is outside "
                             "the model's folder; refusing to read it", self.path)
        if not os.path.isfile(target):
            raise InputError(f"weight {quote(name)}: external data file {quote(location)} not found next to "
                             "the model", self.path)
        offset = int(entries.get("offset", 0) or 0)
        length = entries.get("length")
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read(int(length)) if length else fh.read()
        if length and len(data) != int(length):
            raise InputError(f"weight {quote(name)}: external data file {quote(location)} is shorter than "
                             f"the {int(length) + offset} bytes the model says", self.path)
        return data
