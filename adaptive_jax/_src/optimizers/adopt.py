r"""ADOPT: Adam with the gradient normalised by the previous second moment, then averaged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.clipping import clip
from adaptive_jax._src.transforms.moments.previous_second_moment import normalize_by_previous_rms
from adaptive_jax._src.transforms.momentum import ema_of_updates
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


def adopt_clip_value(step: jax.Array) -> jax.Array:
    r"""ADOPT's default clipping bound :math:`c_t = t^{1/4}` at the 0-based step :math:`t`."""
    return jnp.asarray(step).astype(jnp.result_type(float)) ** 0.25


@checks_arguments_by_name
def adopt(
    learning_rate: PerParameter,
    b1: PerParameter = 0.9,
    b2: PerParameter = 0.9999,
    eps: Any = 1e-6,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = adopt_clip_value,
) -> Chain:
    r"""ADOPT: normalise by the previous second moment, clip, average, step.

    .. math::
       u_t = \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},\ \pm c_{t-1}\Big),
       \quad m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t, \quad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
       \theta_t = \theta_{t-1} - \alpha\, m_t

    with :math:`v_1 = g_1^2` and :math:`u_1 = 0` (the first step only initialises
    :math:`v`; :math:`c_t = t^{1/4}` by default).  Because :math:`g_t` is divided by a
    second moment that does not contain it, ADOPT converges for any :math:`\beta_2`.
    ``nesterov`` steps along :math:`\beta_1 m_t + (1-\beta_1) u_t`.  The numbers of
    ``optax.contrib.adopt``; where optax's meta-gradients are NaN (a parameter whose
    gradient is always 0: :math:`\sqrt{v}` at :math:`v = 0`) ours are finite.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, the momentum.
        b2: :math:`\beta_2` in :math:`[0, 1)`, the second moment's decay.
        eps: :math:`\epsilon \ge 0`, the floor of :math:`\sqrt{v_{t-1}}`.
        mu_dtype: dtype to store :math:`m_t` in.
        nu_dtype: dtype to store :math:`v_t` in (not in optax, which stores it in the
            parameters' dtype).
        nesterov: use the Nesterov look-ahead of the momentum.
        use_clipping: clip the normalised gradient to :math:`[-c_t, c_t]` (recommended
            by the paper when training from scratch).
        clip_value_fn: :math:`c_t` as a function of the 0-based step.

    Returns:
        The chain ``normalize_by_previous_rms → [clip →] ema_of_updates →
        scale_by_learning_rate``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adopt(0.1, b1=0.5)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (2.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 6)  # u_2 = 1 / sqrt(4), m_2 = 0.5 u_2: -0.1 * 0.25
        -0.025

    Reference: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any
    :math:`\beta_2` with the Optimal Rate", NeurIPS 2024.
    """
    clipping = [clip(clip_value_fn)] if use_clipping else []
    return aliased_chain(
        normalize_by_previous_rms(b2, eps, nu_dtype),
        *clipping,
        ema_of_updates(b1, nesterov=nesterov, accumulator_dtype=mu_dtype),
        scale_by_learning_rate(learning_rate),
        aliases={"b2": "transforms[0].decay", "b1": f"transforms[{len(clipping) + 1}].decay"},
    )
