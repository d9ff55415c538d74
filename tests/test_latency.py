"""The latency model: hand-calculated roofline numbers, the bound, op kinds, variants, the fit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import cost_of
from convcost.ir.model import Conv, MatMul, Model
from convcost.ir.shapes import make_conv
from convcost.latency.devices import load_profile
from convcost.latency.fit import WORK_KINDS, Sample, fit_roofline
from convcost.latency.kinds import KINDS, gemm_dims, op_kind
from convcost.latency.ort_graphs import sweep_matmuls
from convcost.latency.roofline import Roofline, Saturation, WeightCache, estimate, terms
from convcost.latency.sweep import full_convs
from convcost.util.errors import InputError

ROOT = Path(__file__).resolve().parent.parent

#: A tiny device: 100 GFLOP/s, 10 GB/s, 10 us per op; dense runs at half of peak.
TINY = {
    "name": "tiny",
    "description": "hand-made test device",
    "peak_gflops": {"float32": {"value": 100, "source": "test"}},
    "memory_bandwidth_gbs": {"value": 10, "source": "test"},
    "efficiency": {k: {"value": v, "source": "test"} for k, v in
                   {"dense": 0.5, "pointwise": 0.8, "depthwise": 1.0, "grouped": 0.25, "small_channel": 0.1}.items()},
    "overhead_us": {"value": 10, "source": "test"},
}


def write_profile(tmp_path: Path, doc: dict, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def tiny(tmp_path: Path):
    return load_profile(write_profile(tmp_path, TINY))


def conv(cin: int, cout: int, k: int, hw: int, groups: int = 1, stride: int = 1, bias: bool = True, rank: int = 2,
         name: str = "c"):
    p = (k - 1) // 2
    return make_conv(name, "Conv", (1, cin) + (hw,) * rank, cout, (k,) * rank, (stride,) * rank, (p,) * (2 * rank),
                     None, groups, bias)


def test_compute_bound_dense_conv_by_hand(tiny) -> None:
    c = conv(64, 64, 3, 8)
    macs = 64 * 8 * 8 * 64 * 9  # C_out * H * W * C_in * k^2
    # a direct kernel skips the kernel rows in the padding: the first and last output rows use 2 of
    # 3, so it computes 22 of every 24 kernel rows
    compute = 2 * macs * 22 / 24 / (100e9 * 0.5)  # 86.51 us
    traffic = 4 * ((64 * 64 * 9 + 64) + 64 * 64 + 64 * 64)  # weights+bias, input, output: 180,480 B
    memory = traffic / 10e9  # 18.05 us
    assert compute > memory
    est = tiny.estimate(c, "float32")
    assert est.ms == pytest.approx((10e-6 + compute) * 1e3, rel=1e-9)
    assert est.ms == pytest.approx(0.09651, abs=1e-5)
    assert est.bound == "compute"


def test_memory_bound_depthwise_conv_by_hand(tiny) -> None:
    c = conv(32, 32, 3, 56, groups=32)
    compute = 2 * (32 * 56 * 56 * 9) * 166 / 168 / (100e9 * 1.0)  # 17.85 us: 166 of 168 kernel rows in the input
    memory = 4 * ((32 * 9 + 32) + 2 * 32 * 56 * 56) / 10e9  # 80.41 us
    t = terms(tiny.roofline, c, "float32")
    assert (t.kind, t.bound) == ("depthwise", "memory")
    assert t.compute_s == pytest.approx(compute)
    assert t.memory_s == pytest.approx(memory)
    assert tiny.estimate(c, "float32").ms == pytest.approx((10e-6 + memory) * 1e3)


def test_vol2col_conv_pays_its_column_matrix_by_hand(tiny) -> None:
    """A volumetric_small conv unfolds its input into a K x M matrix before the GEMM: that matrix is
    written and read once (2 x K x M x 4 bytes), a pass added to the roofline, not under it."""
    c = conv(16, 32, 3, 8, rank=3)  # 1 x 16 x 8 x 8 = 1,024 <= NATIVE_PLANE
    m, k = 8 * 8 * 8, 16 * 27  # output voxels, C_in x 3^3
    compute = 2 * (m * 32 * k) / (100e9 * 0.5)  # dense efficiency (the kind's parent): 283.1 us
    memory = 4 * ((32 * 16 * 27 + 32) + 16 * m + 32 * m) / 10e9  # weights+bias, input, output: 15.4 us
    unfold = 2 * k * m * 4 / 10e9  # 176.9 us
    t = terms(tiny.roofline, c, "float32")
    assert t.kind == "volumetric_small"
    assert (t.compute_s, t.memory_s, t.unfold_s) == (pytest.approx(compute), pytest.approx(memory),
                                                     pytest.approx(unfold))
    assert tiny.estimate(c, "float32").ms == pytest.approx((10e-6 + unfold + compute) * 1e3)
    assert tiny.estimate(c, "float32").ms == pytest.approx(0.4700, abs=1e-4)
    big = conv(64, 64, 3, 32, rank=3)  # oneDNN: no column matrix
    assert terms(tiny.roofline, big, "float32").unfold_s == 0.0


def test_transposed_conv_pays_its_col2im_matrix_by_hand(tiny) -> None:
    """A ConvTranspose's GEMM writes C_out x k x k values per input pixel, which col2im then folds
    into the output: 32 -> 16 channels, 3x3, stride 2, groups 2, on a 28x28 input."""
    c = make_conv("up", "ConvTranspose", (1, 32, 28, 28), 16, (3, 3), (2, 2), (1, 1, 1, 1), groups=2,
                  output_padding=(1, 1))
    assert c.output_shape == (1, 16, 56, 56)
    col = 16 * 9 * 28 * 28  # (C_out/g x 9) x 784 per group, 2 groups
    t = terms(tiny.roofline, c, "float32")
    assert t.unfold_s == pytest.approx(2 * col * 4 / 10e9)  # written and read: 90.3 us
    assert t.unfold_s == pytest.approx(90.3e-6, abs=0.1e-6)


def test_overhead_bound_tiny_conv(tiny) -> None:
    c = conv(8, 8, 1, 2)  # 256 MACs: well under a microsecond of work
    est = tiny.estimate(c, "float32")
    assert est.bound == "overhead"
    assert 0.010 < est.ms < 0.0101


def test_dtype_changes_bytes_and_peak(tmp_path: Path) -> None:
    doc = {**TINY, "peak_gflops": {"float32": {"value": 100, "source": "t"}, "int8": {"value": 400, "source": "t"}}}
    p = load_profile(write_profile(tmp_path, doc))
    c = conv(64, 64, 3, 8)
    fp32, int8 = terms(p.roofline, c, "float32"), terms(p.roofline, c, "int8")
    assert int8.compute_s == pytest.approx(fp32.compute_s / 4)
    assert int8.memory_s == pytest.approx(fp32.memory_s / 4)


def test_fill_factors_by_hand(tiny) -> None:
    roof = tiny.roofline
    filled = Roofline(roof.peak_gflops, roof.bandwidth_gbs, roof.efficiency, roof.overhead_us,
                      Saturation(pixels={"dense": 64.0}, out_channels=dict.fromkeys(KINDS, 64.0), reduction=0.0))
    c = conv(64, 64, 3, 8)  # M = 64 pixels, N = 64 outputs: each factor is 64 / (64 + 64) = 1/2
    assert gemm_dims(c) == (64, 64, 576)
    assert terms(filled, c, "float32").compute_s == pytest.approx(4 * terms(roof, c, "float32").compute_s)
    pw = conv(64, 64, 1, 8)  # pointwise has no pixel constant here: only the channel factor applies
    assert terms(filled, pw, "float32").compute_s == pytest.approx(2 * terms(roof, pw, "float32").compute_s)


def test_a_gemv_streams_its_weights_without_a_pixel_penalty(tiny) -> None:
    """A Linear on one row is a GEMV: the pointwise pixel constant (conv kernels blocked over
    output pixels) does not apply, so a 9216 x 4096 classifier is memory-bound, as measured
    (AlexNet's: 7.0 ms here, 151 MB of weights at ~20 GB/s); the channel factors still do."""
    roof = tiny.roofline
    filled = Roofline(roof.peak_gflops, roof.bandwidth_gbs, roof.efficiency, roof.overhead_us,
                      Saturation(pixels={"pointwise": 20.0}, reduction=0.0))
    fc = MatMul("fc", "Linear", batch=1, m=1, k=9216, n=4096, params=9216 * 4096 + 4096)
    assert terms(filled, fc, "float32") == terms(roof, fc, "float32")
    assert terms(filled, fc, "float32").bound == "memory"
    gemv_conv = conv(9216, 4096, 1, 1)  # the same product as a 1x1 conv on a 1x1 map keeps the penalty
    unfilled = terms(roof, gemv_conv, "float32").compute_s
    assert terms(filled, gemv_conv, "float32").compute_s == pytest.approx(21 * unfilled)  # 1 / (1 + 20)
    channels = Roofline(roof.peak_gflops, roof.bandwidth_gbs, roof.efficiency, roof.overhead_us,
                        Saturation(pixels={"pointwise": 20.0}, out_channels={"pointwise": 4096.0}))
    assert terms(channels, fc, "float32").compute_s == pytest.approx(2 * terms(roof, fc, "float32").compute_s)


@pytest.mark.parametrize(("op", "kind"), [
    (conv(32, 32, 3, 16, groups=32), "depthwise"),
    (conv(32, 64, 3, 16, groups=32), "depthwise_multiplier"),  # depth multiplier 2
    (conv(3, 32, 3, 32, stride=2), "small_channel"),  # 3x3 RGB stem: 27 products per output
    (conv(16, 96, 1, 16), "small_channel"),
    (conv(64, 3, 3, 16), "small_channel"),  # 3-channel head
    (conv(3, 64, 7, 32, stride=2), "dense"),  # 7x7 RGB stem: 147 products per output
    (conv(128, 128, 3, 8, groups=32), "grouped_narrow"),  # 4 channels per group
    (conv(128, 128, 3, 8, groups=4), "grouped"),
    (conv(240, 60, 1, 28, groups=3), "grouped_pointwise"),  # ShuffleNet v1
    (conv(60, 240, 1, 28, groups=3), "grouped_pointwise"),  # 20 products per output, grouped all the same
    (conv(256, 64, 1, 56, groups=4), "grouped"),  # 64 and 16 per group: blocked kernels take it
    (conv(58, 58, 3, 8, groups=58), "depthwise_unblocked"),  # 58 = 4 x 14 + 2: no blocked kernel
    (conv(58, 58, 3, 16, stride=2, groups=58), "depthwise_unblocked_strided"),  # ShuffleNet v2's downsampling
    (conv(3, 3, 3, 32, stride=2, groups=3), "depthwise_unblocked_strided"),  # the depthwise variant of an RGB stem
    (conv(60, 60, 3, 16, stride=2, groups=60), "depthwise_unaligned"),  # 60 = 4 x 15: blocked at any stride
    (conv(116, 116, 3, 8, groups=116), "depthwise_unaligned"),  # a multiple of 4, not of 16
    (conv(77, 64, 3, 8), "unaligned"),  # 77 input channels: no blocked kernel takes them
    (conv(76, 64, 3, 8), "dense"),
    (conv(77, 64, 1, 8), "pointwise"),
    (make_conv("s1", "Conv", (1, 77, 8, 8), 64, (1, 3), (1, 1), (0, 1, 0, 1)), "unaligned"),
    (MatMul("fc1", "Gemm", batch=1, m=1, k=64, n=10, params=650), "matvec"),
    (conv(3, 16, 3, 8, rank=3), "volumetric_stem"),
    (make_conv("r3d", "Conv", (1, 3, 8, 56, 56), 64, (3, 7, 7), (1, 2, 2), (1, 3, 3) * 2), "volumetric_stem_strided"),
    (conv(32, 32, 3, 8, rank=3, stride=2), "volumetric_strided"),  # also where torch runs vol2col
    (conv(64, 64, 3, 32, rank=3, stride=2), "volumetric_strided"),
    (conv(64, 64, 3, 8, rank=3, stride=2, groups=64), "depthwise"),
    (conv(64, 128, 1, 8), "pointwise"),
    (conv(256, 512, 1, 16, stride=2), "pointwise_strided"),  # ResNet's downsampling shortcut
    (make_conv("t", "ConvTranspose", (1, 64, 8, 8), 32, (4, 4), (2, 2), (1, 1, 1, 1)), "transposed"),
    (conv(32, 32, 3, 8, rank=3), "volumetric_small"),  # 1 x 32 x 8 x 8 = 2,048 <= NATIVE_PLANE
    (conv(64, 64, 3, 32, rank=3), "volumetric"),  # 1 x 64 x 32 x 32 = 65,536
    (make_conv("b2", "Conv", (2, 32, 8, 8, 8), 32, (3, 3, 3), (1, 1, 1), (1,) * 6), "volumetric"),  # batch 2
    (conv(64, 64, 3, 8, rank=3, groups=2), "volumetric"),
    (conv(64, 64, 5, 8, rank=3), "volumetric"),  # 5x5 in the last two axes
    (conv(64, 64, 3, 32, rank=1), "sequence"),
    (MatMul("fc", "Linear", batch=1, m=1, k=512, n=1000, params=513000), "matvec"),
    (MatMul("proj", "Linear", batch=1, m=197, k=384, n=384, params=384 * 385), "matmul"),
    (make_conv("k31", "Conv", (1, 64, 8, 8), 64, (3, 1), (1, 1), (1, 0, 1, 0)), "rectangular"),
    (make_conv("k17", "Conv", (1, 64, 8, 8), 64, (1, 7), (1, 1), (0, 3, 0, 3)), "rectangular"),
    (make_conv("dw31", "Conv", (1, 64, 8, 8), 64, (3, 1), (1, 1), (1, 0, 1, 0), groups=64), "depthwise"),
])
def test_op_kinds(op, kind) -> None:
    assert op_kind(op) == kind
    assert kind in KINDS


def test_transposed_conv_is_a_gather_per_output_pixel() -> None:
    """ConvTranspose2d(16, 8, 4, stride=2, padding=1) on 7x7 -> 14x14: each of the 196 output pixels
    gathers 16 x 16 / 4 = 64 products into each of its 8 channels; M x N x K is the MAC count."""
    op = make_conv("t", "ConvTranspose", (1, 16, 7, 7), 8, (4, 4), (2, 2), (1, 1, 1, 1))
    assert op.output_shape == (1, 8, 14, 14)
    assert gemm_dims(op) == (196, 8, 64)
    assert math.prod(gemm_dims(op)) == cost_of(op).macs == 16 * 8 * 16 * 49


def _runs_vol2col(op) -> bool:
    """Whether PyTorch on this CPU runs `op` as slow_conv3d (vol2col + GEMM), seen by its profiler."""
    import torch

    torch.set_num_threads(1)
    x = torch.zeros(op.input_shape)
    w = torch.zeros(op.out_channels, op.in_channels // op.groups, *op.kernel)
    pad = op.padding[: op.rank]
    with torch.inference_mode(), torch.profiler.profile() as prof:
        torch.nn.functional.conv3d(x, w, None, op.stride, pad, op.dilation, op.groups)
    return any("slow_conv3d" in e.name for e in prof.events())


@pytest.mark.parametrize("shape", [
    (1, 64, 8, 28, 28), (1, 64, 16, 28, 28), (1, 32, 8, 56, 56), (1, 256, 4, 14, 14), (1, 512, 4, 14, 14),
    (1, 512, 2, 7, 7), (1, 20, 32, 32, 4), (1, 20, 32, 33, 4), (2, 16, 4, 8, 8), (1, 128, 16, 16, 16),
])
def test_volumetric_small_is_where_torch_runs_vol2col(shape) -> None:
    """The kind rule is PyTorch's own dispatch (oneDNN above NATIVE_PLANE, vol2col below): checked
    against the kernel torch's profiler sees, on both sides of the line (20 x 32 x 32 = 20,480)."""
    op = make_conv("v", "Conv", shape, shape[1], (3, 3, 3), (1, 1, 1), (1,) * 6)
    assert (op_kind(op) == "volumetric_small") == _runs_vol2col(op)


def test_a_strided_conv_where_torch_runs_vol2col_still_unfolds(tiny) -> None:
    """The unfold pass follows the volumetric_small rule, not the kind: a stride-2 3-D conv is priced
    as volumetric_strided, and where torch runs it as vol2col it pays the column matrix all the same."""
    c = conv(16, 32, 3, 8, rank=3, stride=2)  # 1 x 16 x 8 x 8 = 1,024 <= NATIVE_PLANE
    assert op_kind(c) == "volumetric_strided" and _runs_vol2col(c)
    m, k = 4 * 4 * 4, 16 * 27  # output voxels, C_in x 3^3
    assert terms(tiny.roofline, c, "float32").unfold_s == pytest.approx(2 * k * m * 4 / 10e9)
    big = conv(64, 64, 3, 32, rank=3, stride=2)  # 64 x 32 x 32 > NATIVE_PLANE: oneDNN, no column matrix
    assert terms(tiny.roofline, big, "float32").unfold_s == 0.0


def test_a_kind_without_figures_takes_its_parents(tmp_path: Path) -> None:
    """A profile's volumetric_small defaults to its volumetric figure, and that to dense."""
    small = conv(32, 32, 3, 8, rank=3)
    doc = {**TINY, "efficiency": {**TINY["efficiency"], "volumetric": {"value": 0.2, "source": "test"}}}
    p = load_profile(write_profile(tmp_path, doc))
    assert p.roofline.efficiency["volumetric_small"] == 0.2
    assert p.sources["efficiency.volumetric_small"] == "defaults to efficiency.volumetric"
    assert p.roofline.efficiency["transposed"] == 0.5  # dense
    plain = load_profile(write_profile(tmp_path, TINY, "plain.yaml"))
    assert plain.roofline.efficiency["volumetric_small"] == plain.roofline.efficiency["dense"] == 0.5
    # ...and so does a pixel constant: volumetric's applies to volumetric_small.
    sat = Saturation(pixels={"volumetric": 100.0})
    m = gemm_dims(small)[0]
    assert sat.fill("volumetric_small", *gemm_dims(small)) == pytest.approx(m / (m + 100.0))
    assert sat.fill("volumetric_small", *gemm_dims(small), pixels=False) == 1.0


def test_profile_fill_constants_per_kind_or_one_figure(tmp_path: Path) -> None:
    """pixels and out_channels take one figure per kind (kinds left out use their parent's) or one
    figure for every kind, as profiles written before the per-kind channel constant have it."""
    from convcost.latency.devices import dump_profile

    fig = {"value": 16, "source": "test"}
    one = load_profile(write_profile(tmp_path, {**TINY, "saturation": {"out_channels": fig, "reduction": fig}}))
    assert one.roofline.saturation.out_channels == dict.fromkeys(KINDS, 16)
    assert one.sources["saturation.out_channels.depthwise"] == "test"
    per = load_profile(write_profile(tmp_path, {**TINY, "saturation": {
        "out_channels": {"dense": {"value": 4, "source": "fit"}, "volumetric": {"value": 40, "source": "fit"}}}},
        "per.yaml"))
    c = conv(64, 32, 3, 8)
    assert per.roofline.saturation.fill("dense", *gemm_dims(c)) == pytest.approx(32 / 36)
    small3d = conv(32, 32, 3, 8, rank=3)
    assert per.roofline.saturation.fill("volumetric_small", *gemm_dims(small3d)) == pytest.approx(32 / 72)
    assert per.roofline.saturation.fill("pointwise", 10, 32, 10) == 1.0  # no figure, no parent
    again = load_profile(write_profile(tmp_path, yaml.safe_load(dump_profile(per)), "again.yaml"))
    assert again.roofline == per.roofline


def test_work_fill_and_memory_share_by_hand(tmp_path: Path) -> None:
    """A kind with a work constant takes one factor over N x K instead of the N and K factors; a
    kind's memory share divides the bandwidth its traffic moves at. Both load, inherit and dump."""
    from convcost.latency.devices import dump_profile

    doc = {**TINY, "saturation": {"work": {"dense": {"value": 4000, "source": "fit"}},
                                  "out_channels": {"grouped": {"value": 8, "source": "fit"}},
                                  "reduction": {"value": 12, "source": "fit"}},
           "memory_efficiency": {"depthwise": {"value": 0.5, "source": "fit"}}}
    prof = load_profile(write_profile(tmp_path, doc))
    sat = prof.roofline.saturation
    # 128 -> 32 and 32 -> 128 3x3 convs: the same N x K = 36,864 MACs per output pixel, the same fill.
    assert sat.fill("dense", *gemm_dims(conv(128, 32, 3, 14))) == pytest.approx(36864 / (36864 + 4000))
    assert sat.fill("dense", *gemm_dims(conv(32, 128, 3, 14))) == pytest.approx(36864 / (36864 + 4000))
    # transposed (parent dense) has no channel constant of its own: it takes dense's work form.
    assert sat.uses_work("transposed") and not sat.uses_work("grouped")
    assert sat.fill("grouped", 100, 16, 144) == pytest.approx(16 / 24 * 144 / 156)
    dw = conv(64, 64, 3, 56, groups=64)  # 1x64x56x56 in and out, 64x1x3x3 weights and 64 biases
    traffic = 4 * (2 * 64 * 56 * 56 + 64 * 9 + 64)
    t = terms(prof.roofline, dw, "float32")
    assert t.memory_s == pytest.approx(traffic / (10e9 * 0.5))
    assert terms(prof.roofline, conv(64, 64, 3, 56), "float32").memory_s == pytest.approx(
        4 * (2 * 64 * 56 * 56 + 64 * 64 * 9 + 64) / 10e9)  # dense: no share, the whole bandwidth
    assert prof.sources["memory_efficiency.depthwise"] == "fit"
    again = load_profile(write_profile(tmp_path, yaml.safe_load(dump_profile(prof)), "again.yaml"))
    assert again.roofline == prof.roofline
    for bad, field in (({"depthwise": {"value": 0, "source": "x"}}, "memory_efficiency.depthwise.value"),
                       ({"conv": {"value": 1, "source": "x"}}, "unknown kind")):
        with pytest.raises(InputError, match=field):
            load_profile(write_profile(tmp_path, {**TINY, "memory_efficiency": bad}, "bad.yaml"))


def test_variant_priced_stage_by_stage_with_its_intermediate(tiny) -> None:
    c = conv(64, 128, 3, 16, bias=False)
    model = Model("m", "spec", "test", {"input": c.input_shape}, [c])
    a = analyze(model, Settings(variants=("depthwise",)), [tiny])
    v = a.layers[0].variants["depthwise"]
    dw, pw = v.plan.layers
    # Each stage is a conv with its own overhead; the depthwise output (64x16x16) is written by the
    # first stage and read by the second, so it is in both stages' traffic.
    assert dw.output_shape == pw.input_shape == (1, 64, 16, 16)
    expected = estimate(tiny.roofline, dw, "float32").ms + estimate(tiny.roofline, pw, "float32").ms
    assert v.latency["tiny"].ms == pytest.approx(expected)
    assert v.intermediate_bytes == 4 * 64 * 16 * 16
    assert v.latency["tiny"].ms > 2 * 0.010  # two overheads


def test_totals_sum_layers_and_matmuls(tiny) -> None:
    c1, c2 = conv(3, 32, 3, 32, stride=2, name="a"), conv(32, 64, 3, 16, name="b")
    fc = MatMul("fc", "Linear", batch=1, m=1, k=64, n=10, params=650)
    model = Model("m", "spec", "test", {"input": c1.input_shape}, [c1, c2], [fc])
    a = analyze(model, Settings(variants=()), [tiny])
    expected = sum(tiny.estimate(op, "float32").ms for op in (c1, c2, fc))
    assert a.totals.latency["tiny"] == pytest.approx(expected)


def test_fewer_macs_but_slower_is_flagged(tmp_path: Path) -> None:
    """A spatially separated depthwise 3x3 does 6 instead of 9 MACs per output, but pays two overheads."""
    path = write_profile(tmp_path, {**TINY, "overhead_us": {"value": 50, "source": "test"}})
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump({"name": "m", "input": [1, 32, 28, 28], "layers": [
        {"name": "dw", "type": "conv", "out": 32, "kernel": 3, "padding": 1, "groups": 32}]}))
    run = [sys.executable, "-m", "convcost", "analyze", str(spec), "-d", str(path), "-V", "spatial"]
    out = subprocess.run([*run, "-f", "json"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    import json

    layer = json.loads(out)["layers"][0]
    v = layer["variants"]["spatial"]
    assert v["macs"] < layer["macs"]
    assert v["latency_ms"]["tiny"] > layer["latency_ms"]["tiny"]
    assert v["slower"] == {"tiny": True}
    assert layer["latency_bound"]["tiny"] in ("compute", "memory", "overhead")
    table = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert " !" in table and "Fewer MACs but slower" in table


def test_fit_recovers_a_known_roofline() -> None:
    """Synthetic times from a known device: the fit must find its efficiencies and overheads again."""
    truth = Roofline({"float32": 200.0}, 20.0,
                     {"dense": 0.7, "pointwise": 0.6, "depthwise": 0.2, "grouped": 0.4, "small_channel": 0.3,
                      "transposed": 0.35, "volumetric": 0.5, "volumetric_small": 0.25, "rectangular": 0.55,
                      "matmul": 0.65, "matvec": 0.3, "sequence": 0.45, "volumetric_stem": 0.2, "grouped_narrow": 0.15,
                      "depthwise_unaligned": 0.1, "matvec_large": 0.3, "unaligned": 0.4, "depthwise_multiplier": 0.12,
                      "pointwise_strided": 0.5, "depthwise_unblocked": 0.05, "volumetric_strided": 0.35,
                      "volumetric_stem_strided": 0.15, "grouped_pointwise": 0.3, "depthwise_unblocked_strided": 0.02},
                     {"dense": 15.0, "pointwise": 10.0, "depthwise": 60.0, "grouped": 40.0, "small_channel": 10.0,
                      "transposed": 20.0, "volumetric": 25.0, "volumetric_small": 30.0, "rectangular": 12.0,
                      "matmul": 8.0, "matvec": 6.0, "sequence": 9.0, "volumetric_stem": 14.0, "grouped_narrow": 30.0,
                      "depthwise_unaligned": 40.0, "matvec_large": 6.0, "unaligned": 18.0,
                      "depthwise_multiplier": 35.0, "pointwise_strided": 12.0, "depthwise_unblocked": 50.0,
                      "volumetric_strided": 22.0, "volumetric_stem_strided": 16.0, "grouped_pointwise": 24.0,
                      "depthwise_unblocked_strided": 45.0},
                     Saturation(pixels=dict.fromkeys(KINDS, 30.0),
                                out_channels={k: 8.0 for k in KINDS if k not in WORK_KINDS},
                                work={k: 2000.0 for k in WORK_KINDS}, reduction=12.0))
    ops = []
    for c in (16, 32, 64, 128, 256):
        for hw in (4, 7, 14, 28, 56):
            ops += [conv(c, c, 3, hw), conv(c, 2 * c, 1, hw), conv(c, c, 3, hw, groups=c), conv(c, c, 3, hw, groups=4),
                    conv(c, c, 3, max(hw // 4, 2), rank=3),
                    make_conv("v", "Conv", (2, c, 2, hw // 2, hw // 2), c, (3, 3, 3), (1, 1, 1), (1,) * 6),
                    make_conv("t", "ConvTranspose", (1, c, hw, hw), c, (2, 2), (2, 2)),
                    make_conv("r", "Conv", (1, c, hw, hw), c, (3, 1), (1, 1), (1, 0, 1, 0)),
                    MatMul("m", "MatMul", batch=1, m=hw * hw, k=c, n=2 * c),
                    MatMul("v", "Gemm", batch=1, m=1, k=c * hw, n=c, params=c * hw * c),
                    conv(c + 2, c + 2, 3, hw, groups=c + 2), conv(c + 4, c + 4, 3, hw, groups=c + 4),
                    conv(c + 2, c + 2, 3, 2 * hw, stride=2, groups=c + 2),
                    conv(c, c, 3, hw * 4, rank=1),
                    conv(c, c, 3, hw, groups=c // 4 if c >= 64 else c // 2), conv(3, c, 3, max(hw // 2, 2), rank=3),
                    conv(c + 1, c, 3, hw), conv(c, 2 * c, 3, hw, groups=c), conv(c, 2 * c, 1, hw, stride=2),
                    conv(c, 2 * c, 3, max(hw // 2, 2), stride=2, rank=3), conv(3, c, 3, hw, stride=2, rank=3),
                    conv(c + 4, 2 * c + 8, 1, hw, groups=2)]
        ops += [conv(3, c, 3, 56, stride=2), conv(c, 2, 3, 28)]
    # Tiny ops of every kind pin down the overheads, as calibrate's sweep does.
    ops += [conv(16, 16, 3, 2), conv(16, 32, 1, 2), conv(16, 16, 3, 2, groups=16), conv(16, 16, 3, 2, groups=4),
            conv(3, 8, 3, 2), conv(16, 16, 3, 2, rank=3), make_conv("t", "ConvTranspose", (1, 16, 2, 2), 16, (2, 2),
                                                                   (2, 2)),
            make_conv("v", "Conv", (2, 16, 2, 2, 2), 16, (3, 3, 3), (1, 1, 1), (1,) * 6),
            make_conv("r", "Conv", (1, 16, 2, 2), 16, (1, 3), (1, 1), (0, 1, 0, 1)),
            MatMul("m", "MatMul", 1, 2, 16, 16), conv(3, 8, 3, 4, rank=3), conv(3, 16, 3, 8, rank=3),
            conv(3, 32, 3, 6, rank=3), conv(17, 16, 3, 2), conv(16, 32, 3, 2, groups=16), conv(64, 64, 1, 4, stride=2),
            conv(20, 20, 3, 2, groups=20), conv(8, 8, 3, 2, stride=2, rank=3), conv(3, 8, 3, 2, stride=2, rank=3),
            conv(16, 16, 1, 2, groups=4), conv(18, 18, 3, 4, stride=2, groups=18)]
    ops += [MatMul("big", "Gemm", 1, 1, k, n, params=k * n) for k, n in ((4096, 4096), (8192, 2048), (2048, 4096))]
    assert {op_kind(op) for op in ops} == set(KINDS)
    samples = [Sample(op, estimate(truth, op, "float32").ms) for op in ops]
    fit = fit_roofline(samples, 200.0, 20.0)
    for kind in KINDS:
        if kind in ("matvec", "matvec_large"):  # memory-bound at every size: no efficiency shows in the times
            continue
        assert fit.roofline.efficiency[kind] == pytest.approx(truth.efficiency[kind], rel=0.05), kind
        assert fit.roofline.overhead_us[kind] == pytest.approx(truth.overhead_us[kind], rel=0.05), kind
    for kind in WORK_KINDS:
        assert fit.roofline.saturation.work[kind] == pytest.approx(2000.0, rel=0.1), kind
        assert kind not in fit.roofline.saturation.out_channels  # no figure the estimate would not use
    worst = max(abs(estimate(fit.roofline, s.op, "float32").ms / s.ms - 1) for s in samples)
    assert worst < 0.02
    # The baseline rate is the sweep's average throughput.
    total_macs = sum(cost_of(s.op).macs for s in samples)
    assert fit.macs_per_ms == pytest.approx(total_macs / sum(s.ms for s in samples))


def test_the_calibration_sweep_pins_every_kinds_overhead() -> None:
    """calibrate's own sweep (convs and onnxruntime's matmuls), timed on a known device: every kind it
    sweeps has a probe small enough to show its per-call overhead, so the fit cannot trade overhead for
    rate (a kind with only large probes was fitted 0.8 ms per call and an efficiency above the peak)."""
    kinds = sorted(KINDS)
    truth = Roofline({"float32": 200.0}, 20.0, {k: 0.2 + 0.6 * i / len(kinds) for i, k in enumerate(kinds)},
                     {k: 2.0 + 3.0 * (i % 5) for i, k in enumerate(kinds)},
                     memory_efficiency={"matvec": 0.3, "matvec_large": 0.2})
    ops = [*full_convs(), *sweep_matmuls()]
    samples = [Sample(op, estimate(truth, op, "float32").ms) for op in ops]
    fit = fit_roofline(samples, 200.0, 20.0).roofline
    for kind in {op_kind(op) for op in ops}:
        fastest_us = min(s.ms for s in samples if op_kind(s.op) == kind) * 1e3
        if truth.overhead_us[kind] < 0.01 * fastest_us:  # a GEMV of 67 MB or more: it cannot show, nor matter
            assert fit.overhead_us[kind] < 0.01 * fastest_us, kind
        else:
            assert fit.overhead_us[kind] == pytest.approx(truth.overhead_us[kind], rel=0.25, abs=0.5), kind
    assert max(fit.efficiency.values()) <= 1.0 + 1e-6


def test_fit_recovers_a_memory_share() -> None:
    """Depthwise convs that read their data at 0.4 of the copy bandwidth: a stride-2 one takes far
    more than a quarter of its stride-1 twin's time, which only the memory share explains."""
    truth = Roofline({"float32": 200.0}, 20.0, dict.fromkeys(KINDS, 0.6), dict.fromkeys(KINDS, 30.0),
                     Saturation(pixels=dict.fromkeys(KINDS, 30.0)), memory_efficiency={"depthwise": 0.4})
    ops = [conv(c, c, k, hw, groups=c, stride=s) for c in (32, 128, 512) for hw in (7, 14, 28, 56, 112)
           for k in (3, 5) for s in (1, 2)]
    ops += [conv(c, c, 3, hw) for c in (16, 64, 256) for hw in (4, 14, 56)]
    samples = [Sample(op, estimate(truth, op, "float32").ms) for op in ops]
    assert sum(estimate(truth, s.op, "float32").bound == "memory" for s in samples) > len(ops) / 3
    roof = fit_roofline(samples, 200.0, 20.0).roofline
    assert roof.memory_share("depthwise") == pytest.approx(0.4, rel=0.05)
    assert max(abs(estimate(roof, s.op, "float32").ms / s.ms - 1) for s in samples) < 0.02


def test_weights_beyond_the_cache_by_hand(tmp_path: Path) -> None:
    """A conv's weight bytes beyond the profile's cache are read at its rate, on top of the roofline's
    max(compute, memory); weights that fit change nothing, nor does a matrix multiply's. The figures
    load with their sources, dump and load back, and a malformed entry names its field."""
    from convcost.latency.devices import dump_profile

    doc = {**TINY, "weight_cache": {"cache_mb": {"value": 2, "source": "fit"},
                                    "bandwidth_gbs": {"value": 25, "source": "fit"}}}
    prof = load_profile(write_profile(tmp_path, doc))
    plain = load_profile(write_profile(tmp_path, TINY, "plain.yaml"))
    big = conv(512, 512, 3, 7)  # 512 x 512 x 9 weights and 512 biases: 9,439,232 bytes
    t = terms(prof.roofline, big, "float32")
    assert t.beyond_cache_s == pytest.approx((4 * (512 * 512 * 9 + 512) - 2e6) / 25e9)
    assert t.seconds == pytest.approx(terms(plain.roofline, big, "float32").seconds + t.beyond_cache_s)
    small = conv(128, 128, 3, 28)  # 0.59 MB of weights: inside the cache
    assert estimate(prof.roofline, small, "float32") == estimate(plain.roofline, small, "float32")
    fc = MatMul("fc", "Gemm", 1, 1, 4096, 4096, params=4096 * 4096)
    assert estimate(prof.roofline, fc, "float32") == estimate(plain.roofline, fc, "float32")
    assert prof.sources["weight_cache.bandwidth_gbs"] == "fit"
    again = load_profile(write_profile(tmp_path, yaml.safe_load(dump_profile(prof)), "again.yaml"))
    assert again.roofline == prof.roofline
    for bad, field in (({"cache_mb": {"value": 2, "source": "x"}}, "weight_cache.bandwidth_gbs: missing"),
                       ({**doc["weight_cache"], "l3_mb": {"value": 1, "source": "x"}}, "unknown key.*l3_mb"),
                       ({**doc["weight_cache"], "bandwidth_gbs": {"value": 0, "source": "x"}},
                        "weight_cache.bandwidth_gbs.value")):
        with pytest.raises(InputError, match=field):
            load_profile(write_profile(tmp_path, {**TINY, "weight_cache": bad}, "bad.yaml"))


def test_fit_recovers_the_weight_cache() -> None:
    """Convs with many weights on small maps (ResNet's last stage) run slower than their compute by
    the weights beyond the cache over its rate; the fit recovers both figures from a sweep that has
    such convs, and states none from a sweep whose convs all keep their weights in cache."""
    truth = Roofline({"float32": 200.0}, 20.0, dict.fromkeys(KINDS, 0.6), dict.fromkeys(KINDS, 10.0),
                     Saturation(pixels=dict.fromkeys(KINDS, 30.0)), weight_cache=WeightCache(2.0, 25.0))
    small = [conv(c, c, k, hw) for c in (16, 64, 128) for hw in (4, 14, 56) for k in (1, 3)]
    big = [conv(c, c, k, hw) for c in (256, 512, 1024) for hw in (2, 4, 7, 14) for k in (1, 3)]
    samples = [Sample(op, estimate(truth, op, "float32").ms) for op in small + big]
    assert max(terms(truth, op, "float32").beyond_cache_s / terms(truth, op, "float32").seconds for op in big) > 0.2
    fitted = fit_roofline(samples, 200.0, 20.0, cache_mb=1.0).roofline
    assert fitted.weight_cache is not None
    assert fitted.weight_cache.cache_mb == pytest.approx(2.0, rel=0.05)
    assert fitted.weight_cache.bandwidth_gbs == pytest.approx(25.0, rel=0.05)
    assert max(abs(estimate(fitted, s.op, "float32").ms / s.ms - 1) for s in samples) < 0.02
    cached = [Sample(op, estimate(truth, op, "float32").ms) for op in small]
    assert fit_roofline(cached, 200.0, 20.0, cache_mb=4.0).roofline.weight_cache is None


def test_a_real_calibration_prices_a_grouped_1x1_conv_by_its_compute() -> None:
    """On a real sweep of the reference machine, narrow-group convs are slow (a 128 -> 128 conv in 32
    groups at 9 GFLOP/s). Fitted with a memory share for every kind, the fit explained that as
    memory traffic at 0.15 of the copy bandwidth and priced the 4-group variant of MobileNet v2's
    144 -> 24 1x1 projection on 56x56 as memory-bound at 0.79-0.86 ms, slower than the original conv,
    where `bench` measured 0.42 ms for it against 0.60 ms for the original (fifth session, AK's host).
    This conv is of the grouped_pointwise kind (6 output channels per group), of which that sweep has
    one conv: the kind fits it at 0.28-0.32 ms. The check is that the estimate stays compute-bound
    and below the original's, at the copy's bandwidth."""
    from benchmarks.latency_offline import conv_from_json

    doc = json.loads((ROOT / "benchmarks/data/latency_offline/session5-a/calibrations.json").read_text())
    ops = {name: conv_from_json(d) for name, d in doc["ops"].items()}
    grouped = make_conv("g", "Conv", (1, 144, 56, 56), 24, (1, 1), (1, 1), (0, 0, 0, 0), groups=4)
    original = make_conv("o", "Conv", (1, 144, 56, 56), 24, (1, 1), (1, 1), (0, 0, 0, 0))
    for cal in doc["calibrations"]:
        samples = [Sample(ops[name], ms) for name, ms in cal["points_ms"].items()]
        roof = fit_roofline(samples, cal["peak_gflops"], cal["bandwidth_gbs"]).roofline
        assert estimate(roof, grouped, "float32").bound == "compute"
        assert estimate(roof, grouped, "float32").ms < estimate(roof, original, "float32").ms
        assert roof.memory_share("grouped") == 1.0


def test_fit_prices_matrix_multiplies_as_the_estimate_does() -> None:
    """The pixel fill describes conv kernels; the estimate leaves it out for a matrix multiply, and so
    must the fit. With it in the fit, a compute-bound classifier GEMV (2 threads here: 4096 x 4096 in
    2.4 ms) was explained as a tiny pixel fill at one row, which the estimate then dropped: AlexNet's
    9216 x 4096 layer came out at 3.0 ms against 5.4 ms measured."""
    truth = Roofline({"float32": 200.0}, 50.0, dict.fromkeys(KINDS, 0.5) | {"matvec_large": 0.05, "matvec": 0.1},
                     dict.fromkeys(KINDS, 20.0), Saturation(pixels=dict.fromkeys(KINDS, 30.0)))
    ops: list[Conv | MatMul] = [conv(c, c, 3, hw) for c in (16, 64, 256) for hw in (4, 14, 56)]
    ops += [MatMul("v", "Gemm", 1, 1, k, n, params=k * n) for k, n in ((1024, 1000), (2048, 1000), (512, 256))]
    ops += [MatMul("big", "Gemm", 1, 1, k, n, params=k * n) for k, n in ((4096, 4096), (8192, 2048))]
    samples = [Sample(op, estimate(truth, op, "float32").ms) for op in ops]
    assert all(estimate(truth, s.op, "float32").bound != "memory" for s in samples[-5:])
    roof = fit_roofline(samples, 200.0, 50.0).roofline
    alexnet_fc = MatMul("fc6", "Gemm", 1, 1, 9216, 4096, params=9216 * 4096)
    assert estimate(roof, alexnet_fc, "float32").ms == pytest.approx(estimate(truth, alexnet_fc, "float32").ms,
                                                                     rel=0.02)
    assert max(abs(estimate(roof, s.op, "float32").ms / s.ms - 1) for s in samples) < 0.02


def test_fit_gives_an_unswept_kind_its_parents_figures() -> None:
    """A sweep without 3-D convs prices them as dense convs, not with the fit's starting values."""
    ops = [conv(c, c, 3, hw) for c in (16, 64, 256) for hw in (4, 14, 56)]
    ops += [conv(c, 2 * c, 1, hw) for c in (16, 64, 256) for hw in (4, 14, 56)]
    samples = [Sample(op, 0.01 + cost_of(op).macs / 2e7) for op in ops]
    roof = fit_roofline(samples, 100.0, 10.0).roofline
    for kind in ("volumetric", "volumetric_small", "transposed"):
        assert roof.efficiency[kind] == roof.efficiency["dense"]
        assert roof.overhead_us[kind] == roof.overhead_us["dense"]
        assert roof.saturation.pixels[kind] == roof.saturation.pixels["dense"]
        assert roof.saturation.fill(kind, 196, 32, 288) == roof.saturation.fill("dense", 196, 32, 288)
        assert roof.memory_share(kind) == roof.memory_share("dense")


def test_estimates_are_finite_for_every_shipped_profile_and_dtype() -> None:
    from convcost.latency.devices import shipped_profiles

    ops = [conv(3, 32, 3, 32, stride=2), conv(32, 32, 3, 16, groups=32), conv(32, 64, 1, 16),
           conv(64, 64, 3, 8, groups=4), MatMul("fc", "Linear", 1, 1, 64, 10, 650)]
    for name, path in shipped_profiles().items():
        p = load_profile(path)
        for dtype in p.roofline.peak_gflops:
            for op in ops:
                est = p.estimate(op, dtype)
                assert math.isfinite(est.ms) and est.ms > 0, (name, dtype, op)


@pytest.mark.parametrize(("op", "share"), [
    # 3x3, padding 1, on 4 rows: output rows 0 and 3 read 2 input rows, rows 1 and 2 read 3
    (make_conv("c", "Conv", (1, 64, 4, 32), 64, (3, 3), (1, 1), (1, 1, 1, 1)), 10 / 12),
    # stride 2 on 7 rows: outputs at input rows 0, 2, 4, 6 read rows -1..1, 1..3, 3..5, 5..7
    (make_conv("c", "Conv", (1, 64, 7, 7), 64, (3, 3), (2, 2), (1, 1, 1, 1)), 10 / 12),
    # dilation 2, padding 2, on 5 rows: taps at y-2, y, y+2
    (make_conv("c", "Conv", (1, 64, 5, 5), 64, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)), 11 / 15),
    (make_conv("c", "Conv", (1, 64, 4, 32), 64, (1, 3), (1, 1), (0, 1, 0, 1)), 1.0),  # no kernel rows to skip
    (make_conv("c", "Conv", (1, 64, 4, 32), 64, (3, 3), (1, 1), (0, 0, 0, 0)), 1.0),  # no padding
    (make_conv("c", "Conv", (1, 77, 4, 32), 64, (3, 3), (1, 1), (1, 1, 1, 1)), 1.0),  # unaligned: im2col
    (make_conv("c", "Conv", (1, 64, 4, 4, 4), 64, (3, 3, 3), (1, 1, 1), (1,) * 6), 1.0),  # 3-D: vol2col
])
def test_a_direct_kernel_computes_only_the_kernel_rows_inside_the_input(op: Conv, share: float) -> None:
    """onnxruntime's blocked 2-D kernels skip the kernel rows that fall in the padding above and below
    (a 256 -> 256 3x3 conv on 2x64 takes 0.61 ms, on 4x32 0.78, on 16x8 0.87: the same 128 pixels).
    The share the compute term takes of the counted MACs; the counts themselves keep every tap."""
    from convcost.latency.kinds import computed_share

    assert computed_share(op) == pytest.approx(share)
    assert cost_of(op).macs == op.out_channels * math.prod(op.output_shape[2:]) * op.in_channels * math.prod(op.kernel)
