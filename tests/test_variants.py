"""Variants: structure, applicability reasons, and properties (hypothesis)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of, total_cost
from convcost.ir.model import Model
from convcost.ir.shapes import ShapeError, make_conv
from convcost.util.registry import DuplicateRegistration
from convcost.variants import VARIANTS, plan_variant
from convcost.variants.approximator import Approximator
from convcost.variants.autorank import AutoRank
from convcost.variants.base import Approx, Variant, VariantOptions, register_variant
from convcost.variants.spatial import SPATIAL, Spatial
from convcost.variants.spectra import expected_weight_shape


def conv2d(cin=16, cout=32, k=(3, 3), groups=1, stride=(1, 1), pads=(1, 1, 1, 1), hw=(16, 16)):
    return make_conv("c", "Conv", (1, cin, *hw), cout, k, stride, pads, groups=groups)


def test_spatial_stages_split_stride_padding_and_rank():
    conv = make_conv("c", "Conv", (1, 16, 32, 30), 64, (5, 3), (2, 1), (2, 1, 2, 1), (1, 1))
    plan = plan_variant("spatial", conv, VariantOptions(rank=24))
    first, second = plan.layers
    assert (first.kernel, first.stride, first.padding, first.out_channels) == ((5, 1), (2, 1), (2, 0, 2, 0), 24)
    assert (second.kernel, second.stride, second.padding, second.in_channels) == ((1, 3), (1, 1), (0, 1, 0, 1), 24)
    assert second.output_shape == conv.output_shape
    # Hand count: stage 1 is 24 x 16x30 outputs x 16 x 5, stage 2 is 64 x 16x30 x 24 x 3.
    assert total_cost(plan.layers).macs == 24 * 16 * 30 * 16 * 5 + 64 * 16 * 30 * 24 * 3


def test_spatial_3d_kernel_has_three_stages_and_keeps_output():
    conv = make_conv("c", "Conv", (1, 8, 8, 16, 16), 16, (3, 3, 3), (1, 2, 2), (1,) * 6)
    plan = plan_variant("spatial", conv, VariantOptions())
    assert [layer.kernel for layer in plan.layers] == [(3, 1, 1), (1, 3, 1), (1, 1, 3)]
    assert plan.layers[-1].output_shape == conv.output_shape


def test_r2plus1d_style_kernel_keeps_flat_axis_stride_in_first_stage():
    conv = make_conv("c", "Conv", (1, 8, 8, 16, 16), 16, (1, 3, 3), (2, 1, 1), (0, 1, 1, 0, 1, 1))
    plan = plan_variant("spatial", conv, VariantOptions())
    assert [layer.kernel for layer in plan.layers] == [(1, 3, 1), (1, 1, 3)]
    assert plan.layers[0].stride == (2, 1, 1)
    assert plan.layers[-1].output_shape == conv.output_shape


def test_conv_transpose_variants_keep_output_shape():
    conv = make_conv("t", "ConvTranspose", (1, 16, 7, 7), 8, (3, 3), (2, 2), (1, 1, 1, 1), output_padding=(1, 1))
    for name in VARIANTS:
        plan = plan_variant(name, conv, VariantOptions(groups=8))
        assert plan.applicable, (name, plan.reason)
        assert plan.layers[-1].output_shape == conv.output_shape == (1, 8, 14, 14)


@pytest.mark.parametrize(
    "name,conv,options,reason",
    [
        ("spatial", make_conv("c", "Conv", (1, 4, 20), 4, (3,)), VariantOptions(), "1-D"),
        ("spatial", conv2d(k=(3, 1), pads=(1, 0, 1, 0)), VariantOptions(), "only one axis"),
        ("spatial", conv2d(groups=4), VariantOptions(rank=6), "not a multiple of groups"),
        ("depthwise", conv2d(k=(1, 1), pads=(0, 0, 0, 0)), VariantOptions(), "1x1"),
        ("depthwise", conv2d(cin=16, cout=16, groups=16), VariantOptions(), "already depthwise"),
        ("grouped", conv2d(cin=3, cout=32), VariantOptions(groups=4), "does not divide"),
        ("grouped", conv2d(groups=2), VariantOptions(groups=3), "not a multiple"),
        ("grouped", conv2d(groups=4), VariantOptions(groups=4), "already has groups=4"),
    ],
)
def test_not_applicable_says_why(name, conv, options, reason):
    plan = plan_variant(name, conv, options)
    assert not plan.applicable and plan.layers == ()
    assert reason in (plan.reason or "")


def test_depth_multiplier_and_grouped_counts():
    conv = conv2d(cin=16, cout=32)
    plan = plan_variant("depthwise", conv, VariantOptions(depth_multiplier=2))
    dw, pw = plan.layers
    assert (dw.groups, dw.out_channels, pw.in_channels) == (16, 32, 32)
    assert total_cost(plan.layers).macs == 32 * 256 * 9 + 32 * 256 * 32
    g = plan_variant("grouped", conv, VariantOptions(groups=8)).layers[0]
    assert cost_of(g).macs * 8 == cost_of(conv).macs


def test_skipped_layers_keep_original_cost_in_variant_totals():
    convs = [conv2d().with_changes(name="a"), conv2d().with_changes(name="b")]
    model = Model("m", "spec", "-", {"x": (1, 16, 16, 16)}, convs)
    full = analyze(model, Settings(variants=("depthwise",)))
    skipped = analyze(model, Settings(variants=("depthwise",), skip=("a",)))
    one = cost_of(convs[0]).macs
    dw = full.layers[0].variants["depthwise"].cost
    assert dw is not None
    assert full.variant_totals["depthwise"].macs == 2 * dw.macs
    assert skipped.variant_totals["depthwise"].macs == one + dw.macs
    assert skipped.layers[0].variants["depthwise"].plan.reason == "excluded by --only/--skip"
    only = analyze(model, Settings(variants=("depthwise",), only=("b",)))
    assert only.variant_totals["depthwise"].macs == one + dw.macs


@st.composite
def convs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2, 4]))
    cin = groups * draw(st.integers(1, 8))
    cout = groups * draw(st.integers(1, 8))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(2 * rank))
    spatial = tuple(draw(st.integers(1, 12)) + (k - 1) * d for k, d in zip(kernel, dilation, strict=False))
    op = draw(st.sampled_from(["Conv", "ConvTranspose"]))
    try:
        return make_conv("c", op, (draw(st.integers(1, 3)), cin, *spatial), cout, kernel, stride, pads, dilation,
                         groups, draw(st.booleans()))
    except ShapeError:
        return make_conv("c", "Conv", (1, cin, *spatial), cout, kernel, groups=groups)


def independent_macs(conv) -> int:
    """The MAC formulas, written out again here on purpose."""
    k = math.prod(conv.kernel)
    if conv.op == "ConvTranspose":
        return conv.input_shape[0] * conv.in_channels * math.prod(conv.input_shape[2:]) * (
            conv.out_channels // conv.groups) * k
    return conv.output_shape[0] * conv.out_channels * math.prod(conv.output_shape[2:]) * (
        conv.in_channels // conv.groups) * k


@settings(max_examples=200, deadline=None)
@given(convs(), st.sampled_from(sorted(VARIANTS)), st.integers(1, 3), st.sampled_from([2, 4, 8]))
def test_variant_cost_is_sum_of_parts_and_ratio_is_original_over_variant(conv, name, m, g):
    model = Model("m", "spec", "-", {"x": conv.input_shape}, [conv])
    result = analyze(model, Settings(variants=(name,), options=VariantOptions(depth_multiplier=m, groups=g)))
    v = result.layers[0].variants[name]
    assert result.layers[0].cost.macs == independent_macs(conv)
    if not v.applicable:
        assert v.plan.reason and v.cost is None
        return
    assert v.cost is not None
    assert v.cost.macs == sum(independent_macs(layer) for layer in v.plan.layers)
    assert v.cost.params == sum(cost_of(layer).params for layer in v.plan.layers)
    assert v.mac_ratio == pytest.approx(independent_macs(conv) / v.cost.macs)
    assert v.param_ratio == pytest.approx(result.layers[0].cost.params / v.cost.params)
    assert v.plan.layers[-1].output_shape == conv.output_shape
    # Intermediate activations are memory traffic: every stage but the last writes one.
    assert v.intermediate_bytes == sum(4 * math.prod(layer.output_shape) for layer in v.plan.layers[:-1])


# --- the registry: one Variant object per name, each with every part --------------------------------

def test_variants_are_registered_once_in_display_order():
    assert list(VARIANTS) == ["spatial", "depthwise", "grouped"]
    assert all(isinstance(v, Variant) and v.name == name for name, v in VARIANTS.items())


def test_a_second_variant_under_a_registered_name_is_refused():
    class Impostor(Spatial):
        pass

    with pytest.raises(DuplicateRegistration, match="variant 'spatial' is registered twice"):
        register_variant(Impostor())
    assert VARIANTS["spatial"] is SPATIAL and len(VARIANTS) == 3


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_registered_variant_has_plan_error_factors_and_rank(name):
    variant = VARIANTS[name]
    bare = conv2d(cin=8, cout=8, groups=2, hw=(8, 8))
    w = np.random.default_rng(4).standard_normal(expected_weight_shape(bare))
    conv = bare.with_changes(weight=lambda: w)
    options = VariantOptions(rank=4, depth_multiplier=2, groups=4)
    plan = variant.plan(conv, options)
    assert plan.applicable, plan.reason
    spectra = Approximator().spectra(conv)
    assert spectra is not None
    found = variant.error(spectra, options, False)
    assert isinstance(found, Approx) and found.error is not None and 0 < found.error < 1
    fac = variant.factorize(conv, spectra.t, options)
    assert [s.shape for s in fac.stages] == [expected_weight_shape(layer) for layer in plan.layers]
    assert float(np.linalg.norm(w - fac.kernel) / np.linalg.norm(w)) == pytest.approx(found.error, abs=1e-9)
    field = variant.rank_field
    if field is None:  # no rank: --rank auto leaves the options alone
        assert AutoRank(Approximator(), 0.5)(name, conv, options) == (options, {})
        return
    assert field in {f.name for f in dataclasses.fields(VariantOptions)}
    step = variant.rank_step(conv)
    rank = variant.smallest_rank(spectra, 0.5)

    def error_at(n: int) -> float:
        e = variant.error(spectra, dataclasses.replace(options, **{field: n}), False).error
        assert e is not None
        return e

    assert rank % step == 0 and error_at(rank) <= 0.5
    assert rank == step or error_at(rank - step) > 0.5
