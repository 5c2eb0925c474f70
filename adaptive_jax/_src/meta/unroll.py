r"""Unrolled training: :math:`T` optimizer steps as one pure, differentiable function.

.. math::

   g_t = \nabla_\theta L(\theta_{t}, x_t), \qquad
   (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t), \qquad
   \theta_{t+1} = \theta_t + u_t, \qquad t = 0, \dots, T-1.

:func:`unroll` runs this loop with ``lax.scan`` and returns the final parameters, the
final optimizer state and the loss trace :math:`L(\theta_t, x_t)`.  It is a pure
function of the transformation (whose hyperparameters are pytree leaves), the initial
parameters and the data, so ``jax.grad``, ``jax.jvp``, ``jax.vmap`` and ``jax.jit``
apply to it: differentiating a meta-objective built on it with respect to ``tx`` gives
hypergradients (Maclaurin, Duvenaud & Adams, "Gradient-based Hyperparameter
Optimization through Reversible Learning", ICML 2015).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import takes_extra_args
from adaptive_jax._src.core.numerics import COUNT_DTYPE
from adaptive_jax._src.core.protocol import PyTree, StepState, Transform, apply_updates
from adaptive_jax._src.meta.checkpointing import Checkpointing, checkpointed_scan


class Unrolled(NamedTuple):
    """What :func:`unroll` returns.

    ``losses[t]`` is the training loss at the parameters *before* update ``t``
    (so ``losses[0]`` is the loss at the initial parameters).
    """

    params: PyTree
    opt_state: PyTree
    losses: jax.Array


def unroll(
    tx: Any,
    params: PyTree,
    loss_fn: Callable[..., jax.Array],
    data: Any = None,
    *,
    num_steps: int | None = None,
    opt_state: PyTree | None = None,
    checkpointing: Checkpointing | None = None,
) -> Unrolled:
    r"""Run ``num_steps`` steps of ``tx`` on ``loss_fn`` with ``lax.scan``.

    Each step computes :math:`g = \nabla_\theta` ``loss_fn(params, batch)``, then
    ``u, s = tx.update(g, s, params, value=loss)`` and ``params = apply_updates(params,
    u)``.  The loss reaches transformations that use it (:func:`~adaptive_jax.polyak_sgd`,
    ``optax.contrib.reduce_on_plateau``); an optax transformation whose ``update``
    takes no extra arguments is called without it.

    Args:
        tx: any transformation with ``init``/``update`` (adaptive_jax or optax).
        params: initial parameters :math:`\theta_0`.
        loss_fn: ``loss_fn(params, batch) -> scalar``, or ``loss_fn(params)`` when
            ``data`` is None.
        data: where the batches come from —

            * a pytree of arrays with leading axis :math:`T`: step ``t`` uses
              ``tree_map(lambda x: x[t], data)``;
            * a callable ``step -> batch``: ``step`` is the traced 0-based int32 step,
              counted from the ``opt_state``'s step count, so that consecutive windows
              of one run (truncated backprop) see consecutive steps;
            * None: ``loss_fn(params)`` is called without a batch.
        num_steps: :math:`T`; taken from the leading axis of ``data`` when it holds
            arrays (and then must agree with it).
        opt_state: the state to start from (default ``tx.init(params)``).
        checkpointing: what reverse mode stores (:mod:`adaptive_jax._src.meta.checkpointing`);
            default: the policy of the enclosing :class:`~adaptive_jax.meta.Reverse`
            mode, else everything.  Changes memory and time, never the numbers.

    Returns:
        :class:`Unrolled` ``(params, opt_state, losses)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> run = aj.meta.unroll(aj.sgd(0.25), jnp.zeros(2), loss, num_steps=3)
        >>> run.params.tolist()  # each step halves the distance to 1
        [0.875, 0.875]
        >>> final_loss = lambda tx: loss(aj.meta.unroll(tx, jnp.zeros(2), loss, num_steps=3).params)
        >>> # d/d alpha of 2 (1 - 2 alpha)^6 at alpha = 1/4 is -24 (1/2)^5
        >>> float(aj.get_hyperparameter(jax.grad(final_loss)(aj.sgd(0.25)), "learning_rate"))
        -0.75
    """
    num_steps = _resolve_num_steps(data, num_steps)
    takes_value = isinstance(tx, Transform) or takes_extra_args(tx.update)
    if opt_state is None:
        opt_state = tx.init(params)
    first_step = opt_state.count if isinstance(opt_state, StepState) else jnp.zeros([], COUNT_DTYPE)
    # Only step indices are scanned over: the data stay one loop-invariant array that
    # each step slices, so checkpointed schemes never store copies of it.
    indices = jnp.arange(num_steps, dtype=COUNT_DTYPE)

    def batch_at(index):
        if callable(data):
            return data(first_step + index)
        return jax.tree_util.tree_map(lambda x: x[index], data)

    def one_step(carry, index):
        params, state = carry
        if data is None:
            loss, grads = jax.value_and_grad(loss_fn)(params)
        else:
            loss, grads = jax.value_and_grad(loss_fn)(params, batch_at(index))
        extra = {"value": loss} if takes_value else {}
        updates, state = recomputed_in_reverse(lambda g, s, p: tx.update(g, s, p, **extra))(
            grads, state, params
        )
        return (apply_updates(params, updates), state), loss

    (params, opt_state), losses = checkpointed_scan(
        one_step, (params, opt_state), indices, num_steps, checkpointing
    )
    return Unrolled(params, opt_state, losses)


def recomputed_in_reverse(update: Any) -> Any:
    """``update`` whose intermediates reverse mode recomputes instead of storing.

    An optimizer's intermediates (bias-corrected moments, square roots, denominators) are
    parameter-sized and cost a few elementwise operations each: storing them for every step
    of an unrolled run multiplies the memory traffic of the backward pass (Adam's reverse
    mode moved 2.6 times the bytes with them stored, in ``benchmarks/bench_meta.py``'s
    model).  Only the step's inputs are kept; forward mode is unaffected.
    """
    return jax.checkpoint(
        update, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=False
    )


def _holds_arrays(data: Any) -> bool:
    return data is not None and not callable(data)


def _resolve_num_steps(data: Any, num_steps: int | None) -> int:
    """T from ``num_steps`` or from the data's leading axis; they must agree."""
    if not _holds_arrays(data):
        if num_steps is None:
            raise ValueError("num_steps is required when data is None or a function of the step")
        return int(num_steps)
    lengths = {jnp.shape(x)[0] if jnp.ndim(x) else -1 for x in jax.tree_util.tree_leaves(data)}
    if len(lengths) != 1 or -1 in lengths:
        raise ValueError(
            "data must be a pytree of arrays sharing one leading (step) axis; got leading "
            f"sizes {sorted(lengths)} (-1: a scalar leaf)"
        )
    (length,) = lengths
    if num_steps is not None and num_steps != length:
        raise ValueError(f"num_steps={num_steps} but data has {length} steps on its leading axis")
    return int(length)
