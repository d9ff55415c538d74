"""Optimal approximation errors (each variant's fit to a weight, convcost.variants.autorank), checked against
brute-force SVD reconstructions done here, hand calculations, and the factorized layers run in torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convcost.analysis.analyzer import analyze
from convcost.analysis.pipeline import run
from convcost.cli.options import Options
from convcost.cost import cost_of
from convcost.ir.model import Conv, Model
from convcost.ir.shapes import make_conv
from convcost.render import View, render
from convcost.util.errors import UsageError
from convcost.variants import plan_variant
from convcost.variants.approximator import Approximator, approx_error
from convcost.variants.autorank import AutoRank, break_even_rank
from convcost.variants.base import VariantOptions, factorize
from convcost.variants.permutation import block_labels

SOBEL_X = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
SOBEL_Y = SOBEL_X.T


def conv_with(weight: np.ndarray, op: str = "Conv", groups: int = 1, size: int = 9, **kw) -> Conv:
    """A conv whose shape follows its weight, carrying that weight."""
    weight = np.asarray(weight, dtype=np.float64)
    k = weight.shape[2:]
    if op == "ConvTranspose":
        c_in, c_out = weight.shape[0], weight.shape[1] * groups
    else:
        c_in, c_out = weight.shape[1] * groups, weight.shape[0]
    pads = kw.pop("padding", tuple(x // 2 for x in k) * 2)
    conv = make_conv("c", op, (1, c_in, *[size] * len(k)), c_out, k, padding=pads, groups=groups, **kw)
    return conv.with_changes(weight=lambda: weight)


def rel(w: np.ndarray, w_hat: np.ndarray) -> float:
    return float(np.linalg.norm(w - w_hat) / np.linalg.norm(w))


def brute_truncate(m: np.ndarray, r: int) -> np.ndarray:
    """Best rank-r approximation, rebuilt from the SVD factors (Eckart–Young)."""
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


# --- spatial ----------------------------------------------------------------------------------------

def test_sobel_is_separable_at_rank_1():
    w = SOBEL_X[None, None]
    assert approx_error("spatial", conv_with(w), VariantOptions(rank=1)) < 1e-12


def test_sobel_pair_needs_rank_2_and_loses_half_its_energy_at_rank_1():
    # W as a 3 x 6 matrix [u v^T | v u^T] with u = (1,2,1), v = (-1,0,1), u . v = 0:
    # W W^T = |v|^2 u u^T + |u|^2 v v^T has eigenvalues 2*6 = 12 and 6*2 = 12, so rank 1 keeps
    # 12 of 24: error sqrt(1/2).
    w = np.stack([SOBEL_X, SOBEL_Y])[:, None]
    conv = conv_with(w)
    assert approx_error("spatial", conv, VariantOptions(rank=1)) == pytest.approx(math.sqrt(0.5), abs=1e-12)
    assert approx_error("spatial", conv, VariantOptions(rank=2)) < 1e-12


@settings(max_examples=25, deadline=None)
@given(c_in=st.integers(1, 5), c_out=st.integers(1, 5), kh=st.integers(2, 5), kw=st.integers(2, 5),
       seed=st.integers(0, 2**16))
def test_any_outer_product_kernel_is_exact_at_rank_1(c_in, c_out, kh, kw, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((c_in, kh)), rng.standard_normal((c_out, kw))
    w = np.einsum("ci,oj->ocij", a, b)  # W[o, c, i, j] = a[c, i] b[o, j]
    assert approx_error("spatial", conv_with(w), VariantOptions(rank=1)) < 1e-9


@pytest.mark.parametrize("c_in, c_out, groups, rank",
                         [(4, 6, 1, 2), (4, 6, 1, 6), (8, 8, 2, 4), (160, 160, 1, 160)])
def test_spatial_error_equals_brute_force_reconstruction(c_in, c_out, groups, rank):
    # (160, 160) makes a 480 x 480 matrix: the Gram-eigenvalue path, not LAPACK's SVD
    rng = np.random.default_rng(1)
    w = rng.standard_normal((c_out, c_in // groups, 3, 3))
    w_hat = np.zeros_like(w)
    go, gi, r = c_out // groups, c_in // groups, rank // groups
    for g in range(groups):
        block = w[g * go:(g + 1) * go]  # (go, gi, kh, kw)
        m = block.transpose(1, 2, 0, 3).reshape(gi * 3, go * 3)  # rows (c, i), columns (o, j)
        w_hat[g * go:(g + 1) * go] = brute_truncate(m, r).reshape(gi, 3, go, 3).transpose(2, 0, 1, 3)
    got = approx_error("spatial", conv_with(w, groups=groups), VariantOptions(rank=rank))
    assert got == pytest.approx(rel(w, w_hat), abs=1e-7)


def test_conv_transpose_uses_its_own_weight_layout():
    # ConvTranspose weight is (C_in, C_out/g, k...): rows (c, i) come from axis 0
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((5, 3))
    w = np.einsum("ci,oj->coij", a, b)
    conv = conv_with(w, op="ConvTranspose", stride=(2, 2), padding=(1, 1, 1, 1))
    assert approx_error("spatial", conv, VariantOptions(rank=1)) < 1e-12
    # the same array read as a Conv weight pairs (axis 1, i) with (axis 0, j): not rank 1
    assert approx_error("spatial", conv_with(w), VariantOptions(rank=1)) > 0.1


def test_three_axis_kernel_bounds_and_separable_case():
    rng = np.random.default_rng(3)
    a, b, c, d = (rng.standard_normal(n) for n in ((2, 3), 3, (3, 4), 1))
    sep = np.einsum("ci,j,ko->ocijk", a, b, c)  # channel-in x depth, height, width x channel-out
    assert approx_error("spatial", conv_with(sep), VariantOptions(rank=1)) < 1e-9
    del d
    w = rng.standard_normal((4, 3, 3, 3, 3))
    conv = conv_with(w)
    for rank in (1, 2, 4):
        found = Approximator()("spatial", conv, VariantOptions(rank=rank))
        assert found is not None and found.error is not None
        x = w.transpose(1, 2, 3, 4, 0)  # (c, k0, k1, k2, o)
        e1 = rel(x.reshape(9, 36), brute_truncate(x.reshape(9, 36), rank).reshape(9, 36))
        e2 = rel(x.reshape(27, 12), brute_truncate(x.reshape(27, 12), rank))
        assert found.extra["approx_error_lower_bound"] == pytest.approx(max(e1, e2), abs=1e-9)
        assert max(e1, e2) - 1e-9 <= found.error <= math.hypot(e1, e2) + 1e-9


# --- depthwise ------------------------------------------------------------------------------------------

def test_depthwise_separable_kernel_with_multiplier_2():
    rng = np.random.default_rng(4)
    c_in, c_out, m = 5, 7, 2
    d = rng.standard_normal((c_in, m, 3, 3))  # depthwise filters, m per input channel
    p = rng.standard_normal((c_out, c_in, m))  # pointwise mixing
    w = np.einsum("ocm,cmij->ocij", p, d)
    conv = conv_with(w)
    assert approx_error("depthwise", conv, VariantOptions(depth_multiplier=2)) < 1e-12
    at_1 = approx_error("depthwise", conv, VariantOptions(depth_multiplier=1))
    # brute force: each input channel's 7 x 9 slice truncated to rank 1
    w_hat = np.stack([brute_truncate(w[:, c].reshape(c_out, 9), 1).reshape(c_out, 3, 3)
                      for c in range(c_in)], axis=1)
    assert at_1 == pytest.approx(rel(w, w_hat), abs=1e-12)
    assert at_1 > 0.05


# --- grouped -------------------------------------------------------------------------------------------

def block_diagonal(rng: np.random.Generator, c: int, groups: int, k: int = 3) -> np.ndarray:
    w = np.zeros((c, c, k, k))
    n = c // groups
    for g in range(groups):
        w[g * n:(g + 1) * n, g * n:(g + 1) * n] = rng.standard_normal((n, n, k, k))
    return w


def test_block_diagonal_kernel_is_exact_with_those_groups():
    w = block_diagonal(np.random.default_rng(5), 8, 4)
    found = Approximator(permute=True)("grouped", conv_with(w), VariantOptions(groups=4))
    assert found is not None and found.error is not None
    assert found.error < 1e-12 and found.extra["approx_error_permuted"] < 1e-12


def test_grouped_error_is_the_off_block_mass():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((8, 4, 3, 3))  # groups=2 already; G=4 splits each group in two
    conv = conv_with(w, groups=2)
    dense = np.zeros((8, 8, 3, 3))
    dense[:4, :4], dense[4:, 4:] = w[:4], w[4:]
    keep = np.kron(np.eye(4), np.ones((2, 2)))[:, :, None, None]
    assert approx_error("grouped", conv, VariantOptions(groups=4)) == pytest.approx(rel(dense, dense * keep))


def test_permutation_heuristic_finds_hidden_blocks():
    rng = np.random.default_rng(7)
    w = block_diagonal(rng, 16, 4)
    w = w[rng.permutation(16)][:, rng.permutation(16)]
    found = Approximator(permute=True)("grouped", conv_with(w), VariantOptions(groups=4))
    assert found is not None and found.error is not None
    assert found.error > 0.5
    assert found.extra["approx_error_permuted"] < 1e-12


@settings(max_examples=30, deadline=None)
@given(c=st.sampled_from([4, 8, 12, 24]), groups=st.sampled_from([2, 4]), seed=st.integers(0, 2**16),
       scale=st.floats(0.0, 3.0))
def test_permuted_error_is_real_and_never_worse(c, groups, seed, scale):
    rng = np.random.default_rng(seed)
    w = block_diagonal(rng, c, groups, 1) + scale * rng.standard_normal((c, c, 1, 1))
    w = w[rng.permutation(c)][:, rng.permutation(c)]
    found = Approximator(permute=True)("grouped", conv_with(w), VariantOptions(groups=groups))
    assert found is not None and found.error is not None
    permuted = found.extra["approx_error_permuted"]
    assert permuted <= found.error + 1e-12
    # the labels it reports keep exactly that energy, in balanced groups
    rows, cols = block_labels((w[..., 0, 0] ** 2), groups)
    assert np.bincount(rows).tolist() == [c // groups] * groups == np.bincount(cols).tolist()
    kept = w[..., 0, 0] * (rows[:, None] == cols[None, :])
    assert permuted == pytest.approx(rel(w[..., 0, 0], kept), abs=1e-9)


# --- the factors run as real layers -----------------------------------------------------------------

def torch_conv(x: torch.Tensor, conv: Conv, w: np.ndarray, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Run one convcost Conv in torch with weight w (asymmetric pads via F.pad)."""
    r, weight = conv.rank, torch.from_numpy(np.ascontiguousarray(w))
    if conv.op == "ConvTranspose":
        assert conv.padding[:r] == conv.padding[r:]
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[r - 1]
        return fn(x, weight, bias, conv.stride, conv.padding[:r], conv.output_padding, conv.groups,
                  conv.dilation)
    pads: list[int] = []
    for i in reversed(range(r)):
        pads += [conv.padding[i], conv.padding[r + i]]
    fn = (F.conv1d, F.conv2d, F.conv3d)[r - 1]
    return fn(F.pad(x, pads), weight, bias, conv.stride, 0, conv.dilation, conv.groups)


CASES = [  # (variant, op, weight shape, groups, conv kwargs, options)
    ("spatial", "Conv", (6, 4, 3, 5), 1, {"stride": (2, 1), "dilation": (1, 2), "padding": (1, 2, 0, 3)},
     VariantOptions(rank=3)),
    ("spatial", "Conv", (8, 2, 3, 3), 2, {"padding": (1, 1, 1, 1)}, VariantOptions(rank=4)),
    ("spatial", "Conv", (6, 6, 3, 3), 1, {}, VariantOptions()),
    ("spatial", "ConvTranspose", (4, 6, 3, 3), 1, {"stride": (2, 2), "padding": (1, 1, 1, 1),
                                                   "output_padding": (1, 0)}, VariantOptions(rank=2)),
    ("spatial", "Conv", (5, 3, 3, 3, 3), 1, {"stride": (1, 2, 1)}, VariantOptions(rank=2)),
    ("spatial", "Conv", (4, 2, 1, 3, 3), 2, {"padding": (0, 1, 1, 0, 1, 1)}, VariantOptions(rank=2)),
    ("depthwise", "Conv", (6, 4, 3, 3), 1, {"stride": (2, 2)}, VariantOptions(depth_multiplier=2)),
    ("depthwise", "Conv", (8, 2, 3, 3), 2, {}, VariantOptions(depth_multiplier=1)),
    ("depthwise", "Conv", (5, 3, 5), 1, {}, VariantOptions(depth_multiplier=3)),
    ("depthwise", "ConvTranspose", (4, 6, 3, 3), 1, {"stride": (2, 2), "padding": (1, 1, 1, 1)},
     VariantOptions(depth_multiplier=2)),
    ("grouped", "Conv", (8, 8, 3, 3), 1, {}, VariantOptions(groups=4)),
    ("grouped", "Conv", (8, 4, 3, 3), 2, {}, VariantOptions(groups=4)),
    ("grouped", "ConvTranspose", (8, 4, 3, 3), 2, {"stride": (2, 2)}, VariantOptions(groups=4)),
]


@pytest.mark.parametrize("variant, op, shape, groups, kw, options", CASES)
def test_factorized_layers_reproduce_the_approximated_conv(variant, op, shape, groups, kw, options):
    """The plan's own convs, with weights from the factors, compute conv(x, Ŵ) (with bias), and
    ||W - Ŵ|| / ||W|| is the reported error: the error is that of a runnable replacement."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal(shape)
    conv = conv_with(w, op=op, groups=groups, size=7, **kw)
    plan = plan_variant(variant, conv, options)
    assert plan.applicable, plan.reason
    fac = factorize(variant, conv, options)
    assert [s.shape for s in fac.stages] == [
        (c.in_channels, c.out_channels // c.groups, *c.kernel) if c.op == "ConvTranspose"
        else (c.out_channels, c.in_channels // c.groups, *c.kernel) for c in plan.layers]
    assert rel(w, fac.kernel) == pytest.approx(approx_error(variant, conv, options), abs=1e-9)

    x = torch.from_numpy(rng.standard_normal(conv.input_shape))
    bias = torch.from_numpy(rng.standard_normal(conv.out_channels))
    expected = torch_conv(x, conv, fac.kernel, bias)
    y = x
    for i, (stage, weight) in enumerate(zip(plan.layers, fac.stages, strict=True)):
        y = torch_conv(y, stage, weight, bias if i == len(plan.layers) - 1 else None)
    assert tuple(y.shape) == conv.output_shape == tuple(expected.shape)
    torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)


def test_factors_built_here_run_as_the_plan():
    """Independent of factorize(): the test's own SVD factors, loaded into the plan's two convs."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 4, 3, 3))
    conv = conv_with(w, size=8)
    rank = 3
    m = w.transpose(1, 2, 0, 3).reshape(12, 18)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    a = (u[:, :rank] * s[:rank]).reshape(4, 3, rank)  # (c, i, r)
    b = vt[:rank].reshape(rank, 6, 3)  # (r, o, j)
    first = a.transpose(2, 0, 1)[..., None]  # (r, c, 3, 1)
    second = b.transpose(1, 0, 2)[:, :, None, :]  # (o, r, 1, 3)
    w_hat = brute_truncate(m, rank).reshape(4, 3, 6, 3).transpose(2, 0, 1, 3)
    plan = plan_variant("spatial", conv, VariantOptions(rank=rank))
    x = torch.from_numpy(rng.standard_normal(conv.input_shape))
    y = torch_conv(torch_conv(x, plan.layers[0], first), plan.layers[1], second)
    torch.testing.assert_close(y, torch_conv(x, conv, w_hat))
    assert approx_error("spatial", conv, VariantOptions(rank=rank)) == pytest.approx(rel(w, w_hat), abs=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(["spatial", "depthwise", "grouped"]),
       op=st.sampled_from(["Conv", "ConvTranspose"]),
       k=st.sampled_from([(3, 3), (2, 5), (1, 3, 3), (3, 2, 2), (5,)]), groups=st.sampled_from([1, 2]),
       c=st.sampled_from([4, 8]), rank=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_error_properties(variant, op, k, groups, c, rank, seed):
    """In [0, 1]; equal to the factors' own error; non-increasing in the rank; 0 at full rank."""
    rng = np.random.default_rng(seed)
    shape = (c, c // groups, *k)
    conv = conv_with(rng.standard_normal(shape), op=op, groups=groups, size=6)
    opts = [VariantOptions(rank=groups * r, depth_multiplier=r) for r in (rank, rank + 1, 64)]
    if not plan_variant(variant, conv, opts[0]).applicable:
        assert Approximator()(variant, conv, opts[0]) is None
        return
    errors = [approx_error(variant, conv, o) for o in opts]
    assert all(e is not None and 0 <= e <= 1 + 1e-12 for e in errors)
    assert rel(conv.weight(), factorize(variant, conv, opts[0]).kernel) == pytest.approx(errors[0], abs=1e-9)
    if variant == "grouped" or (variant == "spatial" and len([x for x in k if x > 1]) == 3):
        return  # G is fixed; 3-axis TT-SVD error is not guaranteed monotone
    assert errors[1] <= errors[0] + 1e-12
    assert errors[2] < 1e-9


# --- --rank auto and break-even --------------------------------------------------------------------

def test_break_even_by_hand():
    # 3x3, C -> C, same padding, stride 1: original 9 C^2 HW MACs.
    # spatial rank R: 3 R C HW + 3 C R HW = 6 R C HW < 9 C^2 HW  <=>  R < 1.5 C: C = 64 -> 95.
    # depthwise m: 9 m C HW + m C C HW < 9 C^2 HW  <=>  m < 9C / (9 + C) = 7.89 -> 7.
    conv = make_conv("c", "Conv", (1, 64, 16, 16), 64, (3, 3), padding=(1, 1, 1, 1))
    assert break_even_rank("spatial", conv, VariantOptions()) == 95
    assert break_even_rank("depthwise", conv, VariantOptions()) == 7
    # groups=4: ranks step by 4, R = 92 is the last multiple of 4 below 96
    grouped = make_conv("c", "Conv", (1, 64, 16, 16), 64, (3, 3), padding=(1, 1, 1, 1), groups=4)
    assert break_even_rank("spatial", grouped, VariantOptions()) == 92


@pytest.mark.parametrize("tol", [0.0, 0.05, 0.3, 0.6])
def test_auto_rank_is_the_smallest_within_tol(tol):
    rng = np.random.default_rng(10)
    # decaying spectrum so that the ranks differ across tolerances
    u, v = np.linalg.qr(rng.standard_normal((24, 24)))[0], np.linalg.qr(rng.standard_normal((24, 24)))[0]
    m = (u * (0.7 ** np.arange(24))) @ v.T  # rows (c, i) = 8 x 3, columns (o, j) = 8 x 3
    w = m.reshape(8, 3, 8, 3).transpose(2, 0, 1, 3)
    conv = conv_with(w)
    auto = AutoRank(Approximator(), tol)
    chosen, extra = auto("spatial", conv, VariantOptions(tol=tol))
    r = chosen.rank
    assert extra["rank"] == r and extra["rank_auto"] is True and extra["break_even_rank"] == 11
    s = 0.7 ** np.arange(24)
    brute = [math.sqrt((s[k:] ** 2).sum() / (s ** 2).sum()) for k in range(25)]
    assert r == next(k for k in range(1, 25) if brute[k] <= tol + 1e-12)
    dw, extra = auto("depthwise", conv, VariantOptions(tol=tol))
    assert approx_error("depthwise", conv, dw) <= tol + 1e-12
    if dw.depth_multiplier > 1:
        assert approx_error("depthwise", conv, VariantOptions(depth_multiplier=dw.depth_multiplier - 1)) > tol


# --- analysis, CLI and renderers ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def weighted_model() -> Model:
    rng = np.random.default_rng(11)
    convs = [
        conv_with(np.einsum("ci,oj->ocij", rng.standard_normal((4, 3)), rng.standard_normal((8, 3))), size=8),
        conv_with(rng.standard_normal((8, 8, 3, 3)), size=8).with_changes(name="c2"),
        conv_with(rng.standard_normal((16, 8, 1, 1)), size=8).with_changes(name="pw"),
    ]
    return Model("toy", "onnx", "toy.onnx", {"x": (1, 4, 8, 8)}, convs)


def test_analysis_reports_errors_only_with_weights(weighted_model):
    request = Options().request("toy.onnx")
    data = json.loads(render("analysis", "json", run(request, weighted_model), View()))
    sep = data["layers"][0]["variants"]
    assert sep["spatial"]["approx_error"] < 1e-9  # an outer product at R = C_out
    assert 0 < sep["depthwise"]["approx_error"] < 1
    assert data["layers"][2]["variants"]["spatial"]["approx_error"] is None  # 1x1: not applicable
    assert "approx_error_permuted" not in data["layers"][1]["variants"]["grouped"]  # only with --permute
    permuted = json.loads(render("analysis", "json", run(Options(permute=True).request("toy.onnx"), weighted_model),
                                 View()))
    grouped = permuted["layers"][1]["variants"]["grouped"]
    assert grouped["approx_error_permuted"] <= grouped["approx_error"]
    bare = Model("toy", "spec", "toy.yaml", weighted_model.inputs,
                 [c.with_changes(weight=None) for c in weighted_model.convs])
    plain = json.loads(render("analysis", "json", run(request, bare), View()))
    for layer in plain["layers"]:
        for v in layer["variants"].values():
            assert v["approx_error"] is None and "approx_error_permuted" not in v
    assert " err" not in render("analysis", "markdown", run(request, bare), View())
    off_analysis = run(Options(no_approx=True).request("toy.onnx"), weighted_model)
    off = json.loads(render("analysis", "json", off_analysis, View()))
    assert all(v["approx_error"] is None for layer in off["layers"] for v in layer["variants"].values())


def test_weights_are_loaded_once_per_layer_and_only_when_asked(weighted_model):
    calls: list[str] = []

    def counted(conv: Conv) -> Conv:
        w = conv.weight()
        return conv.with_changes(weight=lambda: calls.append(conv.name) or w)

    model = Model("toy", "onnx", "toy.onnx", weighted_model.inputs,
                  [counted(c) for c in weighted_model.convs])
    analyze(model)
    assert calls == []
    run(Options(rank="auto").request("toy.onnx"), model)
    assert sorted(calls) == sorted(c.name for c in model.convs)


def test_rank_auto_end_to_end(weighted_model):
    analysis = run(Options(rank="auto", tol=0.05, permute=True).request("toy.onnx"), weighted_model)
    data = json.loads(render("analysis", "json", analysis, View()))
    assert data["settings"]["rank"] == "auto" and data["settings"]["tol"] == 0.05
    first = data["layers"][0]["variants"]["spatial"]
    # C_in = 4, C_out = 8, 3x3 same, 8x8: per pixel 4*3 R + 8*3 R = 36 R MACs against 9*4*8 = 288,
    # so R < 8 saves; the outer-product kernel needs R = 1
    assert first["rank"] == 1 and first["break_even_rank"] == 7
    assert cost_of(weighted_model.convs[0]).macs == 288 * 64
    assert first["layers"][0]["out_channels"] == 1
    assert first["mac_ratio"] == pytest.approx(288 / 36)
    for layer in data["layers"]:
        for name in ("spatial", "depthwise"):
            v = layer["variants"][name]
            if v["applicable"]:
                assert v["approx_error"] <= 0.05 + 1e-12
    header = render("analysis", "markdown", analysis, View()).splitlines()[2]
    for column in ("spatial err", "spatial rank", "spatial break-even", "depthwise err", "grouped err perm"):
        assert f"| {column} |" in header
    assert "spatial rank" in render("analysis", "table", analysis, View(width=400))
    csv = render("analysis", "csv", analysis, View())
    assert "spatial_break_even_rank" in csv.splitlines()[0]


def test_rank_option_errors(weighted_model):
    with pytest.raises(UsageError, match="auto"):
        Options(rank="three").request("toy.onnx")
    with pytest.raises(UsageError, match="no-approx"):
        Options(rank="auto", no_approx=True).request("toy.onnx")
    with pytest.raises(UsageError, match="tol"):
        Options(rank="auto", tol=1.5).request("toy.onnx")
    bare = Model("toy", "spec", "toy.yaml", weighted_model.inputs,
                 [c.with_changes(weight=None) for c in weighted_model.convs])
    with pytest.raises(UsageError, match="needs weights"):
        run(Options(rank="auto").request("toy.yaml"), bare)


NET_YAML = "name: net\ninput: [1, 3, 16, 16]\nlayers:\n  - {name: c1, type: conv, out: 8, kernel: 3}\n"


def test_cli_rank_auto_without_weights_is_one_line_error(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(NET_YAML)
    root = Path(__file__).resolve().parent.parent
    bad = subprocess.run([sys.executable, "-m", "convcost", "analyze", str(spec), "--rank", "auto"],
                         capture_output=True, text=True, cwd=root)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith(f"convcost: error: {spec}: --rank auto needs weights")
    ok = subprocess.run([sys.executable, "-m", "convcost", "analyze", str(spec), "-f", "json"],
                        capture_output=True, text=True, cwd=root)
    assert ok.returncode == 0, ok.stderr
    variants = json.loads(ok.stdout)["layers"][0]["variants"]
    assert variants["spatial"]["approx_error"] is None and variants["depthwise"]["approx_error"] is None


def test_weightless_path_imports_neither_numpy_nor_the_svd_code(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(NET_YAML)
    probe = ("import sys; from convcost.cli.app import main\n"
             "try:\n    main(['analyze', sys.argv[1], '-f', 'json'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('numpy', 'torch', 'convcost.variants.spectra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(spec)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_plain_float_approx_hook_still_works(weighted_model):
    analysis = analyze(weighted_model, approx=lambda name, conv, options: 0.25)
    v = analysis.layers[1].variants["grouped"]
    assert v.approx_error == 0.25 and v.extra == {}
