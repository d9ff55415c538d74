"""The documentation stays true: its links resolve inside the repository, and docs/json.md names
every key the JSON outputs write.

A user has the repository and nothing else, so a relative link must land on a file in it (and a
`#fragment` on a heading of that file). The JSON outputs are the interface scripts rely on, so a
key added to one of them without a line in docs/json.md fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, run_cli

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Text users get: the Markdown docs, the shipped specs, budgets and device profiles.
USER_TEXT = [*DOCS, *sorted((ROOT / "configs").rglob("*.yaml")), *sorted((ROOT / "convcost").rglob("*.yaml"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _prose(text: str) -> str:
    """The Markdown without code blocks and code spans, where link syntax is literal text."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    prose = _prose(text)
    return _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = 0
            while (name := base if n == 0 else f"{base}-{n}") in found:
                n += 1
            found.add(name)
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of a Markdown file that does not resolve to a file (and heading) in `root`."""
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not dest.is_relative_to(root.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.name}")
    return broken


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A title\n\n## `convcost x`: the part\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md) [ok](docs/a.md#convcost-x-the-part) [ok](#top) [web](https://x.org)\n"
                    "[gone](docs/b.md) [out](../shared/PRODUCT.md) [anchor](docs/a.md#nope)\n"
                    "`[code](not/a/link.md)`\n\n```\n[code](neither.md)\n```\n\n[ref]: docs/c.md\n# Top\n")
    assert broken_links(page, tmp_path) == [
        "docs/b.md: no such file", "../shared/PRODUCT.md: outside the repository",
        "docs/a.md#nope: no heading #nope in a.md", "docs/c.md: no such file"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", USER_TEXT, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_users_read_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for outside in ("../shared", "PRODUCT.md"):
        assert outside not in text, f"{path.relative_to(ROOT)} mentions {outside}: users do not have it"


# --- docs/json.md names every key -------------------------------------------------------------

#: Mappings whose keys are data (device, variant, input, op, dtype and kind names), not schema.
DATA_KEYED = {"inputs", "values", "latency_ms", "latency_bound", "slower", "slower_layers", "uncosted_ops", "variants",
              "variant_totals", "peak_gflops", "efficiency", "overhead_us", "memory_efficiency", "saturation",
              "pixels", "out_channels", "work", "calibration", "output_errors", "output_shapes", "op_types",
              "unpriced_ops", "ops"}


def keys_of(doc: Any, parent: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if parent not in DATA_KEYED:
                found.add(key)
            found |= keys_of(value, key)
    elif isinstance(doc, list):
        for item in doc:
            found |= keys_of(item, parent)
    return found


def documented() -> set[str]:
    """Every identifier docs/json.md writes as code (a code span or a schema block)."""
    text = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
    code = " ".join(m.group(0) for m in _FENCE.finditer(text)) + " " + " ".join(_CODE_SPAN.findall(text))
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))


def _weighted_onnx(path: Path) -> None:
    """A 2-D and a 3-D conv with weights: every weight-based key (errors, bounds, auto ranks)."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    w2 = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3, 3)).astype(np.float32), "w3")
    nodes = [helper.make_node("Conv", ["x2", "w2"], ["y2"], name="c2d", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Conv", ["x3", "w3"], ["y3"], name="c3d", kernel_shape=[3, 3, 3], pads=[1] * 6)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 8, 8, 8]),
                     helper.make_tensor_value_info("x3", TensorProto.FLOAT, [1, 4, 6, 6, 6])],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y3", TensorProto.FLOAT, None)], [w2, w3])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


SPEC = {"name": "keys", "input": [1, 8, 16, 16], "layers": [
    {"name": "c", "type": "conv", "out": 16, "kernel": 3, "padding": 1},
    {"name": "q", "type": "conv", "out": 16, "kernel": 1, "dtype": "int8"},
    {"name": "up", "type": "conv_transpose", "out": 8, "kernel": 2, "stride": 2, "output_padding": 1},
    {"type": "global_pool"}, {"type": "flatten"}, {"name": "fc", "type": "linear", "out": 10}]}


def _json(*args: str) -> Any:
    result = run_cli(*args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_every_key_of_analyze_json_is_in_docs_json_md(tmp_path: Path) -> None:
    spec = tmp_path / "keys.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    onnx_model = tmp_path / "weighted.onnx"
    _weighted_onnx(onnx_model)
    written = keys_of(_json("analyze", str(spec), "-f", "json", "-d", "t4", "--only", "c", "--skip", "up"))
    written |= keys_of(_json("analyze", str(onnx_model), "-f", "json", "-d", "rpi4", "--rank", "auto",
                            "--permute"))
    for key in ("output_padding", "dtype", "approx_error_permuted", "approx_error_lower_bound", "rank_auto",
                "break_even_rank", "tol", "intermediate_bytes", "slower"):  # the cases above reach each
        assert key in written, key
    assert written - documented() == set()


def test_every_key_of_check_and_devices_json_is_in_docs_json_md(tmp_path: Path) -> None:
    spec = tmp_path / "keys.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    before = tmp_path / "before" / "keys.yaml"  # the same model with a smaller first conv: a layer diff
    before.parent.mkdir()
    before.write_text(yaml.safe_dump({**SPEC, "layers": [{**SPEC["layers"][0], "kernel": 1, "padding": 0},
                                                         *SPEC["layers"][1:]]}))
    baseline = tmp_path / "base.json"
    assert run_cli("analyze", str(before), "-f", "json", "-o", str(baseline)).code == 0
    budget = tmp_path / "budget.yaml"
    budget.write_text(yaml.safe_dump({"model": {"macs": "1G"}, "layers": [{"match": "*", "params": 100}],
                                      "baseline": {"max_increase": {"macs": "0%"}}}))
    result = run_cli("check", str(spec), "--budget", str(budget), "--baseline", str(baseline), "-f", "json")
    assert result.code == 1, result.err  # the layer limit is broken on purpose: violations are listed
    checked = json.loads(result.out)
    assert checked["layer_diff"] and checked["violations"]
    written = keys_of(checked) | keys_of(_json("devices", "-f", "json"))
    assert written - documented() == set()
