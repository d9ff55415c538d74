"""Read an ONNX file's structure without reading its weights: a small protobuf wire-format scanner.

`onnx.load` parses every byte of a model, so a 100 MB resnet50 costs 100 MB of memory and most of
the run time before a single shape is known. The scanner walks the file at the
field level, copies the graph structure, and leaves the data of large tensors (initializers and
`Constant` values) where they lie, recording where they are so a weight-based feature can read
one tensor later. The result parses as an ordinary `ModelProto` whose big tensors have dims and
dtype but no data. Nothing here imports `onnx`, so the content sniffer stays cheap.

Wire format: each field is a varint key `(number << 3) | wire_type`; wire type 0 = varint,
1 = 8 bytes, 2 = varint length + bytes, 5 = 4 bytes (3/4, groups, are not used by ONNX).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

#: Tensors whose serialized message is larger than this have their data left in the file.
#: Shape tensors that data propagation needs (Reshape targets, Slice starts) are far smaller.
STRIP_BYTES = 1024
#: The marker a stripped tensor carries: an `external_data` entry "start:length" of its original
#: message in the file. onnx ignores `external_data` unless `data_location` is EXTERNAL.
SPAN_KEY = "convcost.span"

# Field numbers (onnx.proto).
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_ATTRIBUTE = 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS = 5, 6, 10, 11
TENSOR_DATA_FIELDS = frozenset({4, 5, 6, 7, 9, 10, 11})  # float/int32/string/int64/raw/double/uint64
TENSOR_EXTERNAL_DATA = 13
TENSOR_DIMS = 1
#: ModelProto fields and their wire types, for sniffing.
MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (message says where)."""


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated: a field runs past the end of its message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("malformed varint")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip(buf: Any, wire: int, pos: int, end: int) -> tuple[int, int]:
    """Skip one field's payload; return (payload start, position after the field)."""
    if wire == 0:
        _, after = _varint(buf, pos, end)
        return pos, after
    if wire == 2:
        length, start = _varint(buf, pos, end)
        after = start + length
    elif wire == 1:
        start, after = pos, pos + 8
    elif wire == 5:
        start, after = pos, pos + 4
    else:
        raise WireError(f"unsupported wire type {wire} at byte {pos}")
    if after > end:
        raise WireError("truncated: a field runs past the end of its message")
    return start, after


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


class _Scanner:
    """Rebuilds a message, replacing selected length-delimited fields with rewritten copies."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def message(self, start: int, end: int, rewrite: dict[int, object]) -> bytes | None:
        """Scan [start, end); return new bytes, or None when nothing changed."""
        buf = self.buf
        parts: list[bytes] = []
        keep = pos = start
        while pos < end:
            key_at = pos
            key, pos = _varint(buf, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise WireError(f"invalid field number 0 at byte {key_at}")
            body, pos = _skip(buf, wire, pos, end)
            fn = rewrite.get(number)
            if fn is None or wire != 2 or pos - body <= STRIP_BYTES:
                continue
            new = fn(body, pos)  # type: ignore[operator]
            if new is None:
                continue
            parts.append(buf[keep:key_at])
            parts.append(_field(number, new))
            keep = pos
        if not parts:
            return None
        parts.append(buf[keep:end])
        return b"".join(parts)

    def graph(self, start: int, end: int) -> bytes | None:
        return self.message(start, end, {GRAPH_NODE: self.node, GRAPH_INITIALIZER: self.tensor})

    def node(self, start: int, end: int) -> bytes | None:
        return self.message(start, end, {NODE_ATTRIBUTE: self.attribute})

    def attribute(self, start: int, end: int) -> bytes | None:
        return self.message(start, end, {ATTR_T: self.tensor, ATTR_G: self.graph,
                                         ATTR_TENSORS: self.tensor, ATTR_GRAPHS: self.graph})

    def tensor(self, start: int, end: int) -> bytes | None:
        """The tensor without its data fields, plus a marker saying where the original lies."""
        buf = self.buf
        parts: list[bytes] = []
        pos = start
        dropped = False
        while pos < end:
            key_at = pos
            key, pos = _varint(buf, pos, end)
            if key >> 3 == 0:
                raise WireError(f"invalid field number 0 at byte {key_at}")
            _, pos = _skip(buf, key & 7, pos, end)
            if key >> 3 in TENSOR_DATA_FIELDS:
                dropped = True
            else:
                parts.append(buf[key_at:pos])
        if not dropped:
            return None
        marker = _field(1, SPAN_KEY.encode()) + _field(2, f"{start}:{end - start}".encode())
        parts.append(_field(TENSOR_EXTERNAL_DATA, marker))
        return b"".join(parts)


#: Files up to this size are read whole; larger ones through a small window, weights unread.
WHOLE_READ_BYTES = 32 * 2**20
WINDOW_BYTES = 2**16


class _Window:
    """Random access to a file through one small read window.

    Reading a field header of a memory-mapped file maps the page cache around it, and with large
    folios that is 2 MB per header: peak RSS then grows with the file. Explicit reads touch only
    what they return.
    """

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size
        self.start, self.data = 0, b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            start, stop = key.start or 0, self.size if key.stop is None else key.stop
            self.fh.seek(start)
            return self.fh.read(max(stop - start, 0))
        offset = key - self.start
        if not 0 <= offset < len(self.data):
            self.fh.seek(key)
            self.start, self.data = key, self.fh.read(WINDOW_BYTES)
            offset = 0
            if not self.data:
                raise IndexError(key)
        return self.data[offset]


def read_lean(path: Path) -> bytes:
    """Read `path` as a ModelProto's bytes without the data of its large tensors.

    Raises WireError for bytes that are not a protobuf message (random bytes, truncation) and
    OSError when the file cannot be read.
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise WireError("file is empty")
        buf: Any = fh.read() if size <= WHOLE_READ_BYTES else _Window(fh, size)
        scanner = _Scanner(buf)
        out = scanner.message(0, len(buf), {MODEL_GRAPH: scanner.graph})
        if out is None:  # nothing left out
            out = buf if isinstance(buf, bytes) else buf[0:size]
    return out


def initializer_dims(path: Path) -> list[tuple[int, ...]]:
    """The dims of the graph's initializers (the weights of an exported model), read from the
    field headers alone: a guess of a model's work before it is loaded, at a millisecond a file.
    Malformed bytes give what was read before them (the load reports the error)."""
    dims: list[tuple[int, ...]] = []
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        buf = _Window(fh, size)
        try:
            for start, end in _children(buf, 0, size, MODEL_GRAPH):
                for t_start, t_end in _children(buf, start, end, GRAPH_INITIALIZER):
                    dims.append(_tensor_dims(buf, t_start, t_end))
        except (WireError, IndexError):
            pass
    return dims


def _children(buf: Any, start: int, end: int, number: int) -> list[tuple[int, int]]:
    """The [start, end) of each length-delimited field `number` of the message at [start, end)."""
    found = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        body, pos = _skip(buf, key & 7, pos, end)
        if key >> 3 == number and key & 7 == 2:
            found.append((body, pos))
    return found


def _tensor_dims(buf: Any, start: int, end: int) -> tuple[int, ...]:
    """TensorProto.dims (field 1: int64, packed or one field per value)."""
    dims: list[int] = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        body, pos = _skip(buf, key & 7, pos, end)
        if key >> 3 != TENSOR_DIMS:
            continue
        if key & 7 == 0:
            dims.append(_varint(buf, body, pos)[0])
        elif key & 7 == 2:
            at = body
            while at < pos:
                value, at = _varint(buf, at, pos)
                dims.append(value)
    return tuple(dims)


def read_span(path: Path, span: str) -> bytes:
    """The original bytes of a stripped tensor (its `SPAN_KEY` value "start:length")."""
    start, _, length = span.partition(":")
    with path.open("rb") as fh:
        fh.seek(int(start))
        data = fh.read(int(length))
    if len(data) != int(length):
        raise WireError("the model file changed since it was read")
    return data


def looks_like_onnx(head: bytes) -> bool:
    """Whether `head` (a file's first bytes) starts like a serialized ModelProto.

    Every field read must be a ModelProto field with its proper wire type; writers put
    `ir_version` (field 1) first, so one valid field is strong evidence, two are conclusive.
    """
    buf = head
    end, pos, seen = len(buf), 0, 0
    if end == 0 or bytes(buf[:2]) == b"PK":  # zip archives (TorchScript) are another loader's
        return False
    while pos < end and seen < 4:
        try:
            key, pos = _varint(buf, pos, end)
        except WireError:
            return seen > 0 and pos >= end
        number, wire = key >> 3, key & 7
        if MODEL_FIELDS.get(number) != wire:
            return False
        seen += 1
        try:
            _, pos = _skip(buf, wire, pos, end)
        except WireError:
            return True  # a long field (the graph) continues past the head
    return seen > 0
