r"""Adadelta: a step with the units of the parameters, from two running RMS values."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.preconditioning_variants import scale_by_adadelta
from adaptive_jax._src.transforms.regularisation import add_l2_regularization
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def adadelta(
    learning_rate: PerParameter = 1.0,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: PerParameter = 0.0,
) -> Chain:
    r"""Adadelta: :math:`\theta_t = \theta_{t-1} - \eta\,\frac{\sqrt{E[\Delta^2]_{t-1}+\epsilon}}{\sqrt{E[g^2]_t+\epsilon}}\,g_t`.

    See :func:`~adaptive_jax.scale_by_adadelta`.
    ``weight_decay`` is coupled L2 (added to the gradient first).  The numbers (and
    defaults, ``lr=1.0``) of ``torch.optim.Adadelta``; ``optax.adadelta`` agrees given
    the same learning rate.

    Args:
        learning_rate: :math:`\eta` (1.0 as in the paper: the step has units already).
        rho: :math:`\rho` in :math:`[0, 1)`, the decay of both averages.
        eps: :math:`\epsilon > 0`, under both roots.
        weight_decay: coupled L2 :math:`\lambda \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adadelta()
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([100.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step ~ -sqrt(eps / (1 - rho)) sign(g)
        [-0.003162, 0.003162]

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """
    return chain(
        add_l2_regularization(weight_decay),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )
