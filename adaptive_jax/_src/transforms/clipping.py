r"""Clipping: bound the size of the update, entry by entry, leaf by leaf, unit by unit or globally.

Every block here takes optax's name and arguments and gives its numbers.  Where a
bound is a norm (global, per leaf, per unit) the norm is taken with
:func:`~adaptive_jax._src.core.numerics.safe_sqrt`, whose derivative at 0 is 0: a
leaf whose gradient is exactly zero gets finite meta-gradients (optax's ``jnp.sqrt``
gives NaN there).  Per-example clipping (differential privacy) is in
:mod:`adaptive_jax._src.transforms.per_example`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    EPSILON,
    NONNEGATIVE,
    POSITIVE,
    Domain,
    value_at,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    cast_like,
    global_norm,
    safe_sqrt,
    squared_magnitude,
    widest_dtype,
)
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

    max_delta: Any = hyperparameter(domain=CLIPPING_BOUND)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "clip")
        bound = value_at(self.max_delta, count - 1, "max_delta")
        return jax.tree_util.tree_map(
            lambda u: jnp.clip(u, -cast_like(bound, u), cast_like(bound, u)), updates
        ), state


class ClipByBlockRms(Transform):
    r"""Rescale each leaf so that its root mean square is at most :math:`c`: :math:`u = g / \max(1, \mathrm{rms}(g)/c)`.

    :math:`\mathrm{rms}(g) = \sqrt{\tfrac1n \sum_i |g_i|^2}` over the entries of one
    leaf (a weight matrix, a bias vector).  optax's ``clip_by_block_rms``, with its
    numbers; the root is :func:`~adaptive_jax.extend.safe_sqrt`, so a leaf whose gradient
    is exactly 0 gets a finite meta-gradient (optax's is NaN).

    Args:
        threshold: :math:`c > 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.clip_by_block_rms(1.0)
        >>> grads = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([0.5])}  # rms 3.5355 and 0.5
        >>> clipped, _ = tx.update(grads, tx.init(grads))
        >>> [round(x, 4) for x in clipped["w"].tolist()], clipped["b"].tolist()  # w / 3.5355
        ([0.8485, 1.1314], [0.5])
    """

    threshold: Any = hyperparameter(domain=POSITIVE)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "clip_by_block_rms")

        def clip_leaf(u):
            wide = widest_dtype(jnp.real(u).dtype, jnp.float32)
            rms = safe_sqrt(jnp.mean(squared_magnitude(u, wide)))
            denominator = jnp.maximum(1.0, rms / cast_like(self.threshold, rms))
            return u / cast_like(denominator, u)

        return jax.tree_util.tree_map(clip_leaf, updates), state


def unitwise_norm(x: jax.Array, axis: Any = None, where: str = "<root>") -> jax.Array:
    r"""The L2 norm of each unit of ``x``, broadcast to ``x``'s shape (optax's ``unitwise_norm``).

    ``axis=None`` chooses the units by rank, as optax does: a scalar or a vector (also
    after squeezing) is one unit; a matrix ``(in, out)`` or a 3-D ``(in, heads, out)``
    weight has one unit per column of axis 0; a 4-D convolution ``HWIO`` and a 5-D
    ``DHWIO`` kernel one per output channel.  The root is a
    :func:`~adaptive_jax.extend.safe_sqrt` (derivative 0 at a zero unit).  Computed in
    at least float32.

    Raises:
        ValueError: ``axis`` is None and ``x`` has more than 5 dimensions (naming ``where``).
    """
    wide = widest_dtype(jnp.real(x).dtype, jnp.float32)
    squares = squared_magnitude(x, wide)
    if axis is None:
        if jnp.squeeze(x).ndim <= 1:
            axis = None
        elif x.ndim in (2, 3):
            axis = 0
        elif x.ndim in (4, 5):
            axis = tuple(range(x.ndim - 1))
        else:
            raise ValueError(
                f"adaptive_grad_clip: the parameter at {where} has shape {x.shape}: units are "
                "chosen by rank for 1 to 5 dimensions; pass axis= for other shapes"
            )
    return jnp.broadcast_to(safe_sqrt(jnp.sum(squares, axis=axis, keepdims=True)), x.shape)


class AdaptiveGradClip(Transform):
    r"""Adaptive gradient clipping (AGC): bound each unit's gradient norm by :math:`\lambda` times its parameter norm.

    For each unit :math:`i` (a column of a weight matrix, an output channel of a
    convolution; see :func:`unitwise_norm`):

    .. math::

       u_i = \begin{cases}
         g_i & \|g_i\| < \lambda \max(\|\theta_i\|, \epsilon) \\
         g_i\, \lambda \max(\|\theta_i\|, \epsilon) / \max(\|g_i\|, 10^{-6}) & \text{otherwise.}
       \end{cases}

    optax's ``adaptive_grad_clip``, with its numbers.  Needs the parameters.  Both
    norms are taken with :func:`~adaptive_jax.extend.safe_sqrt`, so a zero gradient
    (or zero-initialised parameters) gives finite meta-gradients where optax gives NaN.

    Args:
        clipping: :math:`\lambda \ge 0`, the largest allowed ratio of gradient norm
            to parameter norm.
        eps: :math:`\epsilon \ge 0`, the smallest parameter norm assumed (so
            zero-initialised units can move).
        axis: the axis or axes of each leaf that make up a unit; ``None`` chooses by
            rank (:func:`unitwise_norm`).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adaptive_grad_clip(0.1)
        >>> params, grads = jnp.array([3.0, 4.0]), jnp.array([0.0, 1.0])  # norms 5 and 1
        >>> clipped, _ = tx.update(grads, tx.init(params), params)
        >>> [round(x, 6) for x in clipped.tolist()]  # rescaled to norm 0.1 * 5 = 0.5
        [0.0, 0.5]

    Reference: Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image
    Recognition Without Normalization", ICML 2021.
    """

    clipping: Any = hyperparameter(domain=NONNEGATIVE)
    eps: Any = hyperparameter(default=1e-3, domain=EPSILON)
    axis: Any = static(default=None, converter=lambda a: tuple(a) if isinstance(a, list) else a)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "adaptive_grad_clip")
        if params is None:
            raise ValueError(
                "adaptive_grad_clip needs the parameters: call update(grads, state, params)"
            )
        paths_and_grads, treedef = jax.tree_util.tree_flatten_with_path(updates)
        param_leaves = treedef.flatten_up_to(params)

        def clip_leaf(path, g, p):
            where = jax.tree_util.keystr(path) or "<root>"
            g_norm = unitwise_norm(g, self.axis, where)
            p_norm = unitwise_norm(p, self.axis, where)
            max_norm = cast_like(self.clipping, p_norm) * jnp.maximum(
                p_norm, cast_like(self.eps, p_norm)
            )
            factor = max_norm / jnp.maximum(g_norm, 1e-6)
            return jnp.where(g_norm < max_norm, g, g * cast_like(factor, g))

        out = [clip_leaf(path, g, p) for (path, g), p in zip(paths_and_grads, param_leaves)]
        return jax.tree_util.tree_unflatten(treedef, out), state


clip = Clip
clip_by_block_rms = ClipByBlockRms
clip_by_global_norm = ClipByGlobalNorm
adaptive_grad_clip = AdaptiveGradClip
