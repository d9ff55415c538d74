"""Benchmark: convcost's whole-model estimates against the real models in onnxruntime.

For each thread count: `convcost calibrate --runtime onnxruntime --threads T` (timed), then for every
model of the zoo (benchmarks/ort_models.py: models we export ourselves with torch) `convcost bench
MODEL -d PROFILE -f json`, which runs the model end to end in onnxruntime (median over --seconds),
and kernel by kernel from onnxruntime's profiler. For the first --variant-models models, bench also
writes each factorized variant (as `convcost apply` does) and runs it end to end.

Reported: the share of models whose whole-model estimate is within 10% of the measured median
(and the same for the time-proportional-to-MACs baseline fitted on the same calibration); the
share of kernels of 50 us or more within 25%; the share of (model, variant) pairs whose predicted
speed-up has the right sign. The reference is always the real model in onnxruntime. The first model
is measured again after the last one: how far the host itself drifted during the run.

The host's speed: on a shared VM it drifts by up to 20% within the quarter of an hour the models of
one thread count take, and an estimate calibrated at the start is then off by that much at the end
whatever its model of the kernels. So right after calibrating, and again before each model, two
reference models of the zoo (ResNet-18, compute-bound; MobileNetV2, memory- and overhead-bound) are
run for --reference-seconds each; a model's `host_speed` is the geometric mean of their time then
over their time after calibrating. Beside the raw error, the summary counts models within 10% of
estimated x host_speed: the estimator's accuracy on the host as it was when the model ran. Only the
raw figures are the product's claim.

    python benchmarks/bench_ort.py --threads 1 2 --seconds 10 --out benchmarks/data/ort_bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ort_models import export_zoo  # noqa: E402

#: Models whose factorized variants are run too (they have weights and convs every variant applies to).
VARIANT_MODELS = ("resnet18", "mobilenet_v2", "resnet50", "squeezenet1_0", "vgg16", "unet_segmenter",
                  "crnn_text", "efficientnet_b0")


def convcost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True, cwd=ROOT)


def calibrate(threads: int, folder: Path, quick: bool) -> tuple[Path, float]:
    out = folder / f"ort-{threads}t{'-quick' if quick else ''}.yaml"
    start = time.monotonic()
    done = convcost("calibrate", "--runtime", "onnxruntime", "--threads", str(threads), "-o", str(out),
                    *(["--quick"] if quick else []))
    if done.returncode:
        raise SystemExit(f"calibrate failed: {done.stderr}")
    print(done.stderr.strip().splitlines()[1], file=sys.stderr)
    return out, time.monotonic() - start


#: The zoo's models that measure the host's speed (`host_speed`).
REFERENCE_MODELS = ("resnet18", "mobilenet_v2")


def reference_ms(paths: list[Path], threads: int, seconds: float) -> list[float]:
    """Median wall ms of each reference model in onnxruntime, run as bench runs a model."""
    from convcost.analysis.ort_bench import measure_whole

    return [measure_whole(p, {}, threads, seconds)[0] for p in paths]


def host_speed(now: list[float], then: list[float]) -> float:
    """How much slower the host runs now than when `then` was measured (geometric mean over references)."""
    return statistics.geometric_mean([a / b for a, b in zip(now, then, strict=True)])


def bench(model: Path, profile: Path, seconds: float, variants: bool) -> dict:
    done = convcost("bench", str(model), "-d", str(profile), "--seconds", str(seconds), "-f", "json",
                    "-V", "spatial,depthwise,grouped" if variants else "none")
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)}
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/convcost-zoo"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--variant-models", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="calibrate --quick")
    ap.add_argument("--profile", type=Path, nargs="*", help="use these profiles (one per --threads) instead")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--reference-seconds", type=float, default=2.0,
                    help="seconds per reference model before each model (0: no host_speed)")
    args = ap.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    zoo = export_zoo(args.folder, args.only)
    with_variants = {name for name in VARIANT_MODELS if any(z.name == name for z in zoo)}
    with_variants = set(list(dict.fromkeys(n for n in VARIANT_MODELS if n in with_variants))[:args.variant_models])
    results: dict = {"models": [z.name for z in zoo], "runs": {}}
    for i, threads in enumerate(args.threads):
        if args.profile:
            profile, cal_s = args.profile[i], None
        else:
            profile, cal_s = calibrate(threads, args.folder, args.quick)
        refs = [z.path for z in zoo if z.name in REFERENCE_MODELS] if args.reference_seconds > 0 else []
        calibrated_refs = reference_ms(refs, threads, args.reference_seconds) if refs else []
        rows = []
        for z in zoo:
            speed = host_speed(reference_ms(refs, threads, args.reference_seconds), calibrated_refs) if refs else None
            doc = bench(z.path, profile, args.seconds, z.name in with_variants)
            rows.append({"model": z.name, "what": z.what, **({"failed": doc["failed"]} if "failed" in doc else {
                "measured_ms": doc["totals"]["measured_ms"], "estimated_ms": doc["totals"]["estimated_ms"],
                "error": doc["totals"]["error"], "baseline_ms": doc["totals"]["baseline_ms"],
                "kernels": [(k["measured_ms"], k["estimated_ms"]) for k in doc["kernels"]],
                "variants": {v: {"measured_ms": d["measured_ms"], "estimated_ms": d["estimated_ms"],
                                 "speedup_measured": d["speedup_measured"],
                                 "speedup_estimated": d["speedup_estimated"],
                                 "sign_right": d["sign_right"]} for v, d in doc["variants"].items()},
                "host_speed": speed,
                "other_processes_cpu": doc["conditions"]["other_processes_cpu"]})})
            r = rows[-1]
            print(f"{threads}t {z.name:24s} " + (f"FAILED {r['failed']}" if "failed" in r else
                  f"measured {r['measured_ms']:8.3f} estimated {r['estimated_ms']:8.3f} ({r['error']:+.1%}) "
                  f"baseline {r['baseline_ms'] / r['measured_ms'] - 1:+.1%}"
                  + ("" if speed is None else f" host speed {speed:.3f}")), file=sys.stderr, flush=True)
        # The host's own drift while the models ran: the first model measured again at the end.
        again = bench(zoo[0].path, profile, args.seconds, False)
        first = rows[0].get("measured_ms")
        drift = again["totals"]["measured_ms"] / first - 1 if first and "failed" not in again else None
        results["runs"][str(threads)] = {"profile": str(profile), "calibrate_s": cal_s, "rows": rows,
                                         "summary": {**summarize(rows), "host_drift_first_model": drift}}
        print(json.dumps(results["runs"][str(threads)]["summary"], indent=1), file=sys.stderr)
        if args.out:  # after each thread count: a run stopped later keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


def summarize(rows: list[dict]) -> dict:
    ok = [r for r in rows if "failed" not in r]
    kernels = [(m, e) for r in ok for m, e in r["kernels"] if m >= 0.05]
    pairs = [v["sign_right"] for r in ok for v in r["variants"].values()]
    at_speed = all(r.get("host_speed") for r in ok)  # every model has its host_speed
    return {
        "models": len(ok), "failed": len(rows) - len(ok),
        "within_10pct": sum(abs(r["error"]) <= 0.10 for r in ok),
        "within_10pct_at_host_speed": sum(abs(r["estimated_ms"] * r["host_speed"] / r["measured_ms"] - 1) <= 0.10
                                          for r in ok) if at_speed else None,
        "median_error": statistics.median(r["error"] for r in ok) if ok else None,
        "baseline_within_10pct": sum(abs(r["baseline_ms"] / r["measured_ms"] - 1) <= 0.10 for r in ok),
        "kernels_over_50us": len(kernels),
        "kernels_within_25pct": sum(abs(e / m - 1) <= 0.25 for m, e in kernels),
        "kernels_within_25pct_at_host_speed": sum(abs(e * r["host_speed"] / m - 1) <= 0.25 for r in ok
                                                  for m, e in r["kernels"] if m >= 0.05)
        if at_speed else None,
        "variant_pairs": len(pairs), "signs_right": sum(pairs),
    }


def markdown(results: dict) -> str:
    out = []
    for threads, run in results["runs"].items():
        s = run["summary"]
        out.append(f"\n#### {threads} thread(s) (calibrate: {run['calibrate_s'] or 0:.0f} s)\n")
        out.append("| model | what | measured ms | estimated ms | error | MACs baseline error | variants (measured / "
                   "estimated speed-up, sign) |")
        out.append("|---|---|---:|---:|---:|---:|---|")
        for r in run["rows"]:
            if "failed" in r:
                out.append(f"| {r['model']} | {r['what']} | failed: {r['failed']} | | | | |")
                continue
            variants = "; ".join(
                f"{v}: {d['speedup_measured']:.2f}x / {d['speedup_estimated']:.2f}x "
                f"{'ok' if d['sign_right'] else 'WRONG'}" for v, d in r["variants"].items())
            out.append(f"| {r['model']} | {r['what']} | {r['measured_ms']:.3f} | {r['estimated_ms']:.3f} | "
                       f"{r['error']:+.1%} | {r['baseline_ms'] / r['measured_ms'] - 1:+.1%} | {variants} |")
        out.append(f"\nWithin ±10%: {s['within_10pct']}/{s['models']} models (MACs baseline: "
                   f"{s['baseline_within_10pct']}/{s['models']}); kernels ≥ 50 µs within ±25%: "
                   f"{s['kernels_within_25pct']}/{s['kernels_over_50us']}; variant speed-up sign right: "
                   f"{s['signs_right']}/{s['variant_pairs']}; median error {s['median_error']:+.1%}"
                   + ("" if s.get("within_10pct_at_host_speed") is None else
                      f"; at the host's speed when each model ran: {s['within_10pct_at_host_speed']}/{s['models']} "
                      f"models, {s['kernels_within_25pct_at_host_speed']}/{s['kernels_over_50us']} kernels")
                   + ("" if s.get("host_drift_first_model") is None else
                      f"; the first model measured again after the last: {s['host_drift_first_model']:+.1%}"))
    return "\n".join(out)


if __name__ == "__main__":
    main()
