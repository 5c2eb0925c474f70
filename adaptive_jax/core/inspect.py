r"""Read and replace hyperparameters of a (nested) transformation; read a state's step count.

A transformation is a pytree of frozen dataclasses, so its hyperparameters have
addresses: the JAX key path of the field that holds them, e.g.
``transforms[0].b1`` for the :math:`\beta_1` of ``adam`` (the first block of its
chain).  This module names them by those paths:

* :func:`hyperparameters` lists every hyperparameter of ``tx`` with its path;
* :func:`get_hyperparameter` reads one by field name (``"b1"``) or by path (any
  trailing part of it, ``"transforms[0].b1"``), and raises
  :class:`HyperparameterLookupError` listing what exists when the name is missing or
  matches several fields;
* :func:`set_hyperparameter` returns a copy of ``tx`` with one value replaced.  A
  number replaced by a number keeps the tree definition, so a jitted step that
  takes ``tx`` as an argument is not recompiled, and the optimizer state stays valid
  (no state depends on a hyperparameter's value);
* :func:`step_count` and :func:`current_learning_rate` read a state.

A hyperparameter is a data field of a transform that does not itself hold
transforms: a number, an array, a schedule, or a per-parameter pytree.  Static fields
(flags, dtypes) are configuration, not hyperparameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, TypeVar

import jax

from adaptive_jax.core.hyperparams import value_at
from adaptive_jax.core.protocol import StepState, Transform
from adaptive_jax.core.pytree import is_static, replace

T = TypeVar("T", bound=Transform)
KeyPath = tuple[Any, ...]


class HyperparameterLookupError(LookupError):
    """A hyperparameter name that is missing from a transformation or matches several fields."""


def _path_string(path: KeyPath) -> str:
    return jax.tree_util.keystr(path).removeprefix(".")


def _transforms_in(value: Any) -> list[tuple[KeyPath, Transform]] | None:
    """The transforms held by a field value (a transform, or a container of them), else None."""
    leaves = jax.tree_util.tree_flatten_with_path(
        value, is_leaf=lambda x: isinstance(x, Transform)
    )[0]
    members = [(path, leaf) for path, leaf in leaves if isinstance(leaf, Transform)]
    return members or None


def _walk(tx: Any, prefix: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    """``(key path, value)`` of every hyperparameter of ``tx``, in field order."""
    if not dataclasses.is_dataclass(tx):
        return
    for field in dataclasses.fields(tx):
        if is_static(field):
            continue
        value = getattr(tx, field.name)
        path = (*prefix, jax.tree_util.GetAttrKey(field.name))
        members = _transforms_in(value)
        if members is None:
            yield path, value
        else:
            for member_path, member in members:
                yield from _walk(member, (*path, *member_path))


def _require_transform(tx: Any) -> None:
    if not isinstance(tx, Transform):
        raise TypeError(
            f"expected an adaptive_jax transformation, got {type(tx).__name__}; optax "
            "transformations keep their hyperparameters in closures and cannot be inspected"
        )


def hyperparameters(tx: Transform) -> dict[str, Any]:
    """Every hyperparameter of ``tx`` (nested chains included), keyed by its path.

    Example:
        >>> import adaptive_jax as aj
        >>> aj.hyperparameters(aj.adam(1e-3))  # doctest: +NORMALIZE_WHITESPACE
        {'transforms[0].b1': 0.9, 'transforms[0].b2': 0.999, 'transforms[2].eps': 1e-08,
         'transforms[2].eps_root': 0.0, 'transforms[3].learning_rate': 0.001}
    """
    _require_transform(tx)
    return {_path_string(path): value for path, value in _walk(tx, ())}


def _find(tx: Transform, name: str) -> KeyPath:
    """The key path of the one hyperparameter that ``name`` designates."""
    _require_transform(tx)
    entries = [(path, _path_string(path)) for path, _ in _walk(tx, ())]
    query = name.strip().removeprefix(".")
    exact = [path for path, text in entries if text == query]
    if exact:
        return exact[0]
    # A trailing part of a path, cut at a key boundary: "b1", "[0].b1", "transforms[0].b1".
    suffix = query if query.startswith("[") else "." + query
    matches = [path for path, text in entries if ("." + text).endswith(suffix)]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(text for _, text in entries) or "none"
    if not matches:
        raise HyperparameterLookupError(
            f"{type(tx).__name__} has no hyperparameter {name!r}; it has: {available}"
        )
    candidates = ", ".join(_path_string(path) for path in matches)
    raise HyperparameterLookupError(
        f"{name!r} is ambiguous in {type(tx).__name__}: it matches {candidates}; "
        "give the path of the one you mean"
    )


def _value_at_path(tree: Any, path: KeyPath) -> Any:
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            tree = getattr(tree, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            tree = tree[key.idx]
        elif isinstance(key, jax.tree_util.DictKey):
            tree = tree[key.key]
        else:
            raise TypeError(f"cannot follow key {key!r}")
    return tree


def _replace_at_path(tree: Any, path: KeyPath, value: Any) -> Any:
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(key, jax.tree_util.GetAttrKey):
        child = _replace_at_path(getattr(tree, key.name), rest, value)
        return replace(tree, **{key.name: child})
    if isinstance(key, jax.tree_util.SequenceKey):
        items = list(tree)
        items[key.idx] = _replace_at_path(items[key.idx], rest, value)
        return type(tree)(items)
    if isinstance(key, jax.tree_util.DictKey):
        return {**tree, key.key: _replace_at_path(tree[key.key], rest, value)}
    raise TypeError(f"cannot follow key {key!r}")


def step_count(state: Any) -> jax.Array:
    """The number of updates applied so far, read from the :class:`StepState` in ``state``.

    ``state`` may be what ``tx.init`` returned or any tree holding exactly one such
    state (for example the state of ``optax.chain`` with one adaptive_jax member, or a
    ``flax.nnx.Optimizer``'s ``opt_state``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sgd(0.1)
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.ones(2), state)
        >>> int(aj.step_count(state))
        1
    """
    leaves = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, StepState)
    )[0]
    found = [(path, leaf) for path, leaf in leaves if isinstance(leaf, StepState)]
    if len(found) != 1:
        where = ", ".join(jax.tree_util.keystr(path) or "<root>" for path, _ in found)
        raise ValueError(
            "expected a state holding exactly one adaptive_jax step counter (StepState), "
            f"found {len(found)}" + (f" at {where}" if found else "")
        )
    count: Any = found[0][1].count
    # flax.nnx wraps state arrays in Variables; read the array inside.
    if hasattr(count, "get_value"):
        count = count.get_value()
    return count


def get_hyperparameter(tx: Transform, name: str, state: Any = None) -> Any:
    """The hyperparameter of ``tx`` that ``name`` designates (a field name or a path).

    With ``state``, schedules are evaluated at the state's step count: the value the
    *next* update will use (the first update uses ``schedule(0)``).  Per-parameter
    pytrees are evaluated leaf by leaf.

    Example:
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.clip_by_global_norm(1.0), aj.adam(1e-3))
        >>> aj.get_hyperparameter(tx, "b1")
        0.9
        >>> aj.get_hyperparameter(tx, "transforms[1].transforms[3].learning_rate")
        0.001
    """
    value = _value_at_path(tx, _find(tx, name))
    if state is None:
        return value
    step = step_count(state)
    return jax.tree_util.tree_map(lambda h: value_at(h, step), value, is_leaf=callable)


def set_hyperparameter(tx: T, name: str, value: Any) -> T:
    """A copy of ``tx`` whose hyperparameter ``name`` is ``value``; nothing else changes.

    The transform that holds the field is rebuilt with :func:`dataclasses.replace`,
    so its validation runs on the new value.  Replacing a number by a number keeps
    ``tx``'s tree definition: a jitted step taking ``tx`` as an argument reuses its
    compiled code, and the existing optimizer state can be passed on unchanged.

    Example:
        >>> import adaptive_jax as aj
        >>> tx = aj.adamw(1e-3)
        >>> slower = aj.set_hyperparameter(tx, "learning_rate", 1e-4)
        >>> aj.get_hyperparameter(slower, "learning_rate"), aj.get_hyperparameter(tx, "learning_rate")
        (0.0001, 0.001)
    """
    return _replace_at_path(tx, _find(tx, name), value)


def current_learning_rate(tx: Transform, state: Any) -> Any:
    """The learning rate the next update of ``tx`` from ``state`` will use.

    A schedule is evaluated at the state's step count (0 right after ``init``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sgd(aj.schedules.linear_schedule(1.0, 0.0, transition_steps=10))
        >>> state = tx.init(jnp.zeros(1))
        >>> for _ in range(3):
        ...     _, state = tx.update(jnp.ones(1), state)
        >>> round(float(aj.current_learning_rate(tx, state)), 6)
        0.7
    """
    return get_hyperparameter(tx, "learning_rate", state)
