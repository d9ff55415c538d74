"""Run ONNX graphs in onnxruntime and time them: what `calibrate --runtime onnxruntime` and `bench`
share. Imports onnxruntime (an optional extra), so only those commands import this module.

Wall times are taken around `InferenceSession.run`; per-node times come from onnxruntime's own
profiler (`enable_profiling`: one event per node and run, with its `dur` in microseconds and its
`op_name`). Samples of many sessions are taken in interleaved rounds spread over a span of
seconds, as the torch timer does (convcost.latency.measure): a slow phase of a shared host spoils
one sample of every graph, not every sample of one.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convcost.latency.layouts import ADDED_OPS
from convcost.latency.load import LoadMonitor
from convcost.util.errors import UsageError

_SERIAL = itertools.count()
#: Kernels onnxruntime inserts to change layout (NCHW <-> NCHWc) or device: no node of the model.
INSERTED_OPS = ADDED_OPS | {"MemcpyToHost", "MemcpyFromHost"}
INSTALL_HINT = "pip install 'convcost[ort]'"


def import_ort() -> Any:
    """onnxruntime, or a one-line usage error (exit 2) saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(f"--runtime onnxruntime needs onnxruntime, which is not installed; {INSTALL_HINT}") \
            from None
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


def ort_version() -> str:
    return str(import_ort().__version__)


def runtime_info(threads: int) -> dict[str, Any]:
    """The `runtime:` mapping of a profile these sessions describe."""
    return {"name": "onnxruntime", "version": ort_version(), "threads": threads, "provider": "CPUExecutionProvider"}


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
          "tensor(bool)": np.bool_}


@dataclass
class Session:
    """An onnxruntime session with random inputs ready to feed."""

    sess: Any
    feeds: dict[str, np.ndarray]
    profiling: bool = False
    #: Runs back to back per round where the timing has bursts (`OrtTiming.burst`): 1 keeps every
    #: visit cold (a layer whose weights a model reads once per run, as a classifier's).
    burst: int | None = None
    events: dict[str, list[float]] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)
    #: Per run so far (warm-up included), whether it is a sample: `node_medians` keeps those runs'
    #: profiler events.
    sampled: list[bool] = field(default_factory=list)
    #: Arrays the session reads in place (external initializers' data): alive as long as it is.
    keep: tuple[np.ndarray, ...] = ()

    def run(self, sample: bool = False) -> object:
        self.sampled.append(sample)
        return self.sess.run(None, self.feeds)

    def kernel_ms(self) -> dict[str, list[float]]:
        """Node name -> its kernel time in every profiled run, in ms (ends profiling on first call)."""
        if self.profiling and not self.events:
            path = self.sess.end_profiling()
            try:
                events = json.loads(Path(path).read_text())
            finally:
                Path(path).unlink(missing_ok=True)
            for e in events:
                if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                    name = e["name"][: -len("_kernel_time")]
                    self.events.setdefault(name, []).append(e["dur"] / 1e3)
                    self.ops[name] = e.get("args", {}).get("op_name", "")
        return self.events


_GLOBAL_POOL: list[int] = []


def share_threads(threads: int) -> None:
    """Make every later session of this process share one pool of `threads` intra-op threads.

    A calibration keeps hundreds of small sessions; each with a pool of its own leaves hundreds of
    threads spinning after their runs, which slows every other session's kernels several times over
    on a small machine. One shared pool is what a single model's session has. Only before the
    process's first session (onnxruntime makes its environment then)."""
    if _GLOBAL_POOL:
        if _GLOBAL_POOL[0] != threads:
            raise RuntimeError(f"the shared pool has {_GLOBAL_POOL[0]} threads already")
        return
    from onnxruntime.capi import _pybind_state

    import_ort()
    _pybind_state.set_global_thread_pool_sizes(threads, 1)
    _GLOBAL_POOL.append(threads)


def set_threads(so: Any, threads: int) -> None:
    """Give session options `threads` intra-op threads, or the process's shared pool where there is one
    (onnxruntime refuses a session with a pool of its own once a global one exists)."""
    if _GLOBAL_POOL:
        so.use_per_session_threads = False
    elif threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1


def make_session(model: Any, threads: int, *, profiling: bool = False, shapes: Mapping[str, tuple[int, ...]] = {},
                 optimized_path: str | None = None, seed: int = 0, fill: float | None = None,
                 weights: Mapping[str, np.ndarray] = {}) -> Session:
    """A CPU session with `threads` intra-op threads, sequential execution and the default (all)
    graph optimizations; `model` is a ModelProto, bytes or a path. Inputs are random at their
    declared shapes, or at `shapes` where given (a symbolic dim needs it); or all `fill` (quick to
    make for a large input). `weights` hold the data of initializers the model keeps outside it."""
    ort = import_ort()
    so = ort.SessionOptions()
    set_threads(so, threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if profiling:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"convcost-ort-{os.getpid()}-{next(_SERIAL)}")
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    if weights:
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
        so.add_external_initializers(list(weights), values)
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    sess = ort.InferenceSession(data if isinstance(data, bytes) else str(data), so,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for i in sess.get_inputs():
        shape = shapes.get(i.name) or tuple(d if isinstance(d, int) else 1 for d in i.shape)
        dtype = _NUMPY.get(i.type, np.float32)
        if fill is not None:
            feeds[i.name] = np.full(shape, fill, dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[i.name] = np.zeros(shape, np.bool_)
        else:
            feeds[i.name] = np.zeros(shape, dtype)
    return Session(sess, feeds, profiling, keep=tuple(weights.values()))


#: The run of each visit to a probe graph that calibrate samples (0: the first). The first run after
#: a hundred other graphs finds the probe's data cold; the second still finds part of it out of
#: cache (an attention product: 0.20 ms, then 0.11); from the third or fourth on the kernel runs as
#: it does where its data stayed in cache (0.099 ms, as inside a small model). Models whose data does
#: not stay in cache move their memory traffic slower than that: the profile's footprint figures
#: (convcost.latency.footprint) say by how much, against this same run.
SAMPLED_RUN = 3


@dataclass(frozen=True)
class OrtTiming:
    """Warm-up runs, then at least `repeats` interleaved rounds, and more until `span_s` seconds."""

    warmup: int = 3
    repeats: int = 7
    span_s: float = 0.0
    #: The most rounds a span may take (a tiny graph would otherwise be sampled 10^5 times).
    max_rounds: int = 2000
    #: Runs of a session back to back per round: 1 for a whole model; more for a probe graph, whose
    #: later runs find their input and weights in cache as a layer of a model run in a loop does.
    burst: int = 1
    #: Runs at the start of each burst that are not sampled (the first finds its data cold); only
    #: where the session's burst is longer.
    settle: int = 0


@dataclass
class Timed:
    """Wall milliseconds of every sampled run, per session; how busy other processes were."""

    ms: list[list[float]]
    others: float | None
    rounds: int

    def medians(self) -> list[float]:
        return [statistics.median(s) for s in self.ms]


def time_sessions(sessions: list[Session], timing: OrtTiming,
                  tick: Callable[[int, int], None] | None = None) -> Timed:
    """Warm each session up, then sample one run of each per round until the span is filled."""
    monitor = LoadMonitor()
    for s in sessions:
        for _ in range(timing.warmup):
            s.run()
    samples: list[list[float]] = [[] for _ in sessions]
    started = time.monotonic()
    rounds, planned = 0, max(timing.repeats, 1)
    while rounds < planned:
        for i, s in enumerate(sessions):
            burst = s.burst or timing.burst
            settle = timing.settle if burst > timing.settle else 0
            for j in range(burst):
                t0 = time.perf_counter()
                s.run(sample=j >= settle)
                if j >= settle:
                    samples[i].append((time.perf_counter() - t0) * 1e3)
        rounds += 1
        if timing.span_s > 0:
            elapsed = max(time.monotonic() - started, 1e-6)
            left = max(timing.span_s - elapsed, 0.0)
            planned = max(timing.repeats, min(rounds + int(left * rounds / elapsed), timing.max_rounds))
        if tick:
            tick(rounds, planned)
    return Timed(samples, monitor.others(), rounds)


def node_medians(session: Session, warmup: int) -> dict[str, float]:
    """Median kernel ms per node over the sampled runs (`Session.sampled`), or, for a node that did
    not run once per run, over its runs after the first `warmup`."""
    out = {}
    for name, durs in session.kernel_ms().items():
        if len(durs) == len(session.sampled):
            kept = [d for d, sampled in zip(durs, session.sampled, strict=True) if sampled]
        else:
            kept = durs[warmup:]
        out[name] = statistics.median(kept or durs)
    return out
