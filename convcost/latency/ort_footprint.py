"""The footprint part of `calibrate --runtime onnxruntime`: how much faster or slower an op's memory
traffic moves inside a model that touches a given number of megabytes per run than in the sweep
(convcost.latency.footprint says why it differs).

For each op family, and for a depthwise conv, two graphs (ort_graphs.footprint_probes): the op
alone, timed as the sweep times it -- on the run of a visit the sweep samples (ort_run.SAMPLED_RUN),
after a graph touching far more than any cache holds -- and the op with its input written by a 1x1
conv just before, timed on its first run after a graph touching FOOTPRINT_MB megabytes, as the rest
of a model of that footprint would. The share is the second time over the first, at each footprint.

Weights (footprint.ColdWeights): a weight-heavy conv alone, timed as the sweep times it, and the
same conv inside chains of such convs (ort_graphs.weight_chain), each with weights of its own; per
chain, its run time and what each megabyte of weights adds there.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from convcost.latency.load import free_bytes
from convcost.latency.ort_graphs import (
    COLD_CHAINS,
    COLD_CONV,
    FOOTPRINT_MB,
    FootprintProbe,
    chain_weights,
    footprint_probes,
    rest_of_model,
    weight_chain,
)
from convcost.latency.ort_run import SAMPLED_RUN, Session, make_session

#: Runs of each session before any is timed (buffers allocated, kernels prepared).
WARMUP = 2
#: The ColdTimes key of the probe conv alone (a chain of one, timed as the sweep times it).
ALONE = "1"


@dataclass
class FootprintTimes:
    """Per key (family or conv): (megabytes, share) points, and the times they come from in us."""

    shares: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    us: dict[str, dict[str, float]] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)  # key -> the op type timed


@dataclass
class ColdTimes:
    """Per chain length: (chain run ms, us per MB of weights), and the times they come from in us."""

    chains: dict[str, tuple[float, float]] = field(default_factory=dict)
    us: dict[str, dict[str, float]] = field(default_factory=dict)
    weight_mb: float = 0.0  # the probe conv's weights

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """(run ms, us per MB) points, sorted by run time (footprint.ColdWeights)."""
        return tuple(sorted(self.chains.values()))


def _sampled(session: Session, flush: Session, repeats: int, sampled_run: int, op: str, bias: float) -> float:
    """The median time of `op`'s kernel on the sampled run of visits that each follow `flush`."""
    for _ in range(WARMUP):  # a session's first runs allocate its buffers
        session.run()
    visit = sampled_run + 1
    for _ in range(repeats):
        flush.run()
        for _ in range(visit):
            session.run()
    return statistics.median(_op_ms(session, op, bias)[WARMUP + sampled_run::visit])


def _fitting(sizes: tuple[float, ...]) -> tuple[float, ...]:
    """The footprints whose graph (input and output) needs at most an eighth of the free memory; the first always."""
    return tuple(mb for i, mb in enumerate(sizes) if i == 0 or mb * 1e6 * 2 <= free_bytes() / 8)


def _op_ms(session: Session, op: str, bias: float) -> list[float]:
    """The kernel times of `op`'s node in every run so far, less the profiler's bias."""
    events = session.kernel_ms()
    name = [n for n in events if session.ops.get(n) == op][-1]  # the last: a conv probe's producer is a Conv too
    return [max(ms - bias, 1e-6) for ms in events[name]]


def _chain_session(length: int, channels: int, side: int, threads: int, weights: dict[str, np.ndarray]) -> Session:
    model, used = weight_chain(length, channels, side, weights)
    return make_session(model, threads, profiling=True, weights=used)


def _runs_op(probe: FootprintProbe, threads: int) -> bool:
    """Whether onnxruntime runs the probed op as a kernel of its own after the producer (not fused)."""
    s = make_session(probe.produced, threads, profiling=True)
    s.run()
    s.kernel_ms()
    return probe.op in s.ops.values()


def rest_sessions(threads: int, sizes: tuple[float, ...] = FOOTPRINT_MB) -> dict[float, Session]:
    """The graphs standing for the rest of a model at each footprint of `sizes` that fits in an eighth of
    the free memory, made once for measure_footprint and measure_cold_weights (the largest is the
    flush both time the sweep's conditions after)."""
    return {mb: make_session(rest_of_model(mb), threads, fill=1.0) for mb in _fitting(sizes)}


def measure_footprint(threads: int, repeats: int, sizes: tuple[float, ...] = FOOTPRINT_MB,
                      bias: float = 0.0, sampled_run: int = SAMPLED_RUN,
                      rests: dict[float, Session] | None = None) -> FootprintTimes:
    """Time every footprint probe (medians of at least 5 runs); footprints needing more than an eighth
    of the free memory are left out. `sampled_run` is the run of each visit the sweep samples;
    `rests` are rest_sessions(threads, sizes) where the caller has them."""
    repeats = max(repeats, 5)
    rests = rests or rest_sessions(threads, sizes)
    sizes = tuple(rests)
    flush = rests[sizes[-1]]
    out = FootprintTimes()
    for probe in footprint_probes():
        if probe.key in out.shares or not _runs_op(probe, threads):
            continue
        alone = make_session(probe.alone, threads, profiling=True)
        produced = make_session(probe.produced, threads, profiling=True)
        for _ in range(WARMUP):
            produced.run()
        sweep = _sampled(alone, flush, repeats, sampled_run, probe.op, bias)
        for mb in sizes:
            for _ in range(repeats):
                rests[mb].run()
                produced.run()
        times = _op_ms(produced, probe.op, bias)[WARMUP:]
        inside = [statistics.median(times[i * repeats: (i + 1) * repeats]) for i in range(len(sizes))]
        out.shares[probe.key] = tuple((mb, ms / sweep) for mb, ms in zip(sizes, inside, strict=True))
        out.us[probe.key] = {"sweep": round(sweep * 1e3, 2),
                             **{f"{mb:g}": round(ms * 1e3, 2) for mb, ms in zip(sizes, inside, strict=True)}}
        out.ops[probe.key] = probe.op
    return out


def measure_cold_weights(threads: int, repeats: int, bias: float = 0.0, sampled_run: int = SAMPLED_RUN,
                         lengths: tuple[int, ...] = COLD_CHAINS, conv: tuple[int, int] = COLD_CONV,
                         sizes: tuple[float, ...] = FOOTPRINT_MB, flush: Session | None = None) -> ColdTimes:
    """Time the weight-heavy conv alone as the sweep does (each visit after a graph touching the
    largest of `sizes` that fits, as measure_footprint's; `flush` where the caller has it): the point
    of a chain of 1, where weights add nothing; then inside each chain (medians of at least 5 runs, over
    the chain's convs); chains needing more than an eighth of the free memory are left out."""
    repeats = max(repeats, 5)
    channels, side = conv
    mb = channels * channels * 9 * 4 / 1e6
    flush = flush or make_session(rest_of_model(_fitting(sizes)[-1]), threads, fill=1.0)
    fits = [n for i, n in enumerate(lengths) if i == 0 or n * mb * 1e6 * 2 <= free_bytes() / 8]
    weights = chain_weights(max(fits), channels)  # each chain reads the first of them
    sweep = _sampled(_chain_session(1, channels, side, threads, weights), flush, repeats, sampled_run, "Conv",
                     bias)
    out = ColdTimes(weight_mb=mb)
    # The conv alone is a chain of one whose run is the sweep's: its weights add nothing there by
    # definition. Below the shortest chain the figure falls from that chain's towards this one (a
    # model that runs as long as one conv finds its weights where the sweep's probe does).
    us = round(sweep * 1e3, 2)
    out.chains[ALONE] = (sweep, 0.0)
    out.us[ALONE] = {"sweep": us, "inside": us, "run": round(sweep * 1e3)}
    for n in fits:
        chain = _chain_session(n, channels, side, threads, weights)
        for _ in range(WARMUP + repeats):
            chain.run()
        per_node = [statistics.median(max(ms - bias, 1e-6) for ms in times[WARMUP:])
                    for name, times in chain.kernel_ms().items() if chain.ops.get(name) == "Conv"]
        inside, run_ms = statistics.median(per_node), sum(per_node)
        out.chains[str(n)] = (run_ms, max(0.0, (inside - sweep) * 1e3 / mb))
        out.us[str(n)] = {"sweep": us, "inside": round(inside * 1e3, 2), "run": round(run_ms * 1e3)}
        del chain  # its packed weights go before the next chain's are made
    return out
