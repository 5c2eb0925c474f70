r"""Schedule-Free: replace momentum and the decaying schedule by interpolation and averaging.

Defazio et al. (2024) keep three sequences: :math:`z_t`, moved by the base optimizer;
:math:`x_t`, a weighted average of the :math:`z` (where the model should be evaluated);
and :math:`y_t`, the point where gradients are taken (the parameters during training),

.. math::
   y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad
   z_{t+1} = z_t + \mathrm{base}(\nabla f(y_t)), \qquad
   x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},

with :math:`c_{t+1} = w_{t+1}/\sum_{k\le t+1} w_k` and :math:`w_k = (\max_{j\le k}
\gamma_j)^{r}` (``weight_lr_power`` :math:`r`), so steps taken during a warm-up count
less in the average.  Only :math:`y` (the parameters) and :math:`z` are stored;
:math:`x = (y - (1-\beta_1) z)/\beta_1` is recovered from them
(:func:`schedule_free_eval_params`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.core import Tracer

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.hyperparameter import DECAY_RATE, NONNEGATIVE, Domain, value_at
from adaptive_jax._src.core.module import child, hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, widest_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import LOG
from adaptive_jax._src.core.trees import check_same_structure

# One scalar for all parameters (the averaging weights are global), possibly scheduled.
AVERAGING_LEARNING_RATE = Domain("a learning rate", schedule=True, reparameterization=LOG)


class ScheduleFreeState(NamedTuple):
    """State of :class:`schedule_free` (the fields of ``optax.contrib.ScheduleFreeState``).

    ``b1`` is the interpolation weight of the last update, kept for
    :func:`schedule_free_eval_params`; ``weight_sum`` is :math:`\\sum_k w_k`; ``max_lr``
    the largest learning rate so far; ``inner`` the base optimizer's state; ``z`` the
    base optimizer's iterate.
    """

    b1: jax.Array
    weight_sum: jax.Array
    max_lr: jax.Array
    inner: Any
    z: Any


def scalar_dtype(params: Any) -> Any:
    """The narrowest floating dtype among the parameters, at least float32."""
    dtypes = [jnp.result_type(p) for p in jax.tree_util.tree_leaves(params)] or [jnp.float32]
    narrowest = min(dtypes, key=lambda d: jnp.finfo(d).bits)
    return widest_dtype(jnp.finfo(narrowest).dtype, jnp.float32)


class ScheduleFree(Transform):
    r"""Run ``base_optimizer`` on :math:`z` and return the step of :math:`y = (1-\beta_1) z + \beta_1 x`.

    See the module docstring for the recursion.  The base optimizer should have no
    momentum (the interpolation replaces it).  ``learning_rate`` is the base
    optimizer's learning rate, used here for the averaging weights; as in
    ``optax.contrib.schedule_free`` a schedule is evaluated at the 1-based step (the
    base optimizer's own at the 0-based one).  The base optimizer shares this
    transform's step counter.  Evaluate the model at
    :func:`schedule_free_eval_params`.

    Where a learning rate is 0 (a warm-up's first step) the weight is 0 and its
    derivative in ``weight_lr_power`` is 0, not optax's ``0 * log 0`` = NaN.

    Args:
        base_optimizer: an adaptive_jax or optax transformation (without momentum).
        learning_rate: :math:`\gamma_t \ge 0`, a number or a schedule.
        b1: :math:`\beta_1 \in [0, 1)`, the interpolation weight (at 0 the parameters
            are the base optimizer's iterates and :func:`schedule_free_eval_params`
            cannot recover :math:`x`).
        weight_lr_power: :math:`r \ge 0`, the power of the learning rate in the weights.
        state_dtype: dtype to store :math:`z` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.schedule_free(aj.sgd(0.1), 0.1, b1=0.5)
        >>> params = jnp.array([1.0])
        >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params), params)
        >>> round(updates.item(), 6)  # z = 1 - 0.2, c_1 = 1 so x = z; y - 1 = -0.2
        -0.2

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """

    base_optimizer: Transform = child(converter=lambda tx: as_transform(tx, "base_optimizer"))
    learning_rate: Any = hyperparameter(domain=AVERAGING_LEARNING_RATE)
    b1: Any = hyperparameter(default=0.9, domain=DECAY_RATE)
    weight_lr_power: Any = hyperparameter(default=2.0, domain=NONNEGATIVE)
    state_dtype: Any = static(default=None)
    takes_extra_args = True

    def init_state(self, params):
        dtype = scalar_dtype(params)
        z = jax.tree_util.tree_map(
            lambda p: jnp.array(p, dtype=self.state_dtype or jnp.result_type(p)), params
        )
        b1 = jnp.asarray(self.b1).astype(dtype)
        # Two separate zeros: a state holding one buffer twice cannot be donated.
        weight_sum, max_lr = jnp.zeros([], dtype), jnp.zeros([], dtype)
        return ScheduleFreeState(b1, weight_sum, max_lr, self.base_optimizer.init_state(params), z)

    def apply(self, updates, state, params, count, **extra_args):
        expect_gradients(updates, "schedule_free")
        if params is None:
            raise ValueError(
                "schedule_free needs the parameters: call update(grads, state, params)"
            )
        check_same_structure(state.z, params, "z", "params")
        dtype = state.max_lr.dtype
        learning_rate = jnp.asarray(value_at(self.learning_rate, count, "learning_rate"))
        max_lr = jnp.maximum(state.max_lr, learning_rate.astype(dtype))
        positive = max_lr > 0
        safe_max_lr = jnp.where(positive, max_lr, jnp.ones_like(max_lr))
        power = jnp.asarray(self.weight_lr_power).astype(dtype)
        weight = jnp.where(positive, safe_max_lr**power, jnp.zeros_like(max_lr))
        weight_sum = state.weight_sum + weight
        nonzero = weight_sum > 0
        average = jnp.where(
            nonzero, weight / jnp.where(nonzero, weight_sum, jnp.ones_like(weight_sum)), 0
        )

        base = self.base_optimizer
        if base.takes_extra_args:
            steps, inner = base.apply(updates, state.inner, params, count, **extra_args)
        else:
            steps, inner = base.apply(updates, state.inner, params, count)
        b1 = jnp.asarray(self.b1)

        def move(y, z, step):
            # y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1} with x_t = (y_t - (1 - b1) z_t) / b1
            # substituted: no division by b1, so b1 = 0 (plain base optimizer) is allowed.
            new_z = (z + step.astype(z.dtype)).astype(z.dtype)
            wide = widest_dtype(y.dtype, z.dtype)
            beta, c = cast_like(b1, jnp.zeros([], wide)), cast_like(average, jnp.zeros([], wide))
            y_, z_, new_z_ = y.astype(wide), z.astype(wide), new_z.astype(wide)
            new_y = (1 - c) * (y_ - (1 - beta) * z_) + (beta * c + 1 - beta) * new_z_
            return (new_y - y_).astype(y.dtype), new_z

        moved = jax.tree_util.tree_map(move, params, state.z, steps)
        outer = jax.tree_util.tree_structure(params)
        out, z = jax.tree_util.tree_transpose(outer, jax.tree_util.tree_structure((0, 0)), moved)
        new_state = ScheduleFreeState(b1.astype(dtype), weight_sum, max_lr, inner, z)
        return out, new_state


schedule_free = ScheduleFree


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    r"""The parameters to evaluate a Schedule-Free model at: :math:`x = (y - (1-\beta_1) z)/\beta_1`.

    ``state`` is the state of :func:`schedule_free` or of an optimizer containing it
    (found anywhere in the state tree), ``params`` the training parameters :math:`y`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.schedule_free_sgd(0.1, b1=0.5)
        >>> params = jnp.array([1.0])
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     updates, state = tx.update(2 * params, state, params)
        ...     params = aj.apply_updates(params, updates)
        >>> x = aj.schedule_free_eval_params(state, params)
        >>> round(x.item(), 6)  # z: 0.8, 0.64; x: 0.8, (0.8 + 0.64) / 2; y_2 = 0.68
        0.72

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    found = [
        node
        for node in jax.tree_util.tree_leaves(
            state, is_leaf=lambda node: isinstance(node, ScheduleFreeState)
        )
        if isinstance(node, ScheduleFreeState)
    ]
    if len(found) != 1:
        raise ValueError(
            "schedule_free_eval_params needs the state of exactly one schedule_free "
            f"transformation, found {len(found)}"
        )
    sf = found[0]
    if not isinstance(sf.b1, Tracer) and float(sf.b1) == 0:
        raise ValueError("schedule_free_eval_params: b1=0.0 keeps no average x to recover")
    check_same_structure(sf.z, params, "z", "params")
    return jax.tree_util.tree_map(
        lambda y, z: (y - (1 - cast_like(sf.b1, y)) * z.astype(y.dtype)) / cast_like(sf.b1, y),
        params,
        sf.z,
    )
