r"""First moments: the direction an adaptive method steps in.

A first-moment block turns gradients :math:`g_t` into a
:class:`~adaptive_jax.extend.Moments` record carrying :math:`m_t` and its
bias-correction denominator; a second-moment block adds the scale after it.

* :class:`ema_of_gradients` — Adam's :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`;
* :class:`nesterov_ema_of_gradients` — NAdam's one-step look-ahead of the same EMA;
* :class:`ema_of_gradient_differences` — Adan's EMA of :math:`g_t - g_{t-1}`, added to
  the first moment after it (Xie et al. 2022).

All take one decay for every parameter or a per-parameter tree of decays (then each
leaf carries its own bias correction).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import (
    Moments,
    as_moments,
    expect_gradients,
    leaf_values,
    per_leaf_tree,
)
from adaptive_jax._src.core.numerics import (
    as_dtype,
    bias_correction,
    cast_like,
    ema,
    increment,
    once,
    one_minus,
)
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params, zeros_like


def corrections(decays: list[Any], count: jax.Array) -> list[Any]:
    """:math:`1-\\beta^t` for each leaf's decay: one object per distinct decay.

    Leaves sharing a decay share the correction object, so that ``per_leaf_tree`` hands
    on one scalar (also where no update's :func:`~adaptive_jax._src.core.numerics.once` is
    active, when ``apply`` is called directly).
    """
    done: dict[int, Any] = {}
    for decay in decays:
        if id(decay) not in done:
            done[id(decay)] = bias_correction(decay, count)
    return [done[id(decay)] for decay in decays]


class FirstMomentState(NamedTuple):
    """State of a first-moment block: :math:`m_t`."""

    mu: Any


class EmaOfGradients(Transform):
    r"""Adam's first moment: :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, :math:`m_0 = 0`.

    Hands on a :class:`~adaptive_jax.extend.Moments` record with :math:`m_t` and
    the denominator :math:`1-\beta_1^t` for :class:`~adaptive_jax.debias`.

    Args:
        decay: :math:`\beta_1` in :math:`[0, 1)`, or a per-parameter tree of them.
        mu_dtype: dtype to store :math:`m_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_of_gradients(decay=0.9)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(float(moments.mu_correction), 6)  # (1 - b1) g, 1 - b1
        (0.2, 0.1)

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    mu_dtype: Any = static(default=None)

    def init_state(self, params):
        return FirstMomentState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_of_gradients")
        decays = per_leaf(self.decay, count - 1, updates)
        mu = first_moment(updates, state.mu, decays)
        correction = per_leaf_tree(corrections(decays, count), updates)
        return Moments(updates, mu, mu_correction=correction), FirstMomentState(mu)


def first_moment(updates: Any, mu: Any, decays: list[Any]) -> Any:
    """:math:`\beta m + (1-\beta) g` leaf by leaf, each leaf with its own decay."""
    return map_params(lambda g, m, b: ema(m, g, b), updates, mu, names=("mu",), per_leaf=(decays,))


def _look_ahead_weight(decay: Any, correction: Any, next_correction: Any, dtype: Any) -> Any:
    """:math:`\beta_1 (1-\beta_1^t)/(1-\beta_1^{t+1})` in ``dtype``: NAdam's weight of :math:`m_t`."""
    return as_dtype(decay, dtype) * as_dtype(correction / next_correction, dtype)


class NesterovEmaOfGradients(Transform):
    r"""NAdam's first moment: Adam's EMA, handed on as its one-step look-ahead.

    The state is :math:`m_t` of :class:`ema_of_gradients`; the record carries

    .. math::
       \bar m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\, g_t}{1-\beta_1^t},

    emitted as :math:`(1-\beta_1^t)\,\bar m_t` so that :class:`~adaptive_jax.debias`
    (which divides by :math:`1-\beta_1^t`) yields :math:`\bar m_t`.  This is
    ``optax.scale_by_adam(..., nesterov=True)``; like optax it omits the extra
    :math:`\beta_2` factor of Dozat's Algorithm 2.

    Args:
        decay: :math:`\beta_1` in :math:`[0, 1)`, or a per-parameter tree of them.
        mu_dtype: dtype to store :math:`m_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.nesterov_ema_of_gradients(decay=0.5), aj.debias())
        >>> moments, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 4)  # m_bar_1 = g (1 + b1 / (1 + b1)) = 3 * 4 / 3
        4.0

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    mu_dtype: Any = static(default=None)

    def init_state(self, params):
        return FirstMomentState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "nesterov_ema_of_gradients")
        decays = per_leaf(self.decay, count - 1, updates)
        mu = first_moment(updates, state.mu, decays)
        now, ahead = corrections(decays, count), corrections(decays, increment(count))

        def look_ahead(g, m, decay, correction, next_correction):
            # debias divides by 1 - b1^t; the look-ahead term needs 1 - b1^(t+1) instead.
            weight = once(_look_ahead_weight, decay, correction, next_correction, m.dtype)
            return weight * m + one_minus(decay, m.dtype) * g.astype(m.dtype)

        bar = map_params(look_ahead, updates, mu, names=("mu",), per_leaf=(decays, now, ahead))
        return Moments(updates, bar, mu_correction=per_leaf_tree(now, updates)), FirstMomentState(
            mu
        )


class EmaOfGradientDifferencesState(NamedTuple):
    """State of :class:`ema_of_gradient_differences`: :math:`g_{t-1}` and the EMA :math:`v_t`."""

    previous_gradient: Any
    difference: Any


class EmaOfGradientDifferences(Transform):
    r"""Adan's Nesterov momentum estimate: an EMA of gradient differences, added to the first moment.

    .. math::
       \Delta_t = g_t - g_{t-1}\ (\Delta_1 = 0), \qquad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t, \qquad v_0 = 0 .

    Placed after :class:`ema_of_gradients` (:math:`m_t`, decay :math:`\beta_1`) and before
    the second moment, it hands on a record whose first moment becomes, after
    :class:`~adaptive_jax.debias`,

    .. math::
       \hat m_t + (1-\beta_2)\, \hat v_t
       = \frac{m_t}{1-\beta_1^t} + (1-\beta_2) \frac{v_t}{1-\beta_2^t}

    (emitted multiplied by :math:`1-\beta_1^t`, the denominator ``debias`` divides by),
    and whose gradient becomes the look-ahead :math:`g_t + (1-\beta_2)\Delta_t`, the
    quantity Adan's second moment squares: a second-moment block after it
    (``ema_of_squares(b3)``) gives :math:`n_t = \beta_3 n_{t-1} + (1-\beta_3)
    (g_t + (1-\beta_2)\Delta_t)^2`.  These are the numbers of ``optax.scale_by_adan``.

    Args:
        decay: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_of_gradients(0.5), aj.ema_of_gradient_differences(0.5), aj.debias())
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (2.0, 4.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> # m_hat = (0.25 * 2 + 0.5 * 4) / 0.75 = 10/3, v_hat = 0.5 * (4 - 2) / 0.75 = 4/3
        >>> round(moments.mu.item(), 4), moments.gradient.item()  # 10/3 + 0.5 * 4/3; 4 + 0.5 * 2
        (4.0, 5.0)

    Reference: Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models", IEEE TPAMI 2024 (arXiv:2208.06677), Algorithm 1.
    """

    decay: PerParameter = hyperparameter(default=0.92, domain=DECAY_RATE)

    def init_state(self, params):
        return EmaOfGradientDifferencesState(zeros_like(params), zeros_like(params))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        if record.nu is not None:
            raise TypeError(
                "ema_of_gradient_differences changes the gradient the second moment squares: "
                "place it before the second-moment block in the chain"
            )
        gradient = record.gradient
        decays = per_leaf(self.decay, count - 1, gradient, "decay")
        first_step = count == 1

        def difference(g, previous):
            return jnp.where(first_step, jnp.zeros_like(g), g - previous)

        delta = map_params(difference, gradient, state.previous_gradient, names=("previous",))
        v = map_params(
            lambda d, v, b: ema(v, d, b), delta, state.difference, names=("v",), per_leaf=(decays,)
        )

        def combined(m, v, b2, mu_correction, v_correction):
            # debias divides by 1 - b1^t: scale v's own correction 1 - b2^t into that.
            one_minus_b2 = 1 - cast_like(b2, m)
            ratio = cast_like(mu_correction, m) / cast_like(v_correction, m)
            return m + one_minus_b2 * ratio * v.astype(m.dtype)

        mu = map_params(
            combined,
            record.mu,
            v,
            names=("v",),
            per_leaf=(
                decays,
                leaf_values(record.mu_correction, gradient),
                corrections(decays, count),
            ),
        )
        look_ahead = map_params(
            lambda g, d, b2: g + (1 - cast_like(b2, g)) * d,
            gradient,
            delta,
            names=("delta",),
            per_leaf=(decays,),
        )
        new_state = EmaOfGradientDifferencesState(gradient, v)
        return record._replace(gradient=look_ahead, mu=mu), new_state


ema_of_gradients = EmaOfGradients
nesterov_ema_of_gradients = NesterovEmaOfGradients
ema_of_gradient_differences = EmaOfGradientDifferences
