r"""Which hyperparameters of a transformation are meta-learned, and in which coordinates.

:class:`Learned` picks hyperparameters of a starting transformation by the names
:func:`~adaptive_jax.get_hyperparameter` accepts (``"learning_rate"``, ``"b1"``, a path),
freezes every other one at its value, and maps the picked ones to unconstrained
coordinates :math:`z` through their declared reparameterisations
(:mod:`adaptive_jax.meta` ``to_unconstrained``):

.. math:: z = \{\text{name}: c^{-1}(\lambda_\text{name})\}, \qquad
          \mathrm{tx}(z) = \mathrm{tx}_0 \text{ with } \lambda_\text{name} = c(z_\text{name}).

:func:`~adaptive_jax.meta.meta_train` optimizes :math:`z`; every :math:`\mathrm{tx}(z)` is
valid by construction (with ``reparameterize=False`` the raw values are learned and an
outer step that leaves a hyperparameter's range is rejected).  A hyperparameter holding
a schedule is learned through the schedule's own numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.inspect import (
    _find,
    _path_string,
    _replace_at_path,
    _value_at_path,
    walk,
)
from adaptive_jax._src.core.module import Module
from adaptive_jax._src.core.reparameterization import IDENTITY, Reparameterization
from adaptive_jax._src.meta.hypergradient import is_differentiable
from adaptive_jax._src.meta.reparam import reparameterizations


class Learned:
    """The learned hyperparameters of ``base``: ``encode(tx) -> z`` and ``decode(z) -> tx``.

    Args:
        base: the starting transformation; hyperparameters not in ``names`` keep its values.
        names: the hyperparameters to learn (names or paths); ``None``: every numeric one.
        reparameterize: learn unconstrained coordinates (default) or the raw values.

    Raises:
        HyperparameterLookupError: a name that is not a hyperparameter of ``base``.

    Example:
        >>> import adaptive_jax as aj
        >>> learned = aj.meta.Learned(aj.adam(1e-3), ["learning_rate", "b1"])
        >>> z = learned.encode(learned.base)
        >>> sorted(z), round(float(z["learning_rate"]), 4)  # log(1e-3)
        (['b1', 'learning_rate'], -6.9078)
        >>> tx = learned.decode({"learning_rate": z["learning_rate"] + 1.0, "b1": z["b1"]})
        >>> round(float(aj.get_hyperparameter(tx, "learning_rate")), 6)  # e * 1e-3
        0.002718
    """

    def __init__(self, base: Any, names: Sequence[str] | None = None, reparameterize: bool = True):
        self.base = base
        if names is None:
            names = [_path_string(p) for p, value, _ in walk(base) if not isinstance(value, Module)]
        if isinstance(names, str):
            raise TypeError(f"learn must be a list of names, got the string {names!r}")
        self.names = tuple(names)
        self.paths = {name: _find(base, name) for name in self.names}
        self.rules: dict[str, Reparameterization] = (
            reparameterizations(base) if reparameterize else {}
        )

    def _map(self, value: Any, path: tuple, direction: str) -> Any:
        prefix = _path_string(path)

        def leaf(inner, x):
            rule = self.rules.get(prefix + jax.tree_util.keystr(inner), IDENTITY)
            if not is_differentiable(x):
                return x
            x = jnp.asarray(
                x, dtype=jnp.result_type(float) if isinstance(x, (int, float)) else None
            )
            return rule.unconstrain(x) if direction == "encode" else rule.constrain(x)

        return jax.tree_util.tree_map_with_path(leaf, value)

    def encode(self, tx: Any) -> dict[str, Any]:
        """The learned coordinates of ``tx``'s picked hyperparameters."""
        return {
            name: self._map(_value_at_path(tx, path), path, "encode")
            for name, path in self.paths.items()
        }

    def decode(self, z: dict[str, Any]) -> Any:
        """``base`` with the picked hyperparameters set from ``z`` (validated when concrete)."""
        tx = self.base
        for name, path in self.paths.items():
            tx = _replace_at_path(tx, path, self._map(z[name], path, "decode"))
        return tx

    def decoder(self) -> Callable[[dict[str, Any]], Any]:
        """:meth:`decode` as a plain function (configuration of a compiled program)."""
        return self.decode
