"""`convcost bench`: run every conv and its variants here with torch, beside the estimates.

Each conv runs alone on random data of its shapes; each variant runs its stages back to back
(the intermediate activation really is written and read); the whole model runs all convs and
matrix multiplies in order. All of them are sampled in interleaved rounds (convcost.latency.measure).
Imports torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from convcost.analysis.analyzer import analyze
from convcost.analysis.pipeline import hooks
from convcost.analysis.result import Analysis, Settings
from convcost.analysis.result import relative_error as error
from convcost.ir.model import Model
from convcost.latency.devices import DeviceProfile
from convcost.latency.kinds import op_kind
from convcost.latency.measure import Measured, Timing, measure_many, runner, steady_allocator
from convcost.util.progress import Tick


@dataclass
class VariantBench:
    measured_ms: float
    estimated_ms: float
    baseline_ms: float | None = None  # time-proportional-to-MACs estimate

    @property
    def error(self) -> float:
        return error(self.estimated_ms, self.measured_ms)


@dataclass
class LayerBench:
    name: str
    kind: str
    macs: int
    measured_ms: float
    estimated_ms: float
    bound: str
    baseline_ms: float | None = None
    variants: dict[str, VariantBench] = field(default_factory=dict)

    @property
    def error(self) -> float:
        return error(self.estimated_ms, self.measured_ms)

    def sign_right(self, name: str, baseline: bool = False) -> bool:
        """Whether the estimate says 'faster' exactly when the measurement does."""
        v = self.variants[name]
        if baseline:
            assert v.baseline_ms is not None and self.baseline_ms is not None
            return (v.measured_ms < self.measured_ms) == (v.baseline_ms < self.baseline_ms)
        return (v.measured_ms < self.measured_ms) == (v.estimated_ms < self.estimated_ms)


@dataclass
class BenchResult:
    model: Model
    device: DeviceProfile
    threads: int
    clock: str
    layers: list[LayerBench]
    whole_measured_ms: float
    whole_estimated_ms: float
    whole_baseline_ms: float | None
    others: float | None
    rounds_retaken: int
    #: Whether the whole model is its real forward pass (else its convs and matmuls back to back).
    forward_pass: bool = False
    #: Samples each op got (the span of --seconds divided into passes over every op).
    passes: int = 0

    @property
    def whole_error(self) -> float:
        return error(self.whole_estimated_ms, self.whole_measured_ms)

    def pairs(self) -> list[tuple[LayerBench, str]]:
        return [(layer, name) for layer in self.layers for name in layer.variants]

    def summary(self, baseline: bool = False) -> dict[str, float | int | None]:
        """Share of layers within 25%, share of right speed-up signs, median |error|, whole-model error."""
        if baseline and self.whole_baseline_ms is None:
            return {}
        errs = [error(layer.baseline_ms, layer.measured_ms) if baseline and layer.baseline_ms is not None
                else layer.error for layer in self.layers]
        pairs = self.pairs()
        signs = [layer.sign_right(name, baseline) for layer, name in pairs]
        whole = error(self.whole_baseline_ms, self.whole_measured_ms) if baseline and self.whole_baseline_ms \
            else self.whole_error
        return {
            "layers": len(errs),
            "layers_within_25pct": sum(abs(e) <= 0.25 for e in errs),
            "median_abs_error": statistics.median(abs(e) for e in errs) if errs else None,
            "variant_pairs": len(signs),
            "signs_right": sum(signs),
            "whole_model_error": whole,
        }


def bench_runners(analysis: Analysis) -> tuple[list[Callable[[], object]], bool]:
    """What bench times for an analysed model, in `_slots` order: each conv alone, each applicable
    variant's stages back to back, and last the whole model: its real forward pass where torch runs
    the format (a spec's module, TorchScript, a module:factory, a .pt2), else every conv and
    matrix multiply in order. The flag says which."""
    from convcost.latency.measure import torch_dtype
    from convcost.loaders.pytorch.runnable import forward_call, runnable

    dtype, layers, model = analysis.settings.dtype, analysis.layers, analysis.model
    fns = [runner([layers[i].conv] if which is None else list(layers[i].variants[which].plan.layers), dtype)
           for i, which in _slots(analysis)]
    module = runnable(model)
    if module is not None:
        return [*fns, forward_call(model, module, torch_dtype(dtype))], True
    return [*fns, runner([*model.convs, *model.matmuls], dtype, chained=False)], False


def _slots(analysis: Analysis) -> list[tuple[int, str | None]]:
    """(layer index, None) for a conv, (layer index, variant name) for each variant with a cost."""
    return [(i, which) for i, layer in enumerate(analysis.layers)
            for which in (None, *(n for n, v in layer.variants.items() if v.cost is not None))]


def bench_result(analysis: Analysis, profile: DeviceProfile, measured: Measured, threads: int,
                 clock: str, forward_pass: bool = False) -> BenchResult:
    """Measured times (`bench_runners` order) beside the estimates `analysis` made on `profile`."""
    rate = profile.macs_per_ms
    layers = [
        LayerBench(layer.conv.name, op_kind(layer.conv), layer.cost.macs, math.nan,
                   layer.latency[profile.name].ms, layer.latency[profile.name].bound,
                   layer.cost.macs / rate if rate else None)
        for layer in analysis.layers
    ]
    slots = _slots(analysis)
    for (i, which), ms in zip(slots, measured.ms[:len(slots)], strict=True):
        if which is None:
            layers[i].measured_ms = ms
        else:
            v = analysis.layers[i].variants[which]
            assert v.cost is not None
            layers[i].variants[which] = VariantBench(ms, v.latency[profile.name].ms,
                                                     v.cost.macs / rate if rate else None)
    return BenchResult(
        model=analysis.model, device=profile, threads=threads, clock=clock, layers=layers,
        whole_measured_ms=measured.ms[len(slots)], whole_estimated_ms=analysis.totals.latency[profile.name],
        whole_baseline_ms=analysis.totals.macs / rate if rate else None,
        others=measured.others, rounds_retaken=measured.rounds_dropped, forward_pass=forward_pass,
        passes=measured.passes,
    )


def run_bench(model: Model, profile: DeviceProfile, settings: Settings | None = None,
              timing: Timing | None = None, tick: Tick | None = None) -> BenchResult:
    """Measure `model`'s convs, their variants and the whole model here; estimate them on `profile`.

    Variant options are picked per layer where the settings ask (`--rank auto`), as in `analyze`;
    the weight-based errors themselves are not needed here."""
    settings = settings or Settings()
    steady_allocator()
    if profile.threads:
        torch.set_num_threads(profile.threads)
    threads = torch.get_num_threads()
    clock = "thread" if profile.clock == "thread" and threads == 1 else "wall"
    base = timing or Timing()
    timing = replace(base, clock=clock, cold=True)  # as calibrate measures: each op cold, as inside a model
    _, options_for = hooks(settings)
    analysis = analyze(model, settings, [profile], options_for=options_for)
    fns, forward_pass = bench_runners(analysis)
    measured = measure_many(fns, timing, tick)
    return bench_result(analysis, profile, measured, threads, clock, forward_pass)
