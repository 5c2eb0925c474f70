r"""Adam's relatives: each differs from Adam's chain by one block.

Adam is ``ema_moments → debias → precondition → scale_by_learning_rate``.

=========== ==========================================================================
optimizer   what changes
=========== ==========================================================================
nadam       ``ema_moments`` → ``nesterov_ema_moments`` (look-ahead first moment)
adamax      ``ema_moments`` → ``infinity_moments`` (infinity norm instead of RMS)
adabelief   ``ema_moments`` → ``belief_moments`` (variance of the prediction error)
yogi        ``ema_moments`` → ``yogi_moments`` (additive second-moment update)
radam       ``ema_moments → debias → precondition`` → ``scale_by_radam`` (rectified)
lamb        ``add_decoupled_weight_decay`` and ``scale_by_trust_ratio`` inserted
=========== ==========================================================================
"""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.transforms.moment_variants import (
    belief_moments,
    infinity_moments,
    nesterov_ema_moments,
    yogi_moments,
)
from adaptive_jax.transforms.moments import debias, ema_moments
from adaptive_jax.transforms.preconditioning import precondition
from adaptive_jax.transforms.preconditioning_variants import scale_by_radam
from adaptive_jax.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax.transforms.scaling import scale_by_learning_rate
from adaptive_jax.transforms.trust_ratio import scale_by_trust_ratio


def nadam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
) -> Chain:
    r"""NAdam: Adam with a Nesterov look-ahead in the first moment.

    .. math::
       \theta_t = \theta_{t-1} - \alpha\,
       \frac{\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)}
            {\sqrt{\hat v_t + \epsilon_r} + \epsilon}

    The numbers of ``optax.nadam``.  ``torch.optim.NAdam`` uses a different first
    moment: Dozat's momentum schedule
    :math:`\mu_t = \beta_1(1 - \tfrac12\, 0.96^{t\psi})` (``momentum_decay`` :math:`\psi`,
    default 0.004) with the product :math:`\prod_{k\le t}\mu_k` in place of
    :math:`\beta_1^t`.  The two coincide when :math:`0.96^{t\psi} = 0`, i.e. for a
    ``momentum_decay`` so large that :math:`\mu_t = \beta_1` at every step.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.nadam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # -alpha sign(g) (1 + b1 / (1 + b1)) at step 1
        [-0.1474, 0.1474]

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    return chain(
        nesterov_ema_moments(b1, b2),
        debias(),
        precondition(eps, eps_root),
        scale_by_learning_rate(learning_rate),
    )


def adamax(learning_rate: Any = 2e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> Chain:
    r"""Adamax: Adam with the infinity norm, :math:`\theta_t = \theta_{t-1} - \alpha\,\hat m_t / u_t`.

    :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)` (``eps`` inside the maximum, the
    placement of both ``torch.optim.Adamax`` and ``optax.adamax``, whose numbers this
    matches); only :math:`m_t` is bias-corrected.  Default learning rate 2e-3 as in the
    paper and torch.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adamax(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> print(updates.round(6))  # first step: -alpha * g / |g|
        [-0.1  0.1]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """
    return chain(
        infinity_moments(b1, b2, eps),
        debias(),
        precondition(0.0),
        scale_by_learning_rate(learning_rate),
    )


def adabelief(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
) -> Chain:
    r"""AdaBelief: Adam whose second moment tracks :math:`(g_t - m_t)^2`, the surprise.

    .. math::
       s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_r, \qquad
       \theta_t = \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat s_t} + \epsilon)

    The numbers (and defaults) of ``optax.adabelief``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adabelief(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # s_hat_1 = (b1 g)^2: -alpha sign(g) / b1
        [-0.1111, 0.1111]

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020.
    """
    return chain(
        belief_moments(b1, b2, eps_root),
        debias(),
        precondition(eps),
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
) -> Chain:
    r"""RAdam: Adam with its adaptive step rectified by :math:`r_t`, momentum SGD while :math:`\rho_t` < threshold.

    See :func:`~adaptive_jax.transforms.preconditioning_variants.scale_by_radam` for the
    formula.  The numbers of ``optax.radam`` (rectify when :math:`\rho_t \ge 5`);
    ``torch.optim.RAdam`` rectifies when :math:`\rho_t > 5` and places ``eps`` before
    the bias correction, so the two agree for ``eps=0``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.radam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # rho_1 = 1 < 5: momentum step -alpha g
        [-0.3, 0.05]

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold),
        scale_by_learning_rate(learning_rate),
    )


def yogi(
    learning_rate: Any = 1e-2,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 1e-6,
) -> Chain:
    r"""Yogi: Adam with an additive second moment :math:`v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1}-g_t^2)\,g_t^2`.

    The numbers (and defaults) of ``optax.yogi``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.yogi(0.1, b1=0.0, b2=0.5, eps=0.0, initial_accumulator_value=0.0)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (4.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 4)  # v_2 = 8 - 0.5 * 1 = 7.5 (Adam: 4.5): -0.1 / sqrt(7.5 / 0.75)
        -0.0316

    Reference: Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    return chain(
        yogi_moments(b1, b2, initial_accumulator_value),
        debias(),
        precondition(eps, eps_root),
        scale_by_learning_rate(learning_rate),
    )


def lamb(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
) -> Chain:
    r"""LAMB: AdamW's step rescaled per tensor by the trust ratio :math:`\|\theta\|/\|r_t\|`.

    .. math::
       r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_r} + \epsilon} + \lambda\theta_{t-1},
       \qquad
       \theta_t = \theta_{t-1} - \alpha\,\frac{\|\theta_{t-1}\|}{\|r_t\|}\, r_t

    (norms per parameter tensor; ratio 1 where either is 0).  The numbers (and defaults)
    of ``optax.lamb``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lamb(0.1)
        >>> params = jnp.array([3.0, 4.0])  # norm 5
        >>> updates, _ = tx.update(jnp.array([1.0, -1.0]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # sign(g) rescaled to length alpha ||theta||
        [-0.3536, 0.3536]

    Reference: You et al., "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes", ICLR 2020.
    """
    return chain(
        ema_moments(b1, b2),
        debias(),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
