"""The cost of convolutions and transposed convolutions (any spatial rank, any groups): their own
counts (`Conv.macs`, `Conv.params`, one formula each in convcost.ir.model) priced in bytes."""

from __future__ import annotations

from convcost.cost.core import Cost, register_cost
from convcost.ir.model import Conv, numel


def conv_weight_count(conv: Conv) -> int:
    """Weight elements: C_out x C_in/g x prod(k) (the same count for ConvTranspose)."""
    return conv.weight_count


@register_cost(Conv)
def _conv_cost(conv: Conv, bpe: int) -> Cost:
    """MACs and params are the conv's own counts (`Conv.macs`, `Conv.params`); bytes at `bpe`."""
    params = conv.params
    return Cost(
        params=params,
        macs=conv.macs,
        weight_bytes=params * bpe,
        input_bytes=numel(conv.input_shape) * bpe,
        output_bytes=numel(conv.output_shape) * bpe,
    )
