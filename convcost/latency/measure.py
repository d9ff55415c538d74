"""Time convs and matrix multiplies with torch on this machine: what `calibrate` and `bench` share.

Imports torch at module level, so only those two commands import this module (lazily).
Every op runs on random data at exactly the shapes convcost prices; a chain of ops (a variant's
stages) runs back to back, each stage's output feeding the next, as it would in the model.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convcost.ir.model import Conv, MatMul, Op
from convcost.latency.load import LoadMonitor
from convcost.util.errors import InputError

__all__ = ["LoadMonitor", "Measured", "Timing", "measure_many", "runner", "steady_allocator", "step"]

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

Step = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Timing:
    """How hard to measure: warm-up calls, timed samples (median taken), least time per sample."""

    warmup: int = 2
    repeats: int = 7
    min_sample_s: float = 0.002
    round_s: float = 1.0  # functions sampled per round: about this many seconds' worth...
    round_items: int = 48  # ...and no more than this many, so oneDNN's primitive cache holds them all
    busy_limit: float = 0.1  # retake a round if other processes used more of the CPU than this
    #: "wall" (perf_counter) or "thread" (this thread's CPU time: immune to other processes, but
    #: right only when torch computes in the calling thread, i.e. torch.set_num_threads(1)).
    clock: str = "wall"
    #: One call per sample instead of repeating a call for `min_sample_s`. Between two calls of a
    #: function the rest of its round runs, so its weights and input are no longer in cache: the
    #: state a layer finds inside a model. Repeated calls measure a warm layer, which is up to 20%
    #: faster for memory-bound ones (depthwise) than the same layer run back to back in a model.
    cold: bool = False
    #: Keep sampling (whole passes over every function, past `repeats`) until this many seconds have
    #: gone by. A shared host's speed drifts: on the reference VM the same convs ran 5% slower for a
    #: minute, then 7% faster for half a minute (depthwise ones +-20%), in this thread's own CPU
    #: time. A median over samples spread across a minute is the machine's typical speed; one over
    #: 10 seconds is whatever phase those seconds fell in.
    span_s: float = 0.0
    #: The most passes a span may take (None: 100 x repeats, which keeps a sweep of tiny ops from
    #: sampling each 10^5 times; bench lifts it so that --seconds is honoured).
    max_passes: int | None = None


def steady_allocator() -> bool:
    """Keep freed memory in the process (glibc: no mmap, no trimming) so timings are repeatable.

    With glibc's defaults a tensor over ~128 KiB may be mmapped afresh on every call and pay a
    page fault per 4 KiB, a cost that comes and goes with the allocator's history (up to 4x on
    a 112x112 depthwise layer here). PyTorch's CPU tuning guide recommends a caching allocator
    (jemalloc, tcmalloc) for inference for the same reason. Returns False where not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    except (OSError, AttributeError):
        return False


def torch_dtype(dtype: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[dtype]
    except KeyError:
        supported = ", ".join(TORCH_DTYPES)
        raise InputError(f"cannot measure {dtype} ops with torch here (it measures {supported})") from None


def _conv_step(conv: Conv, dt: torch.dtype) -> tuple[Step, tuple[int, ...]]:
    """A callable running `conv` on an input of the shape it returns (pre-padded if pads differ)."""
    r = conv.rank
    begin, end = conv.padding[:r], conv.padding[r:]
    bias = torch.randn(conv.out_channels, dtype=dt) if conv.bias else None
    if conv.op == "ConvTranspose":
        w = torch.randn(conv.in_channels, conv.out_channels // conv.groups, *conv.kernel, dtype=dt)
        fn_t = _CONV_T[r]
        # torch pads symmetrically; an asymmetric pad is priced with its begin side on both.
        def run_t(x: torch.Tensor) -> torch.Tensor:
            return fn_t(x, w, bias, conv.stride, begin, conv.output_padding, conv.groups, conv.dilation)

        return run_t, conv.input_shape
    w = torch.randn(conv.out_channels, conv.in_channels // conv.groups, *conv.kernel, dtype=dt)
    fn = _CONV[r]
    if begin == end:
        def run(x: torch.Tensor) -> torch.Tensor:
            return fn(x, w, bias, conv.stride, begin, conv.dilation, conv.groups)

        return run, conv.input_shape
    pad = [p for axis in reversed(range(r)) for p in (begin[axis], end[axis])]

    def run_padded(x: torch.Tensor) -> torch.Tensor:
        return fn(F.pad(x, pad), w, bias, conv.stride, 0, conv.dilation, conv.groups)

    return run_padded, conv.input_shape


def _matmul_step(mm: MatMul, dt: torch.dtype) -> tuple[Step, tuple[int, ...]]:
    if mm.params:  # a layer with a constant weight: (batch*m, k) @ (k, n)
        w = torch.randn(mm.n, mm.k, dtype=dt)
        b = torch.randn(mm.n, dtype=dt) if mm.params > mm.k * mm.n else None
        return (lambda x: F.linear(x, w, b)), (mm.batch * mm.m, mm.k)
    other = torch.randn(mm.batch, mm.k, mm.n, dtype=dt)
    return (lambda x: torch.bmm(x, other)), (mm.batch, mm.m, mm.k)


def step(op: Op, dtype: str = "float32") -> tuple[Step, tuple[int, ...]]:
    dt = torch_dtype(op.dtype if op.dtype in TORCH_DTYPES else dtype)
    return _conv_step(op, dt) if isinstance(op, Conv) else _matmul_step(op, dt)


def runner(ops: Sequence[Op], dtype: str = "float32", chained: bool = True) -> Callable[[], object]:
    """One callable running `ops` in order on random data.

    `chained`: each op takes the previous one's output (a variant's stages); otherwise every op
    gets its own input (a model's layers timed as a sequence, branches and all).
    """
    steps = [step(op, dtype) for op in ops]
    dt = torch_dtype(dtype)
    if chained:
        first, shape = steps[0]
        x0 = torch.randn(shape, dtype=dt)
        fns = [s for s, _ in steps]

        def run_chain() -> object:
            x = x0
            for fn in fns:
                x = fn(x)
            return x

        return run_chain
    pairs = [(fn, torch.randn(shape, dtype=dt)) for fn, shape in steps]

    def run_each() -> object:
        out = None
        for fn, x in pairs:
            out = fn(x)
        return out

    return run_each


def _calls_per_sample(fn: Callable[[], object], timing: Timing) -> tuple[int, float]:
    """Warm up; return how many calls make one sample (1 when cold), and the seconds it takes."""
    for _ in range(max(timing.warmup, 1)):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = 1 if timing.cold else max(1, int(timing.min_sample_s / once))
    return calls, calls * once


@dataclass
class Measured:
    """Median milliseconds per function, and how busy the machine was meanwhile."""

    ms: list[float]
    others: float | None  # share of CPU time other processes used during the kept rounds
    rounds_dropped: int  # rounds taken again because another process was busy
    passes: int = 0  # samples each function got


def _chunks(costs: Sequence[float], seconds: float, most: int) -> list[range]:
    """Consecutive index ranges whose estimated round time stays under `seconds` (and `most` items)."""
    out, start, acc = [], 0, 0.0
    for i, c in enumerate(costs):
        if acc and (acc + c > seconds or i - start >= most):
            out.append(range(start, i))
            start, acc = i, 0.0
        acc += c
    if start < len(costs):
        out.append(range(start, len(costs)))
    return out


def measure_many(
    fns: Sequence[Callable[[], object]], timing: Timing | None = None,
    tick: Callable[[int, int], None] | None = None,
) -> Measured:
    """Median milliseconds per call of each function, sampled in interleaved rounds.

    Functions are taken in chunks of about a second (and a few dozen functions, which oneDNN's
    cache of compiled kernels holds); a round samples every function of its chunk once, and a
    pass takes one round of every chunk. Passes repeat `timing.repeats` times, and more until
    `timing.span_s` seconds have gone by, so each function's samples are spread over the whole
    measurement rather than bunched in a few seconds of it: a burst of load from another process,
    or a slow phase of the host, spoils one sample of many functions rather than all samples of
    one. A round during which other processes took more than `timing.busy_limit` of the CPU is
    taken again (at most `timing.repeats` extra times per chunk), and the median is over the kept
    rounds. `tick(done, total)` counts rounds.
    """
    timing = timing or Timing()
    clock = time.thread_time if timing.clock == "thread" else time.perf_counter
    repeats = max(timing.repeats, 1)
    samples: list[list[float]] = [[] for _ in fns]
    busy: list[float] = []
    dropped = 0
    with torch.inference_mode():
        calls, costs = zip(*(_calls_per_sample(fn, timing) for fn in fns), strict=True) if fns else ((), ())
        chunks = _chunks(costs, timing.round_s, timing.round_items)
        retries = [0] * len(chunks)
        started: float | None = None  # the span counts from the first pass's first call
        passes, planned, done = 0, repeats, 0

        def take(chunk: range) -> tuple[list[float], float | None]:
            """One round: each function of `chunk` sampled once; and how busy other processes were."""
            nonlocal started
            monitor = LoadMonitor()
            row = []
            if started is None:
                started = time.monotonic()
            for i in chunk:
                fn, n = fns[i], calls[i]
                start = clock()
                for _ in range(n):
                    fn()
                row.append((clock() - start) / n)
            return row, monitor.others()

        def spoiled(others: float | None) -> bool:
            return others is not None and others > timing.busy_limit and timing.clock == "wall"

        while chunks and passes < planned:
            for c, chunk in enumerate(chunks):
                row, others = take(chunk)
                while spoiled(others) and retries[c] < repeats:
                    retries[c] += 1
                    dropped += 1
                    row, others = take(chunk)
                if others is not None:
                    busy.append(others)
                for i, t in zip(chunk, row, strict=True):
                    samples[i].append(t)
                done += 1
                if tick:
                    tick(done, planned * len(chunks))
            passes += 1
            if timing.span_s > 0 and started is not None:
                # How many passes fill the span at the pace so far; planned again after every pass,
                # as the first is often the slowest (planning on it alone ended spans early).
                elapsed = max(time.monotonic() - started, 1e-6)
                left = max(timing.span_s - elapsed, 0.0)
                cap = timing.max_passes or 100 * repeats
                planned = max(repeats, min(passes + math.ceil(left * passes / elapsed), cap))
    return Measured([1e3 * statistics.median(s) for s in samples],
                    statistics.fmean(busy) if busy else None, dropped, passes)
