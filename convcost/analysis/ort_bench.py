"""`convcost bench model.onnx -d PROFILE` with an onnxruntime profile: the real model, run end to end in
onnxruntime, beside the whole-model estimate; and node by node from onnxruntime's profiler.

Whole model: random inputs at the analysed shapes, warm-up runs, then the median wall time of
`InferenceSession.run` over at least `seconds`. Per node: a second session with profiling on runs
the model again; each kernel onnxruntime ran (a node of its optimized graph) is mapped back to the
original nodes it computes -- a FusedConv to its Conv, BatchNormalization, Add and activation --
through the tensors that survive optimization, and its median time is compared with the sum of
those nodes' estimates. Kernels the runtime inserts (layout reorders) have no original node and
are listed apart. Imports onnxruntime.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convcost.analysis.result import Analysis
from convcost.analysis.result import relative_error as error
from convcost.ir.model import Model, Node
from convcost.latency.devices import DeviceProfile
from convcost.latency.fusions import Graph
from convcost.latency.layouts import ADDED_OPS
from convcost.latency.ort_run import INSERTED_OPS, OrtTiming, make_session, node_medians, time_sessions

#: Suffixes onnxruntime's NCHWc transformer gives the nodes and tensors it re-lays out ("_bn": a
#: BatchNormalization it turned into a depthwise 1x1 conv).
NCHWC_SUFFIXES = ("_nchwc", "_bn")
#: Ops a runtime fuses into the conv before them (BatchNormalization, residual Add, activations).
UPSTREAM_FUSABLE = frozenset({"BatchNormalization", "Add", "Sum", "Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu",
                              "Tanh", "HardSwish"})
#: Per-node comparisons count kernels at least this long (shorter ones are mostly call overhead).
NODE_FLOOR_MS = 0.05


@dataclass
class KernelBench:
    """One kernel onnxruntime ran and the original nodes it computes."""

    name: str
    op: str
    nodes: list[str]
    measured_ms: float
    estimated_ms: float
    baseline_ms: float | None = None

    @property
    def error(self) -> float:
        return error(self.estimated_ms, self.measured_ms)


@dataclass
class WholeBench:
    """A model (or a factorized version of it) run end to end."""

    label: str
    measured_ms: float
    estimated_ms: float
    baseline_ms: float | None
    runs: int
    #: For a factorized version: the original model's median in the same runs, taken in turns with it.
    reference_ms: float | None = None

    @property
    def error(self) -> float:
        return error(self.estimated_ms, self.measured_ms)


@dataclass
class OrtBenchResult:
    model: Model
    device: DeviceProfile
    threads: int
    whole: WholeBench
    kernels: list[KernelBench]
    inserted: list[KernelBench]
    variants: dict[str, WholeBench] = field(default_factory=dict)
    others: float | None = None
    seconds: float = 0.0

    def long_kernels(self) -> list[KernelBench]:
        return [k for k in self.kernels if k.measured_ms >= NODE_FLOOR_MS]

    def speedup_measured(self, variant: WholeBench) -> float:
        """The original's time over the variant's, from runs taken in turns (`measure_in_turns`)."""
        return (variant.reference_ms or self.whole.measured_ms) / variant.measured_ms

    def speedup_estimated(self, variant: WholeBench) -> float:
        return self.whole.estimated_ms / variant.estimated_ms

    def sign_right(self, variant: WholeBench) -> bool:
        """Whether the estimate says faster (or slower) where the runs do."""
        return (self.speedup_measured(variant) > 1) == (self.speedup_estimated(variant) > 1)

    def summary(self) -> dict[str, float | int | None]:
        long = self.long_kernels()
        errs = [k.error for k in long]
        signs = [self.sign_right(v) for v in self.variants.values()]
        return {
            "kernels": len(self.kernels), "kernels_over_floor": len(long),
            "kernels_within_25pct": sum(abs(e) <= 0.25 for e in errs),
            "median_abs_error": statistics.median(abs(e) for e in errs) if errs else None,
            "whole_model_error": self.whole.error,
            "variant_pairs": len(signs), "signs_right": sum(signs),
        }


def _strip(tensor: str) -> str:
    changed = True
    while changed:
        changed = False
        for suffix in NCHWC_SUFFIXES:
            if tensor.endswith(suffix):
                tensor, changed = tensor[: -len(suffix)], True
    return tensor


def kernel_groups(nodes: Sequence[Node], optimized: Sequence[tuple[str, str, Sequence[str]]]) -> dict[str, list[str]]:
    """Optimized node name -> names of the original nodes it computes.

    `optimized` lists (name, op type, outputs) of the optimized graph. An original node whose output
    survives optimization belongs to the kernel that now makes it; one whose outputs are gone (fused
    or folded away) belongs to the kernel of the first surviving node downstream of it."""
    made_by: dict[str, str] = {}  # original tensor -> the kernel that now makes it
    named: dict[str, str] = {}  # original node name -> the kernel that keeps its name
    for name, op, outs in optimized:
        if op in INSERTED_OPS:
            continue
        # The NCHWc transformer names a node after the tensor it makes ("<tensor>_nchwc") and renames
        # the tensors themselves; other kernels keep their node's name or their output's.
        made_by.setdefault(_strip(name), name)
        named.setdefault(name, name)
        # A fusion that makes a new node names it "<first node>/<Fusion>/" (QuickGeluFusion, GeluFusion).
        if "/" in name.rstrip("/"):
            named.setdefault(name.rstrip("/").rsplit("/", 1)[0], name)
        for t in outs:
            made_by.setdefault(_strip(t), name)
    graph = Graph(nodes)
    readers, producer = graph.readers, graph.producer
    order = {n.name: i for i, n in enumerate(nodes)}
    conv_kernels = {name for name, op, _ in optimized if op in ("Conv", "FusedConv")}
    home: dict[str, str | None] = {}

    def upstream(n: Node) -> str | None:
        """A fusable op whose output is gone joins the conv kernel that computes its input (the latest
        such input, as a residual Add joins the conv that finishes last)."""
        if n.op not in UPSTREAM_FUSABLE or _swish_gate(n, readers):
            return None
        made = [producer[t] for t in n.inputs if t in producer]
        for p in sorted(made, key=lambda p: -order[p.name]):
            if home.get(p.name) in conv_kernels:
                return home[p.name]
        return None

    def place(n: Node, depth: int = 0) -> str | None:
        if n.name in home:
            return home[n.name]
        found = next((made_by[t] for t in n.outputs if t in made_by), None) or \
            named.get(n.source or n.name) or upstream(n)
        if found is None and depth < 64:
            for t in n.outputs:
                for reader in readers.get(t, []):
                    found = place(reader, depth + 1)
                    if found is not None:
                        break
                if found is not None:
                    break
        home[n.name] = found
        return found

    groups: dict[str, list[str]] = {}
    for n in nodes:
        kernel = place(n)
        if kernel is not None:
            groups.setdefault(kernel, []).append(n.name)
    return groups


def _swish_gate(n: Node, readers: Mapping[str, Sequence[Node]]) -> bool:
    """The Sigmoid of `x * Sigmoid(x)`: it runs with its Mul as one kernel of its own (QuickGelu),
    not inside the conv that makes x."""
    return n.op == "Sigmoid" and bool(n.outputs) and any(
        r.op == "Mul" and n.inputs[0] in r.inputs for r in readers.get(n.outputs[0], []))


def _optimized_nodes(path: Path) -> list[tuple[str, str, list[str]]]:
    """(name, op type, outputs) of each node of the optimized graph; a layout reorder's "outputs" are
    the original tensor it copies (convcost.latency.layouts names its estimate after it)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [(n.name, n.op_type, list(n.input[:1] if n.op_type == "ReorderInput" else n.output))
            for n in model.graph.node]


def reorder_members(optimized: Sequence[tuple[str, str, Sequence[str]]]) -> dict[str, str]:
    """Inserted reorder kernel -> the name of its estimate (`layouts.reorders`: "<tensor>/<op>")."""
    return {name: f"{outs[0]}/{op}" for name, op, outs in optimized
            if op in ADDED_OPS and outs}


def measure_whole(model_path: str | Path, shapes: Mapping[str, tuple[int, ...]], threads: int, seconds: float,
                  tick: Callable[[int, int], None] | None = None) -> tuple[float, int, float | None]:
    """Median wall ms of the whole model in onnxruntime, the runs it took, and other processes' CPU share."""
    session = make_session(Path(model_path).read_bytes(), threads, shapes=shapes)
    timed = time_sessions([session], OrtTiming(warmup=5, repeats=10, span_s=seconds, max_rounds=10**7), tick)
    return timed.medians()[0], timed.rounds, timed.others


#: Seconds of back-to-back runs of one model per turn where models are timed in turns.
TURN_S = 0.2


def measure_in_turns(model_paths: Sequence[str | Path], shapes: Mapping[str, tuple[int, ...]], threads: int,
                     seconds: float, ms: float,
                     tick: Callable[[int, int], None] | None = None) -> tuple[list[float], int]:
    """Median wall ms of each model, run in turns of about TURN_S seconds each (`ms`: about one run's
    time) for `seconds` in all, and the runs per model. The first run of a turn finds the other
    model's data in cache and is left out. A ratio of two models timed apart, a minute later, moves
    with the host's speed by several percent: more than a factorization changes a model whose
    replaced convs are a few percent of its time."""
    sessions = [make_session(Path(p).read_bytes(), threads, shapes=shapes) for p in model_paths]
    burst = max(3, round(TURN_S * 1e3 / max(ms, 1e-3)))
    timing = OrtTiming(warmup=5, repeats=5, span_s=seconds, max_rounds=10**7, burst=burst, settle=1)
    timed = time_sessions(sessions, timing, tick)
    return timed.medians(), timed.rounds * (burst - 1)


def measure_kernels(model_path: str | Path, shapes: Mapping[str, tuple[int, ...]], threads: int,
                    runs: int) -> tuple[dict[str, float], dict[str, str], list[tuple[str, str, list[str]]]]:
    """Median kernel ms per optimized node over `runs` profiled runs, their op types, and the
    optimized graph's nodes."""
    with tempfile.TemporaryDirectory(prefix="convcost-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session = make_session(Path(model_path).read_bytes(), threads, shapes=shapes, profiling=True,
                               optimized_path=str(optimized))
        warmup = 3
        for i in range(runs + warmup):
            session.run(sample=i >= warmup)
        medians = node_medians(session, warmup)
        return medians, dict(session.ops), _optimized_nodes(optimized)


def ort_bench(analysis: Analysis, profile: DeviceProfile, seconds: float, threads: int,
              variant_files: Mapping[str, Path] | None = None,
              tick: Callable[[int, int], None] | None = None) -> OrtBenchResult:
    """Measure the analysed ONNX model (and each factorized version in `variant_files`) in onnxruntime."""
    model = analysis.model
    shapes = dict(model.inputs)
    rate = profile.macs_per_ms
    whole_ms, runs, others = measure_whole(model.source, shapes, threads, seconds, tick)
    estimate = analysis.totals.whole[profile.name]
    whole = WholeBench(model.name, whole_ms, estimate.ms, analysis.totals.macs / rate if rate else None, runs)
    profiled_runs = max(10, min(200, int(seconds * 1e3 / max(whole_ms, 1e-3) / 4)))
    medians, ops, optimized = measure_kernels(model.source, shapes, threads, profiled_runs)
    groups = kernel_groups(model.nodes, optimized)
    by_name = {e.node.name: e for e in estimate.nodes}
    macs = {n.name: 0 for n in model.nodes}
    for n in model.nodes:
        if n.counted is not None:
            kind, i = n.counted
            macs[n.name] = model.convs[i].macs if kind == "conv" else model.matmuls[i].macs
    reorders = reorder_members(optimized)
    kernels: list[KernelBench] = []
    inserted: list[KernelBench] = []
    for name, ms in medians.items():
        members = groups.get(name, [])
        if not members:  # a kernel the runtime inserted: its estimate, where the profile has the layout
            est = by_name[reorders[name]].ms if reorders.get(name) in by_name else 0.0
            inserted.append(KernelBench(name, ops.get(name, ""), [], ms, est))
            continue
        est = sum(by_name[m].ms for m in members if m in by_name)
        base = sum(macs.get(m, 0) for m in members) / rate if rate else None
        kernels.append(KernelBench(name, ops.get(name, ""), members, ms, est, base))
    variants = {}
    if variant_files:
        paths: list[str | Path] = [model.source, *variant_files.values()]
        turns, turn_runs = measure_in_turns(paths, shapes, threads, seconds * len(variant_files), whole_ms, tick)
        for (variant, _), v_ms in zip(variant_files.items(), turns[1:], strict=True):
            totals = analysis.variant_totals[variant]
            variants[variant] = WholeBench(variant, v_ms, totals.latency[profile.name],
                                           totals.macs / rate if rate else None, turn_runs, turns[0])
    return OrtBenchResult(model, profile, threads, whole, kernels, inserted, variants, others, seconds)
