"""Issue 9: every resource bound and safety rule, one test each, through the real CLI.

Each case must end in exit 2 with one line naming the file and the problem, quickly: a bound that
is reached only after building the bomb is no bound. Timings are generous ceilings (10x what a
quiet machine needs), there to catch a bound that stopped working, not to benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convcost.loaders.spec import MAX_FILE_BYTES, MAX_LAYERS
from convcost.util.infile import MAX_YAML_ALIASES, MAX_YAML_DEPTH
from tests.conftest import Result, assert_one_line_error, run_cli

INT64_MAX = 2**63 - 1


def timed_cli(*args: str, ceiling: float = 10.0) -> Result:
    start = time.perf_counter()
    result = run_cli(*args, timeout=60)
    elapsed = time.perf_counter() - start
    assert elapsed < ceiling, f"{args}: {elapsed:.1f} s"
    return result


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- YAML specs -------------------------------------------------------------------------------

def test_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    refs = ", ".join(["*x"] * (MAX_YAML_ALIASES + 1))
    text = f"input: [1, 3, 8, 8]\nlayers: [{{type: flatten}}]\nx: &x [1]\ny: [{refs}]\n"
    path = write(tmp_path, "aliases.yaml", text)
    assert_one_line_error(timed_cli("analyze", str(path)), "aliases.yaml", "YAML aliases")


def test_billion_laughs_in_the_layers_is_refused(tmp_path: Path) -> None:
    """Ten levels, each a repeat of nine aliases of the level below: 81^9 layers once expanded,
    from 81 aliases in a 2 KB file."""
    lines = ["input: [1, 3, 8, 8]", "layers:", "  - &r0 {type: repeat, times: 9, layers: [{type: flatten}]}"]
    for i in range(1, 10):
        below = ", ".join([f"*r{i - 1}"] * 9)
        lines.append(f"  - &r{i} {{type: repeat, times: 9, layers: [{below}]}}")
    path = write(tmp_path, "laughs.yaml", "\n".join(lines) + "\n")
    assert_one_line_error(timed_cli("analyze", str(path)), "laughs.yaml", f"more than {MAX_LAYERS} layers")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "input: [1, 3, 8, 8]\nlayers: &a [{type: repeat, times: 2, layers: *a}]\n")
    assert_one_line_error(timed_cli("analyze", str(path)), "loop.yaml", "layers")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    depth = 100_000
    path = write(tmp_path, "deep.yaml", "input: [1, 3, 8, 8]\nlayers: " + "[" * depth + "]" * depth + "\n")
    assert_one_line_error(timed_cli("analyze", str(path)), "deep.yaml", f"deeper than {MAX_YAML_DEPTH} levels")


def test_nested_repeats_are_counted_before_they_are_expanded(tmp_path: Path) -> None:
    """10,000 x 10,000 convs: refused up front (building 200,000 layers first took 6 s)."""
    path = write(tmp_path, "reps.yaml", "input: [1, 3, 8, 8]\nlayers:\n  - {type: repeat, times: 10000, layers: "
                 "[{type: repeat, times: 10000, layers: [{name: c, type: conv, out: 3, kernel: 1}]}]}\n")
    assert_one_line_error(timed_cli("analyze", str(path), ceiling=3.0), "reps.yaml",
                          f"more than {MAX_LAYERS} layers after expanding repeats")


def test_oversized_spec_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as fh:
        fh.write("input: [1, 3, 8, 8]\nlayers: [{type: flatten}]\n")
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: the size is what counts
    assert_one_line_error(timed_cli("analyze", str(path)), "big.yaml", "larger than 16 MiB")


@pytest.mark.parametrize(("shape", "out", "fragment"), [
    ("[1, 3, 9223372036854775808, 8]", 3, "input dims must be a positive integer"),  # 2^63: not an int64
    ("[1, 2147483647, 2147483647, 2147483647]", 2147483647, "overflow 64-bit integers"),  # each dim fits
])
def test_dims_overflowing_int64_are_refused(tmp_path: Path, shape: str, out: int, fragment: str) -> None:
    path = write(tmp_path, "dims.yaml", f"input: {shape}\nlayers: [{{name: c, type: conv, out: {out}, kernel: 1}}]\n")
    assert_one_line_error(timed_cli("analyze", str(path)), "dims.yaml", fragment)


def test_a_count_just_inside_int64_is_exact(tmp_path: Path) -> None:
    """The bound refuses overflow, not big models: a 1x1 conv 2 -> 2 channels on a 2^29 x 2^29 map
    has 2^60 MACs and moves 2^62 bytes, exactly, as Python ints."""
    n = 2**29
    path = write(tmp_path, "wide.yaml", f"input: [1, 2, {n}, {n}]\nlayers: [{{name: c, type: conv, out: 2, kernel: 1, "
                 "bias: false}]\n")
    result = timed_cli("analyze", str(path), "-f", "json", "-V", "depthwise", "--no-approx")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["totals"]["macs"] == n * n * 2 * 2 <= INT64_MAX
    assert data["layers"][0]["memory"]["input_bytes"] == 2 * n * n * 4


# --- ONNX ---------------------------------------------------------------------------------------

def conv_model(shape: list[int], weights: list[np.ndarray]) -> onnx.ModelProto:
    nodes, inits, prev = [], [], "x"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        pads = [w.shape[2] // 2] * 4
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"y{i}"], pads=pads))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shape", [[1, 4, 2**40, 2**40], [1, 4, 2**62, 8]])
def test_onnx_dims_overflowing_int64_are_refused(tmp_path: Path, shape: list[int]) -> None:
    path = tmp_path / "huge.onnx"
    onnx.save(conv_model(shape, [np.ones((8, 4, 3, 3), np.float32)]), str(path))
    assert_one_line_error(timed_cli("analyze", str(path)), "huge.onnx", "overflow 64-bit integers")


def external_model(folder: Path, location: str) -> Path:
    """A one-conv model whose weight lives at `location` (written after saving, as an attacker would)."""
    model = conv_model([1, 4, 8, 8], [np.ones((8, 4, 3, 3), np.float32)])
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(folder / "m.onnx"))
    return folder / "m.onnx"


@pytest.mark.parametrize("how", ["absolute", "parent", "symlink"])
def test_external_data_cannot_escape_the_model_folder(tmp_path: Path, how: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((8, 4, 3, 3), np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    location = {"absolute": str(secret), "parent": "../secret.bin", "symlink": "link.bin"}[how]
    if how == "symlink":
        (folder / "link.bin").symlink_to(secret)
    path = external_model(folder, location)
    # Counting needs no weight bytes; the SVD would read them, and must refuse to.
    counted = run_cli("analyze", str(path), "--no-approx", "-f", "json")
    assert counted.code == 0, counted.err
    assert_one_line_error(timed_cli("analyze", str(path)), "m.onnx", "outside the model's folder")


#: The child's own peak: VmHWM belongs to the process image (ru_maxrss would carry over the
#: pytest parent's peak through fork + exec and make the comparison vacuous).
RSS_PROBE = ("import sys\nfrom convcost.cli.app import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
             "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
             "    print('PEAK', hwm.split()[1], file=sys.stderr)\n")


def peak_rss_mb(*args: str) -> float:
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return int(proc.stderr.rsplit("PEAK", 1)[1]) / 1024  # kB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_model_is_never_loaded_whole(tmp_path: Path) -> None:
    """A 144 MiB model (16 inline 512x512x3x3 weights): counting reads no weight bytes, and the SVD
    reads one conv's weights at a time, so neither run's peak grows with the file."""
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    onnx.save(conv_model([1, 512, 7, 7], [np.ones((512, 512, 3, 3), np.float32)]), str(small))
    onnx.save(conv_model([1, 512, 7, 7], [np.full((512, 512, 3, 3), i, np.float32) for i in range(16)]), str(big))
    size_mb = big.stat().st_size / 2**20
    assert size_mb > 140
    counting = peak_rss_mb("analyze", str(big), "--no-approx", "-f", "json") - peak_rss_mb(
        "analyze", str(small), "--no-approx", "-f", "json")
    assert counting < 16, f"counting grew by {counting:.0f} MB on a {size_mb:.0f} MB model"
    svd = peak_rss_mb("analyze", str(big), "-V", "depthwise", "-f", "json") - peak_rss_mb(
        "analyze", str(small), "-V", "depthwise", "-f", "json")
    assert svd < size_mb / 3, f"the SVD run grew by {svd:.0f} MB on a {size_mb:.0f} MB model"  # measured: 28


# --- no code from the model runs ---------------------------------------------------------------

def test_yaml_tags_that_would_run_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, "evil.yaml", f"input: !!python/object/apply:os.system ['touch {marker}']\nlayers: []\n")
    assert_one_line_error(timed_cli("analyze", str(path)), "evil.yaml", "python/object/apply")
    assert not marker.exists()


# --- the other files a pull request can bring: budgets, baselines, device profiles ------------------

SPEC = "input: [1, 3, 8, 8]\nlayers: [{name: c, type: conv, out: 4, kernel: 3}]\n"


def reader_command(kind: str, path: Path, spec: Path) -> tuple[str, ...]:
    return {"budget": ("check", str(spec), "--budget", str(path)),
            "baseline": ("check", str(spec), "--budget", str(spec.with_name("ok.yaml")), "--baseline", str(path)),
            "profile": ("analyze", str(spec), "-d", str(path))}[kind]


@pytest.mark.parametrize("kind", ["budget", "baseline", "profile"])
def test_every_reader_is_bounded(tmp_path: Path, kind: str) -> None:
    spec = write(tmp_path, "m.yaml", SPEC)
    write(tmp_path, "ok.yaml", "model: {macs: 1G}\n")
    big = tmp_path / f"big-{kind}.yaml"
    with big.open("w") as fh:
        fh.truncate(300 * 2**20)  # sparse; above every reader's cap
    assert_one_line_error(timed_cli(*reader_command(kind, big, spec)), big.name, "larger than", "MiB; not a")
    if kind != "baseline":  # YAML readers: the same bounded loader as specs
        refs = ", ".join(["*x"] * (MAX_YAML_ALIASES + 1))
        bomb = write(tmp_path, f"bomb-{kind}.yaml", f"x: &x [1]\ny: [{refs}]\n")
        assert_one_line_error(timed_cli(*reader_command(kind, bomb, spec)), bomb.name, "YAML aliases")
        deep = write(tmp_path, f"deep-{kind}.yaml", "a: " + "[" * 1000 + "]" * 1000 + "\n")
        assert_one_line_error(timed_cli(*reader_command(kind, deep, spec)), deep.name, "nested deeper")


def test_weight_with_an_undefined_element_type(tmp_path: Path) -> None:
    """Counting needs only the dims; reading the weight for the SVD must end in one line, not exit 3
    (onnx's to_array raises TypeError here; the 50,000-case fuzz run found it)."""
    model = conv_model([1, 4, 8, 8], [np.ones((8, 4, 3, 3), np.float32)])
    model.graph.initializer[0].data_type = TensorProto.UNDEFINED
    path = tmp_path / "undefined.onnx"
    onnx.save(model, str(path))
    assert run_cli("analyze", str(path), "--no-approx").code == 0
    assert_one_line_error(timed_cli("analyze", str(path)), "undefined.onnx", "cannot read weight")


def test_attribute_of_the_wrong_type(tmp_path: Path) -> None:
    """A bit flip can turn the INT `group` into a STRING: an invalid model (onnxruntime refuses it
    too), reported in one line naming the conv, not a crash."""
    model = conv_model([1, 4, 8, 8], [np.ones((8, 4, 3, 3), np.float32)])
    model.graph.node[0].attribute.append(helper.make_attribute("group", ""))
    path = tmp_path / "typed.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("analyze", str(path), "-f", "json"), "typed.onnx", "invalid model: Conv",
                          "attribute group must be an integer")
