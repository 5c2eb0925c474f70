r"""Second moments that change the recursion: AdaBelief, Adamax and Yogi.

Each takes the place of :class:`~adaptive_jax.ema_of_squares` in Adam's chain, so the
optimizer built from it differs from Adam by that one block (Yogi, whose *first*
moment also starts away from zero, replaces both moment blocks):

* :class:`belief_second_moment` — the EMA of the squared prediction error
  :math:`(g_t - m_t)^2` (Zhuang et al. 2020);
* :class:`infinity_norm_second_moment` — Adamax's exponentially weighted infinity
  norm (Kingma & Ba 2015, §7.1);
* :class:`yogi_moments` — Adam's first moment and Yogi's additive second moment
  (Zaheer et al. 2018).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    DECAY_RATE,
    EPSILON,
    NONNEGATIVE,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import Moments, as_moments, expect_gradients, per_leaf_tree
from adaptive_jax._src.core.numerics import (
    cast_like,
    compute_dtype,
    ema,
    one_minus,
    safe_sqrt,
    squared_magnitude,
)
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.moments.first import corrections, first_moment
from adaptive_jax._src.transforms.moments.second import SecondMomentState, real_zeros_like


def _needs_first_moment(updates: Any, block: str) -> Moments:
    if not isinstance(updates, Moments) or updates.mu is updates.gradient:
        raise TypeError(
            f"{block} needs a first moment: place ema_of_gradients (or another first-moment "
            "block) before it in the chain"
        )
    return updates


class BeliefSecondMoment(Transform):
    r"""AdaBelief's second moment: the EMA of the gradient's squared prediction error.

    .. math::
       s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_t|^2 + \epsilon_{\text{root}}, \qquad s_0 = 0,

    with :math:`m_t` the first moment of the block before it.  :math:`\epsilon_{\text{root}}`
    is added inside the recursion (it accumulates in the state), as in the paper and
    ``optax.scale_by_belief``.  The step is large where the gradient is predictable
    (:math:`s_t` small), small where it is noisy.  Carries Adam's correction :math:`1-\beta_2^t`.

    Args:
        decay: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`.
        nu_dtype: dtype to store :math:`s_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_of_gradients(), aj.belief_second_moment(), aj.debias())
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 4)  # m_hat_1 = g
        2.0
        >>> round(moments.nu.item(), 4)  # s_hat_1 = (g - m_1)^2 = (b1 g)^2
        3.24

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020.
    """

    decay: PerParameter = hyperparameter(default=0.999, domain=DECAY_RATE)
    eps_root: Any = hyperparameter(default=1e-16, domain=EPSILON)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return SecondMomentState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        record = _needs_first_moment(updates, "belief_second_moment")
        decays = per_leaf(self.decay, count - 1, state.nu, "decay")

        def surprise(g, m, s, decay):
            error = g.astype(m.dtype) - m
            return ema(s, squared_magnitude(error, s.dtype), decay) + cast_like(self.eps_root, s)

        nu = map_params(
            surprise, record.gradient, record.mu, state.nu, names=("mu", "nu"), per_leaf=(decays,)
        )
        correction = per_leaf_tree(corrections(decays, count), nu)
        record = record._replace(
            nu=nu, nu_correction=correction, nu_decay=per_leaf_tree(decays, nu)
        )
        return record, SecondMomentState(nu)


def _magnitude(g: jax.Array) -> jax.Array:
    """:math:`|g|` for real or complex ``g``, with derivative 0 (not NaN) at ``g = 0``."""
    if jnp.iscomplexobj(g):
        return safe_sqrt(squared_magnitude(g))
    return jnp.abs(g)


def infinity_norm_step(g: jax.Array, u: jax.Array, decay: Any, eps: Any) -> jax.Array:
    r"""Adamax's recursion for one leaf: :math:`\max(\beta_2 u_{t-1}, |g_t| + \epsilon)` in ``u``'s dtype."""
    magnitude = _magnitude(g).astype(u.dtype) + cast_like(eps, u)
    return jnp.maximum(cast_like(decay, u) * u, magnitude)


class InfinityNormSecondMoment(Transform):
    r"""Adamax's scale: an exponentially weighted infinity norm of the gradients.

    .. math::
       u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon), \qquad u_0 = 0 .

    :math:`u_t` is the :math:`p\to\infty` limit of Adam's :math:`v_t^{1/p}`; it is not
    biased towards zero, so the record carries no correction for it.  The record's
    second moment is :math:`u_t^2` (squared in at least float32), so that
    ``precondition(eps=0)`` gives :math:`\hat m_t / u_t` (:math:`\sqrt{u^2} = u` exactly
    in binary floating point, barring underflow).  ``eps`` sits inside the maximum: the
    placement of both ``torch.optim.Adamax`` and ``optax.scale_by_adamax``.  Use it to
    hand :math:`u_t` on as a second moment (to ``amsgrad_max``, another preconditioner);
    :func:`~adaptive_jax.adamax` itself divides by :math:`u_t` directly, without the square
    and the root (:class:`~adaptive_jax.infinity_norm_precondition`: the same numbers).

    Args:
        decay: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.
        eps: :math:`\epsilon \ge 0`, added to :math:`|g_t|`.
        nu_dtype: dtype to store :math:`u_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.infinity_norm_second_moment(decay=0.5, eps=0.0)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (4.0, 1.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> round(state.inner.nu.item(), 4)  # u_2 = max(0.5 * 4, |1|)
        2.0
        >>> round(moments.nu.item(), 4)  # the record carries u_2^2
        4.0

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """

    decay: PerParameter = hyperparameter(default=0.999, domain=DECAY_RATE)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return SecondMomentState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        decays = per_leaf(self.decay, count - 1, state.nu, "decay")
        u = map_params(
            lambda g, u, decay: infinity_norm_step(g, u, decay, self.eps),
            record.gradient,
            state.nu,
            names=("nu",),
            per_leaf=(decays,),
        )
        squared = jax.tree_util.tree_map(lambda x: x.astype(compute_dtype(x)) ** 2, u)
        return record._replace(nu=squared, nu_correction=1.0), SecondMomentState(u)


class YogiMomentsState(NamedTuple):
    """State of :class:`yogi_moments`: the first and second moments."""

    mu: PyTree
    nu: PyTree


class YogiMoments(Transform):
    r"""Yogi's moments: Adam's first moment and an additive second moment.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2 .

    :math:`v_t` moves towards :math:`g_t^2` by at most :math:`(1-\beta_2) g_t^2` per
    step, so the effective learning rate cannot jump up when gradients suddenly
    shrink (Adam's :math:`v_t` decays multiplicatively).  *Both* moments start at
    ``initial_accumulator_value`` and are bias-corrected as Adam's, as in
    ``optax.scale_by_yogi`` — which is why Yogi swaps both of Adam's moment blocks
    for this one.

    Args:
        b1: :math:`\beta_1` in :math:`[0, 1)`, or a per-parameter tree of them.
        b2: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.
        initial_accumulator_value: :math:`m_0 = v_0 \ge 0`.
        mu_dtype, nu_dtype: dtypes to store the moments in (default: the parameters').

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

    b1: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    b2: PerParameter = hyperparameter(default=0.999, domain=DECAY_RATE)
    initial_accumulator_value: Any = hyperparameter(default=1e-6, domain=NONNEGATIVE)
    mu_dtype: Any = static(default=None)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        def full(tree):
            return jax.tree_util.tree_map(
                lambda z: z + cast_like(self.initial_accumulator_value, z), tree
            )

        return YogiMomentsState(
            full(zeros_like(params, self.mu_dtype)), full(real_zeros_like(params, self.nu_dtype))
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "yogi_moments")
        b1s, b2s = per_leaf(self.b1, count - 1, updates), per_leaf(self.b2, count - 1, updates)
        mu = first_moment(updates, state.mu, b1s)

        def additive(g, v, b2):
            square = squared_magnitude(g, v.dtype)
            return v - one_minus(b2, v.dtype) * jnp.sign(v - square) * square

        nu = map_params(additive, updates, state.nu, names=("nu",), per_leaf=(b2s,))
        record = Moments(
            updates,
            mu,
            nu,
            per_leaf_tree(corrections(b1s, count), updates),
            per_leaf_tree(corrections(b2s, count), updates),
            per_leaf_tree(b2s, updates),
        )
        return record, YogiMomentsState(mu, nu)


belief_second_moment = BeliefSecondMoment
infinity_norm_second_moment = InfinityNormSecondMoment
yogi_moments = YogiMoments
