"""The cost formula of matrix multiplies: Gemm, MatMul, Linear, Einsum."""

from __future__ import annotations

from convcost.cost.core import Cost, register_cost
from convcost.ir.model import MatMul


@register_cost(MatMul)
def _matmul_cost(mm: MatMul, bpe: int) -> Cost:
    return Cost(
        params=mm.params,
        macs=mm.macs,
        weight_bytes=mm.params * bpe,
        input_bytes=mm.batch * mm.m * mm.k * bpe,
        output_bytes=mm.batch * mm.m * mm.n * bpe,
    )
