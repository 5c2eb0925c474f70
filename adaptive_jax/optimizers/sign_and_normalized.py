r"""Direction-only methods: sign descent and normalized gradient descent."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.core.validation import check_decay
from adaptive_jax.transforms.momentum import trace
from adaptive_jax.transforms.scaling import (
    normalize_by_global_norm,
    scale_by_learning_rate,
    scale_by_sign,
)


def sign_descent(learning_rate: Any, momentum: Any = None) -> Chain:
    r"""Sign descent: :math:`\theta \leftarrow \theta - \alpha\,\mathrm{sign}(g)` (signSGD; with momentum, signum).

    The :math:`\beta_1=\beta_2=0,\ \epsilon\to0` limit of Adam.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sign_descent(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, -0.002]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]
        [-0.1, 0.1]

    Reference: Bernstein et al., "signSGD", ICML 2018.
    """
    if momentum is not None:
        check_decay("momentum", momentum)
    steps = [] if momentum is None else [trace(momentum)]
    return chain(*steps, scale_by_sign(), scale_by_learning_rate(learning_rate))


def normalized_gd(learning_rate: Any, eps: Any = 0.0) -> Chain:
    r"""Normalized gradient descent: :math:`\theta \leftarrow \theta - \eta\, g/\|g\|_2`.

    Every step has length :math:`\eta`; with a constant rate it never settles at the
    minimum (use a decaying schedule for ``learning_rate``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.normalized_gd(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]  # length 0.1, whatever the gradient's size
        [-0.06, -0.08]
    """
    return chain(normalize_by_global_norm(eps), scale_by_learning_rate(learning_rate))
