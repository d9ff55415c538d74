"""Fuzzing the YAML spec path: generated and mutated specs, random bytes.

Property: exit 0 with a valid result, or exit 2 with one line; never a traceback or a hang.
Deterministic (derandomized) so CI runs the same cases; benchmarks/fuzz.py runs many more.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import MODELS, assert_clean_outcome, fuzz_examples, invoke

FUZZ = settings(max_examples=fuzz_examples(400), deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ints = st.one_of(st.integers(-3, 70), st.just(2**40), st.just(2**63), st.booleans(), st.none(),
                 st.text(max_size=3), st.lists(st.integers(-1, 9), max_size=7))
values = st.one_of(ints, st.sampled_from(["same", "valid", "max", "avg", "input", "c0", "c1"]))
layer_types = st.sampled_from(["conv", "conv_transpose", "pool", "global_pool", "flatten", "linear", "add",
                               "concat", "repeat", "bogus", 7])
keys = st.sampled_from(["name", "type", "out", "kernel", "stride", "padding", "dilation", "groups", "bias",
                        "output_padding", "from", "inputs", "axis", "times", "mode", "dtype", "layers"])


@st.composite
def layer(draw, depth: int = 0):
    d = {"type": draw(layer_types), "name": draw(st.sampled_from(["c0", "c1", "c2", None]))}
    for _ in range(draw(st.integers(0, 6))):
        d[draw(keys)] = draw(values)
    if d["type"] == "repeat" and depth < 2:
        d["layers"] = draw(st.lists(layer(depth + 1), max_size=3))
    if d["name"] is None:
        del d["name"]
    return d


specs = st.fixed_dictionaries(
    {"input": st.one_of(st.lists(st.integers(-1, 40), min_size=0, max_size=6), ints),
     "layers": st.lists(layer(), max_size=6)},
    optional={"name": values, "defaults": st.dictionaries(keys, values, max_size=3)},
)


def check_spec(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    result = invoke("analyze", str(path), "-f", "json")
    assert_clean_outcome(result)
    if result.code == 0:
        data = json.loads(result.out)
        assert data["totals"]["macs"] >= 0


@FUZZ
@given(spec=specs)
def test_generated_specs(tmp_path_factory, spec):
    check_spec(tmp_path_factory.mktemp("g"), yaml.safe_dump(spec))


SHIPPED = [p.read_text() for p in sorted(MODELS.glob("*.yaml"))]


@FUZZ
@given(which=st.integers(0, len(SHIPPED) - 1), seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4))
def test_mutated_shipped_specs(tmp_path_factory, which, seed, edits):
    rng = random.Random(seed)
    data = yaml.safe_load(SHIPPED[which])
    nodes = [layer for layer in data["layers"] if isinstance(layer, dict)]
    for _ in range(edits):
        target = rng.choice(nodes)
        key = rng.choice(list(target) + ["out", "kernel", "stride", "groups", "from", "padding"])
        action = rng.random()
        if action < 0.3:
            target.pop(key, None)
        elif action < 0.9:
            target[key] = rng.choice([0, -1, 1, 3, 2**40, "same", [1, 2], [0, 0, 0], None, "pw2", "nowhere", 1.5])
        else:
            data["layers"].insert(rng.randrange(len(data["layers"]) + 1), dict(target))
    check_spec(tmp_path_factory.mktemp("m"), yaml.safe_dump(data))


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_as_yaml(tmp_path_factory, text):
    check_spec(tmp_path_factory.mktemp("t"), text)


@settings(FUZZ, max_examples=fuzz_examples(300))
@given(blob=st.binary(min_size=1, max_size=512), ext=st.sampled_from([".yaml", ".onnx", ".pt", ".bin", ""]))
def test_random_bytes_with_every_extension(tmp_path_factory, blob, ext):
    path = tmp_path_factory.mktemp("b") / f"model{ext}"
    path.write_bytes(blob)
    assert_clean_outcome(invoke("analyze", str(path), "-i", "1x3x8x8", "-f", "json"))
