r"""Clipping: bound the size of the update."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import POSITIVE, Domain, value_at
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, global_norm
from adaptive_jax._src.core.protocol import Transform


class ClipByGlobalNorm(Transform):
    r"""Rescale so that :math:`\|g\|_2 \le c`: :math:`g \leftarrow g \cdot \min(1, c/\|g\|_2)`.

    Args:
        max_norm: :math:`c > 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.clip_by_global_norm(1.0)
        >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}  # global norm 5
        >>> clipped, _ = tx.update(grads, tx.init(grads))
        >>> round(clipped["a"].item(), 6), round(clipped["b"].item(), 6)
        (0.6, 0.8)

    Reference: Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent
    neural networks", ICML 2013.
    """

    max_norm: Any = hyperparameter(default=1.0, domain=POSITIVE)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "clip_by_global_norm")
        norm = global_norm(updates)
        max_norm = cast_like(self.max_norm, norm)
        factor = max_norm / jnp.maximum(norm, max_norm)
        return jax.tree_util.tree_map(lambda u: u * cast_like(factor, u), updates), state


# A bound that may grow with the step (ADOPT's default is step ** 0.25, 0 at the first).
CLIPPING_BOUND = Domain("a clipping bound", 0.0, None, schedule=True)


class Clip(Transform):
    r"""Clip every coordinate to :math:`[-c_t, c_t]`: :math:`u_i = \min(\max(g_i, -c_t), c_t)`.

    ``optax.clip``, with a bound that may also be a schedule of the 0-based step.

    Args:
        max_delta: :math:`c \ge 0`, or a schedule of the 0-based step.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.clip(1.0)
        >>> clipped, _ = tx.update(jnp.array([3.0, -0.5, -2.0]), tx.init(jnp.zeros(3)))
        >>> print(clipped)
        [ 1.  -0.5 -1. ]
    """

    max_delta: Any = hyperparameter(default=1.0, domain=CLIPPING_BOUND)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "clip")
        bound = value_at(self.max_delta, count - 1, "max_delta")
        return jax.tree_util.tree_map(
            lambda u: jnp.clip(u, -cast_like(bound, u), cast_like(bound, u)), updates
        ), state


clip_by_global_norm = ClipByGlobalNorm
clip = Clip
