r"""Diagonal preconditioning: divide the first moment by the root of the second.

.. math:: u_t = \frac{m_t}{\sqrt{v_t + \epsilon_{\text{root}}} + \epsilon}

This is the step shared by Adagrad, RMSProp and Adam: a diagonal metric
:math:`G_t = \mathrm{diag}(\sqrt{v_t}+\epsilon)` that shrinks steps along directions
with large past gradients.  :math:`\epsilon` floors the denominator (it keeps the
step finite when :math:`g^2` underflows to 0 in float16); :math:`\epsilon_{\text{root}}`
moves it under the root.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.core.numerics import cast_like, safe_sqrt, widest_dtype
from adaptive_jax.core.protocol import Transform
from adaptive_jax.core.pytree import pytree_dataclass
from adaptive_jax.core.trees import map_params
from adaptive_jax.core.validation import check_nonnegative
from adaptive_jax.transforms.moments import (
    accumulate_squares,
    debias,
    ema_moments,
    ema_of_squares,
    expect_moments,
)


@pytree_dataclass
class Precondition(Transform):
    """See :func:`precondition`."""

    eps: Any = 1e-8
    eps_root: Any = 0.0

    def __post_init__(self):
        check_nonnegative("eps", self.eps)
        check_nonnegative("eps_root", self.eps_root)

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "precondition")

        def divide(m, v):
            # At least float32: eps = 1e-8 is 0 in float16, which made g = 0 give 0/0.
            wide = widest_dtype(m.dtype, v.dtype, jnp.float32)
            v = v.astype(jnp.finfo(wide).dtype)
            denominator = safe_sqrt(v + cast_like(self.eps_root, v)) + cast_like(self.eps, v)
            # m = v = 0 with eps = eps_root = 0 gives a zero step (the limit sign(0) = 0),
            # not 0/0; the inner `where` keeps the derivative finite there too.
            zero = denominator == 0  # NaN is not 0: a NaN denominator still gives NaN
            safe = jnp.where(zero, jnp.ones_like(denominator), denominator)
            step = jnp.where(zero, jnp.zeros([], wide), m.astype(wide) / safe.astype(wide))
            return step.astype(m.dtype)

        return map_params(divide, moments.mu, moments.nu, names=("nu",)), state


def precondition(eps: Any = 1e-8, eps_root: Any = 0.0) -> Precondition:
    r"""Turn :class:`~adaptive_jax.transforms.moments.Moments` into the update :math:`m/(\sqrt{v+\epsilon_r}+\epsilon)`.

    The square root's derivative is taken as 0 where :math:`v + \epsilon_r = 0`
    (see :func:`adaptive_jax.core.numerics.safe_sqrt`), so meta-gradients stay finite
    for parameters that have never received a gradient.  Where the denominator is exactly
    0 (:math:`v = \epsilon = \epsilon_r = 0`) the step is 0, and the division runs in at
    least float32, so float16 moments with the default :math:`\epsilon` stay finite.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.accumulate_squares(), aj.precondition(eps=0.0))
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (3.0, 4.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(updates.item(), 6)  # g_2 / sqrt(g_1^2 + g_2^2)
        0.8
    """
    return Precondition(eps, eps_root)


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    r"""Adam's direction :math:`\hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)`.

    The chain ``ema_moments(b1, b2) → debias() → precondition(eps, eps_root)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_adam()
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]  # first step: m_hat / sqrt(v_hat) = g / |g|
        [1.0, -1.0]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return chain(ema_moments(b1, b2, mu_dtype, nu_dtype), debias(), precondition(eps, eps_root))


def scale_by_rms(
    decay: Any = 0.9, eps: Any = 1e-8, eps_root: Any = 0.0, nu_dtype: Any = None
) -> Chain:
    r"""RMSProp's direction :math:`g_t / (\sqrt{v_t + \epsilon_r} + \epsilon)`, :math:`v_t = \rho v_{t-1} + (1-\rho) g_t^2`.

    The chain ``ema_of_squares(decay) → precondition(eps, eps_root)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_rms(decay=0.9)
        >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(updates.item(), 4)  # g / sqrt(0.1 g^2) = 1 / sqrt(0.1)
        3.1623

    Reference: Tieleman & Hinton, "Lecture 6.5 — RMSProp", Coursera 2012.
    """
    return chain(ema_of_squares(decay, nu_dtype), precondition(eps, eps_root))


def scale_by_adagrad(
    eps: Any = 1e-10,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 0.0,
    nu_dtype: Any = None,
) -> Chain:
    r"""Adagrad's direction :math:`g_t / (\sqrt{G_t + \epsilon_r} + \epsilon)`, :math:`G_t = \sum_{k\le t} g_k^2`.

    The chain ``accumulate_squares() → precondition(eps, eps_root)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_adagrad()
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (3.0, 4.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(updates.item(), 6)  # g_2 / sqrt(g_1^2 + g_2^2)
        0.8

    Reference: Duchi, Hazan & Singer, JMLR 2011.
    """
    return chain(
        accumulate_squares(initial_accumulator_value, nu_dtype), precondition(eps, eps_root)
    )
