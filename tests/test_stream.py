"""Large models: plans shared per conv geometry, JSON/CSV written per layer, byte for byte what the
whole-document path writes (the standard library's `json.dumps(indent=2)` is the reference)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcost.analysis import analyzer
from convcost.analysis.analyzer import analyze
from convcost.analysis.result import Settings
from convcost.cost import Cost, cost_of
from convcost.ir.model import Conv, Model
from convcost.ir.shapes import make_conv
from convcost.latency.devices import resolve_devices
from convcost.render import View, jsontext, render, render_chunks
from convcost.render.jsonfmt import analysis_dict
from convcost.util.outfile import write_atomic
from convcost.variants import Plan, VariantOptions, plan_variant
from convcost.variants.approximator import Approximator
from tests.conftest import invoke

# --- the encoder against json.dumps ------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text()
           | st.floats(allow_nan=True, allow_infinity=True))
keys = st.text() | st.integers(-5, 5) | st.booleans() | st.none() | st.floats(allow_nan=False)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=30)


@given(values, st.integers(0, 5))
def test_encode_writes_what_json_dumps_writes(value, level):
    expected = json.dumps(value, indent=2).replace("\n", "\n" + "  " * level)
    assert jsontext.encode(value, level) == expected


def test_encode_treats_subclasses_as_json_does_and_refuses_the_rest():
    class Name(str):
        pass

    class Count(int):
        pass

    value = {Name("a"): [Count(3), np.float64(0.5), True], "b": {"c": ()}}
    assert jsontext.encode(value) == json.dumps(value, indent=2)
    with pytest.raises(TypeError):
        jsontext.encode({"x": {1, 2}})
    with pytest.raises(TypeError):
        jsontext.encode({(1, 2): 3})


# --- models ---------------------------------------------------------------------------------------

def chain(n: int, channels: int = 8, size: int = 12, weights: bool = False) -> Model:
    """n 3x3 convs of one geometry (a 1x1 conv every fifth), each named and weighted apart."""
    rng = np.random.default_rng(0)
    convs = []
    for i in range(n):
        k = 1 if i % 5 == 4 else 3
        conv = make_conv(f"conv{i}", "Conv", (1, channels, size, size), channels, (k, k), padding=(k // 2,) * 4)
        if weights:
            w = rng.standard_normal((channels, channels, k, k))
            conv = conv.with_changes(weight=lambda w=w: w)
        convs.append(conv)
    return Model("chain", "onnx", "chain.onnx", {"x": (1, channels, size, size)}, convs)


def whole_json(analysis, view: View) -> str:
    return json.dumps(analysis_dict(analysis, view), indent=2) + "\n"


@pytest.mark.parametrize("view", [View(), View(sort="macs", top=3), View(sort="name")])
@pytest.mark.parametrize("devices", [(), ("rpi4", "t4")])
def test_streamed_json_is_the_whole_document_byte_for_byte(view, devices):
    model = chain(12, weights=True)
    settings = Settings(approx=True, skip=("conv7",), options=VariantOptions(rank=4, groups=2))
    analysis = analyze(model, settings, resolve_devices(devices), approx=Approximator())
    pieces = list(render_chunks("analysis", "json", analysis, view))
    shown = view.top or len(model.convs)
    assert len(pieces) == shown + 2  # head, one per layer, tail
    assert "".join(pieces) == whole_json(analysis, view) == render("analysis", "json", analysis, view)
    data = json.loads("".join(pieces))
    assert data["layers"][0]["variants"]["spatial"]["approx_error"] > 0


def test_streamed_json_of_a_model_without_convs():
    analysis = analyze(Model("empty", "onnx", "e.onnx", {"x": (1, 3)}, []))
    assert "".join(render_chunks("analysis", "json", analysis, View())) == whole_json(analysis, View())


def test_csv_comes_in_pieces_that_join_to_the_whole():
    analysis = analyze(chain(1_100), devices=resolve_devices(["rpi4"]))
    pieces = list(render_chunks("analysis", "csv", analysis, View()))
    assert len(pieces) == 3  # 500 rows a piece
    text = "".join(pieces)
    assert text == render("analysis", "csv", analysis, View())
    assert len(text.splitlines()) == 1 + 1_100


# --- shared plans --------------------------------------------------------------------------------

def test_layers_of_one_geometry_share_a_plan_and_keep_their_own_names():
    model = chain(10)
    options = VariantOptions()
    analysis = analyze(model)
    first, again = analysis.layers[0], analysis.layers[1]
    for name in ("spatial", "depthwise", "grouped"):
        assert again.variants[name].planned is first.variants[name].planned
    for layer in analysis.layers:
        for name, v in layer.variants.items():
            direct = plan_variant(name, layer.conv, options)  # planned for this very conv
            assert v.plan == direct
            assert v.stage_names == [c.name for c in direct.layers]
            if direct.applicable:
                assert v.cost == sum((cost_of(c) for c in direct.layers), Cost())
                assert v.stage_costs == tuple(cost_of(c) for c in direct.layers)
    assert analysis.layers[1].variants["spatial"].stage_names == ["conv1/spatial.0", "conv1/spatial.1"]


def test_a_plan_whose_stages_are_not_named_after_the_conv_is_not_shared(monkeypatch):
    def odd(name: str, conv: Conv, options: VariantOptions) -> Plan:
        return Plan(True, None, (conv.with_changes(name="stage"),))

    monkeypatch.setattr(analyzer, "plan_variant", odd)
    analysis = analyze(chain(3), Settings(variants=("grouped",)))
    a, b = (layer.variants["grouped"] for layer in analysis.layers[:2])
    assert a.planned is not b.planned
    assert a.stage_names == b.stage_names == ["stage"]


def test_totals_are_the_sum_over_layers():
    model = chain(20)
    analysis = analyze(model)
    assert analysis.totals.macs == sum(cost_of(c).macs for c in model.convs)
    for name in ("spatial", "depthwise", "grouped"):
        expected = sum((sum(cost_of(s).macs for s in plan_variant(name, c, VariantOptions()).layers)
                        if plan_variant(name, c, VariantOptions()).applicable else cost_of(c).macs)
                       for c in model.convs)
        assert analysis.variant_totals[name].macs == expected


# --- writing pieces ------------------------------------------------------------------------------

def test_write_atomic_takes_pieces_and_keeps_the_old_file_when_making_them_fails(tmp_path):
    out = tmp_path / "a.json"
    write_atomic(out, (str(i) for i in range(5)))
    assert out.read_text() == "01234"

    def broken():
        yield "new"
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError):
        write_atomic(out, broken())
    assert out.read_text() == "01234"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_cli_file_and_stdout_hold_the_same_json(tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("name: m\ninput: [1, 8, 16, 16]\nlayers:\n"
                     + "".join(f"  - {{name: c{i}, type: conv, out: 8, kernel: 3, padding: 1}}\n"
                               for i in range(30)))
    shown = invoke("analyze", str(model), "-f", "json")
    assert shown.code == 0, shown.err
    written = invoke("analyze", str(model), "-f", "json", "-o", str(tmp_path / "out.json"))
    assert written.code == 0, written.err
    text = (tmp_path / "out.json").read_text()
    assert text == shown.out
    assert len(json.loads(text)["layers"]) == 30
