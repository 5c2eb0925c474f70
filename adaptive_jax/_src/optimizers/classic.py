r"""The first adaptive methods: Adagrad and RMSProp."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.moments.second import (
    accumulate_squares,
    centered_ema_of_squares,
    ema_of_squares,
)
from adaptive_jax._src.transforms.momentum import trace
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


@checks_arguments_by_name
def adagrad(
    learning_rate: PerParameter = 1e-2, eps: Any = 1e-10, initial_accumulator_value: Any = 0.0
) -> Chain:
    r"""Adagrad: :math:`G_t = G_{t-1} + g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta\, g_t/(\sqrt{G_t} + \epsilon)`.

    :math:`G_0` = ``initial_accumulator_value`` (0 by default).  The same numbers as
    ``torch.optim.Adagrad(lr, eps=eps, initial_accumulator_value=0)``.
    (optax's ``adagrad`` puts eps inside the root and starts :math:`G_0 = 0.1`.)

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        eps: :math:`\epsilon \ge 0`, added to :math:`\sqrt{G_t}`.
        initial_accumulator_value: :math:`G_0 \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adagrad(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: -eta g / |g|
        [-0.1, 0.1]

    Reference: Duchi, Hazan & Singer, JMLR 2011.
    """
    return chain(
        accumulate_squares(initial_accumulator_value),
        precondition(eps),
        scale_by_learning_rate(learning_rate),
    )


@checks_arguments_by_name
def rmsprop(
    learning_rate: PerParameter = 1e-2,
    decay: PerParameter = 0.9,
    eps: Any = 1e-8,
    momentum: PerParameter | None = None,
    nesterov: bool = False,
    centered: bool = False,
) -> Chain:
    r"""RMSProp: :math:`v_t = \rho v_{t-1} + (1-\rho) g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta\, g_t/(\sqrt{v_t}+\epsilon)`.

    :math:`v_0 = 0`, no bias correction; with ``momentum`` the preconditioned step is
    accumulated as in ``torch.optim.RMSprop(alpha=decay, momentum=momentum)``.
    ``centered=True`` swaps ``ema_of_squares`` for ``centered_ema_of_squares``, dividing
    by the running variance :math:`v_t - \bar g_t^2` instead (torch's ``centered=True``).

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        decay: :math:`\rho` in :math:`[0, 1)` (torch's ``alpha``).
        eps: :math:`\epsilon \ge 0`, added to :math:`\sqrt{v_t}`.
        momentum: momentum :math:`\mu` on the preconditioned step, or ``None``.
        nesterov: Nesterov momentum (needs ``momentum``).
        centered: divide by the variance instead of the second moment.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.rmsprop(0.1, decay=0.9)
        >>> params = jnp.zeros(1)
        >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
        >>> round(updates.item(), 4)  # -eta g / sqrt((1 - rho) g^2)
        -0.3162

    Reference: Tieleman & Hinton, Coursera lecture 6.5, 2012.
    """
    second_moment = centered_ema_of_squares(decay) if centered else ema_of_squares(decay)
    steps: list[Any] = [second_moment, precondition(eps)]
    aliases = {"decay": "transforms[0].decay"}
    if momentum is not None:
        steps.append(trace(momentum, nesterov))
        aliases["momentum"] = "transforms[2].decay"
    elif nesterov:
        raise ValueError("nesterov=True needs a momentum value")
    return aliased_chain(*steps, scale_by_learning_rate(learning_rate), aliases=aliases)
