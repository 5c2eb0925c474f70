r"""Reparameterisations that keep hyperparameters valid while they are meta-optimised.

Gradient steps on a raw :math:`\beta_2 = 0.999` or :math:`\epsilon = 10^{-8}` leave the
valid range after one bad step and make steps of the wrong scale.  Meta-optimising an
unconstrained :math:`z` with :math:`\lambda = c(z)` instead keeps every value valid and
makes equal steps in :math:`z` equal *relative* changes:

================================= ========================================= ==================
hyperparameter (field name)       constrain :math:`c(z)`                    range
================================= ========================================= ==================
``learning_rate``                 :math:`e^{z}` (log learning rate)         :math:`(0,\infty)`
``b1``, ``b2``, ``decay``,        :math:`1 - \sigma(z)`, i.e.               :math:`(0, 1)`
``rho``                           :math:`z = \log(1-\beta) - \log\beta`
``eps``, ``eps_root``,            :math:`e^{z}` (log epsilon)               :math:`(0,\infty)`
``max_norm``,
``trust_coefficient``
``weight_decay``,                 :math:`\mathrm{softplus}(z)`              :math:`(0,\infty)`
``initial_accumulator_value``
anything else                     identity
================================= ========================================= ==================

For :math:`\beta` near 1, :math:`z = \log(1-\beta) - \log\beta \approx \log(1-\beta)`:
the log-of-one-minus parameterisation of learned_optimization's ``LearnableAdam``
(Metz et al.), with the :math:`-\log\beta` term keeping :math:`\beta > 0` for every
:math:`z` (values are clamped one ulp inside :math:`(0,1)`, where float rounding would
reach an end point).  ``momentum`` is a :func:`~adaptive_jax.trace`'s ``decay`` field.

Rules are looked up by the name of the dataclass field a leaf sits in (for a schedule
inside ``learning_rate``, that is the schedule's own field, e.g. ``init_value``, which
is left as is unless you add a rule for it).  Works with any transformation built from
pytree dataclasses: a leaf's name is its last attribute on its path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax.meta.hypergradient import is_differentiable


@dataclasses.dataclass(frozen=True)
class Reparameterization:
    """A bijection between an unconstrained real line and a hyperparameter's valid range."""

    name: str
    constrain: Callable[[jax.Array], jax.Array]
    unconstrain: Callable[[jax.Array], jax.Array]


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


LOG = Reparameterization("log", jnp.exp, jnp.log)
LOG_ONE_MINUS = Reparameterization("log_one_minus", _one_minus_sigmoid, _log_one_minus_over)
SOFTPLUS = Reparameterization("softplus", jax.nn.softplus, _softplus_inverse)
IDENTITY = Reparameterization("identity", lambda z: z, lambda x: x)

DEFAULT_RULES: Mapping[str, Reparameterization] = {
    "learning_rate": LOG,
    "b1": LOG_ONE_MINUS,
    "b2": LOG_ONE_MINUS,
    "decay": LOG_ONE_MINUS,
    "rho": LOG_ONE_MINUS,
    "eps": LOG,
    "eps_root": LOG,
    "max_norm": LOG,
    "trust_coefficient": LOG,
    "weight_decay": SOFTPLUS,
    "initial_accumulator_value": SOFTPLUS,
}


def to_unconstrained(tx: Any, rules: Mapping[str, Reparameterization] | None = None) -> Any:
    r"""``tx`` with every hyperparameter :math:`\lambda` replaced by :math:`z = c^{-1}(\lambda)`.

    The result has ``tx``'s structure, so an outer optimizer can update it like any
    pytree; turn it back with :func:`from_unconstrained`.  A hyperparameter that sits
    on the edge of its range (``eps_root = 0``) maps to :math:`\pm\infty`: leave such a
    field out of ``rules`` (e.g. ``{**DEFAULT_RULES, "eps_root": IDENTITY}``) or
    start it inside the range.

    Example:
        >>> import adaptive_jax as aj
        >>> z = aj.meta.to_unconstrained(aj.adam(1e-3, b2=0.999))
        >>> back = aj.meta.from_unconstrained(z)
        >>> b2, rate = (aj.get_hyperparameter(back, name) for name in ("b2", "learning_rate"))
        >>> round(float(b2), 6), round(float(rate), 6)
        (0.999, 0.001)
    """
    return _map_by_name(tx, rules, lambda rule, x: rule.unconstrain(x))


def from_unconstrained(z: Any, rules: Mapping[str, Reparameterization] | None = None) -> Any:
    r"""The transformation :math:`c(z)`: inverse of :func:`to_unconstrained` (same ``rules``).

    Every hyperparameter it returns is in its valid range, whatever the values in ``z``.
    """
    return _map_by_name(z, rules, lambda rule, x: rule.constrain(x))


def leaf_name(path: tuple[Any, ...]) -> str | None:
    """The last attribute name on a pytree key path (None if there is none)."""
    for key in reversed(path):
        if isinstance(key, jax.tree_util.GetAttrKey):
            return key.name
    return None


def _map_by_name(
    tree: Any,
    rules: Mapping[str, Reparameterization] | None,
    apply: Callable[[Reparameterization, jax.Array], jax.Array],
) -> Any:
    rules = DEFAULT_RULES if rules is None else rules

    def map_leaf(path, leaf):
        rule = rules.get(leaf_name(path) or "", IDENTITY)
        if rule is IDENTITY or not is_differentiable(leaf):
            return leaf
        x = jnp.asarray(leaf)
        if isinstance(leaf, (int, float)):
            x = x.astype(jnp.result_type(float))
        return apply(rule, x)

    return jax.tree_util.tree_map_with_path(map_leaf, tree)
