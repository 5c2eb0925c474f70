r"""Momentum: heavy ball, Nesterov, and Lion's two-rate momentum."""

from __future__ import annotations

from typing import Any, NamedTuple

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, ema
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params, zeros_like


class TraceState(NamedTuple):
    """State of :class:`trace`: the momentum buffer :math:`b_t` (optax's ``TraceState``)."""

    trace: Any


class Trace(Transform):
    r"""Momentum: :math:`b_t = \mu b_{t-1} + g_t`, update :math:`b_t` (or :math:`g_t + \mu b_t` with Nesterov).

    :math:`b_0 = 0`, so :math:`b_1 = g_1`: the same recursion as
    ``torch.optim.SGD(momentum=mu, dampening=0, nesterov=...)`` and ``optax.trace``.

    Args:
        decay: the momentum :math:`\mu` in :math:`[0, 1)`, or a per-parameter tree.
        nesterov: use Nesterov's look-ahead :math:`g_t + \mu b_t`.
        accumulator_dtype: dtype to store :math:`b_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.trace(decay=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.array([1.0]), state)
        >>> second, state = tx.update(jnp.array([1.0]), state)
        >>> round(first.item(), 6), round(second.item(), 6)  # b_1 = g_1, b_2 = 0.9 b_1 + g_2
        (1.0, 1.9)

    References: Polyak, "Some methods of speeding up the convergence of iteration
    methods", 1964; Sutskever et al., "On the importance of initialization and
    momentum in deep learning", ICML 2013.
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    nesterov: bool = static(default=False)
    accumulator_dtype: Any = static(default=None)

    def init_state(self, params):
        return TraceState(zeros_like(params, self.accumulator_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "trace")
        decays = per_leaf(self.decay, count - 1, updates)
        new_trace = map_params(
            lambda g, b, mu: cast_like(mu, b) * b + g.astype(b.dtype),
            updates,
            state.trace,
            names=("trace",),
            per_leaf=(decays,),
        )
        if self.nesterov:
            out = map_params(
                lambda g, b, mu: g + (cast_like(mu, b) * b).astype(g.dtype),
                updates,
                new_trace,
                names=("trace",),
                per_leaf=(decays,),
            )
        else:
            out = map_params(lambda g, b: b.astype(g.dtype), updates, new_trace, names=("trace",))
        return out, TraceState(new_trace)


class LionMomentumState(NamedTuple):
    """State of :class:`lion_momentum`: :math:`m_t`."""

    mu: Any


class LionMomentum(Transform):
    r"""Lion's two-rate momentum: output :math:`c_t`, remember :math:`m_t`.

    .. math::
       c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t, \qquad m_0 = 0 .

    Followed by ``scale_by_sign()`` it is Lion's direction :math:`\mathrm{sign}(c_t)`
    (``optax.scale_by_lion``).  With :math:`\beta_1 = \beta_2` it is an ordinary EMA
    of the gradient.

    Args:
        b1: :math:`\beta_1` in :math:`[0, 1)` (the step's interpolation), or a tree.
        b2: :math:`\beta_2` in :math:`[0, 1)` (the memory's decay), or a tree.
        mu_dtype: dtype to store :math:`m_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lion_momentum(b1=0.5, b2=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (2.0, 0.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(updates.item(), 4)  # c_2 = b1 m_1 = 0.5 * (1 - 0.9) * 2 (a b1-EMA would give 0.5)
        0.1

    Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """

    b1: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    b2: PerParameter = hyperparameter(default=0.99, domain=DECAY_RATE)
    mu_dtype: Any = static(default=None)

    def init_state(self, params):
        return LionMomentumState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "lion_momentum")
        previous = state.mu
        b1s, b2s = per_leaf(self.b1, count - 1, updates), per_leaf(self.b2, count - 1, updates)
        interpolated = map_params(
            lambda g, m, b: ema(m, g, b).astype(g.dtype),
            updates,
            previous,
            names=("mu",),
            per_leaf=(b1s,),
        )
        mu = map_params(
            lambda g, m, b: ema(m, g, b), updates, previous, names=("mu",), per_leaf=(b2s,)
        )
        return interpolated, LionMomentumState(mu)


class EmaMomentumState(NamedTuple):
    """State of :class:`ema_momentum`: :math:`m_t`."""

    mu: Any


class EmaMomentum(Transform):
    r"""An exponential moving average as the update: :math:`m_t = \beta m_{t-1} + (1-\beta) g_t`, :math:`m_0 = 0`.

    No bias correction (``optax.ema(decay, debias=False)``).  With ``nesterov`` the
    update is the look-ahead :math:`\beta m_t + (1-\beta) g_t` (ADOPT's Nesterov variant).

    Args:
        decay: :math:`\beta` in :math:`[0, 1)`, or a per-parameter tree of them.
        nesterov: hand on the look-ahead instead of :math:`m_t`.
        mu_dtype: dtype to store :math:`m_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_momentum(decay=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (2.0, 4.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> updates.item()  # m_1 = 1, m_2 = 0.5 + 2
        2.5
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    nesterov: bool = static(default=False)
    mu_dtype: Any = static(default=None)

    def init_state(self, params):
        return EmaMomentumState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_momentum")
        decays = per_leaf(self.decay, count - 1, updates, "decay")
        mu = map_params(
            lambda g, m, b: ema(m, g, b), updates, state.mu, names=("mu",), per_leaf=(decays,)
        )
        if self.nesterov:
            out = map_params(
                lambda g, m, b: ema(m, g, b).astype(g.dtype),
                updates,
                mu,
                names=("mu",),
                per_leaf=(decays,),
            )
        else:
            out = map_params(lambda g, m: m.astype(g.dtype), updates, mu, names=("mu",))
        return out, EmaMomentumState(mu)


trace = Trace
lion_momentum = LionMomentum
ema_momentum = EmaMomentum
