r"""Optimistic methods for games: the step extrapolates the gradient's next change."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.optimizers.adam_family import first_moment
from adaptive_jax._src.transforms.moments.corrections import debias
from adaptive_jax._src.transforms.moments.second import ema_of_squares
from adaptive_jax._src.transforms.momentum import scale_by_optimistic_gradient
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.scaling import scale, scale_by_learning_rate


@checks_arguments_by_name
def optimistic_gradient_descent(
    learning_rate: PerParameter, alpha: PerParameter = 1.0, beta: PerParameter = 1.0
) -> Chain:
    r"""Optimistic gradient descent: :math:`\theta_t = \theta_{t-1} - \eta\big((\alpha+\beta) g_t - \beta g_{t-1}\big)`.

    :math:`g_0 := g_1`.  With :math:`\alpha = \beta = 1` the step is
    :math:`\eta(2g_t - g_{t-1})`: gradient descent plus an extrapolation of the
    gradient's change, which converges in the last iterate on min-max games (bilinear
    :math:`\min_x\max_y xy`) where plain gradient descent-ascent spirals out.  The chain
    ``scale_by_optimistic_gradient(alpha, beta) → scale_by_learning_rate``; the numbers
    of ``optax.optimistic_gradient_descent``.  torch.optim has none.

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        alpha: :math:`\alpha`, the weight of the current gradient (a number, schedule or tree).
        beta: :math:`\beta`, the optimism (negative momentum).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.optimistic_gradient_descent(0.1)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (1.0, 3.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 6)  # -0.1 (2 * 3 - 1)
        -0.5

    Reference: Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and
    Optimistic Gradient Methods for Saddle Point Problems: Proximal Point Approach",
    AISTATS 2020.
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


def adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov) -> tuple[Transform, ...]:
    """The blocks of Adam's (or, with ``nesterov``, NAdam's) direction :math:`r_t`."""
    return (
        first_moment(b1, mu_dtype, nesterov),
        ema_of_squares(b2, mu_dtype),
        debias(),
        precondition(eps, eps_root),
    )


@checks_arguments_by_name
def optimistic_adam(
    learning_rate: PerParameter,
    optimism: PerParameter | None = None,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> Chain:
    r"""Optimistic Adam: :math:`\theta_t = \theta_{t-1} - \alpha\, r_t - o\,(r_t - r_{t-1})`, :math:`r_t` Adam's direction.

    :math:`r_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)` with NAdam's
    look-ahead first moment by default (``nesterov=True``, as optax), and
    :math:`r_0 := r_1`.  The chain ``(nesterov_)ema_of_gradients(b1) →
    ema_of_squares(b2) → debias → precondition(eps, eps_root) →
    scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism) → scale(-1.0)``:
    the numbers (and arguments) of ``optax.optimistic_adam`` (optax's newer
    ``optimistic_adam_v2`` is this chain with a separate learning rate after the
    optimistic block).  ``optimism=None`` is the learning rate itself, one leaf:
    its meta-gradient counts both uses.  Unlike optax, ``learning_rate`` may be a
    schedule, and meta-gradients are finite where a gradient is exactly 0 at the
    default ``eps_root=0`` (optax's are NaN: :math:`\sqrt{\cdot}` at 0).  torch.optim
    has none.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        optimism: :math:`o`, or ``None`` for :math:`o = \alpha`.
        b1: :math:`\beta_1` in :math:`[0, 1)`.
        b2: :math:`\beta_2` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        mu_dtype: dtype to store :math:`m_t` in, and (unlike optax, which keeps them in
            the parameters' dtype) :math:`v_t` and :math:`r_{t-1}`.
        nesterov: NAdam's look-ahead first moment (optax's default) or Adam's.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.optimistic_adam(0.1, optimism=0.5, eps=0.0, nesterov=False)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # r_1 = sign(g), r_0 := r_1: -alpha r_1
        [-0.1, 0.1]

    Reference: Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs with Optimism",
    ICLR 2018.
    """
    return aliased_chain(
        *adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
        scale_by_optimistic_gradient(learning_rate, optimism, mu_dtype),
        scale(-1.0),
        aliases={
            "b1": "transforms[0].decay",
            "b2": "transforms[1].decay",
            "learning_rate": "transforms[4].alpha",
            "optimism": "transforms[4].beta",
        },
    )


@checks_arguments_by_name
def optimistic_adam_v2(
    learning_rate: PerParameter,
    *,
    alpha: PerParameter = 1.0,
    beta: PerParameter = 1.0,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> Chain:
    r"""Optimistic Adam with the learning rate apart: :math:`\theta_t = \theta_{t-1} - \eta\,((\alpha + \beta) r_t - \beta r_{t-1})`.

    :math:`r_t` is Adam's direction as in :func:`optimistic_adam` (NAdam's look-ahead
    first moment by default), :math:`r_0 := r_1`.  The chain ``(nesterov_)ema_of_gradients(b1)
    → ema_of_squares(b2) → debias → precondition(eps, eps_root) →
    scale_by_optimistic_gradient(alpha, beta) → scale_by_learning_rate(learning_rate)``:
    ``optax.optimistic_adam_v2``'s arguments and numbers, with meta-gradients finite where
    a gradient is exactly 0 at ``eps_root=0`` (optax's are NaN).

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        alpha: :math:`\alpha`, the weight of the current direction.
        beta: :math:`\beta`, the optimism: the weight of the direction's change.
        b1: :math:`\beta_1` in :math:`[0, 1)`.
        b2: :math:`\beta_2` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        mu_dtype: dtype to store :math:`m_t`, :math:`v_t` and :math:`r_{t-1}` in.
        nesterov: NAdam's look-ahead first moment (optax's default) or Adam's.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.optimistic_adam_v2(0.1, alpha=1.0, beta=0.5, eps=0.0, nesterov=False)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # r_1 = sign(g), r_0 := r_1: -eta alpha r_1
        [-0.1, 0.1]

    Reference: Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs with Optimism",
    ICLR 2018.
    """
    return aliased_chain(
        *adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
        scale_by_optimistic_gradient(alpha, beta, mu_dtype),
        scale_by_learning_rate(learning_rate),
        aliases={"b1": "transforms[0].decay", "b2": "transforms[1].decay"},
    )
