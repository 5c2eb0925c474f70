r"""Lion's momentum: the step interpolates with one rate, the memory decays with another."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.protocol import Transform
from adaptive_jax.core.pytree import pytree_dataclass, static_field
from adaptive_jax.core.trees import map_params, zeros_like
from adaptive_jax.core.validation import check_decay
from adaptive_jax.transforms.moments import ema, expect_gradients


@pytree_dataclass
class LionMomentum(Transform):
    """See :func:`lion_momentum`."""

    b1: Any = 0.9
    b2: Any = 0.99
    mu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_decay("b1", self.b1)
        check_decay("b2", self.b2)

    def init_state(self, params):
        return zeros_like(params, self.mu_dtype)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "lion_momentum")
        interpolated = map_params(
            lambda g, m: ema(m, g, self.b1).astype(g.dtype), updates, state, names=("mu",)
        )
        mu = map_params(lambda g, m: ema(m, g, self.b2), updates, state, names=("mu",))
        return interpolated, mu


def lion_momentum(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Any = None) -> LionMomentum:
    r"""Lion's two-rate momentum: output :math:`c_t`, remember :math:`m_t`.

    .. math::
       c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t, \qquad m_0 = 0 .

    Followed by ``scale_by_sign()`` it is Lion's direction :math:`\mathrm{sign}(c_t)`
    (``optax.scale_by_lion``).  With :math:`\beta_1 = \beta_2` it is an ordinary EMA
    of the gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lion_momentum(b1=0.5, b2=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (2.0, 0.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(updates.item(), 4)  # c_2 = b1 m_1 = 0.5 * (1 - 0.9) * 2 (a b1-EMA would give 0.5)
        0.1

    Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """
    return LionMomentum(b1, b2, mu_dtype)
