"""Device profiles: YAML files of roofline figures, each with the source it came from.

```yaml
name: rpi4
description: Raspberry Pi 4 Model B, 4x Cortex-A72 at 1.5 GHz
peak_gflops:                       # dense peak per dtype (int8: GOP/s)
  float32: {value: 48, source: "4 cores x 1.5 GHz x 8 FLOP/cycle (...)"}
memory_bandwidth_gbs: {value: 12.8, source: "..."}
efficiency:                        # share of peak reached, per op kind (convcost.latency.kinds.KINDS)
  dense: {value: 0.45, source: "..."}
  pointwise: ...                   # also depthwise, grouped, small_channel (required);
                                   # the others default to their parent kind (dense)
overhead_us: {value: 30, source: "..."}   # per op call; or one figure per kind
saturation:                        # optional fill constants (calibrated profiles)
  pixels: {dense: {value: 50, source: "..."}, pointwise: ...}   # per kind, or one figure for every kind
  out_channels: {grouped: {value: 4, source: "..."}, ...}       # per kind, or one figure for every kind
  reduction: {value: 6, source: "..."}
  work: {dense: {value: 4000, source: "..."}, ...}  # per kind: one factor over N x K instead of the two above
memory_efficiency:                 # optional, per kind: share of the bandwidth an op's traffic moves at
  depthwise: {value: 0.4, source: "..."}            # (default 1; a kind without one takes its parent's)
weight_cache:                      # optional: a conv's weights beyond the cache, read on top of its compute
  cache_mb: {value: 2, source: "..."}               # weight bytes a conv keeps in cache (1e6)
  bandwidth_gbs: {value: 40, source: "..."}         # the rate the rest arrive at (roofline.WeightCache)
runtime:                           # optional: what the figures describe (convcost.latency.fusions.RUNTIMES)
  {name: onnxruntime, version: "1.32.0", threads: 1, provider: CPUExecutionProvider}
fusions: [constant_folding, conv_bn, conv_activation]   # optional; default: the runtime's own list
footprint:                         # optional, per op family and `conv`: memory traffic's time in a model
  elementwise:                     # touching this many MB per run, as a share of the calibration
    16: {value: 0.66, source: "..."}   # sweep's (convcost.latency.footprint)
    256: {value: 1.2, source: "..."}
cold_weights:                      # optional: microseconds each MB of a conv's or matmul's weights adds in
  6: {value: 0, source: "..."}     # a model that runs this many ms (convcost.latency.footprint.ColdWeights)
  24: {value: 25, source: "..."}
ops:                               # optional, per op family (convcost.cost.nodes.FAMILIES) and `run`
  run: {overhead_us: {value: 20, source: "..."}}        # once per model run
  elementwise: {overhead_us: {...}, memory_efficiency: {...}}
```

Shipped profiles live in the package (convcost/latency/profiles, also reachable as configs/devices), so
`-d NAME` works from any install; `-d path.yaml` loads any file. A bad profile is an InputError
naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from convcost.cost import DTYPE_BYTES
from convcost.ir.model import Conv, MatMul, Node, Op
from convcost.latency.footprint import CONV, UNSCALED_KINDS, ColdWeights, Footprint, touched_mb
from convcost.latency.fusions import FUSIONS, RUNTIMES
from convcost.latency.graph import RUN, FamilyFigures, WholeEstimate, WholePlan, family_names, plan_whole
from convcost.latency.kinds import KINDS, lineage
from convcost.latency.roofline import DtypeError, Estimate, Roofline, Saturation, WeightCache, estimate
from convcost.util.errors import ConvcostError, InputError
from convcost.util.infile import load_yaml, read_text

MAX_PROFILE_BYTES = 4 * 1024 * 1024
#: Efficiency kinds every profile states; the others default to their parent kind's figure
#: (convcost.latency.kinds.lineage: volumetric_small -> volumetric -> dense, transposed -> dense).
REQUIRED_KINDS = ("dense", "pointwise", "depthwise", "grouped", "small_channel")
OPTIONAL_KINDS = tuple(k for k in KINDS if k not in REQUIRED_KINDS)
SATURATION_KEYS = ("pixels", "out_channels", "reduction", "work")
CACHE_KEYS = ("cache_mb", "bandwidth_gbs")
OPTIONAL_KEYS = {"saturation", "memory_efficiency", "weight_cache", "threads", "clock", "machine", "calibration",
                 "notes", "runtime", "fusions", "ops", "footprint", "cold_weights"}
RUNTIME_KEYS = ("name", "version", "threads", "provider")
REQUIRED_KEYS = ("name", "description", "peak_gflops", "memory_bandwidth_gbs", "efficiency", "overhead_us")


@dataclass
class DeviceProfile:
    """A device the analysis can estimate latency for (implements analysis.Device)."""

    name: str
    description: str
    roofline: Roofline
    path: str
    #: "efficiency.depthwise" -> where that figure comes from.
    sources: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    clock: str | None = None
    machine: str | None = None
    calibration: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: The runtime the figures describe (name, version, threads, provider); None: not stated.
    runtime: dict[str, Any] | None = None
    #: The graph rewrites that runtime applies (names in convcost.latency.fusions.FUSIONS).
    fusions: tuple[str, ...] = ()
    #: Per op family (and `run`): the figures of ops that are neither convs nor matmuls.
    ops: dict[str, FamilyFigures] = field(default_factory=dict)
    #: How memory traffic's time changes with the megabytes a model touches per run (None: it does not).
    footprint: Footprint | None = None
    #: What weights add with the time a model runs (None: nothing).
    cold_weights: ColdWeights | None = None

    def for_model(self, nodes: Sequence[Node], dtype: str = "float32", convs: Sequence[Conv] = (),
                  matmuls: Sequence[MatMul] = ()) -> DeviceProfile:
        """The profile as one model sees it (latency.footprint): where the profile has footprint
        figures, each op family's (and conv kind's) memory traffic moves at its bandwidth divided by
        its share at the model's footprint; where it has cold-weights figures, the convs' and matmuls'
        weights add their figure at the time the model runs by that profile (`nodes`, with the model's
        `convs` and `matmuls` in their order)."""
        seen = self
        if self.footprint is not None and nodes:
            mb = touched_mb(nodes, dtype)
            fp, roof = self.footprint, self.roofline
            conv = fp.share(CONV, mb)
            memory = {k: roof.memory_share(k) / (1.0 if k in UNSCALED_KINDS else conv) for k in KINDS}
            ops = {f: fig if f == RUN else replace(fig, memory_efficiency=fig.memory_efficiency / fp.share(f, mb))
                   for f, fig in self.ops.items()}
            seen = replace(self, roofline=replace(roof, memory_efficiency=memory), ops=ops)
        if self.cold_weights is None or not (convs or matmuls):
            return seen
        run_ms = seen.whole(nodes, dtype, [seen.estimate(c, dtype).ms for c in convs],
                            [seen.estimate(m, dtype).ms for m in matmuls]).ms
        us = self.cold_weights.us_per_mb(run_ms)
        return replace(seen, roofline=replace(seen.roofline, cold_weights_us_per_mb=us))

    def plan_whole(self, nodes: Sequence[Node], dtype: str) -> WholePlan:
        """What the whole model's estimate on this device needs besides the convs' and matmuls' own:
        the runtime's fusions and every other node's time."""
        passes = RUNTIMES[self.runtime["name"]].pass_activations if self.runtime else frozenset()
        try:
            return plan_whole(nodes, self.roofline, self.ops, self.fusions, dtype, passes)
        except DtypeError as exc:
            raise InputError(f"device {self.name}: {exc}", self.path) from None

    def whole(self, nodes: Sequence[Node], dtype: str, conv_ms: Sequence[float],
              matmul_ms: Sequence[float]) -> WholeEstimate:
        """The whole model's estimate: every node priced after this runtime's fusions."""
        return self.plan_whole(nodes, dtype).estimate(conv_ms, matmul_ms)

    @property
    def macs_per_ms(self) -> float | None:
        """The "time proportional to MACs" baseline's rate: a calibrated profile's sweep throughput."""
        value = (self.calibration or {}).get("macs_per_ms")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def estimate(self, op: Op, dtype: str) -> Estimate:
        try:
            return estimate(self.roofline, op, dtype)
        except DtypeError as exc:
            raise InputError(f"device {self.name}: {exc}", self.path) from None

    def figures(self) -> Iterator[tuple[str, float, str]]:
        """(field, value, source) for every figure, in file order."""
        roof = self.roofline
        for dtype, v in roof.peak_gflops.items():
            yield f"peak_gflops.{dtype}", v, self.sources.get(f"peak_gflops.{dtype}", "")
        yield "memory_bandwidth_gbs", roof.bandwidth_gbs, self.sources.get("memory_bandwidth_gbs", "")
        for kind, v in roof.efficiency.items():
            yield f"efficiency.{kind}", v, self.sources.get(f"efficiency.{kind}", "")
        for kind, v in roof.overhead_us.items():
            yield f"overhead_us.{kind}", v, self.sources.get(f"overhead_us.{kind}", "")
        for key in Saturation.PER_KIND:
            for kind, v in getattr(roof.saturation, key).items():
                if v:
                    yield f"saturation.{key}.{kind}", v, self.sources.get(f"saturation.{key}.{kind}", "")
        if roof.saturation.reduction:
            yield "saturation.reduction", roof.saturation.reduction, self.sources.get("saturation.reduction", "")
        for kind, v in roof.memory_efficiency.items():
            yield f"memory_efficiency.{kind}", v, self.sources.get(f"memory_efficiency.{kind}", "")
        if roof.weight_cache is not None:
            for key in CACHE_KEYS:
                where = f"weight_cache.{key}"
                yield where, getattr(roof.weight_cache, key), self.sources.get(where, "")
        for family, fig in self.ops.items():
            yield f"ops.{family}.overhead_us", fig.overhead_us, self.sources.get(f"ops.{family}.overhead_us", "")
            if family != RUN:
                yield (f"ops.{family}.memory_efficiency", fig.memory_efficiency,
                       self.sources.get(f"ops.{family}.memory_efficiency", ""))
        for key, points in self.footprint.points.items() if self.footprint else ():
            for mb, share in points:
                yield f"footprint.{key}.{mb:g}", share, self.sources.get(f"footprint.{key}.{mb:g}", "")
        for run_ms, us in self.cold_weights.points if self.cold_weights else ():
            yield f"cold_weights.{run_ms:.3g}", us, self.sources.get(f"cold_weights.{run_ms:.3g}", "")


class _Reader:
    """Validates one profile file, collecting each figure's source; errors name the field."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sources: dict[str, str] = {}

    def fail(self, where: str, problem: str) -> InputError:
        return InputError(f"{where}: {problem}" if where else problem, self.path)

    def figure(self, node: Any, where: str, positive: bool = True) -> float:
        if node is None:
            raise self.fail(where, "missing")
        if not isinstance(node, dict):
            raise self.fail(where, f"expected {{value: NUMBER, source: \"document and figure\"}}, got {node!r:.60}")
        unknown = set(node) - {"value", "source"}
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (expected value, source)")
        value = node.get("value")
        if value is None:
            raise self.fail(f"{where}.value", "missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{where}.value", f"expected a number, got {value!r:.60}")
        if value < 0:
            raise self.fail(f"{where}.value", f"must not be negative, got {value}")
        if positive and value == 0:
            raise self.fail(f"{where}.value", "must be greater than 0")
        source = node.get("source")
        if not isinstance(source, str) or not source.strip():
            raise self.fail(f"{where}.source", "missing (every figure names the document and number it comes from)")
        self.sources[where] = source.strip()
        return float(value)

    def mapping(self, node: Any, where: str) -> dict[str, Any]:
        if node is None:
            raise self.fail(where, "missing")
        if not isinstance(node, dict) or not node:
            raise self.fail(where, f"expected a mapping, got {node!r:.60}")
        return node

    def section(self, node: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
        """A mapping whose keys must be among `keys`."""
        table = self.mapping(node, where)
        unknown = set(table) - set(keys)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                   f"(expected {', '.join(keys)})")
        return table

    def _kinds(self, table: dict[str, Any], where: str) -> dict[str, Any]:
        unknown = set(table) - set(KINDS)
        if unknown:
            raise self.fail(where, f"unknown kind(s) {', '.join(sorted(map(str, unknown)))} "
                                   f"(kinds: {', '.join(KINDS)})")
        return table

    def per_kind(self, node: Any, where: str, positive: bool) -> dict[str, float]:
        """One figure per kind; the required kinds must be there, the rest default to their parent's."""
        table = self._kinds(self.mapping(node, where), where)
        values = {k: self.figure(table.get(k), f"{where}.{k}", positive) for k in REQUIRED_KINDS}
        values.update({k: self.figure(table[k], f"{where}.{k}", positive) for k in OPTIONAL_KINDS if k in table})
        for k in OPTIONAL_KINDS:
            if k not in table:
                home = next(p for p in lineage(k) if p in table or p in REQUIRED_KINDS)
                values[k] = values[home]
                self.sources[f"{where}.{k}"] = f"defaults to {where}.{home}"
        return {k: values[k] for k in KINDS}

    def some_kinds(self, node: Any, where: str, positive: bool) -> dict[str, float]:
        """A figure for any of the kinds (the rest take their parent's, or none), or one for every kind."""
        if isinstance(node, dict) and "value" not in node and "source" not in node:
            return {k: self.figure(v, f"{where}.{k}", positive) for k, v in self._kinds(node, where).items()}
        one = self.figure(node, where, positive)
        source = self.sources.pop(where)
        self.sources.update({f"{where}.{k}": source for k in KINDS})
        return dict.fromkeys(KINDS, one)


def parse_profile(data: Any, path: str) -> DeviceProfile:
    """Check a loaded profile document and build the profile (InputError on any problem)."""
    r = _Reader(path)
    if not isinstance(data, dict):
        raise r.fail("", "a device profile must be a YAML mapping (name, description, peak_gflops, ...)")
    unknown = set(data) - set(REQUIRED_KEYS) - OPTIONAL_KEYS
    if unknown:
        raise r.fail("", f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(expected {', '.join(REQUIRED_KEYS)}; optional {', '.join(sorted(OPTIONAL_KEYS))})")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise r.fail(key, "missing")
    name, description = data["name"], data["description"]
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise r.fail("name", f"expected a name without spaces, got {name!r:.60}")
    if not isinstance(description, str):
        raise r.fail("description", f"expected text, got {description!r:.60}")
    peaks_node = r.mapping(data["peak_gflops"], "peak_gflops")
    bad = set(peaks_node) - set(DTYPE_BYTES)
    if bad:
        raise r.fail("peak_gflops", f"unknown dtype(s) {', '.join(sorted(map(str, bad)))} "
                                    f"(dtypes: {', '.join(DTYPE_BYTES)})")
    peaks = {dtype: r.figure(v, f"peak_gflops.{dtype}") for dtype, v in peaks_node.items()}
    bandwidth = r.figure(data["memory_bandwidth_gbs"], "memory_bandwidth_gbs")
    efficiency = r.per_kind(data["efficiency"], "efficiency", positive=True)
    overhead_node = data["overhead_us"]
    if isinstance(overhead_node, dict) and "value" not in overhead_node and "source" not in overhead_node:
        overhead = r.per_kind(overhead_node, "overhead_us", positive=False)
    else:
        one = r.figure(overhead_node, "overhead_us", positive=False)
        source = r.sources.pop("overhead_us")
        overhead = dict.fromkeys(KINDS, one)
        r.sources.update({f"overhead_us.{k}": source for k in KINDS})
    halves: dict[str, Any] = {}
    if data.get("saturation") is not None:
        sat = r.section(data["saturation"], "saturation", SATURATION_KEYS)
        for key, node in sat.items():
            where = f"saturation.{key}"
            halves[key] = r.some_kinds(node, where, positive=False) if key in Saturation.PER_KIND \
                else r.figure(node, where, positive=False)
    memory = {} if data.get("memory_efficiency") is None else \
        r.some_kinds(data["memory_efficiency"], "memory_efficiency", positive=True)
    cache = None
    if data.get("weight_cache") is not None:
        node = r.section(data["weight_cache"], "weight_cache", CACHE_KEYS)
        cache = WeightCache(r.figure(node.get("cache_mb"), "weight_cache.cache_mb"),
                            r.figure(node.get("bandwidth_gbs"), "weight_cache.bandwidth_gbs"))
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise r.fail("threads", f"expected a positive integer, got {threads!r:.60}")
    clock = data.get("clock")
    if clock is not None and clock not in ("wall", "thread"):
        raise r.fail("clock", f"expected wall or thread, got {clock!r:.60}")
    calibration = data.get("calibration")
    runtime = _runtime(r, data.get("runtime"))
    fusions = _fusions(r, data.get("fusions"), runtime)
    ops = _ops(r, data.get("ops"))
    footprint = _footprint(r, data.get("footprint"))
    cold = _cold_weights(r, data.get("cold_weights"))
    return DeviceProfile(
        name=name.strip(), description=description.strip(),
        roofline=Roofline(peaks, bandwidth, efficiency, overhead, Saturation(**halves), memory, cache),
        path=path, sources=r.sources, threads=threads, clock=clock,
        machine=str(data["machine"]) if data.get("machine") is not None else None,
        calibration=calibration if isinstance(calibration, dict) else None,
        runtime=runtime, fusions=fusions, ops=ops, footprint=footprint, cold_weights=cold,
    )


def _runtime(r: _Reader, node: Any) -> dict[str, Any] | None:
    if node is None:
        return None
    if not isinstance(node, dict):
        raise r.fail("runtime", f"expected a mapping {{name: onnxruntime|torch|..., version, threads, provider}}, "
                                f"got {node!r:.60}")
    unknown = set(node) - set(RUNTIME_KEYS)
    if unknown:
        raise r.fail("runtime", f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                f"(expected {', '.join(RUNTIME_KEYS)})")
    name = node.get("name")
    if name not in RUNTIMES:
        raise r.fail("runtime.name", f"unknown runtime {name!r:.60} (known: {', '.join(RUNTIMES)})")
    threads = node.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise r.fail("runtime.threads", f"expected a positive integer, got {threads!r:.60}")
    for key in ("version", "provider"):
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise r.fail(f"runtime.{key}", f"expected text, got {value!r:.60}")
    return {k: (str(node[k]) if k in ("version", "provider") else node[k]) for k in RUNTIME_KEYS if k in node}


def _fusions(r: _Reader, node: Any, runtime: dict[str, Any] | None) -> tuple[str, ...]:
    if node is None:
        return RUNTIMES[runtime["name"]].default_fusions if runtime else ()
    if not isinstance(node, list) or not all(isinstance(f, str) for f in node):
        raise r.fail("fusions", f"expected a list of fusion names ({', '.join(FUSIONS)}), got {node!r:.60}")
    bad = [f for f in node if f not in FUSIONS]
    if bad:
        raise r.fail("fusions", f"unknown fusion(s) {', '.join(map(repr, bad))} (known: {', '.join(FUSIONS)})")
    if len(set(node)) != len(node):
        raise r.fail("fusions", "a fusion is listed twice")
    return tuple(node)


def _ops(r: _Reader, node: Any) -> dict[str, FamilyFigures]:
    if node is None:
        return {}
    table = r.mapping(node, "ops")
    known = family_names()
    unknown = set(table) - set(known)
    if unknown:
        raise r.fail("ops", f"unknown op famil{'y' if len(unknown) == 1 else 'ies'} "
                            f"{', '.join(sorted(map(str, unknown)))} (known: {', '.join(known)})")
    out = {}
    for family, figs in table.items():
        where = f"ops.{family}"
        figs = r.mapping(figs, where)
        allowed = {"overhead_us"} if family == RUN else {"overhead_us", "memory_efficiency"}
        extra = set(figs) - allowed
        if extra:
            raise r.fail(where, f"unknown key(s) {', '.join(sorted(map(str, extra)))} "
                                f"(expected {', '.join(sorted(allowed))})")
        overhead = r.figure(figs.get("overhead_us"), f"{where}.overhead_us", positive=False)
        share = 1.0 if "memory_efficiency" not in figs else r.figure(figs["memory_efficiency"],
                                                                     f"{where}.memory_efficiency")
        out[family] = FamilyFigures(overhead, share)
    return out


def _points(r: _Reader, node: Any, where: str, unit: str, digits: str = "g",
            positive: bool = True) -> tuple[tuple[float, float], ...]:
    """A mapping of positive numbers (`unit`) to figures, as (key, value) pairs sorted by key."""
    found = []
    for raw, figure in r.mapping(node, where).items():
        try:
            key = float(raw)
        except (TypeError, ValueError):
            key = math.nan
        if not math.isfinite(key) or key <= 0:
            raise r.fail(where, f"expected {unit} (a positive number) as keys, got {raw!r:.60}")
        found.append((key, r.figure(figure, f"{where}.{key:{digits}}", positive)))
    return tuple(sorted(found))


def _footprint(r: _Reader, node: Any) -> Footprint | None:
    if node is None:
        return None
    known = (CONV, *family_names())
    table = r.section(node, "footprint", known)
    return Footprint({key: _points(r, figures, f"footprint.{key}", "megabytes") for key, figures in table.items()})


def _cold_weights(r: _Reader, node: Any) -> ColdWeights | None:
    if node is None:
        return None
    return ColdWeights(_points(r, node, "cold_weights", "milliseconds", ".3g", positive=False))


def load_profile(path: str | Path) -> DeviceProfile:
    p = Path(path)
    data = load_yaml(read_text(p, "device profile", MAX_PROFILE_BYTES), p)
    return parse_profile(data, str(p))


def shipped_profiles() -> dict[str, Path]:
    """Name -> file of every profile shipped with convcost."""
    folder = resources.files("convcost.latency") / "profiles"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            found[entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(found.items()))


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec or Path(spec).is_file()


class DeviceChoiceError(ConvcostError):
    """A device choice that names no profile, or a profile already chosen; `source` is the choice
    where it helps to repeat it."""


def resolve_device(spec: str) -> DeviceProfile:
    """`-d NAME` (a shipped profile) or `-d path.yaml` (any profile file)."""
    shipped = shipped_profiles()
    if spec in shipped:
        return load_profile(shipped[spec])
    if _looks_like_path(spec):
        return load_profile(spec)
    raise DeviceChoiceError(f"unknown device {spec!r}; known devices: {', '.join(shipped)} "
                            "(or give a profile .yaml path)")


def resolve_devices(specs: Sequence[str]) -> list[DeviceProfile]:
    """Every `-d`, in order; two profiles with one name would share a column, so that is refused."""
    profiles: list[DeviceProfile] = []
    for spec in specs:
        profile = resolve_device(spec)
        if any(p.name == profile.name for p in profiles):
            raise DeviceChoiceError(f"a device named {profile.name} is already selected", spec)
        profiles.append(profile)
    return profiles


def _figure(value: float, source: str, digits: int = 4) -> dict[str, Any]:
    return {"value": float(f"{value:.{digits}g}"), "source": source}


def profile_document(profile: DeviceProfile) -> dict[str, Any]:
    """A profile as the YAML mapping `parse_profile` reads back (for `calibrate -o`)."""
    roof, src = profile.roofline, profile.sources
    doc: dict[str, Any] = {
        "name": profile.name,
        "description": profile.description,
        "peak_gflops": {d: _figure(v, src[f"peak_gflops.{d}"]) for d, v in roof.peak_gflops.items()},
        "memory_bandwidth_gbs": _figure(roof.bandwidth_gbs, src["memory_bandwidth_gbs"]),
        "efficiency": {k: _figure(v, src[f"efficiency.{k}"]) for k, v in roof.efficiency.items()},
        "overhead_us": {k: _figure(v, src[f"overhead_us.{k}"]) for k, v in roof.overhead_us.items()},
    }
    sat: dict[str, Any] = {}
    for key in Saturation.PER_KIND:
        halves = {k: v for k, v in getattr(roof.saturation, key).items() if v}
        if halves:
            sat[key] = {k: _figure(v, src[f"saturation.{key}.{k}"]) for k, v in halves.items()}
    if roof.saturation.reduction:
        sat["reduction"] = _figure(roof.saturation.reduction, src["saturation.reduction"])
    if sat:
        doc["saturation"] = sat
    if roof.memory_efficiency:
        doc["memory_efficiency"] = {k: _figure(v, src[f"memory_efficiency.{k}"])
                                    for k, v in roof.memory_efficiency.items()}
    if roof.weight_cache is not None:
        doc["weight_cache"] = {k: _figure(getattr(roof.weight_cache, k), src[f"weight_cache.{k}"]) for k in CACHE_KEYS}
    for key in ("threads", "clock", "machine", "runtime"):
        if getattr(profile, key) is not None:
            doc[key] = getattr(profile, key)
    if profile.runtime is not None or profile.fusions:
        doc["fusions"] = list(profile.fusions)
    if profile.ops:
        doc["ops"] = {f: {"overhead_us": _figure(fig.overhead_us, src[f"ops.{f}.overhead_us"]),
                          **({} if f == RUN else {"memory_efficiency": _figure(
                              fig.memory_efficiency, src[f"ops.{f}.memory_efficiency"])})}
                      for f, fig in profile.ops.items()}
    if profile.footprint is not None:
        doc["footprint"] = {key: {int(mb) if mb == int(mb) else mb: _figure(share, src[f"footprint.{key}.{mb:g}"])
                                  for mb, share in points} for key, points in profile.footprint.points.items()}
    if profile.cold_weights is not None:
        doc["cold_weights"] = {float(f"{ms:.3g}"): _figure(us, src[f"cold_weights.{ms:.3g}"])
                               for ms, us in profile.cold_weights.points}
    if profile.calibration:
        doc["calibration"] = profile.calibration
    return doc


def dump_profile(profile: DeviceProfile) -> str:
    return yaml.safe_dump(profile_document(profile), sort_keys=False, width=120, allow_unicode=True)
