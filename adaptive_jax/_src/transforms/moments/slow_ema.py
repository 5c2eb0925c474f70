r"""AdEMAMix's second, slow first moment, mixed into Adam's fast one.

An EMA with :math:`\beta_3 = 0.9999` remembers gradients for ~10,000 steps; Adam's
:math:`\beta_1 = 0.9` for ~10.  Adding :math:`\alpha` times the slow (uncorrected)
average to the fast (bias-corrected) one lets old gradients keep contributing without
slowing the response to new ones (Pagliardini et al. 2024).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from adaptive_jax._src.core.hyperparameter import Domain, per_leaf, value_at
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import Moments
from adaptive_jax._src.core.numerics import cast_like, ema
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import LOG_ONE_MINUS, SOFTPLUS
from adaptive_jax._src.core.trees import map_params, zeros_like

# The paper warms both up with schedules (alpha linearly, b3 in its half-life).
SLOW_DECAY = Domain(
    "a decay rate", 0.0, 1.0, schedule=True, per_parameter=True, reparameterization=LOG_ONE_MINUS
)
MIXING = Domain("a mixing coefficient", 0.0, None, schedule=True, reparameterization=SOFTPLUS)


class MixSlowEmaState(NamedTuple):
    """State of :class:`mix_slow_ema`: the slow average :math:`m^{(2)}_t`."""

    m2: Any


class MixSlowEma(Transform):
    r"""Add :math:`\alpha m^{(2)}_t` to the record's first moment, :math:`m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t`.

    Placed after :class:`~adaptive_jax.debias`, the first moment becomes AdEMAMix's
    :math:`\hat m^{(1)}_t + \alpha m^{(2)}_t` (the slow average is not bias-corrected,
    as in the paper and ``optax.contrib.scale_by_ademamix``).

    Args:
        decay: :math:`\beta_3` in :math:`[0, 1)`, a schedule of the 0-based step, or a
            per-parameter tree.
        alpha: :math:`\alpha \ge 0`, or a schedule of the 0-based step.
        mu_dtype: dtype to store :math:`m^{(2)}_t` in (default: the parameters').

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_of_gradients(0.5), aj.debias(), aj.mix_slow_ema(0.9, alpha=2.0))
        >>> moments, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6)  # m1_hat + alpha (1 - b3) g = 1 + 2 * 0.1
        1.2

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
    Older", ICLR 2025.
    """

    decay: Any = hyperparameter(default=0.9999, domain=SLOW_DECAY)
    alpha: Any = hyperparameter(default=5.0, domain=MIXING)
    mu_dtype: Any = static(default=None)

    def init_state(self, params):
        return MixSlowEmaState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        if not isinstance(updates, Moments) or updates.mu_correction != 1.0:
            raise TypeError(
                "mix_slow_ema expects bias-corrected moments: place it after ema_of_gradients "
                "and debias in the chain"
            )
        decays = per_leaf(self.decay, count - 1, updates.gradient, "decay")
        alpha = value_at(self.alpha, count - 1, "alpha")
        m2 = map_params(
            lambda g, m, b: ema(m, g, b),
            updates.gradient,
            state.m2,
            names=("m2",),
            per_leaf=(decays,),
        )
        mixed = map_params(
            lambda m1, m: m1 + (cast_like(alpha, m) * m).astype(m1.dtype),
            updates.mu,
            m2,
            names=("m2",),
        )
        return updates._replace(mu=mixed), MixSlowEmaState(m2)


mix_slow_ema = MixSlowEma
