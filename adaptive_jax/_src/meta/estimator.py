r"""Meta-gradient estimators: one interface for exact, truncated and evolutionary estimates.

An estimator turns meta-parameters :math:`\phi` (a transformation, or what the run
maps to one) into a meta-loss and a meta-gradient, possibly carrying a state between
calls (where an inner run stands, random keys, perturbation sums)::

    state = estimator.init(meta_params, key)
    loss, meta_gradient, state = estimator.estimate(meta_params, state)

* :class:`ExactMetaGradient` — the exact gradient of a function ``meta_params ->
  meta-loss`` (a full unroll), computed in a :class:`~adaptive_jax.meta.Mode`;
* :class:`~adaptive_jax.meta.TruncatedBackprop` — the exact gradient of each
  :math:`K`-step window, its start held fixed (biased, cheap);
* :class:`~adaptive_jax.meta.PersistentES` — persistent evolution strategies over
  windows (unbiased, no backpropagation).

:func:`~adaptive_jax.meta.meta_train` drives any of them; a new estimator is a final
subclass of :class:`Estimator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from adaptive_jax._src.core.module import Module, child
from adaptive_jax._src.core.protocol import PyTree
from adaptive_jax._src.meta.hypergradient import value_and_hypergradient
from adaptive_jax._src.meta.modes import Mode, Reverse, as_mode


class Estimator(Module, abstract=True):
    """Base class: ``init(meta_params, key) -> state``, ``estimate(meta_params, state) -> (loss, grads, state)``."""

    def init(self, meta_params: PyTree, key: jax.Array | None = None) -> PyTree:
        """The estimator's state before the first estimate."""
        raise NotImplementedError

    def estimate(self, meta_params: PyTree, state: PyTree) -> tuple[jax.Array, PyTree, PyTree]:
        """The meta-loss, a meta-gradient shaped like ``meta_params``, and the new state."""
        raise NotImplementedError

    def with_decoder(self, decode: Callable[[PyTree], Any]) -> Estimator:
        """The same estimator over coordinates ``z`` whose transformation is ``decode(z)``.

        :func:`~adaptive_jax.meta.meta_train` uses it to learn some hyperparameters in
        unconstrained coordinates (:class:`~adaptive_jax.meta.Learned`).
        """
        raise TypeError(
            f"{type(self).__name__} does not implement with_decoder, which learn= and "
            "reparameterize= need; pass meta-parameters your estimator understands instead"
        )


class ExactMetaGradient(Estimator):
    """The exact gradient of a differentiable ``meta_loss(meta_params) -> scalar`` (stateless).

    Args:
        meta_loss: the meta-objective.
        mode: how its gradient is computed (default ``Reverse()``).
    """

    meta_loss: Callable[[Any], jax.Array] = child()
    mode: Mode = child(default=Reverse(), converter=as_mode)

    def init(self, meta_params: PyTree, key: jax.Array | None = None) -> None:
        del meta_params, key

    def estimate(self, meta_params: PyTree, state: None) -> tuple[jax.Array, PyTree, None]:
        value, grads = value_and_hypergradient(self.meta_loss, meta_params, mode=self.mode)
        return value, grads, state

    def with_decoder(self, decode: Callable[[PyTree], Any]) -> ExactMetaGradient:
        meta_loss = self.meta_loss
        return ExactMetaGradient(lambda z: meta_loss(decode(z)), self.mode)  # pyright: ignore[reportArgumentType]


def as_estimator(objective: Any, mode: Mode | None = None) -> Estimator:
    """``objective`` if it is an :class:`Estimator`; a function becomes :class:`ExactMetaGradient`."""
    if isinstance(objective, Estimator):
        if mode is not None:
            raise ValueError(
                "mode applies to a meta-loss function; an estimator takes its own "
                "(e.g. truncated_backprop(..., mode=...))"
            )
        return objective
    if callable(objective):
        return ExactMetaGradient(objective, Reverse() if mode is None else mode)  # pyright: ignore[reportArgumentType]
    raise TypeError(
        "meta_train needs a meta-loss function or an Estimator (ExactMetaGradient, "
        f"TruncatedBackprop, PersistentES), got {objective!r}"
    )
