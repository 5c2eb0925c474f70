r"""Diagonal preconditioning: divide the first moment by the root of the second.

.. math:: u_t = \frac{m_t}{\sqrt{v_t + \epsilon_{\text{root}}} + \epsilon}

This is the step shared by Adagrad, RMSProp and Adam: a diagonal metric
:math:`G_t = \mathrm{diag}(\sqrt{v_t}+\epsilon)` that shrinks steps along directions
with large past gradients.  :math:`\epsilon` floors the denominator (it keeps the
step finite when :math:`g^2` underflows to 0 in float16); :math:`\epsilon_{\text{root}}`
moves it under the root.  :func:`scale_by_adam`, :func:`scale_by_rms` and
:func:`scale_by_adagrad` are optax's names for the three classic directions, each a
chain of moment blocks ending in :class:`precondition`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import EPSILON, PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_moments
from adaptive_jax._src.core.numerics import as_dtype, once, widest_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params
from adaptive_jax._src.transforms.moments.corrections import debias
from adaptive_jax._src.transforms.moments.first import ema_of_gradients
from adaptive_jax._src.transforms.moments.second import accumulate_squares, ema_of_squares


def _denominator_at_zero(eps: Any, dtype: np.dtype) -> jax.Array:
    """The denominator where :math:`v + \\epsilon_r = 0`: :math:`\\epsilon`, or 1 if it is 0 too."""
    eps = as_dtype(eps, dtype)
    return jnp.where(eps == 0, jnp.ones_like(eps), eps)


def preconditioned(m: jax.Array, v: jax.Array, eps: Any, eps_root: Any) -> jax.Array:
    r""":math:`m / (\sqrt{v + \epsilon_r} + \epsilon)` for one leaf; ``m`` where that denominator is 0.

    Divides in at least float32 (``eps = 1e-8`` is 0 in float16, which made ``g = 0``
    give 0/0).  Where :math:`x = v + \epsilon_r` is exactly 0 (a parameter that has never
    received a gradient) the denominator is :math:`\epsilon`, or 1 if :math:`\epsilon = 0`
    too, so the step is ``m`` (0 there, in Adam), not 0/0, and its derivative in
    :math:`x` is 0, as :func:`~adaptive_jax.extend.safe_sqrt`'s.  NaN stays NaN.

    Per element this is one comparison and two selects: the denominator at zero (a
    scalar computed once per step) also stands in for :math:`x` under the root there, so
    that JAX's own derivative of the root is finite as well (forward-over-reverse through
    ``lax.scan`` differentiates it with JAX's rules, see ``safe_sqrt``).  Elsewhere the
    arithmetic is exactly :math:`m / (\sqrt{x} + \epsilon)`.
    """
    wide = widest_dtype(m.dtype, v.dtype, jnp.float32)
    real = jnp.finfo(wide).dtype
    x = v.astype(real) + as_dtype(eps_root, real)
    at_zero = x == jnp.zeros_like(x)
    fallback = jnp.broadcast_to(once(_denominator_at_zero, eps, real), x.shape)
    root = jnp.sqrt(jnp.where(at_zero, fallback, x))
    denominator = jnp.where(at_zero, fallback, root + as_dtype(eps, real))
    return (m.astype(wide) / denominator.astype(wide)).astype(m.dtype)


class Precondition(Transform):
    r"""Turn a :class:`~adaptive_jax.extend.Moments` record into the update :math:`m/(\sqrt{v+\epsilon_r}+\epsilon)`.

    The square root's derivative is taken as 0 where :math:`v + \epsilon_r = 0`
    (see :func:`~adaptive_jax.extend.safe_sqrt`), so meta-gradients stay finite
    for parameters that have never received a gradient.  Where the denominator is exactly
    0 (:math:`v = \epsilon = \epsilon_r = 0`) it is taken to be 1, so the step is
    :math:`m` (0 there in Adam: no gradient yet), not 0/0; the division runs in at least
    float32, so float16 moments with the default :math:`\epsilon` stay finite.

    Args:
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.

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

    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    eps_root: Any = hyperparameter(default=0.0, domain=EPSILON)

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "precondition")
        step = map_params(
            lambda m, v: preconditioned(m, v, self.eps, self.eps_root),
            moments.mu,
            moments.nu,
            names=("nu",),
        )
        return step, state


precondition = Precondition


@checks_arguments_by_name
def scale_by_adam(
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    r"""Adam's direction :math:`\hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)` (optax's name).

    The chain ``ema_of_gradients(b1) → ema_of_squares(b2) → debias() → precondition(eps,
    eps_root)``; ``b1`` and ``b2`` are found by those names.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_adam()
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]  # first step: m_hat / sqrt(v_hat) = g / |g|
        [1.0, -1.0]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return aliased_chain(
        ema_of_gradients(b1, mu_dtype),
        ema_of_squares(b2, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        aliases={"b1": "transforms[0].decay", "b2": "transforms[1].decay"},
    )


@checks_arguments_by_name
def scale_by_rms(
    decay: PerParameter = 0.9, eps: Any = 1e-8, eps_root: Any = 0.0, nu_dtype: Any = None
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


@checks_arguments_by_name
def scale_by_adagrad(
    eps: Any = 1e-10,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 0.0,
    nu_dtype: Any = None,
) -> Chain:
    r"""Adagrad's direction :math:`g_t / (\sqrt{G_t + \epsilon_r} + \epsilon)`, :math:`G_t = G_0 + \sum_{k\le t} g_k^2`.

    The chain ``accumulate_squares(initial_accumulator_value) → precondition(eps, eps_root)``.

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
