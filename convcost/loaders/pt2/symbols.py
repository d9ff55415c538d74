"""Symbolic sizes of a torch.export graph, evaluated without sympy, torch or `eval`.

A dynamic dim is stored as a sympy expression string over the export's size symbols, in `srepr`
form (`Add(FloorDiv(Add(Symbol('s0', positive=True, integer=True), Integer(-1)), Integer(2)),
Integer(1))`, torch 2.8+) or `str` form (`((s0 - 1)//2) + 1`, older). Guards recorded at export are
Python expressions over the inputs' sizes (`(1 + (((-1) + L['x'].size()[3]) // 2)) != 1`).

Both are parsed with `ast` and walked here over a whitelist of node types and functions: the
file is untrusted, so nothing is ever passed to `eval`, and numbers, exponents and expression
length are bounded so that a crafted expression cannot exhaust memory or time.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from fractions import Fraction
from math import ceil, floor, trunc

#: Longest expression string convcost parses (real ones are a few hundred characters).
MAX_EXPR_CHARS = 20_000
#: Largest magnitude of any intermediate value: far above any tensor size, far below a slow bignum.
MAX_VALUE = 2**126
MAX_EXPONENT = 128

Number = Fraction


class Unresolved(Exception):
    """An expression convcost cannot evaluate (unknown symbol or function, malformed text)."""


def _int(x: Number) -> Number:
    if x.denominator != 1:
        raise Unresolved(f"{x} is not an integer")
    return x


def _floordiv(a: Number, b: Number) -> Number:
    if b == 0:
        raise Unresolved("division by zero")
    return Fraction(floor(a / b))


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise Unresolved("modulo by zero")
    return a - b * floor(a / b)


def _truediv(a: Number, b: Number) -> Number:
    if b == 0:
        raise Unresolved("division by zero")
    return a / b


def _pow(a: Number, b: Number) -> Number:
    if b.denominator != 1 or abs(b) > MAX_EXPONENT:
        raise Unresolved(f"exponent {b} out of range")
    if a == 0 and b < 0:
        raise Unresolved("zero to a negative power")
    return a ** int(b)


def _sum(*xs: Number) -> Number:
    return sum(xs, Fraction(0))


def _prod(*xs: Number) -> Number:
    out = Fraction(1)
    for x in xs:
        out *= x
    return out


def _where(c: Number, a: Number, b: Number) -> Number:
    return a if c else b


def _bool(x: bool) -> Number:
    return Fraction(int(x))


#: sympy and torch.utils._sympy functions, by the name `srepr`/`str` prints.
FUNCTIONS: dict[str, Callable[..., Number]] = {
    "Integer": lambda x: _int(x),
    "Rational": lambda p, q: _truediv(p, q),
    "Add": _sum,
    "Mul": _prod,
    "Pow": _pow,
    "PowByNatural": _pow,
    "FloorDiv": _floordiv,
    "CleanDiv": _floordiv,
    "CeilDiv": lambda a, b: -_floordiv(-a, b),
    "IntTrueDiv": _truediv,
    "FloatTrueDiv": _truediv,
    "Mod": _mod,
    "PythonMod": _mod,
    "ModularIndexing": lambda x, d, m: _mod(_floordiv(x, d), m),
    "Max": lambda *xs: max(xs),
    "Min": lambda *xs: min(xs),
    "Abs": abs,
    "floor": lambda x: Fraction(floor(x)),
    "FloorToInt": lambda x: Fraction(floor(x)),
    "ceiling": lambda x: Fraction(ceil(x)),
    "CeilToInt": lambda x: Fraction(ceil(x)),
    "TruncToInt": lambda x: Fraction(trunc(x)),
    "Identity": lambda x: x,
    "Where": _where,
    "Eq": lambda a, b: _bool(a == b),
    "Ne": lambda a, b: _bool(a != b),
    "Lt": lambda a, b: _bool(a < b),
    "Le": lambda a, b: _bool(a <= b),
    "Gt": lambda a, b: _bool(a > b),
    "Ge": lambda a, b: _bool(a >= b),
    "StrictLessThan": lambda a, b: _bool(a < b),
    "LessThan": lambda a, b: _bool(a <= b),
    "StrictGreaterThan": lambda a, b: _bool(a > b),
    "GreaterThan": lambda a, b: _bool(a >= b),
}

_BINOPS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: _floordiv,
    ast.Mod: _mod, ast.Div: _truediv, ast.Pow: _pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Number, Number], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}

#: Reads an input's size: `(input name, axis) -> value`, for guards.
SizeOf = Callable[[str, int], "int | None"]


class _Evaluator:
    def __init__(self, symbols: Mapping[str, int], size_of: SizeOf | None = None) -> None:
        self.symbols = symbols
        self.size_of = size_of

    def __call__(self, node: ast.AST) -> Number:
        value = self.eval(node)
        if abs(value) > MAX_VALUE:
            raise Unresolved("value out of range")
        return value

    def eval(self, node: ast.AST) -> Number:  # noqa: C901 - one branch per node type
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool | int):
                return Fraction(int(node.value))
            if isinstance(node.value, float) and node.value.is_integer():
                return Fraction(int(node.value))
            raise Unresolved(f"constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return Fraction(node.id == "True")
            if node.id in self.symbols:
                return Fraction(self.symbols[node.id])
            raise Unresolved(f"unknown symbol {node.id}")
        if isinstance(node, ast.UnaryOp):
            operand = self(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.Not):
                return Fraction(int(not operand))
            raise Unresolved("unsupported unary operator")
        if isinstance(node, ast.BinOp):
            binop = _BINOPS.get(type(node.op))
            if binop is None:
                raise Unresolved("unsupported operator")
            return binop(self(node.left), self(node.right))
        if isinstance(node, ast.BoolOp):
            values = [self(v) for v in node.values]
            ok = all(values) if isinstance(node.op, ast.And) else any(values)
            return Fraction(int(ok))
        if isinstance(node, ast.Compare):
            left = self(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                compare = _COMPARE.get(type(op))
                right = self(right_node)
                if compare is None or not compare(left, right):
                    if compare is None:
                        raise Unresolved("unsupported comparison")
                    return Fraction(0)
                left = right
            return Fraction(1)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.size(node)
        raise Unresolved(f"unsupported expression {type(node).__name__}")

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise Unresolved("unsupported call")
        name = node.func.id
        if name == "Symbol":  # srepr: Symbol('s0', positive=True, integer=True)
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) \
                    or not isinstance(node.args[0].value, str):
                raise Unresolved("malformed Symbol")
            symbol = node.args[0].value
            if symbol not in self.symbols:
                raise Unresolved(f"unknown symbol {symbol}")
            return Fraction(self.symbols[symbol])
        func = FUNCTIONS.get(name)
        if func is None or node.keywords:
            raise Unresolved(f"unknown function {name}")
        try:
            return Fraction(func(*(self(a) for a in node.args)))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise Unresolved(f"{name}: {exc}") from None

    def size(self, node: ast.Subscript) -> Number:
        """`L['x'].size()[3]` or `L['x'].shape[3]` in a guard: input x's axis 3."""
        if self.size_of is None or not isinstance(node.slice, ast.Constant) or not isinstance(node.slice.value, int):
            raise Unresolved("unsupported subscript")
        base = node.value
        if isinstance(base, ast.Call) and not base.args and isinstance(base.func, ast.Attribute) \
                and base.func.attr == "size":
            base = base.func.value
        elif isinstance(base, ast.Attribute) and base.attr == "shape":
            base = base.value
        else:
            raise Unresolved("unsupported subscript")
        if not (isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name) and base.value.id == "L"
                and isinstance(base.slice, ast.Constant) and isinstance(base.slice.value, str)):
            raise Unresolved("unsupported subscript")
        value = self.size_of(base.slice.value, node.slice.value)
        if value is None:
            raise Unresolved(f"unknown size of {base.slice.value}")
        return Fraction(value)


def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
        raise Unresolved("expression missing or too long")
    try:
        return ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise Unresolved("not an expression") from None


def evaluate(text: str, symbols: Mapping[str, int]) -> int:
    """The integer a size expression takes with these symbol values; `Unresolved` if it cannot say."""
    try:
        value = _Evaluator(symbols)(_parse(text))
    except RecursionError:
        raise Unresolved("expression nested too deeply") from None
    if value.denominator != 1:
        raise Unresolved(f"{text} is not an integer here")
    return int(value)


def symbol_of(text: str) -> str | None:
    """The symbol's name if the expression is a single symbol (`s0`, `Symbol('s0', ...)`), else None."""
    try:
        node = _parse(text).body
    except Unresolved:
        return None
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Symbol" \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def check_guard(text: str, size_of: SizeOf) -> bool | None:
    """Whether a recorded guard holds for these input sizes; None where it cannot be read."""
    try:
        return bool(_Evaluator({}, size_of)(_parse(text)))
    except (Unresolved, RecursionError):
        return None
