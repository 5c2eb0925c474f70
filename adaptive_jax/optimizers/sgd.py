"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.core.validation import check_decay
from adaptive_jax.transforms.momentum import trace
from adaptive_jax.transforms.scaling import scale_by_learning_rate


def sgd(learning_rate: Any, momentum: Any = None, nesterov: bool = False) -> Chain:
    r"""SGD: :math:`\theta \leftarrow \theta - \alpha g` or, with momentum :math:`\mu`,
    :math:`b \leftarrow \mu b + g,\ \theta \leftarrow \theta - \alpha b` (Nesterov: :math:`g + \mu b`).

    ``chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))``; the same
    numbers as ``torch.optim.SGD(lr, momentum, dampening=0, nesterov=nesterov)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sgd(0.1, momentum=0.9)
        >>> params = jnp.array([1.0])
        >>> state = tx.init(params)
        >>> updates, state = tx.update(2 * params, state, params)
        >>> updates.tolist()
        [-0.20000000298023224]
    """
    if momentum is None:
        if nesterov:
            raise ValueError("nesterov=True needs a momentum value")
        return chain(scale_by_learning_rate(learning_rate))
    check_decay("momentum", momentum)
    return chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))
