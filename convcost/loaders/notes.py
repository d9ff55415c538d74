"""Warnings every PyTorch-graph loader (TorchScript, module:factory, .pt2) words the same way."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def repeated_calls(calls: Mapping[str, int], unnamed: Collection[str]) -> str | None:
    """The note for layers called more than once (rows NAME, NAME#1, ...), or None: a module
    called twice is two rows of one layer, and its weights count once in totals.params."""
    repeated = sorted(b for b, n in calls.items() if n > 1 and b not in unnamed)
    if not repeated:
        return None
    shown = ", ".join(f"{b} x{calls[b]}" for b in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
    return (f"layers called more than once (rows NAME, NAME#1, ...): {shown}; "
            "shared weights count once in totals.params")
