r"""Noisy SGD: gradient descent with annealed Gaussian gradient noise."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.noise import add_noise
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def noisy_sgd(
    learning_rate: PerParameter, eta: Any = 0.01, gamma: Any = 0.55, key: Any = 0
) -> Chain:
    r"""Noisy SGD: :math:`\theta_t = \theta_{t-1} - \alpha\,(g_t + \sigma_t \xi_t)`, :math:`\sigma_t^2 = \eta / t^{\gamma}`.

    :math:`\xi_t \sim \mathcal N(0, I)` from a PRNG key held in the optimizer state
    (reproducible: the same ``key`` gives the same run, and optax's noise); :math:`t`
    counts steps from 1.  The chain ``add_noise(eta, gamma, key) →
    scale_by_learning_rate``; the numbers of ``optax.noisy_sgd`` with the same key
    (optax's deprecated ``seed=`` is not taken: pass the seed as ``key``).

    Meta-gradients are pathwise, for the fixed key: the derivative of this run's loss,
    noise sample held fixed, in :math:`\alpha, \eta, \gamma`
    (see :func:`~adaptive_jax.add_noise`, also for :math:`\eta = 0`).

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        eta: :math:`\eta \ge 0`, the noise variance at the first step.
        gamma: :math:`\gamma \ge 0`, its decay exponent.
        key: an int seed or a concrete PRNG key (``jax.random.key(0)``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.noisy_sgd(0.1, eta=0.0)  # no noise: plain SGD
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # -alpha g
        [-0.3, 0.05]

    Reference: Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
    Networks", arXiv:1511.06807, 2015.
    """
    return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))
