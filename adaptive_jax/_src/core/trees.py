"""Tree utilities that fail with a clear message instead of a ``tree_map`` traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.core import Tracer


class TreeMismatchError(ValueError):
    """Two pytrees that must line up (gradients, state, parameters) do not."""


_MISSING = object()
_MAX_TREEDEF_CHARS = 300


def _describe(part: Any) -> str:
    """A short description of a leaf or subtree, for error messages."""
    if part is _MISSING:
        return "nothing"
    if part is None:
        return "None"
    if hasattr(part, "shape") and hasattr(part, "dtype"):
        return f"{jnp.dtype(part.dtype).name}{list(part.shape)}"
    treedef = jax.tree_util.tree_structure(part)
    if jax.tree_util.treedef_is_leaf(treedef):
        return type(part).__name__
    return f"a {type(part).__name__} node {_shorten(str(treedef))}"


def _shorten(text: str) -> str:
    if len(text) <= _MAX_TREEDEF_CHARS:
        return text
    return text[: _MAX_TREEDEF_CHARS - 5] + " ...)"


def _one_level(tree: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """The children of ``tree``'s root as ``(key, child)`` pairs, and the root's node data."""
    children, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)
    return [(path[0], child) for path, child in children if path], treedef.node_data()


def _first_difference(tree: Any, reference: Any, path: tuple = ()) -> tuple | None:
    """``(path, part, reference_part)`` where the two structures first differ, else None."""
    children, node = _one_level(tree)
    ref_children, ref_node = _one_level(reference)
    if node is None or ref_node is None:  # a leaf on at least one side
        return None if node is None and ref_node is None else (path, tree, reference)
    if node[0] is not ref_node[0]:
        return path, tree, reference
    keys, ref_keys = [k for k, _ in children], [k for k, _ in ref_children]
    for key, child in ref_children:
        if key not in keys:
            return path + (key,), _MISSING, child
    for key, child in children:
        if key not in ref_keys:
            return path + (key,), child, _MISSING
    try:
        same_node = bool(node == ref_node)
    except Exception:  # node data that cannot be compared (e.g. arrays)
        same_node = False
    if not same_node:  # same keys, different static configuration
        return path, tree, reference
    for (key, child), (_, ref_child) in zip(children, ref_children):
        difference = _first_difference(child, ref_child, path + (key,))
        if difference is not None:
            return difference
    return None


def check_same_structure(
    tree: Any,
    reference: Any,
    tree_name: str,
    reference_name: str,
    *,
    check_shapes: bool = True,
    check_dtypes: bool = False,
) -> None:
    """Raise :class:`TreeMismatchError` naming the first path where the trees differ.

    Structures are compared node by node (container types, keys, ``None`` entries and
    static configuration), then leaves by shape and, if ``check_dtypes``, by dtype.
    ``None`` is an empty subtree, as everywhere in JAX: it matches only ``None``.
    """
    treedef, ref_treedef = (
        jax.tree_util.tree_structure(tree),
        jax.tree_util.tree_structure(reference),
    )
    if treedef == ref_treedef and not (check_shapes or check_dtypes):
        return
    if treedef != ref_treedef:
        where = detail = ""
        difference = _first_difference(tree, reference)
        if difference is not None:
            path, part, ref_part = difference
            where = f" at {jax.tree_util.keystr(path) or '<root>'}"
            detail = (
                f": {tree_name} has {_describe(part)}, {reference_name} has {_describe(ref_part)}"
            )
        raise TreeMismatchError(
            f"{tree_name} and {reference_name} have different structures{where}{detail}\n"
            f"  {tree_name}: {_shorten(str(treedef))}\n"
            f"  {reference_name}: {_shorten(str(ref_treedef))}"
        )
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    ref_leaves = jax.tree_util.tree_leaves(reference)
    for (path, leaf), ref_leaf in zip(paths, ref_leaves):
        shape, ref_shape = jnp.shape(leaf), jnp.shape(ref_leaf)
        mismatch = check_shapes and shape != ref_shape
        mismatch |= check_dtypes and jnp.result_type(leaf) != jnp.result_type(ref_leaf)
        if mismatch:
            raise TreeMismatchError(
                f"{tree_name} and {reference_name} differ at {jax.tree_util.keystr(path)}: "
                f"{tree_name} has {_describe(leaf)}, {reference_name} has {_describe(ref_leaf)}"
            )


def check_inexact(tree: Any, name: str) -> None:
    """Raise ``TypeError`` at the first leaf of ``tree`` that is not a float/complex array.

    Gradients of integer (or boolean, or key) leaves do not exist, and scaling them by a
    learning rate would silently round to 0, so such leaves must be kept out of the
    optimized tree (e.g. replaced by ``None``, or split off with ``eqx.partition``).
    Accepts ``jax.ShapeDtypeStruct`` leaves.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        where = jax.tree_util.keystr(path) or "<root>"
        try:
            dtype = jnp.dtype(leaf.dtype) if hasattr(leaf, "dtype") else jnp.result_type(leaf)
        except TypeError:
            raise TypeError(f"{name} at {where} is {leaf!r}, which is not an array") from None
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{name} at {where} has dtype {dtype}: optimizers need floating-point or "
                "complex parameters and gradients; keep other leaves out of the optimized "
                "tree (e.g. as None)"
            )


def as_inexact_arrays(tree: Any, name: str) -> Any:
    """``tree`` with every leaf a JAX array, after :func:`check_inexact`."""
    check_inexact(tree, name)
    return jax.tree_util.tree_map(jnp.asarray, tree)


def map_params(
    f: Callable[..., Any],
    updates: Any,
    *others: Any,
    names: tuple[str, ...] = (),
    per_leaf: tuple[list[Any], ...] = (),
) -> Any:
    """``tree_map(f, updates, *others)`` after checking every tree matches ``updates``.

    ``names`` labels ``others`` in the error message (e.g. ``("mu", "nu")``).  Each list
    in ``per_leaf`` holds one value per leaf of ``updates`` (a per-parameter
    hyperparameter, see :func:`~adaptive_jax.extend.per_leaf`), passed to
    ``f`` after the leaves of ``others``.
    """
    for index, other in enumerate(others):
        name = names[index] if index < len(names) else f"tree {index + 1}"
        check_same_structure(other, updates, name, "updates")
    if not per_leaf:
        return jax.tree_util.tree_map(f, updates, *others)
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    other_leaves = [treedef.flatten_up_to(other) for other in others]
    out = [f(*args) for args in zip(leaves, *other_leaves, *per_leaf)]
    return jax.tree_util.tree_unflatten(treedef, out)


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped (and, for concrete arrays, sharded) like ``tree``.

    Accepts ``jax.ShapeDtypeStruct`` leaves, so state can be initialised abstractly
    with ``jax.eval_shape`` or placed directly with the leaves' shardings.
    """

    def zeros(x: Any) -> jax.Array:
        leaf_dtype = dtype or jnp.result_type(x)
        if isinstance(x, jax.ShapeDtypeStruct):
            return jnp.zeros(x.shape, leaf_dtype, device=x.sharding)
        # Only committed arrays pass their placement on: committed state next to
        # uncommitted parameters makes jit compile the first step twice.
        if isinstance(x, jax.Array) and not isinstance(x, Tracer) and x.committed:
            return jnp.zeros_like(x, leaf_dtype, device=x.sharding)
        return jnp.zeros_like(x, leaf_dtype)

    return jax.tree_util.tree_map(zeros, tree)


def _prefix_difference(prefix: Any, tree: Any, path: tuple = ()) -> tuple | None:
    """``(path, part, tree_part)`` where ``prefix`` stops being a prefix of ``tree``, else None."""
    children, node = _one_level(prefix)
    if node is None:  # a leaf of the prefix stands for the whole subtree below it
        return None
    tree_children, tree_node = _one_level(tree)
    if tree_node is None or node[0] is not tree_node[0]:
        return path, prefix, tree
    keys, tree_keys = [k for k, _ in children], [k for k, _ in tree_children]
    for key, child in tree_children:
        if key not in keys:
            return path + (key,), _MISSING, child
    for key, child in children:
        if key not in tree_keys:
            return path + (key,), child, _MISSING
    try:
        same_node = bool(node == tree_node)
    except Exception:  # node data that cannot be compared (e.g. arrays)
        same_node = False
    if not same_node:
        return path, prefix, tree
    for (key, child), (_, tree_child) in zip(children, tree_children):
        difference = _prefix_difference(child, tree_child, path + (key,))
        if difference is not None:
            return difference
    return None


def check_prefix(prefix: Any, tree: Any, prefix_name: str, tree_name: str) -> None:
    """Raise :class:`TreeMismatchError` unless ``prefix`` is a pytree prefix of ``tree``.

    A prefix has ``tree``'s structure down to where its own leaves are; each of its
    leaves stands for the whole subtree of ``tree`` at that place (``{"enc": True}`` is
    a prefix of ``{"enc": {"w": ..., "b": ...}}``).  The message names the first path
    where the two part.
    """
    difference = _prefix_difference(prefix, tree)
    if difference is None:
        return
    path, part, tree_part = difference
    raise TreeMismatchError(
        f"{prefix_name} does not match {tree_name} at {jax.tree_util.keystr(path) or '<root>'}: "
        f"{prefix_name} has {_describe(part)}, {tree_name} has {_describe(tree_part)} "
        f"({prefix_name} must have the structure of {tree_name} down to where its leaves are)"
    )


def broadcast_prefix(prefix: Any, tree: Any, prefix_name: str, tree_name: str) -> list[Any]:
    """The leaf of ``prefix`` that covers each leaf of ``tree``, in ``tree``'s leaf order.

    Raises :class:`TreeMismatchError` (see :func:`check_prefix`) when ``prefix`` is not a
    prefix of ``tree``.
    """
    check_prefix(prefix, tree, prefix_name, tree_name)
    values, treedef = jax.tree_util.tree_flatten(prefix)
    subtrees = treedef.flatten_up_to(tree)
    return [
        value
        for value, subtree in zip(values, subtrees)
        for _ in jax.tree_util.tree_leaves(subtree)
    ]
