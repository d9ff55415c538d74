"""Budgets for `convcost check`: parse the budget YAML, evaluate it against an analysis.

Numbers take SI suffixes (K = 1e3, M = 1e6, G = 1e9, T = 1e12, as MACs are published) or are
plain; baseline increases are percentages ("2%"). Every problem with the file is an InputError
naming it, so a malformed budget is exit 2 while a broken one is exit 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Any

from convcost.analysis.result import Analysis, LayerResult
from convcost.util.errors import InputError, short
from convcost.util.infile import load_yaml, read_text

SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
NUMBER = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*(?P<suffix>[KMGT]?)\s*$")
PERCENT = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*%\s*$")

MODEL_METRICS = ("macs", "params", "flops", "conv_macs", "conv_params", "latency_ms")
LAYER_METRICS = ("macs", "params", "flops", "bytes", "latency_ms")
BASELINE_METRICS = ("macs", "params", "flops", "conv_macs", "conv_params", "latency_ms")

MAX_BUDGET_BYTES = 1024 * 1024
MAX_BASELINE_BYTES = 256 * 1024 * 1024  # analyze -f json: about 3 KB per layer


#: The rule every check has beside the budget's own: each conv or matmul the model has but
#: convcost could not count is a violation (a budget read against a partial count would pass a
#: model that breaks it), unless `--allow-uncounted` accepts the partial count.
UNCOUNTED = "uncounted"


@dataclass(frozen=True)
class Check:
    """One evaluated limit: where, what, the value found and the limit.

    A check of rule UNCOUNTED has no numbers: `scope` is the node, `metric` its op type, `value`
    and `limit` are None and `why` says why it was not counted."""

    rule: str
    scope: str
    metric: str
    value: float | None
    limit: float | None
    ok: bool
    why: str | None = None


@dataclass
class Budget:
    source: str
    model: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    max_increase: dict[str, Any] = field(default_factory=dict)

    def rule_names(self, baseline: bool = True) -> list[str]:
        """Every rule in file order, as `rule_of` names it; the baseline rule only when there is a
        baseline to check it against."""
        names = [f"model {m}" for m in self.model]
        names += [f"layers: {r['match']}" for r in self.layers]
        return names + (["baseline"] if self.max_increase and baseline else [])

    def devices(self) -> list[str]:
        """Devices whose latency the budget limits (they must be analyzed)."""
        names = list(self.model.get("latency_ms", {}))
        for rule in self.layers:
            names += list(rule.get("latency_ms", {}))
        names += list(self.max_increase.get("latency_ms", {}))
        return list(dict.fromkeys(names))


def _parse(value: Any, where: str, source: str, pattern: re.Pattern[str], expected: str, what: str) -> float:
    """A non-negative YAML number, or a string `pattern` reads: group `n` the number, an optional
    group `suffix` its SUFFIX multiplier."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        match = pattern.match(value) if isinstance(value, str) else None
        if not match:
            raise InputError(f"{where}: expected {expected}, got {value!r}", source)
        number = float(match.group("n")) * SUFFIX[match.groupdict().get("suffix") or ""]
    if number < 0:
        raise InputError(f"{where}: {what} cannot be negative, got {value!r}", source)
    return number


def parse_number(value: Any, where: str, source: str) -> float:
    return _parse(value, where, source, NUMBER, "a number like 4.2G or 26M (suffixes K, M, G, T)", "a limit")


def parse_percent(value: Any, where: str, source: str) -> float:
    return _parse(value, where, source, PERCENT, "a percentage like 2%", "a percentage")


def _limits(block: Any, allowed: tuple[str, ...], where: str, source: str, percent: bool = False,
            ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise InputError(f"{where}: expected a mapping of metric: limit", source)
    parse = parse_percent if percent else parse_number
    out: dict[str, Any] = {}
    for metric, value in block.items():
        if metric in ignore:
            continue
        if metric not in allowed:
            raise InputError(f"{where}: unknown metric {metric!r} (known: {', '.join(allowed)})", source)
        if metric == "latency_ms":
            if not isinstance(value, dict) or not value:
                raise InputError(f"{where}.latency_ms: expected a mapping of device: limit", source)
            out[metric] = {str(d): parse(v, f"{where}.latency_ms.{d}", source) for d, v in value.items()}
        else:
            out[metric] = parse(value, f"{where}.{metric}", source)
    return out


@dataclass
class Budgets:
    """A budget file: one budget for every model, or (`models:`) model globs mapped to budgets."""

    source: str
    entries: list[tuple[str, Budget]]  # (glob, budget) in file order; one ("*", budget) without models:

    def for_model(self, model: str) -> Budget:
        """The budget of the first glob that matches the model's file name or its stem
        (`nets/mobilenet_v2.onnx`: `mobilenet_v2.onnx` or `mobilenet_v2`); a model no glob matches
        is an error: a model checked against nothing would pass, whatever it costs."""
        name = PurePath(model).name or model
        stem = PurePath(name).stem
        for glob, budget in self.entries:
            if fnmatchcase(name, glob) or fnmatchcase(stem, glob):
                return budget
        globs = ", ".join(repr(glob) for glob, _ in self.entries)
        raise InputError(f"no entry of models: matches model {model} (file name {name!r}, stem {stem!r}; globs: "
                         f"{globs}); add one, or a '*' entry last for every other model", self.source)


def load_budgets(path: str | Path) -> Budgets:
    """A budget file: the one-budget format, or `models: {GLOB: BUDGET, ...}` (first match wins)."""
    source = str(path)
    data = load_yaml(read_text(path, "budget", MAX_BUDGET_BYTES), source)
    if not isinstance(data, dict) or not data:
        raise InputError("a budget is a mapping with 'model', 'layers' and/or 'baseline' (or 'models': model globs "
                         "to budgets)", source)
    if "models" not in data:
        return Budgets(source, [("*", _budget(data, source, ""))])
    if set(map(str, data)) != {"models"}:
        raise InputError("models: maps model globs to budgets; set 'model', 'layers' and 'baseline' inside each "
                         "entry, not beside it", source)
    block = data["models"]
    if not isinstance(block, dict) or not block:
        raise InputError('models: expected a mapping of model glob: budget, e.g. "mobilenet*": {model: {macs: 600M}}',
                         source)
    entries = []
    for glob, body in block.items():
        if not isinstance(glob, str) or not glob:
            raise InputError(f"models: {short(glob)}: expected a glob such as 'mobilenet*'", source)
        where = f"models.{glob}"
        _check_glob(glob, where, source)
        if body is None:
            body = {}  # `"*": {}`: no limits, the uncounted rule only
        entries.append((glob, _budget(body, source, f"{where}.")))
    return Budgets(source, entries)


def _budget(data: Any, source: str, prefix: str) -> Budget:
    """One budget: its `model`, `layers` and `baseline` sections (`prefix` says where it is in the file)."""
    if not isinstance(data, dict):
        raise InputError(f"{prefix[:-1]}: expected a mapping with 'model', 'layers' and/or 'baseline'", source)
    unknown = set(map(str, data)) - {"model", "layers", "baseline"}
    if unknown:
        raise InputError(f"{prefix}unknown section(s) {', '.join(sorted(unknown))} (known: model, layers, baseline"
                         f"{'' if prefix else '; or models: to map model globs to budgets'})", source)
    budget = Budget(source)
    if "model" in data:
        budget.model = _limits(data["model"], MODEL_METRICS, f"{prefix}model", source)
    rules = data.get("layers") or []
    if not isinstance(rules, list):
        raise InputError(f"{prefix}layers: expected a list of {{match: GLOB, metric: limit}}", source)
    for i, rule in enumerate(rules):
        where = f"{prefix}layers[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("match"), str) or not rule["match"]:
            raise InputError(f"{where}: each rule needs 'match': a glob such as 'layer4.*'", source)
        _check_glob(rule["match"], where, source)
        limits = _limits(rule, LAYER_METRICS, where, source, ignore=("match",))
        if not limits:
            raise InputError(f"{where}: rule '{rule['match']}' sets no limit", source)
        budget.layers.append({"match": rule["match"], **limits})
    if "baseline" in data:
        block = data["baseline"]
        if not isinstance(block, dict) or set(map(str, block)) != {"max_increase"}:
            raise InputError(f"{prefix}baseline: expected {{max_increase: {{metric: percent}}}}", source)
        budget.max_increase = _limits(block["max_increase"], BASELINE_METRICS, f"{prefix}baseline.max_increase",
                                      source, percent=True)
    return budget


def _check_glob(pattern: str, where: str, source: str) -> None:
    """Reject globs that cannot mean what the user wants: unbalanced brackets."""
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        raise InputError(f"{where}: bad glob {pattern!r} (unclosed '[')", source)


def _layer_value(layer: LayerResult, metric: str, device: str | None = None) -> float:
    if metric == "latency_ms":
        assert device is not None
        return layer.latency[device].ms
    return {"macs": layer.cost.macs, "params": layer.cost.params, "flops": layer.cost.flops,
            "bytes": layer.cost.traffic_bytes}[metric]


def model_values(analysis: Analysis) -> dict[str, Any]:
    t = analysis.totals
    return {"macs": t.macs, "params": t.params, "flops": 2 * t.macs, "conv_macs": analysis.conv_cost.macs,
            "conv_params": analysis.conv_cost.params, "latency_ms": dict(t.latency)}


def rule_of(check: Check) -> str:
    """The budget rule `check` comes from, as `Budget.rule_names` lists it: a model limit is one
    rule per metric, whatever devices a latency limit names (`latency_ms[rpi4]` -> `latency_ms`)."""
    return f"model {check.metric.partition('[')[0]}" if check.rule == "model" else check.rule


def _compare(rule: str, scope: str, metric: str, value: float, limit: float) -> Check:
    return Check(rule, scope, metric, value, limit, value <= limit)


def _each_limit(limits: dict[str, Any]) -> Iterator[tuple[str, str, str | None, float]]:
    """(label, metric, device, limit) per limit of a block: a latency limit is one per device,
    labelled `latency_ms[device]`; a layer rule's `match` is not a limit."""
    for metric, limit in limits.items():
        if metric == "latency_ms":
            for device, ms in limit.items():
                yield f"latency_ms[{device}]", metric, device, ms
        elif metric != "match":
            yield metric, metric, None, limit


def _pick(values: dict[str, Any], metric: str, device: str | None) -> Any:
    """A model figure; a latency one for one device (None when that device was not analyzed)."""
    return values[metric] if device is None else values[metric].get(device)


def evaluate(budget: Budget, analysis: Analysis, baseline: Baseline | None = None,
             allow_uncounted: bool = False) -> list[Check]:
    """Every limit of the budget, evaluated, after one UNCOUNTED check per conv or matmul the
    analysis could not count (passed with `allow_uncounted`, failed otherwise)."""
    checks = [Check(UNCOUNTED, u.name, u.op, None, None, allow_uncounted, u.why) for u in analysis.uncounted]
    values = model_values(analysis)
    for label, metric, device, limit in _each_limit(budget.model):
        checks.append(_compare("model", "model", label, _pick(values, metric, device), limit))
    for layer in analysis.layers:
        rule = next((r for r in budget.layers if fnmatchcase(layer.conv.name, r["match"])), None)
        if rule is None:
            continue
        for label, metric, device, limit in _each_limit(rule):
            checks.append(_compare(f"layers: {rule['match']}", layer.conv.name, label,
                                   _layer_value(layer, metric, device), limit))
    if baseline is not None:
        old = baseline.totals
        for label, metric, device, pct in _each_limit(budget.max_increase):
            new, before = _pick(values, metric, device), _pick(old, metric, device)
            if new is None or before is None:
                continue
            checks.append(_compare("baseline", "model", f"{label} increase %", _increase(new, before), pct))
    return checks


def rule_names(budget: Budget, analysis: Analysis, baseline: bool = True) -> list[str]:
    """Every rule `evaluate` checks, as `rule_of` names them: UNCOUNTED first where the analysis
    left something uncounted (a model counted whole does not list it), then the budget's."""
    return ([UNCOUNTED] if analysis.uncounted else []) + budget.rule_names(baseline)


def budget_warnings(budget: Budget, analysis: Analysis, baseline: Baseline | None = None) -> list[str]:
    """What a reader of `check` must know beside the checks: a layer rule whose glob matches no
    conv (a renamed model is the usual cause: the rule then limits nothing), and a baseline limit
    left unchecked for want of a baseline."""
    names = [layer.conv.name for layer in analysis.layers]
    lines = [f"budget rule 'layers: {rule['match']}' matches no conv of {analysis.model.name} (renamed layers? "
             "`convcost analyze MODEL` lists their names)"
             for rule in budget.layers if not any(fnmatchcase(name, rule["match"]) for name in names)]
    if budget.max_increase and baseline is None:
        lines.append("baseline.max_increase not checked (no --baseline given)")
    return lines


def _increase(new: float, old: float) -> float:
    if old == 0:
        return 0.0 if new == 0 else float("inf")
    return (new - old) / old * 100


@dataclass(frozen=True)
class Baseline:
    """What `check` compares with, read once from an earlier `analyze -f json`."""

    totals: dict[str, Any]  # the keys of `model_values`
    layers: list[tuple[str, int]]  # (name, MACs) in order


def baseline_values(data: dict[str, Any]) -> dict[str, Any]:
    t = data["totals"]
    return {"macs": t["macs"], "params": t["params"], "flops": t.get("flops", 2 * t["macs"]),
            "conv_macs": t["conv_macs"], "conv_params": t["conv_params"], "latency_ms": t.get("latency_ms", {})}


def load_baseline(path: str | Path, model_name: str) -> Baseline:
    """An earlier `analyze -f json` of the same model (a list of several models' documents: the one
    of this model)."""
    return pick_baseline(read_baseline(path), model_name, str(path))


def read_baseline(path: str | Path) -> list[dict[str, Any]]:
    """The documents of an earlier `analyze -f json`: one, or the list `analyze A B ... -f json` writes."""
    source = str(path)
    text = read_text(path, "baseline", MAX_BASELINE_BYTES)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"not a convcost JSON baseline: {short(exc)}", source) from None
    docs = data if isinstance(data, list) else [data]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise InputError("not a convcost JSON baseline (write one with `convcost analyze MODEL -f json`)", source)
    return docs


def pick_baseline(docs: list[dict[str, Any]], model_name: str, source: str) -> Baseline:
    """The baseline of `model_name` among the documents `read_baseline` read."""
    try:
        names = [d["model"]["name"] for d in docs]
    except (KeyError, TypeError):
        raise InputError("not a convcost JSON baseline (write one with `convcost analyze MODEL -f json`)",
                         source) from None
    if model_name not in names:
        if len(docs) == 1:
            raise InputError(f"baseline is of model {names[0]!r}, not {model_name!r}", source)
        raise InputError(f"baseline has no model {model_name!r} (it has {', '.join(map(repr, names))})", source)
    data = docs[names.index(model_name)]
    try:
        baseline = Baseline(baseline_values(data), [(layer["name"], layer["macs"]) for layer in data["layers"]])
    except (KeyError, TypeError):
        raise InputError("not a convcost JSON baseline (write one with `convcost analyze MODEL -f json`)",
                         source) from None
    if data.get("settings", {}).get("top"):
        raise InputError("baseline was written with --top; it does not list every layer", source)
    return baseline


@dataclass(frozen=True)
class LayerDiff:
    name: str
    change: str  # added, removed, changed
    old_macs: int | None
    new_macs: int | None

    @property
    def delta(self) -> int:
        return (self.new_macs or 0) - (self.old_macs or 0)


def diff_layers(analysis: Analysis, baseline: Baseline) -> list[LayerDiff]:
    """Layers added, removed or changed in MACs since the baseline (matched by name and call order)."""
    def keyed(pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        seen: dict[str, int] = {}
        out = {}
        for name, macs in pairs:
            seen[name] = seen.get(name, 0) + 1
            out[(name, seen[name])] = macs
        return out

    old = keyed(baseline.layers)
    new = keyed([(layer.conv.name, layer.cost.macs) for layer in analysis.layers])
    diffs = []
    for key in [*new, *(k for k in old if k not in new)]:
        before, after = old.get(key), new.get(key)
        if before is None:
            diffs.append(LayerDiff(key[0], "added", None, after))
        elif after is None:
            diffs.append(LayerDiff(key[0], "removed", before, None))
        elif before != after:
            diffs.append(LayerDiff(key[0], "changed", before, after))
    return diffs
