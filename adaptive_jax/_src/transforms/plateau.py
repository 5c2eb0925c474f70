r"""Lower the learning rate when the loss stops improving (``optax.contrib.reduce_on_plateau``).

The loss is passed to each update (``update(grads, state, params, value=loss)``;
:func:`~adaptive_jax.chain` forwards it, and :func:`~adaptive_jax.make_train_step` passes
the training loss).  Every ``accumulation_size`` calls their mean :math:`\bar L` is
compared with the best so far, :math:`L^\star`:

.. math::

   \text{improved} \iff \bar L < (1 - r)\,L^\star - a ,

and after ``patience`` evaluations in a row without improvement the scale by which the
updates are multiplied becomes :math:`\max(f\,s, s_{\min})`, followed by ``cooldown``
evaluations during which the count does not run.  The updates are :math:`s\,u`.
optax's semantics and numbers; its ``factor``, ``rtol``, ``atol`` and ``min_scale`` are
declared hyperparameters here (leaves: ``jax.vmap`` over them, or a derivative with
respect to :math:`f`, which acts through :math:`s = \max(f^n, s_{\min})`), and the counts
``patience``, ``cooldown``, ``accumulation_size`` are static ints.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.core import Tracer

from adaptive_jax._src.core.hyperparameter import (
    FRACTION,
    NONNEGATIVE,
    REDUCTION_FACTOR,
    check_count,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import COUNT_DTYPE, increment, widest_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.transforms.scaling import scale_leaves


class ReduceLROnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau` (optax's fields).

    ``scale`` multiplies the updates; ``best_value`` is the best mean loss so far;
    ``plateau_count`` counts evaluations without improvement; ``cooldown_count`` the
    evaluations left in the cooldown; ``count`` and ``avg_value`` the losses
    accumulated since the last evaluation and their mean.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


def _concrete(value: Any) -> float | None:
    if isinstance(value, Tracer):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ReduceOnPlateau(Transform):
    r"""Multiply the updates by a scale that drops by ``factor`` when the loss plateaus.

    Pass the loss as ``value=`` to every update.  See the module docstring for the
    rule.  Place it after the optimizer (it scales the final updates).

    Args:
        factor: :math:`f \in (0, 1)`: the scale is multiplied by it on a plateau.
        patience: evaluations without improvement before the scale drops (int >= 1).
        rtol: :math:`r \in [0, 1]`, relative improvement required.
        atol: :math:`a \ge 0`, absolute improvement required (``rtol`` and ``atol`` not
            both 0).
        cooldown: evaluations after a drop during which no plateau is counted (int >= 0).
        accumulation_size: losses averaged per evaluation (int >= 1); 1 when ``value``
            is a validation loss, more for noisy mini-batch losses.
        min_scale: :math:`s_{\min} \ge 0`, the scale never drops below it.

    Differences from optax: ``patience`` must be at least 1 (optax's ``patience=0``
    lowers the scale on every *improvement*), and the scale is kept in at least float32
    for low-precision parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.sgd(1.0), aj.reduce_on_plateau(factor=0.5, patience=2))
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> scales = []
        >>> for loss in (3.0, 2.0, 2.0, 2.0, 2.0, 2.0):
        ...     updates, state = tx.update(jnp.ones(1), state, params, value=loss)
        ...     scales.append(-float(updates[0]))
        >>> scales  # improvement, then two evaluations without: halved, and again two later
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    factor: Any = hyperparameter(default=0.1, domain=REDUCTION_FACTOR)
    patience: int = static(default=10)
    rtol: Any = hyperparameter(default=1e-4, domain=FRACTION)
    atol: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    cooldown: int = static(default=0)
    accumulation_size: int = static(default=1)
    min_scale: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    takes_extra_args = True

    def __check_init__(self):
        check_count("patience", self.patience)
        check_count("cooldown", self.cooldown, low=0)
        check_count("accumulation_size", self.accumulation_size)
        if _concrete(self.rtol) == 0.0 and _concrete(self.atol) == 0.0:
            raise ValueError(
                "rtol=0.0 and atol=0.0 are invalid together: at least one must be positive "
                "(else no loss ever counts as an improvement)"
            )

    def init_state(self, params):
        dtypes = [jnp.result_type(x) for x in jax.tree_util.tree_leaves(params)]
        lowest = min(dtypes, key=lambda d: jnp.finfo(d).bits, default=jnp.float32)
        value_dtype = widest_dtype(jnp.float32, *dtypes)
        return ReduceLROnPlateauState(
            scale=jnp.ones([], widest_dtype(lowest, jnp.float32)),
            best_value=jnp.full([], jnp.inf, value_dtype),
            plateau_count=jnp.zeros([], COUNT_DTYPE),
            cooldown_count=jnp.zeros([], COUNT_DTYPE),
            count=jnp.zeros([], COUNT_DTYPE),
            avg_value=jnp.zeros([], value_dtype),
        )

    def _evaluate(self, state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        """optax's ``_update_scale``: compare the mean loss with the best, count, drop."""
        dtype = state.best_value.dtype
        rtol, atol = (jnp.asarray(x).astype(dtype) for x in (self.rtol, self.atol))
        improved = state.avg_value < (1 - rtol) * state.best_value - atol
        best = jnp.where(improved, state.avg_value, state.best_value)
        plateau = jnp.where(improved, 0, increment(state.plateau_count)).astype(COUNT_DTYPE)
        cooling = state.cooldown_count > 0
        drop = (plateau == self.patience) & ~cooling
        scale_dtype = state.scale.dtype
        factor, min_scale = (
            jnp.asarray(x).astype(scale_dtype) for x in (self.factor, self.min_scale)
        )
        scale = jnp.where(drop, state.scale * factor, state.scale)
        scale = jnp.where(cooling, state.scale, jnp.maximum(scale, min_scale))
        return ReduceLROnPlateauState(
            scale=scale,
            best_value=best,
            plateau_count=jnp.where(cooling | drop, 0, plateau).astype(COUNT_DTYPE),
            cooldown_count=jnp.where(
                cooling, state.cooldown_count - 1, jnp.where(drop, self.cooldown, 0)
            ).astype(COUNT_DTYPE),
            count=jnp.zeros_like(state.count),
            avg_value=jnp.zeros_like(state.avg_value),
        )

    def apply(self, updates, state, params, count, **extra_args):
        del params, count
        expect_gradients(updates, "reduce_on_plateau")
        if extra_args.get("value") is None:
            raise TypeError(
                "reduce_on_plateau needs the loss: call update(grads, state, params, "
                "value=loss) (chain forwards it; make_train_step passes the training loss)"
            )
        value = jnp.asarray(extra_args["value"]).astype(state.avg_value.dtype)
        if value.shape != ():
            raise ValueError(f"value must be a scalar loss, got shape {value.shape}")
        seen = increment(state.count)
        dtype = state.avg_value.dtype
        average = (state.count.astype(dtype) * state.avg_value + value) / seen.astype(dtype)
        state = state._replace(avg_value=average, count=seen)
        evaluated = self._evaluate(state)
        due = seen == self.accumulation_size
        state = jax.tree_util.tree_map(lambda new, old: jnp.where(due, new, old), evaluated, state)
        factors = [state.scale] * len(jax.tree_util.tree_leaves(updates))
        return scale_leaves(updates, factors), state


reduce_on_plateau = ReduceOnPlateau
