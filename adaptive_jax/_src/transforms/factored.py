r"""Adafactor's blocks: a factored second moment (:math:`O(n + m)` numbers per :math:`n \times m` matrix) and a step relative to each tensor's scale.

Adam keeps :math:`v_t`, one number per parameter.  For a matrix gradient
:math:`G_t \in \mathbb{R}^{n\times m}` Adafactor keeps only the EMAs of its row and
column means of squares,

.. math::
   R_t = \hat\beta_t R_{t-1} + (1-\hat\beta_t)\,\mathrm{mean}_j(G_t^2 + \epsilon), \qquad
   C_t = \hat\beta_t C_{t-1} + (1-\hat\beta_t)\,\mathrm{mean}_i(G_t^2 + \epsilon),

and rebuilds the rank-one estimate :math:`\hat V_t = R_t C_t^\top / \mathrm{mean}(R_t)`
(the minimiser of the generalised KL divergence to :math:`V_t` among rank-one
matrices, Shazeer & Stern 2018, §3), so the state is :math:`n + m` numbers instead of
:math:`nm`.  The decay grows with the step, :math:`\hat\beta_t = 1 - t^{-c}`
(:math:`\hat\beta_1 = 0`: no bias correction is needed).

Which leaves are factored follows optax: a leaf with at least two dimensions whose
second-largest dimension is at least ``min_dim_size_to_factor`` is factored over its
two largest dimensions (ties: the later axis counts as the larger); the other
dimensions of a 3-D or larger leaf are kept, so a :math:`(k, n, m)` leaf stores
:math:`k(n + m)` numbers.  Every other leaf keeps the full EMA :math:`V_t`.

Adafactor also rescales by block RMS (a leaf's root mean square): the update is
clipped to RMS :math:`\le d` and multiplied by the parameter's RMS.  The clipping and
Adafactor's momentum (an EMA of the updates stored in float32) are private here:
``clip_by_block_rms`` and ``ema_of_updates`` are public blocks of other branches, and
adafactor moves to them when they land (with these numbers: optax's).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.sharding import NamedSharding, PartitionSpec

from adaptive_jax._src.core.hyperparameter import (
    DECAY_RATE,
    EPSILON,
    NONNEGATIVE,
    PerParameter,
    check_count,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    cast_like,
    ema,
    safe_sqrt,
    squared_magnitude,
    widest_dtype,
)
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.preconditioning import preconditioned
from adaptive_jax._src.transforms.scaling import scale_leaves


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size: int
) -> tuple[int, int] | None:
    """``(d1, d0)``: the second-largest and the largest axis to factor over, or None.

    The rule (and the tie-break of ``np.argsort``) of ``optax.scale_by_factored_rms``.
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size:
        return None
    return int(order[-2]), int(order[-1])


def _zeros_without_axis(x: Any, axis: int, dtype: Any) -> jax.Array:
    """Zeros shaped like ``x`` without ``axis``, sharded like ``x``'s remaining axes."""
    shape = tuple(s for i, s in enumerate(x.shape) if i != axis)
    sharding = getattr(x, "sharding", None)
    concrete = isinstance(x, jax.ShapeDtypeStruct) or (
        isinstance(x, jax.Array) and not isinstance(x, Tracer) and x.committed
    )
    if concrete and isinstance(sharding, NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (len(x.shape) - len(sharding.spec))
        reduced = PartitionSpec(*(s for i, s in enumerate(spec) if i != axis))
        return jnp.zeros(shape, dtype, device=NamedSharding(sharding.mesh, reduced))
    return jnp.zeros(shape, dtype)


def decay_at(count: jax.Array, decay_rate: Any, step_offset: Any) -> jax.Array:
    r""":math:`\hat\beta_t = 1 - (t - t_0)^{-c}` at the 1-based step :math:`t`; 0 while :math:`t \le t_0`.

    optax computes this in float32 whatever the parameters' precision; here it is
    computed in the hyperparameters' precision (at least float32).  Where optax's
    formula is undefined (:math:`t \le t_0`: a negative or zero base) the decay is 0:
    the estimate restarts from the current gradient.
    """
    dtype = widest_dtype(jnp.result_type(decay_rate), jnp.result_type(step_offset), jnp.float32)
    t = count.astype(dtype) - jnp.asarray(step_offset).astype(dtype)
    started = t > 0
    base = jnp.where(started, t, jnp.ones_like(t))  # no NaN in the unused branch's derivative
    return jnp.where(started, 1 - base ** -jnp.asarray(decay_rate).astype(dtype), jnp.zeros_like(t))


def _ratio(x: jax.Array, mean: jax.Array) -> jax.Array:
    """``x / mean``, 0 where the mean is 0 (all statistics 0), with finite derivatives."""
    nonzero = mean != 0
    return jnp.where(nonzero, x / jnp.where(nonzero, mean, jnp.ones_like(mean)), jnp.zeros_like(x))


class ScaleByFactoredRmsState(NamedTuple):
    """State of :class:`scale_by_factored_rms`, one entry per parameter leaf.

    ``v_row``, ``v_col``: row and column statistics :math:`R_t, C_t` of factored leaves
    (``None`` for the others); ``v``: the full EMA :math:`V_t` of the others (``None``
    for factored leaves).  optax stores a ``(1,)`` placeholder where we store ``None``.
    """

    v_row: PyTree
    v_col: PyTree
    v: PyTree


class ScaleByFactoredRms(Transform):
    r"""Divide by Adafactor's factored RMS: :math:`u_t = G_t / \sqrt{\hat V_t}`.

    :math:`\hat V_t = R_t C_t^\top/\mathrm{mean}(R_t)` for factored leaves and the full
    EMA :math:`V_t` of :math:`G_t^2 + \epsilon` for the others (see the module docstring),
    with :math:`\hat\beta_t = 1 - (t - t_0)^{-c}`.  The numbers of
    ``optax.scale_by_factored_rms`` (whose decay is rounded to float32; ours is computed
    in the hyperparameters' precision).  Where :math:`\hat V_t = 0` (a zero gradient
    with :math:`\epsilon = 0`) the step is 0, and the derivative of the root there is
    taken as 0, so meta-gradients stay finite (optax's :math:`v^{-1/2}` gives NaN).

    Args:
        factored: factor the second moment of matrices (False: a full EMA everywhere).
        decay_rate: :math:`c \ge 0`, the exponent of the decay schedule.
        step_offset: :math:`t_0 \ge 0`, subtracted from the step (for fine-tuning from a
            restored state).
        min_dim_size_to_factor: factor only leaves whose two largest dimensions are at
            least this (a Python int).
        epsilon: :math:`\epsilon \ge 0`, added to the squared gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_factored_rms(min_dim_size_to_factor=2)
        >>> g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> u, state = tx.update(g, tx.init(g))
        >>> state.inner.v_row.tolist(), state.inner.v_col.tolist()  # beta_1 = 0: row and column means of g^2
        ([2.5, 12.5], [5.0, 10.0])
        >>> # V_hat = R C^T / mean(R): u_00 = 1 / sqrt(2.5 * 5 / 7.5)
        >>> round(float(u[0, 0]), 6)
        0.774597

    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", ICML 2018.
    """

    factored: bool = static(default=True)
    decay_rate: Any = hyperparameter(default=0.8, domain=NONNEGATIVE)
    step_offset: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    min_dim_size_to_factor: int = static(default=128)
    epsilon: Any = hyperparameter(default=1e-30, domain=EPSILON)

    def __check_init__(self):
        check_count("min_dim_size_to_factor", self.min_dim_size_to_factor, low=0)

    def _dims(self, x: Any) -> tuple[int, int] | None:
        return factored_dims(tuple(jnp.shape(x)), self.factored, self.min_dim_size_to_factor)

    def init_state(self, params):
        def init(p):
            dtype = jnp.finfo(jnp.result_type(p)).dtype
            dims = self._dims(p)
            if dims is None:
                return None, None, zeros_like(p, dtype)
            d1, d0 = dims
            return _zeros_without_axis(p, d0, dtype), _zeros_without_axis(p, d1, dtype), None

        return _unzip(params, [init(p) for p in jax.tree_util.tree_leaves(params)])

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_factored_rms")
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        rows, cols, fulls = (treedef.flatten_up_to(tree) for tree in state)
        decay = decay_at(count, self.decay_rate, self.step_offset)
        out, new = [], []
        for g, row, col, full in zip(leaves, rows, cols, fulls):
            dtype = jnp.finfo(jnp.result_type(g)).dtype
            wide = widest_dtype(dtype, jnp.float32)
            g2 = squared_magnitude(g, wide) + jnp.asarray(self.epsilon).astype(wide)
            dims = self._dims(g)
            if dims is None:
                full = ema(full, g2, decay)
                nu = full
            else:
                d1, d0 = dims
                row = ema(row, jnp.mean(g2, axis=d0), decay)
                col = ema(col, jnp.mean(g2, axis=d1), decay)
                # The mean of R over the axis that was d1 (one axis fewer after d0 went).
                row_axis = d1 - 1 if d1 > d0 else d1
                ratio = _ratio(row, jnp.mean(row, axis=row_axis, keepdims=True))
                nu = jnp.expand_dims(ratio, d0) * jnp.expand_dims(col, d1)
            out.append(preconditioned(g, nu, 0.0, 0.0))
            new.append((row, col, full) if dims is not None else (None, None, full))
        return jax.tree_util.tree_unflatten(treedef, out), _unzip(updates, new)


def _unzip(tree: PyTree, triples: list[tuple[Any, Any, Any]]) -> ScaleByFactoredRmsState:
    treedef = jax.tree_util.tree_structure(tree)
    return ScaleByFactoredRmsState(
        *(jax.tree_util.tree_unflatten(treedef, [t[i] for t in triples]) for i in range(3))
    )


def block_rms(x: jax.Array) -> jax.Array:
    r""":math:`\sqrt{\mathrm{mean}(|x|^2)}` over one leaf, in at least float32; derivative 0 (not NaN) at 0."""
    wide = widest_dtype(jnp.finfo(jnp.result_type(x)).dtype, jnp.float32)
    return safe_sqrt(jnp.mean(squared_magnitude(x, wide)))


class ScaleByParamBlockRms(Transform):
    r"""Multiply each leaf's update by its parameter's RMS: :math:`u \leftarrow u\,\max(\mathrm{RMS}(\theta), s_{\min})`.

    :math:`\mathrm{RMS}(\theta) = \sqrt{\mathrm{mean}(|\theta|^2)}` over one leaf, floored
    at :math:`s_{\min}`.  Adafactor's relative step size (Shazeer & Stern 2018, §8): the
    learning rate becomes a fraction of each tensor's scale.  The numbers of
    ``optax.scale_by_param_block_rms`` (whose floor is a ``jnp.where``; ours a maximum:
    the same values).

    Args:
        min_scale: :math:`s_{\min} \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_param_block_rms()
        >>> params = {"w": jnp.array([3.0, 4.0, 0.0, 0.0]), "b": jnp.zeros(2)}
        >>> grads = {"w": jnp.ones(4), "b": jnp.ones(2)}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> updates["w"].tolist(), updates["b"].tolist()  # RMS(w) = sqrt(25 / 4) = 2.5; b = 0: the floor 1e-3
        ([2.5, 2.5, 2.5, 2.5], [0.0010000000474974513, 0.0010000000474974513])

    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", ICML 2018.
    """

    min_scale: Any = hyperparameter(default=1e-3, domain=NONNEGATIVE)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_param_block_rms")
        if params is None:
            raise ValueError(
                "scale_by_param_block_rms needs the parameters: call update(grads, state, params)"
            )

        def factor(p):
            rms = block_rms(p)
            return jnp.maximum(rms, cast_like(self.min_scale, rms))

        return scale_leaves(updates, [factor(p) for p in jax.tree_util.tree_leaves(params)]), state


class _EmaOfUpdatesState(NamedTuple):
    """State of :class:`_EmaOfUpdates`: the average :math:`m_t`."""

    ema: Any


class _EmaOfUpdates(Transform):
    r"""Adafactor's momentum: :math:`m_t = \beta m_{t-1} + (1-\beta) u_t`, update :math:`m_t`.

    ``optax.ema(decay, debias=False, accumulator_dtype=...)``: :math:`\beta m_{t-1}` is
    computed in the accumulator's precision, the sum in the wider of the two; only the
    stored state is rounded to ``accumulator_dtype`` (float32 by default in adafactor).
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    accumulator_dtype: Any = static(default=None)

    def init_state(self, params):
        return _EmaOfUpdatesState(zeros_like(params, self.accumulator_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_of_updates")
        decays = per_leaf(self.decay, count - 1, updates, "momentum")

        def average(u, m, decay):
            # As optax: beta * m in the accumulator's precision (at least float32), then
            # (1 - beta) * u added in the update's.
            m = m.astype(widest_dtype(m.dtype, jnp.float32))
            kept = cast_like(decay, m) * m
            wide = widest_dtype(u.dtype, m.dtype)
            new = (1 - cast_like(decay, u.astype(wide))) * u.astype(wide) + kept.astype(wide)
            return new.astype(u.dtype)

        out = map_params(average, updates, state.ema, names=("ema",), per_leaf=(decays,))
        stored = map_params(lambda m, old: m.astype(old.dtype), out, state.ema)
        return out, _EmaOfUpdatesState(stored)


scale_by_factored_rms = ScaleByFactoredRms
scale_by_param_block_rms = ScaleByParamBlockRms
