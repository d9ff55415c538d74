"""Find every conv and matrix multiply of a PyTorch module by running it once on zeros.

A `TorchDispatchMode` sees each aten op with its real tensors, below TorchScript and eager
Python alike, so the same capture serves `torch.jit.load`ed archives and `module:factory`
models. Conv attributes come from the op's arguments, shapes from its actual input and output.

Layer names: a conv (or matmul) is named by the parameter it multiplies with, found by
identity of the tensor's memory (`data_ptr`): the qualified parameter name from
`named_parameters()` without a trailing `.weight`, so an `nn.Conv2d` at `layer1.0.conv1` is
`layer1.0.conv1`, the module name `named_modules()` gives. A layer called again (weight
sharing) gets a call index: `block.conv`, then `block.conv#1`, `block.conv#2`. Where the
weight is not a parameter (computed, e.g. weight norm, or frozen into a constant), an eager
model names the op by the innermost module running it; otherwise it is `convolution` /
`matmul` with call indices.

Every op that runs a kernel is also a `Node` (Model.nodes), named by the module running it and the
op (`layer1.0.relu/relu`; in TorchScript, which runs no module hooks, a conv or matmul by its layer
and other ops by the op alone), with call indices where a name repeats.

Only this module (and the loaders that call it) imports torch.
"""

from __future__ import annotations

import inspect
import re
import typing
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from convcost.ir.inputs import Given, Inputs, ScalarKind, givens
from convcost.ir.model import Conv, MatMul, Model, Node, Scalar, Shape, Uncounted, counted_family
from convcost.ir.shapes import ShapeError, make_conv
from convcost.loaders.aten_ops import METADATA_OPS, scalar_attr
from convcost.loaders.notes import repeated_calls
from convcost.util.errors import InputError
from convcost.util.registry import Registry

UNNAMED = {"conv": "convolution", "matmul": "matmul"}

#: Tensor dtypes an op is priced in as the model runs it (float32 and float64 take the analysis dtype).
OWN_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}

#: Unhandled ops whose names say they multiply weights: counted in `Model.uncosted`.
_COSTLY = re.compile(r"conv|linear|matmul|(^|_)mm|lstm|gru|rnn|attention|einsum|bilinear")

aten = torch.ops.aten


def param_name_to_layer(qualified: str) -> str:
    """`layer1.0.conv1.weight` -> `layer1.0.conv1`: the module name, for the usual `weight`."""
    return qualified[: -len(".weight")] if qualified.endswith(".weight") else qualified


@dataclass
class Capture:
    """What one forward pass ran: convs and matmuls in call order, calls per layer, any failure."""

    convs: list[Conv] = field(default_factory=list)
    matmuls: list[MatMul] = field(default_factory=list)
    uncosted: Counter[str] = field(default_factory=Counter)
    uncounted: list[Uncounted] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    #: Every op that ran a kernel, in call order (Model.nodes).
    nodes: list[Node] = field(default_factory=list)
    #: The layer whose op raised, and its message (TorchScript loses it when re-raising).
    failed_at: str | None = None
    error: str | None = None


class _Params:
    """Which parameter (qualified name) a tensor is, by the address of its data."""

    def __init__(self, module: nn.Module) -> None:
        self.by_ptr: dict[int, tuple[str, int]] = {}
        for qualified, p in module.named_parameters():
            if p.numel():
                self.by_ptr.setdefault(p.data_ptr(), (qualified, p.numel()))
        self.total = sum(p.numel() for p in module.parameters())
        #: Parameters and buffers by the address of their data: the constant inputs of the ops.
        self.constants: dict[int, str] = {}
        for qualified, t in [*module.named_parameters(), *module.named_buffers()]:
            if t.numel() and t.device.type != "meta":
                self.constants.setdefault(t.data_ptr(), qualified)

    def lookup(self, t: object) -> tuple[str, int] | None:
        if isinstance(t, torch.Tensor) and t.numel() and t.device.type != "meta":
            return self.by_ptr.get(t.data_ptr())
        return None


class _ModuleStack:
    """The eager modules currently running (global forward hooks); empty for TorchScript."""

    def __init__(self, module: nn.Module) -> None:
        self.names = {id(m): name for name, m in module.named_modules()}
        self.stack: list[str] = []

    @contextmanager
    def tracking(self) -> Iterator[None]:
        from torch.nn.modules import module as mod

        def pre(m: nn.Module, args: object) -> None:
            self.stack.append(self.names.get(id(m), ""))

        def post(m: nn.Module, args: object, out: object) -> None:
            if self.stack:
                self.stack.pop()

        self.stack.clear()
        handles = [mod.register_module_forward_pre_hook(pre), mod.register_module_forward_hook(post)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def current(self) -> str | None:
        return next((n for n in reversed(self.stack) if n), None)


def _bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of an aten op by their schema names, defaults filled in."""
    bound: dict[str, Any] = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args):
            bound[a.name] = args[i]
        elif a.name in kwargs:
            bound[a.name] = kwargs[a.name]
        elif a.has_default_value():
            bound[a.name] = a.default_value
    return bound


def _per_axis(value: Any, rank: int) -> tuple[int, ...]:
    values = [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]
    return tuple(values * rank) if len(values) == 1 else tuple(values)


class _Tensors:
    """Names of the tensors a forward pass sees, the edges of `Model.nodes`: model inputs by their
    argument name, parameters and buffers by their qualified name, op outputs after their node.

    A tensor is known by `id()`, which Python reuses once the tensor is freed; a weak reference
    forgets the name when its tensor dies, so no tensor is kept alive for naming and no freed
    tensor's name passes to a new one.
    """

    def __init__(self, params: _Params) -> None:
        self.params = params
        self.by_id: dict[int, str] = {}
        self.refs: dict[int, weakref.ref[torch.Tensor]] = {}
        #: Names of tensors no op of the forward produced: weights, buffers, frozen constants.
        self.constant: set[str] = set()
        self.unnamed = 0

    def bind(self, t: torch.Tensor, name: str) -> None:
        key = id(t)

        def forget(_: object, key: int = key) -> None:
            self.by_id.pop(key, None)
            self.refs.pop(key, None)

        self.by_id[key] = name
        self.refs[key] = weakref.ref(t, forget)

    def name(self, t: torch.Tensor) -> str:
        """The tensor's name; one not seen before was made outside the forward: a constant."""
        known = self.by_id.get(id(t))
        if known is not None:
            return known
        try:
            found = self.params.constants.get(t.data_ptr()) if t.numel() and t.device.type != "meta" else None
        except RuntimeError:  # a tensor without storage (sparse, a subclass): not a parameter
            found = None
        if found is None:
            found = f"constant#{self.unnamed}"
            self.unnamed += 1
        self.constant.add(found)
        self.bind(t, found)
        return found

    def alias(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """A metadata op's outputs (all of them: split, unbind) take its input's name."""
        ins = _tensors((args, kwargs))
        if ins:
            base = self.name(ins[0])
            for t in _tensors(out):
                self.bind(t, base)


def _tensors(tree: object) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class _Recorder:
    """Turns captured aten calls into `Conv` / `MatMul` records with names, and every op into a `Node`."""

    def __init__(self, params: _Params, stack: _ModuleStack | None) -> None:
        self.params, self.stack, self.out = params, stack, Capture()
        self.tensors = _Tensors(params)
        self.node_calls: Counter[str] = Counter()

    def node(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
             bound: dict[str, Any] | None = None, counted: tuple[Literal["conv", "matmul"], int] | None = None) -> None:
        """Record the op that just ran: named by the module running it (else, for a counted op, by
        its layer), its tensors, shapes, output dtype and scalar arguments."""
        ins, outs = _tensors((args, kwargs)), _tensors(out)
        names = tuple(self.tensors.name(t) for t in ins)  # before the outputs: an in-place op's output is its input
        op = func._schema.name
        path = self.stack.current() if self.stack else None
        if path is None and counted is not None:
            path = (self.out.convs if counted[0] == "conv" else self.out.matmuls)[counted[1]].name
        base = f"{path}/{op.split('::')[-1]}" if path else op.split("::")[-1]
        n = self.node_calls[base]
        self.node_calls[base] += 1
        name = base if n == 0 else f"{base}#{n}"
        out_names = tuple(name if len(outs) == 1 else f"{name}:{i}" for i in range(len(outs)))
        for t, o in zip(outs, out_names, strict=True):
            self.tensors.bind(t, o)
        bound = bound if bound is not None else _bind(func, args, kwargs)
        self.out.nodes.append(Node(
            name=name, op=op, inputs=names, outputs=out_names,
            input_shapes=tuple(tuple(t.shape) for t in ins), output_shapes=tuple(tuple(t.shape) for t in outs),
            dtype=_dtype_name(outs[0].dtype) if outs else None,
            constant=frozenset(i for i, t in enumerate(names) if t in self.tensors.constant),
            attrs={k: list(v) if isinstance(v, tuple) else v for k, v in bound.items()
                   if v is not None and scalar_attr(v)},
            counted=counted))

    def base_name(self, kind: str, weight: object) -> str:
        found = self.params.lookup(weight)
        if found:
            return param_name_to_layer(found[0])
        current = self.stack.current() if self.stack else None
        return current or UNNAMED[kind]

    def name(self, base: str) -> str:
        n = self.out.calls[base]
        self.out.calls[base] += 1
        return base if n == 0 else f"{base}#{n}"

    def used_params(self, *tensors: object) -> int:
        """Elements of the parameters among an op's operands."""
        return sum(found[1] for t in tensors if (found := self.params.lookup(t)))

    def conv(self, b: dict[str, Any], out_shape: Shape, predicted: Conv | None = None) -> None:
        """Record the conv `b` describes (`predicted`: the one `predict_conv` already built from it)."""
        w = b["weight"]
        name = self.name(self.base_name("conv", w))
        try:
            conv = predicted.with_changes(name=name) if predicted else conv_from_args(name, b)
        except ShapeError as exc:  # torch ran it, so this would be a gap in convcost.ir.shapes
            raise InputError(f"layer {name}: cannot describe this convolution: {exc}") from None
        if conv.output_shape != out_shape:
            conv = conv.with_changes(output_shape=out_shape)
        self.out.convs.append(conv.with_changes(weight=_numpy_loader(w), dtype=own_dtype(_conv_input(b), w)))

    def matmul(self, a: Shape, b: Shape, operands: tuple[object, ...], weight: object,
               base: str | None = None, dtype: str | None = None) -> None:
        """`a` (..., m, k) or (k,) times `b` (..., k, n) or (k,); parameters among `operands` count;
        the dtype is theirs unless given."""
        m, k = (1, a[0]) if len(a) == 1 else (a[-2], a[-1])
        n = 1 if len(b) == 1 else b[-1]
        batch = 1
        for d in a[:-2]:
            batch *= d
        params = self.used_params(*operands)
        self.out.matmuls.append(MatMul(self.name(base or self.base_name("matmul", weight)),
                                       "Linear" if params else "MatMul", batch, m, k, n, params,
                                       dtype or own_dtype(*operands)))


def own_dtype(*tensors: object) -> str | None:
    """The dtype an op's tensors have, where it is not the analysis's (see OWN_DTYPES)."""
    return next((OWN_DTYPES[t.dtype] for t in tensors if isinstance(t, torch.Tensor) and t.dtype in OWN_DTYPES),
                None)


def _conv_input(b: dict[str, Any]) -> Any:
    return b["input"] if "input" in b else b["self"]


def conv_from_args(name: str, b: dict[str, Any]) -> Conv:
    """A `Conv` from aten convolution arguments (padding is symmetric per axis there)."""
    x, w = _conv_input(b), b["weight"]
    rank = w.dim() - 2
    transposed = bool(b.get("transposed", False))
    groups = int(b.get("groups", 1))
    pad = _per_axis(b.get("padding", 0), rank)
    return make_conv(
        name, "ConvTranspose" if transposed else "Conv", tuple(x.shape),
        out_channels=w.shape[1] * groups if transposed else w.shape[0],
        kernel=tuple(w.shape[2:]), stride=_per_axis(b.get("stride", 1), rank), padding=pad + pad,
        dilation=_per_axis(b.get("dilation", 1), rank), groups=groups, bias=b.get("bias") is not None,
        output_padding=_per_axis(b.get("output_padding", 0), rank) if transposed else None,
    )


def predict_conv(b: dict[str, Any]) -> Conv | None:
    """The conv torch will run, whose output shape is the one torch will produce; None where
    torch would reject the arguments."""
    x, w = _conv_input(b), b["weight"]
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)) or x.dim() != w.dim() or w.dim() < 3:
        return None
    groups = int(b.get("groups", 1))
    if x.shape[1] != (w.shape[0] if b.get("transposed") else w.shape[1] * groups):
        return None
    out_channels = w.shape[1] * groups if b.get("transposed") else w.shape[0]
    if b.get("bias") is not None and tuple(b["bias"].shape) != (out_channels,):
        return None
    try:
        return conv_from_args("", b)
    except ShapeError:
        return None


def _numpy_loader(w: torch.Tensor) -> Callable[[], Any]:
    def load() -> Any:
        return w.detach().to("cpu", torch.float32).numpy()

    return load


Handler = Callable[[_Recorder, dict[str, Any], Any], None]

#: Matrix-multiply ops: the argument names of the two multiplicands, then any other operands.
_MATMUL_ARGS: dict[Any, tuple[str, str, tuple[str, ...]]] = {
    aten.mm: ("self", "mat2", ()),
    aten.addmm: ("mat1", "mat2", ("self",)),
    aten._addmm_activation: ("mat1", "mat2", ("self",)),
    aten.bmm: ("self", "mat2", ()),
    aten.baddbmm: ("batch1", "batch2", ("self",)),
    aten.addbmm: ("batch1", "batch2", ("self",)),
    aten.mv: ("self", "vec", ()),
    aten.addmv: ("mat", "vec", ("self",)),
    aten.dot: ("self", "tensor", ()),
    aten.vdot: ("self", "tensor", ()),
}


def _matmul_handler(a: str, b: str, extra: tuple[str, ...]) -> Handler:
    def handle(rec: _Recorder, bound: dict[str, Any], out: Any) -> None:
        x, y = bound[a], bound[b]
        weight = y if rec.params.lookup(y) else x
        rec.matmul(tuple(x.shape), tuple(y.shape), (x, y, *(bound.get(e) for e in extra)), weight)

    return handle


def _attention(rec: _Recorder, bound: dict[str, Any], out: Any) -> None:
    """Fused attention: softmax(Q K^T) V is two batched matmuls, L x E x S then L x S x Ev."""
    q, k, v = (tuple(bound[n].shape) for n in ("query", "key", "value"))
    base = (rec.stack.current() if rec.stack else None) or "attention"
    batch, seq_q, seq_k = q[:-2], q[-2], k[-2]
    dtype = own_dtype(bound["query"])
    rec.matmul(q, (*batch, k[-1], seq_k), (), None, base=base, dtype=dtype)
    rec.matmul((*batch, seq_q, seq_k), (*batch, seq_k, v[-1]), (), None, base=base, dtype=dtype)


#: Convolution ops, and whether the op is transposed whatever its arguments say.
CONV_OPS: dict[Any, bool] = {
    aten.convolution: False,
    aten._convolution: False,
    aten.convolution_overrideable: False,
    aten.cudnn_convolution: False,
    aten.cudnn_convolution_transpose: True,
    aten.mkldnn_convolution: False,
}

#: Non-conv ops that count: every matmul form, and fused attention as its two batched matmuls.
HANDLERS: Registry[Any, Handler] = Registry("aten op handler")
for _op, _args in _MATMUL_ARGS.items():
    HANDLERS.add(_op, _matmul_handler(*_args))
for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"):
    if hasattr(aten, _name):
        HANDLERS.add(getattr(aten, _name), _attention)


class _CaptureMode(TorchDispatchMode):
    """Records convs and matmuls; breaks composite ops (linear, einsum, conv2d...) down to them.

    Convs are priced from their arguments and (unless `compute_convs`) not run: see `predict_conv`.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The default wraps __torch_dispatch__ in dynamo.disable, importing torch._dynamo on the
        # first op: 1-2 s for nothing, since nothing here is ever compiled.
        return False

    def __init__(self, recorder: _Recorder, compute_convs: bool = False) -> None:
        super().__init__()
        self.rec = recorder
        self.compute_convs = compute_convs

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet in CONV_OPS:
            bound = _bind(func, args, kwargs)
            if CONV_OPS[packet]:
                bound["transposed"] = True
            # Only shapes matter: a conv's output is zeros of the shape torch would give, unless the
            # arguments look wrong, when torch runs it and raises the model's own error.
            predicted = None if self.compute_convs else predict_conv(bound)
            out = self._run(func, args, kwargs, bound) if predicted is None else \
                torch.zeros(predicted.output_shape, dtype=_conv_input(bound).dtype)
            self.rec.conv(bound, tuple(out.shape), predicted)
            self.rec.node(func, args, kwargs, out, bound, ("conv", len(self.rec.out.convs) - 1))
            return out
        handler = HANDLERS.get(packet)
        if handler is None:
            if func is not torch.ops.prim.device.default:  # as FlopCounterMode: nothing to decompose
                with self:
                    decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
            out = self._run(func, args, kwargs, None)
            if func._schema.name in METADATA_OPS:
                self.rec.tensors.alias(args, kwargs, out)
                return out
            self.rec.node(func, args, kwargs, out)
            if _COSTLY.search(packet.__name__):
                self.rec.out.uncosted[str(packet)] += 1
                if counted_family(packet.__name__):
                    self.rec.out.uncounted.append(Uncounted(str(packet), str(packet), "convcost has no formula for it"))
            return out
        bound = _bind(func, args, kwargs)
        out = self._run(func, args, kwargs, bound)
        before = len(self.rec.out.matmuls)
        handler(self.rec, bound, out)
        self.rec.node(func, args, kwargs, out, bound,
                      ("matmul", before) if len(self.rec.out.matmuls) > before else None)
        return out

    def _run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any] | None) -> Any:
        """Run the op; if it raises, remember where and why (the innermost failure wins)."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if self.rec.out.error is None:
                self.rec.out.error = summarize_error(exc)
                if bound is not None:
                    weight = bound.get("weight", bound.get("mat2"))
                    self.rec.out.failed_at = self.rec.base_name("conv" if "weight" in bound else "matmul", weight)
            raise


# --- running the model -------------------------------------------------------------------------

#: TorchScript type kinds of the arguments `-i NAME=VALUE` gives a value.
_SCALAR_KINDS: dict[str, ScalarKind] = {"IntType": "int", "FloatType": "float", "BoolType": "bool",
                                        "NumberType": "float"}
#: Python annotations of the same, as eager code writes them (as text under `from __future__ import annotations`).
_ANNOTATED: dict[object, ScalarKind] = {int: "int", float: "float", bool: "bool",
                                        "int": "int", "float": "float", "bool": "bool"}


@dataclass(frozen=True)
class Argument:
    """One argument of forward: `kind` is "tensor" (given a shape, run on zeros of it) or the scalar
    type it takes a value of; `required` when it has no default."""

    name: str
    kind: Literal["tensor"] | ScalarKind
    required: bool

    def shown(self) -> str:
        return self.name if self.kind == "tensor" else f"{self.name}: {self.kind}"


@dataclass(frozen=True)
class Signature:
    """The arguments of a model's forward, without the module itself."""

    args: tuple[Argument, ...]
    variadic: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args if a.required)

    def kind(self, name: str) -> Literal["tensor"] | ScalarKind:
        return next((a.kind for a in self.args if a.name == name), "tensor")

    def takes(self) -> str:
        return ", ".join(a.shown() for a in self.args) or "no named inputs"


def _script_kind(t: Any) -> Literal["tensor"] | ScalarKind:
    if t.kind() == "OptionalType":
        t = t.getElementType()
    return _SCALAR_KINDS.get(t.kind(), "tensor")


def _eager_kind(p: inspect.Parameter) -> Literal["tensor"] | ScalarKind:
    """By annotation (`sr: int`), else by the default's type (`sr=16000`); else a tensor."""
    note = p.annotation
    if isinstance(note, str):
        note = note.replace("Optional[", "").replace("]", "").replace("| None", "").strip()
    else:  # Optional[int], int | None
        args = [a for a in typing.get_args(note) if a is not type(None)]
        note = args[0] if len(args) == 1 and type(None) in typing.get_args(note) else note
    if note in _ANNOTATED:
        return _ANNOTATED[note]
    if note is inspect.Parameter.empty and isinstance(p.default, bool | int | float):
        return "bool" if isinstance(p.default, bool) else "int" if isinstance(p.default, int) else "float"
    return "tensor"


def signature_of(module: nn.Module) -> Signature:
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # TorchScript method: its first argument is the module, whatever its name
        args = list(schema.arguments)
        if args and args[0].type.kind() == "ClassType":
            args = args[1:]
        return Signature(tuple(Argument(a.name, _script_kind(a.type), not a.has_default_value()) for a in args))
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return Signature((), variadic=True)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    return Signature(
        tuple(Argument(p.name, _eager_kind(p), p.default is inspect.Parameter.empty)
              for p in params if p.kind in kinds),
        variadic=any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params),
    )


#: One argument's input: a shape (the forward runs on zeros of it) or a scalar value.
Bound = dict[str, Shape | Scalar]


def _bind_one(sig: Signature, name: str, given: Given, source: str) -> Shape | Scalar:
    """`given` as argument `name` takes it: a shape for a tensor, a value for an int/float/bool."""
    kind = sig.kind(name)
    if kind == "tensor":
        if given.shape is None:
            raise InputError(f"input {name!r} is a tensor: -i {name}={given.text} gives a value; give its shape: "
                             f"-i {name}=SHAPE (forward takes: {sig.takes()})", source)
        return given.shape
    value = given.as_kind(kind)
    if value is None:
        got = "gives a shape" if given.value is None else f"is not {'an' if kind == 'int' else 'a'} {kind}"
        raise InputError(f"input {name!r} is {'an' if kind == 'int' else 'a'} {kind} argument: "
                         f"-i {name}={given.text} {got}; give its value: -i {name}=VALUE "
                         f"(forward takes: {sig.takes()})", source)
    return value


def _resolve(sig: Signature, given: dict[str, Given], source: str) -> Bound:
    """Each `-i` by argument name: "" goes to the one required tensor argument no other `-i` names."""
    given = dict(given)
    if not sig.variadic:
        unknown = [n for n in given if n and n not in sig.names]
        if unknown:
            raise InputError(f"-i {unknown[0]}=...: the model has no input {unknown[0]!r} "
                             f"(forward takes: {sig.takes()})", source)
    if "" in given:
        open_ = [a for a in sig.args if a.kind == "tensor" and a.name not in given]
        required = [a.name for a in open_ if a.required]
        if len(required) > 1:
            raise InputError(f"the model takes {len(required)} inputs ({', '.join(required)}); "
                             "name each: -i NAME=SHAPE", source)
        first = required[0] if required else open_[0].name if open_ else \
            sig.names[0] if sig.names and not sig.variadic else "input"
        given = {first: given.pop("")} | given
    return {name: _bind_one(sig, name, g, source) for name, g in given.items()}


def bind_inputs(sig: Signature, inputs: dict[str, Given], source: str, what: str,
                saved: dict[str, Given] | None = None) -> Bound:
    """Match `-i` shapes and values to the forward's arguments, over the ones saved with the model
    (`saved`: each `-i` replaces the saved input of its name); say what is missing in the user's terms.
    Arguments with defaults that nobody gives keep their defaults."""
    if not inputs and not saved and (sig.required or sig.variadic):
        tensors = [a.name for a in sig.args if a.required and a.kind == "tensor"]
        example = " ".join([f"-i {n}=1x3x224x224" for n in tensors] if len(tensors) > 1 else ["-i 1x3x224x224"]) \
            + "".join(f" -i {a.name}=VALUE" for a in sig.args if a.required and a.kind != "tensor")
        raise InputError(f"-i is required: {what} carries no input shape; give one, e.g. {example} "
                         f"(forward takes: {sig.takes()})", source)
    try:
        archived = _resolve(sig, saved or {}, source)
    except InputError as exc:
        raise InputError(f"the input saved in the archive: {exc.message}", source) from None
    bound = archived | _resolve(sig, inputs, source)
    if not sig.variadic:
        missing = [a for a in sig.args if a.required and a.name not in bound]
        if missing:
            a = missing[0]
            needs = f"a shape: -i {a.name}=SHAPE" if a.kind == "tensor" else f"a value: -i {a.name}=VALUE"
            raise InputError(f"input {a.name!r} needs {needs} (forward takes: {sig.takes()})", source)
    order = {n: i for i, n in enumerate(sig.names)}
    return dict(sorted(bound.items(), key=lambda kv: order.get(kv[0], len(order))))


def summarize_error(exc: BaseException, limit: int = 300) -> str:
    """One line from a (possibly TorchScript-traceback) error: the innermost `XError: message`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = next((m.group(1) for line in reversed(lines)
                 if (m := re.match(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): (.+)$", line))), None)
    text = text or (lines[0] if lines else type(exc).__name__)
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _input_dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _run(module: nn.Module, rec: _Recorder, bound: Bound, sig: Signature,
         dtype: torch.dtype, compute_convs: bool) -> Capture:
    args = {n: torch.zeros(v, dtype=dtype) if isinstance(v, tuple) else v for n, v in bound.items()}
    for n, v in args.items():
        if isinstance(v, torch.Tensor):
            rec.tensors.bind(v, n)
    positional = sig.variadic or list(sig.names[: len(args)]) == list(args)
    # With conv kernels skipped, what runs is cheap elementwise work, which one thread does faster
    # than a pool that spins and, on a busy machine, waits for cores (5-10x here).
    threads = torch.get_num_threads()
    if not compute_convs:
        torch.set_num_threads(1)
    # The model's own warnings (deprecations, "padding='same' may copy") are not about its cost,
    # and would break the one-line error contract.
    try:
        with warnings.catch_warnings(), torch.inference_mode(), _CaptureMode(rec, compute_convs), \
                rec.stack.tracking() if rec.stack else nullcontext():
            warnings.simplefilter("ignore")
            if positional:
                module(*args.values())
            else:
                module(**args)
    finally:
        torch.set_num_threads(threads)
    return rec.out


def capture(module: nn.Module, inputs: Inputs | None, *, name: str, source: str,
            fmt: str, what: str, eager: bool, compute_convs: bool = False,
            saved: dict[str, Given] | None = None) -> Model:
    """Run `module` once on zeros of the `-i` shapes, with the `-i` values of its scalar arguments,
    and describe what it computed.

    `saved` are inputs stored with the model, which `-i` overrides by name; `what` names the model
    kind for the message when both are missing; `eager` turns on module tracking (forward hooks),
    which TorchScript modules do not run. Convs are not computed unless `compute_convs` (their
    outputs are zeros of the right shape; see _CaptureMode).
    """
    module.eval()
    sig = signature_of(module)
    bound = bind_inputs(sig, givens(inputs), source, what, saved)
    shapes = {n: v for n, v in bound.items() if isinstance(v, tuple)}
    values = {n: v for n, v in bound.items() if not isinstance(v, tuple)}
    params = _Params(module)
    stack = _ModuleStack(module) if eager else None
    rec = _Recorder(params, stack)
    try:
        try:
            cap = _run(module, rec, bound, sig, _input_dtype(module), compute_convs)
        except (RuntimeError, TypeError) as exc:
            # Token ids, not pixels: an embedding wants integer input. Try that once.
            if not re.search(r"indices|\bLong\b", f"{exc} {rec.out.error}"):
                raise
            rec = _Recorder(params, stack)
            cap = _run(module, rec, bound, sig, torch.long, compute_convs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - what the model raises on these inputs is an input problem
        given = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items()) + \
            "".join(f", {n}={v}" for n, v in values.items())
        where = f" at layer {rec.out.failed_at}" if rec.out.failed_at else ""
        raise InputError(f"the forward pass on zeros of input {given} failed{where}: "
                         f"{rec.out.error or summarize_error(exc)} "
                         "(check -i: the rank, channels and size the model expects)", source) from None
    return _model_from(cap, params, name=name, source=source, fmt=fmt, inputs=shapes, values=values)


def _model_from(cap: Capture, params: _Params, *, name: str, source: str, fmt: str,
                inputs: dict[str, Shape], values: dict[str, Scalar]) -> Model:
    notes = []
    if note := repeated_calls(cap.calls, set(UNNAMED.values())):
        notes.append(note)
    if any(c.name.split("#")[0] == UNNAMED["conv"] for c in cap.convs):
        notes.append("some convs use weights that are not module parameters (computed or frozen); "
                        f"they are named {UNNAMED['conv']}#N")
    # totals.params is PyTorch's count, sum(p.numel() for p in model.parameters()): the cost model
    # prices every call (shared weights again) and computed weights (weight norm) as the conv's own.
    # A model without parameters (frozen) keeps the per-layer sum.
    if not params.total and (cap.convs or any(m.params for m in cap.matmuls)):
        notes.append("the model has no parameters (frozen?); params are those of its convs and matmuls")
    return Model(
        name=name,
        format=fmt,  # type: ignore[arg-type]
        source=source,
        inputs=inputs,
        values=values,
        convs=cap.convs,
        matmuls=cap.matmuls,
        declared_params=params.total or None,
        uncosted=dict(cap.uncosted),
        uncounted=cap.uncounted,
        warnings=notes,
        nodes=cap.nodes,
    )
