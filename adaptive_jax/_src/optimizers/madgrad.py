r"""MADGRAD: dual averaging with a cube-root preconditioner and interpolation momentum."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, chain
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.dual_averaging import scale_by_madgrad
from adaptive_jax._src.transforms.regularisation import add_l2_regularization


@checks_arguments_by_name
def madgrad(
    learning_rate: Any,
    momentum: Any = 0.9,
    weight_decay: Any = 0.0,
    eps: Any = 1e-6,
) -> Chain:
    r"""MADGRAD: :math:`x_{t+1} = (1-\mu)\big(x_0 - s_t/(G_t^{1/3}+\epsilon)\big) + \mu x_t`.

    The chain ``add_l2_regularization → scale_by_madgrad`` (the decay is added to the
    gradient, as in optax); see :func:`~adaptive_jax.scale_by_madgrad` for the rule.
    The numbers of ``optax.contrib.madgrad`` up to optax's float32 :math:`\sqrt t`;
    compared in float64 with a direct transcription of the paper's Algorithm 1.

    Args:
        learning_rate: :math:`\gamma`, a number or a schedule.
        momentum: :math:`\mu` in :math:`[0, 1)`.
        weight_decay: :math:`\lambda \ge 0` (coupled L2).
        eps: :math:`\epsilon \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.madgrad(0.1, momentum=0.5, eps=0.0)
        >>> params = jnp.array([1.0])
        >>> updates, _ = tx.update(jnp.array([8.0]), tx.init(params), params)
        >>> round(updates.item(), 5)  # half of scale_by_madgrad's -0.43089
        -0.21544

    Reference: Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized,
    Adaptive, Dual Averaged Gradient Method for Stochastic Optimization", JMLR 2022.
    """
    return chain(
        add_l2_regularization(weight_decay), scale_by_madgrad(learning_rate, momentum, eps)
    )
