"""The parts of the `onnx` package the loader calls, without `import onnx`'s start-up cost.

`import onnx` takes about 0.6 s, 0.5 s of it in ml_dtypes' extension registering its dtypes'
ufunc loops with numpy (each registration searches the loops registered before it): three times
the loader's own work on a ResNet-50, and most of a chain of 10,000 convs. What the loader needs
lives in two modules that do not need ml_dtypes: the generated protobuf classes
(`onnx.onnx_ml_pb2`) and the C++ extension (`onnx.onnx_cpp2py_export`: shape inference, operator
schemas). `onnx()` loads those two from the installed package under their own names, without
running the package's `__init__`, so a later `import onnx` in the same process (apply, bench, a
user's script) finds them in `sys.modules` and reuses them: the classes are onnx's own, and a
`ModelProto` made here is an `onnx.ModelProto`.

The helpers below are onnx's for the element types numpy has natively; anything else (bfloat16,
float8, int4, typed-field tensors) goes to `onnx.numpy_helper` / `onnx.helper`, which imports
the whole package then. When onnx is already imported, or its layout is not the one expected,
everything comes from the package itself.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import math
import sys
from collections.abc import Sequence
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

if TYPE_CHECKING:
    import numpy as np
    from onnx import GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto

#: TensorProto's typed data fields (a tensor without `raw_data` holds its values in one of them).
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
#: TensorProto.DataType.FLOAT
FLOAT = 1
#: TensorProto.DataType -> numpy dtype code (little-endian), for the types numpy has natively.
NATIVE = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?", 10: "<f2",
          11: "<f8", 12: "<u4", 13: "<u8", 14: "<c8", 15: "<c16"}


class Onnx(NamedTuple):
    """onnx's protobuf module (`pb`: ModelProto, TensorProto, ...) and its C++ extension (`cpp`)."""

    pb: Any
    cpp: Any


def full(module: str) -> ModuleType:
    """A module of the whole onnx package (`helper`, `numpy_helper`, `inliner`), for what the lean
    parts lack; importing it imports the package."""
    return importlib.import_module(f"onnx.{module}")


@cache
def onnx() -> Onnx:
    """onnx's protobuf classes and C++ extension, loaded without the package where it is not yet
    imported."""
    if "onnx" not in sys.modules:
        try:
            cpp = _load_alone("onnx.onnx_cpp2py_export")
            return Onnx(pb=_load_alone("onnx.onnx_ml_pb2"), cpp=cpp)
        except (ImportError, AttributeError, OSError, TypeError):
            pass  # another layout: the package itself (which reuses whatever loaded)
    return Onnx(full("onnx_ml_pb2"), full("onnx_cpp2py_export"))


def _load_alone(name: str) -> ModuleType:
    """Submodule `name` of onnx, executed without its parent package's `__init__`."""
    if name in sys.modules:
        return sys.modules[name]
    parent = importlib.util.find_spec("onnx")
    if parent is None or not parent.submodule_search_locations:
        raise ImportError("onnx is not installed")
    spec = importlib.machinery.PathFinder.find_spec(name, list(parent.submodule_search_locations))
    if spec is None or spec.loader is None:
        raise ImportError(f"{name} not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def is_graph(value: object) -> TypeGuard[GraphProto]:
    """Whether an attribute value is a graph (a control-flow body)."""
    return isinstance(value, onnx().pb.GraphProto)


# --- errors the C++ side raises ---------------------------------------------------------------

def errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """onnx's inference, checker and schema errors, and `more`, for an `except` clause."""
    cpp = onnx().cpp
    return cpp.shape_inference.InferenceError, cpp.checker.ValidationError, cpp.defs.SchemaError, *more


# --- onnx.shape_inference / onnx.defs -------------------------------------------------------------

def infer_shapes(model: ModelProto, check_type: bool = False, strict_mode: bool = False,
                 data_prop: bool = False) -> ModelProto:
    """`onnx.shape_inference.infer_shapes` for a ModelProto."""
    lib = onnx()
    inferred = lib.cpp.shape_inference.infer_shapes(model.SerializeToString(), check_type, strict_mode, data_prop)
    result: ModelProto = lib.pb.ModelProto.FromString(inferred)
    return result


def infer_node_outputs(schema: Any, node: NodeProto, input_types: dict[str, TypeProto],
                       input_data: dict[str, TensorProto], opset_imports: Sequence[OperatorSetIdProto]
                       ) -> dict[str, TypeProto]:
    """`onnx.shape_inference.infer_node_outputs`: one node's output types from its inputs'."""
    types = {key: value.SerializeToString() for key, value in input_types.items()}
    data = {key: input_data[key].SerializeToString() for key in node.input if key in input_data}
    outputs = schema._infer_node_outputs(node.SerializeToString(), types, data, {},
                                         {o.domain: o.version for o in opset_imports}, ir_version())
    type_proto = onnx().pb.TypeProto
    return {key: type_proto.FromString(out) for key, out in outputs.items()}


def ir_version() -> int:
    return int(onnx().pb.IR_VERSION)


def get_schema(op: str, version: int, domain: str = "") -> Any:
    """`onnx.defs.get_schema`: the schema of `op` in `domain` at opset `version` (SchemaError if none)."""
    return onnx().cpp.defs.get_schema(op, version, domain)


def has_schema(op: str, domain: str = "") -> bool:
    return bool(onnx().cpp.defs.has_schema(op, domain))


def opset_version() -> int:
    """`onnx.defs.onnx_opset_version`: the newest default-domain opset this onnx knows."""
    return int(onnx().cpp.defs.schema_version_map()[""][1])


# --- onnx.helper -----------------------------------------------------------------------------------

def make_tensor_type_proto(elem_type: int, shape: Sequence[str | int | None] | None) -> TypeProto:
    """`onnx.helper.make_tensor_type_proto`: a dim is a value (int), a name (str) or unknown (None);
    `shape=None` leaves the rank unknown, `[]` makes a scalar."""
    type_proto: TypeProto = onnx().pb.TypeProto()
    tensor = type_proto.tensor_type
    tensor.elem_type = elem_type
    if shape is not None:
        tensor.shape.dim.extend([])  # an explicitly empty shape: rank 0, not unknown
        for d in shape:
            dim = tensor.shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            elif d is not None:
                dim.dim_value = int(d)
    return type_proto


def make_tensor_value_info(name: str, elem_type: int, shape: Sequence[str | int | None] | None
                           ) -> ValueInfoProto:
    """`onnx.helper.make_tensor_value_info`."""
    info: ValueInfoProto = onnx().pb.ValueInfoProto()
    info.name = name
    info.type.CopyFrom(make_tensor_type_proto(elem_type, shape))
    return info


def np_dtype(elem_type: int) -> np.dtype[Any]:
    """`onnx.helper.tensor_dtype_to_np_dtype`."""
    import numpy as np

    code = NATIVE.get(elem_type)
    if code is not None:
        return np.dtype(code)
    dtype: np.dtype[Any] = full("helper").tensor_dtype_to_np_dtype(elem_type)
    return dtype


# --- onnx.numpy_helper ----------------------------------------------------------------------------

def to_array(tensor: TensorProto) -> np.ndarray:
    """`onnx.numpy_helper.to_array` for a tensor whose bytes are in `raw_data`, of a native type;
    onnx's own function for the rest (typed fields, strings, packed and ml_dtypes types)."""
    import numpy as np

    code = NATIVE.get(tensor.data_type)
    if code is not None and not tensor.HasField("raw_data") and tensor.data_location != 1 and \
            math.prod(tensor.dims) and not any(len(getattr(tensor, f)) for f in _TYPED_FIELDS):
        raise ValueError(f"tensor {tensor.name!r} holds no data")  # as onnx's reshape would say
    if code is None or not tensor.HasField("raw_data") or tensor.data_location == 1 or tensor.HasField("segment"):
        result: np.ndarray = full("numpy_helper").to_array(tensor)
        return result
    return np.frombuffer(tensor.raw_data, dtype=code).reshape(tuple(tensor.dims))


def from_array(array: np.ndarray, name: str | None = None) -> TensorProto:
    """`onnx.numpy_helper.from_array` for native numeric arrays; onnx's own for the rest."""
    elem = _native_elems().get(array.dtype)
    if elem is None:
        tensor: TensorProto = full("numpy_helper").from_array(array, name)
        return tensor
    out: TensorProto = onnx().pb.TensorProto()
    out.dims.extend(array.shape)
    if name:
        out.name = name
    out.data_type = elem
    out.raw_data = array.tobytes()
    return out


@cache
def _native_elems() -> dict[np.dtype[Any], int]:
    import numpy as np

    return {np.dtype(code): elem for elem, code in NATIVE.items()}
