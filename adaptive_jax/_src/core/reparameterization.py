r"""Bijections between the real line and a hyperparameter's valid range, for meta-learning.

Gradient steps on a raw :math:`\beta_2 = 0.999` or :math:`\epsilon = 10^{-8}` leave the
valid range after one bad step and make steps of the wrong scale.  Meta-optimising an
unconstrained :math:`z` with :math:`\lambda = c(z)` instead keeps every value valid and
makes equal steps in :math:`z` equal *relative* changes.  Each hyperparameter's
:class:`~adaptive_jax.extend.Domain` names its reparameterisation:

==================  ===================================  =====================
name                constrain :math:`c(z)`               range
==================  ===================================  =====================
``log``             :math:`e^{z}`                        :math:`(0,\infty)`
``log_one_minus``   :math:`1 - \sigma(z)`                :math:`(0, 1)`
``softplus``        :math:`\log(1 + e^{z})`              :math:`(0,\infty)`
``log_above_one``   :math:`1 + e^{z}`                    :math:`(1,\infty)`
``identity``        :math:`z`                            :math:`\mathbb{R}`
==================  ===================================  =====================

For :math:`\beta` near 1, :math:`z = \log(1-\beta) - \log\beta \approx \log(1-\beta)`:
the log-of-one-minus parameterisation of learned_optimization's ``LearnableAdam``
(Metz et al.), with the :math:`-\log\beta` term keeping :math:`\beta > 0` for every
:math:`z` (values are clamped one ulp inside :math:`(0,1)`, where float rounding would
reach an end point).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Reparameterization:
    """A bijection between an unconstrained real line and a hyperparameter's valid range."""

    name: str
    constrain: Callable[[jax.Array], jax.Array]
    unconstrain: Callable[[jax.Array], jax.Array]

    def __repr__(self) -> str:
        return f"Reparameterization({self.name!r})"


def _below_one(x: jax.Array) -> jax.Array:
    """``x`` clamped into ``(0, 1)``: at most the largest float below 1, at least the tiniest."""
    one = jnp.ones_like(x)
    tiny = jnp.full_like(x, jnp.finfo(x.dtype).tiny)
    return jnp.clip(x, tiny, jnp.nextafter(one, jnp.zeros_like(x)))


def _one_minus_sigmoid(z: jax.Array) -> jax.Array:
    return _below_one(jax.nn.sigmoid(-z))


def _log_one_minus_over(beta: jax.Array) -> jax.Array:
    return jnp.log1p(-beta) - jnp.log(beta)


def _softplus_inverse(x: jax.Array) -> jax.Array:
    # log(e^x - 1), written to stay accurate for large x.
    return x + jnp.log(-jnp.expm1(-x))


def _one_plus_exp(z: jax.Array) -> jax.Array:
    # At least one ulp above 1, where 1 + e^z rounds to 1 for very negative z.
    one = jnp.ones_like(z)
    return jnp.maximum(one + jnp.exp(z), jnp.nextafter(one, 2 * one))


#: :math:`\lambda = e^{z}`, for values in :math:`(0, \infty)` (learning rates, epsilons).
LOG = Reparameterization("log", jnp.exp, jnp.log)
#: :math:`\lambda = 1 - \sigma(z)`, for values in :math:`(0, 1)` (decay rates).
LOG_ONE_MINUS = Reparameterization("log_one_minus", _one_minus_sigmoid, _log_one_minus_over)
#: :math:`\lambda = \log(1 + e^{z})`, for non-negative values (weight decays).
SOFTPLUS = Reparameterization("softplus", jax.nn.softplus, _softplus_inverse)
#: :math:`\lambda = 1 + e^{z}`, for factors above 1 (Rprop's step increase).
LOG_ABOVE_ONE = Reparameterization("log_above_one", _one_plus_exp, lambda x: jnp.log(x - 1))
#: :math:`\lambda = z`, for values on the whole real line.
IDENTITY = Reparameterization("identity", lambda z: z, lambda x: x)
