"""Issue 20 benchmark: 17 models in one `convcost analyze` call against 17 calls, whole processes.

Run:  python benchmarks/bench_multi.py [--runs 5] [--workdir DIR] [--jobs N] [--quick] [-- EXTRA ANALYZE ARGS]

The 17 models: the 11 architectures of `tests/archs.MODELS` exported to ONNX at their usual input
sizes (random weights, seed 0; legacy exporter, opset 17) and the 6 shipped specs of
`configs/models/`. Both sides run `convcost analyze ... -f json -o FILE` with the default settings
(every variant, SVD errors on where there are weights) unless extra arguments follow `--`: the 17
calls one after another, as a CI job with a loop would, and one call with all 17 models (workers
forked per core, see README "Several models"). One warm-up round, then `--runs` rounds that
interleave the two sides; the ratio of the medians is reported, and the numbers must be
identical: each document of the one call's JSON list equals the JSON of that model's own call.

`--quick` checks the script itself in a minute: 5 models (3 small exports, 2 specs), `-V none`, 1 run.
Exports are cached in the work folder (`--workdir`, default a folder in the temp directory).
"""

from __future__ import annotations

import argparse
import json
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
SPECS = sorted((ROOT / "configs" / "models").glob("*.yaml"))
QUICK_EXPORTS = ("audio1d", "video3d", "decoder")


def export_models(workdir: Path, names: list[str]) -> list[Path]:
    """The ONNX export of each `tests/archs.MODELS` name (made once, reused from `workdir`)."""
    missing = [n for n in names if not (workdir / f"{n}.onnx").exists()]
    if missing:
        sys.path.insert(0, str(ROOT))
        import warnings

        import torch

        from tests import archs

        warnings.filterwarnings("ignore")
        for name in missing:
            factory, shape = archs.MODELS[name]
            torch.manual_seed(0)
            module = factory().eval()
            tmp = workdir / f".{name}.onnx.tmp"
            torch.onnx.export(module, torch.zeros(shape), str(tmp), dynamo=False, opset_version=17)
            tmp.replace(workdir / f"{name}.onnx")
            print(f"exported {name}", file=sys.stderr)
    return [workdir / f"{n}.onnx" for n in names]


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and the children it waited for)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "convcost-bench-multi")
    parser.add_argument("--jobs", type=int, default=None, help="--jobs for the one call (default: convcost's)")
    parser.add_argument("--quick", action="store_true", help="5 small models, -V none, 1 run: checks the script")
    parser.add_argument("extra", nargs="*", help="more `convcost analyze` arguments for both sides (after --)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from tests import archs

    names = list(QUICK_EXPORTS if args.quick else archs.MODELS)
    models = [*export_models(args.workdir, names), *(SPECS[:2] if args.quick else SPECS)]
    extra = [*args.extra, *(["-V", "none"] if args.quick else [])]
    runs = 1 if args.quick else args.runs
    out = args.workdir / "out"
    out.mkdir(exist_ok=True)
    base = [PY, "-m", "convcost", "analyze"]
    one_call = [*base, *map(str, models), "-f", "json", "-o", str(out / "all.json"), *extra,
                *(["--jobs", str(args.jobs)] if args.jobs else [])]
    calls = [[*base, str(m), "-f", "json", "-o", str(out / f"{i}.json"), *extra] for i, m in enumerate(models)]

    def separate() -> tuple[float, float]:
        timings = [run_once(cmd) for cmd in calls]
        return sum(t for t, _ in timings), sum(c for _, c in timings)

    separate()  # warm-up: page cache, bytecode
    run_once(one_call)
    apart, together_label = f"{len(models)} calls", "1 call"
    walls: dict[str, list[float]] = {apart: [], together_label: []}
    cpus: dict[str, list[float]] = {apart: [], together_label: []}
    for _ in range(runs):
        for label, fn in ((apart, separate), (together_label, lambda: run_once(one_call))):
            wall, cpu = fn()
            walls[label].append(wall)
            cpus[label].append(cpu)

    together = json.loads((out / "all.json").read_text())
    alone = [json.loads((out / f"{i}.json").read_text()) for i in range(len(models))]
    identical = together == alone
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{len(models)} models ({len(names)} ONNX exports, {len(models) - len(names)} specs); "
          f"settings: {' '.join(extra) or 'defaults'}; {cores} cores; load average {load:.1f} at the end; "
          f"{runs} run(s)\n")
    print("| run | median wall (s) | min wall (s) | median CPU (s) |")
    print("|---|---:|---:|---:|")
    for label in walls:
        print(f"| {label} | {statistics.median(walls[label]):.2f} | {min(walls[label]):.2f} | "
              f"{statistics.median(cpus[label]):.2f} |")
    ratio = statistics.median(walls[apart]) / statistics.median(walls[together_label])
    cpu_ratio = statistics.median(cpus[apart]) / statistics.median(cpus[together_label])
    print(f"\none call is {ratio:.2f}x faster (wall), {cpu_ratio:.2f}x less CPU; "
          f"numbers identical (each document of the list == its own call's JSON): {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
