"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.momentum import trace
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def sgd(
    learning_rate: PerParameter,
    momentum: PerParameter | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> Chain:
    r"""SGD: :math:`\theta \leftarrow \theta - \alpha g` or, with momentum :math:`\mu`,
    :math:`b \leftarrow \mu b + g,\ \theta \leftarrow \theta - \alpha b` (Nesterov: :math:`g + \mu b`).

    ``chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))``; the same
    numbers as ``torch.optim.SGD(lr, momentum, dampening=0, nesterov=nesterov)`` and
    ``optax.sgd``, with optax's arguments.  The momentum is found as ``"momentum"``.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        momentum: :math:`\mu` in :math:`[0, 1)`, a per-parameter tree, or ``None``
            (no momentum buffer).
        nesterov: Nesterov momentum (needs ``momentum``).
        accumulator_dtype: dtype to store the momentum buffer in.

    Returns:
        The chain ``[trace(momentum) →] scale_by_learning_rate(learning_rate)``.

    Raises:
        ValueError: ``nesterov=True`` without ``momentum``.

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
    return aliased_chain(
        trace(momentum, nesterov, accumulator_dtype),
        scale_by_learning_rate(learning_rate),
        aliases={"momentum": "transforms[0].decay"},
    )
