r"""SGD with Polyak's step size, computed from the loss passed as ``value=``."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate, scale_by_polyak


@checks_arguments_by_name
def polyak_sgd(
    max_learning_rate: Any = 1.0,
    scaling: PerParameter = 1.0,
    f_min: Any = 0.0,
    eps: Any = 0.0,
    variant: str = "sps",
) -> Chain:
    r"""Polyak SGD: :math:`\theta_t = \theta_{t-1} - s\,\min\Big(\frac{f(\theta_{t-1}) - f^\star}{s^2\|g_t\|^2 + \epsilon}, \gamma_{\max}\Big)\, g_t`.

    Each step goes where the linearised loss would reach :math:`f^\star`, capped at
    :math:`\gamma_{\max}`: with :math:`s = 1` the SPS_max step of Loizou et al.  The
    update needs the loss: ``tx.update(grads, state, params, value=loss)``
    (:func:`~adaptive_jax.meta.unroll` passes it).  Where :math:`s^2\|g_t\|^2 +
    \epsilon` is at most the machine epsilon (a zero gradient) the step is 0, with
    finite meta-gradients (optax's are NaN there).  ``variant="sps+"`` uses
    :math:`\max(f - f^\star, 0)`.

    The chain ``scale_by_learning_rate(scaling) → scale_by_polyak(f_min,
    max_learning_rate, eps, variant)``: the numbers of ``optax.polyak_sgd``, whose
    Polyak block sees the already scaled update, hence :math:`s^2` in the denominator
    (optax's docstring writes :math:`s\min(\cdot/\|g\|^2, \gamma_{\max})`, which agrees
    for the default :math:`s = 1`).  torch.optim has no Polyak step.

    Args:
        max_learning_rate: :math:`\gamma_{\max} > 0`.
        scaling: :math:`s`: a number, a schedule, or a per-parameter tree.
        f_min: :math:`f^\star`, a lower bound on the loss (0 for models that
            interpolate the data).
        eps: :math:`\epsilon \ge 0`, added to the squared norm.
        variant: ``"sps"`` or ``"sps+"``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.polyak_sgd(max_learning_rate=10.0)
        >>> params = jnp.array([3.0, 4.0])  # f = |x|^2 / 2 = 12.5, g = x
        >>> updates, _ = tx.update(params, tx.init(params), params, value=12.5)
        >>> updates.tolist()  # -(12.5 / 25) x
        [-1.5, -2.0]

    References: Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size
    for SGD: An Adaptive Learning Rate for Fast Convergence", AISTATS 2021; Garrigos,
    Gower & Schaipp, arXiv:2307.14528, 2023 (SPS+).
    """
    return aliased_chain(
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, eps, variant),
        aliases={"scaling": "transforms[0].learning_rate"},
    )
