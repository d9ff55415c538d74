"""What `convcost apply` puts in place of each conv: the variant, its options and its weights.

Format-independent: each selected conv gets a `Replacement` (the variant's plan, the SVD-optimal
stage weights from `variants.factorize`, the error analyze reports for it and what the stages
cost), or a reason it is left as it is. The writers (`convcost.export`) put the stages into an
ONNX graph or a PyTorch module; `predicted_totals` says what the rewritten model must cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from convcost.analysis.result import Analysis, Device, Settings, Totals
from convcost.cost import Cost, cost_of
from convcost.ir.model import Conv, Model
from convcost.util.errors import InputError, UsageError
from convcost.variants import VARIANTS, Plan, VariantOptions, plan_variant

if TYPE_CHECKING:
    import numpy as np

    from convcost.analysis.planfile import PlanFile


@dataclass(frozen=True)
class Choice:
    """One conv's replacement as chosen: a variant and the options it is planned with."""

    variant: str
    options: VariantOptions
    #: Keys that explain the options (`--rank auto`: rank, tol, break_even_rank), reported as is.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The grouped variant with the channel permutation heuristic (`approx_error_permuted`).
    permute: bool = False


@dataclass
class Replacement:
    """A conv, the stages that replace it and their weights (each in its op's own layout)."""

    conv: Conv
    variant: str
    options: VariantOptions
    plan: Plan
    stages: list[np.ndarray]
    #: analyze's `approx_error`: the variant's optimal error, from the same code path.
    approx_error: float
    #: ‖W − Ŵ‖/‖W‖ of the kernel the stage weights compose to (equal to approx_error to ~1e-9).
    weight_error: float
    cost: Cost
    stage_costs: list[Cost]
    #: The numpy dtype the conv's weight has in the model; the stage weights are written in it.
    weight_dtype: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: With the channel permutation: the stages read `x[:, perm_in]`, and their output channel j is
    #: the conv's channel `perm_out[j]` (None: channels in their order).
    perm_in: np.ndarray | None = None
    perm_out: np.ndarray | None = None
    #: How a writer realized the permutation: {"input": ..., "output": ...} (folded into a neighbour, or
    #: an explicit Gather), and the bytes the Gathers move.
    permutation: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter(self) -> tuple[str, int]:
        """The option that sizes the variant (rank, depth_multiplier or groups) and its value."""
        key = parameter_key(self.variant)
        value = getattr(self.options, key)
        if value is None:  # the spatial rank's default: C_out
            value = self.conv.out_channels
        return key, int(value)


@dataclass(frozen=True)
class Kept:
    """A selected conv that stays as it is, and why."""

    conv: Conv
    variant: str
    reason: str


def parameter_key(variant: str) -> str:
    """The `VariantOptions` field that sizes a variant: its rank field, else `groups`."""
    return VARIANTS[variant].rank_field or "groups"


def build(conv: Conv, choice: Choice, dtype: str = "float32") -> Replacement | Kept:
    """The replacement of `conv` by `choice`: plan, weights and error; Kept with the reason where it
    cannot be built (the plan does not apply, the weight is not a constant)."""
    import numpy as np

    from convcost.variants import factorize
    from convcost.variants.spectra import LayerSpectra, group_major

    plan = plan_variant(choice.variant, conv, choice.options)
    if not plan.applicable:
        return Kept(conv, choice.variant, plan.reason or "not applicable")
    if conv.weight is None:
        return Kept(conv, choice.variant, "its weight is not a constant in the model; nothing to factorize")
    weight = conv.weight()
    if not np.issubdtype(weight.dtype, np.floating):
        return Kept(conv, choice.variant, f"its weight is {weight.dtype}, not a float tensor")
    if conv.dtype == "int8":
        return Kept(conv, choice.variant, "a quantized (int8) conv: factorize the float model, then quantize it")
    spectra = LayerSpectra(conv, group_major(conv, weight))
    permute = choice.permute and choice.variant == "grouped"
    approx = VARIANTS[choice.variant].error(spectra, choice.options, permute)
    perm_in = perm_out = None
    if permute:
        from convcost.variants.permuted import permuted_grouped

        permuted = permuted_grouped(conv, weight, choice.options.groups)
        stages, kernel = [permuted.weight], permuted.kernel
        perm_in, perm_out = permuted.perm_in, permuted.perm_out
        error = approx.extra.get("approx_error_permuted")
    else:
        fac = factorize(choice.variant, conv, choice.options, weight)
        stages, kernel, error = list(fac.stages), fac.kernel, approx.error
    w = np.asarray(weight, dtype=np.float64)
    norm = float(np.linalg.norm(w))
    weight_error = float(np.linalg.norm(w - kernel)) / norm if norm > 0 else 0.0
    stage_costs = [cost_of(c, dtype) for c in plan.layers]
    extra = dict(choice.extra) | ({"permuted": True} if permute else {})
    return Replacement(conv, choice.variant, choice.options, plan, stages,
                       approx_error=error if error is not None else weight_error,
                       weight_error=weight_error, cost=sum(stage_costs, Cost()), stage_costs=stage_costs,
                       weight_dtype=weight.dtype, extra=extra, perm_in=perm_in, perm_out=perm_out)


def uniform_choices(model: Model, settings: Settings, variant: str,
                    options_for: Callable[[str, Conv, VariantOptions], tuple[VariantOptions, Mapping[str, Any]]]
                    | None = None, permute: bool = False) -> dict[str, Choice]:
    """`-V VARIANT`: the same variant for every conv --only/--skip select, with the command's options
    (or, with `--rank auto`, each layer's own rank from `options_for`)."""
    choices: dict[str, Choice] = {}
    for conv in model.convs:
        if not settings.selects(conv.name):
            continue
        if options_for is not None:
            options, extra = options_for(variant, conv, settings.options)
        else:
            options, extra = settings.options, {}
        choices[conv.name] = Choice(variant, options, dict(extra), permute)
    return choices


def plan_choices(model: Model, plan: PlanFile) -> dict[str, Choice]:
    """A plan file's choices, every layer it names checked against the model (bad input: exit 2)."""
    names = {c.name for c in model.convs}
    missing = [name for name in plan.layers if name not in names]
    if missing:
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"layer {missing[0]!r}{others} is not a conv of {model.source} "
                         f"(its convs: {_some([c.name for c in model.convs])})", plan.source)
    choices: dict[str, Choice] = {}
    for name, entry in plan.layers.items():
        if entry is None:
            continue
        variant, values = entry
        values = dict(values)
        permute = bool(values.pop("permute", False))
        choices[name] = Choice(variant, replace(VariantOptions(), **values), permute=permute)
    return choices


def _some(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def build_all(model: Model, choices: Mapping[str, Choice], dtype: str, strict: bool,
              tick: Callable[[int, int], None] | None = None) -> tuple[list[Replacement], list[Kept]]:
    """Replacements for every chosen conv, in model order. `strict` (a plan file names each layer):
    a choice that cannot be built is bad input rather than a layer kept."""
    done: list[Replacement] = []
    kept: list[Kept] = []
    chosen = [c for c in model.convs if c.name in choices]
    for i, conv in enumerate(chosen):
        found = build(conv, choices[conv.name], dtype)
        if isinstance(found, Kept):
            if strict:
                choice = choices[conv.name]
                key = parameter_key(choice.variant)
                raise InputError(f"layer {conv.name!r}: {choice.variant} with {key}="
                                 f"{getattr(choice.options, key)} cannot be built: {found.reason}", model.source)
            kept.append(found)
        else:
            done.append(found)
        if tick:
            tick(i + 1, len(chosen))
    return done, kept


def predicted_totals(analysis: Analysis, replacements: Sequence[Replacement],
                     devices: Sequence[Device] = ()) -> Totals:
    """What the rewritten model costs by the cost model: the original's totals, each replaced conv's
    cost (and latency on each of the analysis's devices) swapped for its stages'."""
    by_name = {layer.conv.name: layer for layer in analysis.layers}
    params, macs = analysis.totals.params, analysis.totals.macs
    latency = dict(analysis.totals.latency)
    dtype = analysis.settings.dtype
    devices = [d.for_model(analysis.model.nodes, dtype, analysis.model.convs, analysis.model.matmuls) for d in devices]
    for r in replacements:
        layer = by_name[r.conv.name]
        params += r.cost.params - layer.cost.params
        macs += r.cost.macs - layer.cost.macs
        for d in devices:
            if d.name in latency:
                latency[d.name] += sum(d.estimate(c, dtype).ms for c in r.plan.layers) - layer.latency[d.name].ms
    return Totals(params, macs, latency)


def require_weights(model: Model, what: str) -> None:
    """`what` needs trained weights; a model without any (a YAML spec) is a usage error."""
    if not any(c.weight for c in model.convs):
        raise UsageError(f"{what} needs trained weights (ONNX initializers or PyTorch parameters); "
                         f"this model has none", source=model.source)
