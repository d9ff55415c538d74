"""Every registry refuses a second entry under one key instead of silently replacing the first."""

from __future__ import annotations

import pytest

from convcost.cost import register_cost
from convcost.ir.model import Conv
from convcost.latency.kinds import KIND_RULES, KINDS, register_kind
from convcost.loaders import LOADERS, Loader, register_loader
from convcost.loaders.onnx.ops import HANDLERS, RULES
from convcost.loaders.spec import SHAPE_OPS
from convcost.render import FORMATS
from convcost.render.csvfmt import CsvFormat
from convcost.util.registry import DuplicateRegistration, Registry
from convcost.variants import SPATIAL, register_variant


def test_registry_keeps_order_and_refuses_a_duplicate() -> None:
    reg: Registry[str, int] = Registry("number")
    reg.add("b", 2)
    reg.register("a", "c")(1)
    assert list(reg) == ["b", "a", "c"] and dict(reg) == {"b": 2, "a": 1, "c": 1}
    with pytest.raises(DuplicateRegistration, match="number 'a' is registered twice"):
        reg.add("a", 3)
    assert reg["a"] == 1 and len(reg) == 3


@pytest.mark.parametrize("register", [
    lambda: register_cost(Conv)(lambda op, bpe: None),
    lambda: register_kind("dense", "again")(lambda op: True),
    lambda: register_loader(Loader("onnx", lambda path, head: False, "x:y")),
    lambda: HANDLERS.add(("", "Conv"), lambda ctx, node, index: None),
    lambda: RULES.add(("", "Conv"), lambda node, shapes, types: None),
    lambda: SHAPE_OPS.add("conv", lambda *args: ()),
    lambda: register_variant(SPATIAL),
    lambda: FORMATS.add("json", CsvFormat()),
])
def test_each_registry_of_convcost_refuses_a_duplicate(register) -> None:
    kinds, loaders = KINDS, list(LOADERS)
    with pytest.raises(DuplicateRegistration):
        register()
    assert list(LOADERS) == loaders
    assert tuple(KIND_RULES) == kinds
