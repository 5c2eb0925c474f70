r"""Masks: run a transformation on some parameters, pass the others through, or freeze them.

.. math::

   u_i = \begin{cases} \mathrm{inner}(g)_i & m_i = \text{True,} \\
                       g_i & m_i = \text{False,} \end{cases}
   \qquad\text{and for } \mathrm{freeze}(m):\quad
   u_i = \begin{cases} 0 & m_i = \text{True,} \\ g_i & m_i = \text{False.} \end{cases}

optax's semantics, names and arguments (``optax.masked``, ``optax.freeze``,
``optax.set_to_zero``).  The inner transformation sees the selected leaves only: the
others are :class:`~adaptive_jax.MaskedNode` in its updates, parameters and state, so it
keeps no state for them and a norm it computes covers the selected leaves alone.  The
mask is expanded to one :class:`~adaptive_jax.MaskedNode` per unselected *leaf* (optax
puts one in place of a masked-out subtree), so a per-parameter hyperparameter tree of the
inner transformation, a prefix of the parameters, still fits the masked tree.

The inner transformation shares the step counter of the wrapper (it is called through
``init_state``/``apply``): ``masked(adam(...), mask)`` counts every update, as optax's
inner Adam does.

Where a mask only switches a number off (no weight decay on biases), a per-parameter
tree does the same in one transformation whose values stay differentiable:
``adamw(weight_decay=aj.per_parameter(lambda path, p: 0.0 if p.ndim == 1 else 1e-2,
params))`` (see :func:`~adaptive_jax.per_parameter`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import zeros_like
from adaptive_jax._src.transforms.selection import (
    merge,
    resolve,
    select,
    select_extra_args,
    static_mask,
)


class MaskedState(NamedTuple):
    """State of :func:`~adaptive_jax.masked`: the inner state over the selected leaves
    (the other leaves are :class:`~adaptive_jax.MaskedNode`); optax's field name."""

    inner_state: PyTree


class Masked(Transform):
    r"""Apply ``inner`` to the leaves ``mask`` selects; the others pass through unchanged.

    The inner transformation's updates, parameters and state hold
    :class:`~adaptive_jax.MaskedNode` in place of every unselected leaf: no state is kept
    for them.  It shares the wrapper's step counter.

    Args:
        inner: the transformation to apply (adaptive_jax or optax).
        mask: a pytree of bools with the parameters' structure, or a prefix of it
            (``{"encoder": True, "head": False}`` covers every leaf below each key);
            ``True`` selects.  Or a function of the parameters returning such a tree
            (called on the parameters at ``init``, on the updates at ``update``, as in
            optax).  A mask is configuration: Python bools, not traced values.
        mask_compatible_extra_args: also mask extra update arguments that have the
            updates' structure (optax's option).

    Raises:
        TypeError: a mask leaf is not a bool (the message names its path).
        TreeMismatchError: the mask is not a prefix of the parameters (raised at
            ``init``/``update``, naming the first differing path).

    Example:
        Weight decay only on matrices (optax's recipe), and the same with a
        per-parameter tree (this library's alternative: no mask, a decay per leaf):

        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> mask = aj.per_parameter(lambda path, p: p.ndim == 2, params)  # {'b': False, 'w': True}
        >>> tx = aj.masked(aj.add_decoupled_weight_decay(0.5), mask)
        >>> updates, state = tx.update({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, tx.init(params), params)
        >>> updates["w"].tolist(), updates["b"].tolist()  # w: 0 + 0.5 * 1; b passes through
        ([[0.5, 0.5], [0.5, 0.5]], [0.0, 0.0])
        >>> same = aj.add_decoupled_weight_decay({"w": 0.5, "b": 0.0})
        >>> same.update({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, same.init(params), params)[0]["b"].tolist()
        [0.0, 0.0]
    """

    inner: Transform = child(converter=lambda tx: as_transform(tx, "inner"))
    mask: Any = static(converter=static_mask)
    mask_compatible_extra_args: bool = static(default=False)
    takes_extra_args = True

    def init_state(self, params):
        chosen = resolve(self.mask, params, "mask", "params")
        return MaskedState(self.inner.init_state(select(params, chosen)))

    def apply(self, updates, state, params, count, **extra_args):
        expect_gradients(updates, "masked")
        chosen = resolve(self.mask, updates, "mask", "updates")
        inner_updates = select(updates, chosen)
        inner_params = None if params is None else select(params, chosen)
        if self.inner.takes_extra_args:
            extra = select_extra_args(extra_args, updates, chosen, self.mask_compatible_extra_args)
            new, inner_state = self.inner.apply(
                inner_updates, state.inner_state, inner_params, count, **extra
            )
        else:
            new, inner_state = self.inner.apply(
                inner_updates, state.inner_state, inner_params, count
            )
        return merge(updates, new, chosen), MaskedState(inner_state)


class SetToZero(Transform):
    r"""Replace every update by zeros: :math:`u = 0` (optax's ``set_to_zero``).

    Zeros, not ``0 \cdot g``: a NaN or Inf gradient of a frozen parameter gives 0.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.set_to_zero()
        >>> tx.update(jnp.array([1.0, jnp.nan]), tx.init(jnp.zeros(2)))[0].tolist()
        [0.0, 0.0]
    """

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "set_to_zero")
        return zeros_like(updates), state


def freeze(mask: Any) -> Masked:
    r"""Zero the updates of the parameters ``mask`` marks ``True``: they stay where they are.

    ``masked(set_to_zero(), mask)``, as ``optax.freeze``.  Put it last in a chain (after
    the learning rate): an optimizer before it still keeps state for the frozen leaves,
    and weight decay inside that optimizer would otherwise move them.  To keep no state
    for them at all, use :func:`~adaptive_jax.selective_transform`.

    Args:
        mask: ``True`` freezes: a bool, a pytree of bools that is a prefix of the
            parameters, or a function of the parameters returning one.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.sgd(0.5), aj.freeze({"encoder": True, "head": False}))
        >>> params = {"encoder": jnp.ones(2), "head": jnp.ones(2)}
        >>> updates, _ = tx.update({"encoder": jnp.ones(2), "head": jnp.ones(2)}, tx.init(params), params)
        >>> updates["encoder"].tolist(), updates["head"].tolist()  # head: -0.5 * 1
        ([0.0, 0.0], [-0.5, -0.5])
    """
    return Masked(SetToZero(), mask)


masked = Masked
set_to_zero = SetToZero
