"""Up-front checks of hyperparameters, when their values are known.

Checks run when a transformation is constructed.  Values that are traced (inside
``jax.grad``, ``jax.vmap`` or ``jax.jit``), schedules and per-parameter trees whose
leaves are traced are skipped: they cannot be inspected without breaking tracing.
A schedule's output shape is checked abstractly (``jax.eval_shape`` at step 0); its
values are not, since they are only known during training.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def _check_schedule_shape(name: str, schedule: Any) -> None:
    """Raise ``ValueError`` if ``schedule(0)`` is abstractly known not to be a scalar."""
    if any(isinstance(x, Tracer) for x in jax.tree_util.tree_leaves(schedule)):
        return
    try:
        out = jax.eval_shape(schedule, jax.ShapeDtypeStruct((), jnp.int32))
    except Exception:  # e.g. Python control flow on the step: reported at the first update
        return
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(
            f"{name}: a schedule must return a scalar, got {getattr(out, 'shape', out)!r} "
            f"from {schedule!r} at step 0"
        )


def _concrete_values(name: str, value: Any) -> list[float] | None:
    """The numbers in ``value`` if all are known now; None when any is traced."""
    if value is None:
        return []
    leaves = jax.tree_util.tree_leaves(value, is_leaf=callable)
    numbers: list[float] = []
    for leaf in leaves:
        if callable(leaf):
            _check_schedule_shape(name, leaf)
            continue
        if isinstance(leaf, Tracer):
            return None
        try:
            array = np.asarray(leaf)
        except Exception:  # a placeholder object, not a number
            return None
        if array.dtype == object:
            return None
        if not (jnp.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(
                f"{name}={leaf!r} is invalid: expected a number, an array or a schedule, "
                f"got dtype {array.dtype}"
            )
        if np.iscomplexobj(array) and np.any(np.imag(array) != 0):
            raise ValueError(f"{name}={leaf!r} is invalid: expected a real number")
        numbers.extend(float(x) for x in np.ravel(np.real(array)).astype(np.float64))
    return numbers


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``name`` if a concrete ``value`` is outside the range.

    The range is ``[low, high)`` by default; non-finite numbers are always rejected.
    """
    numbers = _concrete_values(name, value)
    if not numbers:
        return
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    allowed = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    for number in numbers:
        bad = not math.isfinite(number)
        if low is not None:
            bad |= number < low if low_inclusive else number <= low
        if high is not None:
            bad |= number > high if high_inclusive else number >= high
        if bad:
            raise ValueError(f"{name}={number!r} is invalid: expected a finite number in {allowed}")


def check_decay(name: str, value: Any) -> None:
    """An EMA decay rate / momentum: in ``[0, 1)``."""
    check_range(name, value, 0.0, 1.0)


def check_nonnegative(name: str, value: Any) -> None:
    """eps, eps_root, weight decay: ``>= 0`` and finite."""
    check_range(name, value, 0.0, None)


def check_finite(name: str, value: Any) -> None:
    """A learning rate: any finite number (negative rates are allowed: ascent); not None."""
    if value is None:
        raise TypeError(f"{name}=None is invalid: expected a finite number or a schedule")
    check_range(name, value, None, None)
