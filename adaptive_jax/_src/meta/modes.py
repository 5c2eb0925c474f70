r"""How an exact hypergradient is computed: a mode is an object, not a string.

A *mode* computes :math:`F(\lambda)` and :math:`\partial F/\partial\lambda` for a scalar
function :math:`F` of a list of arrays (the differentiable hyperparameters); it changes
time and memory, never the numbers.  :func:`~adaptive_jax.meta.hypergradient` and
:func:`~adaptive_jax.meta.meta_train` take one:

* :class:`Reverse` — ``jax.grad``, one forward and one backward sweep.  Its
  ``checkpointing`` policy (:mod:`adaptive_jax._src.meta.checkpointing`) decides what the
  backward sweep stores: every unroll traced inside the objective uses it, so the
  objective needs no argument for it;
* :class:`Forward` — one ``jax.jvp`` per hyperparameter, all :math:`k` of them batched
  with ``vmap`` through a single sweep.  Memory does not depend on the horizon; the
  cost is one forward pass plus one to two per hyperparameter (Franceschi et al.,
  "Forward and Reverse Gradient-Based Hyperparameter Optimization", ICML 2017;
  Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons",
  NeurIPS 2021).  The right choice for a handful of hyperparameters over a long run.

A new exact mode is a final subclass of :class:`Mode` with ``value_and_grad``.
Estimators that are not exact gradients of one function (truncated backpropagation,
persistent evolution strategies) implement :class:`~adaptive_jax.meta.Estimator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.module import Module, child
from adaptive_jax._src.meta.checkpointing import Checkpointing, StoreAll, checkpointing_for

Objective = Callable[[list[jax.Array]], Any]  # a scalar, or (scalar, aux) with has_aux


class Mode(Module, abstract=True):
    """How the value and gradient of a scalar function of a list of arrays are computed."""

    def value_and_grad(
        self, objective: Objective, leaves: list[jax.Array], has_aux: bool = False
    ) -> tuple[Any, list[jax.Array]]:
        """``(objective(leaves), d objective / d leaves)``.

        With ``has_aux`` the objective returns ``(value, aux)`` and the first result is
        ``(value, aux)``, as with ``jax.value_and_grad(..., has_aux=True)``.
        """
        raise NotImplementedError


class Reverse(Mode):
    """Reverse mode (``jax.grad``), with a checkpointing policy for the unrolls inside.

    Args:
        checkpointing: what the backward sweep stores: :class:`~adaptive_jax.meta.StoreAll`
            (default, memory :math:`O(T)`), :class:`~adaptive_jax.meta.EveryStep`,
            :class:`~adaptive_jax.meta.SqrtBlocks` (:math:`O(\\sqrt T)`) or
            :class:`~adaptive_jax.meta.Bisection` (:math:`O(\\log T)`).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> objective = lambda tx: loss(aj.meta.unroll(tx, jnp.zeros(2), loss, num_steps=3).params)
        >>> mode = aj.meta.Reverse(checkpointing=aj.meta.SqrtBlocks())
        >>> grads = aj.meta.hypergradient(objective, aj.sgd(0.25), mode=mode)
        >>> float(aj.get_hyperparameter(grads, "learning_rate"))  # -24 (1 - 2 alpha)^5
        -0.75
    """

    checkpointing: Checkpointing = child(default=StoreAll())

    def __check_init__(self):
        if not isinstance(self.checkpointing, Checkpointing):
            raise TypeError(
                f"checkpointing must be a Checkpointing policy (StoreAll(), EveryStep(), "
                f"SqrtBlocks(), Bisection()), got {self.checkpointing!r}"
            )

    def value_and_grad(self, objective, leaves, has_aux=False):
        with checkpointing_for(self.checkpointing):
            return jax.value_and_grad(objective, has_aux=has_aux)(leaves)


class Forward(Mode):
    """Forward mode: ``vmap`` over one ``jvp`` per hyperparameter; memory flat in the horizon.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> objective = lambda tx: loss(aj.meta.unroll(tx, jnp.zeros(2), loss, num_steps=3).params)
        >>> grads = aj.meta.hypergradient(objective, aj.sgd(0.25), mode=aj.meta.Forward())
        >>> float(aj.get_hyperparameter(grads, "learning_rate"))
        -0.75
    """

    def value_and_grad(self, objective, leaves, has_aux=False):
        sizes = [int(np.size(x)) for x in leaves]
        basis = jnp.eye(sum(sizes), dtype=jnp.result_type(float))
        offsets = np.cumsum([0] + sizes)

        def split(vector):
            return [
                vector[start:stop].reshape(jnp.shape(x)).astype(jnp.result_type(x))
                for x, start, stop in zip(leaves, offsets[:-1], offsets[1:])
            ]

        def directional_derivative(direction):
            if has_aux:
                value, derivative, aux = jax.jvp(
                    objective, (leaves,), (split(direction),), has_aux=True
                )
                return (value, aux), derivative
            return jax.jvp(objective, (leaves,), (split(direction),))

        # The primal does not depend on the tangent: vmap runs it once, batching only the
        # k tangent streams.
        value, derivatives = jax.vmap(directional_derivative, out_axes=(None, 0))(basis)
        return value, split(derivatives)


def as_mode(mode: Any) -> Mode:
    """``mode`` if it is a :class:`Mode`; a clear error for anything else (strings included)."""
    if isinstance(mode, Mode):
        return mode
    raise TypeError(
        f"mode must be a Mode object such as aj.meta.Reverse(), "
        f"aj.meta.Reverse(checkpointing=aj.meta.SqrtBlocks()) or aj.meta.Forward(); got {mode!r}"
    )
