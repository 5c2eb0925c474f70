r"""Hypergradients :math:`\partial F(\lambda) / \partial \lambda` of a meta-objective, in every mode.

A *meta-objective* :math:`F` maps a transformation ``tx`` (whose numeric
hyperparameters :math:`\lambda` are pytree leaves) to a scalar, typically a loss after
unrolled training (:func:`adaptive_jax.meta.unroll`).  :func:`hypergradient` returns
:math:`\partial F / \partial \lambda` as a pytree shaped like ``tx``; the ``mode``
argument picks how it is computed, never what:

``"reverse"``
    ``jax.grad``: one forward and one backward sweep, memory :math:`O(T)`.
``"reverse_step"``, ``"reverse_sqrt"``, ``"reverse_recursive"``
    reverse mode with the unroll checkpointed per step, in :math:`\sqrt T` nested
    blocks, or by recursive bisection (memory :math:`O(T)` carries only,
    :math:`O(\sqrt T)`, :math:`O(\log T)`; see :mod:`adaptive_jax.meta.checkpointing`).
    The objective must accept the keyword ``remat`` and pass it on to ``unroll``, as
    the objectives built by :func:`unrolled_objective` do.
``"forward"``
    forward mode: one ``jax.jvp`` per hyperparameter, all :math:`k` of them batched
    with ``vmap`` through a single sweep.  Memory does not depend on :math:`T`; the
    cost is one forward pass plus one to two per hyperparameter (forward-mode
    hypergradients: Franceschi et al., "Forward and Reverse Gradient-Based
    Hyperparameter Optimization", ICML 2017; Micaelli & Storkey, "Gradient-based
    Hyperparameter Optimization Over Long Horizons", NeurIPS 2021).  The right choice for a handful
    of hyperparameters over a long horizon.

Only real floating-point leaves (and Python numbers) are differentiated; integer and
boolean leaves get ``float0`` zeros, as ``jax.grad(..., allow_int=True)`` gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax.core.protocol import PyTree
from adaptive_jax.meta.unroll import Unrolled, unroll

MODES = ("reverse", "reverse_step", "reverse_sqrt", "reverse_recursive", "forward")
_REMAT_OF_MODE = {"reverse_step": "step", "reverse_sqrt": "sqrt", "reverse_recursive": "recursive"}


def hypergradient(
    meta_objective: Callable[..., jax.Array], tx: Any, *, mode: str = "reverse"
) -> Any:
    r""":math:`\partial F(\mathrm{tx}) / \partial \mathrm{tx}`, shaped like ``tx``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> objective = aj.meta.unrolled_objective(
        ...     jnp.zeros(2), loss, lambda run: loss(run.params), num_steps=3)
        >>> grads = [aj.meta.hypergradient(objective, aj.sgd(0.25), mode=m)
        ...          for m in ("reverse", "reverse_sqrt", "forward")]
        >>> [g.transforms[0].learning_rate.item() for g in grads]  # -24 (1 - 2 alpha)^5
        [-0.75, -0.75, -0.75]
    """
    return value_and_hypergradient(meta_objective, tx, mode=mode)[1]


def value_and_hypergradient(
    meta_objective: Callable[..., jax.Array], tx: Any, *, mode: str = "reverse"
) -> tuple[jax.Array, Any]:
    """``(meta_objective(tx), hypergradient(meta_objective, tx, mode=mode))`` in one sweep."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in _REMAT_OF_MODE:
        remat = _REMAT_OF_MODE[mode]

        def objective(tree):
            return meta_objective(tree, remat=remat)
    else:
        objective = meta_objective
    leaves, rebuild = differentiable_leaves(tx)

    def of_leaves(values):
        return objective(rebuild(values))

    if mode == "forward":
        value, grads = _forward_gradient(of_leaves, leaves)
    else:
        value, grads = jax.value_and_grad(of_leaves)(leaves)
    return value, rebuild(grads, fill=_float0_zeros)


def unrolled_objective(
    params: PyTree,
    loss_fn: Callable[..., jax.Array],
    meta_loss: Callable[[Unrolled], jax.Array],
    data: Any = None,
    *,
    num_steps: int | None = None,
) -> Callable[..., jax.Array]:
    """The meta-objective ``tx -> meta_loss(unroll(tx, params, loss_fn, data))``.

    The returned function takes ``(tx, remat=None)``, so every :data:`MODES` entry
    applies to it.  ``meta_loss`` receives the :class:`~adaptive_jax.meta.unroll.Unrolled`
    run, e.g. ``lambda run: validation_loss(run.params)`` or
    ``lambda run: run.losses.mean()``.
    """

    def objective(tx: Any, remat: str | None = None) -> jax.Array:
        run = unroll(tx, params, loss_fn, data, num_steps=num_steps, remat=remat)
        return meta_loss(run)

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


def _forward_gradient(
    f: Callable[[list[jax.Array]], jax.Array], leaves: list[jax.Array]
) -> tuple[jax.Array, list[jax.Array]]:
    """Value and gradient of scalar ``f`` by ``vmap`` over one ``jvp`` per input coordinate.

    The primal computation does not depend on the tangent, so ``vmap`` runs it once
    and only the :math:`k` tangent streams are batched.
    """
    sizes = [int(np.size(x)) for x in leaves]
    basis = jnp.eye(sum(sizes), dtype=jnp.result_type(float))
    offsets = np.cumsum([0] + sizes)

    def directional_derivative(direction):
        tangents = [
            direction[start:stop].reshape(jnp.shape(x)).astype(jnp.result_type(x))
            for x, start, stop in zip(leaves, offsets[:-1], offsets[1:])
        ]
        return jax.jvp(f, (leaves,), (tangents,))

    value, derivatives = jax.vmap(directional_derivative, out_axes=(None, 0))(basis)
    grads = [
        derivatives[start:stop].reshape(jnp.shape(x)).astype(jnp.result_type(x))
        for x, start, stop in zip(leaves, offsets[:-1], offsets[1:])
    ]
    return value, grads
