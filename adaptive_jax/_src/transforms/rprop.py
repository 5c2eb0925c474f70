r"""Rprop: a step size per parameter, adapted from the signs of successive gradients."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    LEARNING_RATE,
    NONNEGATIVE,
    POSITIVE,
    Domain,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import LOG_ABOVE_ONE, LOG_ONE_MINUS
from adaptive_jax._src.core.trees import map_params, zeros_like

DECREASE_FACTOR = Domain(
    "a step decrease factor", 0.0, 1.0, low_inclusive=False, reparameterization=LOG_ONE_MINUS
)
INCREASE_FACTOR = Domain(
    "a step increase factor", 1.0, None, low_inclusive=False, reparameterization=LOG_ABOVE_ONE
)


class ScaleByRpropState(NamedTuple):
    """State of :class:`scale_by_rprop`: each parameter's step size and last gradient sign.

    ``previous_sign`` is 0 after a sign change (the iRprop⁻ rule: the next step neither
    grows nor shrinks the step size).
    """

    step_sizes: Any
    previous_sign: Any


class ScaleByRprop(Transform):
    r"""Rprop's step :math:`\Delta_t \odot \mathrm{sign}(g_t)`, with :math:`\Delta_t` adapted per parameter.

    With :math:`s = \mathrm{sign}(g_t)\,\mathrm{sign}(g_{t-1})` entry by entry
    (:math:`g_{t-1}` taken as 0 after a sign change, and at the start):

    .. math::
       \Delta_t = \begin{cases}
         \min(\eta^+ \Delta_{t-1}, \Delta_{\max}) & s > 0 \\
         \max(\eta^- \Delta_{t-1}, \Delta_{\min}) & s < 0 \\
         \Delta_{t-1} & s = 0
       \end{cases}, \qquad
       u_t = \begin{cases} 0 & s < 0 \\ \Delta_t\, \mathrm{sign}(g_t) & \text{else} \end{cases},

    :math:`\Delta_0` = ``learning_rate``.  Only gradient signs enter, so the step is
    invariant to the gradient's scale.  After a sign change the step is skipped and the
    sign forgotten (iRprop⁻, Igel & Hüsken 2003).  Followed by ``scale(-1.0)`` this is
    ``torch.optim.Rprop`` (whose numbers agree while :math:`\Delta_0 \in
    [\Delta_{\min}, \Delta_{\max}]`: torch also clips when :math:`s = 0`).
    ``optax.scale_by_rprop`` (0.2.8) computes the same :math:`\Delta_t` but emits
    :math:`u_{t-1}` at step :math:`t` (0 at the first; google-deepmind/optax#1725).

    ``learning_rate`` enters the state at ``init`` (it is :math:`\Delta_0`): its
    meta-gradient flows through ``init``, and changing it after ``init`` has no effect.

    Args:
        learning_rate: :math:`\Delta_0`, positive (a number, a per-parameter tree, or a
            schedule, read at step 0).
        eta_minus: :math:`\eta^- \in (0, 1)`, the factor after a sign change.
        eta_plus: :math:`\eta^+ > 1`, the factor after an agreeing sign.
        min_step_size: :math:`\Delta_{\min} \ge 0`.
        max_step_size: :math:`\Delta_{\max} > 0`, at least :math:`\Delta_{\min}`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_rprop(0.1)
        >>> state = tx.init(jnp.zeros(2))
        >>> for g in ([1.0, 1.0], [3.0, -2.0], [1.0, -1.0]):
        ...     updates, state = tx.update(jnp.array(g), state)
        >>> [round(u, 6) for u in updates.tolist()]  # 0.1 * 1.2 * 1.2; the flipped sign restarts at 0.05
        [0.144, -0.05]

    References: Riedmiller & Braun, "A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm", ICNN 1993; Igel & Hüsken,
    "Empirical Evaluation of the Improved Rprop Learning Algorithms",
    Neurocomputing 2003.
    """

    learning_rate: PerParameter = hyperparameter(domain=LEARNING_RATE)
    eta_minus: Any = hyperparameter(default=0.5, domain=DECREASE_FACTOR)
    eta_plus: Any = hyperparameter(default=1.2, domain=INCREASE_FACTOR)
    min_step_size: Any = hyperparameter(default=1e-6, domain=NONNEGATIVE)
    max_step_size: Any = hyperparameter(default=50.0, domain=POSITIVE)

    def __check_init__(self):
        low, high = self.min_step_size, self.max_step_size
        numbers = isinstance(low, (int, float)) and isinstance(high, (int, float))
        # Each bound's own range is checked with its domain (and named there).
        if numbers and 0 <= low < math.inf and 0 < high < math.inf and low > high:
            raise ValueError(f"min_step_size={low!r} is invalid: it exceeds max_step_size={high!r}")

    def init_state(self, params):
        rates = per_leaf(self.learning_rate, jnp.zeros([], jnp.int32), params, "learning_rate")
        # Zeros placed (and sharded) like the parameters, plus the initial step size.
        steps = map_params(
            lambda z, rate: z + cast_like(rate, z), zeros_like(params), per_leaf=(rates,)
        )
        return ScaleByRpropState(steps, zeros_like(params))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_rprop")

        def adapt(g, previous, step):
            agreement = jnp.sign(g) * previous
            factor = jnp.where(
                agreement > 0, cast_like(self.eta_plus, step), cast_like(self.eta_minus, step)
            )
            clipped = jnp.clip(
                step * factor,
                cast_like(self.min_step_size, step),
                cast_like(self.max_step_size, step),
            )
            return jnp.where(agreement == 0, step, clipped)

        steps = map_params(
            adapt,
            updates,
            state.previous_sign,
            state.step_sizes,
            names=("previous_sign", "step_sizes"),
        )
        signs = map_params(
            lambda g, previous: jnp.where(
                jnp.sign(g) * previous < 0, jnp.zeros_like(g), jnp.sign(g)
            ),
            updates,
            state.previous_sign,
            names=("previous_sign",),
        )
        out = map_params(lambda s, step: s * step, signs, steps, names=("step_sizes",))
        return out, ScaleByRpropState(steps, signs)


scale_by_rprop = ScaleByRprop
