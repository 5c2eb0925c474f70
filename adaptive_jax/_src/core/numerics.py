"""Small numerical primitives shared by every transformation: one place for each.

* :func:`once`, :func:`as_dtype` — a scalar (a hyperparameter, a bias correction) in
  the dtype a leaf needs, computed once per step and dtype instead of once per leaf.
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

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

COUNT_DTYPE = jnp.int32
_COUNT_MAX = jnp.iinfo(COUNT_DTYPE).max

# -- scalars of one step -----------------------------------------------------------------
#
# A block maps a formula over the leaves; its hyperparameters are shared by every leaf
# (``per_leaf`` hands each leaf the same object).  Written leaf by leaf, each leaf would
# cast beta to its dtype, compute 1 - beta, 1 - beta^t, ...: the same scalar operations
# once per leaf, which JAX traces and XLA compiles once per leaf (no common-subexpression
# elimination happens before XLA).  ``once`` computes each of them once per step and
# dtype: the compiled step holds the scalar work once and per leaf only what the formula
# does to the leaf's elements.

_STEP: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "adaptive_jax_step_scalars", default=None
)


@contextlib.contextmanager
def one_step() -> Iterator[None]:
    """The scope within which :func:`once` reuses results: ``Transform.update`` opens one."""
    token = _STEP.set({})
    try:
        yield
    finally:
        _STEP.reset(token)


def _key(argument: Any) -> Any:
    if isinstance(argument, np.dtype):
        return argument
    return id(argument)


def once(function: Callable[..., Any], *arguments: Any) -> Any:
    """``function(*arguments)``, computed once per step for the same arguments.

    Inside an update (:func:`one_step`) the result is kept and returned again for the
    same ``function`` (a module-level function, so that its identity is stable) and the
    same ``arguments``: dtypes by value, everything else by identity -- the hyperparameter
    objects every leaf shares, the step count.  The arguments are kept alive with the
    result, so an identity is never reused while it is a key.  A result is reused only in
    the JAX trace that computed it (not inside a ``cond``, ``eval_shape`` or ``custom_jvp``
    traced within the step, nor outside one), so no tracer leaks.  Outside an update it is
    simply ``function(*arguments)``.
    """
    memo = _STEP.get()
    if memo is None:
        return function(*arguments)
    key = (function, *(_key(a) for a in arguments))
    trace = jax.extend.core.get_opaque_trace_state(convention="adaptive_jax")
    entry = memo.get(key)
    if entry is not None and entry[1] == trace:
        return entry[2]
    result = function(*arguments)
    memo[key] = (arguments, trace, result)
    return result


def _cast(value: Any, dtype: np.dtype) -> jax.Array:
    # astype also makes a weakly typed scalar (a Python number) strongly typed: used
    # weakly typed, JAX would insert that conversion at every use.
    return jnp.asarray(value).astype(dtype)


def as_dtype(value: Any, dtype: Any) -> jax.Array:
    """A scalar ``value`` (number or array) as a ``dtype`` array, cast once per step.

    Differentiable; no conversion at all where ``value`` already has that dtype.  An
    array with elements is cast where it is (it is a leaf's own, not shared).
    """
    if jnp.ndim(value):
        return _cast(value, jnp.dtype(dtype))
    return once(_cast, value, jnp.dtype(dtype))


def _complement(value: Any, dtype: np.dtype) -> jax.Array:
    return 1 - as_dtype(value, dtype)


def one_minus(value: Any, dtype: Any) -> jax.Array:
    r""":math:`1 - \beta` in ``dtype`` (an EMA's weight of the new value), once per step."""
    return once(_complement, value, jnp.dtype(dtype))


@jax.custom_jvp
def safe_sqrt(x: jax.Array) -> jax.Array:
    r"""``sqrt(x)`` for ``x >= 0`` whose derivative at ``x = 0`` is taken to be 0.

    Negative and NaN inputs give NaN, as ``jnp.sqrt``.
    """
    # The primal is itself NaN-free to differentiate at x >= 0: forward-over-reverse
    # through lax.scan differentiates it with JAX's own rules, bypassing the custom one
    # (with a plain jnp.sqrt primal, the Hessian-vector product there is NaN).  So the
    # root is taken of 1 where x = 0 (sqrt's own derivative there would be inf, and
    # 0 * inf = NaN) and the exact 0 selected after it.  One comparison, x == 0 rather
    # than x > 0, and no third branch: sqrt itself keeps negative and NaN inputs NaN.
    zero = jnp.zeros_like(x)
    at_zero = x == zero
    root = jnp.sqrt(jnp.where(at_zero, jnp.ones_like(x), x))
    return jnp.where(at_zero, zero, root)


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
    count = jnp.asarray(count).astype(COUNT_DTYPE)
    return jnp.minimum(count, _COUNT_MAX - 1) + 1


def compute_dtype(value: Any) -> jnp.dtype:
    """The float dtype used for scalar hyperparameter arithmetic: at least float32."""
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def _bias_correction(beta: Any, count: jax.Array) -> jax.Array:
    beta = as_dtype(beta, compute_dtype(beta))
    return 1 - beta ** as_dtype(count, beta.dtype)


def bias_correction(beta: Any, count: jax.Array) -> jax.Array:
    r"""The bias-correction denominator :math:`1 - \beta^t` of an EMA started at 0.

    ``count`` is the 1-based step :math:`t`.  Computed in at least float32, once per
    step (:func:`once`), and differentiable in ``beta`` (also at ``beta = 0``).
    """
    return once(_bias_correction, beta, count)


def widest_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype JAX's promotion lattice gives ``dtypes`` (e.g. bfloat16, float16 -> float32).

    Chosen explicitly, so it also works under ``jax_numpy_dtype_promotion="strict"``,
    where mixing dtypes must be spelled out with casts.
    """
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.result_type(*(jnp.dtype(d) for d in dtypes)))


def cast_like(scalar: Any, array: jax.Array) -> jax.Array:
    """Cast a hyperparameter (Python number or array) to ``array``'s dtype, once per step.

    Keeps ``jax_numpy_dtype_promotion="strict"`` happy and never promotes
    low-precision parameters; the cast is differentiable (see :func:`as_dtype`).
    """
    return as_dtype(scalar, jnp.result_type(array))


def squared_magnitude(g: jax.Array, dtype: Any = None) -> jax.Array:
    """:math:`|g|^2` (real also for complex ``g``), in ``dtype`` if given."""
    g = g if dtype is None else g.astype(widest_dtype(dtype, g.dtype))
    square = jnp.real(g * jnp.conj(g)) if jnp.iscomplexobj(g) else g * g
    return square if dtype is None else square.astype(dtype)


def ema(previous: jax.Array, new: jax.Array, decay: Any) -> jax.Array:
    r""":math:`\beta x_{t-1} + (1-\beta) x_t`, stored in ``previous``'s dtype.

    Computed in at least float32: in bfloat16, :math:`\beta_2 = 0.999` itself rounds
    to 1 and the average would never move.  :math:`\beta` and :math:`1-\beta` are
    computed once per step (:func:`as_dtype`, :func:`one_minus`).
    """
    wide = widest_dtype(previous.dtype, jnp.float32)
    average = as_dtype(decay, wide) * previous.astype(wide) + one_minus(decay, wide) * new.astype(
        wide
    )
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
