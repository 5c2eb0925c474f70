r"""Clipping: bound the size of the update."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import POSITIVE
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


clip_by_global_norm = ClipByGlobalNorm
