r"""Lion: the sign of an interpolated momentum, with decoupled weight decay."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.momentum import lion_momentum
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate, scale_by_sign


@checks_arguments_by_name
def lion(
    learning_rate: PerParameter = 1e-4,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.99,
    weight_decay: PerParameter = 1e-3,
    mu_dtype: Any = None,
) -> Chain:
    r"""Lion: :math:`\theta_t = \theta_{t-1} - \alpha\big(\mathrm{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t) + \lambda\theta_{t-1}\big)`.

    The momentum is :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t`.  Every coordinate
    moves by exactly :math:`\alpha` (before decay), so Lion wants a learning rate 3–10×
    smaller than AdamW's.  It is sign descent (:func:`adaptive_jax.sign_descent`) with
    ``lion_momentum`` in front and AdamW's decoupled decay behind.  The numbers (and
    defaults) of ``optax.lion``.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, the interpolation of the step.
        b2: :math:`\beta_2` in :math:`[0, 1)`, the decay of the memory.
        weight_decay: :math:`\lambda \ge 0` (decoupled).
        mu_dtype: dtype to store :math:`m_t` in.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lion(0.1, weight_decay=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> print(updates.round(6))  # every coordinate moves by the learning rate
        [-0.1  0.1]

    Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """
    return chain(
        lion_momentum(b1, b2, mu_dtype),
        scale_by_sign(),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
