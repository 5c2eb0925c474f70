r"""The cache-blocked step: one pass over memory for an elementwise update.

An optimizer step is memory-bound.  Adam reads :math:`\theta, g, m, v` and writes
:math:`\theta, m, v`: 28 bytes per float32 parameter is the least any
implementation can move.  XLA's CPU backend fuses each *output* into its own loop
(it has no multi-output loop fusion by default), so ``tx.update`` followed by
``apply_updates`` becomes three loops — :math:`m`, :math:`v`, then :math:`\theta`,
which reads :math:`m` and :math:`v` back — 40 bytes per parameter, and more when the
updates are materialised.

Here the step runs over blocks of ``block_size`` elements (a few hundred KiB, so
they stay in cache): for block :math:`b`,

.. math::
   (\theta, s)[b] \leftarrow \mathrm{step}\bigl(\theta[b],\ g[b],\ s[b]\bigr),

inside one ``lax.fori_loop`` on the donated buffers.  Each block is read from
memory once and written once; the intermediate loops re-read it from cache.  This
computes the same arithmetic only when the update is *elementwise* (element
:math:`k` of every output depends on element :math:`k` of the inputs and on
scalars), which :func:`blocking_problems` checks on the update's jaxpr before the
path is taken.  The rounding may differ in the last bits: the blocked loop fuses the
moment updates into the parameter update, where LLVM may contract ``a*b+c`` into a
fused multiply-add that the plain path's separate loops do not.

Opt-in (``apply_step(..., block_size=DEFAULT_BLOCK_SIZE)``): on the quiet 2-core CPU
of ``benchmarks/README.md`` the saving in bytes is outweighed by the fixed cost of
each loop iteration (five kernels, a few microseconds each) and by running each
block's kernels on fewer threads: the plain step is faster from 2^18 parameters up.
Only when other processes load the cores does the blocked step win (by about 20%),
because the plain step's loops, split over both cores, wait for their slower half.
Larger blocks spill the L2 cache and run slower.  Measure on your machine with
``python -m benchmarks.run --only adam_step``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax.core.protocol import PyTree, apply_updates
from adaptive_jax.performance.dataflow import cross_element_violations

# 16 Ki elements: seven float32 blocks (Adam's inputs and outputs) fit a 512 KiB L2.
DEFAULT_BLOCK_SIZE = 1 << 14


def common_length(params: PyTree) -> int | None:
    """``n`` if every leaf of ``params`` is a 1-D array of length ``n``, else None."""
    leaves = jax.tree_util.tree_leaves(params)
    shapes = {jnp.shape(leaf) for leaf in leaves}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    return shape[0] if len(shape) == 1 else None


def blocking_problems(tx: Any, grads: PyTree, state: PyTree, params: PyTree) -> list[str]:
    """Why the update of ``tx`` cannot run block by block; ``[]`` if it can."""
    length = common_length(params)
    if length is None:
        return ["the parameters are not 1-D buffers of one length"]
    state_leaves = jax.tree_util.tree_leaves(state)
    per_parameter = [jnp.shape(x) == (length,) for x in state_leaves]
    if not any(per_parameter):
        return ["the state holds no per-parameter buffer (one loop is already optimal)"]
    if any(jnp.ndim(x) != 0 and not p for x, p in zip(state_leaves, per_parameter)):
        return ["the state holds arrays that are not shaped like the parameters"]
    one = frozenset([0])

    def taint(x: Any) -> frozenset:
        return one if jnp.ndim(x) else frozenset()

    taints = jax.tree_util.tree_map(taint, (tx, grads, state, params))

    def update(tx, grads, state, params):
        return tx.update(grads, state, params)

    return cross_element_violations(
        update, (tx, grads, state, params), taints, 1, elementwise_only=True
    )


def _write(buffers: list[jax.Array], blocks: list[jax.Array], start: Any) -> list[jax.Array]:
    """``buffer[start:start+len(block)] = block`` for each pair, in place.

    The blocks of one dtype are stacked first, behind an optimization barrier (else
    XLA folds "row of a stack" back into the row's own loop): the stack is one loop
    that reads every input block before any write, so the in-place writes cannot
    overwrite data a later loop still reads (which would make XLA copy whole buffers).
    """
    by_dtype: dict[Any, list[int]] = {}
    for index, block in enumerate(blocks):
        by_dtype.setdefault(block.dtype, []).append(index)
    written = list(buffers)
    for indices in by_dtype.values():
        stacked = jax.lax.optimization_barrier(jnp.stack([blocks[i] for i in indices]))
        for row, i in enumerate(indices):
            written[i] = jax.lax.dynamic_update_slice_in_dim(buffers[i], stacked[row], start, 0)
    return written


def blocked_step(
    tx: Any, grads: PyTree, state: PyTree, params: PyTree, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[PyTree, PyTree]:
    """``tx.update`` then ``apply_updates``, block by block; returns ``(params, state)``.

    The caller must have checked :func:`blocking_problems` (empty).
    """
    length = common_length(params)
    assert length is not None
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    g_leaves, g_def = jax.tree_util.tree_flatten(grads)
    s_leaves, s_def = jax.tree_util.tree_flatten(state)
    is_buffer = [jnp.shape(x) == (length,) for x in s_leaves]
    scalars_in = [x for x, b in zip(s_leaves, is_buffer) if not b]

    def split(leaves: list[Any]) -> tuple[list[Any], list[Any]]:
        return (
            [x for x, b in zip(leaves, is_buffer) if b],
            [x for x, b in zip(leaves, is_buffer) if not b],
        )

    def merge(buffers: list[Any], scalars: list[Any]) -> list[Any]:
        next_buffer, next_scalar = iter(buffers), iter(scalars)
        return [next(next_buffer) if b else next(next_scalar) for b in is_buffer]

    def step(start: Any, size: int, p_bufs: list[Any], s_bufs: list[Any]):
        def take(x):
            return jax.lax.dynamic_slice_in_dim(x, start, size)

        block_params = jax.tree_util.tree_unflatten(p_def, [take(x) for x in p_bufs])
        block_grads = jax.tree_util.tree_unflatten(g_def, [take(x) for x in g_leaves])
        # Scalars (the step count, ...) are read from the state before the step in
        # every block, so each block computes the same new scalars.
        block_state = jax.tree_util.tree_unflatten(
            s_def, merge([take(x) for x in s_bufs], scalars_in)
        )
        updates, new_state = tx.update(block_grads, block_state, block_params)
        new_params = apply_updates(block_params, updates)
        new_s_bufs, new_scalars = split(jax.tree_util.tree_leaves(new_state))
        return jax.tree_util.tree_leaves(new_params), new_s_bufs, new_scalars

    def write_back(start, p_bufs, s_bufs, new_p, new_s):
        written = _write(p_bufs + s_bufs, new_p + new_s, start)
        return written[: len(p_bufs)], written[len(p_bufs) :]

    num_blocks, tail = divmod(length, block_size)
    p_bufs, s_bufs = list(p_leaves), split(s_leaves)[0]
    scalars_shape = jax.eval_shape(lambda: step(0, min(block_size, length), p_bufs, s_bufs)[2])
    scalars = [jnp.zeros(x.shape, x.dtype) for x in scalars_shape]

    def body(i, carry):
        p_bufs, s_bufs, _ = carry
        start = i * block_size
        new_p, new_s, new_scalars = step(start, block_size, p_bufs, s_bufs)
        p_bufs, s_bufs = write_back(start, p_bufs, s_bufs, new_p, new_s)
        return p_bufs, s_bufs, new_scalars

    if num_blocks:
        p_bufs, s_bufs, scalars = jax.lax.fori_loop(0, num_blocks, body, (p_bufs, s_bufs, scalars))
    if tail:
        start = num_blocks * block_size
        new_p, new_s, scalars = step(start, tail, p_bufs, s_bufs)
        p_bufs, s_bufs = write_back(start, p_bufs, s_bufs, new_p, new_s)
    new_params = jax.tree_util.tree_unflatten(p_def, p_bufs)
    return new_params, jax.tree_util.tree_unflatten(s_def, merge(s_bufs, scalars))
