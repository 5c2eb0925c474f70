r"""Direction-only methods: sign descent and normalized gradient descent."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.momentum import trace
from adaptive_jax._src.transforms.scaling import (
    normalize_by_global_norm,
    scale_by_learning_rate,
    scale_by_sign,
)


@checks_arguments_by_name
def sign_descent(learning_rate: PerParameter, momentum: PerParameter | None = None) -> Chain:
    r"""Sign descent: :math:`\theta \leftarrow \theta - \alpha\,\mathrm{sign}(g)` (signSGD; with momentum, signum).

    The :math:`\beta_1=\beta_2=0,\ \epsilon\to0` limit of Adam.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        momentum: momentum :math:`\mu` in :math:`[0, 1)` before the sign (signum), or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sign_descent(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, -0.002]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]
        [-0.1, 0.1]

    Reference: Bernstein et al., "signSGD", ICML 2018.
    """
    if momentum is None:
        return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))
    return aliased_chain(
        trace(momentum),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
        aliases={"momentum": "transforms[0].decay"},
    )


@checks_arguments_by_name
def normalized_gd(learning_rate: PerParameter, eps: Any = 0.0) -> Chain:
    r"""Normalized gradient descent: :math:`\theta \leftarrow \theta - \eta\, g/\|g\|_2`.

    Every step has length :math:`\eta`; with a constant rate it never settles at the
    minimum (use a decaying schedule for ``learning_rate``).

    Args:
        learning_rate: :math:`\eta`: a number, a schedule (decaying, to converge), or a tree.
        eps: :math:`\epsilon \ge 0`, added to the norm.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.normalized_gd(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]  # length 0.1, whatever the gradient's size
        [-0.06, -0.08]
    """
    return chain(normalize_by_global_norm(eps), scale_by_learning_rate(learning_rate))
