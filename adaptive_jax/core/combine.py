r"""Composition: :func:`chain` and adapters for foreign (optax) transformations.

``chain(a, b, c)`` applies ``a``, then ``b``, then ``c`` to the updates:
:math:`u = c(b(a(g)))`.  A chain keeps one step counter for all of its members
(also for nested chains); a foreign optax transformation inside it keeps its own
state, untouched.
"""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.protocol import PyTree, Transform
from adaptive_jax.core.pytree import pytree_dataclass, static_field


@pytree_dataclass
class OptaxAdapter(Transform):
    """Wraps any object with optax's ``init``/``update`` so it can sit in :func:`chain`.

    The wrapped transformation is configuration (static): its hyperparameters live in
    its own closures, as optax transformations do.
    """

    inner: Any = static_field()

    def init_state(self, params: PyTree) -> PyTree:
        return self.inner.init(params)

    def apply(self, updates, state, params, count):
        del count
        return self.inner.update(updates, state, params)


def as_transform(tx: Any) -> Transform:
    """``tx`` itself if it is an adaptive_jax transform, else an :class:`OptaxAdapter`."""
    if isinstance(tx, Transform):
        return tx
    if hasattr(tx, "init") and hasattr(tx, "update"):
        return OptaxAdapter(tx)
    raise TypeError(f"expected a gradient transformation (with init and update), got {tx!r}")


@pytree_dataclass
class Chain(Transform):
    """Apply ``transforms`` in order, sharing one step counter.  Build with :func:`chain`."""

    transforms: tuple[Transform, ...]

    def init_state(self, params: PyTree) -> tuple[PyTree, ...]:
        return tuple(tx.init_state(params) for tx in self.transforms)

    def apply(self, updates, state, params, count):
        if len(state) != len(self.transforms):
            raise ValueError(
                f"chain of {len(self.transforms)} transforms got a state with {len(state)} entries"
            )
        new_state = []
        for tx, tx_state in zip(self.transforms, state):
            updates, tx_state = tx.apply(updates, tx_state, params, count)
            new_state.append(tx_state)
        return updates, tuple(new_state)


def chain(*transforms: Any) -> Chain:
    """Compose transformations: ``chain(a, b)(g) = b(a(g))`` with one shared step count.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.clip_by_global_norm(1.0), aj.scale_by_adam(), aj.scale_by_learning_rate(1e-3))
        >>> params = {"w": jnp.ones(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        >>> int(state.count)
        1
    """
    return Chain(tuple(as_transform(tx) for tx in transforms))


def flatten_chain(tx: Transform) -> list[Transform]:
    """The leaf transforms of a (possibly nested) chain, in application order."""
    if isinstance(tx, Chain):
        return [leaf for member in tx.transforms for leaf in flatten_chain(member)]
    return [tx]
