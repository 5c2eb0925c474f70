"""How a hyperparameter field is read at a given step.

A numeric hyperparameter may be

* a Python number or a JAX scalar (a pytree leaf: differentiable and vmappable);
* a schedule: any callable of the 0-based step count, e.g. the pytree schedules in
  :mod:`adaptive_jax.schedules` (whose own numbers are leaves too) or a plain function;
* for per-parameter hyperparameters (learning rate, weight decay): a pytree that is a
  prefix of the parameter tree, e.g. ``{"encoder": 1e-3, "head": 1e-2}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array], jax.Array]
Scalar = float | int | jax.Array
ScalarOrSchedule = Scalar | Schedule


def value_at(hyperparameter: Any, step: jax.Array) -> Any:
    """The hyperparameter's value at 0-based ``step``: call it if it is a schedule."""
    if callable(hyperparameter):
        value: Any = hyperparameter(step)
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"a schedule must return a scalar, got shape {jnp.shape(value)} from {hyperparameter!r}"
            )
        return value
    return hyperparameter


def _is_scalar_like(x: Any) -> bool:
    # Read ``shape`` rather than call jnp.ndim, which warns on containers (dicts).
    scalar_array = hasattr(x, "shape") and len(x.shape) == 0
    return x is None or callable(x) or isinstance(x, (int, float)) or scalar_array


def per_leaf(hyperparameter: Any, step: jax.Array, tree: Any) -> list[Any]:
    """One value of ``hyperparameter`` for each leaf of ``tree``, in leaf order.

    Scalars and schedules are shared by every leaf; a pytree is broadcast as a
    prefix of ``tree`` (each of its leaves may itself be a scalar or a schedule).
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if _is_scalar_like(hyperparameter) and not isinstance(hyperparameter, (dict, list, tuple)):
        value = value_at(hyperparameter, step)
        return [value] * len(leaves)
    try:
        broadcast = jax.tree_util.tree_map(
            lambda h, sub: jax.tree_util.tree_map(lambda _: h, sub),
            hyperparameter,
            tree,
            is_leaf=lambda h: _is_scalar_like(h) and not isinstance(h, (dict, list, tuple)),
        )
    except ValueError as error:
        raise ValueError(
            "a per-parameter hyperparameter must be a pytree prefix of the parameters; "
            f"got structure {jax.tree_util.tree_structure(hyperparameter)} for parameters "
            f"{jax.tree_util.tree_structure(tree)}"
        ) from error
    return [value_at(h, step) for h in jax.tree_util.tree_leaves(broadcast, is_leaf=callable)]
