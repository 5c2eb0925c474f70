r"""Adam and the variants that differ from it by one block: AdamW and AMSGrad.

Each is the chain of the seeds' formulas:

* moments     :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\ v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`
* correction  :math:`\hat m_t = m_t/(1-\beta_1^t),\ \hat v_t = v_t/(1-\beta_2^t)`
* precondition :math:`d_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)`
* learning rate :math:`\theta_t = \theta_{t-1} - \alpha d_t`
"""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.transforms.moments import amsgrad_max, debias, ema_moments
from adaptive_jax.transforms.preconditioning import precondition
from adaptive_jax.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax.transforms.scaling import scale_by_learning_rate


def adam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    r"""Adam: :math:`\theta_t = \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)`.

    Bias correction counts :math:`t` from 1.  Defaults and numbers match
    ``torch.optim.Adam`` and ``optax.adam``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, state = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: -alpha * sign(g)
        [-0.1, 0.1]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return chain(
        ema_moments(b1, b2, mu_dtype, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    weight_decay: Any = 1e-2,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    r"""AdamW: Adam with decoupled weight decay, :math:`\theta \leftarrow \theta - \alpha(d_t + \lambda\theta)`.

    Adam's chain with ``add_decoupled_weight_decay`` before the learning rate; the same
    numbers as ``torch.optim.AdamW`` (default ``weight_decay=1e-2`` as in torch;
    optax's default is ``1e-4``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adamw(0.1, weight_decay=0.5)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, state = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: -alpha (sign(g) + lambda theta)
        [-0.15, 0.15]

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return chain(
        ema_moments(b1, b2, mu_dtype, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    r"""AMSGrad: Adam whose second moment is replaced by its running maximum.

    The default is **torch's variant**: ``amsgrad_max`` stands before ``debias``, so the
    maximum is over the raw :math:`v_t` and then bias-corrected,
    :math:`d_t = \hat m_t / (\sqrt{\max_{k\le t} v_k / (1-\beta_2^t)} + \epsilon)` —
    the numbers of ``torch.optim.Adam(amsgrad=True)``.  For optax's variant (maximum
    of the bias-corrected :math:`\hat v_t`) move the block after ``debias``::

        chain(ema_moments(b1, b2), debias(), amsgrad_max(), precondition(eps, eps_root),
              scale_by_learning_rate(learning_rate))

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.amsgrad(0.1, b1=0.0, b2=0.5)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (4.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 4)  # v_2 = 4.5 but max(v) = 8 is kept: -0.1 / sqrt(8 / 0.75)
        -0.0306

    Reference: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    return chain(
        ema_moments(b1, b2, mu_dtype, nu_dtype),
        amsgrad_max(nu_dtype),
        debias(),
        precondition(eps, eps_root),
        scale_by_learning_rate(learning_rate),
    )
