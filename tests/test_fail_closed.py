"""`convcost check` fails closed: a conv or matmul convcost could not count fails the check (rule
`uncounted`) in every format unless `--allow-uncounted` accepts the partial count; the analysis's
warnings and a layer rule matching no conv are in every output; `analyze -f csv` carries warnings."""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS, run_cli

# The model below: `stem` (3 -> 4 channels, 3x3, pad 1, on 8x8) is counted; `head` (4 -> 5, 1x1)
# reads the output of a custom-domain op convcost cannot shape, so it is not.
STEM_MACS = 4 * 3 * 3 * 3 * 8 * 8  # C_out * C_in * k * k * H_out * W_out = 6,912
MYSTERY_WARNING = "unknown op com.example::Mystery (node 'mystery')"
# A budget the counted part passes by far: only the uncounted conv can fail it.
BUDGET = "model: {macs: 1M, params: 1M}\nlayers:\n  - {match: 'stem', macs: 1M}\n"


def _onnx(path: Path, mystery: bool) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weights = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1"),
               numpy_helper.from_array(np.ones((5, 4, 1, 1), np.float32), "w2")]
    middle = (helper.make_node("Mystery", ["a"], ["b"], name="mystery", domain="com.example") if mystery
              else helper.make_node("Relu", ["a"], ["b"], name="relu"))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="stem", kernel_shape=[3, 3], pads=[1] * 4),
             middle,
             helper.make_node("Conv", ["b", "w2"], ["y"], name="head", kernel_shape=[1, 1])]
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid("com.example", 1)] if mystery else [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], weights), opset_imports=opsets)
    onnx.save(model, path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fail_closed")
    budget = root / "budget.yaml"
    budget.write_text(BUDGET)
    return {"mystery": _onnx(root / "mystery.onnx", True), "plain": _onnx(root / "plain.onnx", False),
            "budget": str(budget), "root": str(root)}


def _github(files: dict[str, str], *extra: str) -> tuple[int, str, str]:
    summary = Path(files["root"]) / f"summary{len(extra)}.md"
    summary.unlink(missing_ok=True)
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    result = run_cli("check", files["mystery"], "-b", files["budget"], "-f", "github", *extra, env=env)
    return result.code, result.out, summary.read_text()


def test_an_uncounted_conv_fails_the_check_in_every_format(files: dict[str, str]) -> None:
    junit = Path(files["root"]) / "fail.xml"
    table = run_cli("check", files["mystery"], "-b", files["budget"], "--junit", str(junit))
    assert table.code == 1, table.err
    row = [line for line in table.out.splitlines() if "│ uncounted" in line]
    assert [cell.strip() for cell in row[0].split("│")[1:-1]] == [
        "uncounted", "head", "Conv", "not counted", "must be counted", "FAIL"]
    assert "3 passed, 1 failed" in table.out  # the budget's own limits pass on the counted part
    assert "FAIL Conv 'head' not counted: input shape is unknown" in table.out
    assert f"warning: {MYSTERY_WARNING}" in table.out

    case = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert list(case) == ["uncounted", "model macs", "model params", "layers: stem"]
    failure = case["uncounted"].find("failure")
    assert failure is not None and "Conv 'head' not counted" in (failure.text or "")
    assert all(case[name].find("failure") is None for name in list(case)[1:])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    assert MYSTERY_WARNING in (suite.findtext("system-err") or "")

    result = run_cli("check", files["mystery"], "-b", files["budget"], "-f", "json")
    assert result.code == 1
    data = json.loads(result.out)
    assert not data["passed"]
    uncounted = [c for c in data["checks"] if c["rule"] == "uncounted"]
    assert [(c["scope"], c["metric"], c["value"], c["limit"], c["ok"]) for c in uncounted] == [
        ("head", "Conv", None, None, False)]
    assert "input shape is unknown" in uncounted[0]["why"]
    assert [c["value"] for c in data["checks"] if c["metric"] == "macs"] == [STEM_MACS, STEM_MACS]
    assert all(c["ok"] for c in data["checks"] if c["rule"] != "uncounted")
    assert data["violations"] == [f"Conv 'head' not counted: {uncounted[0]['why']}"]
    assert any(MYSTERY_WARNING in w for w in data["warnings"])

    code, out, summary = _github(files)
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert errors == [f"::error file={files['mystery']},title=convcost uncounted%3A Conv::"
                      f"Conv 'head' not counted: {uncounted[0]['why']}"]
    assert any(line.startswith("::warning ") and MYSTERY_WARNING in line for line in out.splitlines())
    assert "❌ 3 passed, 1 failed" in summary
    assert "| uncounted | head | Conv | not counted | must be counted | **FAIL** |" in summary
    assert "#### Not counted" in summary and "- Conv `head`: input shape is unknown" in summary
    assert MYSTERY_WARNING in summary.split("#### Warnings")[1]


def test_allow_uncounted_passes_and_still_names_what_was_not_counted(files: dict[str, str]) -> None:
    junit = Path(files["root"]) / "allow.xml"
    table = run_cli("check", files["mystery"], "-b", files["budget"], "--allow-uncounted", "--junit", str(junit))
    assert table.code == 0, table.out
    assert "4 passed, 0 failed" in table.out
    assert "allowed by --allow-uncounted: Conv 'head' not counted: input shape is unknown" in table.out
    case = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert case["uncounted"].find("failure") is None
    assert "Conv 'head' not counted" in (case["uncounted"].findtext("system-out") or "")

    result = run_cli("check", files["mystery"], "-b", files["budget"], "-f", "json", "--allow-uncounted")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["passed"] and data["violations"] == []
    assert [(c["scope"], c["ok"]) for c in data["checks"] if c["rule"] == "uncounted"] == [("head", True)]

    code, out, summary = _github(files, "--allow-uncounted")
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith("::error")]
    assert any(line.startswith("::warning ") and "Conv 'head' not counted" in line and "--allow-uncounted" in line
               for line in out.splitlines())
    assert "✅ 4 passed, 0 failed" in summary and "#### Not counted (allowed by --allow-uncounted)" in summary


def test_the_flag_is_in_check_help() -> None:
    result = run_cli("check", "--help")
    assert result.code == 0 and "--allow-uncounted" in result.out


def test_a_model_counted_whole_has_no_uncounted_rule(files: dict[str, str]) -> None:
    """The same net with a Relu instead of the unknown op: both convs counted, nothing to warn about,
    the check reads as it always did."""
    junit = Path(files["root"]) / "plain.xml"
    result = run_cli("check", files["plain"], "-b", files["budget"], "-f", "json", "--junit", str(junit))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    head_macs = 5 * 4 * 8 * 8  # 1x1 conv, 4 -> 5 channels on 8x8
    assert [c["rule"] for c in data["checks"]] == ["model", "model", "layers: stem"]
    assert data["checks"][0]["value"] == STEM_MACS + head_macs
    assert data["warnings"] == []
    root = ET.parse(junit).getroot()
    assert [c.get("name") for c in root.iter("testcase")] == ["model macs", "model params", "layers: stem"]
    assert root.find(".//system-err") is None


def test_a_layer_rule_that_matches_no_conv_is_a_warning_in_every_format(tmp_path: Path) -> None:
    budget = tmp_path / "budget.yaml"
    budget.write_text("model: {macs: 1G}\nlayers:\n  - {match: 'layer4.*', macs: 1M}\n  - {match: 'pw*', macs: 1G}\n")
    model = str(MODELS / "mobilenet_v1.yaml")  # its convs are conv1, dw2.., pw2..: nothing under layer4
    warning = "budget rule 'layers: layer4.*' matches no conv of mobilenet_v1"
    junit = tmp_path / "out.xml"
    table = run_cli("check", model, "-b", str(budget), "--junit", str(junit))
    assert table.code == 0, table.out  # a warning, not a failure
    assert f"warning: {warning}" in table.out
    assert "pw*" not in table.out.split("warning:", 1)[1]  # the rule that matches says nothing
    assert warning in (ET.parse(junit).getroot().findtext(".//system-err") or "")
    data = json.loads(run_cli("check", model, "-b", str(budget), "-f", "json").out)
    assert [w for w in data["warnings"] if "matches no conv" in w] == [
        f"{warning} (renamed layers? `convcost analyze MODEL` lists their names)"]
    out = run_cli("check", model, "-b", str(budget), "-f", "github").out
    assert [line for line in out.splitlines() if line.startswith("::warning")] == [
        f"::warning file={model},title=convcost::{data['warnings'][0]}"]


def test_analyze_csv_carries_the_warnings_as_rows(files: dict[str, str]) -> None:
    result = run_cli("analyze", files["mystery"], "-f", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    layers = [r for r in rows if not r["warning"]]
    assert [(r["layer"], int(r["MACs"])) for r in layers] == [("stem", STEM_MACS)]
    notes = [r for r in rows if r["warning"]]
    assert all(all(v == "" for k, v in r.items() if k != "warning") for r in notes)
    text = [r["warning"] for r in notes]
    assert any(t.startswith("Conv 'head' not counted") for t in text)
    assert any(MYSTERY_WARNING in t for t in text)
    assert "Not costed (no MACs counted): Conv x1, com.example::Mystery x1" in text


def test_names_from_the_model_are_not_read_as_rich_markup() -> None:
    """A node name such as `head[b]` is data: rich would take `[b]` for a bold tag and drop it."""
    from convcost.analysis.budget import UNCOUNTED, Check
    from convcost.render import CheckReport, render

    check = Check(UNCOUNTED, "head[b]", "Conv", None, None, False, "input [b] is unknown")
    text = render("checks", "table", CheckReport("m", "m.onnx", [check], None, [UNCOUNTED], ["see [b]"]))
    assert "head[b]" in text and "FAIL Conv 'head[b]' not counted: input [b] is unknown" in text
    assert "warning: see [b]" in text
