r"""The first adaptive methods: Adagrad and RMSProp."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.combine import Chain, chain
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
) -> Chain:
    r"""RMSProp: :math:`v_t = \rho v_{t-1} + (1-\rho) g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta\, g_t/(\sqrt{v_t}+\epsilon)`.

    :math:`v_0 = 0`, no bias correction; with ``momentum`` the preconditioned step is
    accumulated as in ``torch.optim.RMSprop(alpha=decay, momentum=momentum)``.

    Reference: Tieleman & Hinton, Coursera lecture 6.5, 2012.
    """
    steps = [ema_of_squares(decay), precondition(eps)]
    if momentum is not None:
        steps.append(trace(momentum, nesterov))
    steps.append(scale_by_learning_rate(learning_rate))
    return chain(*steps)
