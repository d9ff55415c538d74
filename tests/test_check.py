"""`convcost check`: budgets, exit codes, every violation, annotations, JUnit, baseline diffs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from convcost.analysis.budget import parse_number, parse_percent
from convcost.util.errors import InputError
from tests.conftest import MODELS, ROOT, assert_one_line_error, run_cli

MOBILENET = str(MODELS / "mobilenet_v1.yaml")
# Independent figures (MobileNet v1 paper, hand-counted): pointwise 512->512 has 512*512 = 262,144 weights.
PW512 = 512 * 512


def budget(tmp_path: Path, text: str) -> str:
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    return str(path)


def test_numbers_take_si_suffixes():
    assert parse_number("4.2G", "x", "b") == 4.2e9
    assert parse_number("26M", "x", "b") == 26e6
    assert parse_number("300K", "x", "b") == 3e5
    assert parse_number(1234, "x", "b") == 1234
    assert parse_number("1.5e3 K", "x", "b") == 1.5e6
    assert parse_percent("2.5 %", "x", "b") == 2.5
    assert parse_percent(3, "x", "b") == 3


@pytest.mark.parametrize("parse,value,fragment", [
    (parse_number, True, "expected a number like 4.2G"),  # YAML's yes/true is not a number
    (parse_number, -5, "a limit cannot be negative"),
    (parse_number, "5%", "expected a number like 4.2G"),
    (parse_percent, False, "expected a percentage like 2%"),
    (parse_percent, -1.5, "a percentage cannot be negative"),
    (parse_percent, "2G", "expected a percentage like 2%"),
])
def test_numbers_and_percentages_refuse_what_is_not_one(parse, value, fragment):
    with pytest.raises(InputError, match=fragment):
        parse(value, "model.macs", "budget.yaml")


def test_passing_budget_exits_0(tmp_path):
    path = budget(tmp_path, "model: {macs: 570M, params: 4.3M}\nlayers: [{match: '*', params: 1.1M}]\n")
    result = run_cli("check", MOBILENET, "--budget", path)
    assert result.code == 0, result.err
    assert "0 failed" in result.out


def test_failing_budget_lists_every_violation(tmp_path):
    path = budget(tmp_path, "model: {macs: 500M}\nlayers:\n  - {match: 'pw14', params: 2M}\n"
                            "  - {match: 'block8.*', params: 250K}\n")
    result = run_cli("check", MOBILENET, "--budget", path, "-f", "json")
    assert result.code == 1
    data = json.loads(result.out)
    assert not data["passed"]
    broken = [(c["scope"], c["metric"], c["value"]) for c in data["checks"] if not c["ok"]]
    # 568.7 M MACs > 500 M, and the five 512->512 pointwise convs (262,144 params each) > 250 K.
    assert broken[0] == ("model", "macs", 568_740_352)
    assert sorted(broken[1:]) == [(f"block8.{i}.pw", "params", PW512) for i in range(5)]
    # pw14 matched its own rule first (1024*1024 params < 2 M): first matching rule applies.
    assert [c for c in data["checks"] if c["scope"] == "pw14"][0]["ok"]
    assert len(data["violations"]) == 6


def test_github_annotations_and_step_summary(tmp_path):
    path = budget(tmp_path, "model: {params: 4M}\n")
    summary = tmp_path / "summary.md"
    import os

    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    result = run_cli("check", MOBILENET, "--budget", path, "-f", "github", env=env)
    assert result.code == 1
    errors = [line for line in result.out.splitlines() if line.startswith("::error ")]
    assert errors == [f"::error file={MOBILENET},title=convcost budget%3A params::"
                      "model: params 4.210M > limit 4.000M (model)"]
    text = summary.read_text()
    assert "1 failed" in text and "| model | model | params |" in text


def test_junit_has_one_case_per_rule_and_the_right_failures(tmp_path):
    path = budget(tmp_path, "model: {macs: 1G, params: 4M}\nlayers:\n  - {match: 'dw*', macs: 1M}\n"
                            "  - {match: '*', macs: 1G}\n")
    junit = tmp_path / "out" / "convcost.xml"
    junit.parent.mkdir()
    result = run_cli("check", MOBILENET, "--budget", path, "--junit", str(junit))
    assert result.code == 1
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["model macs", "model params", "layers: dw*", "layers: *"]
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"model params", "layers: dw*"}
    # Depthwise convs above 1 M MACs: dw2 (112x112x32x9 = 3.6 M), dw3, dw4, dw6 (hand counts in the text).
    text = failed["layers: dw*"].text or ""
    assert "layer dw2: macs 3.613M" in text and "layer dw4: macs 3.613M" in text
    assert root.get("failures") == "2"


def test_junit_names_a_latency_limit_as_its_rule_and_skips_an_unchecked_baseline(tmp_path):
    """A model latency limit is one rule whatever devices it names (not an empty 'model latency_ms'
    case beside a 'model latency_ms[rpi4]' one); without --baseline the baseline rule is not listed
    as a rule that 'matched no layer'."""
    path = budget(tmp_path, "model: {latency_ms: {rpi4: 1}, params: 5M}\nbaseline: {max_increase: {macs: 2%}}\n")
    junit = tmp_path / "convcost.xml"
    result = run_cli("check", MOBILENET, "--budget", path, "--junit", str(junit))
    assert result.code == 1, result.err
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == ["model latency_ms", "model params"]
    failure = cases[0].find("failure")
    assert failure is not None and "latency_ms[rpi4]" in (failure.text or "")
    assert cases[1].find("failure") is None


def test_baseline_diff_when_one_layer_grows(tmp_path):
    base_json = tmp_path / "base.json"
    assert run_cli("analyze", MOBILENET, "-f", "json", "-o", str(base_json)).code == 0
    grown = tmp_path / "mobilenet_v1.yaml"
    grown.write_text(Path(MOBILENET).read_text().replace("{name: pw14, type: conv, out: 1024",
                                                         "{name: pw14, type: conv, out: 1280"))
    grown.write_text(grown.read_text().replace("{name: fc, type: linear, out: 1000, bias: true}",
                                               "{name: fc, type: linear, out: 1000, bias: true}"))
    path = budget(tmp_path, "baseline: {max_increase: {macs: 2%, params: 0%}}\n")
    result = run_cli("check", str(grown), "--budget", path, "--baseline", str(base_json), "-f", "json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    # pw14: 1024 -> 1280 outputs on 7x7 from 1024 inputs: +256*1024*49 MACs.
    assert data["layer_diff"] == [{"name": "pw14", "change": "changed", "old_macs": 1024 * 1024 * 49,
                                   "new_macs": 1280 * 1024 * 49, "delta": 256 * 1024 * 49}]
    increases = {c["metric"]: c for c in data["checks"]}
    expected = 256 * 1024 * 49 + 256 * 1000  # pw14 and the wider fc input
    assert increases["macs increase %"]["value"] == pytest.approx(expected / 568_740_352 * 100)
    assert not increases["params increase %"]["ok"]


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("model: {flops_per_watt: 3}\n", "unknown metric 'flops_per_watt'"),
        ("model: {macs: 4.2Q}\n", "expected a number like 4.2G"),
        ("layers: [{match: 'conv[1', macs: 1M}]\n", "bad glob"),
        ("layers: [{macs: 1M}]\n", "needs 'match'"),
        ("baseline: {max_increase: {macs: lots}}\n", "expected a percentage"),
        ("modle: {macs: 1G}\n", "unknown section(s) modle"),
        ("model: [1, 2\n", "YAML syntax error"),
    ],
)
def test_malformed_budgets_exit_2(tmp_path, text, fragment):
    path = budget(tmp_path, text)
    assert_one_line_error(run_cli("check", MOBILENET, "--budget", path), path, fragment)


def test_bad_baselines_exit_2(tmp_path):
    path = budget(tmp_path, "model: {macs: 1G}\n")
    assert_one_line_error(run_cli("check", MOBILENET, "--budget", path, "--baseline", str(tmp_path / "nope.json")),
                          "no such baseline file")
    other = tmp_path / "vgg.json"
    assert run_cli("analyze", str(MODELS / "vgg16.yaml"), "-f", "json", "-o", str(other)).code == 0
    assert_one_line_error(run_cli("check", MOBILENET, "--budget", path, "--baseline", str(other)),
                          "baseline is of model 'vgg16', not 'mobilenet_v1'")
    assert_one_line_error(run_cli("check", MOBILENET, "--budget", str(tmp_path / "missing.yaml")),
                          "no such budget file")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "budgets").glob("*.yaml")))
def test_shipped_budgets_pass_on_their_models(name):
    spec = ROOT / "configs" / "budgets" / f"{name}.yaml"
    result = run_cli("check", str(MODELS / f"{name}.yaml"), "--budget", str(spec))
    assert result.code == 0, result.out


def test_github_annotations_escape_what_would_end_or_split_the_command():
    """A layer name is data from the model file: a newline in it must not end the workflow command
    (GitHub: %, CR and LF in a message; also ':' and ',' in a property)."""
    from convcost.analysis.budget import LayerDiff
    from convcost.render import CheckReport, render

    diff = LayerDiff("conv\n::error::fake 50%", "added", None, 64)
    text = render("checks", "github", CheckReport("m", "m.onnx", [], [diff], []))
    warning, summary = text.splitlines()
    assert warning == "::warning title=convcost layer added::conv%0A::error::fake 50%25: MACs +64 since the baseline"
    assert summary == "convcost check m: 0 passed, 0 failed"
