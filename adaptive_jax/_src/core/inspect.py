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

A hyperparameter is a field declared with
:func:`~adaptive_jax.extend.hyperparameter` (a number, a schedule, or a
per-parameter pytree); the numbers inside a schedule are hyperparameters of the
schedule, so they are listed too.  Static fields (flags, dtypes) are configuration.
Named optimizers record the names their constructors took (``adam``'s ``b2`` is the
``decay`` of its second-moment block; ``sgd``'s ``momentum`` is its trace's
``decay``), and every function here finds a hyperparameter by that name too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import Domain, value_at
from adaptive_jax._src.core.module import Module, Role, deferred_validation, spec_of
from adaptive_jax._src.core.protocol import StepState, Transform
from adaptive_jax._src.core.trees import TreeMismatchError

T = TypeVar("T", bound=Transform)
KeyPath = tuple[Any, ...]


class HyperparameterLookupError(LookupError):
    """A hyperparameter name that is missing from a transformation or matches several fields."""


def _path_string(path: KeyPath) -> str:
    return jax.tree_util.keystr(path).removeprefix(".")


def _modules_in(value: Any) -> list[tuple[KeyPath, Module]]:
    """The modules held by a field value (a module, or a container of them)."""
    leaves = jax.tree_util.tree_flatten_with_path(value, is_leaf=lambda x: isinstance(x, Module))[0]
    return [(path, leaf) for path, leaf in leaves if isinstance(leaf, Module)]


def walk(tx: Any, prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any, Domain]]:
    """``(key path, value, domain)`` of every hyperparameter of ``tx``, in field order.

    A hyperparameter holding a schedule is listed itself, and so are the schedule's own
    hyperparameters (its numbers are the leaves).
    """
    if not isinstance(tx, Module):
        return
    for field in dataclasses.fields(tx):
        spec = spec_of(field)
        if spec.role is Role.STATIC:
            continue
        value = getattr(tx, field.name)
        path = (*prefix, jax.tree_util.GetAttrKey(field.name))
        if spec.domain is not None:
            yield path, value, spec.domain
        for member_path, member in _modules_in(value):
            yield from walk(member, (*path, *member_path))


def aliases(tx: Any, prefix: KeyPath = ()) -> Iterator[tuple[str, str]]:
    """``(name, path)`` for every name a chain inside ``tx`` records, with full paths."""
    if not isinstance(tx, Module):
        return
    base = _path_string(prefix)
    for name, relative in getattr(tx, "aliases", ()):
        yield (f"{base}.{name}" if base else name), (f"{base}.{relative}" if base else relative)
    for field in dataclasses.fields(tx):
        if spec_of(field).role is Role.CHILD:
            path = (*prefix, jax.tree_util.GetAttrKey(field.name))
            for member_path, member in _modules_in(getattr(tx, field.name)):
                yield from aliases(member, (*path, *member_path))


def check_hyperparameters(tx: Any) -> None:
    """Check every hyperparameter of ``tx`` against its domain, naming it as its constructor did.

    A value reached through a name a chain records (``adam``'s ``b1``) is reported by
    that name; any other by its field name.
    """
    names = {path: alias.rsplit(".", 1)[-1] for alias, path in aliases(tx)}
    for path, value, domain in walk(tx):
        text = _path_string(path)
        field = text.rsplit(".", 1)[-1]
        domain.check(names.get(text, field), value)


def in_domains(tx: Any) -> jax.Array:
    """Whether every hyperparameter of ``tx`` is in its domain: a traceable boolean.

    :func:`check_hyperparameters` raises for concrete values; this works on traced ones.
    """
    ok = jnp.asarray(True)
    for _, value, domain in walk(tx):
        if not isinstance(value, Module):
            ok &= domain.contains(value)
    return ok


def check_per_parameter_trees(tx: Any, params: Any) -> None:
    """Raise ``TreeMismatchError`` if a per-parameter hyperparameter tree is not a prefix of ``params``.

    Run by ``init``, so a tree that does not match the parameters is reported by the name
    its constructor took (``b1``), before any step.
    """
    names = {path: alias.rsplit(".", 1)[-1] for alias, path in aliases(tx)}
    structure = jax.tree_util.tree_structure(params)
    for path, value, domain in walk(tx):
        if not domain.per_parameter or value is None or callable(value):
            continue
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)):
            continue
        try:  # every node of the value's structure must be a node of the parameters'
            jax.tree_util.tree_map(lambda h, sub: None, value, params, is_leaf=callable)
        except (ValueError, TypeError) as error:
            text = _path_string(path)
            name = names.get(text, text.rsplit(".", 1)[-1])
            raise TreeMismatchError(
                f"{name} is a per-parameter tree that is not a prefix of the parameters "
                f"(it must have the parameters' structure down to where its leaves are): "
                f"{name} has {jax.tree_util.tree_structure(value, is_leaf=callable)}, the "
                f"parameters have {structure}"
            ) from error


F = TypeVar("F", bound=Callable[..., Any])


def checks_arguments_by_name(factory: F) -> F:
    """Decorate a named-optimizer factory: its errors name the factory's own arguments.

    The blocks are built without checks, then the finished chain is checked with
    :func:`check_hyperparameters`, so ``sgd(0.1, momentum=1.0)`` reports ``momentum``,
    not the ``decay`` field of the trace block it flows into.
    """

    @functools.wraps(factory)
    def checked(*args: Any, **kwargs: Any) -> Any:
        with deferred_validation():
            tx = factory(*args, **kwargs)
        check_hyperparameters(tx)
        return tx

    return checked  # type: ignore[return-value]


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
        {'transforms[0].decay': 0.9, 'transforms[1].decay': 0.999, 'transforms[3].eps': 1e-08,
         'transforms[3].eps_root': 0.0, 'transforms[4].learning_rate': 0.001}
    """
    _require_transform(tx)
    return {
        _path_string(path): value
        for path, value, _ in walk(tx)
        if not isinstance(value, Module)  # a schedule's numbers are listed instead
    }


def _find(tx: Transform, name: str) -> KeyPath:
    """The key path of the one hyperparameter that ``name`` designates."""
    _require_transform(tx)
    entries = [(path, _path_string(path)) for path, _, _ in walk(tx)]
    by_text = {text: path for path, text in entries}
    query = name.strip().removeprefix(".")
    if query in by_text:
        return by_text[query]
    named = dict(aliases(tx))
    if query in named and named[query] in by_text:
        return by_text[named[query]]
    # A name a nested chain records, given without its chain's path: "b2".
    short = [p for alias, p in named.items() if alias.rsplit(".", 1)[-1] == query and p in by_text]
    if len(short) == 1:
        return by_text[short[0]]
    if len(short) > 1:
        raise HyperparameterLookupError(
            f"{name!r} is ambiguous in {type(tx).__name__}: it names "
            f"{', '.join(sorted(short))}; give the path of the one you mean"
        )
    # A trailing part of a path, cut at a key boundary: "b1", "[0].b1", "transforms[0].b1".
    suffix = query if query.startswith("[") else "." + query
    matches = [path for path, text in entries if ("." + text).endswith(suffix)]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join([*named, *(text for _, text in entries)]) or "none"
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
        return tree.replace(**{key.name: child})
    if isinstance(key, jax.tree_util.SequenceKey):
        items = list(tree)
        items[key.idx] = _replace_at_path(items[key.idx], rest, value)
        return type(tree)(items)
    if isinstance(key, jax.tree_util.DictKey):
        return {**tree, key.key: _replace_at_path(tree[key.key], rest, value)}
    raise TypeError(f"cannot follow key {key!r}")


S = TypeVar("S")


def find_state(state: Any, kind: type[S], description: str) -> S:
    """The one node of type ``kind`` in the optimizer state ``state``.

    Raises ``ValueError`` naming ``description`` and the paths found when ``state``
    holds none or several.
    """
    leaves = jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda x: isinstance(x, kind))[0]
    found = [(path, leaf) for path, leaf in leaves if isinstance(leaf, kind)]
    if len(found) != 1:
        where = ", ".join(jax.tree_util.keystr(path) or "<root>" for path, _ in found)
        raise ValueError(
            f"expected a state holding exactly one {description}, "
            f"found {len(found)}" + (f" at {where}" if found else "")
        )
    return found[0][1]


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
    count: Any = find_state(state, StepState, "adaptive_jax step counter (StepState)").count
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
        >>> aj.get_hyperparameter(tx, "b1")  # the name adam took
        0.9
        >>> aj.get_hyperparameter(tx, "transforms[1].transforms[0].decay")  # its path
        0.9
        >>> aj.get_hyperparameter(tx, "transforms[1].transforms[4].learning_rate")
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
