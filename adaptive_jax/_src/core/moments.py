r"""The record that moment estimates hand to the blocks after them in a chain.

Adaptive methods are chains of small blocks: a first-moment block (the direction),
a second-moment block (the scale), corrections, and a preconditioner that turns the
two back into an update.  Between them flows a :class:`Moments` record:

* ``gradient`` — the gradient :math:`g_t` the moments were computed from (a
  second-moment block squares it; AdaBelief's measures :math:`g_t - m_t`);
* ``mu`` — the first moment :math:`m_t` (the gradient itself when no first-moment
  block ran: RMSProp, Adagrad);
* ``nu`` — the second moment :math:`v_t` (``None`` until a second-moment block ran);
* ``mu_correction``, ``nu_correction`` — the bias-correction denominators
  :math:`1-\beta_1^t`, :math:`1-\beta_2^t` (1 when unbiased), a scalar or one per leaf;
* ``nu_decay`` — the second moment's :math:`\beta_2` (RAdam's rectification needs it).

Blocks that consume gradients call :func:`expect_gradients`; blocks that consume or
extend a record call :func:`as_moments`, which also starts a record from bare
gradients, or :func:`expect_moments`, which requires a complete one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

PyTree = Any


class Moments(NamedTuple):
    """Moment estimates flowing between the blocks of a chain (see the module docstring).

    A named tuple, so it is a pytree and ``_replace`` gives an updated copy.
    """

    gradient: PyTree
    mu: PyTree
    nu: PyTree = None
    mu_correction: Any = 1.0
    nu_correction: Any = 1.0
    nu_decay: Any = None


def expect_gradients(updates: PyTree, block: str) -> None:
    """Raise if a block that consumes gradients is handed a :class:`Moments` record."""
    if isinstance(updates, Moments):
        raise TypeError(
            f"{block} expects gradients (a tree of arrays) but got Moments; place it before "
            "the moment estimates or after `precondition` in the chain"
        )


def as_moments(updates: PyTree) -> Moments:
    """``updates`` if it is a :class:`Moments` record, else a record of bare gradients."""
    if isinstance(updates, Moments):
        return updates
    return Moments(updates, updates)


def expect_moments(updates: PyTree, block: str) -> Moments:
    """Raise unless ``updates`` is a :class:`Moments` record with a second moment."""
    if not isinstance(updates, Moments) or updates.nu is None:
        got = "Moments without a second moment" if isinstance(updates, Moments) else "gradients"
        raise TypeError(
            f"{block} expects a second moment from ema_of_squares, accumulate_squares or "
            f"another second-moment block earlier in the chain, got {got}"
        )
    return updates


def leaf_values(value: Any, tree: PyTree) -> list[Any]:
    """``value`` for each leaf of ``tree``: a shared scalar repeated, or a tree's leaves."""
    count = len(jax.tree_util.tree_leaves(tree))
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)):
        return [value] * count
    return jax.tree_util.tree_leaves(value)


def per_leaf_tree(values: list[Any], tree: PyTree) -> Any:
    """One scalar if every leaf got the same object, else a tree of values shaped like ``tree``."""
    if values and all(v is values[0] for v in values):
        return values[0]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), values)
