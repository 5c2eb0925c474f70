r"""L-BFGS: precondition by an inverse-Hessian estimate built from the last :math:`m` steps.

With :math:`s_k = w_{k+1} - w_k` and :math:`y_k = g_{k+1} - g_k`, BFGS updates its
inverse-Hessian estimate so that :math:`P y_k = s_k` (the secant condition) with the
least change:

.. math::
   P_{k+1} = V_k^\top P_k V_k + \rho_k s_k s_k^\top, \qquad
   V_k = I - \rho_k y_k s_k^\top, \qquad \rho_k = 1/\langle y_k, s_k\rangle .

L-BFGS keeps only the last :math:`m` pairs and starts from :math:`P = \gamma_k I`,
:math:`\gamma_k = \langle s, y\rangle / \langle y, y\rangle` of the latest pair (at
the first step :math:`\min(1, 1/\|g_0\|)`, so the first step has length at most 1);
:math:`P_k g_k` is then two loops of inner products over the pairs (Nocedal & Wright,
Algorithm 7.4), :math:`O(mn)` work and memory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.core import Tracer
from jax.sharding import NamedSharding, PartitionSpec

from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    cast_like,
    safe_sqrt,
    squared_magnitude,
    widest_dtype,
)
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.linesearch import tree_vdot


def stacked_zeros_like(x: Any, rows: int) -> jax.Array:
    """Zeros of shape ``(rows, *x.shape)``, sharded like ``x`` along its own axes."""
    shape, dtype = (rows, *jnp.shape(x)), jnp.result_type(x)
    sharding = getattr(x, "sharding", None)
    concrete = isinstance(x, jax.ShapeDtypeStruct) or (
        isinstance(x, jax.Array) and not isinstance(x, Tracer) and x.committed
    )
    if concrete and isinstance(sharding, NamedSharding):
        spec = PartitionSpec(None, *sharding.spec)
        return jnp.zeros(shape, dtype, device=NamedSharding(sharding.mesh, spec))
    return jnp.zeros(shape, dtype)


def _divide(numerator: jax.Array, denominator: jax.Array, otherwise: Any) -> jax.Array:
    """``numerator / denominator``, ``otherwise`` where the denominator is 0 (no NaN derivative)."""
    nonzero = denominator != 0
    safe = jnp.where(nonzero, denominator, jnp.ones_like(denominator))
    return jnp.where(nonzero, numerator / safe, jnp.asarray(otherwise).astype(safe.dtype))


def _squared_norm(tree: PyTree) -> jax.Array:
    total: Any = 0
    for x in jax.tree_util.tree_leaves(tree):
        total = total + jnp.sum(squared_magnitude(x))
    return jnp.asarray(total)


class ScaleByLbfgsState(NamedTuple):
    """State of :class:`scale_by_lbfgs` (optax's fields, less its step counter).

    ``params``, ``updates``: the previous step's parameters and incoming updates;
    ``diff_params_memory``, ``diff_updates_memory``: the last :math:`m` pairs
    :math:`s_k, y_k`, each leaf stacked along a new first axis of length :math:`m`
    (a ring buffer); ``weights_memory``: their :math:`\rho_k`.
    """

    params: PyTree
    updates: PyTree
    diff_params_memory: PyTree
    diff_updates_memory: PyTree
    weights_memory: jax.Array


class ScaleByLbfgs(Transform):
    r"""Multiply the updates by the L-BFGS inverse-Hessian estimate: :math:`u_k = P_k g_k`.

    The memory is updated first (from the parameters and updates of this call and the
    previous one), then the updates are preconditioned, so a line search after this block
    can accept or shrink the step before the next pair is formed.  Pairs with
    :math:`\langle y, s\rangle = 0` get :math:`\rho = 0` (ignored).  The numbers of
    ``optax.scale_by_lbfgs``; unlike optax, the first step's
    :math:`\gamma_0 = \min(1, 1/\|g_0\|)` is differentiated (optax stops its gradient,
    which makes its derivative with respect to anything :math:`g_0` depends on, such as
    the initial point or the data, miss that term), and :math:`1/\langle y, s\rangle` is
    guarded so its derivative is finite where the pair is empty.

    Args:
        memory_size: :math:`m \ge 1`, the number of pairs kept (a Python int).
        scale_init_precond: start from :math:`\gamma_k I` (else from :math:`I`).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_lbfgs()
        >>> params = jnp.array([0.3, 0.4])
        >>> updates, _ = tx.update(params, tx.init(params), params)  # g_0 = (0.3, 0.4): ||g_0|| = 0.5
        >>> updates.tolist()  # gamma_0 = min(1, 1 / 0.5) = 1: P_0 g_0 = g_0
        [0.30000001192092896, 0.4000000059604645]

    References: Nocedal & Wright, "Numerical Optimization", 2006, Algorithms 7.4 and 7.5;
    Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
    Math. Programming 1989.
    """

    memory_size: int = static(default=10)
    scale_init_precond: bool = static(default=True)

    def __check_init__(self):
        check_count("memory_size", self.memory_size, low=1)

    def init_state(self, params):
        leaves = jax.tree_util.tree_leaves(params)
        weights_dtype = widest_dtype(
            jnp.float32, *(jnp.finfo(jnp.result_type(x)).dtype for x in leaves)
        )
        stacked = jax.tree_util.tree_map(lambda x: stacked_zeros_like(x, self.memory_size), params)
        return ScaleByLbfgsState(
            zeros_like(params),
            zeros_like(params),
            stacked,
            jax.tree_util.tree_map(lambda x: x.copy(), stacked),
            jnp.zeros([self.memory_size], weights_dtype),
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_lbfgs")
        if params is None:
            raise ValueError(
                "scale_by_lbfgs needs the parameters: call update(grads, state, params)"
            )
        m = self.memory_size
        k = count - 1  # optax's 0-based iteration
        first = k == 0
        memory_index, previous_index = k % m, (k - 1) % m
        weights = state.weights_memory

        # 1. The newest pair (s, y), rho = 1/<y, s>; zero at the first step.
        diff_params = map_params(jnp.subtract, params, state.params, names=("state.params",))
        diff_updates = map_params(jnp.subtract, updates, state.updates, names=("state.updates",))
        curvature = jnp.real(tree_vdot(diff_updates, diff_params))
        weight = _divide(jnp.ones_like(curvature), curvature, 0.0)

        def unless_first(x):
            return jnp.where(first, jnp.zeros_like(x), x)

        diff_params, diff_updates = (
            jax.tree_util.tree_map(unless_first, tree) for tree in (diff_params, diff_updates)
        )
        weight = unless_first(weight)
        s_memory, y_memory = (
            jax.tree_util.tree_map(lambda mem, x: mem.at[previous_index].set(x), memory, new)
            for memory, new in (
                (state.diff_params_memory, diff_params),
                (state.diff_updates_memory, diff_updates),
            )
        )
        weights = weights.at[previous_index].set(weight.astype(weights.dtype))

        # 2. gamma: <s, y>/<y, y> of the newest pair; min(1, 1/||g_0||) at the first step.
        if self.scale_init_precond:
            gamma = _divide(
                jnp.real(tree_vdot(diff_updates, diff_params)), _squared_norm(diff_updates), 1.0
            )
            norm = safe_sqrt(_squared_norm(updates))
            inverse = _divide(jnp.ones_like(norm), norm, 1.0)
            capped = jnp.where(norm > 0, jnp.minimum(jnp.ones_like(inverse), inverse), inverse)
            gamma = jnp.where(first, capped, gamma)
        else:
            gamma = jnp.ones([], weights.dtype)

        # 3. Two-loop recursion (Algorithm 7.4), the oldest pair innermost.
        indices = (memory_index + jnp.arange(m, dtype=jnp.result_type(memory_index))) % m

        def pair(i):
            return (jax.tree_util.tree_map(lambda x: x[i], mem) for mem in (s_memory, y_memory))

        def right(vector, i):
            s, y = pair(i)
            alpha = weights[i] * jnp.real(tree_vdot(s, vector))
            return _add_scaled(vector, -alpha, y), alpha

        vector, alphas = jax.lax.scan(right, updates, indices, reverse=True)
        vector = jax.tree_util.tree_map(lambda v: (cast_like(gamma, v) * v).astype(v.dtype), vector)

        def left(vector, index_alpha):
            i, alpha = index_alpha
            s, y = pair(i)
            beta = weights[i] * jnp.real(tree_vdot(y, vector))
            return _add_scaled(vector, alpha - beta, s), beta

        vector, _ = jax.lax.scan(left, vector, (indices, alphas))
        return vector, ScaleByLbfgsState(params, updates, s_memory, y_memory, weights)


def _add_scaled(x: PyTree, scalar: jax.Array, y: PyTree) -> PyTree:
    r""":math:`x + c\,y` leaf by leaf, in ``x``'s dtypes."""
    return jax.tree_util.tree_map(lambda a, b: (a + cast_like(scalar, b) * b).astype(a.dtype), x, y)


scale_by_lbfgs = ScaleByLbfgs
