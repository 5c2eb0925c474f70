r"""Adan: Adam with Nesterov momentum estimated from gradient differences."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.moments.corrections import debias
from adaptive_jax._src.transforms.moments.first import (
    ema_of_gradient_differences,
    ema_of_gradients,
)
from adaptive_jax._src.transforms.moments.second import ema_of_squares
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def adan(
    learning_rate: PerParameter,
    b1: PerParameter = 0.98,
    b2: PerParameter = 0.92,
    b3: PerParameter = 0.99,
    eps: Any = 1e-8,
    eps_root: Any = 1e-8,
    weight_decay: PerParameter = 0.0,
) -> Chain:
    r"""Adan: :math:`\theta_t = \theta_{t-1} - \alpha\Big(\frac{\hat m_t + (1-\beta_2)\hat v_t}{\sqrt{\hat n_t + \epsilon_r} + \epsilon} + \lambda\theta_{t-1}\Big)`.

    With :math:`\Delta_t = g_t - g_{t-1}` (:math:`\Delta_1 = 0`) and all moments started
    at 0 and bias-corrected (:math:`\hat x_t = x_t / (1-\beta^t)`):

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t, \\
       n_t = \beta_3 n_{t-1} + (1-\beta_3) \big(g_t + (1-\beta_2)\Delta_t\big)^2 .

    The chain ``ema_of_gradients(b1) → ema_of_gradient_differences(b2) →
    ema_of_squares(b3) → debias → precondition(eps, eps_root) →
    add_decoupled_weight_decay(weight_decay) → scale_by_learning_rate``.  The numbers
    (and defaults) of ``optax.adan``: the :math:`\beta` are decay rates (the paper's
    :math:`1-\beta`), and weight decay is decoupled and added to the step (the paper
    divides by :math:`1 + \lambda\alpha` instead).  optax's ``mask`` is a per-parameter
    ``weight_decay`` tree here (0 where masked).  torch.optim has no Adan.  Where a
    parameter's gradient is exactly 0 and ``eps_root=0``, optax differentiates
    :math:`\sqrt{\cdot}` at 0 and its meta-gradients are NaN; ours are finite
    (``tests/test_optimizers_core.py``).

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, the decay of the gradient EMA.
        b2: :math:`\beta_2` in :math:`[0, 1)`, the decay of the gradient-difference EMA.
        b3: :math:`\beta_3` in :math:`[0, 1)`, the decay of the squared look-ahead EMA.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        weight_decay: decoupled :math:`\lambda \ge 0`, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adan(0.1, eps=0.0, eps_root=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: Delta = 0, -alpha g / |g|
        [-0.1, 0.1]

    Reference: Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for
    Faster Optimizing Deep Models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """
    return aliased_chain(
        ema_of_gradients(b1),
        ema_of_gradient_differences(b2),
        ema_of_squares(b3),
        debias(),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
        aliases={
            "b1": "transforms[0].decay",
            "b2": "transforms[1].decay",
            "b3": "transforms[2].decay",
        },
    )
