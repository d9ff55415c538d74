"""The variant interface and the registry every part of convcost looks variants up in.

A variant rebuilds one conv as a short list of ordinary convs (its `Plan`), so the cost model
prices it like any other conv and its cost always equals the sum of its parts. With a trained
weight, the same variant also knows the best kernel it can express: its optimal error and the
factors that reach it. This module imports no numpy; the weight-side methods import it when
they are first called.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from convcost.ir.model import Conv
from convcost.ir.shapes import ShapeError
from convcost.util.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from convcost.variants.spectra import Factorization, LayerSpectra


@dataclass(frozen=True)
class VariantOptions:
    """User knobs: `--rank` (None = C_out), `--depth-multiplier`, `--groups`.

    `tol` is set by `--rank auto --tol T`: the spatial rank and the depth multiplier are then
    picked per layer from its weights (see `convcost.variants.autorank`), and `rank` and
    `depth_multiplier` here are only the fallbacks for layers without weights.
    """

    rank: int | None = None
    depth_multiplier: int = 1
    groups: int = 4
    tol: float | None = None


@dataclass(frozen=True)
class Plan:
    """A variant of one conv: the replacement layers, or why there are none."""

    applicable: bool
    reason: str | None = None
    layers: tuple[Conv, ...] = ()

    @staticmethod
    def na(reason: str) -> Plan:
        return Plan(False, reason)


@dataclass(frozen=True)
class Approx:
    """An approximation error, with any further keys to report beside it (e.g. the grouped
    variant's `approx_error_permuted`)."""

    error: float | None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Variant(ABC):
    """One factorized replacement: its plan from a conv's shape, and its fit to a trained weight.

    `error`, `factorize` and `smallest_rank` are asked only for convs whose plan is applicable.
    A variant with a rank names the `VariantOptions` field that holds it in `rank_field`; that
    rank is what `--rank auto` picks per layer, in multiples of `rank_step`.
    """

    #: The name users select it by (`-V`) and the JSON key of its results.
    name: ClassVar[str]
    #: The `VariantOptions` field that is this variant's rank, or None for a variant without one.
    rank_field: ClassVar[str | None] = None
    #: The module that fits it to weights (numpy), imported by `error`/`factorize` on first use;
    #: `Approximator.preload` imports it before worker processes fork.
    fitting: ClassVar[str]

    @abstractmethod
    def plan(self, conv: Conv, options: VariantOptions) -> Plan:
        """The convs that replace `conv`; raises ShapeError when a stage is not a valid conv."""

    @abstractmethod
    def error(self, spectra: LayerSpectra, options: VariantOptions, permute: bool) -> Approx:
        """The optimal relative Frobenius error of the replacement; `permute` allows the grouped
        variant's channel-permutation heuristic."""

    @abstractmethod
    def factorize(self, conv: Conv, t: np.ndarray, options: VariantOptions) -> Factorization:
        """Weights for the plan's convs that reach the optimal error, from the group-major weight
        `t` (g, C_in/g, C_out/g, *k)."""

    def rank_step(self, conv: Conv) -> int:
        """The step between valid values of the rank field."""
        return 1

    def smallest_rank(self, spectra: LayerSpectra, tol: float) -> int:
        """The smallest valid rank whose optimal error is <= tol."""
        raise NotImplementedError(f"variant {self.name!r} has no rank")


#: Every variant by name, in the order users see them (`convcost.variants` registers them).
VARIANTS: Registry[str, Variant] = Registry("variant")


def register_variant(variant: Variant) -> Variant:
    """Add `variant` to VARIANTS; a second variant under one name raises DuplicateRegistration."""
    return VARIANTS.add(variant.name, variant)


def plan_variant(name: str, conv: Conv, options: VariantOptions) -> Plan:
    """Build variant `name` of `conv`; a stage whose shape is invalid makes it not applicable."""
    try:
        return VARIANTS[name].plan(conv, options)
    except ShapeError as exc:
        return Plan.na(f"replacement is not a valid conv: {exc}")


def factorize(variant: str, conv: Conv, options: VariantOptions | None = None,
              weight: np.ndarray | None = None) -> Factorization:
    """Weights for the convs of `plan_variant(variant, conv, options)` realizing the optimum.

    `weight` is in the op's own layout (default: the conv's). Uses full SVDs (exact, slower
    than the error path); meant for exporting a replacement and for checking that the reported
    error is that of a runnable one.
    """
    from convcost.variants.spectra import group_major

    if weight is None:
        if conv.weight is None:
            raise ValueError(f"conv {conv.name} has no weights")
        weight = conv.weight()
    return VARIANTS[variant].factorize(conv, group_major(conv, weight), options or VariantOptions())


def active_axes(conv: Conv) -> list[int]:
    """Spatial axes with extent > 1: the spatial variant makes one 1-D stage per axis here, in this
    order, and its SVDs squeeze the other axes away."""
    return [i for i, k in enumerate(conv.kernel) if k > 1]
