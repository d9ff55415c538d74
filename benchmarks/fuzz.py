"""Issue 9 benchmark: the fuzz suite at scale (CI runs the same tests with the default scale).

Run: python benchmarks/fuzz.py [--scale 25]
Each fuzz test runs `scale x` its CI example count; the property is the same: exit 0 with a valid
result or exit 2 with one line, never a traceback, hang or crash. Prints cases, failures, time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=25.0, help="multiplier of the CI example counts")
    args = parser.parse_args()
    env = {**os.environ, "CONVCOST_FUZZ_SCALE": str(args.scale)}
    start = time.perf_counter()
    proc = subprocess.run(
        # pyproject's addopts already has -q; a second -q would drop the "N passed" summary line
        [sys.executable, "-m", "pytest", "-p", "no:warnings", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", *sorted(str(p) for p in (ROOT / "tests").glob("test_fuzz_*.py"))],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    cases = sum(int(n) for n in re.findall(r"- (\d+) passing examples", proc.stdout))
    summary = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line]
    print(summary[-1] if summary else "(no pytest summary)")
    print(f"scale {args.scale}: {cases} generated cases in {elapsed:.0f} s; pytest exit {proc.returncode}")
    if proc.returncode:
        print(proc.stdout[-5000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
