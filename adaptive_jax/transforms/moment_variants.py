r"""Variants of the moment estimate that feed the same ``debias → precondition`` pipeline.

Each block here takes the place of :func:`~adaptive_jax.transforms.moments.ema_moments`
(or :func:`~adaptive_jax.transforms.moments.ema_of_squares`) in a chain and outputs a
:class:`~adaptive_jax.transforms.moments.Moments` record, so an optimizer built from it
differs from Adam (or RMSProp) by exactly one block:

* :func:`nesterov_ema_moments` — NAdam's look-ahead first moment (Dozat 2016);
* :func:`belief_moments` — AdaBelief's second moment of the prediction error
  :math:`g_t - m_t` (Zhuang et al. 2020);
* :func:`yogi_moments` — Yogi's additive, sign-controlled second moment (Zaheer et al. 2018);
* :func:`infinity_moments` — Adamax's exponentially weighted infinity norm (Kingma & Ba 2015);
* :func:`centered_ema_of_squares` — centered RMSProp's variance estimate (Graves 2013).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax.core.numerics import (
    bias_correction,
    cast_like,
    compute_dtype,
    increment,
    safe_sqrt,
)
from adaptive_jax.core.protocol import PyTree
from adaptive_jax.core.pytree import pytree_dataclass
from adaptive_jax.core.trees import map_params, zeros_like
from adaptive_jax.core.validation import check_nonnegative
from adaptive_jax.transforms.moments import (
    EmaMoments,
    EmaMomentsState,
    EmaOfSquares,
    Moments,
    ema,
    expect_gradients,
    squared_magnitude,
)


@pytree_dataclass
class NesterovEmaMoments(EmaMoments):
    """See :func:`nesterov_ema_moments`."""

    def apply(self, updates, state, params, count):
        moments, state = super().apply(updates, state, params, count)
        # debias divides by 1 - b1^t; the look-ahead term needs 1 - b1^(t+1) instead.
        ratio = moments.mu_correction / bias_correction(self.b1, increment(count))

        def look_ahead(g, m):
            b1 = cast_like(self.b1, m)
            return b1 * cast_like(ratio, m) * m + (1 - b1) * g.astype(m.dtype)

        mu = map_params(look_ahead, updates, moments.mu, names=("mu",))
        return Moments(mu, moments.nu, moments.mu_correction, moments.nu_correction), state


def nesterov_ema_moments(
    b1: Any = 0.9, b2: Any = 0.999, mu_dtype: Any = None, nu_dtype: Any = None
) -> NesterovEmaMoments:
    r"""Adam's moments with NAdam's Nesterov look-ahead first moment.

    The state is :func:`~adaptive_jax.transforms.moments.ema_moments`'s
    (:math:`m_t, v_t`); the first moment handed on is the one-step look-ahead

    .. math::
       \bar m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\, g_t}{1-\beta_1^t},

    emitted as :math:`(1-\beta_1^t)\,\bar m_t` so that the following
    :func:`~adaptive_jax.transforms.moments.debias` (which divides by
    :math:`1-\beta_1^t`) yields :math:`\bar m_t`.  This is ``optax.scale_by_adam(...,
    nesterov=True)``; like optax it omits the extra :math:`\beta_2` factor of Dozat's
    Algorithm 2.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.nesterov_ema_moments(b1=0.5), aj.debias())
        >>> moments, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 4)  # m_bar_1 = g (1 + b1 / (1 + b1)) = 3 * 4 / 3
        4.0

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    return NesterovEmaMoments(b1, b2, mu_dtype, nu_dtype)


@pytree_dataclass
class BeliefMoments(EmaMoments):
    """See :func:`belief_moments`."""

    eps_root: Any = 1e-16

    def __post_init__(self):
        super().__post_init__()
        check_nonnegative("eps_root", self.eps_root)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "belief_moments")
        mu = map_params(lambda g, m: ema(m, g, self.b1), updates, state.mu, names=("mu",))

        def surprise(g, m, s):
            error = g.astype(m.dtype) - m
            return ema(s, squared_magnitude(error, s.dtype), self.b2) + cast_like(self.eps_root, s)

        nu = map_params(surprise, updates, mu, state.nu, names=("mu", "nu"))
        corrections = bias_correction(self.b1, count), bias_correction(self.b2, count)
        return Moments(mu, nu, *corrections), EmaMomentsState(mu, nu)


def belief_moments(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps_root: Any = 1e-16,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> BeliefMoments:
    r"""AdaBelief's moments: the EMA of the gradient and of its squared prediction error.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_t|^2 + \epsilon_{\text{root}},

    with :math:`m_0 = s_0 = 0`; :math:`\epsilon_{\text{root}}` is added inside the
    recursion (it accumulates in the state), as in the paper and ``optax.scale_by_belief``.
    The step is large where the gradient is predictable (:math:`s_t` small), small where
    it is noisy.  Outputs ``Moments(m_t, s_t)`` with Adam's corrections
    :math:`1-\beta_1^t`, :math:`1-\beta_2^t`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.belief_moments(), aj.debias())
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 4)  # m_hat_1 = g
        2.0
        >>> round(moments.nu.item(), 4)  # s_hat_1 = (g - m_1)^2 = (b1 g)^2
        3.24

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020.
    """
    return BeliefMoments(b1, b2, mu_dtype, nu_dtype, eps_root)


@pytree_dataclass
class YogiMoments(EmaMoments):
    """See :func:`yogi_moments`."""

    initial_accumulator_value: Any = 1e-6

    def __post_init__(self):
        super().__post_init__()
        check_nonnegative("initial_accumulator_value", self.initial_accumulator_value)

    def init_state(self, params):
        def full(tree):
            return jax.tree_util.tree_map(
                lambda z: z + cast_like(self.initial_accumulator_value, z), tree
            )

        state = super().init_state(params)
        return EmaMomentsState(full(state.mu), full(state.nu))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "yogi_moments")
        mu = map_params(lambda g, m: ema(m, g, self.b1), updates, state.mu, names=("mu",))

        def additive(g, v):
            square = squared_magnitude(g, v.dtype)
            return v - (1 - cast_like(self.b2, v)) * jnp.sign(v - square) * square

        nu = map_params(additive, updates, state.nu, names=("nu",))
        corrections = bias_correction(self.b1, count), bias_correction(self.b2, count)
        return Moments(mu, nu, *corrections), EmaMomentsState(mu, nu)


def yogi_moments(
    b1: Any = 0.9,
    b2: Any = 0.999,
    initial_accumulator_value: Any = 1e-6,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> YogiMoments:
    r"""Yogi's moments: Adam's first moment and an additive second moment.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2 .

    :math:`v_t` moves towards :math:`g_t^2` by at most :math:`(1-\beta_2) g_t^2` per
    step, so the effective learning rate cannot jump up when gradients suddenly
    shrink (Adam's :math:`v_t` decays multiplicatively).  Both moments start at
    ``initial_accumulator_value`` and are bias-corrected as Adam's, as in
    ``optax.scale_by_yogi``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.yogi_moments(b2=0.5, initial_accumulator_value=0.0)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (4.0, 1.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> round(moments.nu.item(), 4)  # v_2 = 8 - 0.5 * 1^2 (Adam's EMA: 0.5 * 8 + 0.5 * 1)
        7.5

    Reference: Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    return YogiMoments(b1, b2, mu_dtype, nu_dtype, initial_accumulator_value)


def _magnitude(g: jax.Array) -> jax.Array:
    """:math:`|g|` for real or complex ``g``, with derivative 0 (not NaN) at ``g = 0``."""
    if jnp.iscomplexobj(g):
        return safe_sqrt(squared_magnitude(g))
    return jnp.abs(g)


@pytree_dataclass
class InfinityMoments(EmaMoments):
    """See :func:`infinity_moments`."""

    eps: Any = 1e-8

    def __post_init__(self):
        super().__post_init__()
        check_nonnegative("eps", self.eps)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "infinity_moments")
        mu = map_params(lambda g, m: ema(m, g, self.b1), updates, state.mu, names=("mu",))

        def weighted_max(g, u):
            magnitude = _magnitude(g).astype(u.dtype) + cast_like(self.eps, u)
            return jnp.maximum(cast_like(self.b2, u) * u, magnitude)

        u = map_params(weighted_max, updates, state.nu, names=("nu",))
        # The record's second moment is the squared scale, so `precondition` recovers u_t;
        # squared in at least float32 so that a float16 u_t does not underflow.
        squared_scale = jax.tree_util.tree_map(lambda x: x.astype(compute_dtype(x)) ** 2, u)
        return Moments(mu, squared_scale, bias_correction(self.b1, count)), EmaMomentsState(mu, u)


def infinity_moments(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> InfinityMoments:
    r"""Adamax's moments: Adam's first moment and an exponentially weighted infinity norm.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon), \qquad m_0 = u_0 = 0 .

    :math:`u_t` is the :math:`p\to\infty` limit of Adam's
    :math:`v_t^{1/p}`; it is not biased towards zero, so only :math:`m_t` carries a
    correction :math:`1-\beta_1^t`.  The record's second moment is :math:`u_t^2`, so
    that ``precondition(eps=0)`` after ``debias`` gives :math:`\hat m_t / u_t` (for
    binary floating point :math:`\sqrt{u^2} = u` exactly, barring underflow).

    ``eps`` sits inside the maximum: the placement of both ``torch.optim.Adamax`` and
    ``optax.scale_by_adamax``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.infinity_moments(b2=0.5, eps=0.0)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (4.0, 1.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> round(state.inner.nu.item(), 4)  # u_2 = max(0.5 * 4, |1|)
        2.0
        >>> round(moments.nu.item(), 4)  # the record carries u_2^2
        4.0

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """
    return InfinityMoments(b1, b2, mu_dtype, nu_dtype, eps)


class CenteredEmaOfSquaresState(NamedTuple):
    """State of :func:`centered_ema_of_squares`: EMAs of the gradient and of its square."""

    mean: PyTree
    nu: PyTree


@pytree_dataclass
class CenteredEmaOfSquares(EmaOfSquares):
    """See :func:`centered_ema_of_squares`."""

    def init_state(self, params):
        return CenteredEmaOfSquaresState(zeros_like(params), super().init_state(params))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "centered_ema_of_squares")
        mean = map_params(lambda g, m: ema(m, g, self.decay), updates, state.mean, names=("mean",))
        _, nu = super().apply(updates, state.nu, params, count)

        def variance(v, m):
            # v >= |m|^2 holds exactly; the maximum only absorbs rounding.
            return jnp.maximum(v - squared_magnitude(m, v.dtype), jnp.zeros_like(v))

        centered = map_params(variance, nu, mean, names=("mean",))
        return Moments(updates, centered), CenteredEmaOfSquaresState(mean, nu)


def centered_ema_of_squares(decay: Any = 0.9, nu_dtype: Any = None) -> CenteredEmaOfSquares:
    r"""Centered RMSProp's second moment: an EMA estimate of the gradient's variance.

    .. math::
       \bar g_t = \rho \bar g_{t-1} + (1-\rho) g_t, \qquad
       v_t = \rho v_{t-1} + (1-\rho) |g_t|^2, \qquad
       \sigma^2_t = v_t - |\bar g_t|^2,

    with :math:`\bar g_0 = v_0 = 0`.  Outputs ``Moments(g_t, σ²_t)``; it takes the place
    of :func:`~adaptive_jax.transforms.moments.ema_of_squares` in RMSProp's chain (the
    two averages share one decay :math:`\rho`, a single leaf), giving
    ``torch.optim.RMSprop(centered=True)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.centered_ema_of_squares(decay=0.9)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.nu.item(), 4)  # (1 - rho) g^2 - ((1 - rho) g)^2 = rho (1 - rho) g^2
        0.36

    Reference: Graves, "Generating Sequences With Recurrent Neural Networks", 2013, eq. 38–41.
    """
    return CenteredEmaOfSquares(decay, nu_dtype)
