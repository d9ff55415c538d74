"""Which dtype each op is priced in: the model's own where it states one, else the analysis's.

A quantized op (`int8`) keeps its dtype whatever `--dtype` says: it computes in int8 by
definition. An op the model stores as float16 or bfloat16 is priced so unless `--dtype` is given
explicitly, which then applies to every float op (a user asking what the model would cost in
another precision). Without `--dtype`, a model whose float convs and matmuls all share one
stored dtype takes it as the analysis dtype, so the conventions state what was used; a model
that mixes dtypes keeps float32 there, and its layers carry their own (JSON `dtype`).
"""

from __future__ import annotations

from dataclasses import replace

from convcost.analysis.result import Settings
from convcost.ir.model import Model, Op

#: Dtypes a model stores floats in that an explicit `--dtype` overrides.
STORED_FLOATS = frozenset({"float16", "bfloat16"})
#: Quantized ops' dtype: kept whatever `--dtype` says.
QUANTIZED = "int8"


def resolve_dtype(model: Model, settings: Settings) -> tuple[Model, Settings]:
    """The model with each op's dtype as it is to be priced, and the settings' dtype for the rest."""
    ops: list[Op] = [*model.convs, *model.matmuls]
    if not settings.dtype_from_model:
        if any(op.dtype in STORED_FLOATS for op in ops):
            model = replace(
                model,
                convs=[c.with_changes(dtype=None) if c.dtype in STORED_FLOATS else c for c in model.convs],
                matmuls=[replace(m, dtype=None) if m.dtype in STORED_FLOATS else m for m in model.matmuls],
            )
        return model, settings
    stored = {op.dtype for op in ops if op.dtype != QUANTIZED}
    only = stored.pop() if len(stored) == 1 else None
    if only is not None:
        settings = replace(settings, dtype=only)
    return model, settings


def stored_dtypes(model: Model) -> set[str]:
    """The float dtypes the model's ops are stored in (not float32, not quantized)."""
    ops: list[Op] = [*model.convs, *model.matmuls]
    return {op.dtype for op in ops if op.dtype is not None and op.dtype in STORED_FLOATS}
