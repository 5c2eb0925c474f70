r"""Choosing parameters: masks, labels and per-parameter trees.

Two ways to treat parameters differently, both first-class here:

* **per-parameter hyperparameters** — every hyperparameter whose domain allows it takes a
  pytree prefix of the parameters instead of one number
  (``adamw(weight_decay={"w": 1e-2, "b": 0.0})``); :func:`per_parameter` builds such a
  tree from a rule on each leaf's path and value.  The chain and its state stay one
  optimizer, and each value stays a differentiable, vmappable leaf;
* **masks and labels** — optax's way: :func:`~adaptive_jax.masked` runs a
  transformation on the leaves a boolean mask selects, and
  :func:`~adaptive_jax.partition` gives each labelled group its own transformation.  The
  leaves a transformation does not see are replaced by :class:`MaskedNode`, an empty
  node, so its state holds nothing for them.

Masks and labels are configuration (static): they decide the *structure* of the
computation, not numbers, so a mask or label tree is held in the transformation's tree
definition (:class:`StaticTree`), and a function of the parameters that computes one is
held as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.core import Tracer

from adaptive_jax._src.core.trees import broadcast_prefix

PyTree = Any


class MaskedNode(NamedTuple):
    """Stands for a parameter a masked transformation does not see: an empty pytree node.

    ``tree_map`` skips it (a node without children), so a masked transformation keeps no
    state for that leaf.  The same role as ``optax.MaskedNode``.
    """


def path_names(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """A JAX key path as plain names: dict keys, attribute names and sequence indices."""
    names = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            names.append(key.key)
        elif isinstance(key, jax.tree_util.GetAttrKey):
            names.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            names.append(key.idx)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            names.append(key.key)
        else:
            names.append(str(key))
    return tuple(names)


def per_parameter(rule: Callable[[tuple[Any, ...], Any], Any], params: PyTree) -> PyTree:
    r"""A tree shaped like ``params`` holding ``rule(path, leaf)`` for each parameter.

    The result is what a per-parameter hyperparameter takes
    (``weight_decay=``, ``learning_rate=``, ``b1=``, ...), or — when ``rule`` returns
    bools — a mask for :func:`~adaptive_jax.masked`, or labels for
    :func:`~adaptive_jax.partition`.  ``path`` is the tuple of names leading to the leaf:
    dict keys, attribute names and sequence indices (``("encoder", "bias")``), so
    ``"bias" in path`` tests a name.  ``leaf`` is the parameter itself (an array, or a
    ``jax.ShapeDtypeStruct``); ``None`` entries of ``params`` stay ``None``.

    Per-parameter trees are this library's alternative to masks: the optimizer stays
    one chain with one state, and each value is a leaf that ``jax.grad`` and
    ``jax.vmap`` see (a mask is configuration and cannot be learned).

    Args:
        rule: ``rule(path, leaf) -> value``.
        params: the parameters (or a tree of shape structures).

    Returns:
        A pytree with ``params``' structure holding the rule's values.

    Example:
        No weight decay on biases and norm scales (1-d leaves), two ways:

        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"dense": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, "scale": jnp.ones(2)}
        >>> decay = aj.per_parameter(lambda path, p: 0.0 if p.ndim == 1 else 1e-2, params)
        >>> decay
        {'dense': {'b': 0.0, 'w': 0.01}, 'scale': 0.0}
        >>> tx = aj.adamw(1e-3, weight_decay=decay)  # one optimizer, decay a leaf per parameter
        >>> is_matrix = aj.per_parameter(lambda path, p: p.ndim > 1, params)
        >>> tx_masked = aj.chain(  # optax's way: the decay block sees only the matrices
        ...     aj.scale_by_adam(), aj.masked(aj.add_decoupled_weight_decay(1e-2), is_matrix),
        ...     aj.scale_by_learning_rate(1e-3))
        >>> grads = jax.tree_util.tree_map(jnp.ones_like, params)
        >>> u1, _ = tx.update(grads, tx.init(params), params)
        >>> u2, _ = tx_masked.update(grads, tx_masked.init(params), params)
        >>> # w: -lr (m/(sqrt(v)+eps) + 0.01 * 1) = -1e-3 * (1 + 0.01) (up to eps)
        >>> round(float(u1["dense"]["w"][0, 0]), 8), round(float(u2["dense"]["w"][0, 0]), 8)
        (-0.00101, -0.00101)
    """

    def value(path: tuple[Any, ...], leaf: Any) -> Any:
        return rule(path_names(path), leaf)

    return jax.tree_util.tree_map_with_path(value, params)


class StaticTree:
    """A pytree of Python constants (bools, labels) held as configuration.

    Hashable and compared by value, so a transformation holding one is a valid
    ``jax.jit`` argument and two equal masks share a compiled program.
    """

    __slots__ = ("treedef", "leaves")

    def __init__(self, tree: PyTree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        object.__setattr__(self, "treedef", treedef)
        object.__setattr__(self, "leaves", tuple(leaves))

    def tree(self) -> PyTree:
        return jax.tree_util.tree_unflatten(self.treedef, self.leaves)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StaticTree)
            and self.treedef == other.treedef
            and self.leaves == other.leaves
        )

    def __hash__(self) -> int:
        return hash((self.treedef, self.leaves))

    def __repr__(self) -> str:
        return repr(self.tree())


def _as_bool(name: str, path: tuple[Any, ...], leaf: Any) -> bool:
    where = f"{name}{jax.tree_util.keystr(path)}"
    if isinstance(leaf, Tracer):
        raise TypeError(
            f"{where} is traced: a mask decides which leaves a transformation sees, so it "
            "must be concrete (Python bools, built outside jit and vmap)"
        )
    if isinstance(leaf, (bool, np.bool_)) or (
        getattr(leaf, "dtype", None) == np.bool_ and np.shape(leaf) == ()
    ):
        return bool(leaf)
    raise TypeError(
        f"{where}={leaf!r} is invalid: expected a bool (True: the transformation applies to "
        "the leaves below; False: they pass through unchanged)"
    )


def static_mask(mask: Any, name: str = "mask") -> Any:
    """``mask`` as configuration: a function kept as it is, a tree checked and frozen.

    Raises ``TypeError`` naming ``name`` and the path of a leaf that is not a bool.
    """
    if isinstance(mask, StaticTree) or callable(mask):
        return mask
    paths = jax.tree_util.tree_flatten_with_path(mask)[0]
    checked = [_as_bool(name, path, leaf) for path, leaf in paths]
    treedef = jax.tree_util.tree_structure(mask)
    return StaticTree(jax.tree_util.tree_unflatten(treedef, checked))


def static_labels(labels: Any, name: str = "param_labels") -> Any:
    """``labels`` as configuration: a function kept as it is, a tree of hashables frozen."""
    if isinstance(labels, StaticTree) or callable(labels):
        return labels
    for path, leaf in jax.tree_util.tree_flatten_with_path(labels)[0]:
        if isinstance(leaf, Tracer) or not isinstance(leaf, Hashable):
            raise TypeError(
                f"{name}{jax.tree_util.keystr(path)}={leaf!r} is invalid: a label must be a "
                "hashable Python value (a string or an int) naming one of the transforms"
            )
    return StaticTree(labels)


def resolve(config: Any, tree: PyTree, name: str, tree_name: str) -> list[Any]:
    """The value a mask or label configuration gives each leaf of ``tree``, in leaf order.

    A function is called on ``tree`` (as optax calls it: on the parameters at ``init``,
    on the updates at ``update``) and its result checked like a given tree.
    """
    if isinstance(config, StaticTree):
        prefix = config.tree()
    else:
        prefix = config(tree)
        prefix = (static_mask if name == "mask" else static_labels)(prefix, name).tree()
    return broadcast_prefix(prefix, tree, name, tree_name)


def select(tree: PyTree, chosen: list[bool]) -> PyTree:
    """``tree`` with the leaves not ``chosen`` replaced by :class:`MaskedNode`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(
        treedef, [leaf if keep else MaskedNode() for leaf, keep in zip(leaves, chosen)]
    )


def merge(base: PyTree, selected: PyTree, chosen: list[bool]) -> PyTree:
    """``base`` with its ``chosen`` leaves taken from ``selected`` (a :func:`select` result)."""
    leaves, treedef = jax.tree_util.tree_flatten(base)
    replacements = treedef.flatten_up_to(selected)
    return jax.tree_util.tree_unflatten(
        treedef, [new if keep else old for old, new, keep in zip(leaves, replacements, chosen)]
    )


def select_extra_args(
    extra_args: dict[str, Any], updates: PyTree, chosen: list[bool], enabled: bool
) -> dict[str, Any]:
    """Extra update arguments shaped like ``updates`` masked too, when ``enabled`` (optax's
    ``mask_compatible_extra_args``)."""
    if not enabled:
        return extra_args
    structure = jax.tree_util.tree_structure(updates)
    return {
        key: select(value, chosen) if jax.tree_util.tree_structure(value) == structure else value
        for key, value in extra_args.items()
    }


def check_labels_known(labels: list[Any], known: Any, tree: PyTree, name: str) -> None:
    """Raise ``ValueError`` naming the path of the first leaf whose label has no transform."""
    for (path, _), label in zip(jax.tree_util.tree_flatten_with_path(tree)[0], labels):
        if label not in known:
            raise ValueError(
                f"{name} gives the parameter at {jax.tree_util.keystr(path) or '<root>'} the "
                f"label {label!r}, which has no transformation; transforms has labels "
                f"{', '.join(sorted(repr(k) for k in known))}"
            )
