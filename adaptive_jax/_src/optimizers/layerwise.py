r"""Layer-wise methods: each parameter tensor's step is scaled by statistics of that tensor.

* :func:`lars` — momentum SGD on the trust-ratio-scaled gradient (You et al. 2017);
* :func:`fromage` — trust-ratio steps, with the parameters shrunk so their norms stay
  put (Bernstein et al. 2020);
* :func:`novograd` — a second moment of one number per tensor (Ginsburg et al. 2019).

:func:`~adaptive_jax.lamb` (Adam's step with a trust ratio) is a member of the Adam
family.  On sharded parameters each of these reduces a norm per tensor: one scalar
all-reduce per tensor and step.
"""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.moments.second_reduced import per_layer_second_moment
from adaptive_jax._src.transforms.momentum import trace
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.regularisation import (
    add_decoupled_weight_decay,
    add_l2_regularization,
)
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate
from adaptive_jax._src.transforms.trust_ratio import fromage_step, scale_by_trust_ratio


@checks_arguments_by_name
def lars(
    learning_rate: PerParameter,
    weight_decay: PerParameter = 0.0,
    trust_coefficient: Any = 0.001,
    eps: Any = 0.0,
    momentum: PerParameter = 0.9,
    nesterov: bool = False,
) -> Chain:
    r"""LARS: momentum on :math:`\alpha\, c\,\frac{\|\theta\|}{\|g + \lambda\theta\|}(g + \lambda\theta)`, per tensor.

    .. math::
       r_t = g_t + \lambda\theta_{t-1}, \qquad
       d_t = \alpha\, \frac{c\,\|\theta_{t-1}\|}{\|r_t\| + \epsilon}\, r_t, \qquad
       b_t = \mu b_{t-1} + d_t, \qquad \theta_t = \theta_{t-1} - b_t

    (norms per parameter tensor; ratio 1 where either is 0).  The chain
    ``add_l2_regularization(weight_decay) → scale_by_trust_ratio(trust_coefficient,
    eps) → scale_by_learning_rate → trace(momentum, nesterov)``: the numbers (and
    defaults) of ``optax.lars``, which also applies momentum after the learning rate.
    optax's ``weight_decay_mask`` is a per-parameter ``weight_decay`` tree here (0
    where masked); its ``trust_ratio_mask`` is not offered (every tensor gets its
    ratio).  torch.optim has no LARS.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        weight_decay: :math:`\lambda \ge 0`, added to the gradient before the ratio.
        trust_coefficient: :math:`c \ge 0`.
        eps: :math:`\epsilon \ge 0`, added to :math:`\|r_t\|`.
        momentum: :math:`\mu` in :math:`[0, 1)`, or a per-parameter tree.
        nesterov: Nesterov momentum.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lars(0.5, trust_coefficient=0.1)
        >>> params = jnp.array([3.0, 4.0])  # norm 5
        >>> updates, _ = tx.update(jnp.array([10.0, 0.0]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # -alpha c ||theta|| g / ||g|| = -0.25 (1, 0)
        [-0.25, 0.0]

    Reference: You, Gitman & Ginsburg, "Large Batch Training of Convolutional
    Networks", arXiv:1708.03888, 2017.
    """
    return aliased_chain(
        add_l2_regularization(weight_decay),
        scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
        aliases={"momentum": "transforms[3].decay"},
    )


@checks_arguments_by_name
def fromage(learning_rate: PerParameter, min_norm: Any = 1e-6) -> Chain:
    r"""Fromage: :math:`\theta_t = \big(\theta_{t-1} - \eta\, \frac{\|\theta_{t-1}\|}{\|g_t\|} g_t\big) / \sqrt{1+\eta^2}`, per tensor.

    Each tensor moves by :math:`\eta` relative to its own norm, then shrinks by
    :math:`\sqrt{1+\eta^2}`, which keeps the norm from growing (the step is orthogonal
    to :math:`\theta` on average).  Both norms are floored at ``min_norm``.  The chain
    ``scale_by_trust_ratio(min_norm) → fromage_step(learning_rate)``; the numbers of
    ``optax.fromage``.  :math:`\eta` is one leaf (optax's chain uses it twice).
    torch.optim has no Fromage.

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        min_norm: :math:`n_{\min} \ge 0`, a floor for both norms.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.fromage(0.75)  # sqrt(1 + 0.75^2) = 1.25
        >>> params = jnp.array([2.0, 0.0])
        >>> updates, _ = tx.update(jnp.array([0.0, 5.0]), tx.init(params), params)
        >>> [round(x, 6) for x in (params + updates).tolist()]  # (theta - 0.75 * 2 (0, 1)) / 1.25
        [1.6, -1.2]

    Reference: Bernstein, Vahdat, Yue & Liu, "On the Distance between Two Neural
    Networks and the Stability of Learning", NeurIPS 2020.
    """
    return chain(scale_by_trust_ratio(min_norm=min_norm), fromage_step(learning_rate))


@checks_arguments_by_name
def novograd(
    learning_rate: PerParameter,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.25,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: PerParameter = 0.0,
) -> Chain:
    r"""NovoGrad: momentum on the gradient normalised by one second moment per tensor.

    .. math::
       v_t = \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2\ (v_1 = \|g_1\|^2), \qquad
       m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_r} + \epsilon} + \lambda\theta_{t-1},
       \qquad \theta_t = \theta_{t-1} - \alpha m_t

    (:math:`\|\cdot\|` over each parameter tensor; :math:`m_0 = 0`).  The chain
    ``per_layer_second_moment(b2) → precondition(eps, eps_root) →
    add_decoupled_weight_decay(weight_decay) → trace(b1) → scale_by_learning_rate``;
    the numbers (and defaults) of ``optax.novograd``.  Its state is one number per
    tensor besides the momentum, half of Adam's.  optax's squared norm
    (``jnp.linalg.norm(g) ** 2``) has a NaN derivative where a tensor's gradient is
    exactly 0, so its meta-gradients are NaN for a model with an unused tensor; ours
    are finite (``tests/test_optimizers_core.py``).  torch.optim has no NovoGrad.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, the momentum.
        b2: :math:`\beta_2` in :math:`[0, 1)`, the decay of the per-tensor second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        weight_decay: :math:`\lambda \ge 0`, added to the normalised gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.novograd(0.1, eps=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -4.0]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # -alpha g / ||g||, ||g|| = 5
        [-0.06, 0.08]

    Reference: Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks", arXiv:1905.11286, 2019.
    """
    return aliased_chain(
        per_layer_second_moment(b2),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        trace(b1),
        scale_by_learning_rate(learning_rate),
        aliases={"b1": "transforms[3].decay", "b2": "transforms[0].decay"},
    )
