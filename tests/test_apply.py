"""`convcost apply`: the written model is valid ONNX, costs exactly what analyze predicted, and
computes what the factorization says, checked here independently of apply's own proof:

- exact factorizations (depthwise m >= k*k, spatial R >= min(C_in*k_h, C_out*k_w), a Sobel/Gabor
  bank at rank 1 per group, grouped on a block-diagonal kernel) reproduce the outputs within 1e-4
  in onnxruntime, run here on inputs apply never saw;
- every variant of 10 ONNX models (ConvTranspose, 1-D, 3-D, grouped, dilated, strided,
  asymmetric pads, auto_pad SAME/VALID, output_shape) and of torch exports (legacy and dynamo):
  `analyze` of the written file gives exactly `analyze`'s variant totals of the original, and
  onnxruntime runs it with the original's output shapes;
- kernels with structure (a small net trained here, Sobel/Gabor banks): each conv's weight error
  equals analyze's approx_error, and its output error on white noise matches it;
- bad input exits 2 with one line and leaves no OUT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import assert_one_line_error, invoke
from tests.factorize_models import ONNX_MODELS, chain, k, onnx_model, torch_export, torch_models, trained_net

VARIANTS = ("spatial", "depthwise", "grouped")
SOBEL_X = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])


def run_ort(path: Path, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(b.astype(np.float64) - a) / np.linalg.norm(a.astype(np.float64)))


def apply_json(*args: str) -> dict:
    result = invoke("apply", *args, "-f", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def analyze_json(*args: str) -> dict:
    result = invoke("analyze", *args, "-f", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def gabor(size: int, wavelength: float, sigma: float, axis: int) -> np.ndarray:
    """An axis-aligned (so separable) Gabor filter: a Gaussian envelope times a cosine along `axis`."""
    r = np.arange(size) - size // 2
    envelope = np.exp(-r**2 / (2 * sigma**2))
    wave = envelope * np.cos(2 * np.pi * r / wavelength)
    return np.outer(wave, envelope) if axis == 0 else np.outer(envelope, wave)


# --- exact cases --------------------------------------------------------------------------------------

def _exact_models(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    rng = np.random.default_rng(1)
    block = rng.standard_normal((8, 8, 3, 3))
    block[:4, 4:] = 0  # block-diagonal in (out, in): exactly 2 groups
    block[4:, :4] = 0
    bank = np.stack([SOBEL_X, SOBEL_X.T, gabor(3, 3.0, 1.0, 0), gabor(3, 3.0, 1.0, 1)])[:, None]
    bank5 = np.stack([gabor(5, 4.0, 1.5, 0), gabor(5, 4.0, 1.5, 1), np.outer([1, 4, 6, 4, 1], [-1, -2, 0, 2, 1]),
                      np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1])])[:, None]
    return {
        # depthwise m >= k*k: each input channel's C_out x 9 slice has rank <= 9
        "depthwise_m9": (chain(folder / "dw.onnx", (1, 4, 10, 10), [
            ("Conv", (6, 4, 3, 3), k(3, 3, pads=[1, 0, 2, 1]), True),
            ("ConvTranspose", (6, 4, 3, 3), k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1]), True)]),
            ["-V", "depthwise", "--depth-multiplier", "9"]),
        # spatial R >= min(C_in*k_h, C_out*k_w) = 12 for both convs
        "spatial_full_rank": (chain(folder / "sp.onnx", (1, 4, 9, 9), [
            ("Conv", (6, 4, 3, 3), k(3, 3, pads=[1, 1, 1, 1], strides=[1, 2]), True),
            ("Conv", (4, 6, 3, 3), k(3, 3, pads=[2, 2, 2, 2], dilations=[2, 2]), True)]),
            ["-V", "spatial", "--rank", "12"]),
        # a bank of separable filters (one per channel, depthwise) at rank 1 per group
        "sobel_gabor_bank": (chain(folder / "bank.onnx", (1, 4, 16, 16), [
            ("Conv", (4, 1, 3, 3), k(3, 3, group=4, pads=[1, 1, 1, 1]), True),
            ("Conv", (4, 1, 5, 5), k(5, 5, group=4, pads=[2, 2, 2, 2], strides=[2, 2]), False)],
            weights={0: bank, 1: bank5}), ["-V", "spatial", "--rank", "4"]),
        "sobel_rank1": (chain(folder / "sobel.onnx", (1, 1, 12, 12), [
            ("Conv", (1, 1, 3, 3), k(3, 3, pads=[1, 1, 1, 1]), False)], weights={0: SOBEL_X[None, None]}),
            ["-V", "spatial", "--rank", "1"]),
        # grouped G=2 on a kernel that is block-diagonal with 2 blocks
        "grouped_block_diagonal": (chain(folder / "blocks.onnx", (1, 8, 8, 8), [
            ("Conv", (8, 8, 3, 3), k(3, 3, pads=[1, 1, 1, 1]), True)], weights={0: block}),
            ["-V", "grouped", "--groups", "2"]),
    }


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    return _exact_models(tmp_path_factory.mktemp("exact"))


@pytest.mark.parametrize("case", ["depthwise_m9", "spatial_full_rank", "sobel_gabor_bank", "sobel_rank1",
                                  "grouped_block_diagonal"])
def test_exact_factorizations_reproduce_the_outputs(exact, case: str, tmp_path: Path) -> None:
    model, args = exact[case]
    out = tmp_path / "out.onnx"
    doc = apply_json(str(model), *args, "-o", str(out))
    assert doc["layers"] and not doc["kept"]
    for layer in doc["layers"]:
        assert layer["approx_error"] < 1e-6 and layer["weight_error"] < 1e-6, layer
        assert layer["output_error"] < 1e-4, layer
    assert all(e < 1e-4 for e in doc["proof"]["output_errors"].values())
    # independently: onnxruntime on inputs apply never saw
    x_shape = next(iter(analyze_json(str(model), "-V", "none")["model"]["inputs"].values()))
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    (want,), (got,) = run_ort(model, x), run_ort(out, x)
    assert got.shape == want.shape
    assert rel(want, got) < 1e-4


# --- every variant, many conv forms: counts exactly as predicted, shapes as the original's -----------------

@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    folder = tmp_path_factory.mktemp("models")
    found = {name: onnx_model(name, folder) for name in ONNX_MODELS}
    for name, (factory, shape) in torch_models().items():
        found[f"torch_{name}"] = torch_export(factory(), torch.randn(shape), folder / f"{name}.onnx")
    factory, shape = torch_models()["small_net"]
    found["dynamo_small_net"] = torch_export(factory(), torch.randn(shape), folder / "dyn.onnx", dynamo=True)
    return found


MODEL_NAMES = [*ONNX_MODELS, *(f"torch_{n}" for n in ("small_net", "decoder", "shared", "audio1d")),
               "dynamo_small_net"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_applied_model_costs_what_analyze_predicts(models, name: str, variant: str, tmp_path: Path) -> None:
    model = models[name]
    out = tmp_path / "out.onnx"
    doc = apply_json(str(model), "-V", variant, "-o", str(out))
    predicted = analyze_json(str(model), "-V", variant)
    again = analyze_json(str(out), "-V", "none")
    vt = predicted["variant_totals"][variant]
    assert (again["totals"]["params"], again["totals"]["macs"]) == (vt["params"], vt["macs"])
    assert doc["totals"]["counts_match"]
    # every conv analyze calls applicable was replaced, the others kept with analyze's reason
    applicable = {layer["name"]: layer["variants"][variant] for layer in predicted["layers"]}
    assert {x["name"] for x in doc["layers"]} == {n for n, v in applicable.items() if v["applicable"]}
    for kept in doc["kept"]:
        assert kept["reason"] == applicable[kept["name"]]["reason"]
    # weight error is analyze's approx_error; the stages carry analyze's names
    for layer in doc["layers"]:
        want = applicable[layer["name"]]
        assert layer["approx_error"] == pytest.approx(want["approx_error"], abs=1e-6)
        assert layer["weight_error"] == pytest.approx(want["approx_error"], abs=1e-6)
        assert layer["stages"] == [s["name"] for s in want["layers"]]
    onnx.checker.check_model(str(out), full_check=True)
    x_shape = next(iter(predicted["model"]["inputs"].values()))
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    want_out, got_out = run_ort(model, x), run_ort(out, x)
    assert [o.shape for o in got_out] == [o.shape for o in want_out]


def test_stage_nodes_carry_analyze_names_weights_and_the_bias_last(models, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    apply_json(str(models["basic_asym_pads"]), "-V", "spatial", "--rank", "4", "-o", str(out))
    graph = onnx.load(str(out)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert [n.name for n in convs] == ["conv0/spatial.0", "conv0/spatial.1", "conv1/spatial.0", "conv1/spatial.1"]
    assert [list(n.input[2:]) for n in convs] == [[], ["b0"], [], ["b1"]]
    attrs = {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in convs}
    # conv1: 3x3, strides 2x2, pads [0, 1, 2, 1] -> the row stage takes axis 0, the column stage axis 1
    assert attrs["conv1/spatial.0"]["kernel_shape"] == [3, 1]
    assert attrs["conv1/spatial.0"]["strides"] == [2, 1] and attrs["conv1/spatial.0"]["pads"] == [0, 0, 2, 0]
    assert attrs["conv1/spatial.1"]["strides"] == [1, 2] and attrs["conv1/spatial.1"]["pads"] == [0, 1, 0, 1]
    inits = {t.name: t for t in graph.initializer}
    assert "w0" not in inits and "w1" not in inits  # the replaced weights are gone
    assert list(inits["conv0/spatial.0.weight"].dims) == [4, 4, 3, 1]


def test_auto_pad_stays_on_the_stages(models, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    apply_json(str(models["auto_pad_same"]), "-V", "depthwise", "-o", str(out))
    pads = {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}.get("auto_pad")
            for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"}
    assert pads["conv0/depthwise"] == pads["conv0/pointwise"] == b"SAME_UPPER"
    assert pads["conv1/depthwise"] == b"SAME_LOWER" and pads["conv2/depthwise"] == b"VALID"


def test_the_rest_of_the_graph_is_untouched(models, tmp_path: Path) -> None:
    source = models["torch_small_net"]
    out = tmp_path / "out.onnx"
    apply_json(str(source), "-V", "spatial", "-o", str(out))
    before, after = onnx.load(str(source)), onnx.load(str(out))

    def opsets(m: onnx.ModelProto) -> list[tuple[str, int]]:
        return [(o.domain, o.version) for o in m.opset_import]

    def node(n: onnx.NodeProto) -> tuple:
        return (n.op_type, n.domain, n.name, list(n.input), list(n.output),
                [a.SerializeToString() for a in n.attribute])

    assert opsets(after) == opsets(before)
    assert (after.ir_version, after.producer_name, after.producer_version) == \
        (before.ir_version, before.producer_name, before.producer_version)
    assert [i.SerializeToString() for i in after.graph.input] == [i.SerializeToString() for i in before.graph.input]
    assert [o.SerializeToString() for o in after.graph.output] == \
        [o.SerializeToString() for o in before.graph.output]
    others = [node(n) for n in before.graph.node if n.op_type != "Conv"]
    assert others and [node(n) for n in after.graph.node if n.op_type != "Conv"] == others


def test_metadata_and_fp16_weights_are_kept(tmp_path: Path) -> None:
    model = chain(tmp_path / "half.onnx", (1, 4, 8, 8), [("Conv", (8, 4, 3, 3), k(3, 3, pads=[1] * 4), True)],
                  dtype=np.float16)
    out = tmp_path / "out.onnx"
    doc = apply_json(str(model), "-V", "spatial", "--rank", "4", "-o", str(out))
    written = onnx.load(str(out))
    assert {p.key: p.value for p in written.metadata_props} == {"origin": "convcost tests"}
    assert {t.data_type for t in written.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert doc["totals"]["counts_match"]


def test_external_data_is_written_beside_out(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    model = onnx_model("basic_asym_pads", src)
    proto = onnx.load(str(model))
    onnx.save_model(proto, str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    dest = tmp_path / "dest"
    dest.mkdir()
    out = dest / "out.onnx"
    doc = apply_json(str(model), "-V", "depthwise", "-o", str(out))
    assert doc["external_data"] == str(dest / "out.onnx.data")
    assert sorted(p.name for p in dest.iterdir()) == ["out.onnx", "out.onnx.data"]
    locations = {e.value for t in onnx.load(str(out), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == {"out.onnx.data"}
    x = np.random.default_rng(0).standard_normal((1, 4, 12, 12)).astype(np.float32)
    assert run_ort(out, x)[0].shape == run_ort(model, x)[0].shape


# --- structured kernels: a net trained here ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_net(tmp_path_factory.mktemp("trained") / "trained.onnx")


@pytest.mark.parametrize("args", [["-V", "spatial", "--rank", "auto", "--tol", "0.2"],
                                  ["-V", "depthwise", "--rank", "auto", "--tol", "0.3"],
                                  ["-V", "depthwise", "--depth-multiplier", "2"], ["-V", "grouped", "--groups", "2"]])
def test_trained_kernels_errors_are_analyzes_and_show_in_the_outputs(trained: Path, args: list[str],
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    doc = apply_json(str(trained), *args, "-o", str(out))
    variant = args[1]
    predicted = {layer["name"]: layer["variants"][variant] for layer in analyze_json(str(trained), *args)["layers"]}
    assert doc["layers"]
    for layer in doc["layers"]:
        want = predicted[layer["name"]]
        assert layer["weight_error"] == pytest.approx(want["approx_error"], abs=1e-6)
        if "--tol" in args:
            assert layer["weight_error"] <= float(args[-1]) + 1e-9
            assert layer["options"] == {("rank" if variant == "spatial" else "depth_multiplier"): want["rank"]}
        # on white noise the output error of a conv is its weight error (up to padding and sampling)
        if layer["weight_error"] > 0.01:
            assert layer["output_error"] == pytest.approx(layer["weight_error"], rel=0.25), layer
    assert doc["totals"]["counts_match"]


# --- what apply says, and without onnxruntime ---------------------------------------------------------------

def test_table_output_states_the_proof(models, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    result = invoke("apply", str(models["grouped"]), "-V", "grouped", "-o", str(out), "-d", "rpi4")
    assert result.code == 0, result.err
    text = result.out
    assert "conv0" in text and "grouped G=4" in text
    assert "Re-analysing the written model gives exactly these params and MACs" in text
    assert "Estimated latency on rpi4" in text and "onnxruntime" in text
    assert "Kept 1 selected conv as they are: already has groups=4 (1)" in text
    assert f"wrote {out}" in text


def test_without_onnxruntime_out_is_written_and_the_proof_is_skipped(models, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    out = tmp_path / "out.onnx"
    doc = apply_json(str(models["conv3d"]), "-V", "spatial", "-o", str(out))
    assert out.exists() and doc["totals"]["counts_match"]
    assert doc["proof"]["runtime"] is None and doc["proof"]["output_errors"] == {}
    assert "pip install 'convcost[ort]'" in doc["proof"]["skipped"]
    assert all(layer["output_error"] is None for layer in doc["layers"])


def test_bench_and_data(models, tmp_path: Path) -> None:
    data = tmp_path / "inputs.npz"
    x = np.random.default_rng(5).standard_normal((1, 4, 12, 12)).astype(np.float32)
    np.savez(data, x=x)
    out = tmp_path / "out.onnx"
    doc = apply_json(str(models["basic_asym_pads"]), "-V", "spatial", "--rank", "2", "-o", str(out),
                     "--data", str(data), "--bench")
    assert doc["proof"]["inputs"] == str(data)
    (want,), (got,) = run_ort(models["basic_asym_pads"], x), run_ort(out, x)
    assert doc["proof"]["output_errors"]["y"] == pytest.approx(rel(want, got), rel=1e-4)
    assert doc["bench"]["before_ms"] > 0 and doc["bench"]["after_ms"] > 0 and doc["bench"]["runs"] >= 5


def test_every_apply_json_key_is_documented(models, tmp_path: Path) -> None:
    from tests.test_docs import documented, keys_of

    doc = apply_json(str(models["grouped"]), "-V", "spatial", "--rank", "auto", "-o", str(tmp_path / "o.onnx"),
                     "-d", "t4", "--bench")
    assert keys_of(doc) - documented() == set()


# --- bad input: one line, exit 2, no OUT -------------------------------------------------------------------

def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragment", [
    ("layers:\n  nope: {variant: spatial, rank: 4}\n", "layer 'nope'"),
    ("layers:\n  conv1: {variant: spatial, rank: 6}\n", "rank 6 is not a multiple of groups=4"),
    ("layers:\n  conv0: {variant: depthwise, depth_multiplier: 0}\n", "depth_multiplier must be a positive integer"),
    ("layers:\n  conv0: {variant: sideways}\n", "unknown variant 'sideways'"),
    ("layers:\n  conv0: {variant: spatial, width: 3}\n", "unknown option 'width'"),
    ("model: x\n", "not a convcost plan"),
])
def test_bad_plans_exit_2_and_write_nothing(models, tmp_path: Path, text: str, fragment: str) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old")  # a failed run leaves an existing OUT as it was
    result = invoke("apply", str(models["grouped"]), "--plan", str(_plan(tmp_path, text)), "-o", str(out))
    assert_one_line_error(result, fragment)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "plan.yaml"]


def test_missing_external_data_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    model = onnx_model("basic_asym_pads", tmp_path)
    onnx.save_model(onnx.load(str(model)), str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    out = tmp_path / "out.onnx"
    result = invoke("apply", str(model), "-V", "spatial", "-o", str(out))
    assert_one_line_error(result, "weights.bin", "not found")
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    ([], "choose the replacement"),
    (["-V", "spatial,depthwise"], "one variant"),
    (["-V", "spatial", "--rank", "x"], "--rank"),
])
def test_usage_errors(models, tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "out.onnx"
    assert_one_line_error(invoke("apply", str(models["grouped"]), *args, "-o", str(out)), fragment)
    assert not out.exists()


def test_models_apply_cannot_rewrite(models, tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("name: n\ninput: [1, 3, 8, 8]\nlayers:\n  - {name: c, type: conv, out: 4, kernel: 3}\n")
    assert_one_line_error(invoke("apply", str(spec), "-V", "spatial", "-o", str(tmp_path / "o.onnx")), "rewrites ONNX")
    same = models["grouped"]
    assert_one_line_error(invoke("apply", str(same), "-V", "spatial", "-o", str(same)), "new file")
    assert_one_line_error(invoke("apply", str(same), "-V", "spatial", "-o", str(tmp_path / "no" / "o.onnx")),
                          "does not exist")
    data = tmp_path / "bad.npz"
    np.savez(data, a=np.zeros(3), b=np.zeros(3))
    assert_one_line_error(invoke("apply", str(same), "-V", "spatial", "-o", str(tmp_path / "o.onnx"),
                                 "--data", str(data)), "no array for input 'x'")
    assert not (tmp_path / "o.onnx").exists()


# --- the grouped variant's channel permutation ----------------------------------------------------------

def _hidden_blocks(folder: Path) -> Path:
    """Three convs; the middle one is block-diagonal (4 groups) once its channels are reordered."""
    rng = np.random.default_rng(0)
    mask = np.kron(np.eye(4), np.ones((2, 2)))
    hidden = (rng.standard_normal((8, 8, 3, 3)) * mask[:, :, None, None])[rng.permutation(8)][:, rng.permutation(8)]
    return chain(folder / "hidden.onnx", (1, 8, 8, 8), [("Conv", (8, 8, 3, 3), k(3, 3, pads=[1] * 4), True)] * 3,
                 weights={1: hidden})


def test_permuted_grouping_is_folded_into_the_neighbours_and_exact(tmp_path: Path) -> None:
    model = _hidden_blocks(tmp_path)
    out = tmp_path / "out.onnx"
    doc = apply_json(str(model), "-V", "grouped", "--permute", "--only", "conv1", "-o", str(out))
    (layer,) = doc["layers"]
    assert layer["permutation"] == {"input": "folded into conv0", "output": "folded into conv2"}
    assert layer["weight_error"] < 1e-9 and layer["output_error"] < 1e-4
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Conv", "Relu", "Conv", "Relu", "Conv", "Identity"]
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 8)).astype(np.float32)
    assert rel(run_ort(model, x)[0], run_ort(out, x)[0]) < 1e-4


def test_permuted_grouping_uses_gathers_where_it_cannot_fold(tmp_path: Path) -> None:
    model = _hidden_blocks(tmp_path)
    out = tmp_path / "out.onnx"
    doc = apply_json(str(model), "-V", "grouped", "--permute", "-o", str(out))
    predicted = analyze_json(str(model), "-V", "grouped", "--permute")
    for layer, want in zip(doc["layers"], predicted["layers"], strict=True):
        assert layer["permutation"] == {"input": "Gather", "output": "Gather"}  # neighbours are replaced too
        assert layer["approx_error"] == pytest.approx(want["variants"]["grouped"]["approx_error_permuted"], abs=1e-6)
        assert layer["output_error"] == pytest.approx(layer["weight_error"], rel=0.25, abs=1e-4)
    assert [n.op_type for n in onnx.load(str(out)).graph.node].count("Gather") == 6
    assert doc["totals"]["counts_match"]  # Gathers add no MACs and no params
