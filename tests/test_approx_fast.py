"""The fast paths of the weight-based errors give the errors of the plain ones: the float32 spectrum
of large matrices (within 1e-6 of float64, exact where a kernel is low-rank) and the permutation
heuristic's exchanges (the same labels as a plain stable sort)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcost.analysis.analyzer import analyze
from convcost.ir.model import Conv, Model
from convcost.ir.shapes import make_conv
from convcost.util import parallel
from convcost.variants import spatial_svd
from convcost.variants.approximator import Approximator
from convcost.variants.base import VariantOptions
from convcost.variants.permutation import _balanced_refine, _top
from convcost.variants.spectra import SINGLE_ABOVE, LayerSpectra, group_major, sq_singular_values

SOBEL = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])


def conv_of(weight: np.ndarray, name: str = "c", size: int = 6) -> Conv:
    c_out, c_in, *k = weight.shape
    conv = make_conv(name, "Conv", (1, c_in, size, size), c_out, tuple(k), padding=tuple(x // 2 for x in k) * 2)
    return conv.with_changes(weight=lambda: weight)


def spectra(weight: np.ndarray) -> LayerSpectra:
    conv = conv_of(weight)
    return LayerSpectra(conv, group_major(conv, weight))


def brute(weight: np.ndarray, r: int) -> float:
    """The spatial variant's error at rank r from numpy's float64 SVD of the unfolded kernel."""
    c_out, c_in, ka, kb = weight.shape
    m = weight.transpose(1, 2, 0, 3).reshape(c_in * ka, c_out * kb)
    s = np.linalg.svd(m, compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s ** 2)))


# --- the float32 spectrum --------------------------------------------------------------------------

C = SINGLE_ABOVE // 3 + 8  # channels whose 3x3 unfolding is above SINGLE_ABOVE


def test_the_single_precision_spectrum_is_float32_and_close():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((1, 3 * C, 3 * C)).astype(np.float32)
    single = sq_singular_values(m, single=True)
    double = np.linalg.svd(m.astype(np.float64), compute_uv=False) ** 2
    assert single.dtype == np.float64
    assert np.max(np.abs(single - double)) <= 1e-5 * double.max()  # float32 rounding, not float64's
    assert np.array_equal(sq_singular_values(m[:, :SINGLE_ABOVE, :SINGLE_ABOVE], single=True),
                          sq_singular_values(m[:, :SINGLE_ABOVE, :SINGLE_ABOVE].astype(np.float64)))


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("kind", ["random", "decaying"])
def test_spatial_error_of_large_kernels_is_within_1e_6_of_float64(seed, kind):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (C, C, 3, 3)).astype(np.float32).astype(np.float64)
    if kind == "decaying":  # a trained-like spectrum: a few strong directions over noise
        u, _, vt = np.linalg.svd(w.transpose(1, 2, 0, 3).reshape(3 * C, 3 * C))
        m = (u * np.geomspace(50, 0.5, 3 * C)) @ vt
        w = m.reshape(C, 3, C, 3).transpose(2, 0, 1, 3)
    s = spectra(w)
    for rank in (C // 8, C // 2, C, 2 * C):
        got = s.relative(spatial_svd.lost_energy(s, rank)[0])
        assert got == pytest.approx(brute(w, rank), abs=1e-6)


def test_large_low_rank_and_sobel_kernels_stay_exact():
    rng = np.random.default_rng(3)
    # every slice a multiple of one Sobel filter: the unfolding is R^T (x) S, of rank C_in x 1
    sobel = np.einsum("oi,ab->oiab", rng.standard_normal((C, C)), SOBEL)
    a, b = rng.standard_normal((C, 3, 4)), rng.standard_normal((C, 3, 4))
    low = np.einsum("iar,obr->oiab", a, b)  # rank 4 as a (C_in·3) x (C_out·3) matrix
    for w, rank in ((sobel, C), (low, 4)):
        s = spectra(w)
        assert s.relative(spatial_svd.lost_energy(s, rank)[0]) < 1e-6  # float64 where little is lost
        below = s.relative(spatial_svd.lost_energy(s, rank - 1)[0])
        assert below > 0 and below == pytest.approx(brute(w, rank - 1), abs=1e-7)


def test_full_rank_loses_nothing_without_computing_a_spectrum():
    s = spectra(np.random.default_rng(4).standard_normal((4, 2, 3, 3)))
    assert spatial_svd.lost_energy(s, 6) == (0.0, None)  # 2*3 rows: rank 6 keeps everything
    assert s.memo == {}


# --- the permutation heuristic's exchanges ---------------------------------------------------------

@given(st.lists(st.integers(-3, 3), min_size=1, max_size=40), st.data())
def test_top_is_the_head_of_a_stable_descending_sort(values, data):
    diff = np.array(values, dtype=float)
    k = data.draw(st.integers(0, len(values)))
    expected = np.zeros(len(values), dtype=bool)
    expected[np.argsort(-diff, kind="stable")[:k]] = True
    assert np.array_equal(_top(diff, k), expected)


def refine_by_sorting(score: np.ndarray, labels: np.ndarray, sweeps: int = 10) -> np.ndarray:
    """The exchange sweeps written plainly (np.maximum.at, a full stable sort per pair): the reference."""
    labels = labels.copy()
    n, groups = score.shape
    eps = 1e-12 * float(np.abs(score).sum() + 1e-300)
    for _ in range(sweeps):
        gain = score - score[np.arange(n), labels][:, None]
        best = np.full((groups, groups), -np.inf)
        np.maximum.at(best, labels, gain)
        moved = False
        for a, b in np.argwhere(np.triu(best + best.T > eps, 1)):
            members = np.flatnonzero((labels == a) | (labels == b))
            n_a = int(np.count_nonzero(labels[members] == a))
            diff = score[members, a] - score[members, b]
            new = np.full(len(members), b)
            new[np.argsort(-diff, kind="stable")[:n_a]] = a
            if float(diff[new == a].sum() - diff[labels[members] == a].sum()) > eps:
                labels[members] = new
                moved = True
        if not moved:
            break
    return labels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_exchanges_match_the_plain_sort(seed, ties):
    rng = np.random.default_rng(seed)
    n, groups = int(rng.integers(4, 60)), int(rng.integers(2, 6))
    score = rng.integers(0, 4, (n, groups)).astype(float) if ties else rng.standard_normal((n, groups))
    labels = np.arange(n) * groups // n
    assert np.array_equal(_balanced_refine(score, labels), refine_by_sorting(score, labels))


# --- the float32 spectra computed ahead in threads ----------------------------------------------------

def test_spectra_computed_ahead_in_threads_give_the_same_errors():
    """`Approximator.ahead` computes the large float32 spectra in a thread (from the last layer back)
    while the analysis works from the first: every error is the one computed without it."""
    rng = np.random.default_rng(5)
    convs = [conv_of(rng.standard_normal((C, C, 3, 3)).astype(np.float32), f"c{i}") for i in range(4)]
    convs.append(conv_of(rng.standard_normal((8, C, 3, 3)).astype(np.float32), "small"))  # 24-row side
    model = Model(name="m", format="onnx", source="m", inputs={}, values={}, convs=convs)
    plain = analyze(model, approx=Approximator())
    ahead = Approximator()
    ahead.ahead(convs, VariantOptions(), threads=1)
    assert len(ahead._ahead) == 4  # the small conv's spectrum is cheap: not sent ahead
    threaded = analyze(model, approx=ahead)
    ahead.close()
    assert ahead._ahead == {} and ahead._pool is None
    for a, b in zip(plain.layers, threaded.layers, strict=True):
        for name in a.variants:
            assert a.variants[name].approx_error == b.variants[name].approx_error
    assert plain.layers[0].variants["spatial"].approx_error > 0


@pytest.mark.parametrize(("channels", "kernel", "rank", "takes"), [
    (C, (3, 3), None, True), (C, (3, 3), 3 * C, False),  # full rank: nothing to compute
    (SINGLE_ABOVE // 3, (3, 3), None, False),  # a 255-row side: float64
    (C, (3, 1), None, False), (C, (1, 1), None, False)])  # one active axis
def test_which_spectra_go_ahead(channels, kernel, rank, takes):
    conv = make_conv("c", "Conv", (1, channels, 8, 8), channels, kernel)
    assert spatial_svd.takes_single_tails(conv, rank or channels) is takes


def test_workers_start_no_threads_of_their_own():
    if not parallel.can_fork():
        pytest.skip("workers are forked")
    assert parallel.spare_cores() == parallel.cores() - 1
    assert parallel.map_ordered(lambda _: parallel.spare_cores(), [0, 1], jobs=2, description="x") == [0, 0]


# --- the group-major copy and the Gram matrices ----------------------------------------------------

@pytest.mark.parametrize(("op", "c_in", "c_out", "groups", "kernel"), [
    ("Conv", 300, 150, 1, (1, 1)), ("Conv", 70, 130, 1, (3, 3)), ("Conv", 64, 256, 4, (3, 3)),
    ("Conv", 96, 96, 96, (5, 5)), ("ConvTranspose", 130, 66, 2, (2, 2)), ("Conv", 8, 200, 1, (3,))])
def test_the_blocked_group_major_copy_is_the_plain_reorder(op, c_in, c_out, groups, kernel):
    """`group_major` copies in blocks of output channels (COPY_BLOCK, here also a partial last
    block); the result is numpy's one-pass reorder of the weight, in float64, contiguous."""
    rng = np.random.default_rng(3)
    size = (1, c_in, *(8 for _ in kernel))
    conv = make_conv("c", op, size, c_out, kernel, groups=groups)
    from convcost.variants.spectra import expected_weight_shape

    weight = rng.standard_normal(expected_weight_shape(conv)).astype(np.float32)
    g = groups
    if op == "ConvTranspose":
        plain = weight.reshape(g, c_in // g, c_out // g, *kernel)
    else:
        plain = weight.reshape(g, c_out // g, c_in // g, *kernel).swapaxes(1, 2)
    t = group_major(conv, weight)
    assert t.dtype == np.float64 and t.flags.c_contiguous
    assert np.array_equal(t, plain.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 700, 400), (3, 64, 9), (2, 300, 300)])
def test_gram_matrices_are_exactly_symmetric_and_their_spectrum_is_the_svds(dtype, shape):
    """`sq_singular_values` hands LAPACK the transposed view of each Gram matrix (a faster copy),
    which is the same matrix only when the product is exactly symmetric, as numpy's a @ a.T is."""
    m = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    mt = np.swapaxes(m, -1, -2)
    gram = m @ mt if shape[1] <= shape[2] else mt @ m
    assert np.array_equal(gram, np.swapaxes(gram, -1, -2))
    expected = np.linalg.svd(m.astype(np.float64), compute_uv=False) ** 2
    for single in (False, True):
        got = sq_singular_values(m, single=single)
        assert np.allclose(got, expected, rtol=1e-4 if single else 1e-9, atol=1e-3 * expected.max())
