r"""Per-example clipping: bound each example's gradient, then sum (the DP-SGD aggregation).

Differentially private SGD bounds the influence of any one example by clipping its
gradient to norm :math:`C` before the gradients are summed (and noised):

.. math::

   \bar g = \sum_{n=1}^{N} g_n \min\!\Big(1, \frac{C}{\|g_n\|_2}\Big).

As in optax, :func:`per_example_global_norm_clip` is a function of the batched
gradients, not a transformation: its input has a leading batch axis on every leaf
(e.g. from ``jax.vmap(jax.grad(loss), in_axes=(None, 0))``) and its output has none.
Noise and averaging are left to the caller.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import check_bound
from adaptive_jax._src.core.numerics import cast_like, global_norm


def per_example_global_norm_clip(grads: Any, l2_norm_clip: Any) -> tuple[Any, jax.Array]:
    r"""Clip each example's gradient to global norm :math:`C`, then sum over the examples.

    :math:`\bar g = \sum_n g_n \min(1, C/\|g_n\|_2)`, where :math:`\|g_n\|_2` is the
    norm over all leaves of example :math:`n`.  optax's
    ``per_example_global_norm_clip``, with its arguments and numbers (an example whose
    gradient is 0 keeps multiplier 1, as there).  The multiplier is written as
    :math:`C/\|g_n\|` only where :math:`\|g_n\| > C`, and the norm is
    :func:`~adaptive_jax.global_norm`, so the derivative with respect to :math:`C` and
    to the gradients is finite when an example's gradient is exactly 0 (optax's
    :math:`C/0` makes it NaN).

    Args:
        grads: a pytree whose every leaf has the examples on axis 0 (the same number
            on every leaf).
        l2_norm_clip: :math:`C` in :math:`[0, \infty]` (``inf``: no clipping; 0:
            every nonzero example is zeroed).

    Returns:
        ``(clipped_sum, num_clipped)``: the sum over examples of the clipped
        gradients (the leaves without their batch axis) and how many examples were
        clipped (multiplier below 1).

    Raises:
        ValueError: a leaf has no batch axis or another batch size than the first
            leaf, or ``l2_norm_clip`` is negative or NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> grads = [jnp.array([[0.0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]  # norms 0, 5, 5, 5
        >>> total, clipped = aj.per_example_global_norm_clip(grads, 1.25)  # 3 rows times 1/4
        >>> total[0].tolist(), int(clipped)
        ([1.75, 1.75, 1.75], 3)

    Reference: Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
    """
    check_bound("l2_norm_clip", l2_norm_clip)
    leaves_with_paths = jax.tree_util.tree_flatten_with_path(grads)[0]
    if not leaves_with_paths:
        raise ValueError("per_example_global_norm_clip: grads has no leaves")
    batch = jnp.shape(leaves_with_paths[0][1])[:1]
    for path, leaf in leaves_with_paths:
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[:1] != batch:
            raise ValueError(
                "per_example_global_norm_clip expects every leaf of grads to have the "
                f"examples on axis 0 (batch size {batch[0] if batch else None}); the leaf at "
                f"{jax.tree_util.keystr(path) or '<root>'} has shape {jnp.shape(leaf)}"
            )
    norms = jax.vmap(global_norm)(grads)
    clip = cast_like(l2_norm_clip, norms)
    safe_norms = jnp.where(norms > clip, norms, jnp.ones_like(norms))
    multipliers = jnp.where(norms > clip, clip / safe_norms, jnp.ones_like(norms))
    num_clipped = jnp.sum(multipliers < 1.0)

    def clipped_sum(g: jax.Array) -> jax.Array:
        return jnp.tensordot(cast_like(multipliers, g), g, axes=1)

    return jax.tree_util.tree_map(clipped_sum, grads), num_clipped
