"""A model's footprint: the megabytes one run touches, and the share of its memory traffic's sweep time
that traffic takes in a model of that footprint (convcost.latency.footprint).

Independent sources: hand calculations, and onnxruntime's own optimized graph (which ops the
footprint probes time).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from convcost.ir.model import MatMul, Node
from convcost.ir.shapes import make_conv
from convcost.latency.devices import DeviceProfile, dump_profile, load_profile
from convcost.latency.footprint import CONV, ColdWeights, Footprint, touched_mb
from convcost.latency.graph import FamilyFigures
from convcost.latency.kinds import KINDS, op_kind
from convcost.latency.roofline import Roofline, terms
from tests.conftest import assert_one_line_error, invoke

SHAPE = (1, 4, 8, 8)


def _chain() -> list[Node]:
    """x -> Conv (4x3x3x3 weights and a bias) -> y -> Relu -> z; Add(z, y) -> out."""
    conv = Node("c", "Conv", ("x", "w", "b"), ("y",), ((1, 3, 8, 8), (4, 3, 3, 3), (4,)), (SHAPE,), "float32",
                frozenset({1, 2}), counted=("conv", 0))
    relu = Node("r", "Relu", ("y",), ("z",), (SHAPE,), (SHAPE,), "float32")
    add = Node("a", "Add", ("z", "y"), ("out",), (SHAPE, SHAPE), (SHAPE,), "float32")
    return [conv, relu, add]


def test_touched_megabytes_by_hand() -> None:
    """Weights once: (4 x 3 x 9 + 4) x 4 B = 448 B. Activations: y lives until the Add, so at the Add
    y, z and out are live at once: 3 x 256 x 4 B = 3072 B (x, 192 elements, is freed after the conv)."""
    assert touched_mb(_chain()) == pytest.approx((448 + 3072) / 1e6)
    assert touched_mb(_chain(), "float16") == pytest.approx((224 + 1536) / 1e6)


def test_the_share_is_interpolated_in_log_megabytes() -> None:
    fp = Footprint({"elementwise": ((1.0, 0.5), (100.0, 2.0))})
    assert fp.share("elementwise", 10.0) == pytest.approx(0.5 + 1.5 * math.log(10) / math.log(100))
    assert fp.share("elementwise", 0.01) == 0.5  # beyond the ends: the end's
    assert fp.share("elementwise", 1e4) == 2.0
    assert fp.share("pooling", 10.0) == 1.0  # a family without points keeps the sweep's time


def _profile(footprint: Footprint | None) -> DeviceProfile:
    roof = Roofline({"float32": 100.0}, 10.0, dict.fromkeys(KINDS, 0.5), dict.fromkeys(KINDS, 1.0),
                    memory_efficiency={"depthwise": 0.4, "matvec_large": 0.2})
    ops = {"run": FamilyFigures(20.0), "elementwise": FamilyFigures(3.0, 0.5)}
    return DeviceProfile("p", "test", roof, "<test>", runtime={"name": "onnxruntime"}, ops=ops,
                         footprint=footprint)


def test_a_model_moves_its_bytes_at_the_share_of_its_footprint() -> None:
    """A share of 0.5 at this footprint halves the Relu's and the Add's bytes term (not their overhead)
    and a memory-bound depthwise conv's memory term; a classifier's weight stream keeps its time."""
    nodes = _chain()
    mb = touched_mb(nodes)
    fp = Footprint({"elementwise": ((mb, 0.5),), CONV: ((mb, 0.5),)})
    plain, seen = _profile(None), _profile(fp).for_model(nodes)
    relu_bytes, add_bytes = 2 * 256 * 4, 3 * 256 * 4

    def whole(p: DeviceProfile) -> float:
        return p.plan_whole(nodes, "float32").estimate([0.25], []).ms

    bytes_ms = (relu_bytes + add_bytes) / (10e9 * 0.5) * 1e3
    assert whole(plain) == pytest.approx(0.020 + 0.25 + 2 * 3e-3 + bytes_ms)
    assert whole(seen) == pytest.approx(0.020 + 0.25 + 2 * 3e-3 + bytes_ms * 0.5)
    dw = make_conv("dw", "Conv", (1, 64, 56, 56), 64, (3, 3), (1, 1), (1, 1, 1, 1), groups=64)
    assert op_kind(dw) == "depthwise"
    before, after = terms(plain.roofline, dw, "float32"), terms(seen.roofline, dw, "float32")
    assert after.memory_s == pytest.approx(before.memory_s * 0.5)
    assert after.compute_s == pytest.approx(before.compute_s)
    for k, n in ((4096, 4096), (512, 1000)):  # a classifier streaming 64 MB, and ResNet-18's 2 MB one
        fc = MatMul("fc", "Gemm", batch=1, m=1, k=k, n=n, params=k * n)
        assert op_kind(fc) in ("matvec_large", "matvec")
        assert terms(seen.roofline, fc, "float32").memory_s == pytest.approx(
            terms(plain.roofline, fc, "float32").memory_s)
    assert _profile(None).for_model(nodes) == plain  # no footprint figures: the profile as it is


def _relus(path: Path, channels: int) -> Path:
    import onnx
    from onnx import helper

    shape = [1, channels, 56, 56]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_analyze_prices_each_model_at_its_own_footprint(tmp_path: Path) -> None:
    """Two Relus on a 16-channel and on a 512-channel 56x56 map, from a profile file whose elementwise
    share is 0.5 up to 1 MB and 2 from 100 MB: the small model (0.4 MB live at once) moves its bytes at
    twice the bandwidth, the large one (12.8 MB) at the share interpolated there."""
    doc = {"name": "fp", "description": "test", "peak_gflops": {"float32": {"value": 100, "source": "t"}},
           "memory_bandwidth_gbs": {"value": 10, "source": "t"},
           "efficiency": {k: {"value": 0.5, "source": "t"} for k in ("dense", "pointwise", "depthwise", "grouped",
                                                                     "small_channel")},
           "overhead_us": {"value": 1, "source": "t"}, "runtime": {"name": "onnxruntime"}, "fusions": [],
           "ops": {"run": {"overhead_us": {"value": 20, "source": "t"}},
                   "elementwise": {"overhead_us": {"value": 3, "source": "t"},
                                   "memory_efficiency": {"value": 0.5, "source": "t"}}},
           "footprint": {"elementwise": {1: {"value": 0.5, "source": "t"}, 100: {"value": 2.0, "source": "t"}}}}
    with_fp = tmp_path / "fp.yaml"
    with_fp.write_text(yaml.safe_dump(doc))
    without = tmp_path / "plain.yaml"
    without.write_text(yaml.safe_dump({k: v for k, v in doc.items() if k != "footprint"}))
    for channels in (16, 512):
        model = _relus(tmp_path / f"r{channels}.onnx", channels)
        elements = channels * 56 * 56
        mb = 2 * elements * 4 / 1e6  # x and h live at the first Relu, h and y at the second
        share = 0.5 if mb <= 1 else 0.5 + 1.5 * math.log(mb) / math.log(100)
        bytes_ms = 2 * (2 * elements * 4) / (10e9 * 0.5) * 1e3
        got = {}
        for name, path in (("plain", without), ("fp", with_fp)):
            result = invoke("analyze", str(model), "-d", str(path), "-f", "json")
            assert result.code == 0, result.err
            got[name] = json.loads(result.out)["totals"]["latency_ms"]["fp"]
        assert got["plain"] == pytest.approx(0.020 + 2 * 3e-3 + bytes_ms, rel=1e-4)
        assert got["fp"] == pytest.approx(0.020 + 2 * 3e-3 + bytes_ms * share, rel=1e-4), channels


def test_a_profile_keeps_its_footprint_through_a_file(tmp_path: Path) -> None:
    from convcost.latency.devices import shipped_profiles

    fp = Footprint({"elementwise": ((8.0, 0.73), (768.0, 2.2)), CONV: ((8.0, 0.72), (768.0, 1.0))})
    base = load_profile(shipped_profiles()["xeon-8380"])
    profile = replace(base, footprint=fp, sources={**base.sources, **{
        f"footprint.{k}.{mb:g}": "measured" for k, pts in fp.points.items() for mb, _ in pts}})
    path = tmp_path / "p.yaml"
    path.write_text(dump_profile(profile))
    assert load_profile(path).footprint == fp
    assert "footprint.conv.768" in {f for f, _, _ in load_profile(path).figures()}


@pytest.mark.parametrize(("key", "section", "fragment"), [
    ("footprint", {"elementwize": {8: {"value": 1, "source": "t"}}}, "footprint: unknown key(s) elementwize"),
    ("footprint", {"elementwise": {"lots": {"value": 1, "source": "t"}}}, "footprint.elementwise: expected megabytes"),
    ("footprint", {"conv": {8: {"value": -1, "source": "t"}}}, "footprint.conv.8.value: must not be negative"),
    ("footprint", {"conv": {8: {"value": 1}}}, "footprint.conv.8.source: missing"),
    ("cold_weights", {"soon": {"value": 1, "source": "t"}}, "cold_weights: expected milliseconds"),
    ("cold_weights", {0: {"value": 1, "source": "t"}}, "cold_weights: expected milliseconds"),
    ("cold_weights", {8: {"value": -1, "source": "t"}}, "cold_weights.8.value: must not be negative"),
    ("cold_weights", {8: {"value": 1}}, "cold_weights.8.source: missing"),
    ("cold_weights", [1, 2], "cold_weights: expected a mapping"),
])
def test_a_bad_footprint_or_cold_weights_section_is_exit_2(tmp_path: Path, key: str, section: object,
                                                           fragment: str) -> None:
    from convcost.latency.devices import shipped_profiles

    doc = yaml.safe_load(shipped_profiles()["xeon-8380"].read_text())
    doc[key] = section
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    model = _relus(tmp_path / "r.onnx", 8)
    assert_one_line_error(invoke("analyze", str(model), "-d", str(path)), fragment, str(path))


def test_every_footprint_probe_times_the_op_after_its_producer() -> None:
    """Each produced graph writes every 4-D input with a 1x1 conv and ends in the probed op, the one
    whose kernel calibrate times (the last of its type: the conv probe's producer is a Conv too)."""
    from convcost.latency.ort_graphs import footprint_probes

    probes = footprint_probes()
    assert {p.key for p in probes} >= {"elementwise", "swish", "data_movement", "pooling", "softmax", CONV}
    for p in probes:
        alone, produced = p.alone.graph.node, p.produced.graph.node
        assert len(produced) > len(alone)
        assert all(n.op_type == "Conv" for n in produced[: len(produced) - len(alone)])
        assert produced[-1].op_type == alone[-1].op_type
        expected = {"swish": "QuickGelu", "gelu": "Gelu"}.get(p.key, alone[-1].op_type)
        assert p.op == expected


def test_cold_weights_are_interpolated_in_log_run_time() -> None:
    cold = ColdWeights(((5.0, 0.0), (20.0, 30.0)))
    assert cold.us_per_mb(10.0) == pytest.approx(30.0 * math.log(2) / math.log(4))
    assert cold.us_per_mb(1.0) == 0.0  # beyond the ends: the end's
    assert cold.us_per_mb(200.0) == 30.0
    assert ColdWeights(()).us_per_mb(10.0) == 0.0


def test_cold_weights_add_their_figure_per_megabyte_of_weights() -> None:
    """At 25 us per MB: a 512 -> 512 3x3 conv (2,359,296 weights + 512 biases, 9,439,232 B) adds
    0.236 ms; ResNet-18's classifier (513,000 weights) 0.0513 ms; an attention product (no weights)
    nothing; a classifier whose probes already run cold (matvec_large) nothing."""
    roof = replace(_profile(None).roofline, cold_weights_us_per_mb=25.0)
    conv = make_conv("c", "Conv", (1, 512, 7, 7), 512, (3, 3), (1, 1), (1, 1, 1, 1))
    fc = MatMul("fc", "Gemm", batch=1, m=1, k=512, n=1000, params=513_000)
    attention = MatMul("qk", "MatMul", batch=4, m=256, k=32, n=256, params=0)
    big = MatMul("fc6", "Gemm", batch=1, m=1, k=25088, n=4096, params=25088 * 4096)
    assert op_kind(big) == "matvec_large"
    plain = _profile(None).roofline
    assert terms(roof, conv, "float32").cold_weights_s == pytest.approx(9_439_232 / 1e6 * 25e-6)
    assert terms(roof, conv, "float32").seconds == pytest.approx(terms(plain, conv, "float32").seconds + 2.3598e-4)
    assert terms(roof, fc, "float32").cold_weights_s == pytest.approx(513_000 * 4 / 1e6 * 25e-6)
    assert terms(roof, attention, "float32").cold_weights_s == 0.0
    assert terms(roof, big, "float32").cold_weights_s == 0.0


def test_a_model_pays_cold_weights_at_its_own_run_time() -> None:
    """A chain of one conv: the profile prices the conv alone at 2.01 us (peak 100 GFLOP/s x 0.5:
    2 x 27,648 MACs x 22/24 (kernel rows outside the padding) / 50e9 = 1.014 us, over its bytes
    (448 + 768 + 1024) / 10 GB/s = 0.224 us; 1 us overhead), plus 20 us per run and 2 x 3 us +
    5,120 B / 5 GB/s for Relu and Add: 0.0290 ms in all. With figures of 0 up to 0.02 ms and 10 us per
    MB from 0.04 ms, it runs at 0.0290 ms and pays the figure interpolated there on its 448 weight
    bytes; the same model without convs passed pays none."""
    nodes = _chain()
    conv = make_conv("c", "Conv", (1, 3, 8, 8), 4, (3, 3), (1, 1), (1, 1, 1, 1))
    cold = ColdWeights(((0.02, 0.0), (0.04, 10.0)))
    profile = replace(_profile(None), cold_weights=cold)
    compute_ms = 2 * conv.macs * 22 / 24 / 50e9 * 1e3  # 22 of 24 kernel rows inside the 8 input rows
    run_ms = 0.020 + 1e-3 + compute_ms + 2 * 3e-3 + (2 * 256 * 4 + 3 * 256 * 4) / 5e9 * 1e3
    assert profile.whole(nodes, "float32", [profile.estimate(conv, "float32").ms], []).ms == pytest.approx(run_ms)
    us = 10.0 * math.log(run_ms / 0.02) / math.log(2)
    seen = profile.for_model(nodes, "float32", [conv])
    assert seen.roofline.cold_weights_us_per_mb == pytest.approx(us)
    assert seen.estimate(conv, "float32").ms == pytest.approx(profile.estimate(conv, "float32").ms + 448e-6 * us * 1e-3)
    assert profile.for_model(nodes, "float32").roofline.cold_weights_us_per_mb == 0.0


def test_a_profile_keeps_its_cold_weights_through_a_file(tmp_path: Path) -> None:
    from convcost.latency.devices import shipped_profiles

    cold = ColdWeights(((5.84, 1.96), (13.2, 21.1), (28.9, 37.4)))
    base = load_profile(shipped_profiles()["xeon-8380"])
    profile = replace(base, cold_weights=cold, sources={**base.sources, **{
        f"cold_weights.{ms:.3g}": "measured" for ms, _ in cold.points}})
    path = tmp_path / "p.yaml"
    path.write_text(dump_profile(profile))
    assert load_profile(path).cold_weights == cold
    assert "cold_weights.13.2" in {f for f, _, _ in load_profile(path).figures()}


def test_the_weight_chain_gives_each_conv_weights_of_its_own() -> None:
    import onnx

    from convcost.latency.ort_graphs import weight_chain

    model, weights = weight_chain(3, channels=8, side=5)
    graph = model.graph
    assert [n.op_type for n in graph.node] == ["Conv"] * 3
    assert len({n.input[1] for n in graph.node}) == 3
    assert [list(i.dims) for i in graph.initializer] == [[8, 8, 3, 3]] * 3
    # the data stays outside the protobuf: the session is given the arrays
    assert all(i.data_location == onnx.TensorProto.EXTERNAL and not i.raw_data for i in graph.initializer)
    assert {n.input[1]: weights[n.input[1]].shape for n in graph.node} == {f"w{i}": (8, 8, 3, 3) for i in range(3)}
    assert [n.input[0] for n in graph.node[1:]] == [n.output[0] for n in graph.node[:-1]]
