"""The cost model against hand calculations and published tables."""

from __future__ import annotations

import math

import pytest

from convcost.cost import Cost, cost_of, total_cost
from convcost.ir.model import MatMul
from convcost.ir.shapes import make_conv
from convcost.variants import plan_variant
from convcost.variants.base import VariantOptions


def macs(conv) -> int:
    return cost_of(conv).macs


def test_seed_example_12x12x3_256_filters_5x5():
    # 12x12x3 input, 256 filters 5x5, valid padding -> 8x8x256.
    conv = make_conv("c", "Conv", (1, 3, 12, 12), 256, (5, 5), bias=False)
    assert conv.output_shape == (1, 256, 8, 8)
    assert macs(conv) == 8 * 8 * 256 * 3 * 5 * 5 == 1_228_800
    plan = plan_variant("depthwise", conv, VariantOptions())
    dw, pw = (cost_of(layer).macs for layer in plan.layers)
    assert (dw, pw) == (3 * 8 * 8 * 25, 3 * 256 * 8 * 8) == (4_800, 49_152)
    assert round(1_228_800 / (dw + pw), 1) == 22.8


def test_64x64x3_example_keeps_input_channels():
    # 3x3 valid conv, 3 -> 256 on 64x64x3: 62x62 output. The widely shared 9.24x forgets C_in.
    conv = make_conv("c", "Conv", (1, 3, 64, 64), 256, (3, 3), bias=False)
    assert macs(conv) == 62 * 62 * 256 * 3 * 9 == 26_569_728
    plan = plan_variant("depthwise", conv, VariantOptions())
    parts = [cost_of(layer).macs for layer in plan.layers]
    assert parts == [62 * 62 * 3 * 9, 62 * 62 * 3 * 256] == [103_788, 2_952_192]
    ratio = 26_569_728 / sum(parts)
    assert ratio == pytest.approx(1 / (1 / 256 + 1 / 9))
    assert round(ratio, 2) == 8.69


def test_mobilenet_table3_layer():
    # MobileNet v1 paper, Table 3: 14x14x512, 3x3, 512 -> 512.
    conv = make_conv("c", "Conv", (1, 512, 14, 14), 512, (3, 3), padding=(1, 1, 1, 1), bias=False)
    cost = cost_of(conv)
    assert round(cost.macs / 1e6) == 462
    assert round(cost.params / 1e6, 2) == 2.36
    plan = plan_variant("depthwise", conv, VariantOptions())
    variant = total_cost(plan.layers)
    assert round(variant.macs / 1e6, 1) == 52.3
    assert round(variant.params / 1e6, 2) == 0.27


def test_depthwise_spatial_variant_is_6_instead_of_9_per_output():
    conv = make_conv("dw", "Conv", (1, 32, 20, 20), 32, (3, 3), padding=(1, 1, 1, 1), groups=32, bias=False)
    outputs = math.prod(conv.output_shape)
    assert macs(conv) / outputs == 9
    plan = plan_variant("spatial", conv, VariantOptions())
    assert [layer.kernel for layer in plan.layers] == [(3, 1), (1, 3)]
    assert total_cost(plan.layers).macs / outputs == 6


def test_bias_is_a_param_not_a_mac_and_flops_are_twice_macs():
    with_bias = cost_of(make_conv("a", "Conv", (2, 8, 10, 10), 16, (3, 3), bias=True))
    without = cost_of(make_conv("b", "Conv", (2, 8, 10, 10), 16, (3, 3), bias=False))
    assert with_bias.params == without.params + 16 == 16 * 8 * 9 + 16
    assert with_bias.macs == without.macs == 2 * 16 * 8 * 8 * 8 * 9
    assert with_bias.flops == 2 * with_bias.macs


def test_memory_bytes_follow_dtype():
    conv = make_conv("a", "Conv", (1, 4, 8, 8), 8, (3, 3), padding=(1, 1, 1, 1))
    for dtype, size in (("float32", 4), ("float16", 2), ("bfloat16", 2), ("int8", 1)):
        c = cost_of(conv, dtype)
        assert c.weight_bytes == (8 * 4 * 9 + 8) * size
        assert c.input_bytes == 4 * 64 * size
        assert c.output_bytes == 8 * 64 * size
    # A conv whose model fixes its dtype (quantized) ignores --dtype.
    q = conv.with_changes(dtype="int8")
    assert cost_of(q, "float32").input_bytes == 4 * 64


def test_grouped_and_dilated_conv():
    conv = make_conv("g", "Conv", (1, 64, 32, 32), 128, (3, 3), padding=(2, 2, 2, 2), dilation=(2, 2), groups=4)
    assert conv.output_shape == (1, 128, 32, 32)
    assert macs(conv) == 128 * 32 * 32 * (64 // 4) * 9


def test_conv_transpose_counts_per_input_element():
    # PyTorch ConvTranspose2d(16, 8, 4, stride=2, padding=1): 7x7 -> 14x14.
    conv = make_conv("t", "ConvTranspose", (1, 16, 7, 7), 8, (4, 4), (2, 2), (1, 1, 1, 1))
    assert conv.output_shape == (1, 8, 14, 14)
    assert macs(conv) == 16 * 7 * 7 * 8 * 16
    assert cost_of(conv).params == 16 * 8 * 16 + 8


@pytest.mark.parametrize("rank,spatial", [(1, (50,)), (2, (9, 11)), (3, (4, 6, 5))])
def test_any_spatial_rank(rank, spatial):
    conv = make_conv("c", "Conv", (3, 6, *spatial), 12, (3,) * rank, padding=(1,) * (2 * rank))
    assert conv.output_shape == (3, 12, *spatial)
    assert macs(conv) == 3 * 12 * math.prod(spatial) * 6 * 3**rank


def test_matmul_and_cost_addition():
    mm = MatMul("fc", "Gemm", batch=1, m=4, k=512, n=1000, params=512 * 1000 + 1000)
    c = cost_of(mm)
    assert c.macs == 4 * 512 * 1000
    assert (c + Cost(params=1, macs=2)).macs == c.macs + 2
