r"""MADGRAD: momentumized, adaptive, dual-averaged gradient steps (Defazio & Jelassi 2021)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import EPSILON, Domain, value_at
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, compute_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import LOG, LOG_ONE_MINUS
from adaptive_jax._src.core.trees import check_same_structure, map_params, zeros_like

MADGRAD_LEARNING_RATE = Domain("a learning rate", schedule=True, reparameterization=LOG)
MOMENTUM = Domain("a decay rate", 0.0, 1.0, reparameterization=LOG_ONE_MINUS)


def _cube_root(x: jax.Array) -> jax.Array:
    """:math:`x^{1/3}` for :math:`x \\ge 0`, with derivative 0 (not inf) at :math:`x = 0`."""
    positive = x > 0
    return jnp.where(positive, jnp.cbrt(jnp.where(positive, x, jnp.ones_like(x))), 0)


class MadgradState(NamedTuple):
    """State of :class:`scale_by_madgrad`: :math:`\\sum\\lambda_k g_k^2`, :math:`\\sum\\lambda_k g_k`, :math:`x_0`."""

    grad_sum_sq: Any
    s: Any
    x0: Any


class ScaleByMadgrad(Transform):
    r"""MADGRAD's step: a cube-root-scaled dual average, then momentum by interpolation.

    .. math::
       \lambda_t = (\gamma_t + \epsilon)\sqrt t, \quad
       G_t = G_{t-1} + \lambda_t g_t^2, \quad s_t = s_{t-1} + \lambda_t g_t,

    .. math::
       z_t = x_0 - \frac{s_t}{G_t^{1/3} + \epsilon}, \qquad
       x_{t+1} = (1-\mu)\, z_t + \mu\, x_t, \qquad u_t = x_{t+1} - x_t .

    The learning rate enters the weights :math:`\lambda_t` (dual averaging), so it is a
    field of this block rather than a separate ``scale_by_learning_rate``.  The numbers
    of ``optax.contrib.scale_by_madgrad`` except that optax computes :math:`\sqrt t` in
    float32 whatever the parameters' precision (relative differences ~1e-8 in float64).
    The cube root's derivative at :math:`G = 0` is taken as 0, so a parameter whose
    gradient is always 0 has finite meta-gradients (optax's are NaN).

    Args:
        learning_rate: :math:`\gamma`, a number or a schedule of the 0-based step.
        momentum: :math:`\mu` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_madgrad(0.1, momentum=0.0, eps=0.0)
        >>> params = jnp.array([1.0])
        >>> updates, _ = tx.update(jnp.array([8.0]), tx.init(params), params)
        >>> round(updates.item(), 5)  # -0.1 * 8 / (0.1 * 64) ** (1/3)
        -0.43089

    Reference: Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized,
    Adaptive, Dual Averaged Gradient Method for Stochastic Optimization", JMLR 2022.
    """

    learning_rate: Any = hyperparameter(domain=MADGRAD_LEARNING_RATE)
    momentum: Any = hyperparameter(default=0.9, domain=MOMENTUM)
    eps: Any = hyperparameter(default=1e-6, domain=EPSILON)

    def init_state(self, params):
        copy = jax.tree_util.tree_map(jnp.array, params)
        return MadgradState(zeros_like(params), zeros_like(params), copy)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_madgrad")
        if params is None:
            raise ValueError(
                "scale_by_madgrad needs the parameters: call update(grads, state, params)"
            )
        check_same_structure(state.x0, params, "x0", "params")
        rate = jnp.asarray(value_at(self.learning_rate, count - 1, "learning_rate"))
        dtype = compute_dtype(rate)
        weight = (rate.astype(dtype) + cast_like(self.eps, jnp.zeros([], dtype))) * jnp.sqrt(
            count.astype(dtype)
        )
        grad_sum_sq = map_params(
            lambda g, G: G + (cast_like(weight, g) * g * g).astype(G.dtype),
            updates,
            state.grad_sum_sq,
            names=("grad_sum_sq",),
        )
        s = map_params(
            lambda g, s: s + (cast_like(weight, g) * g).astype(s.dtype),
            updates,
            state.s,
            names=("s",),
        )

        def step(x, x0, s, G):
            z = x0 - s / (_cube_root(G) + cast_like(self.eps, G))
            mu = cast_like(self.momentum, x)
            return ((1 - mu) * z.astype(x.dtype) + mu * x) - x

        out = map_params(step, params, state.x0, s, grad_sum_sq, names=("x0", "s", "grad_sum_sq"))
        return out, MadgradState(grad_sum_sq, s, state.x0)


scale_by_madgrad = ScaleByMadgrad
