r"""Reparameterisations that keep hyperparameters valid while they are meta-optimised.

Gradient steps on a raw :math:`\beta_2 = 0.999` or :math:`\epsilon = 10^{-8}` leave the
valid range after one bad step and make steps of the wrong scale.  Meta-optimising an
unconstrained :math:`z` with :math:`\lambda = c(z)` instead keeps every value valid and
makes equal steps in :math:`z` equal *relative* changes.

Each hyperparameter's reparameterisation is the one its declaration names
(:class:`~adaptive_jax.extend.Domain`): learning rates, :math:`\epsilon`
and other positive scales are log-parameterised, decay rates :math:`\beta` use
:math:`1-\sigma(z)` (:math:`z \approx \log(1-\beta)` near 1), weight decays and
accumulator starts use softplus, and anything unbounded (a schedule's values) is left
as is — see :mod:`adaptive_jax._src.core.reparameterization`.  A hyperparameter nobody
declared cannot exist, so none is silently left unconstrained.  ``overrides`` replace
the rule for chosen hyperparameters, found by any name
:func:`~adaptive_jax.get_hyperparameter` accepts (``"b2"``, a field name, a path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.inspect import _find, _path_string, walk
from adaptive_jax._src.core.module import Module
from adaptive_jax._src.core.reparameterization import (
    IDENTITY,
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    Reparameterization,
)
from adaptive_jax._src.meta.hypergradient import is_differentiable

__all__ = [
    "IDENTITY",
    "LOG",
    "LOG_ONE_MINUS",
    "SOFTPLUS",
    "Reparameterization",
    "from_unconstrained",
    "reparameterizations",
    "to_unconstrained",
]


def reparameterizations(
    tx: Any, overrides: Mapping[str, Reparameterization] | None = None
) -> dict[str, Reparameterization]:
    """The reparameterisation of every numeric leaf of ``tx``'s hyperparameters, by leaf path.

    Example:
        >>> import adaptive_jax as aj
        >>> rules = aj.meta.reparameterizations(aj.adam(1e-3))
        >>> {path: rule.name for path, rule in rules.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'transforms[0].decay': 'log_one_minus', 'transforms[1].decay': 'log_one_minus',
         'transforms[3].eps': 'log', 'transforms[3].eps_root': 'log',
         'transforms[4].learning_rate': 'log'}
    """
    chosen = {_path_string(_find(tx, name)): rule for name, rule in (overrides or {}).items()}
    rules: dict[str, Reparameterization] = {}
    for path, value, domain in walk(tx):
        if isinstance(value, Module):
            continue  # a schedule: its own hyperparameters are walked themselves
        field = _path_string(path)
        rule = chosen.get(field, domain.reparameterization)
        not_module = lambda x: isinstance(x, Module)  # noqa: E731
        for inner, leaf in jax.tree_util.tree_flatten_with_path(value, is_leaf=not_module)[0]:
            if not isinstance(leaf, Module) and is_differentiable(leaf):
                rules[field + jax.tree_util.keystr(inner)] = rule
    return rules


def to_unconstrained(tx: Any, overrides: Mapping[str, Reparameterization] | None = None) -> Any:
    r"""``tx`` with every hyperparameter :math:`\lambda` replaced by :math:`z = c^{-1}(\lambda)`.

    The result has ``tx``'s structure, so an outer optimizer can update it like any
    pytree; turn it back with :func:`from_unconstrained` (same ``overrides``).  A
    hyperparameter on the edge of its range (``eps_root = 0``) maps to
    :math:`\pm\infty`: override its rule (``{"eps_root": IDENTITY}``) or start it inside
    the range.

    Example:
        >>> import adaptive_jax as aj
        >>> z = aj.meta.to_unconstrained(aj.adam(1e-3, b2=0.999))
        >>> back = aj.meta.from_unconstrained(z)
        >>> b2, rate = (aj.get_hyperparameter(back, name) for name in ("b2", "learning_rate"))
        >>> round(float(b2), 6), round(float(rate), 6)
        (0.999, 0.001)
    """
    return _map(tx, overrides, lambda rule, x: rule.unconstrain(x))


def from_unconstrained(z: Any, overrides: Mapping[str, Reparameterization] | None = None) -> Any:
    r"""The transformation :math:`c(z)`: inverse of :func:`to_unconstrained` (same ``overrides``).

    Every hyperparameter it returns is in its valid range, whatever the values in ``z``.
    """
    return _map(z, overrides, lambda rule, x: rule.constrain(x))


def _map(
    tree: Any,
    overrides: Mapping[str, Reparameterization] | None,
    apply: Callable[[Reparameterization, jax.Array], jax.Array],
) -> Any:
    rules = reparameterizations(tree, overrides)

    def map_leaf(path, leaf):
        rule = rules.get(_path_string(path), IDENTITY)
        if rule is IDENTITY:
            return leaf
        x = jnp.asarray(leaf)
        if isinstance(leaf, (int, float)):
            x = x.astype(jnp.result_type(float))
        return apply(rule, x)

    return jax.tree_util.tree_map_with_path(map_leaf, tree)
