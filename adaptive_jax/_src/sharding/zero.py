r"""Where optimizer state lives on a device mesh.

Optimizer state follows its parameters by construction: ``tx.init`` builds every
per-parameter buffer with ``zeros_like``, which keeps a concrete array's sharding and
a ``jax.ShapeDtypeStruct``'s ``sharding``, and element-wise updates add no
communication under ``jax.jit``.  :func:`state_shardings` reads those shardings off
abstractly (nothing is allocated).

:func:`zero1_state_shardings` goes further (ZeRO stage 1, Rajbhandari et al., "ZeRO:
Memory Optimizations Toward Training Trillion Parameter Models", SC 2020): parameters
stay replicated over the data-parallel axis while each replica holds only
:math:`1/N` of the optimizer state.  Pass the result as the state's ``in_shardings``
and ``out_shardings`` of a jitted update; XLA's SPMD partitioner then computes each
slice of the update where its state lives and all-gathers the updates for the
replicated parameters.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from adaptive_jax._src.core.protocol import PyTree


def _abstract(tree: PyTree) -> PyTree:
    def leaf(x: Any) -> jax.ShapeDtypeStruct:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree_util.tree_map(leaf, tree)


def state_shardings(tx: Any, params: PyTree) -> PyTree:
    """The sharding of every leaf of ``tx.init(params)``, computed without allocating it.

    ``params`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves carrying shardings.
    Leaves that do not derive from a parameter (the step counter) get ``None``.
    """
    shapes = jax.eval_shape(tx.init, _abstract(params))
    return jax.tree_util.tree_map(lambda s: getattr(s, "sharding", None), shapes)


def _split_over(shape: tuple[int, ...], axis_size: int, axis_name: str) -> PartitionSpec:
    """Shard the largest dimension divisible by ``axis_size``; replicate if none is."""
    candidates = [
        (size, dim) for dim, size in enumerate(shape) if size % axis_size == 0 and size > 0
    ]
    if not candidates:
        return PartitionSpec()
    _, dim = max(candidates)
    spec: list[Any] = [None] * len(shape)
    spec[dim] = axis_name
    return PartitionSpec(*spec)


def zero1_state_shardings(tx: Any, params: PyTree, mesh: Mesh, data_axis: str = "data") -> PyTree:
    """Shardings that split every optimizer-state buffer over ``data_axis`` (ZeRO-1).

    Each state leaf is sharded along its largest dimension divisible by the size of
    ``data_axis``; scalars and indivisible leaves stay replicated.  Memory for the
    state per device falls by the data-parallel degree.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> mesh = jax.make_mesh((1,), ("data",))
        >>> specs = aj.sharding.zero1_state_shardings(aj.adam(), {"w": jnp.ones((4, 2))}, mesh)
        >>> specs.inner[0].mu["w"].spec == jax.sharding.PartitionSpec("data", None)
        True
    """
    axis_size = mesh.shape[data_axis]
    shapes = jax.eval_shape(tx.init, _abstract(params))
    return jax.tree_util.tree_map(
        lambda s: NamedSharding(mesh, _split_over(tuple(s.shape), axis_size, data_axis)), shapes
    )


def abstract_state(tx: Any, params: PyTree, shardings: Any) -> PyTree:
    """``tx.init(params)`` as ``jax.ShapeDtypeStruct`` leaves placed by ``shardings``.

    The target to restore a checkpointed optimizer state into, in another layout than
    the one that saved it (another mesh, another number of processes): orbax's
    ``StandardRestore`` reads each array's shards where ``shardings`` puts them.
    ``shardings`` is one sharding for every leaf, or a tree of them such as
    :func:`zero1_state_shardings` returns.  Pass ``tx=lambda p: p`` for the parameters.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> mesh = jax.make_mesh((1,), ("data",))
        >>> target = aj.sharding.abstract_state(
        ...     aj.adam(), {"w": jnp.ones((4, 2))},
        ...     aj.sharding.zero1_state_shardings(aj.adam(), {"w": jnp.ones((4, 2))}, mesh))
        >>> target.inner[0].mu["w"].shape, target.inner[0].mu["w"].sharding.spec
        ((4, 2), P('data', None))
    """
    init = getattr(tx, "init", tx)
    shapes = jax.eval_shape(init, _abstract(params))
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree_util.tree_map(lambda _: shardings, shapes)
    return jax.tree_util.tree_map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        shapes,
        shardings,
    )
