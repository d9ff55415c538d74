"""How fast an op's memory traffic moves depends on how much memory the whole model touches per run.

`calibrate --runtime onnxruntime` times every probe graph on the fourth of four runs back to back,
after hundreds of other probes ran: by then the caches hold the probe's data. An op inside a model
finds its input just written by the op before it, and its other buffers and weights as the model's
last run left them: in cache where the model's weights and activations fit, cold where they do not.

The share differs by op. So a calibrated profile states, per op family and for conv kinds (CONV),
at a few footprints, the time an op's memory traffic takes there as a share of the sweep's
(`Footprint`; convcost.latency.ort_footprint measures it): on a 2-vCPU Xeon VM (2 MB of L2 per
core) at one thread, a broadcast Mul on a 64x56x56 map takes 29 us in the sweep, 1.5x that in a
model touching 8 MB per run and 4.2x in one touching 768 MB; a Concat 1.05x and 2.0x; a depthwise
conv 0.92x and 1.1x; a QuickGelu, bound by its arithmetic, 1.0x and 1.1x. A model's
estimates move its bytes at the family's (kind's) bandwidth divided by the share at the model's
footprint (`touched_mb`: its constants plus the most activation bytes live at once, the arena
onnxruntime reuses). Compute is not scaled: a conv that is compute-bound is so in either state.
Nor is the weight stream of a matrix-vector product (UNSCALED_KINDS): a model reads it one run
after the last time, as the sweep's probe does, or from memory on every run.

Weights follow time more than bytes (`ColdWeights`). A conv's or matmul's weights were last read
one model run earlier; in a model that runs a few milliseconds they are still in cache, in one that
runs 20 ms they are not, whatever either touches: the last-level cache is shared with the rest of
the machine. On the same VM at one thread, a 512 -> 512 3x3 conv on a 7x7 map (9.4 MB of weights)
takes 1.50 ms in the sweep, the same inside a chain of such convs that runs 6 ms, 1.05x inside one
that runs 12 ms and 1.16x inside one that runs 24 ms; inside ResNet-18 (21 ms) 1.15x. A calibrated
profile states, at a few run times, the microseconds each megabyte of weights adds there, the first
being the probe conv's own run time in the sweep, where they add nothing; a model's convs and matmuls
pay it at the model's own estimated run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convcost.cost.nodes import element_bytes
from convcost.ir.model import Node, Shape
from convcost.latency.kinds import COLD_KINDS

#: Kinds whose traffic the footprint does not scale. A matrix-vector product streams weights that a
#: model last read one run ago, as its probe finds them in the sweep (a classifier at the end of the
#: model); scaled by the conv share, ResNet-18's and EfficientNet's classifiers came out 45% and 29%
#: too fast at one thread. The large one's probes run cold on every visit anyway.
UNSCALED_KINDS = ("matvec", *COLD_KINDS)


#: The key of conv kinds' memory traffic in a Footprint (the other keys are op families).
CONV = "conv"


def _interpolate(points: tuple[tuple[float, float], ...], mb: float) -> float:
    if mb <= points[0][0]:
        return points[0][1]
    for (a, sa), (b, sb) in zip(points, points[1:], strict=False):
        if mb <= b:
            t = math.log(mb / a) / math.log(b / a)
            return sa + t * (sb - sa)
    return points[-1][1]


@dataclass(frozen=True)
class Footprint:
    """Per op family (and CONV for conv kinds): (megabytes a model run touches, time of the memory
    traffic there / in the calibration sweep) points, sorted by megabytes. Between two points the
    share is interpolated in log(megabytes); beyond the ends it is the end's; a family without
    points keeps the sweep's time (share 1)."""

    points: dict[str, tuple[tuple[float, float], ...]]

    def share(self, key: str, mb: float) -> float:
        pts = self.points.get(key)
        return _interpolate(pts, mb) if pts else 1.0


@dataclass(frozen=True)
class ColdWeights:
    """(run time of a model in ms, microseconds each megabyte (1e6 bytes) of a conv's or matmul's
    weights adds inside a model that runs that long) points, sorted by run time; interpolated in
    log(run time), the ends' figures beyond them."""

    points: tuple[tuple[float, float], ...]

    def us_per_mb(self, run_ms: float) -> float:
        return max(0.0, _interpolate(self.points, run_ms)) if self.points else 0.0


def _bytes(shape: Shape | None, dtype: str | None, analysis_dtype: str) -> int:
    return 0 if shape is None else math.prod(shape) * element_bytes(dtype, analysis_dtype)


def touched_mb(nodes: Sequence[Node], dtype: str = "float32") -> float:
    """Megabytes (1e6) one run of the model touches: every constant input (weights) once, and the
    most activation bytes live at one time (a tensor lives from the node that writes it to its
    last reader; the model's inputs from the start)."""
    weights: dict[str, int] = {}
    size: dict[str, int] = {}
    last: dict[str, int] = {}
    produced: set[str] = set()
    for i, node in enumerate(nodes):
        for j, (name, shape) in enumerate(zip(node.inputs, node.input_shapes, strict=False)):
            if j in node.constant:
                weights.setdefault(name, _bytes(shape, node.dtype, dtype))
            elif name:
                size.setdefault(name, _bytes(shape, node.dtype, dtype))
                last[name] = i
        for name, shape in zip(node.outputs, node.output_shapes, strict=False):
            size[name] = _bytes(shape, node.dtype, dtype)
            produced.add(name)
            last.setdefault(name, i)
    live = sum(size[t] for t in size if t not in produced)  # the model's inputs
    peak = live
    for i, node in enumerate(nodes):
        live += sum(size[t] for t in node.outputs)
        peak = max(peak, live)
        live -= sum(size[t] for t in set(node.inputs) | set(node.outputs) if t in last and last[t] == i)
    return (sum(weights.values()) + peak) / 1e6
