"""Number formatting shared by the human-readable renderers."""

from __future__ import annotations

import math


def si(n: float, digits: int = 4) -> str:
    """12_345_678 -> '12.35M'. Plain below 1000."""
    if n is None:
        return "n/a"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            value = n / factor
            decimals = max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)
            return f"{value:.{decimals}f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def times(r: float | None) -> str:
    """A ratio column's cell, original / variant: 8.69 -> '8.69x' (below 1 the variant costs more);
    'free' for a variant that costs nothing."""
    if r is None:
        return "n/a"
    if math.isinf(r):
        return "free"
    return f"{r:.3g}x" if r < 100 else f"{r:.0f}x"


def compared(original: float, variant: float) -> str:
    """A variant's count beside the original's, in words: '8.7x fewer', '1.05x more', 'same',
    'costs nothing'. Every sentence that words a saving uses this, so all text outputs read alike."""
    if variant == original:
        return "same"
    if variant == 0:
        return "costs nothing"
    if original == 0:
        return "up from none"
    factor = _factor(max(original, variant) / min(original, variant))
    if factor is None:
        return "about the same"
    return f"{factor} {'fewer' if variant < original else 'more'}"


def _factor(r: float) -> str | None:
    """A factor above 1 with the digits that tell it from 1: 8.69 -> '8.69x', 1.0003 -> '1.0003x';
    None when even six digits cannot."""
    if r >= 100:
        return f"{r:.0f}x"
    for digits in range(3, 7):
        text = f"{r:.{digits}g}"
        if text != "1":
            return f"{text}x"
    return None


def ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def dims(values: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(v) for v in values)


def err(value: float | None) -> str:
    """A relative error: 0.0523 -> '0.052'; small ones keep a digit (3.1e-05); below 1e-6, the
    precision of the computation, '0'."""
    if value is None:
        return "n/a"
    if value < 1e-6:
        return "0"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def json_float(x: float | None, digits: int = 7) -> float | None:
    """`x` to `digits` significant digits for JSON (NaN/inf -> null).

    Significant, not decimal, digits: a 0.0004 ms layer keeps its precision, so ratios that scripts
    recompute from the JSON (error = estimated / measured - 1) agree with the printed ones.
    """
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return float(f"{x:.{digits}g}")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 conv', '2 convs', '1 matrix multiply', '3 matrix multiplies'."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
