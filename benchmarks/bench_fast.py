"""Issue 20 benchmarks, side by side in one run: the default analysis of real-weight models and all
variants at scale, against the tools people would otherwise run.

Run: python benchmarks/bench_fast.py [--runs 7] [--chain 10000] [--workdir DIR] [--skip-torch] [--resnet-only]
     (`--quick`: a 1,000-conv chain and 3 runs, to check the script; onnx-tool from `pip install
     onnx-tool` or a folder on PYTHONPATH, benchmark-only)

(1) ResNet-50 ONNX exported by torch (tests/archs.py, random init: real sizes, 102 MB of weights):
    `convcost analyze M -f json` (weight-based errors on: the default), and with `--no-approx`,
    against onnx-tool loading, shape-inferring and profiling the same file. Target: default within
    1.5x onnx-tool.
(2) A chain of N 3x3 convs (64 channels, 56x56, each its own weight; bench_onnx.py's model):
    `convcost analyze M -f json --no-approx` with all three variants, against onnx-tool; time and
    peak RSS. Targets for N = 10,000: under 5 s, at least 10x faster than onnx-tool, under 300 MB.
(3) The same ResNet-50 traced to TorchScript: `convcost analyze M.pt -i 1x3x224x224 -f json`
    (default) against torch's FlopCounterMode counting the loaded archive. Target: within 1.2x.

Whole processes, commands interleaved round by round after one warm-up run each (bench_onnx.py's
`measure`); medians of wall time, and each ratio also by median CPU time, which a busy machine
disturbs less. The counts are compared too: convcost's MACs against onnx-tool's and
FlopCounterMode's (FLOPs / 2).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_onnx import ENV, ONNX_TOOL, PY, ROOT, Results, build, convcost, measure  # noqa: E402
from benchmarks.bench_torchscript import FLOP_COUNTER  # noqa: E402


def table(results: Results, base: str) -> None:
    """Markdown rows with each command's ratio to `base` (median wall, median CPU)."""
    print("| command | wall s: median | min | CPU s | peak RSS MB | ratio to the reference: wall, CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = results[base]
    for label, (med, low, rss, cpu) in results.items():
        print(f"| {label} | {med:.3f} | {low:.3f} | {cpu:.3f} | {rss:.0f} | {med / ref[0]:.2f}, {cpu / ref[3]:.2f} |")
    print()


def verdict(name: str, ok: bool, detail: str) -> None:
    print(f"- {name}: **{'met' if ok else 'not met'}** ({detail})")


def output(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=ENV, cwd=ROOT).stdout


def resnet_onnx(work: Path, runs: int, onnx_tool: bool) -> None:
    model = work / "resnet50.onnx"
    build("resnet50", model)
    print("### (1) ResNet-50 ONNX, 102 MB of weights: default analysis against onnx-tool\n")
    commands = {"`convcost analyze M -f json` (default: weight errors on)": convcost(model),
                "`convcost analyze M -f json --no-approx`": convcost(model, "--no-approx")}
    if not onnx_tool:
        table(measure(commands, runs), next(iter(commands)))
        return
    commands["onnx-tool: load, shape_infer, profile"] = [PY, "-c", ONNX_TOOL, str(model)]
    got = measure(commands, runs)
    table(got, "onnx-tool: load, shape_infer, profile")
    ours, theirs = got[next(iter(commands))], got["onnx-tool: load, shape_infer, profile"]
    verdict("default within 1.5x onnx-tool", ours[0] <= 1.5 * theirs[0],
            f"{ours[0] / theirs[0]:.2f}x by median wall time, {ours[3] / theirs[3]:.2f}x by CPU time")
    print()


def chain(work: Path, runs: int, onnx_tool: bool, n: int) -> None:
    model = work / f"chain_{n}.onnx"
    build("chain", model, n)
    print(f"### (2) A chain of {n:,} 3x3 convs: all variants, `--no-approx`, against onnx-tool\n")
    label = "`convcost analyze M -f json --no-approx` (all variants)"
    commands = {label: convcost(model, "--no-approx"),
                "`convcost analyze M -f json -V none`": convcost(model, "-V", "none")}
    if onnx_tool:
        commands["onnx-tool: load, shape_infer, profile"] = [PY, "-c", ONNX_TOOL, str(model)]
    got = measure(commands, runs)
    table(got, "onnx-tool: load, shape_infer, profile" if onnx_tool else label)
    med, _, rss, _ = got[label]
    verdict("under 5 s", med < 5, f"{med:.2f} s median")
    verdict("under 300 MB peak", rss < 300, f"{rss:.0f} MB")
    macs = json.loads(output(convcost(model, "--no-approx", "-V", "none")))["totals"]["macs"]
    if onnx_tool:
        theirs = got["onnx-tool: load, shape_infer, profile"]
        verdict("at least 10x faster than onnx-tool", theirs[0] >= 10 * med,
                f"{theirs[0] / med:.1f}x by median wall time, {theirs[3] / got[label][3]:.1f}x by CPU time; "
                f"peak RSS {rss:.0f} MB against {theirs[2]:.0f} MB")
        printed = ast.literal_eval(output([PY, "-c", ONNX_TOOL, str(model)]).strip().splitlines()[-1])
        counted = int(printed[0] if isinstance(printed, list) else printed)  # onnx-tool 1.0: [macs, ...]
        print(f"- MACs: convcost {macs:,}, onnx-tool {counted:,} (no biases here): equal {macs == counted}")
    print()


def resnet_torchscript(work: Path, runs: int) -> None:
    archive = work / "resnet50.pt"
    if not archive.exists():
        subprocess.run([PY, "-c", "import sys; from pathlib import Path; "
                        "from benchmarks.bench_torchscript import make_archive; make_archive(Path(sys.argv[1]))",
                        str(work)], check=True, env=ENV, cwd=ROOT)
    print("### (3) TorchScript ResNet-50: default analysis against FlopCounterMode\n")
    ours = [PY, "-m", "convcost", "analyze", str(archive), "-i", "1x3x224x224", "-f", "json"]
    commands = {"`convcost analyze M.pt -i 1x3x224x224 -f json` (default)": ours,
                "same, `--no-approx`": [*ours, "--no-approx"],
                "FlopCounterMode script": [PY, "-c", FLOP_COUNTER.format(context=""), str(archive)],
                '`python -c "import torch"` (floor)': [PY, "-c", "import torch"]}
    got = measure(commands, runs)
    table(got, "FlopCounterMode script")
    mine, theirs = got[next(iter(commands))], got["FlopCounterMode script"]
    verdict("default within 1.2x FlopCounterMode", mine[0] <= 1.2 * theirs[0],
            f"{mine[0] / theirs[0]:.2f}x by median wall time, {mine[3] / theirs[3]:.2f}x by CPU time")
    macs = json.loads(output(ours))["totals"]["macs"]
    flops = int(output(commands["FlopCounterMode script"]).strip())
    print(f"- MACs: convcost {macs:,}, FlopCounterMode / 2 {flops // 2:,}: equal {2 * macs == flops}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--chain", type=int, default=10_000, help="convs in the chain (default 10,000)")
    parser.add_argument("--workdir", type=Path, help="keep generated models here (default: a temp dir)")
    parser.add_argument("--skip-torch", action="store_true", help="leave out (3)")
    parser.add_argument("--resnet-only", action="store_true", help="only (1)")
    parser.add_argument("--quick", action="store_true", help="check the script: a 1,000-conv chain, 3 runs")
    args = parser.parse_args()
    runs, n = (min(args.runs, 3), min(args.chain, 1_000)) if args.quick else (args.runs, args.chain)
    onnx_tool = importlib.util.find_spec("onnx_tool") is not None
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
              f"at start, {runs} runs" + ("" if onnx_tool else "; onnx-tool not installed: its rows left out")
              + "\n")
        resnet_onnx(work, runs, onnx_tool)
        if not args.resnet_only:
            chain(work, runs, onnx_tool, n)
        if not (args.skip_torch or args.resnet_only):
            resnet_torchscript(work, runs)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
