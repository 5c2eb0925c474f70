r"""The flat layout: every parameter of one dtype in one contiguous 1-D buffer.

A model with :math:`n` leaves hands an optimizer :math:`n` arrays, and XLA compiles
the update once per leaf: compile time grows with :math:`n`, and each leaf is a
separate loop with its own launch cost.  Concatenating the leaves of each dtype,

.. math::
   \mathrm{buffer}_d = [\,\mathrm{vec}(\theta_{i_1}),\ \mathrm{vec}(\theta_{i_2}),\ \dots\,]
   \quad \text{over the leaves } i_k \text{ of dtype } d \text{ (in tree order)},

turns the update into one loop per dtype whatever :math:`n` is.  Each buffer is
padded with zeros to a multiple of :data:`ALIGNMENT` elements: XLA's CPU loops run
about five times slower on a length that is not a multiple of the vector width
(measured in ``benchmarks/README.md``).  The padding is never visible in the tree; an
elementwise optimizer keeps it at zero (zero gradient, zero state, zero update), and
sums and norms do not see it.  :class:`FlatLayout`
records where each leaf lives; :class:`FlatParams` is a pytree whose only leaves
are those buffers and which views them as the original tree on demand
(:meth:`FlatParams.tree`).  Because the view is differentiable (its transpose is a
concatenation), ``jax.grad`` of ``loss(flat.tree())`` with respect to ``flat`` is
again a :class:`FlatParams`: gradients arrive flat, with no copy per step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.pytree import pytree_dataclass, static_field

#: Buffer lengths are rounded up to a multiple of this many elements (512 B of float32).
ALIGNMENT = 128


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """Where each leaf of a pytree lives in the per-dtype buffers (static, hashable).

    ``groups`` are the dtype names in order of first appearance; leaf ``i`` of the
    tree has shape ``shapes[i]`` and occupies ``[offsets[i], offsets[i] + size)`` of
    buffer ``groups.index(leaf_groups[i])``.  Buffer ``k`` holds ``group_sizes[k]``
    elements of data followed by zeros up to ``buffer_sizes[k]``.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    leaf_groups: tuple[str, ...]
    offsets: tuple[int, ...]
    groups: tuple[str, ...]
    group_sizes: tuple[int, ...]
    buffer_sizes: tuple[int, ...]

    @classmethod
    def of(cls, tree: Any) -> FlatLayout:
        """The layout of ``tree`` (arrays, ``ShapeDtypeStruct`` or tracers as leaves)."""
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        shapes = tuple(tuple(int(d) for d in np.shape(leaf)) for leaf in leaves)
        leaf_groups = tuple(jnp.dtype(jnp.result_type(leaf)).name for leaf in leaves)
        groups = tuple(dict.fromkeys(leaf_groups))
        filled = dict.fromkeys(groups, 0)
        offsets = []
        for shape, group in zip(shapes, leaf_groups):
            offsets.append(filled[group])
            filled[group] += int(np.prod(shape, dtype=np.int64))
        sizes = tuple(filled.values())
        padded = tuple(-(-n // ALIGNMENT) * ALIGNMENT for n in sizes)
        return cls(treedef, shapes, leaf_groups, tuple(offsets), groups, sizes, padded)

    @property
    def num_leaves(self) -> int:
        return len(self.shapes)

    def ravel(self, tree: Any) -> FlatParams:
        """Concatenate ``tree``'s leaves into one buffer per dtype (a copy)."""
        leaves = jax.tree_util.tree_leaves(tree)
        if len(leaves) != self.num_leaves:
            raise ValueError(
                f"this layout describes a tree with {self.num_leaves} leaves, got {len(leaves)}"
            )
        buffers = {}
        for group, size, padded in zip(self.groups, self.group_sizes, self.buffer_sizes):
            parts = [jnp.ravel(leaf) for leaf, g in zip(leaves, self.leaf_groups) if g == group]
            if padded > size:
                parts.append(jnp.zeros(padded - size, parts[0].dtype))
            buffers[group] = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        return FlatParams(buffers, self)

    def unravel(self, buffers: dict[str, jax.Array]) -> Any:
        """The pytree view of ``buffers``: each leaf a reshaped piece of its dtype's buffer."""
        pieces: dict[str, list[jax.Array]] = {}
        for group, size, padded in zip(self.groups, self.group_sizes, self.buffer_sizes):
            members = [i for i, g in enumerate(self.leaf_groups) if g == group]
            # One split (not one slice per leaf): its transpose is a single concatenation.
            cuts = [self.offsets[i] for i in members[1:]] + ([size] if padded > size else [])
            pieces[group] = jnp.split(buffers[group], cuts) if cuts else [buffers[group]]
        taken = dict.fromkeys(self.groups, 0)
        leaves = []
        for shape, group in zip(self.shapes, self.leaf_groups):
            leaves.append(pieces[group][taken[group]].reshape(shape))
            taken[group] += 1
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


@pytree_dataclass
class FlatParams:
    """Parameters (or gradients, or updates) stored as one contiguous buffer per dtype.

    A pytree whose leaves are the buffers, so every transformation, ``jax.grad`` and
    :func:`~adaptive_jax.apply_updates` work on it unchanged, each seeing one leaf
    per dtype.  :meth:`tree` is the original pytree (a view for the model).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> flat = aj.ravel_params(params)
        >>> {group: buffer.shape for group, buffer in flat.buffers.items()}  # 9 + padding
        {'float32': (128,)}
        >>> grads = jax.grad(lambda f: jnp.sum(f.tree()["w"] ** 2))(flat)
        >>> grads.buffers["float32"][:10].tolist()  # b first (dict keys are sorted), then w
        [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0]
    """

    buffers: dict[str, jax.Array]
    layout: FlatLayout = static_field()

    def tree(self) -> Any:
        """The parameters as the pytree they were raveled from."""
        return self.layout.unravel(self.buffers)


def ravel_params(params: Any) -> FlatParams:
    """Store ``params`` as :class:`FlatParams`: one contiguous buffer per dtype.

    Opt-in for the fastest step: gradients of ``loss(flat.tree())`` arrive flat, the
    optimizer state built by ``tx.init(flat)`` is flat, and the update is one loop.
    Per-parameter hyperparameter pytrees cannot address leaves of flat buffers; see
    :func:`adaptive_jax.performance.flatten` for what else changes.
    """
    if isinstance(params, FlatParams):
        return params
    return FlatLayout.of(params).ravel(params)
