r"""Hypergradients :math:`\partial F(\lambda) / \partial \lambda` of a meta-objective.

A *meta-objective* :math:`F` maps a transformation ``tx`` (whose numeric
hyperparameters :math:`\lambda` are pytree leaves) to a scalar, typically a loss after
unrolled training (:func:`adaptive_jax.meta.unroll`).  :func:`hypergradient` returns
:math:`\partial F / \partial \lambda` as a pytree shaped like ``tx``; the ``mode``
(:mod:`adaptive_jax._src.meta.modes`: :class:`~adaptive_jax.meta.Reverse` with a
checkpointing policy, or :class:`~adaptive_jax.meta.Forward`) picks how it is
computed, never what.

Only real floating-point leaves (and Python numbers) are differentiated; integer and
boolean leaves get ``float0`` zeros, as ``jax.grad(..., allow_int=True)`` gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.protocol import PyTree
from adaptive_jax._src.meta.modes import Mode, Reverse, as_mode
from adaptive_jax._src.meta.unroll import Unrolled, unroll


def hypergradient(
    meta_objective: Callable[[Any], jax.Array], tx: Any, *, mode: Mode | None = None
) -> Any:
    r""":math:`\partial F(\mathrm{tx}) / \partial \mathrm{tx}`, shaped like ``tx``.

    Args:
        meta_objective: ``tx -> scalar``, differentiable (e.g. built with
            :func:`unrolled_objective`).
        tx: the transformation (or any pytree) to differentiate at.
        mode: a :class:`~adaptive_jax.meta.Mode`; default ``Reverse()``.

    Returns:
        A pytree shaped like ``tx``: the derivative for each differentiable leaf,
        ``float0`` zeros for integer and boolean leaves.

    Raises:
        TypeError: ``mode`` is not a Mode, or the objective does not return a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> objective = aj.meta.unrolled_objective(
        ...     jnp.zeros(2), loss, lambda run: loss(run.params), num_steps=3)
        >>> modes = [aj.meta.Reverse(), aj.meta.Reverse(aj.meta.SqrtBlocks()), aj.meta.Forward()]
        >>> grads = [aj.meta.hypergradient(objective, aj.sgd(0.25), mode=m) for m in modes]
        >>> [float(aj.get_hyperparameter(g, "learning_rate")) for g in grads]  # -24 (1 - 2 alpha)^5
        [-0.75, -0.75, -0.75]
    """
    return value_and_hypergradient(meta_objective, tx, mode=mode)[1]


def value_and_hypergradient(
    meta_objective: Callable[[Any], jax.Array], tx: Any, *, mode: Mode | None = None
) -> tuple[jax.Array, Any]:
    """``(meta_objective(tx), hypergradient(meta_objective, tx, mode=mode))`` in one sweep."""
    mode = Reverse() if mode is None else as_mode(mode)
    leaves, rebuild = differentiable_leaves(tx)

    def of_leaves(values):
        value = meta_objective(rebuild(values))
        if jnp.shape(value) != ():
            raise TypeError(
                f"the meta-objective must return a scalar, got shape {jnp.shape(value)}; "
                "reduce it (e.g. jnp.mean) or take a hypergradient per output"
            )
        return value

    value, grads = mode.value_and_grad(of_leaves, leaves)
    return value, rebuild(grads, fill=_float0_zeros)


def unrolled_objective(
    params: PyTree,
    loss_fn: Callable[..., jax.Array],
    meta_loss: Callable[[Unrolled], jax.Array],
    data: Any = None,
    *,
    num_steps: int | None = None,
) -> Callable[[Any], jax.Array]:
    """The meta-objective ``tx -> meta_loss(unroll(tx, params, loss_fn, data))``.

    ``meta_loss`` receives the :class:`~adaptive_jax.meta.Unrolled` run, e.g.
    ``lambda run: validation_loss(run.params)`` or ``lambda run: run.losses.mean()``.
    Every mode applies to it; under ``Reverse(checkpointing=...)`` the unroll uses that
    policy.
    """

    def objective(tx: Any) -> jax.Array:
        return meta_loss(unroll(tx, params, loss_fn, data, num_steps=num_steps))

    return objective


def is_differentiable(leaf: Any) -> bool:
    """True for real floating-point arrays and Python numbers (not bools)."""
    if isinstance(leaf, bool):
        return False
    if isinstance(leaf, (int, float)):
        return True
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def differentiable_leaves(tree: Any) -> tuple[list[jax.Array], Callable[..., Any]]:
    """The differentiable leaves of ``tree`` (as arrays) and a function rebuilding it.

    ``rebuild(values)`` puts ``values`` back in place of those leaves, keeping the other
    leaves; ``rebuild(values, fill=f)`` replaces the others by ``f(leaf)`` instead.
    Python numbers become arrays of the default float dtype.
    """
    all_leaves, treedef = jax.tree_util.tree_flatten(tree)
    mask = [is_differentiable(leaf) for leaf in all_leaves]
    leaves = [_as_float_array(x) for x, keep in zip(all_leaves, mask) if keep]

    def rebuild(values: list[Any], fill: Callable[[Any], Any] | None = None) -> Any:
        values_iter = iter(values)
        merged = [
            next(values_iter) if keep else (leaf if fill is None else fill(leaf))
            for leaf, keep in zip(all_leaves, mask)
        ]
        return jax.tree_util.tree_unflatten(treedef, merged)

    return leaves, rebuild


def _as_float_array(leaf: Any) -> jax.Array:
    if isinstance(leaf, (int, float)):
        return jnp.asarray(leaf, dtype=jnp.result_type(float))
    return jnp.asarray(leaf)


def _float0_zeros(leaf: Any) -> np.ndarray:
    return np.zeros(np.shape(leaf), dtype=jax.dtypes.float0)
