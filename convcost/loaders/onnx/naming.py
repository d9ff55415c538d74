"""Layer names for ONNX files torch.onnx wrote: the module path, as TorchScript names the layer.

The dynamo exporter (torch.onnx's default since torch 2.9) names nodes `node_Conv_754`, the legacy
one `/layer1/layer1.0/conv1/Conv`; TorchScript names a conv `layer1.0.conv1`, its module's name in
`named_modules()`. A budget file should work for all three, so convs and matmuls of a torch
export are named like TorchScript's, from what the file keeps of the module:

1. the weight's name: torch.onnx names a parameter's initializer by its qualified name
   (`layer1.0.conv1.weight` -> `layer1.0.conv1`, as the TorchScript loader strips `.weight`); the
   dynamo exporter keeps the name when it folds a BatchNorm into the conv;
2. a weight the exporter made (a folded BatchNorm in the legacy exporter: `onnx::Conv_43`) that an
   earlier conv already used: a second call of that conv, named like the first;
3. the module scope: the dynamo exporter's `pkg.torch.onnx.name_scopes` node metadata (qualified
   module names, the node's own name last), or the legacy exporter's node name, whose parts are
   module names cut at their last non-numeric atom (`layer1.0` for `layer1.0`, `conv1` for
   `layer1.0.conv1`);
4. an op at the top level with no parameter: `convolution` or `matmul`, as TorchScript names it.

`Names` (graph.py) then adds TorchScript's call index: `shared`, `shared#1`, ...
Files from other producers keep their node names.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from convcost.loaders.onnx.graph import CONTROL_FLOW, text

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

#: A parameter's qualified name: dotted identifiers (`layer1.0.conv1.weight`, `w`). Not what
#: exporters make up: `onnx::Conv_43`, `/conv/Constant_output_0`, `123`.
_PARAM = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*\Z")
#: The dynamo exporter's names for values it computes (a transposed Linear weight: `val_31`).
_GENERATED = re.compile(r"_?val_\d+\Z")
#: Which inputs hold an op's weight, in the order to try them (None: any input).
_WEIGHTS: dict[str, tuple[int, ...] | None] = {
    "QLinearConv": (3,), "QLinearMatMul": (3, 0), "MatMul": (1, 0), "MatMulInteger": (1, 0),
    "FusedMatMul": (1, 0), "Einsum": None,
}
#: Ops a weight passes through between the stored tensor and the conv (Identity: torch.onnx's
#: alias of an initializer it deduplicated).
_PASS_THROUGH = frozenset({"Identity", "Cast", "DequantizeLinear", "Reshape", "Transpose", "Unsqueeze",
                           "Squeeze", "Flatten"})
_CONVS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv"})
#: TorchScript's names for an op whose weight is no parameter and that runs in no module.
UNNAMED = {"conv": "convolution", "matmul": "matmul"}
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_NAMESPACE_KEY = "namespace"
_MAX_METADATA = 10_000  # characters: module paths are short; anything longer is not read


def from_torch(model: ModelProto) -> bool:
    """Whether torch.onnx wrote the file (either exporter sets producer_name "pytorch")."""
    return text(model.producer_name) == "pytorch"


def param_layer(name: str) -> str | None:
    """`layer1.0.conv1.weight` -> `layer1.0.conv1`, `w` -> `w`; None for a name an exporter made."""
    if not _PARAM.match(name) or _GENERATED.match(name):
        return None
    return name[: -len(".weight")] if name.endswith(".weight") else name


def legacy_path(node_name: str) -> str:
    """The qualified module path in a legacy-exporter node name (`/layer1/layer1.0/conv1/Conv`
    -> `layer1.0.conv1`), '' for a top-level node or a name of another form.

    Each part is a module's qualified name from its last non-numeric atom on (`layer1.0`,
    `downsample.0`, `conv1`); a part whose first atom is in the path so far continues from there,
    others are children of the module before (a module that was not called has no part)."""
    if not node_name.startswith("/"):
        return ""
    atoms: list[str] = []
    for part in node_name.split("/")[1:-1]:
        own = part.split(".")
        if not own[0]:
            return ""
        if len(own) > 1 and own[0] in atoms:
            atoms = atoms[: len(atoms) - atoms[::-1].index(own[0]) - 1]
        atoms.extend(own)
    return ".".join(atoms)


def dynamo_path(node: NodeProto) -> str:
    """The innermost module of a dynamo-exporter node, from its metadata ('' where it has none)."""
    meta = {text(p.key): text(p.value) for p in node.metadata_props}
    scopes = meta.get(_SCOPES_KEY, "")
    if scopes and len(scopes) <= _MAX_METADATA:
        try:
            parsed = ast.literal_eval(scopes)  # a Python list of str, as torch writes it
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, list) and all(isinstance(s, str) for s in parsed):
            modules = [s for s in parsed[:-1] if s]  # the last entry is the node itself
            return _plain(modules[-1]) if modules else ""
    namespace = meta.get(_NAMESPACE_KEY, "")
    if namespace and len(namespace) <= _MAX_METADATA:
        # ": net.Net/layer1: torch.nn...Sequential/layer1.0.conv1: torch.nn...Conv2d/conv2d_2: aten..."
        modules = [entry.split(": ")[0] for entry in namespace.split("/")[:-1]]
        modules = [m for m in modules if m]
        return _plain(modules[-1]) if modules else ""
    return ""


def _plain(path: str) -> str:
    """torch.export marks a module's later calls `block@1`; the call index comes from `Names`."""
    return re.sub(r"@\d+(?=\.|\Z)", "", path)


class ModulePaths:
    """A node's module path in a torch export (see the module docstring); None: no name found."""

    def __init__(self, const: set[str], made_by: dict[str, NodeProto]) -> None:
        self.const, self.made_by = const, made_by
        #: stored weight tensor -> the name of the first conv that used it (repeated calls)
        self.by_root: dict[str, str] = {}

    def __call__(self, node: NodeProto) -> str:
        roots: list[str] = []
        for name in self._weights(node):
            layer, root = self._param(name)
            if layer:
                return layer
            if root in self.by_root:
                return self.by_root[root]
            if root in self.const:
                roots.append(root)
        path = dynamo_path(node) or legacy_path(text(node.name))
        if not path:
            op = text(node.op_type)
            if op in CONTROL_FLOW:  # the owner of a body: its prefix reads best as the node's own name
                return text(node.name).lstrip("/") or op
            return UNNAMED["conv" if op in _CONVS else "matmul"]
        for root in roots:
            self.by_root.setdefault(root, path)
        return path

    def _weights(self, node: NodeProto) -> Iterable[str]:
        inputs = list(node.input)
        positions = _WEIGHTS.get(text(node.op_type), (1,))
        for i in range(len(inputs)) if positions is None else positions:
            if i < len(inputs) and inputs[i]:
                yield inputs[i]

    def _param(self, name: str) -> tuple[str | None, str]:
        """The layer a constant weight names, walking back through aliases and casts to the stored
        tensor; else (None, that tensor)."""
        for _ in range(16):
            if name not in self.const:
                return None, name
            layer = param_layer(name)
            if layer:
                return layer, name
            maker = self.made_by.get(name)
            if maker is None or maker.op_type not in _PASS_THROUGH or not maker.input:
                break
            name = maker.input[0]
        return None, name


def module_paths(model: ModelProto, const: set[str], made_by: dict[str, NodeProto]) -> \
        Callable[[NodeProto], str] | None:
    """Names for a torch export's layers; None for files other producers wrote (node names stay)."""
    return ModulePaths(const, made_by) if from_torch(model) else None
