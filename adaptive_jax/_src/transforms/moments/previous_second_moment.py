r"""ADOPT's normalisation: divide the gradient by the second moment of the *previous* steps.

Adam divides :math:`g_t` by a second moment that already contains :math:`g_t^2`, which
correlates numerator and denominator and is what makes Adam diverge for some
:math:`\beta_2` (Reddi et al. 2018).  ADOPT (Taniguchi et al. 2024) normalises by
:math:`v_{t-1}` instead, before the momentum, and converges for any :math:`\beta_2`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, EPSILON, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, ema, safe_sqrt, squared_magnitude
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params
from adaptive_jax._src.transforms.moments.second import real_zeros_like


class NormalizeByPreviousRmsState(NamedTuple):
    """State of :class:`normalize_by_previous_rms`: :math:`v_{t-1}`."""

    nu: Any


class NormalizeByPreviousRms(Transform):
    r"""ADOPT's step: :math:`u_t = g_t / \max(\sqrt{v_{t-1}}, \epsilon)`, then :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`.

    The first gradient only initialises :math:`v_1 = g_1^2` and the first output is 0
    (there is no previous second moment to divide by).  This is the normalisation of
    ``optax.contrib.scale_by_adopt``, where the first step's output is multiplied by
    :math:`1-\beta_1 = 0` instead.  The root's derivative at :math:`v = 0` is 0
    (:func:`~adaptive_jax.extend.safe_sqrt`), so a parameter whose gradient is always 0
    has finite meta-gradients (optax's are NaN there).

    Args:
        decay: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.
        eps: :math:`\epsilon \ge 0`, the floor of the denominator.
        nu_dtype: dtype to store :math:`v_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.normalize_by_previous_rms(decay=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.array([2.0]), state)
        >>> second, state = tx.update(jnp.array([3.0]), state)
        >>> first.item(), second.item()  # 0, then g_2 / |g_1|
        (0.0, 1.5)

    Reference: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any
    :math:`\beta_2` with the Optimal Rate", NeurIPS 2024.
    """

    decay: PerParameter = hyperparameter(default=0.9999, domain=DECAY_RATE)
    eps: Any = hyperparameter(default=1e-6, domain=EPSILON)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return NormalizeByPreviousRmsState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "normalize_by_previous_rms")
        decays = per_leaf(self.decay, count - 1, updates, "decay")
        first = count == 1

        def normalized(g, v):
            denominator = jnp.maximum(safe_sqrt(v), cast_like(self.eps, v))
            denominator = jnp.where(first | (denominator == 0), 1, denominator)
            return jnp.where(first, 0, g / denominator.astype(g.dtype)).astype(g.dtype)

        def second_moment(g, v, decay):
            # v_1 = g_1^2: the average starts from the first gradient, not from 0.
            decay = jnp.where(first, jnp.zeros_like(jnp.asarray(decay)), decay)
            return ema(v, squared_magnitude(g, v.dtype), decay)

        out = map_params(normalized, updates, state.nu, names=("nu",))
        nu = map_params(second_moment, updates, state.nu, names=("nu",), per_leaf=(decays,))
        return out, NormalizeByPreviousRmsState(nu)


normalize_by_previous_rms = NormalizeByPreviousRms
