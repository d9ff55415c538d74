"""Runtimes and the graph rewrites they apply before running a model: what a profile's figures describe.

A profile names its runtime (`runtime: {name: onnxruntime, version, threads, provider}`) and lists
the rewrites that runtime applies (`fusions: [conv_bn, conv_activation, ...]`). A fused op runs no
kernel of its own: it costs only what it changes in the memory traffic of the op that absorbs it
(a Conv + Add reads the Add's other operand). `calibrate --runtime onnxruntime` checks which of
them the installed onnxruntime really applies by timing a, b and a -> b.

`fuse(nodes, fusions)` walks a model's nodes in order and says, per node, whether it runs as its
own kernel, is absorbed into a conv, or is folded away. Each rule is registered in FUSIONS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from convcost.ir.model import Node, numel
from convcost.util.registry import Registry


@dataclass(frozen=True)
class Runtime:
    """A runtime a profile can describe: its name and what it does to a model by default."""

    name: str
    description: str
    #: The rewrites a profile of this runtime applies when it lists none.
    default_fusions: tuple[str, ...] = ()
    #: Activations that, fused into a conv, still run as a pass over the conv's output after its
    #: kernel wrote it, rather than as the kernel stores each output (convcost.latency.graph).
    pass_activations: frozenset[str] = frozenset()


#: Activations onnxruntime's FusedConv (and the NCHWc conv) applies to a conv's output in place.
FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu", "Tanh",
                                 "aten::relu", "aten::relu_", "aten::clamp", "aten::hardtanh", "aten::sigmoid",
                                 "aten::hardsigmoid", "aten::leaky_relu", "aten::tanh"})
#: HardSwish after a conv: onnxruntime fuses it into an NCHWc conv that feeds another node.
HARDSWISH = frozenset({"HardSwish", "aten::hardswish", "aten::hardswish_"})
#: Activations onnxruntime's conv kernels apply as they store each output (mlas/lib/sconv.h:
#: MLAS_CONV_KERNEL_FLAG_RELU_ACTIVATION); under MLAS_CONV_KERNEL_FLAG_OTHER_ACTIVATION, MLAS applies
#: any other fused activation (MlasActivation) to each output block once the kernel wrote it.
KERNEL_ACTIVATIONS = frozenset({"Relu", "aten::relu", "aten::relu_"})

RUNTIMES: Registry[str, Runtime] = Registry("runtime")
RUNTIMES.add("onnxruntime", Runtime(
    "onnxruntime", "onnxruntime's CPU execution provider, default graph optimizations (ORT_ENABLE_ALL)",
    ("constant_folding", "eliminate_identity", "conv_bn", "conv_activation", "conv_hardswish", "conv_add_activation",
     "bn_activation", "sigmoid_mul", "gelu", "matmul_add", "matmul_scale"),
    (FUSABLE_ACTIVATIONS | HARDSWISH) - KERNEL_ACTIVATIONS))
RUNTIMES.add("torch", Runtime("torch", "PyTorch eager mode: every op is a kernel call, nothing is fused"))
RUNTIMES.add("tflite", Runtime("tflite", "TensorFlow Lite interpreter and its delegates (conv + BN and "
                                         "conv + ReLU/ReLU6 fused by the converter)",
                               ("constant_folding", "eliminate_identity", "conv_bn", "conv_activation")))
RUNTIMES.add("tensorrt", Runtime("tensorrt", "NVIDIA TensorRT engines (conv + BN + activation + add fused)",
                                 ("constant_folding", "eliminate_identity", "conv_bn", "conv_activation",
                                  "conv_hardswish", "conv_add_activation")))

#: The fusions that put an activation into a conv kernel.
ACTIVATION_FUSIONS = frozenset({"conv_activation", "conv_hardswish"})
#: The op onnxruntime runs for x * Sigmoid(x) (`sigmoid_mul`): what the Sigmoid it keeps is priced as,
#: and the node calibrate's SiLU probes time.
SILU_KERNEL = "QuickGelu"
#: The kernel onnxruntime runs for the erf form of GELU (the `gelu` fusion).
GELU_KERNEL = "Gelu"
#: Ops that run no kernel once the runtime has removed them from the graph.
IDENTITIES = frozenset({"Identity", "Dropout", "aten::dropout", "aten::alias", "aten::detach"})


@dataclass
class Fate:
    """What becomes of one node: `runs` as its own kernel; otherwise absorbed into `host` (a conv
    node's name) moving `extra_bytes` more through it, or folded away (`host` None)."""

    runs: bool = True
    host: str | None = None
    by: str | None = None  # the fusion that absorbed or folded it
    extra_bytes: int = 0
    #: The op family of a call the rewrite leaves in its place (a reshape around a Gemm), priced
    #: by that family's per-call overhead; None: nothing.
    leaves: str | None = None
    #: The op the runtime runs in a running node's place, having absorbed a later node into it (the
    #: Sigmoid of x * Sigmoid(x) runs as QuickGelu), which prices it; None: its own op.
    runs_as: str | None = None


@dataclass
class _Chain:
    """A conv and the ops fused into it so far: its output tensor's stage (conv, bn, add, act)."""

    host: str
    stage: str


@dataclass
class Graph:
    """The nodes with their tensors' producers and readers, and the fates decided so far."""

    nodes: Sequence[Node]
    producer: dict[str, Node] = field(default_factory=dict)
    fates: dict[str, Fate] = field(default_factory=dict)
    chains: dict[str, _Chain] = field(default_factory=dict)  # tensor -> the conv chain ending in it
    constant: set[str] = field(default_factory=set)  # tensors known before the model runs
    #: Nodes a pattern matched ahead of reaching them: name -> (fusion, the node that absorbs them).
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)
    readers: dict[str, list[Node]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.nodes:
            for t in node.outputs:
                self.producer[t] = node
            for t in node.inputs:
                if t:
                    self.readers.setdefault(t, []).append(node)

    def only_reader(self, tensor: str) -> Node | None:
        """The one node that reads `tensor`, if exactly one does."""
        readers = self.readers.get(tensor, [])
        return readers[0] if len(readers) == 1 else None

    def only_consumer(self, tensor: str) -> bool:
        return len(self.readers.get(tensor, ())) == 1

    def activations(self, node: Node) -> list[int]:
        """Indices of the inputs that are computed while the model runs."""
        return [i for i, t in enumerate(node.inputs)
                if t and i not in node.constant and t not in self.constant]


#: A rule: given the graph and a node, fuse or fold it (set graph.fates[node.name]) and say True.
Rule = Callable[[Graph, Node], bool]
FUSIONS: Registry[str, tuple[str, Rule]] = Registry("fusion")


def register_fusion(name: str, description: str) -> Callable[[Rule], Rule]:
    def wrap(rule: Rule) -> Rule:
        FUSIONS.add(name, (description, rule))
        return rule

    return wrap


def _base(op: str) -> str:
    return op.rsplit("::", 1)[-1]


@register_fusion("constant_folding", "an op whose inputs are all constants (or shapes known before the run) "
                                     "is computed once when the session is made")
def _fold(g: Graph, node: Node) -> bool:
    static_shape = _base(node.op) in ("Shape", "Size") and all(s is not None for s in node.input_shapes)
    if not static_shape and (g.activations(node) or not node.inputs):
        return False
    g.constant.update(t for t in node.outputs if t)
    g.fates[node.name] = Fate(runs=False, by="constant_folding")
    return True


@register_fusion("eliminate_identity", "Identity and Dropout (inference) are removed from the graph")
def _identity(g: Graph, node: Node) -> bool:
    if node.op not in IDENTITIES:
        return False
    g.fates[node.name] = Fate(runs=False, by="eliminate_identity")
    if node.inputs and node.outputs and node.inputs[0] in g.chains:
        g.chains[node.outputs[0]] = g.chains[node.inputs[0]]
    return True


@register_fusion("bn_activation", "an activation after a BatchNormalization that no conv absorbed runs inside it "
                                  "(onnxruntime runs such a BatchNormalization as a depthwise 1x1 conv)")
def _bn_activation(g: Graph, node: Node) -> bool:
    if (node.op not in FUSABLE_ACTIVATIONS and node.op not in HARDSWISH) or not node.inputs:
        return False
    bn = g.producer.get(node.inputs[0])
    if bn is None or _base(bn.op) != "BatchNormalization" or not g.fates.get(bn.name, Fate(runs=False)).runs \
            or not g.only_consumer(node.inputs[0]):
        return False
    g.fates[node.name] = Fate(runs=False, host=bn.name, by="bn_activation")
    return True


def _chain_of(g: Graph, tensor: str, stages: tuple[str, ...]) -> _Chain | None:
    """The conv chain ending in `tensor`, when this op is its only reader and the chain is at one of `stages`."""
    chain = g.chains.get(tensor)
    if chain is None or chain.stage not in stages or not g.only_consumer(tensor):
        return None
    return chain


def _absorb(g: Graph, node: Node, chain: _Chain, stage: str, by: str, extra: int = 0) -> bool:
    g.fates[node.name] = Fate(runs=False, host=chain.host, by=by, extra_bytes=extra)
    if node.outputs:
        g.chains[node.outputs[0]] = _Chain(chain.host, stage)
    return True


def _activation_into_conv(g: Graph, node: Node, ops: frozenset[str], by: str) -> bool:
    """An activation of `ops` reading a conv chain's output (conv, conv + BN, conv + residual add) alone."""
    if node.op not in ops or not node.inputs:
        return False
    chain = _chain_of(g, node.inputs[0], ("conv", "bn", "add"))
    return chain is not None and _absorb(g, node, chain, "act", by)


@register_fusion("conv_bn", "BatchNormalization after a conv is folded into the conv's weights and bias")
def _conv_bn(g: Graph, node: Node) -> bool:
    if _base(node.op) not in ("BatchNormalization", "_native_batch_norm_legit_no_training", "batch_norm") \
            or len(g.activations(node)) != 1 or not node.inputs:
        return False
    chain = _chain_of(g, node.inputs[0], ("conv",))
    return chain is not None and _absorb(g, node, chain, "bn", "conv_bn")


@register_fusion("conv_activation", "Relu, Clip (Relu6), Sigmoid, HardSigmoid, LeakyRelu or Tanh after a conv "
                                    "runs inside the conv kernel (FusedConv)")
def _conv_activation(g: Graph, node: Node) -> bool:
    return _activation_into_conv(g, node, FUSABLE_ACTIVATIONS, "conv_activation")


@register_fusion("conv_hardswish", "HardSwish after a conv runs inside the conv kernel")
def _conv_hardswish(g: Graph, node: Node) -> bool:
    return _activation_into_conv(g, node, HARDSWISH, "conv_hardswish")


@register_fusion("conv_add_activation", "Add of a conv's output and a tensor of the same shape (a residual) "
                                        "runs inside the conv kernel, which reads the other operand; an "
                                        "activation after it fuses too")
def _conv_add(g: Graph, node: Node) -> bool:
    if _base(node.op) not in ("Add", "add") or len(node.inputs) != 2 or len(g.activations(node)) != 2:
        return False
    shapes = node.input_shapes
    if len(shapes) != 2 or shapes[0] is None or shapes[0] != shapes[1]:
        return False
    for mine in (0, 1):
        chain = _chain_of(g, node.inputs[mine], ("conv", "bn"))
        other = shapes[1 - mine]
        if chain is not None and other is not None:
            extra = numel(other)  # elements; priced in bytes by the caller's dtype
            return _absorb(g, node, chain, "add", "conv_add_activation", extra)
    return False


@register_fusion("sigmoid_mul", "x * Sigmoid(x) (SiLU, Swish) runs as one kernel (onnxruntime's QuickGelu)")
def _sigmoid_mul(g: Graph, node: Node) -> bool:
    if _base(node.op) not in ("Mul", "mul") or len(node.inputs) != 2:
        return False
    for mine in (0, 1):
        gate = g.producer.get(node.inputs[mine])
        if gate is not None and _base(gate.op) in ("Sigmoid", "sigmoid") and gate.inputs \
                and gate.inputs[0] == node.inputs[1 - mine] and g.only_consumer(node.inputs[mine]) \
                and g.fates.get(gate.name, Fate()).runs:
            g.fates[node.name] = Fate(runs=False, host=gate.name, by="sigmoid_mul")
            g.fates[gate.name] = replace(g.fates.get(gate.name, Fate()), runs_as=SILU_KERNEL)
            return True
    return False


def _constant_operand(g: Graph, node: Node) -> bool:
    return len(node.inputs) == 2 and len(g.activations(node)) == 1


@register_fusion("gelu", "the erf form of GELU (Div, Erf, Add, Mul, Mul as exporters write it) runs as one Gelu kernel")
def _gelu(g: Graph, node: Node) -> bool:
    """Matched at the Erf: the scaling before it and the Add, Mul by x and Mul by 0.5 after it join it."""
    if node.name in g.pending:
        fusion, host = g.pending.pop(node.name)
        g.fates[node.name] = Fate(runs=False, host=host, by=fusion)
        return True
    if _base(node.op) != "Erf" or not node.inputs or not node.outputs:
        return False
    scale = g.producer.get(node.inputs[0])
    if scale is None or _base(scale.op) not in ("Div", "Mul") or not _constant_operand(g, scale) \
            or not g.only_consumer(node.inputs[0]):
        return False
    x = scale.inputs[g.activations(scale)[0]]
    chain: list[Node] = []
    tensor = node.outputs[0]
    for _ in range(3):
        nxt = g.only_reader(tensor)
        if nxt is None or _base(nxt.op) not in ("Add", "Mul") or not nxt.outputs:
            break
        chain.append(nxt)
        tensor = nxt.outputs[0]
    ops = [_base(n.op) for n in chain]
    if ops[:2] != ["Add", "Mul"] or x not in chain[1].inputs:
        return False
    if len(chain) == 3 and not _constant_operand(g, chain[2]):
        chain = chain[:2]
    g.fates[scale.name] = Fate(runs=False, host=node.name, by="gelu")
    g.pending.update({n.name: ("gelu", node.name) for n in chain})
    g.fates[node.name] = Fate(runs_as=GELU_KERNEL)
    return True


#: Element types onnxruntime's Gemm takes (MatMulAddFusion checks the MatMul's).
GEMM_DTYPES = frozenset({None, "float32", "float16", "bfloat16"})


def _running_matmul(g: Graph, tensor: str) -> Node | None:
    """The ONNX MatMul that computes `tensor`, when that tensor has no other reader."""
    node = g.producer.get(tensor)
    if node is None or node.op != "MatMul" or not g.only_consumer(tensor) or not g.fates.get(node.name, Fate()).runs:
        return None
    return node


@register_fusion("matmul_add", "Add of a bias along the last axis after a MatMul by a 2-D matrix runs as one Gemm "
                               "(onnxruntime's MatMulAddFusion; for an input of rank above 2 a reshape call puts the "
                               "output back)")
def _matmul_add(g: Graph, node: Node) -> bool:
    if node.op != "Add" or len(node.inputs) != 2 or len(node.input_shapes) != 2:
        return False
    for mine in (0, 1):
        matmul = _running_matmul(g, node.inputs[mine])
        bias = node.input_shapes[1 - mine]
        if matmul is None or bias is None or matmul.dtype not in GEMM_DTYPES or len(matmul.input_shapes) != 2:
            continue
        a, b = matmul.input_shapes
        if a is None or b is None or len(b) != 2:
            continue
        n = b[1]
        gemm_bias = tuple(bias) == (n,) or (len(a) == 2 and len(bias) == 2 and (
            tuple(bias) == (1, n) or (bias[0] == a[0] and bias[1] in (1, n))))
        if gemm_bias:  # an input of rank above 2 runs as 2-D: a reshape call puts the output back
            g.fates[node.name] = Fate(runs=False, host=matmul.name, by="matmul_add",
                                      leaves="view" if len(a) > 2 else None)
            return True
    return False


@register_fusion("matmul_scale", "Mul (or Div) by a constant scalar right before or after a MatMul runs inside it "
                                 "(onnxruntime's MatMulScaleFusion: a FusedMatMul with alpha)")
def _matmul_scale(g: Graph, node: Node) -> bool:
    op = node.op
    moving = g.activations(node)
    if op not in ("Mul", "Div") or len(node.inputs) != 2 or len(moving) != 1 or not node.outputs:
        return False
    act = moving[0]
    scale = node.input_shapes[1 - act] if len(node.input_shapes) == 2 else None
    if scale is None or numel(scale) != 1 or (op == "Div" and act != 0):
        return False
    host = _running_matmul(g, node.inputs[act])
    if host is None:
        reader = g.only_reader(node.outputs[0])
        host = reader if reader is not None and reader.op == "MatMul" else None
    if host is None:
        return False
    g.fates[node.name] = Fate(runs=False, host=host.name, by="matmul_scale")
    return True


NCHWC = "nchwc_layout"


@register_fusion(NCHWC, "x86 builds run 2-D convs on channel-blocked (NCHWc) tensors and insert a layout "
                        "reorder where a blocked tensor meets an op that reads NCHW (convcost.latency.layouts)")
def _nchwc_layout(g: Graph, node: Node) -> bool:
    return False  # absorbs nothing: convcost.latency.layouts adds the reorders the layout needs


def fuse(nodes: Sequence[Node], fusions: Sequence[str]) -> dict[str, Fate]:
    """Each node's fate under `fusions` (names in FUSIONS), applied in registry order per node."""
    g = Graph(nodes)
    rules = [FUSIONS[name][1] for name in FUSIONS if name in fusions]
    for node in nodes:
        if node.counted is not None and node.counted[0] == "conv" and node.outputs \
                and "transpose" not in node.op.lower():
            g.fates[node.name] = Fate()
            g.chains[node.outputs[0]] = _Chain(node.name, "conv")
            continue
        if not any(rule(g, node) for rule in rules):
            g.fates[node.name] = Fate()
    return g.fates
