r"""Schedule-Free SGD and AdamW: :func:`~adaptive_jax.schedule_free` around a momentum-free base."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.schedules.basic import linear_warmup
from adaptive_jax._src.transforms.moments.corrections import debias
from adaptive_jax._src.transforms.moments.second import ema_of_squares
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.regularisation import (
    add_decoupled_weight_decay,
    add_l2_regularization,
)
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate
from adaptive_jax._src.transforms.schedule_free import ScheduleFree, schedule_free


def _warmed_up(learning_rate: Any, warmup_steps: int | None) -> Any:
    """optax's ``warmup_constant_schedule(0, learning_rate, warmup_steps)``, or the rate itself."""
    return learning_rate if warmup_steps is None else linear_warmup(learning_rate, warmup_steps)


@checks_arguments_by_name
def schedule_free_sgd(
    learning_rate: Any = 1.0,
    warmup_steps: int | None = None,
    b1: Any = 0.9,
    weight_decay: PerParameter | None = None,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    r"""Schedule-Free SGD: :math:`z_{t+1} = z_t - \gamma_t (g_t + \lambda y_t)`, with interpolation and averaging.

    :func:`~adaptive_jax.schedule_free` around ``add_l2_regularization →
    scale_by_learning_rate`` (the decay is coupled, added to the gradient at :math:`y`,
    as in optax).  With ``warmup_steps`` the rate rises linearly from 0 over that many
    steps, then stays.  The numbers of ``optax.contrib.schedule_free_sgd``, whose
    warm-up schedule computes in float32 (ours in the parameters' precision).  The
    learning rate is held twice: by the base step and by the averaging weights.

    Args:
        learning_rate: :math:`\gamma`: the peak learning rate.
        warmup_steps: length of the linear warm-up, or ``None``.
        b1: :math:`\beta_1 \in [0, 1)`, the interpolation weight.
        weight_decay: :math:`\lambda \ge 0` (coupled L2), or ``None``.
        weight_lr_power: :math:`r \ge 0`, the power of the learning rate in the weights.
        state_dtype: dtype to store :math:`z` in.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.schedule_free_sgd(0.1, b1=0.5)
        >>> params = jnp.array([1.0])
        >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params), params)
        >>> round(updates.item(), 6)  # the first step is SGD's: x_1 = z_1
        -0.2

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    rate = _warmed_up(learning_rate, warmup_steps)
    decay = [] if weight_decay is None else [add_l2_regularization(weight_decay)]
    base = chain(*decay, scale_by_learning_rate(rate))
    return schedule_free(base, rate, b1, weight_lr_power, state_dtype)


@checks_arguments_by_name
def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    warmup_steps: int | None = None,
    b1: Any = 0.9,
    b2: PerParameter = 0.999,
    eps: Any = 1e-8,
    weight_decay: PerParameter = 0.0,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    r"""Schedule-Free AdamW: Adam without momentum moves :math:`z`, interpolation and averaging replace it.

    .. math::
       v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
       z_{t+1} = z_t - \gamma_t\Big(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
       + \lambda y_t\Big)

    then :math:`x` and :math:`y` as in :func:`~adaptive_jax.schedule_free`.  The base
    is ``ema_of_squares → debias → precondition → add_decoupled_weight_decay →
    scale_by_learning_rate``.  The numbers of ``optax.contrib.schedule_free_adamw``
    (whose warm-up schedule computes in float32, ours in the parameters' precision).
    The learning rate is held twice: by the base step and by the averaging weights.

    Args:
        learning_rate: :math:`\gamma`: the peak learning rate.
        warmup_steps: length of the linear warm-up, or ``None``.
        b1: :math:`\beta_1 \in [0, 1)`, the interpolation weight.
        b2: :math:`\beta_2` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to the root.
        weight_decay: :math:`\lambda \ge 0` (decoupled, at :math:`y`).
        weight_lr_power: :math:`r \ge 0`, the power of the learning rate in the weights.
        state_dtype: dtype to store :math:`z` in.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.schedule_free_adamw(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: Adam's -gamma sign(g)
        [-0.1, 0.1]

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    rate = _warmed_up(learning_rate, warmup_steps)
    base: Chain = aliased_chain(
        ema_of_squares(b2),
        debias(),
        precondition(eps),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(rate),
        aliases={"b2": "transforms[0].decay"},
    )
    return schedule_free(base, rate, b1, weight_lr_power, state_dtype)
