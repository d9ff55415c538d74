"""The cost formula of convolutions and transposed convolutions (any spatial rank, any groups)."""

from __future__ import annotations

import math

from convcost.cost.core import Cost, register_cost
from convcost.ir.model import Conv, numel


def conv_weight_count(conv: Conv) -> int:
    """Weight elements: C_out x C_in/g x prod(k) (the same count for ConvTranspose)."""
    return conv.in_channels * conv.out_channels // conv.groups * math.prod(conv.kernel)


@register_cost(Conv)
def _conv_cost(conv: Conv, bpe: int) -> Cost:
    batch = conv.input_shape[0]
    per_output = (conv.in_channels // conv.groups) * math.prod(conv.kernel)
    if conv.op == "ConvTranspose":
        # Every input element scatters into C_out/g x prod(k) outputs.
        macs = batch * conv.in_channels * numel(conv.input_shape[2:]) * (
            conv.out_channels // conv.groups
        ) * math.prod(conv.kernel)
    else:
        macs = batch * conv.out_channels * numel(conv.output_shape[2:]) * per_output
    params = conv_weight_count(conv) + (conv.out_channels if conv.bias else 0)
    return Cost(
        params=params,
        macs=macs,
        weight_bytes=params * bpe,
        input_bytes=numel(conv.input_shape) * bpe,
        output_bytes=numel(conv.output_shape) * bpe,
    )
