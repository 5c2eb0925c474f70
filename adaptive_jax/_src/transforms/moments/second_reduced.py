r"""Second moments stored smaller than the parameters: one per layer, or one per slice.

Adam keeps one second-moment entry per parameter.  Two methods keep fewer, and divide
every entry of a slice by the same (or a covering) statistic:

* :class:`per_layer_second_moment` — NovoGrad's one number per parameter tensor,
  :math:`v_t = \beta v_{t-1} + (1-\beta)\|g_t\|_2^2` (Ginsburg et al. 2019);
* :class:`sm3_second_moment` — SM3's accumulators, one vector per axis of each tensor
  (its rows, its columns, ...), whose minimum over the slices through an entry bounds
  Adagrad's sum for that entry (Anil et al. 2019).

Both add :math:`v_t`, broadcast to each parameter's shape, to the
:class:`~adaptive_jax.extend.Moments` record, so :class:`~adaptive_jax.precondition`
after them divides as for any second moment.  Their statistics reduce over a whole
tensor, so on sharded parameters each step adds one all-reduce per tensor (a scalar for
NovoGrad, a vector per axis for SM3).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import as_moments, per_leaf_tree
from adaptive_jax._src.core.numerics import ema, squared_magnitude, widest_dtype
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import TreeMismatchError


def reduced_dtype(param: Any, dtype: Any = None) -> Any:
    """``dtype``, else the parameter's real dtype widened to at least float32 (a sum of squares)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    return widest_dtype(jnp.finfo(jnp.result_type(param)).dtype, jnp.float32)


class PerLayerSecondMomentState(NamedTuple):
    """State of :class:`per_layer_second_moment`: one :math:`v_t` per parameter tensor."""

    nu: PyTree


class PerLayerSecondMoment(Transform):
    r"""NovoGrad's second moment: one EMA of the squared norm per parameter tensor.

    .. math::
       v_1 = \|g_1\|_2^2, \qquad v_t = \beta v_{t-1} + (1-\beta)\, \|g_t\|_2^2,

    the norm over the whole tensor (a layer's weight matrix, its bias).  The EMA starts
    at its first value, so it needs no bias correction.  The record's second moment is
    :math:`v_t` broadcast to the tensor's shape: :class:`~adaptive_jax.precondition`
    after it divides the whole tensor by :math:`\sqrt{v_t}`.  The state is one number
    per tensor, summed in at least float32.  These are the numbers of
    ``optax.scale_by_novograd``, whose ``jnp.linalg.norm(g) ** 2`` has a NaN derivative
    where a tensor's gradient is exactly 0; the sum of squares here has derivative 0.

    Args:
        decay: :math:`\beta` in :math:`[0, 1)`, or a per-parameter tree of them.
        nu_dtype: dtype to store :math:`v_t` in (default: the parameters' real dtype,
            at least float32).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.per_layer_second_moment(decay=0.5)
        >>> state = tx.init({"w": jnp.zeros(2)})
        >>> for g in ([3.0, 4.0], [0.0, 1.0]):
        ...     moments, state = tx.update({"w": jnp.array(g)}, state)
        >>> moments.nu["w"].tolist()  # v_1 = 25, then 0.5 * 25 + 0.5 * 1, for both entries
        [13.0, 13.0]

    Reference: Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks", arXiv:1905.11286, 2019.
    """

    decay: PerParameter = hyperparameter(default=0.25, domain=DECAY_RATE)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return PerLayerSecondMomentState(
            jax.tree_util.tree_map(lambda p: jnp.zeros([], reduced_dtype(p, self.nu_dtype)), params)
        )

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        gradient = record.gradient
        decays = per_leaf(self.decay, count - 1, gradient, "decay")
        leaves, treedef = jax.tree_util.tree_flatten(gradient)
        try:
            previous = treedef.flatten_up_to(state.nu)
        except (ValueError, TypeError) as error:
            raise TreeMismatchError(
                f"per_layer_second_moment: the state's structure does not match the updates' "
                f"({jax.tree_util.tree_structure(state.nu)} vs {treedef})"
            ) from error

        def step(g, v, decay):
            total = jnp.sum(squared_magnitude(g, v.dtype))
            return jnp.where(count == 1, total, ema(v, total, decay))

        nu = [step(g, v, d) for g, v, d in zip(leaves, previous, decays)]
        broadcast = [jnp.broadcast_to(v, g.shape) for g, v in zip(leaves, nu)]
        record = record._replace(
            nu=jax.tree_util.tree_unflatten(treedef, broadcast),
            nu_decay=per_leaf_tree(decays, gradient),
        )
        return record, PerLayerSecondMomentState(jax.tree_util.tree_unflatten(treedef, nu))


def _axis_zeros(param: Any, axis: int, dtype: Any) -> jax.Array:
    """Zeros of length ``param.shape[axis]``, sharded as that axis of ``param`` is."""
    shape = (jnp.shape(param)[axis],)
    sharding = getattr(param, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (jnp.ndim(param) - len(sharding.spec))
        placed = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[axis]))
        if isinstance(param, jax.ShapeDtypeStruct) or getattr(param, "committed", False):
            return jnp.zeros(shape, dtype, device=placed)
    return jnp.zeros(shape, dtype)


def _sm3_zeros(param: Any, dtype: Any) -> tuple[jax.Array, ...]:
    """SM3's accumulators for one tensor: itself for rank <= 1, else one vector per axis."""
    if jnp.ndim(param) <= 1:
        from adaptive_jax._src.core.trees import zeros_like

        return (zeros_like(param, dtype),)
    return tuple(_axis_zeros(param, axis, dtype) for axis in range(jnp.ndim(param)))


class Sm3SecondMomentState(NamedTuple):
    """State of :class:`sm3_second_moment`: for each tensor, a tuple of accumulators.

    A tensor of rank 2 or more has one vector per axis (``mu[i]`` of length
    ``shape[i]``: its row maxima, column maxima, ...); a vector or scalar has one
    accumulator of its own shape.
    """

    mu: PyTree


class Sm3SecondMoment(Transform):
    r"""SM3's second moment (SM3-II): Adagrad's sum, bounded by one accumulator per slice.

    For a tensor of rank :math:`k \ge 2` the cover is its slices along each axis (rows
    and columns of a matrix), with accumulators :math:`\mu^{(a)}` of length
    :math:`n_a`, all 0 at the start:

    .. math::
       \nu_t(i) = g_t(i)^2 + \min_{a} \mu^{(a)}_{t-1}(i_a), \qquad
       \mu^{(a)}_t(j) = \max_{i:\, i_a = j} \nu_t(i) .

    :math:`\nu_t \ge` Adagrad's :math:`\sum_{s\le t} g_s^2` entry by entry, from
    :math:`n_1 + \dots + n_k` numbers instead of :math:`n_1 \cdots n_k`.  For a vector
    or a scalar the cover is the single entries and :math:`\nu_t` is Adagrad's sum.
    The record's second moment is :math:`\nu_t`; ``precondition(eps=0, eps_root=1e-8)``
    after it gives SM3's step :math:`g_t/\sqrt{\nu_t + 10^{-8}}`.

    These are the numbers of ``optax.scale_by_sm3`` with its default ``b2=1`` (the
    accumulating form of the paper; ``b2 < 1``, an optax-only EMA variant, is not
    offered).  Differences: optax raises on a rank-0 parameter (it indexes an empty
    list of accumulators), ours treats it as Adagrad does; the accumulators of a
    sharded tensor are sharded as the axis they index.

    Args:
        nu_dtype: dtype of the accumulators (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sm3_second_moment()
        >>> state = tx.init(jnp.zeros((2, 2)))
        >>> for g in ([[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]):
        ...     moments, state = tx.update(jnp.array(g), state)
        >>> moments.nu.tolist()  # g^2 + min(row max, column max) of the first step's g^2
        [[1.0, 0.0], [0.0, 4.0]]
        >>> [mu.tolist() for mu in state.inner.mu]  # row and column maxima of nu
        [[1.0, 4.0], [1.0, 4.0]]

    Reference: Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization",
    NeurIPS 2019, Algorithm SM3-II.
    """

    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        def zeros(p):
            return _sm3_zeros(
                p, jnp.finfo(jnp.result_type(p)).dtype if self.nu_dtype is None else self.nu_dtype
            )

        return Sm3SecondMomentState(jax.tree_util.tree_map(zeros, params))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        leaves, treedef = jax.tree_util.tree_flatten(record.gradient)
        try:
            accumulators = treedef.flatten_up_to(state.mu)
        except (ValueError, TypeError) as error:
            raise TreeMismatchError(
                "sm3_second_moment: the state's structure does not match the updates' "
                f"({jax.tree_util.tree_structure(state.mu)} vs {treedef})"
            ) from error
        nus, new = [], []
        for g, mu in zip(leaves, accumulators):
            square = squared_magnitude(g, mu[0].dtype)
            if g.ndim <= 1:
                nu = square + mu[0]
                new.append((nu,))
            else:
                expanded = [
                    m.reshape([-1 if i == a else 1 for i in range(g.ndim)])
                    for a, m in enumerate(mu)
                ]
                nu = square + functools.reduce(jnp.minimum, expanded)
                other = [tuple(i for i in range(g.ndim) if i != a) for a in range(g.ndim)]
                new.append(tuple(jnp.max(nu, axis=axes) for axes in other))
            nus.append(nu)
        record = record._replace(nu=jax.tree_util.tree_unflatten(treedef, nus))
        return record, Sm3SecondMomentState(jax.tree_util.tree_unflatten(treedef, new))


per_layer_second_moment = PerLayerSecondMoment
sm3_second_moment = Sm3SecondMoment
