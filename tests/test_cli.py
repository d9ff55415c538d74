"""The CLI as users and scripts see it: formats, options, files, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT, assert_one_line_error, run_cli

SEED = str(ROOT / "tests" / "data" / "seed.yaml")
GOLDEN = ROOT / "tests" / "golden" / "seed.json"


def normalized_json(args: list[str]) -> dict:
    result = run_cli("analyze", *args, "-f", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    data["convcost_version"] = "X"
    data["model"]["source"] = "tests/data/seed.yaml"
    return data


def test_golden_json_fixes_the_output_shape():
    data = normalized_json([SEED])
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(data, indent=2) + "\n")
    assert data == json.loads(GOLDEN.read_text())
    # The numbers in the golden file are the hand-checked seed figures.
    c5 = data["layers"][0]
    assert (c5["macs"], c5["flops"], c5["output_shape"]) == (1_228_800, 2_457_600, [1, 256, 8, 8])
    assert c5["variants"]["depthwise"]["macs"] == 4_800 + 49_152
    assert c5["variants"]["grouped"] == {**c5["variants"]["grouped"], "applicable": False, "macs": None}


def test_json_has_every_contract_key():
    data = normalized_json([SEED])
    assert set(data) >= {"convcost_version", "model", "conventions", "layers", "totals", "variant_totals"}
    assert set(data["model"]) >= {"name", "format", "inputs"}
    assert set(data["conventions"]) >= {"macs", "dtype", "bytes_per_element"}
    layer_keys = {"name", "op", "in_channels", "out_channels", "kernel", "stride", "padding", "dilation", "groups",
                  "input_shape", "output_shape", "params", "macs", "flops", "memory", "latency_ms", "variants"}
    variant_keys = {"applicable", "reason", "layers", "params", "macs", "memory", "latency_ms", "mac_ratio",
                    "param_ratio", "approx_error"}
    for layer in data["layers"]:
        assert set(layer) >= layer_keys
        assert set(layer["memory"]) >= {"weight_bytes", "input_bytes", "output_bytes"}
        for v in layer["variants"].values():
            assert set(v) >= variant_keys
            for sub in v["layers"]:
                assert set(sub) >= layer_keys - {"latency_ms", "variants"}
    assert set(data["totals"]) >= {"params", "macs", "conv_params", "conv_macs", "latency_ms"}
    for vt in data["variant_totals"].values():
        assert set(vt) >= {"params", "macs", "latency_ms", "mac_ratio", "param_ratio"}


def test_totals_and_ratios_are_consistent():
    data = normalized_json([str(MODELS / "conv_mobilenet.yaml"), "--skip", "conv1"])
    t = data["totals"]
    assert t["macs"] == t["conv_macs"] + 1024 * 1000
    assert t["params"] == t["conv_params"] + 1024 * 1000 + 1000
    for name, vt in data["variant_totals"].items():
        assert vt["mac_ratio"] == pytest.approx(t["macs"] / vt["macs"], rel=1e-6), name
    dw = data["variant_totals"]["depthwise"]
    assert round(dw["macs"] / 1e6) == 569 and round(dw["params"] / 1e6, 1) == 4.2


def test_table_has_rows_totals_and_conventions():
    result = run_cli("analyze", SEED)
    assert result.code == 0, result.err
    assert "c5x5" in result.out and "dw" in result.out
    assert "all 2 convs" in result.out
    assert "FLOPs = 2 x MACs" in result.out
    assert "22.8x" in result.out  # the seed's depthwise-separable saving
    assert "n/a" in result.out and "already depthwise" in result.out


def test_csv_and_markdown_agree_with_json():
    data = normalized_json([SEED])
    rows = list(csv.DictReader(io.StringIO(run_cli("analyze", SEED, "-f", "csv").out)))
    assert [int(r["MACs"]) for r in rows] == [layer["macs"] for layer in data["layers"]]
    assert rows[0]["depthwise_MACs"] == "53952" and rows[0]["grouped_MACs"] == ""
    assert "does not divide" in rows[0]["grouped_reason"]
    md = run_cli("analyze", SEED, "-f", "markdown").out
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count(" | ") for line in table if "---" not in line}) == 1
    assert len(table) == 2 + 2 + 1  # header, rule, 2 layers, totals


def test_sort_top_only():
    data = normalized_json([str(MODELS / "vgg16.yaml"), "--sort", "macs", "--top", "3"])
    macs = [layer["macs"] for layer in data["layers"]]
    assert len(macs) == 3 and macs == sorted(macs, reverse=True)
    assert data["totals"]["conv_layers"] == 13  # totals still cover the whole model
    data = normalized_json([str(MODELS / "vgg16.yaml"), "--sort", "name", "-V", "grouped", "--only", "conv5_*"])
    assert [layer["name"] for layer in data["layers"]][:2] == ["conv1_1", "conv1_2"]
    assert list(data["variant_totals"]) == ["grouped"]
    factorized = [layer["name"] for layer in data["layers"] if layer["variants"]["grouped"]["applicable"]]
    assert factorized == ["conv5_1", "conv5_2", "conv5_3"]


def test_output_file_is_written_whole(tmp_path):
    out = tmp_path / "costs.json"
    result = run_cli("analyze", SEED, "-f", "json", "-o", str(out))
    assert result.code == 0 and result.out == ""
    assert json.loads(out.read_text())["model"]["name"] == "seed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.json"]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["analyze", "missing.yaml"], ["missing.yaml", "no such file"]),
        (["analyze", SEED, "--dtype", "float64"], ["--dtype 'float64'"]),
        (["analyze", SEED, "-V", "spatial,winograd"], ["unknown variant 'winograd'"]),
        (["analyze", SEED, "--sort", "speed"], ["--sort 'speed'"]),
        (["analyze", SEED, "-i", "1xAx3"], ["expected a shape"]),
        (["analyze", SEED, "-f", "xml"], ["--format 'xml'"]),
        (["analyze", SEED, "-o", "/nonexistent/dir/out.json"], ["does not exist"]),
    ],
)
def test_usage_errors_are_one_line(args, fragments):
    assert_one_line_error(run_cli(*args), *fragments)


def test_empty_and_binary_files(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli("analyze", str(empty)), "file is empty")
    folder = tmp_path / "dir"
    folder.mkdir()
    assert_one_line_error(run_cli("analyze", str(folder)), "is a directory")


def test_version_help_and_module_entry():
    from convcost import __version__

    result = run_cli("--version")
    assert result.code == 0 and result.out.strip() == f"convcost {__version__}"
    help_text = run_cli("analyze", "--help").out
    for option in ("--top", "--sort", "--only", "--skip", "-V", "--rank", "--depth-multiplier", "Examples"):
        assert option in help_text


def test_yaml_path_never_imports_torch(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\nfrom convcost.cli.app import main\n"
        "try:\n    main(['analyze', sys.argv[1], '-f', 'json'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nassert 'onnx' not in sys.modules\n"
        "print('clean', file=sys.stderr)\n"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(probe), SEED], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "clean" in proc.stderr, proc.stderr


def test_help_is_output_file_free(tmp_path):
    # A failing run never leaves a partial file: bad option after -o.
    out = tmp_path / "x.json"
    run_cli("analyze", SEED, "-o", str(out), "--sort", "bogus")
    assert not out.exists()
    assert Path(SEED).exists()


def test_analyze_and_report_share_the_analysis_options():
    """Declared once (commands/options.py): both commands list every shared option, in the same order."""
    import re

    def options(command: str) -> list[str]:
        text = run_cli(command, "--help", env={**os.environ, "COLUMNS": "200"}).out
        return re.findall(r"^  (?:-\w, )?(--[\w-]+)", text, re.M)  # option lines, not wrapped help

    shared = ["--input", "--shape", "--variants", "--device", "--dtype", "--only", "--skip", "--rank",
              "--depth-multiplier", "--groups", "--tol", "--no-approx"]
    for command in ("analyze", "report"):
        found = options(command)
        assert [o for o in found if o in shared] == shared, (command, found)
    result = run_cli("report", str(SEED), "--no-approx", "-V", "depthwise", "--tol", "0.1")
    assert result.code == 0 and "# convcost report" in result.out, result.err
