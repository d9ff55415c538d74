"""Issue 4 benchmarks: the ONNX path's start-up, scaling and memory, as ratios measured in one run.

Run:  python benchmarks/bench_onnx.py [--runs 10] [--workdir DIR] [--skip-onnx-tool] [--quick]

(a) whole-process `convcost analyze resnet50.onnx -f json` against `python -c "import onnx"` (the floor for
    any tool built on the onnx package) and against onnx-tool profiling the same file; for the zoo's
    light_resnet50 (weights made by ConstantOfShape) and a torch-exported resnet50 (102 MB inline weights).
(b) a chain of N 3x3 convs (64 channels, 56x56), each with its own weight tensor (external data, all
    pointing at one 147 KB block so the files stay small), for N = 1k, 10k, 100k: time and peak memory
    of convcost against onnx-tool (which loads every weight; 100k is not run for it: 14.7 GB).
(c) peak memory of `convcost analyze` on models whose weights grow from 2 MB to 600 MB, stored inline
    and as external data, against `onnx.load` of the same files.

onnx-tool (`pip install onnx-tool`) is a benchmark-only tool, never a convcost dependency.
Timings are whole processes with bytecode caching on (PYTHONDONTWRITEBYTECODE removed), one warm-up
run each, then `--runs` rounds that interleave the commands; the ratio of medians is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(ROOT) + os.pathsep + ENV.get("PYTHONPATH", "")

ONNX_TOOL = ("import sys, onnx_tool\nm = onnx_tool.Model(sys.argv[1])\nm.graph.shape_infer()\n"
             "m.graph.profile()\nprint(m.graph.macs)")
#: The same pipeline as `convcost analyze -f json`, without the command-line framework.
LEAN = ("import sys\nfrom convcost.cli.common import emit, make_view\nfrom convcost.cli.options import Options\n"
        "from convcost.analysis.pipeline import run\nfrom convcost.render import render\n"
        "emit(render('analysis', 'json', run(Options().request(sys.argv[1])), make_view('order', None, None)), None)")
ONNX_LOAD = "import sys, onnx\nonnx.load(sys.argv[1])"
FLOOR = "`python -c 'import onnx'` (floor)"


def run_once(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one run of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


#: label -> (median wall s, min wall s, peak RSS MB, median CPU s)
Results = dict[str, tuple[float, float, float, float]]


def measure(commands: dict[str, list[str]], runs: int) -> Results:
    """Run the commands interleaved, round by round, after one warm-up run each."""
    wall: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    peak: dict[str, float] = {k: 0.0 for k in commands}
    for cmd in commands.values():
        run_once(cmd)  # warm-up: page cache, bytecode
    for _ in range(runs):
        for label, cmd in commands.items():
            t, c, rss = run_once(cmd)
            wall[label].append(t)
            cpu[label].append(c)
            peak[label] = max(peak[label], rss)
    return {k: (statistics.median(v), min(v), peak[k], statistics.median(cpu[k])) for k, v in wall.items()}


def convcost(model: Path, *extra: str) -> list[str]:
    return [PY, "-m", "convcost", "analyze", str(model), "-f", "json", *extra]


def table(results: Results, base: str | None = None, name: str = "") -> None:
    """Markdown rows; with `base`, ratios to that command of median wall time, minimum wall time
    and median CPU time (the steadiest figure on a shared machine)."""
    head = "| command | wall s: median | min | CPU s | peak RSS MB |"
    print(head + (f" ratio to {name}: median, min, CPU |" if base else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if base else ""))
    for label, (med, low, rss, cpu) in results.items():
        ratio = ""
        if base:
            b = results[base]
            ratio = f" {med / b[0]:.2f}, {low / b[1]:.2f}, {cpu / b[3]:.2f} |"
        print(f"| {label} | {med:.3f} | {low:.3f} | {cpu:.3f} | {rss:.0f} |{ratio}")
    print()


# --- models -------------------------------------------------------------------------------------


def export_resnet50(path: Path) -> None:
    """torchvision-shaped resnet50 (tests/archs.py), random weights, torch.onnx legacy exporter."""
    import warnings

    import torch

    sys.path.insert(0, str(ROOT))
    from tests import archs

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(archs.resnet50().eval(), (torch.randn(1, 3, 224, 224),), str(path), dynamo=False,
                          input_names=["input"])


def conv_chain(path: Path, n: int, channels: int = 64, size: int = 56) -> None:
    """N 3x3 convs, each with its own weight; every weight is external data at the same offset."""
    import numpy as np
    from onnx import TensorProto, helper

    block = np.random.default_rng(0).standard_normal((channels, channels, 3, 3)).astype(np.float32).tobytes()
    data = path.with_suffix(".bin")
    data.write_bytes(block)
    inits, nodes = [], []
    for i in range(n):
        t = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[channels, channels, 3, 3])
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data.name), ("offset", "0"), ("length", str(len(block)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        inits.append(t)
        nodes.append(helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], pads=[1, 1, 1, 1],
                                      name=f"conv{i}"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x0", TensorProto.FLOAT,
                                                                              [1, channels, size, size])],
                              [helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, None)], inits)
    with path.open("wb") as fh:
        fh.write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def wide_model(path: Path, channels: int, external: bool, layers: int = 16) -> int:
    """`layers` 3x3 convs of `channels` channels on 14x14; returns the weight bytes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = (channels, channels, 3, 3)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), f"w{i}")
             for i in range(layers)]
    nodes = [helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], pads=[1, 1, 1, 1])
             for i in range(layers)]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x0", TensorProto.FLOAT,
                                                                             [1, channels, 14, 14])],
                              [helper.make_tensor_value_info(f"x{layers}", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=path.stem + ".bin", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return layers * channels * channels * 9 * 4


BUILDERS = {"resnet50": lambda path, *_: export_resnet50(path),
            "chain": lambda path, n: conv_chain(path, int(n)),
            "wide": lambda path, channels, external: wide_model(path, int(channels), external == "1")}


def build(kind: str, path: Path, *args: object) -> None:
    """Make a model in a child process, so this process stays small: a child's peak RSS counts the
    memory of the process it was forked from."""
    if not path.exists():
        subprocess.run([PY, __file__, "--build", kind, str(path), *map(str, args)], check=True, env=ENV)


# --- sections -----------------------------------------------------------------------------------


def section_a(work: Path, runs: int, onnx_tool: bool) -> None:
    spec = importlib.util.find_spec("onnx")  # found without importing it
    assert spec is not None and spec.submodule_search_locations
    zoo = Path(spec.submodule_search_locations[0]) / "backend" / "test" / "data" / "light"
    light = zoo / "light_resnet50.onnx"
    exported = work / "resnet50.onnx"
    build("resnet50", exported)
    print("### (a) whole-process start-up\n")
    for label, model in (("light_resnet50.onnx (zoo, 80 KB)", light), ("resnet50.onnx (torch export, 102 MB)",
                                                                       exported)):
        print(f"**{label}**\n")
        commands = {
            FLOOR: [PY, "-c", "import onnx"],
            "`convcost analyze M -f json`": convcost(model),
            "`convcost analyze M -f json -V none`": convcost(model, "-V", "none"),
            "same pipeline without the CLI framework (typer)": [PY, "-c", LEAN, str(model)],
            "`python -c 'import onnx, typer, pydantic'`": [PY, "-c", "import onnx, typer, pydantic"],
        }
        if onnx_tool:
            commands["onnx-tool: load, shape_infer, profile"] = [PY, "-c", ONNX_TOOL, str(model)]
        table(measure(commands, runs), FLOOR, "the floor")
    importtime(light)


def importtime(model: Path) -> None:
    """Cumulative import time of the top-level packages `convcost analyze -f json` loads."""
    proc = subprocess.run([PY, "-X", "importtime", "-m", "convcost", "analyze", str(model), "-f", "json"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)
    tops: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # nesting indents by two spaces
            top = name.strip().split(".")[0]
            tops[top] = tops.get(top, 0) + int(cumulative)
    ranked = sorted(tops.items(), key=lambda kv: -kv[1])[:8]
    print("`-X importtime` of `convcost analyze light_resnet50.onnx -f json`, cumulative ms by top-level "
          "package: " + ", ".join(f"{k} {v / 1000:.0f}" for k, v in ranked) + "\n")


def section_b(work: Path, runs: int, onnx_tool: bool, sizes: list[int]) -> None:
    print("### (b) a chain of N 3x3 convs, 64 channels, 56x56\n")
    results: dict[int, Results] = {}
    for n in sizes:
        path = work / f"chain_{n}.onnx"
        build("chain", path, n)
        commands = {"convcost -V none": convcost(path, "-V", "none"),
                    "convcost -V none --top 20": convcost(path, "-V", "none", "--top", "20")}
        if n <= 10_000:  # every conv shares one random weight: errors would repeat one SVD N times
            commands["convcost (all variants, --no-approx)"] = convcost(path, "--no-approx")
            if onnx_tool:
                commands["onnx-tool"] = [PY, "-c", ONNX_TOOL, str(path)]
        results[n] = measure(commands, runs if n <= 1_000 else max(1, runs // 5) if n <= 10_000 else 1)
        print(f"**N = {n:,}**\n")
        table(results[n], "onnx-tool" if "onnx-tool" in results[n] else None, "onnx-tool")
    if len(sizes) > 1:
        key = "convcost -V none"
        steps = []
        for small, big in zip(sizes, sizes[1:], strict=False):
            wall = (results[big][key][0] - results[small][key][0]) / (big - small) * 1e6
            cpu = (results[big][key][3] - results[small][key][3]) / (big - small) * 1e6
            steps.append(f"N {small:,} -> {big:,}: {wall:.0f} us wall, {cpu:.0f} us CPU")
        print(f"Marginal cost per conv of `{key}` (equal steps mean time linear in N): "
              + "; ".join(steps) + "\n")


def section_c(work: Path, runs: int) -> None:
    print("### (c) peak memory against weight size\n")
    print("| weights | storage | convcost analyze -V none: peak RSS MB | onnx.load: peak RSS MB "
          "| convcost s |")
    print("|---:|---|---:|---:|---:|")
    for channels in (64, 256, 1024):
        for external in (False, True):
            path = work / f"wide_{channels}_{'ext' if external else 'inline'}.onnx"
            build("wide", path, channels, int(external))
            size = 16 * channels * channels * 9 * 4
            got = measure({"convcost": convcost(path, "-V", "none"),
                           "onnx.load": [PY, "-c", ONNX_LOAD, str(path)]}, max(1, runs // 5))
            where = "external" if external else "inline"
            print(f"| {size / 2**20:.0f} MB | {where} | {got['convcost'][2]:.0f} | "
                  f"{got['onnx.load'][2]:.0f} | {got['convcost'][0]:.2f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, help="keep generated models here (default: a temp dir)")
    parser.add_argument("--skip-onnx-tool", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N = 1k and 10k only, fewer runs")
    parser.add_argument("--only", choices=["a", "b", "c"], action="append")
    parser.add_argument("--build", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        kind, path, *rest = args.build
        BUILDERS[kind](Path(path), *rest)
        return
    onnx_tool = not args.skip_onnx_tool and importlib.util.find_spec("onnx_tool") is not None
    if not onnx_tool and not args.skip_onnx_tool:
        print("onnx-tool is not installed (pip install onnx-tool); skipping its columns\n")
    sections = args.only or ["a", "b", "c"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at start\n")
        if "a" in sections:
            section_a(work, args.runs, onnx_tool)
        if "b" in sections:
            section_b(work, args.runs, onnx_tool, [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
        if "c" in sections:
            section_c(work, args.runs)


if __name__ == "__main__":
    main()
