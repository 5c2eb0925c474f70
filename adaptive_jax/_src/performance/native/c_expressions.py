"""C for single values: the types, literals and the expression of each primitive.

:mod:`.codegen` walks a jaxpr and asks this table how to write each equation as one C
expression on scalars (the loop runs it once per element).  Each entry does what XLA's
CPU backend does for that primitive on one element: IEEE ``+ - * /`` and ``sqrt`` in
the operand type, NaN-propagating ``max``/``min``, ``integer_pow`` by the same
multiplications in the same order as jax's lowering; transcendental functions call
the C library (equal to XLA's to a few units in the last place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

C_TYPES = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.bool_): "bool",
}

HEADER = """\
#include <stdbool.h>
#include <stdint.h>
#include <tgmath.h>
/* NaN-propagating max/min, as XLA's. */
#define AJ_MAX(a, b) ((a) != (a) ? (a) : (b) != (b) ? (b) : (a) > (b) ? (a) : (b))
#define AJ_MIN(a, b) ((a) != (a) ? (a) : (b) != (b) ? (b) : (a) < (b) ? (a) : (b))
/* sign(x): -1, 0 (keeping -0) or 1; NaN stays NaN. */
#define AJ_SIGN(x) ((x) > 0 ? 1 : (x) < 0 ? -1 : (x))
"""


def c_literal(value: Any, dtype: np.dtype) -> str:
    """``value`` as an exact C literal of ``dtype`` (hexadecimal for floating point)."""
    value = np.asarray(value, dtype)
    if dtype == np.bool_:
        return "1" if bool(value) else "0"
    if np.issubdtype(dtype, np.integer):
        return f"(({C_TYPES[dtype]}){int(value)}LL)"
    number = float(value)
    suffix = "f" if dtype == np.float32 else ""
    if np.isnan(number):
        return f"(({C_TYPES[dtype]})NAN)"
    if np.isinf(number):
        return f"(({C_TYPES[dtype]})({'-' if number < 0 else ''}INFINITY))"
    return f"{number.hex()}{suffix}"


def _binary(op: str) -> Callable[..., str]:
    return lambda a, b, **_: f"({a} {op} {b})"


def _integer_pow(x: str, *, y: int, **_: Any) -> str:
    # The same multiplications, in the same order, as jax's lowering of integer_pow.
    if y == 0:
        return "1"
    power, acc, base = abs(y), None, x
    while power > 0:
        if power & 1:
            acc = base if acc is None else f"({acc} * {base})"
        power >>= 1
        if power > 0:
            base = f"({base} * {base})"
    return f"(1 / {acc})" if y < 0 else str(acc)


def _select_n(which: str, *cases: str, **_: Any) -> str:
    expr = cases[-1]
    for index in range(len(cases) - 2, -1, -1):
        expr = f"({which} == {index} ? {cases[index]} : {expr})"
    return expr


FLOAT_ONLY = {"sqrt", "rsqrt", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic",
              "pow", "div", "is_finite", "floor", "ceil", "nextafter"}  # fmt: skip

# primitive name -> C expression builder (arguments: C expressions; params as keywords)
OPERATIONS: dict[str, Callable[..., str]] = {
    "add": _binary("+"),
    "sub": _binary("-"),
    "mul": _binary("*"),
    "div": _binary("/"),
    "lt": _binary("<"),
    "le": _binary("<="),
    "gt": _binary(">"),
    "ge": _binary(">="),
    "eq": _binary("=="),
    "ne": _binary("!="),
    "and": _binary("&"),
    "or": _binary("|"),
    "xor": _binary("^"),
    "not": lambda a, **_: f"(!{a})",
    "neg": lambda a, **_: f"(-{a})",
    "max": lambda a, b, **_: f"AJ_MAX({a}, {b})",
    "min": lambda a, b, **_: f"AJ_MIN({a}, {b})",
    "clamp": lambda lo, x, hi, **_: f"AJ_MIN(AJ_MAX({x}, {lo}), {hi})",
    "abs": lambda a, **_: f"fabs({a})",
    "sign": lambda a, **_: f"AJ_SIGN({a})",
    "sqrt": lambda a, **_: f"sqrt({a})",
    "rsqrt": lambda a, **_: f"(1 / sqrt({a}))",
    "exp": lambda a, **_: f"exp({a})",
    "exp2": lambda a, **_: f"exp2({a})",
    "log": lambda a, **_: f"log({a})",
    "log1p": lambda a, **_: f"log1p({a})",
    "expm1": lambda a, **_: f"expm1({a})",
    "tanh": lambda a, **_: f"tanh({a})",
    "logistic": lambda a, **_: f"(1 / (1 + exp(-{a})))",
    "pow": lambda a, b, **_: f"pow({a}, {b})",
    "floor": lambda a, **_: f"floor({a})",
    "ceil": lambda a, **_: f"ceil({a})",
    "nextafter": lambda a, b, **_: f"nextafter({a}, {b})",
    "is_finite": lambda a, **_: f"isfinite({a})",
    "square": lambda a, **_: f"({a} * {a})",
    "integer_pow": _integer_pow,
    "select_n": _select_n,
}
IDENTITIES = {"copy", "copy_p", "broadcast_in_dim", "reshape", "squeeze", "expand_dims"}
