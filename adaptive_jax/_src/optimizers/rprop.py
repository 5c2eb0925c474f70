r"""Rprop: per-parameter step sizes adapted from gradient signs."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.rprop import scale_by_rprop
from adaptive_jax._src.transforms.scaling import scale


@checks_arguments_by_name
def rprop(
    learning_rate: PerParameter,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
) -> Chain:
    r"""Rprop: :math:`\theta_t = \theta_{t-1} - \Delta_t \odot \mathrm{sign}(g_t)`, each :math:`\Delta` grown or shrunk by sign agreement.

    A step size per parameter, multiplied by :math:`\eta^+` while its gradient keeps
    its sign and by :math:`\eta^-` when the sign flips (and then the step is skipped),
    clipped to :math:`[\Delta_{\min}, \Delta_{\max}]`; see
    :func:`~adaptive_jax.scale_by_rprop` for the exact rule.  A full-batch method: the
    gradient's scale never enters.  The chain ``scale_by_rprop → scale(-1.0)``, under
    ``optax.rprop``'s name and arguments, with the numbers of
    ``torch.optim.Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min_step_size,
    max_step_size))`` (torch also clips :math:`\Delta` at the first step, which changes
    nothing while ``learning_rate`` lies in :math:`[\Delta_{\min}, \Delta_{\max}]`).
    optax 0.2.8's ``rprop`` has the same step sizes but emits each step one update late
    (its first update is 0; google-deepmind/optax#1725): we do not reproduce that.

    Meta-gradients: the step sizes are products of ``learning_rate``, ``eta_minus`` and
    ``eta_plus``, which all have one; ``min_step_size`` and ``max_step_size`` have a
    nonzero one only where a step size is clipped to them; the signs contribute none.

    Args:
        learning_rate: the initial step size :math:`\Delta_0`, positive (or a
            per-parameter tree).
        eta_minus: :math:`\eta^- \in (0, 1)`.
        eta_plus: :math:`\eta^+ > 1`.
        min_step_size: :math:`\Delta_{\min} \ge 0`.
        max_step_size: :math:`\Delta_{\max} \ge \Delta_{\min}`, positive.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.rprop(0.1)
        >>> params = jnp.zeros(2)
        >>> state = tx.init(params)
        >>> for g in ([1.0, 1.0], [3.0, -2.0]):
        ...     updates, state = tx.update(jnp.array(g), state, params)
        >>> [round(u, 6) + 0.0 for u in updates.tolist()]  # 0.1 * 1.2 down; the flipped sign skips
        [-0.12, 0.0]

    References: Riedmiller & Braun, ICNN 1993; Igel & Hüsken, Neurocomputing 2003.
    """
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )
