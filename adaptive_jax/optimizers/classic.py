r"""The first adaptive methods: Adagrad and RMSProp."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
from adaptive_jax.core.validation import check_decay
from adaptive_jax.transforms.moment_variants import centered_ema_of_squares
from adaptive_jax.transforms.moments import accumulate_squares, ema_of_squares
from adaptive_jax.transforms.momentum import trace
from adaptive_jax.transforms.preconditioning import precondition
from adaptive_jax.transforms.scaling import scale_by_learning_rate


def adagrad(
    learning_rate: Any = 1e-2, eps: Any = 1e-10, initial_accumulator_value: Any = 0.0
) -> Chain:
    r"""Adagrad: :math:`G_t = G_{t-1} + g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta\, g_t/(\sqrt{G_t} + \epsilon)`.

    :math:`G_0` = ``initial_accumulator_value`` (0 by default).  The same numbers as
    ``torch.optim.Adagrad(lr, eps=eps, initial_accumulator_value=0)``.
    (optax's ``adagrad`` puts eps inside the root and starts :math:`G_0 = 0.1`.)

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adagrad(0.1)
        >>> params = jnp.array([1.0, 1.0])
        >>> updates, state = tx.update(jnp.array([3.0, -4.0]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # G_1 = g^2: the first step is -eta sign(g)
        [-0.1, 0.1]

    Reference: Duchi, Hazan & Singer, JMLR 2011.
    """
    return chain(
        accumulate_squares(initial_accumulator_value),
        precondition(eps),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: Any = 1e-2,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    momentum: Any = None,
    nesterov: bool = False,
    centered: bool = False,
) -> Chain:
    r"""RMSProp: :math:`v_t = \rho v_{t-1} + (1-\rho) g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta\, g_t/(\sqrt{v_t}+\epsilon)`.

    :math:`v_0 = 0`, no bias correction; with ``momentum`` the preconditioned step is
    accumulated as in ``torch.optim.RMSprop(alpha=decay, momentum=momentum)``.
    ``centered=True`` swaps ``ema_of_squares`` for ``centered_ema_of_squares``, dividing
    by the running variance :math:`v_t - \bar g_t^2` instead (torch's ``centered=True``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.rmsprop(0.1, decay=0.9)
        >>> updates, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(updates.item(), 4)  # v_1 = 0.1 g^2, so the first step is -eta / sqrt(0.1)
        -0.3162

    Reference: Tieleman & Hinton, Coursera lecture 6.5, 2012.
    """
    second_moment = centered_ema_of_squares(decay) if centered else ema_of_squares(decay)
    steps = [second_moment, precondition(eps)]
    if momentum is not None:
        check_decay("momentum", momentum)
        steps.append(trace(momentum, nesterov))
    steps.append(scale_by_learning_rate(learning_rate))
    return chain(*steps)
