"""Issue 3 benchmark: whole-process start-up of `convcost --help` and a YAML analysis.

Run: python benchmarks/bench_startup.py [--runs 20]
Target: `convcost --help` under 0.3 s; the YAML path never imports torch or onnx.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], runs: int) -> float:
    """Median wall time of `cmd` over `runs` runs (after one warm-up)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    py = sys.executable
    spec = str(ROOT / "configs" / "models" / "mobilenet_v1.yaml")
    rows = [
        ("python -c pass (interpreter floor)", [py, "-c", "pass"]),
        ("convcost --help", [py, "-m", "convcost", "--help"]),
        ("convcost analyze --help", [py, "-m", "convcost", "analyze", "--help"]),
        ("convcost analyze mobilenet_v1.yaml -f json", [py, "-m", "convcost", "analyze", spec, "-f", "json"]),
        ("convcost analyze mobilenet_v1.yaml (table)", [py, "-m", "convcost", "analyze", spec]),
    ]
    print(f"| command | median wall time (s), {args.runs} runs |")
    print("|---|---:|")
    for label, cmd in rows:
        print(f"| `{label}` | {wall(cmd, args.runs):.3f} |")
    probe = ("import sys; from convcost.cli.app import main\ntry: main(['analyze', sys.argv[1], '-f', 'json'])\n"
             "except SystemExit: pass\nprint(sorted(m for m in ('torch', 'onnx', 'numpy') if m in sys.modules), "
             "file=sys.stderr)")
    proc = subprocess.run([py, "-c", probe, spec], capture_output=True, text=True)
    print(f"\nheavy modules imported on the YAML path: {proc.stderr.strip()}")


if __name__ == "__main__":
    main()
