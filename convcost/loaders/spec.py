"""YAML layer specs (README, "YAML layer spec"): a model written by hand, with shapes propagated layer by layer.

```yaml
name: tiny
input: [1, 3, 224, 224]
defaults: {bias: false}                  # merged into every conv / conv_transpose / linear
layers:
  - {name: conv1, type: conv, out: 32, kernel: 3, stride: 2, padding: 1}
  - {type: repeat, name: blocks, times: 2, layers: [...]}
  - {type: add, inputs: [a, b]}
```
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from convcost.ir.inputs import Inputs, givens
from convcost.ir.model import Conv, ConvOp, MatMul, Model, Node, Shape
from convcost.ir.shapes import ShapeError, conv_out_size, make_conv, same_pads
from convcost.util.errors import InputError, short
from convcost.util.infile import load_yaml, read_text
from convcost.util.registry import Registry

MAX_REPEAT = 10_000
MAX_LAYERS = 200_000
MAX_DEPTH = 32
MAX_DIM = 2**31 - 1
MAX_FILE_BYTES = 16 * 1024 * 1024

COMMON = {"name", "type", "from"}
KEYS: dict[str, set[str]] = {
    "conv": COMMON | {"out", "kernel", "stride", "padding", "dilation", "groups", "bias", "dtype"},
    "conv_transpose": COMMON
    | {"out", "kernel", "stride", "padding", "dilation", "groups", "bias", "output_padding", "dtype"},
    "pool": COMMON | {"kernel", "stride", "padding", "mode"},
    "global_pool": COMMON | {"mode"},
    "flatten": COMMON,
    "linear": COMMON | {"out", "bias"},
    "add": {"name", "type", "inputs", "from"},
    "concat": {"name", "type", "inputs", "from", "axis"},
    "repeat": {"name", "type", "times", "layers"},
}
DEFAULTABLE = {"bias", "dtype", "groups", "dilation", "padding", "stride"}


class SpecError(InputError):
    """A spec problem, located at a layer."""


@dataclass(frozen=True)
class SpecLayer:
    """One layer of a spec as the walk resolved it, for builders of a runnable model (spec_module).

    `inputs` names the layers whose outputs it reads ("input": the model's input; a repeat's name is
    resolved to its last inner layer); `layer` is the spec's mapping with `defaults` merged; `conv`
    is the resolved conv (pads, groups...) for conv and conv_transpose layers.
    """

    name: str
    type: str
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    shape: Shape
    layer: dict[str, Any] = field(compare=False)
    conv: Conv | None = None


@dataclass
class _State:
    path: str
    defaults: dict[str, Any]
    shapes: dict[str, Shape] = field(default_factory=dict)
    convs: list[Conv] = field(default_factory=list)
    matmuls: list[MatMul] = field(default_factory=list)
    layers: list[SpecLayer] = field(default_factory=list)
    #: A layer name -> the layer that produced its tensor (itself, or a repeat's last inner layer).
    producer: dict[str, str] = field(default_factory=lambda: {"input": "input"})
    last: str = "input"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_times(times: object) -> TypeGuard[int]:
    """A repeat's `times`: an integer from 1 to MAX_REPEAT."""
    return isinstance(times, int) and not isinstance(times, bool) and 1 <= times <= MAX_REPEAT


def _where(name: str) -> str:
    return f"layer '{name}'"


def _ints(value: Any, rank: int, key: str, where: str, low: int, allow_double: bool = False) -> tuple[int, ...]:
    """An int or a per-axis list (or, for padding, begin... end... of 2*rank values)."""
    if _is_int(value):
        values: list[Any] = [value] * rank
    elif isinstance(value, list) and (len(value) == rank or (allow_double and len(value) == 2 * rank)):
        values = value
    else:
        shape = f"an int or a list of {rank}" + (f" or {2 * rank}" if allow_double else "")
        raise SpecError(f"{where}: {key} must be {shape} values for {rank} spatial axes, got {short(value)}")
    for v in values:
        if not _is_int(v) or v < low or v > MAX_DIM:
            raise SpecError(f"{where}: {key} values must be integers >= {low}, got {short(value)}")
    return tuple(values)


def _padding(
    value: Any, spatial: Shape, kernel: Shape, stride: Shape, dilation: Shape, where: str
) -> tuple[int, ...]:
    rank = len(kernel)
    if value in (None, "valid"):
        return (0,) * (2 * rank)
    if value == "same":
        return same_pads(spatial, kernel, stride, dilation)
    pads = _ints(value, rank, "padding", where, 0, allow_double=True)
    return pads * 2 if len(pads) == rank else pads


def _need(layer: dict[str, Any], key: str, where: str) -> Any:
    if key not in layer:
        raise SpecError(f"{where}: missing required key '{key}'")
    return layer[key]


def _positive(value: Any, key: str, where: str) -> int:
    if not _is_int(value) or value < 1 or value > MAX_DIM:
        raise SpecError(f"{where}: {key} must be a positive integer, got {short(value)}")
    return int(value)


def _spatial(shape: Shape, where: str, what: str) -> int:
    rank = len(shape) - 2
    if rank < 1 or rank > 3:
        raise SpecError(f"{where}: {what} needs an input of shape (N, C, 1-3 spatial dims), got {list(shape)}")
    return rank


#: How each layer type maps its input shape to its output shape (and records its conv or matmul).
SHAPE_OPS: Registry[str, Callable[[dict[str, Any], Shape, str, _State], Shape]] = Registry("spec layer type")


@SHAPE_OPS.register("conv", "conv_transpose")
def _conv(layer: dict[str, Any], shape: Shape, name: str, st: _State) -> Shape:
    where = _where(name)
    op: ConvOp = "ConvTranspose" if layer["type"] == "conv_transpose" else "Conv"
    rank = _spatial(shape, where, layer["type"])
    out = _positive(_need(layer, "out", where), "out", where)
    kernel = _ints(_need(layer, "kernel", where), rank, "kernel", where, 1)
    stride = _ints(layer.get("stride", 1), rank, "stride", where, 1)
    dilation = _ints(layer.get("dilation", 1), rank, "dilation", where, 1)
    groups = _positive(layer.get("groups", 1), "groups", where)
    bias = layer.get("bias", True)
    if not isinstance(bias, bool):
        raise SpecError(f"{where}: bias must be true or false, got {short(bias)}")
    dtype = layer.get("dtype")
    if dtype is not None and dtype not in ("float32", "float16", "bfloat16", "int8"):
        raise SpecError(f"{where}: dtype must be float32, float16, bfloat16 or int8, got {short(dtype)}")
    out_pad = _ints(layer.get("output_padding", 0), rank, "output_padding", where, 0)
    pads: tuple[int, ...]
    if op == "ConvTranspose" and layer.get("padding") == "same":
        # 'same' for a transposed conv: output = input x stride.
        begins, ends = [], []
        for i in range(rank):
            total = max(dilation[i] * (kernel[i] - 1) + out_pad[i] + 1 - stride[i], 0)
            begins.append(total // 2)
            ends.append(total - total // 2)
        pads = tuple(begins + ends)
    else:
        pads = _padding(layer.get("padding"), shape[2:], kernel, stride, dilation, where)
    try:
        conv = make_conv(
            name, op, shape, out, kernel, stride, pads, dilation, groups, bias,
            out_pad if op == "ConvTranspose" else None, dtype,
        )
    except ShapeError as exc:
        raise SpecError(f"{where}: {exc}") from None
    st.convs.append(conv)
    return conv.output_shape


@dataclass(frozen=True)
class PoolParams:
    """A pool layer resolved: `pads` lists begin pads for every spatial axis, then end pads."""

    mode: str
    kernel: Shape
    stride: Shape
    pads: Shape
    output_shape: Shape


def _mode(layer: dict[str, Any], where: str, default: str) -> str:
    mode = layer.get("mode", default)
    if mode not in ("max", "avg"):
        raise SpecError(f"{where}: mode must be 'max' or 'avg', got {short(mode)}")
    return str(mode)


def pool_params(layer: dict[str, Any], shape: Shape, name: str) -> PoolParams:
    """A pool layer's mode, kernel, stride and pads ('same' resolved) on an input of `shape`."""
    where = _where(name)
    rank = _spatial(shape, where, "pool")
    kernel = _ints(_need(layer, "kernel", where), rank, "kernel", where, 1)
    stride = _ints(layer.get("stride", list(kernel)), rank, "stride", where, 1)
    mode = _mode(layer, where, "max")
    pads = _padding(layer.get("padding"), shape[2:], kernel, stride, (1,) * rank, where)
    out = [conv_out_size(shape[2 + i], kernel[i], stride[i], pads[i], pads[rank + i], 1) for i in range(rank)]
    if any(o < 1 for o in out):
        raise SpecError(f"{where}: pool kernel {list(kernel)} is larger than the padded input {list(shape[2:])}")
    return PoolParams(mode, kernel, stride, pads, (shape[0], shape[1], *out))


def global_pool_mode(layer: dict[str, Any], name: str) -> str:
    """A global_pool's mode: 'avg' (the default) or 'max'."""
    return _mode(layer, _where(name), "avg")


@SHAPE_OPS.register("pool")
def _pool(layer: dict[str, Any], shape: Shape, name: str, st: _State) -> Shape:
    return pool_params(layer, shape, name).output_shape


@SHAPE_OPS.register("global_pool")
def _global_pool(layer: dict[str, Any], shape: Shape, name: str, st: _State) -> Shape:
    rank = _spatial(shape, _where(name), "global_pool")
    global_pool_mode(layer, name)
    return (shape[0], shape[1], *([1] * rank))


@SHAPE_OPS.register("flatten")
def _flatten(layer: dict[str, Any], shape: Shape, name: str, st: _State) -> Shape:
    return (shape[0], math.prod(shape[1:]))


@SHAPE_OPS.register("linear")
def _linear(layer: dict[str, Any], shape: Shape, name: str, st: _State) -> Shape:
    where = _where(name)
    out = _positive(_need(layer, "out", where), "out", where)
    bias = layer.get("bias", True)
    if not isinstance(bias, bool):
        raise SpecError(f"{where}: bias must be true or false, got {short(bias)}")
    features = shape[-1]
    st.matmuls.append(
        MatMul(name, "Linear", batch=math.prod(shape[:-1]), m=1, k=features, n=out,
               params=features * out + (out if bias else 0))
    )
    return (*shape[:-1], out)




def _lookup(ref: Any, scopes: list[str], st: _State, where: str) -> str:
    """The full name of the layer `ref` names, looked up in the innermost scope first."""
    if not isinstance(ref, str):
        raise SpecError(f"{where}: a layer reference must be a layer name, got {short(ref)}")
    for scope in scopes:
        if scope + ref in st.shapes:
            return scope + ref
    known = ", ".join(sorted(st.shapes)[:12])
    raise SpecError(f"{where}: unknown layer '{ref}' in from/inputs (known: {known})")


def _merge(layer: dict[str, Any], shapes: list[Shape], where: str) -> Shape:
    if len(shapes) < 2:
        raise SpecError(f"{where}: {layer['type']} needs at least two inputs")
    if layer["type"] == "add":
        if any(s != shapes[0] for s in shapes):
            raise SpecError(f"{where}: add of mismatched shapes {[list(s) for s in shapes]}")
        return shapes[0]
    axis = layer.get("axis", 1)
    rank = len(shapes[0])
    if not _is_int(axis) or not -rank <= axis < rank:
        raise SpecError(f"{where}: concat axis must be an integer in [-{rank}, {rank}), got {short(axis)}")
    axis %= rank
    for s in shapes:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0], strict=False)) if i != axis):
            raise SpecError(
                f"{where}: concat on axis {axis} of mismatched shapes {[list(s) for s in shapes]}"
            )
    merged = list(shapes[0])
    merged[axis] = sum(s[axis] for s in shapes)
    return tuple(merged)


def _expanded_count(layers: Any, depth: int) -> int:
    """Layers after expanding every repeat, counted before building any: nested repeats multiply,
    and 10,000 x 10,000 must be refused at once, not after 200,000 layers were built. Malformed
    entries count 1 (the walk reports them)."""
    if not isinstance(layers, list) or depth > MAX_DEPTH:
        return 1
    n = 0
    for layer in layers:
        n += 1
        if isinstance(layer, dict) and layer.get("type") == "repeat":
            times = layer.get("times")
            if _valid_times(times):
                n += times * _expanded_count(layer.get("layers"), depth + 1)
        if n > MAX_LAYERS:
            break
    return n


def _walk(layers: Any, shape: Shape, scopes: list[str], st: _State, depth: int, where: str) -> Shape:
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"{where}: 'layers' must be a non-empty list")
    if depth > MAX_DEPTH:
        raise SpecError(f"{where}: repeats nested deeper than {MAX_DEPTH} levels")
    prefix = scopes[0]
    for index, layer in enumerate(layers):
        at = f"layer {index}" + (f" of '{prefix[:-1]}'" if prefix else "")
        if not isinstance(layer, dict):
            raise SpecError(f"{at}: expected a mapping like {{type: conv, ...}}, got {short(layer)}")
        kind = layer.get("type")
        if not isinstance(kind, str) or kind not in KEYS:
            raise SpecError(f"{at}: unknown layer type {short(kind)} (known: {', '.join(KEYS)})")
        own = layer.get("name", f"{kind}_{index}")
        if not isinstance(own, str) or not own:
            raise SpecError(f"{at}: name must be a non-empty string, got {short(own)}")
        name = prefix + own
        where_l = _where(name)
        unknown = set(layer) - KEYS[kind]
        if unknown:
            raise SpecError(f"{where_l}: unknown key(s) {', '.join(sorted(map(str, unknown)))} for type {kind}")
        if name in st.shapes:
            raise SpecError(f"{where_l}: duplicate layer name")
        if kind == "repeat":
            times = layer.get("times")
            if not _valid_times(times):
                raise SpecError(f"{where_l}: times must be an integer from 1 to {MAX_REPEAT}, got {short(times)}")
            for r in range(times):
                inner = f"{name}.{r}."
                shape = _walk(layer.get("layers"), shape, [inner, *scopes], st, depth + 1, where_l)
            st.shapes[name] = shape
            st.producer[name] = st.last
            continue
        convs_before = len(st.convs)
        if kind in ("add", "concat"):
            refs = layer.get("inputs", layer.get("from"))
            if not isinstance(refs, list):
                raise SpecError(f"{where_l}: {kind} needs 'inputs': a list of layer names")
            sources = [_lookup(r, scopes, st, where_l) for r in refs]
            in_shapes = [st.shapes[s] for s in sources]
            shape = _merge(layer, in_shapes, where_l)
        else:
            sources = [_lookup(layer["from"], scopes, st, where_l) if "from" in layer else st.last]
            in_shapes = [st.shapes[sources[0]]]
            if kind in ("conv", "conv_transpose", "linear"):
                layer = {**{k: v for k, v in st.defaults.items() if k in KEYS[kind]}, **layer}
            shape = SHAPE_OPS[kind](layer, in_shapes[0], name, st)
        conv = st.convs[-1] if kind in ("conv", "conv_transpose") and len(st.convs) > convs_before else None
        st.layers.append(SpecLayer(name, kind, tuple(st.producer[s] for s in sources), tuple(in_shapes), shape,
                                   layer, conv))
        st.shapes[name] = shape  # the layer count was bounded before the walk (_expanded_count)
        st.producer[name] = st.last = name
    return shape


def parse_shape(value: Any, where: str) -> Shape:
    if not isinstance(value, list) or not 3 <= len(value) <= 5:
        raise SpecError(f"{where} must be a list [N, C, spatial...] of 3 to 5 integers, got {short(value)}")
    return tuple(_positive(v, "input dims", where) for v in value)


def load_spec(path: str | Path, inputs: Inputs | None = None) -> Model:
    """Load a YAML layer spec into a `Model`; `inputs` (from `-i`) overrides the spec's input."""
    data = load_yaml(read_text(path, "YAML layer spec", MAX_FILE_BYTES), path)
    return model_from_spec(data, path, inputs)


def model_from_spec(data: Any, path: str | Path, inputs: Inputs | None = None) -> Model:
    return resolve_spec(data, path, inputs)[0]


def load_spec_layers(path: str | Path, inputs: Inputs | None = None) -> tuple[Model, list[SpecLayer]]:
    """A spec's `Model` and its layers as resolved (pads, defaults, references), in order."""
    data = load_yaml(read_text(path, "YAML layer spec", MAX_FILE_BYTES), path)
    return resolve_spec(data, path, inputs)


def resolve_spec(data: Any, path: str | Path, inputs: Inputs | None = None) -> tuple[Model, list[SpecLayer]]:
    source = str(path)
    if not isinstance(data, dict):
        raise InputError("a spec must be a mapping with 'input' and 'layers'", source)
    unknown = set(data) - {"name", "input", "layers", "defaults", "description"}
    if unknown:
        raise InputError(f"unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}", source)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - DEFAULTABLE:
        raise InputError(f"defaults may set only {', '.join(sorted(DEFAULTABLE))}", source)
    try:
        if inputs:
            if len(inputs) != 1:
                raise SpecError("a spec has a single input; give one -i SHAPE")
            given = next(iter(givens(inputs).values()))
            if given.shape is None:
                raise SpecError(f"-i {given.text}: a spec's input is a tensor and takes a shape, not a value")
            shape = given.shape
        else:
            shape = parse_shape(data.get("input"), "'input'")
        st = _State(source, defaults, {"input": shape})
        if _expanded_count(data.get("layers"), 0) > MAX_LAYERS:
            raise SpecError(f"more than {MAX_LAYERS} layers after expanding repeats (their times multiply)")
        _walk(data.get("layers"), shape, [""], st, 0, "spec")
    except SpecError as exc:
        raise InputError(exc.message, source) from None
    name = data["name"] if isinstance(data.get("name"), str) else Path(source).stem
    model = Model(name=name, format="spec", source=source, inputs={"input": shape},
                  convs=st.convs, matmuls=st.matmuls, nodes=spec_nodes(st.layers))
    return model, st.layers


def spec_nodes(layers: list[SpecLayer]) -> list[Node]:
    """Each layer as a `Node`: it reads its inputs' tensors (named after the layers that wrote them)
    and writes the tensor of its own name; convs and linears point at the ops the cost model prices."""
    nodes: list[Node] = []
    convs = matmuls = 0
    for layer in layers:
        counted: tuple[Literal["conv", "matmul"], int] | None = None
        if layer.conv is not None:
            counted, convs = ("conv", convs), convs + 1
        elif layer.type == "linear":
            counted, matmuls = ("matmul", matmuls), matmuls + 1
        nodes.append(Node(name=layer.name, op=layer.type, inputs=layer.inputs, outputs=(layer.name,),
                          input_shapes=layer.input_shapes, output_shapes=(layer.shape,),
                          dtype=layer.conv.dtype if layer.conv is not None else None,
                          attrs=_node_attrs(layer), counted=counted))
    return nodes


def _node_attrs(layer: SpecLayer) -> dict[str, object]:
    """What a latency formula reads of a layer: a pool's resolved window, a global pool's mode, a concat's axis."""
    if layer.type == "pool":
        p = pool_params(layer.layer, layer.input_shapes[0], layer.name)
        return {"kernel": list(p.kernel), "stride": list(p.stride), "padding": list(p.pads), "mode": p.mode}
    if layer.type == "global_pool":
        return {"mode": global_pool_mode(layer.layer, layer.name)}
    if layer.type == "concat":
        return {"axis": layer.layer.get("axis", 1)}
    return {}
