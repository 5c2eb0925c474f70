r"""Direction-only methods: sign descent (signSGD, signum) and normalized gradient descent."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.momentum import trace
from adaptive_jax._src.transforms.scaling import (
    normalize_by_global_norm,
    scale_by_learning_rate,
    scale_by_sign,
)


def sign_chain(learning_rate: Any, decay: Any, accumulator_dtype: Any, name: str) -> Chain:
    """``[trace(decay) →] scale_by_sign → scale_by_learning_rate``, the decay found as ``name``.

    The one chain behind :func:`sign_descent`, :func:`sign_sgd` and :func:`signum`.
    """
    if decay is None:
        return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))
    return aliased_chain(
        trace(decay, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
        aliases={name: "transforms[0].decay"},
    )


@checks_arguments_by_name
def sign_descent(learning_rate: PerParameter, momentum: PerParameter | None = None) -> Chain:
    r"""Sign descent: :math:`\theta \leftarrow \theta - \alpha\,\mathrm{sign}(g)` (signSGD; with momentum, signum).

    The :math:`\beta_1=\beta_2=0,\ \epsilon\to0` limit of Adam.  Under optax's names:
    ``sign_descent(lr)`` is :func:`sign_sgd` and ``sign_descent(lr, momentum=beta)`` is
    :func:`signum` ``(lr, beta)``, the same chain.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        momentum: momentum :math:`\mu` in :math:`[0, 1)` before the sign (signum), or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sign_descent(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, -0.002]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]
        [-0.1, 0.1]

    Reference: Bernstein et al., "signSGD", ICML 2018.
    """
    return sign_chain(learning_rate, momentum, None, "momentum")


@checks_arguments_by_name
def sign_sgd(learning_rate: PerParameter) -> Chain:
    r"""signSGD: :math:`\theta \leftarrow \theta - \alpha\,\mathrm{sign}(g)` (optax's name for :func:`sign_descent`).

    The chain ``scale_by_sign → scale_by_learning_rate``; the numbers of
    ``optax.sign_sgd``.  torch.optim has no sign descent.  The step has a meta-gradient
    in :math:`\alpha` only: the sign of the gradient is piecewise constant.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sign_sgd(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, -0.002, 0.0]), tx.init(jnp.zeros(3)))
        >>> [round(u, 6) + 0.0 for u in updates.tolist()]  # each moves by alpha (0 stays)
        [-0.1, 0.1, 0.0]

    References: Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed
    Optimisation for Non-Convex Problems", ICML 2018; Balles & Hennig, "Dissecting Adam:
    The Sign, Magnitude and Variance of Stochastic Gradients", ICML 2018.
    """
    return sign_chain(learning_rate, None, None, "beta")


@checks_arguments_by_name
def signum(
    learning_rate: PerParameter, beta: PerParameter = 0.9, accumulator_dtype: Any = None
) -> Chain:
    r"""Signum: :math:`\theta \leftarrow \theta - \alpha\,\mathrm{sign}(b_t)`, :math:`b_t = \beta b_{t-1} + g_t`.

    Sign descent on heavy-ball momentum: the chain ``trace(beta) → scale_by_sign →
    scale_by_learning_rate``, :func:`sign_descent` with ``momentum=beta`` under optax's
    name and arguments.  ``optax.signum`` keeps the EMA :math:`m_t = \beta m_{t-1} +
    (1-\beta) g_t = (1-\beta) b_t`, whose sign is the same: the same numbers (its state
    differs by the factor :math:`1-\beta`).

    Meta-gradients: :math:`\beta` acts only through a sign, so its meta-gradient is 0
    (as are finite differences, away from the steps where a sign flips); the learning
    rate's is not.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        beta: :math:`\beta` in :math:`[0, 1)`, or a per-parameter tree.
        accumulator_dtype: dtype to store :math:`b_t` in.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.signum(0.1, beta=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (4.0, -1.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(updates.item(), 6)  # b_2 = 0.5 * 4 - 1 > 0: the step keeps the first direction
        -0.1

    References: Bernstein et al., ICML 2018; Zhao et al., "Deconstructing What Makes a
    Good Optimizer for Language Models", arXiv:2407.07972, 2024.
    """
    return sign_chain(learning_rate, beta, accumulator_dtype, "beta")


@checks_arguments_by_name
def normalized_gd(learning_rate: PerParameter, eps: Any = 0.0) -> Chain:
    r"""Normalized gradient descent: :math:`\theta \leftarrow \theta - \eta\, g/\|g\|_2`.

    Every step has length :math:`\eta`; with a constant rate it never settles at the
    minimum (use a decaying schedule for ``learning_rate``).

    Args:
        learning_rate: :math:`\eta`: a number, a schedule (decaying, to converge), or a tree.
        eps: :math:`\epsilon \ge 0`, added to the norm.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.normalized_gd(0.1)
        >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]  # length 0.1, whatever the gradient's size
        [-0.06, -0.08]
    """
    return chain(normalize_by_global_norm(eps), scale_by_learning_rate(learning_rate))
