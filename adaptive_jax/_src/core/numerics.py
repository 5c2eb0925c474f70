"""Small numerical primitives shared by every transformation: one place for each.

* :func:`safe_sqrt` — a square root whose derivative at 0 is 0 instead of ``inf``.
  Second moments of a parameter that has never received a gradient are exactly 0,
  and ``d sqrt(v) = dv / (2 sqrt(v))`` turns ``0 * inf`` into NaN meta-gradients
  (optax and torchopt both return NaN there).  At such a point the tangent ``dv``
  is itself 0 (``v`` is a sum of squares of gradients that are all 0), and the
  update's true derivative does not depend on the root's slope, so 0 is the value
  of the derivative of the composite map.  The rule is a ``jax.custom_jvp``, so
  forward mode, reverse mode and higher orders all keep working.
* :func:`bias_correction` — ``1 - beta**t`` computed in at least float32, so that
  bfloat16 hyperparameters never make it round to 0.
* :func:`increment` — a step counter that saturates instead of overflowing.
* :func:`squared_magnitude`, :func:`ema`, :func:`global_norm`, :func:`squared_global_norm`
  — the arithmetic every moment estimate and clipping block shares.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

COUNT_DTYPE = jnp.int32
_COUNT_MAX = jnp.iinfo(COUNT_DTYPE).max


@jax.custom_jvp
def safe_sqrt(x: jax.Array) -> jax.Array:
    r"""``sqrt(x)`` for ``x >= 0`` whose derivative at ``x = 0`` is taken to be 0."""
    # The primal is itself NaN-free to differentiate: forward-over-reverse through
    # lax.scan differentiates it with JAX's own rules, bypassing the custom one.
    positive = x > 0
    root = jnp.sqrt(jnp.where(positive, x, jnp.ones_like(x)))
    # Only an exact 0 maps to 0: NaN (and negative) inputs must stay NaN, not vanish.
    not_positive = jnp.where(x == 0, jnp.zeros_like(x), jnp.full_like(x, jnp.nan))
    return jnp.where(positive, root, not_positive)


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    root = safe_sqrt(x)
    positive = x > 0
    # Evaluate 1/(2 sqrt(x)) only where it is finite so that no NaN leaks into
    # the derivative (or into its own derivative, for second order).
    inv_two_root = 0.5 / jnp.where(positive, root, jnp.ones_like(root))
    return root, jnp.where(positive, dx * inv_two_root, jnp.zeros_like(dx))


def increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest int32 instead of wrapping around."""
    return jnp.where(count < _COUNT_MAX, count + 1, _COUNT_MAX).astype(COUNT_DTYPE)


def compute_dtype(value: Any) -> jnp.dtype:
    """The float dtype used for scalar hyperparameter arithmetic: at least float32."""
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def bias_correction(beta: Any, count: jax.Array) -> jax.Array:
    r"""The bias-correction denominator :math:`1 - \beta^t` of an EMA started at 0.

    ``count`` is the 1-based step :math:`t`.  Computed in at least float32 and
    differentiable in ``beta`` (also at ``beta = 0``).
    """
    beta = jnp.asarray(beta)
    beta = beta.astype(compute_dtype(beta))
    return 1 - beta ** count.astype(beta.dtype)


def widest_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype JAX's promotion lattice gives ``dtypes`` (e.g. bfloat16, float16 -> float32).

    Chosen explicitly, so it also works under ``jax_numpy_dtype_promotion="strict"``,
    where mixing dtypes must be spelled out with casts.
    """
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.result_type(*(jnp.dtype(d) for d in dtypes)))


def cast_like(scalar: Any, array: jax.Array) -> jax.Array:
    """Cast a hyperparameter (Python number or array) to ``array``'s dtype.

    Keeps ``jax_numpy_dtype_promotion="strict"`` happy and never promotes
    low-precision parameters; the cast is differentiable.
    """
    return jnp.asarray(scalar).astype(jnp.result_type(array))


def squared_magnitude(g: jax.Array, dtype: Any = None) -> jax.Array:
    """:math:`|g|^2` (real also for complex ``g``), in ``dtype`` if given."""
    g = g if dtype is None else g.astype(widest_dtype(dtype, g.dtype))
    square = jnp.real(g * jnp.conj(g)) if jnp.iscomplexobj(g) else g * g
    return square if dtype is None else square.astype(dtype)


def ema(previous: jax.Array, new: jax.Array, decay: Any) -> jax.Array:
    r""":math:`\beta x_{t-1} + (1-\beta) x_t`, stored in ``previous``'s dtype.

    Computed in at least float32: in bfloat16, :math:`\beta_2 = 0.999` itself rounds
    to 1 and the average would never move.
    """
    wide = widest_dtype(previous.dtype, jnp.float32)
    decay = jnp.asarray(decay).astype(wide)
    average = decay * previous.astype(wide) + (1 - decay) * new.astype(wide)
    return average.astype(previous.dtype)


def global_norm(tree: Any) -> jax.Array:
    r""":math:`\|g\|_2` over all leaves, with a derivative that is 0 (not NaN) at :math:`g=0`.

    Summed in float64 if any leaf is float64, else in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> print(aj.global_norm({"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}))
        5.0
    """
    return safe_sqrt(squared_global_norm(tree))


def squared_global_norm(tree: Any) -> jax.Array:
    r""":math:`\|g\|_2^2 = \sum_i |g_i|^2` over all leaves (no root: smooth at :math:`g = 0`).

    Summed in float64 if any leaf is float64, else in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> from adaptive_jax._src.core.numerics import squared_global_norm
        >>> print(squared_global_norm({"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}))
        25.0
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros([])
    wide = any(jnp.finfo(jnp.result_type(x)).bits == 64 for x in leaves)
    dtype = jnp.float64 if wide else jnp.float32
    return jnp.asarray(sum(jnp.sum(squared_magnitude(x, dtype)) for x in leaves))
