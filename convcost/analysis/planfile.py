"""PLAN.yaml: which conv becomes which variant, written by `convcost plan`, read by `apply --plan`.

The file is meant to be edited by hand, so it is one line per conv:

    layers:
      conv1: keep
      layer1.0.conv1: {variant: spatial, rank: 24}          # saves 0.412 ms on rpi4, error 0.031
      layer1.0.conv2: {variant: depthwise, depth_multiplier: 2}
      layer2.0.conv1: {variant: grouped, groups: 4, permute: true}

A layer not listed is kept. `permute: true` (grouped only) groups the channels after the
permutation heuristic (analyze's `approx_error_permuted`). `model`, `device`, `target` and
`totals` record how the plan was made and are not read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convcost.util.errors import InputError
from convcost.util.infile import load_yaml, read_text
from convcost.variants import VARIANTS

MAX_PLAN_BYTES = 16 * 2**20
#: The options a plan entry may set: each variant's sizing option.
PLAN_OPTIONS = ("rank", "depth_multiplier", "groups")

#: One layer's entry: None to keep it, else the variant and the options it sets.
Entry = tuple[str, dict[str, int]] | None


@dataclass
class PlanFile:
    """A parsed plan: layer name -> entry, in file order."""

    source: str
    layers: dict[str, Entry] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)


def read_plan(path: str | Path) -> PlanFile:
    """Parse and check a plan file; every problem is an InputError naming the file and the layer."""
    data = load_yaml(read_text(path, "plan", MAX_PLAN_BYTES), path)
    if not isinstance(data, dict) or "layers" not in data:
        raise InputError("not a convcost plan: expected a mapping with a 'layers' key", path)
    layers = data["layers"]
    if layers is None:
        layers = {}
    if not isinstance(layers, dict):
        raise InputError("'layers' must map layer names to 'keep' or {variant: ..., <option>: N}", path)
    plan = PlanFile(str(path), header={k: v for k, v in data.items() if k != "layers"})
    for name, value in layers.items():
        plan.layers[str(name)] = parse_entry(str(name), value, path)
    return plan


def parse_entry(name: str, value: Any, path: str | Path) -> Entry:
    if value is None or (isinstance(value, str) and value.strip().lower() == "keep"):
        return None
    if isinstance(value, str):
        value = {"variant": value}
    if not isinstance(value, dict):
        raise InputError(f"layer {name!r}: expected 'keep' or {{variant: ..., <option>: N}}, got {value!r}", path)
    variant = str(value.get("variant", "")).strip().lower()
    if variant == "keep":
        return None
    if variant not in VARIANTS:
        raise InputError(f"layer {name!r}: unknown variant {value.get('variant')!r} "
                         f"(choose from {', '.join(VARIANTS)} or keep)", path)
    options: dict[str, int] = {}
    for key, v in value.items():
        if key == "variant":
            continue
        if key == "permute" and variant == "grouped":
            if not isinstance(v, bool):
                raise InputError(f"layer {name!r}: permute must be true or false, got {v!r}", path)
            options[key] = v
            continue
        if key not in PLAN_OPTIONS:
            raise InputError(f"layer {name!r}: unknown option {key!r} (a plan entry sets {', '.join(PLAN_OPTIONS)})",
                             path)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"layer {name!r}: {key} must be a positive integer, got {v!r}", path)
        options[key] = v
    return variant, options


def _scalar(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def plan_text(layers: Mapping[str, tuple[Entry, str]], header: Mapping[str, Any], intro: str) -> str:
    """The plan as YAML: `header` keys, then one line per layer with a comment (`intro` is the
    comment block at the top, one sentence a line)."""
    lines = [f"# {line}" if line else "#" for line in intro.splitlines()]
    for key, value in header.items():
        lines.append(f"{key}: {_scalar(value)}")
    lines.append("layers:")
    width = max((len(_scalar(name)) for name in layers), default=0)
    for name, (entry, comment) in layers.items():
        if entry is None:
            text = "keep"
        else:
            variant, options = entry
            text = "{" + ", ".join([f"variant: {variant}", *(f"{k}: {v}" for k, v in options.items())]) + "}"
        key = _scalar(name) + ":"
        line = f"  {key:<{width + 1}} {text}"
        lines.append(f"{line:<60}  # {comment}" if comment else line)
    return "\n".join(lines) + "\n"
