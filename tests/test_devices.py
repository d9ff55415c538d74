"""Device profiles (shipped and user-written), `devices`, `analyze -d`, `calibrate` and `bench`."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from convcost.latency.devices import REQUIRED_KINDS, load_profile, shipped_profiles
from convcost.latency.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
TINY_SPEC = {"name": "tiny", "input": [1, 8, 16, 16], "layers": [
    {"name": "c1", "type": "conv", "out": 16, "kernel": 3, "padding": 1},
    {"name": "pw", "type": "conv", "out": 16, "kernel": 1},
    {"name": "dw", "type": "conv", "out": 16, "kernel": 3, "padding": 1, "groups": 16},
    {"type": "global_pool"}, {"type": "flatten"}, {"name": "fc", "type": "linear", "out": 10}]}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convcost: error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def rpi4_doc() -> dict:
    return yaml.safe_load(shipped_profiles()["rpi4"].read_text())


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPEC))
    return path


# --- shipped profiles -----------------------------------------------------------------------

def test_at_least_eight_profiles_covering_the_device_classes() -> None:
    names = set(shipped_profiles())
    assert len(names) >= 8
    for wanted in (("xeon-8380", "epyc-7763"), ("apple-m1",), ("rpi4", "rpi5"), ("snapdragon855",), ("t4", "a100"),
                   ("jetson-nano",), ("edgetpu",)):
        assert names & set(wanted), wanted


@pytest.mark.parametrize("name", sorted(shipped_profiles()))
def test_every_shipped_profile_loads_with_a_source_for_every_figure(name: str) -> None:
    path = shipped_profiles()[name]
    p = load_profile(path)
    assert p.name == name == path.stem
    figures = list(p.figures())
    assert len(figures) >= 3 + len(REQUIRED_KINDS) * 2
    raw = yaml.safe_load(path.read_text())
    for kind in REQUIRED_KINDS:  # stated in the file, not defaulted
        assert kind in raw["efficiency"]
    for field, value, source in figures:
        assert value >= 0, field
        assert len(source) > 10, (field, source)
        # A datasheet or paper figure names its document; a figure none publishes says so.
        lowered = source.lower()
        assert any(w in lowered for w in ("datasheet", "product", "computed", "estimate", "ark", "guide",
                                          "defaults to")), (field, source)
    # A datasheet figure quotes the number (in G or T units); a computed one shows its arithmetic.
    for field in ["memory_bandwidth_gbs", *(f"peak_gflops.{d}" for d in p.roofline.peak_gflops)]:
        value = dict((f, v) for f, v, _ in figures)[field]
        src = p.sources[field]
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", src.replace(",", ""))]
        quoted = any(abs(n - value) <= 0.01 * value or abs(n * 1000 - value) <= 0.01 * value for n in numbers)
        assert quoted or src.startswith(("computed", "estimate")), (field, src)
    # A source names a document a user can read or the machine and date of a calibration, never a
    # benchmark run label or a section of the project's own results log.
    for field, _, source in figures:
        assert not re.search(r"RESULTS|\b[Ii]ssue\b|\brun [A-Z]{1,2}\b|\bsession\b", source), (field, source)
    assert not re.search(r"RESULTS|\b[Ii]ssue\b|\brun [A-Z]{1,2}\b|\bsession\b", path.read_text()), path.name


def test_edgetpu_runs_depthwise_badly() -> None:
    p = load_profile(shipped_profiles()["edgetpu"])
    eff = p.roofline.efficiency
    assert eff["depthwise"] < eff["dense"] / 5
    assert set(p.roofline.peak_gflops) == {"int8"}


def test_profiles_ship_inside_the_package_and_configs_devices_points_at_them() -> None:
    import convcost

    package = Path(convcost.__file__).parent / "latency" / "profiles"
    assert {p.parent.resolve() for p in shipped_profiles().values()} == {package.resolve()}
    configs = ROOT / "configs" / "devices"
    assert sorted(p.name for p in configs.glob("*.yaml")) == sorted(p.name for p in package.glob("*.yaml"))


def test_devices_command_table_and_json() -> None:
    table = cli("devices")
    assert table.returncode == 0, table.stderr
    for name in shipped_profiles():
        assert name in table.stdout
    data = json.loads(cli("devices", "-f", "json").stdout)
    assert {d["name"] for d in data["devices"]} == set(shipped_profiles())
    for d in data["devices"]:
        for kind in KINDS:
            assert d["efficiency"][kind]["source"]
        assert all(f["source"] for f in d["peak_gflops"].values())


# --- analyze -d -------------------------------------------------------------------------------

def test_analyze_with_named_and_file_devices(spec: Path, tmp_path: Path, rpi4_doc: dict) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({**rpi4_doc, "name": "mine"}))
    result = cli("analyze", str(spec), "-d", "rpi4", "-d", str(mine), "-d", "t4", "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["settings"]["devices"] == ["rpi4", "mine", "t4"]
    assert data["totals"]["latency_ms"]["rpi4"] == pytest.approx(data["totals"]["latency_ms"]["mine"])
    assert data["totals"]["latency_ms"]["t4"] < data["totals"]["latency_ms"]["rpi4"]
    for layer in data["layers"]:
        assert set(layer["latency_ms"]) == set(layer["latency_bound"]) == {"rpi4", "mine", "t4"}
    layer_sum = sum(layer["latency_ms"]["rpi4"] for layer in data["layers"])
    assert data["totals"]["latency_ms"]["rpi4"] > layer_sum  # plus the Linear layer
    for fmt in ("table", "markdown", "csv"):
        out = cli("analyze", str(spec), "-d", "rpi4", "-f", fmt)
        assert out.returncode == 0 and "rpi4" in out.stdout, (fmt, out.stderr)


def test_analyze_without_devices_does_not_import_torch(spec: Path, tmp_path: Path) -> None:
    code = ("import sys; from convcost.cli.app import main\n"
            f"try: main(['analyze', {str(spec)!r}, '-d', 'rpi4', '-f', 'json'])\n"
            "except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --- bad profiles: exit 2, one line ----------------------------------------------------------

def _broken(doc: dict, path: tuple[str, ...], value: object) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "fragments"), [
    (("efficiency", "depthwise"), None, ("efficiency.depthwise: missing",)),
    (("memory_bandwidth_gbs",), None, ("memory_bandwidth_gbs: missing",)),
    (("overhead_us", "value"), -5, ("overhead_us.value", "negative")),
    (("efficiency", "dense", "value"), -0.5, ("efficiency.dense.value", "negative")),
    (("peak_gflops", "float32", "value"), 0, ("peak_gflops.float32.value", "greater than 0")),
    (("efficiency", "grouped", "source"), None, ("efficiency.grouped.source: missing",)),
    (("efficiency", "dense", "value"), "fast", ("efficiency.dense.value", "number")),
    (("efficiency", "sparse"), {"value": 1, "source": "x"}, ("unknown kind", "sparse")),
    (("peak_gflops", "float64"), {"value": 1, "source": "x"}, ("unknown dtype", "float64")),
    (("efficency",), {}, ("unknown key", "efficency")),
])
def test_bad_profile_is_one_line_naming_file_and_field(tmp_path: Path, spec: Path, rpi4_doc: dict, path, value,
                                                      fragments) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_broken(rpi4_doc, path, value)))
    one_line_error(cli("analyze", str(spec), "-d", str(bad)), str(bad), *fragments)


def test_profile_file_problems(tmp_path: Path, spec: Path) -> None:
    missing = tmp_path / "nope.yaml"
    one_line_error(cli("analyze", str(spec), "-d", str(missing)), "nope.yaml", "no such")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    one_line_error(cli("analyze", str(spec), "-d", str(broken)), "broken.yaml", "YAML syntax error")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    one_line_error(cli("analyze", str(spec), "-d", str(scalar)), "scalar.yaml", "mapping")


def test_unknown_device_name_lists_the_known_ones(spec: Path) -> None:
    line = one_line_error(cli("analyze", str(spec), "-d", "rpi9"), "rpi9")
    for name in shipped_profiles():
        assert name in line


def test_device_without_the_dtype_and_duplicate_devices(spec: Path) -> None:
    one_line_error(cli("analyze", str(spec), "-d", "edgetpu"), "edgetpu", "float32", "int8")
    ok = cli("analyze", str(spec), "-d", "edgetpu", "--dtype", "int8", "-f", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["latency_ms"]["edgetpu"] > 0
    one_line_error(cli("analyze", str(spec), "-d", "rpi4", "-d", "rpi4"), "rpi4", "already")


# --- calibrate and bench (torch) ------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`calibrate` on a hidden smoke-sized sweep: the command and its output, not the accuracy."""
    out = tmp_path_factory.mktemp("cal") / "here.yaml"
    result = cli("calibrate", "--sweep", "smoke", "--name", "here", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "calibrated in" in result.stderr
    return out


def test_calibrate_writes_a_profile_that_loads(calibrated: Path) -> None:
    p = load_profile(calibrated)
    assert p.name == "here" and p.threads and p.clock == "wall"
    assert p.roofline.peak_gflops["float32"] > 0 and p.roofline.bandwidth_gbs > 0
    for field, value, source in p.figures():
        assert source.startswith("calibrated on ") or source.startswith("defaults to"), (field, source)
        assert value >= 0
    cal = p.calibration or {}
    assert cal["macs_per_ms"] > 0 and len(cal["points_ms"]) >= 8
    assert all(ms > 0 for ms in cal["points_ms"].values())


def test_calibrated_profile_drives_analyze(calibrated: Path, spec: Path) -> None:
    result = cli("analyze", str(spec), "-d", str(calibrated), "-f", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["latency_ms"]["here"] > 0


def test_calibrate_usage_errors() -> None:
    one_line_error(cli("calibrate", "--clock", "thread"), "--clock thread", "--threads 1")
    one_line_error(cli("calibrate", "--clock", "cpu"), "--clock")


def test_bench_on_a_tiny_spec(calibrated: Path, spec: Path) -> None:
    result = cli("bench", str(spec), "-d", str(calibrated), "--repeats", "1", "--seconds", "0", "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"]["name"] == "here"
    assert [layer["name"] for layer in data["layers"]] == ["c1", "pw", "dw"]
    for layer in data["layers"]:
        assert layer["measured_ms"] > 0 and layer["estimated_ms"] > 0
        assert layer["error"] == pytest.approx(layer["estimated_ms"] / layer["measured_ms"] - 1, rel=1e-4)
        for v in layer["variants"].values():
            assert v["measured_ms"] > 0 and isinstance(v["sign_right"], bool)
            assert v["sign_right"] == ((v["speedup_measured"] > 1) == (v["speedup_estimated"] > 1))
    assert set(data["layers"][0]["variants"]) == {"spatial", "depthwise", "grouped"}
    assert data["totals"]["measured_ms"] > 0 and data["summary"]["layers"] == 3
    table = cli("bench", str(spec), "-d", str(calibrated), "--repeats", "1", "--seconds", "0", "-V", "depthwise")
    assert table.returncode == 0 and "Variant speed-up sign right" in table.stdout, table.stderr


def test_bench_bad_input(spec: Path, tmp_path: Path) -> None:
    one_line_error(cli("bench", str(tmp_path / "missing.yaml"), "-d", "rpi4"), "missing.yaml")
    one_line_error(cli("bench", str(spec), "-d", "nope"), "nope")
    # --rank auto picks ranks from weights; bench, like analyze, refuses it for a model without any
    one_line_error(cli("bench", str(spec), "-d", "rpi4", "--rank", "auto"), "--rank auto needs weights")
