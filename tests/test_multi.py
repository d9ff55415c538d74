"""Several models per call: `analyze A B C` gives each model's document exactly as a call with it
alone does, in argument order (also from worker processes), and a comparison of totals that
equal each model's own (and torch's FlopCounterMode); `check A B C` maps model globs to budgets
and exits 1 naming the model over budget."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.analysis.budget import load_budgets
from convcost.render.numbers import si, times
from convcost.util.errors import InputError
from convcost.util.parallel import map_ordered
from tests import archs
from tests.conftest import MODELS, assert_one_line_error, run_cli
from tests.test_fail_closed import _onnx as uncounted_onnx

SPEC = str(MODELS / "m5_audio.yaml")  # M5: 277.5 M MACs, 0.56 M params (README's table)


class Tiny(nn.Module):
    """Two convs and a Linear, no BatchNorm, so torch's parameter count is convcost's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


SHAPES = {"tiny": (1, 3, 32, 32), "audio": (2, 40, 101)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two ONNX exports with weights, the M5 spec, and each module's torch counts."""
    root = tmp_path_factory.mktemp("multi")
    torch.manual_seed(0)
    out: dict[str, Any] = {"root": root, "spec": SPEC, "torch": {}}
    for name, module in (("tiny", Tiny()), ("audio", archs.Audio1d())):
        module.eval()
        x = torch.zeros(SHAPES[name])
        path = root / f"{name}.onnx"
        torch.onnx.export(module, x, str(path), dynamo=False, opset_version=17)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        out[name] = str(path)
        out["torch"][name] = {"macs": counter.get_total_flops() // 2,
                              "params": sum(p.numel() for p in module.parameters())}
    return out


def _json(*args: str, code: int = 0) -> Any:
    result = run_cli(*args, "-f", "json")
    assert result.code == code, result.err
    return json.loads(result.out)


@pytest.fixture(scope="module")
def singles(files: dict[str, Any]) -> dict[str, Any]:
    """Each model's document from a call with that model alone."""
    return {name: _json("analyze", files[name], "-d", "rpi4") for name in ("tiny", "audio", "spec")}


def test_each_document_equals_the_one_model_call_in_argument_order(files: dict[str, Any],
                                                                    singles: dict[str, Any]) -> None:
    order = ["spec", "tiny", "audio"]
    for jobs in ("1", "2"):  # in this process, and in forked workers
        docs = _json("analyze", *(files[n] for n in order), "-d", "rpi4", "--jobs", jobs)
        assert isinstance(docs, list) and len(docs) == 3
        for name, doc in zip(order, docs, strict=True):
            assert doc == singles[name], (jobs, name)
    # The one-model call still writes one object, not a list of one.
    assert isinstance(singles["tiny"], dict)


def test_totals_are_torchs_and_the_comparison_table_shows_each_models_own(files: dict[str, Any],
                                                                          singles: dict[str, Any]) -> None:
    for name in ("tiny", "audio"):  # independent: torch's FlopCounterMode and parameter count
        totals = singles[name]["totals"]
        assert totals["macs"] == files["torch"][name]["macs"]
        assert totals["params"] == files["torch"][name]["params"]
    # Tiny by hand: conv1 8*3*9*32*32, conv2 16*8*9*15*15, fc 16*10.
    assert singles["tiny"]["totals"]["macs"] == 221_184 + 259_200 + 160

    result = run_cli("analyze", files["tiny"], files["audio"], SPEC, "-d", "rpi4", "-f", "markdown")
    assert result.code == 0, result.err
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in result.out.splitlines() if line.startswith("| ")]
    header = rows[rows.index(next(r for r in rows if r[:2] == ["model", "format"]))]
    table = {r[0]: dict(zip(header, r, strict=True)) for r in rows[rows.index(header) + 1:]}
    assert list(table) == ["tiny", "audio", "m5_audio"]
    for name, key in (("tiny", "tiny"), ("audio", "audio"), ("spec", "m5_audio")):
        t = singles[name]["totals"]
        row = table[key]
        assert row["params"] == si(t["params"]) and row["MACs"] == si(t["macs"])
        assert row["FLOPs"] == si(2 * t["macs"])
        assert row["convs"] == str(t["conv_layers"])
        assert row["conv share"] == f"{t['conv_macs'] / t['macs']:.1%}"
        assert row["rpi4 ms"] == f"{t['latency_ms']['rpi4']:.3g}"
        for variant, vt in singles[name]["variant_totals"].items():  # each variant's savings, as alone
            assert row[f"{variant} MACs x"] == times(vt["mac_ratio"])
            assert row[f"{variant} params x"] == times(vt["param_ratio"])
    assert table["m5_audio"]["model"] == "m5_audio" and table["m5_audio"]["format"] == "spec"


def test_csv_has_a_model_column_first_and_each_models_rows(files: dict[str, Any]) -> None:
    result = run_cli("analyze", files["tiny"], SPEC, "-V", "spatial", "-f", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert list(rows[0])[0] == "model" and list(rows[0])[-1] == "warning"
    for path, name in ((files["tiny"], "tiny"), (SPEC, "m5_audio")):
        alone = run_cli("analyze", path, "-V", "spatial", "-f", "csv")
        mine = [{k: v for k, v in r.items() if k != "model"} for r in rows if r["model"] == name]
        theirs = list(csv.DictReader(io.StringIO(alone.out)))
        # Columns only the other model has (the SVD error of the one with weights) are empty here.
        assert [{k: r[k] for k in t} for r, t in zip(mine, theirs, strict=True)] == theirs
        assert all(not v for r in mine for k, v in r.items() if k not in theirs[0])


def test_table_output_shows_each_model_then_the_comparison(files: dict[str, Any]) -> None:
    result = run_cli("analyze", files["tiny"], SPEC, "-V", "none")
    assert result.code == 0, result.err
    out = result.out
    assert out.index("convcost: tiny") < out.index("convcost: m5_audio") < out.index("2 models compared")
    assert "Model tiny (onnx" in out and "Model m5_audio (spec" in out


def test_map_ordered_keeps_item_order_when_later_items_finish_first() -> None:
    done: list[int] = []

    def work(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    items = [0.6, 0.0, 0.05, 0.0, 0.1]
    started = time.monotonic()
    assert map_ordered(work, items, 2, "t") == items
    assert map_ordered(work, items, 2, "t", sizes=items) == items  # the largest handed out first
    import gc

    assert gc.get_freeze_count() == 0  # frozen for the fork only
    assert time.monotonic() - started < sum(items) + 2  # finished, and no item ran twice
    assert map_ordered(lambda s: done.append(1) or s, items, 1, "t") == items and len(done) == 5


def test_map_ordered_raises_the_earliest_failed_items_error_from_a_worker() -> None:
    def work(item: str) -> str:
        if item.startswith("bad"):
            time.sleep(0.3 if item == "bad1" else 0.0)  # the later bad item fails first
            raise InputError("cannot read", item)
        return item

    with pytest.raises(InputError) as info:
        map_ordered(work, ["ok", "bad1", "bad2", "ok2"], 3, "t")
    assert str(info.value) == "bad1: cannot read" and info.value.exit_code == 2


def test_a_bad_model_among_several_exits_2_naming_it_and_writes_nothing(files: dict[str, Any]) -> None:
    root = Path(files["root"])
    bad = root / "bad.onnx"
    bad.write_bytes(Path(files["tiny"]).read_bytes()[:300])
    out = root / "all.json"
    result = run_cli("analyze", files["tiny"], str(bad), SPEC, files["audio"], "-f", "json", "-o", str(out),
                     "--jobs", "3")
    assert_one_line_error(result, str(bad), "not a valid ONNX model")
    assert not out.exists()
    missing = run_cli("analyze", files["tiny"], str(root / "nope.onnx"), "-V", "none")
    assert_one_line_error(missing, "nope.onnx: no such file")


def test_an_unnamed_shape_applies_to_each_model() -> None:
    specs = [str(MODELS / "mobilenet_v1.yaml"), str(MODELS / "resnet18.yaml")]
    docs = _json("analyze", *specs, "-i", "1x3x112x112", "-V", "none")
    assert [d["model"]["inputs"] for d in docs] == [{"input": [1, 3, 112, 112]}] * 2
    # The first conv of each (3x3, stride 2 to 32 channels; 7x7, stride 2 to 64) on 56x56 outputs.
    assert docs[0]["layers"][0]["macs"] == 32 * 3 * 3 * 3 * 56 * 56
    assert docs[1]["layers"][0]["macs"] == 64 * 3 * 7 * 7 * 56 * 56
    assert docs[1] == _json("analyze", specs[1], "-i", "1x3x112x112", "-V", "none")  # as one call with that -i


# --- check A B C --budget with model globs ---------------------------------------------------------

def _budget(root: Path, text: str) -> str:
    path = root / f"budget{abs(hash(text))}.yaml"
    path.write_text(text)
    return str(path)


def test_check_picks_each_models_budget_by_glob_and_fails_only_the_one_over(files: dict[str, Any],
                                                                             singles: dict[str, Any]) -> None:
    root = Path(files["root"])
    tiny_macs = singles["tiny"]["totals"]["macs"]  # 480,544 by hand above
    budget = _budget(root, f"models:\n  \"tin*\": {{model: {{macs: {tiny_macs - 1}}}}}\n"
                           f"  \"m5_audio.yaml\": {{model: {{macs: 278M}}}}\n"
                           f"  \"*\": {{model: {{params: 1M}}}}\n")
    junit = root / "multi.xml"
    summary = root / "summary.md"
    args = ["check", files["tiny"], SPEC, files["audio"], "-b", budget]
    table = run_cli(*args, "--junit", str(junit), "--jobs", "2")
    assert table.code == 1, table.err
    assert table.out.strip().splitlines()[-1] == f"convcost check: 3 models, 2 within budget, 1 failed: {files['tiny']}"
    assert f"FAIL model: macs {si(tiny_macs)} > limit {si(tiny_macs - 1)} (model)" in table.out

    data = _json(*args, code=1)
    assert [(d["model"], d["passed"]) for d in data] == [("tiny", False), ("m5_audio", True), ("audio", True)]
    limits = [[(c["metric"], c["limit"]) for c in d["checks"]] for d in data]
    assert limits == [[("macs", tiny_macs - 1)], [("macs", 278e6)], [("params", 1e6)]]  # first match wins

    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("failures")) for s in suites] == [
        ("convcost budget tiny", "1"), ("convcost budget m5_audio", "0"), ("convcost budget audio", "0")]
    assert ET.parse(junit).getroot().get("failures") == "1"

    github = run_cli(*args, "-f", "github", env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert github.code == 1
    errors = [line for line in github.out.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and errors[0].startswith(f"::error file={files['tiny'].replace(':', '%3A')},")
    assert "3 models, 2 within budget, 1 failed" in summary.read_text()
    assert summary.read_text().count("### convcost check:") == 3

    # Within every budget: exit 0.
    assert run_cli("check", SPEC, files["audio"], "-b", budget).code == 0


def test_check_fails_a_model_with_an_uncounted_conv_among_several(files: dict[str, Any]) -> None:
    root = Path(files["root"])
    mystery = uncounted_onnx(root / "mystery.onnx", True)
    budget = _budget(root, "models:\n  \"*\": {model: {macs: 1G}}\n")
    data = _json("check", SPEC, mystery, "-b", budget, code=1)
    assert [(d["model"], d["passed"]) for d in data] == [("m5_audio", True), ("mystery", False)]
    assert [c["rule"] for c in data[1]["checks"] if not c["ok"]] == ["uncounted"]
    assert run_cli("check", SPEC, mystery, "-b", budget, "--allow-uncounted").code == 0


def test_a_model_no_glob_matches_is_bad_input(files: dict[str, Any]) -> None:
    budget = _budget(Path(files["root"]), "models:\n  \"tiny*\": {model: {macs: 1G}}\n")
    result = run_cli("check", files["tiny"], SPEC, "-b", budget)
    assert_one_line_error(result, budget, "no entry of models: matches model", "m5_audio.yaml")


def test_a_baseline_of_several_models_gives_each_its_own(files: dict[str, Any]) -> None:
    root = Path(files["root"])
    base = root / "base.json"
    assert run_cli("analyze", files["tiny"], SPEC, "-f", "json", "-o", str(base)).code == 0
    budget = _budget(root, "models:\n  \"*\": {baseline: {max_increase: {macs: 0%}}}\n")
    data = _json("check", SPEC, files["tiny"], "-b", budget, "--baseline", str(base))
    assert [(d["model"], d["passed"], d["layer_diff"]) for d in data] == [("m5_audio", True, []), ("tiny", True, [])]
    other = run_cli("check", files["audio"], "-b", budget, "--baseline", str(base))
    assert_one_line_error(other, str(base), "baseline has no model 'audio' (it has 'tiny', 'm5_audio')")


@pytest.mark.parametrize("text, fragment", [
    ("models: {}\n", "models: expected a mapping of model glob: budget"),
    ("models: {'*': {model: {macs: 1G}}}\nmodel: {macs: 1G}\n", "inside each entry, not beside it"),
    ("models: {'a[': {}}\n", "models.a[: bad glob"),
    ("models: {'*': {modle: {}}}\n", "models.*.unknown section(s) modle"),
    ("models: {'*': {model: {macs: lots}}}\n", "models.*.model.macs: expected a number"),
])
def test_malformed_model_globs_are_bad_input(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment.replace("[", r"\[").replace("*", r"\*").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_budgets(path)


def test_globs_match_the_file_name_or_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("models:\n  'net.onnx': {model: {macs: 1}}\n  'res*18': {model: {macs: 2}}\n  '*': {}\n")
    budgets = load_budgets(path)
    assert budgets.for_model("a/b/net.onnx").model == {"macs": 1}
    assert budgets.for_model("models/resnet18.onnx").model == {"macs": 2}  # the stem matches
    assert budgets.for_model("models/net.pt").model == {}  # neither: the catch-all, no limits
    assert load_budgets(MODELS.parent / "budgets" / "m5_audio.yaml").for_model("anything.onnx").model


def test_json_list_is_what_json_dumps_writes_for_the_list() -> None:
    from convcost.render.compare import json_list

    docs = [{"a": [1, {"b": "line\nbreak, \"quoted\""}], "c": {}}, {"d": "ü", "e": [], "f": None}, {}]
    assert json_list([json.dumps(d, indent=2) + "\n" for d in docs]) == json.dumps(docs, indent=2) + "\n"


def test_several_specs_import_neither_torch_onnx_nor_numpy() -> None:
    import subprocess
    import sys

    specs = [str(MODELS / f"{n}.yaml") for n in ("mobilenet_v1", "m5_audio", "c3d", "vgg16")]
    probe = ("import sys; from convcost.cli.app import main\ntry: main(['analyze', *sys.argv[1:], '-f', 'json'])\n"
             "except SystemExit: pass\nprint(sorted(m for m in ('torch', 'onnx', 'numpy') if m in sys.modules), "
             "file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe, *specs], capture_output=True, text=True, timeout=120)
    assert len(json.loads(proc.stdout)) == 4
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_several_onnx_models_import_neither_the_onnx_package_nor_ml_dtypes(files: dict[str, Any]) -> None:
    """The parent prepares the workers with the loader's lean onnx parts (`proto.onnx`), not with
    `import onnx` (0.6 s, mostly ml_dtypes), and with the variants' fitting modules."""
    import subprocess
    import sys

    models = [files["tiny"], files["audio"]] * 2
    probe = ("import sys; from convcost.cli.app import main\ntry: main(['analyze', *sys.argv[1:], '-f', 'json'])\n"
             "except SystemExit: pass\nprint(sorted(m for m in ('onnx', 'ml_dtypes', 'onnx.onnx_ml_pb2', "
             "'convcost.variants.spatial_svd', 'convcost.variants.depthwise_svd', 'convcost.variants.grouped_blocks')"
             " if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe, *models], capture_output=True, text=True, timeout=120)
    assert len(json.loads(proc.stdout)) == 4
    assert proc.stderr.strip().splitlines()[-1] == str(sorted([
        "onnx.onnx_ml_pb2", "convcost.variants.spatial_svd", "convcost.variants.depthwise_svd",
        "convcost.variants.grouped_blocks"]))


def test_initializer_dims_are_onnxs_without_reading_the_weights(files: dict[str, Any], tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto

    from convcost.loaders import stored_weight_dims
    from convcost.loaders.onnx.wire import initializer_dims

    zoo = sorted((Path(onnx.__file__).parent / "backend" / "test" / "data" / "light").glob("*.onnx"))
    assert zoo
    for path in [Path(files["tiny"]), Path(files["audio"]), *zoo]:
        assert initializer_dims(path) == [tuple(t.dims) for t in onnx.load(str(path)).graph.initializer]
    # dims packed (one length-delimited field), as some writers store them; onnx writes one field per value
    unpacked = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 3, 2, 2]).SerializeToString()
    assert b"\x08\x04\x08\x03\x08\x02\x08\x02" in unpacked
    packed = unpacked.replace(b"\x08\x04\x08\x03\x08\x02\x08\x02", b"\x0a\x04\x04\x03\x02\x02")
    graph = b"\x2a" + bytes([len(packed)]) + packed  # GraphProto.initializer (field 5)
    body = b"\x08\x08" + b"\x3a" + bytes([len(graph)]) + graph  # ModelProto.ir_version, .graph (field 7)
    path = tmp_path / "packed.onnx"
    path.write_bytes(body)
    assert tuple(onnx.load(str(path)).graph.initializer[0].dims) == (4, 3, 2, 2)
    assert initializer_dims(path) == [(4, 3, 2, 2)]
    assert stored_weight_dims(SPEC) == [] and stored_weight_dims(str(tmp_path / "missing.onnx")) == []


def test_the_work_guess_puts_the_costly_spectra_first(tmp_path: Path) -> None:
    """Workers take the largest guess first: 512-channel 3x3 convs (1536-wide spectra) before a
    1x1 conv with more bytes, whose spatial variant does not apply; by bytes without errors."""
    from dataclasses import replace

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from convcost.analysis.result import Settings
    from convcost.cli.multi import _work_guess
    from convcost.cli.options import Options

    def conv_model(name: str, c_in: int, c_out: int, k: int) -> str:
        w = numpy_helper.from_array(np.zeros((c_out, c_in, k, k), np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, 8, 8])
        graph = helper.make_graph([node], name, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph), str(path))
        return str(path)

    wide = conv_model("wide", 512, 512, 3)  # 9.4 MB
    flat = conv_model("flat", 2048, 2048, 1)  # 16.8 MB
    request = Options().request(wide)
    with_errors = replace(request, settings=Settings(approx=True))
    assert _work_guess(replace(with_errors, model=wide)) > _work_guess(replace(with_errors, model=flat))
    without = replace(request, settings=Settings(approx=False))
    assert _work_guess(replace(without, model=wide)) < _work_guess(replace(without, model=flat))
    assert _work_guess(replace(without, model=SPEC)) == os.path.getsize(SPEC)
