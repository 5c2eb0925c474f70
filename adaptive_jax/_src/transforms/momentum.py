r"""Momentum: heavy ball, Nesterov, an EMA of the updates, Lion's two-rate momentum, optimism.

* :class:`trace` — heavy ball :math:`b_t = \mu b_{t-1} + g_t` (and Nesterov's look-ahead);
* :class:`ema_of_updates` — :math:`m_t = \beta m_{t-1} + (1-\beta) u_t` of whatever
  reaches it (SM3's momentum on the preconditioned step), without bias correction;
* :class:`lion_momentum` — Lion's interpolated step and slower memory;
* :class:`scale_by_optimistic_gradient` — optimistic (negative) momentum
  :math:`(\alpha+\beta) g_t - \beta g_{t-1}` for games.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, REAL, PerParameter, per_leaf
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


class EmaOfUpdatesState(NamedTuple):
    """State of :class:`ema_of_updates`: :math:`m_t`."""

    ema: Any


class EmaOfUpdates(Transform):
    r"""An EMA of the updates, handed on as the update: :math:`m_t = \beta m_{t-1} + (1-\beta) u_t`.

    :math:`m_0 = 0` and no bias correction (``optax.ema(decay, debias=False)``).  After
    a preconditioner it is momentum on the preconditioned step (SM3's); on raw gradients
    it is :class:`trace` scaled by :math:`1-\beta`.  For Adam's bias-corrected first
    moment use :class:`~adaptive_jax.ema_of_gradients` and :class:`~adaptive_jax.debias`.

    Args:
        decay: :math:`\beta` in :math:`[0, 1)`, or a per-parameter tree.
        nesterov: hand on the look-ahead :math:`\beta m_t + (1-\beta) u_t` instead of
            :math:`m_t` (ADOPT's Nesterov variant).
        accumulator_dtype: dtype to store :math:`m_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_of_updates(decay=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> for u in (2.0, 4.0):
        ...     out, state = tx.update(jnp.array([u]), state)
        >>> out.item()  # 0.5 * (0.5 * 2) + 0.5 * 4
        2.5
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    nesterov: bool = static(default=False)
    accumulator_dtype: Any = static(default=None)

    def init_state(self, params):
        return EmaOfUpdatesState(zeros_like(params, self.accumulator_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_of_updates")
        decays = per_leaf(self.decay, count - 1, updates, "decay")
        new = map_params(
            lambda u, m, b: ema(m, u, b), updates, state.ema, names=("ema",), per_leaf=(decays,)
        )
        if self.nesterov:
            out = map_params(
                lambda u, m, b: ema(m, u, b).astype(u.dtype),
                updates,
                new,
                names=("ema",),
                per_leaf=(decays,),
            )
        else:
            out = map_params(lambda u, m: m.astype(u.dtype), updates, new, names=("ema",))
        return out, EmaOfUpdatesState(new)


class ScaleByOptimisticGradientState(NamedTuple):
    """State of :class:`scale_by_optimistic_gradient`: the previous gradient :math:`g_{t-1}`."""

    previous_gradient: Any


class ScaleByOptimisticGradient(Transform):
    r"""Optimistic gradient: :math:`u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1}`, :math:`g_0 := g_1`.

    :math:`\alpha g_t + \beta(g_t - g_{t-1})`: the gradient plus a guess of its next
    change (negative momentum).  With a learning rate after it this is optimistic
    gradient descent, which converges in the last iterate on bilinear games where
    gradient descent-ascent cycles or spirals out.  The first step has no previous
    gradient and uses :math:`g_1` (:math:`u_1 = \alpha g_1`), as
    ``optax.scale_by_optimistic_gradient`` does, whose numbers these are.

    Args:
        alpha: :math:`\alpha`, a finite number, a schedule or a per-parameter tree.
        beta: :math:`\beta`, likewise, or ``None`` for the same value as ``alpha``
            (``optimistic_adam``'s default optimism).
        accumulator_dtype: dtype to store :math:`g_{t-1}` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_optimistic_gradient(alpha=1.0, beta=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (2.0, 3.0):
        ...     out, state = tx.update(jnp.array([g]), state)
        >>> out.item()  # 1.5 * 3 - 0.5 * 2
        3.5

    Reference: Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and
    Optimistic Gradient Methods for Saddle Point Problems: Proximal Point Approach",
    AISTATS 2020; Daskalakis et al., "Training GANs with Optimism", ICLR 2018.
    """

    alpha: PerParameter = hyperparameter(default=1.0, domain=REAL)
    beta: PerParameter = hyperparameter(default=1.0, domain=REAL, optional=True)
    accumulator_dtype: Any = static(default=None)

    def init_state(self, params):
        return ScaleByOptimisticGradientState(zeros_like(params, self.accumulator_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_optimistic_gradient")
        alphas = per_leaf(self.alpha, count - 1, updates, "alpha")
        beta = self.alpha if self.beta is None else self.beta
        betas = per_leaf(beta, count - 1, updates, "beta")
        first_step = count == 1

        def optimistic(g, previous, a, b):
            previous = jnp.where(first_step, g, previous.astype(g.dtype))
            a, b = cast_like(a, g), cast_like(b, g)
            return (a + b) * g - b * previous

        out = map_params(
            optimistic,
            updates,
            state.previous_gradient,
            names=("previous_gradient",),
            per_leaf=(alphas, betas),
        )
        # Stored in the state's dtype (the parameters'), whatever precision reaches it.
        kept = map_params(
            lambda g, previous: g.astype(previous.dtype),
            updates,
            state.previous_gradient,
            names=("previous_gradient",),
        )
        return out, ScaleByOptimisticGradientState(kept)


trace = Trace
ema_of_updates = EmaOfUpdates
lion_momentum = LionMomentum
scale_by_optimistic_gradient = ScaleByOptimisticGradient
