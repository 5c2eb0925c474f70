"""Tree utilities that fail with a clear message instead of a ``tree_map`` traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


class TreeMismatchError(ValueError):
    """Two pytrees that must line up (gradients, state, parameters) do not."""


def _describe(leaf: Any) -> str:
    if leaf is None:
        return "None"
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return f"{jnp.dtype(leaf.dtype).name}{list(leaf.shape)}"
    return type(leaf).__name__


def check_same_structure(
    tree: Any,
    reference: Any,
    tree_name: str,
    reference_name: str,
    *,
    check_shapes: bool = True,
    check_dtypes: bool = False,
) -> None:
    """Raise :class:`TreeMismatchError` naming the first path where the trees differ."""
    treedef, ref_treedef = jax.tree_util.tree_structure(tree), jax.tree_util.tree_structure(reference)
    if treedef == ref_treedef and not (check_shapes or check_dtypes):
        return
    paths = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    ref_paths = dict(jax.tree_util.tree_flatten_with_path(reference)[0])
    if treedef != ref_treedef:
        for path in list(ref_paths) + list(paths):
            if path not in paths or path not in ref_paths:
                where = jax.tree_util.keystr(path) or "<root>"
                side = tree_name if path in paths else reference_name
                other = reference_name if path in paths else tree_name
                raise TreeMismatchError(
                    f"{tree_name} and {reference_name} have different structures: {side} has a "
                    f"leaf at {where} that {other} lacks.\n  {tree_name}: {treedef}\n"
                    f"  {reference_name}: {ref_treedef}"
                )
        raise TreeMismatchError(
            f"{tree_name} and {reference_name} have different structures:\n"
            f"  {tree_name}: {treedef}\n  {reference_name}: {ref_treedef}"
        )
    for path, leaf in paths.items():
        ref_leaf = ref_paths[path]
        shape, ref_shape = jnp.shape(leaf), jnp.shape(ref_leaf)
        mismatch = check_shapes and shape != ref_shape
        mismatch |= check_dtypes and jnp.result_type(leaf) != jnp.result_type(ref_leaf)
        if mismatch:
            raise TreeMismatchError(
                f"{tree_name} and {reference_name} differ at {jax.tree_util.keystr(path)}: "
                f"{tree_name} has {_describe(leaf)}, {reference_name} has {_describe(ref_leaf)}"
            )


def map_params(f: Callable[..., Any], updates: Any, *others: Any, names: tuple[str, ...] = ()) -> Any:
    """``tree_map(f, updates, *others)`` after checking every tree matches ``updates``.

    ``names`` labels ``others`` in the error message (e.g. ``("mu", "nu")``).
    """
    for index, other in enumerate(others):
        name = names[index] if index < len(names) else f"tree {index + 1}"
        check_same_structure(other, updates, name, "updates")
    return jax.tree_util.tree_map(f, updates, *others)


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped (and, for concrete arrays, sharded) like ``tree``.

    Accepts ``jax.ShapeDtypeStruct`` leaves, so state can be initialised abstractly
    with ``jax.eval_shape`` or placed directly with the leaves' shardings.
    """

    def zeros(x: Any) -> jax.Array:
        leaf_dtype = dtype or jnp.result_type(x)
        if isinstance(x, jax.ShapeDtypeStruct):
            return jnp.zeros(x.shape, leaf_dtype, device=x.sharding)
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            return jnp.zeros_like(x, leaf_dtype, device=x.sharding)
        return jnp.zeros_like(x, leaf_dtype)

    return jax.tree_util.tree_map(zeros, tree)
