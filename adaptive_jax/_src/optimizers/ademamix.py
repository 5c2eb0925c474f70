r"""AdEMAMix: AdamW whose first moment is a mixture of a fast and a slow EMA."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.moments.corrections import debias
from adaptive_jax._src.transforms.moments.first import ema_of_gradients
from adaptive_jax._src.transforms.moments.second import ema_of_squares
from adaptive_jax._src.transforms.moments.slow_ema import mix_slow_ema
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def ademamix(
    learning_rate: PerParameter,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 5.0,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: PerParameter = 0.0,
    *,
    nu_dtype: Any = None,
) -> Chain:
    r"""AdEMAMix: Adam with a slow EMA added to the fast one.

    .. math::
       m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1-\beta_1) g_t, \quad
       m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t, \quad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

    .. math::
       \theta_t = \theta_{t-1} - \eta\Big(
       \frac{m^{(1)}_t/(1-\beta_1^t) + \alpha m^{(2)}_t}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_r} + \epsilon}
       + \lambda\theta_{t-1}\Big)

    Adam's chain with :func:`~adaptive_jax.mix_slow_ema` after ``debias``.  The numbers
    of ``optax.contrib.ademamix``.  ``b3`` and ``alpha`` may be schedules of the 0-based
    step (the paper warms both up).  optax's ``mask`` is a per-parameter
    ``weight_decay`` here (0 for the parameters not to decay).

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, the fast EMA.
        b2: :math:`\beta_2` in :math:`[0, 1)`, the second moment.
        b3: :math:`\beta_3` in :math:`[0, 1)`, the slow EMA, or a schedule.
        alpha: :math:`\alpha \ge 0`, the weight of the slow EMA, or a schedule.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        mu_dtype: dtype to store both first moments in.
        weight_decay: :math:`\lambda \ge 0` (decoupled), a schedule or a per-parameter tree.
        nu_dtype: dtype to store :math:`v_t` in (optax stores it in ``mu_dtype``).

    Returns:
        The chain ``ema_of_gradients → ema_of_squares → debias → mix_slow_ema →
        precondition → add_decoupled_weight_decay → scale_by_learning_rate``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ademamix(0.1, b3=0.9, alpha=2.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # -0.1 sign(g) (1 + alpha (1 - b3))
        [-0.12, 0.12]

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
    Older", ICLR 2025.
    """
    return aliased_chain(
        ema_of_gradients(b1, mu_dtype),
        ema_of_squares(b2, nu_dtype),
        debias(),
        mix_slow_ema(b3, alpha, mu_dtype),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
        aliases={
            "b1": "transforms[0].decay",
            "b2": "transforms[1].decay",
            "b3": "transforms[3].decay",
        },
    )
