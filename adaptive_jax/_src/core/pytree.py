"""Dataclass pytrees whose numeric fields are leaves and whose configuration is static.

Every transformation, schedule and state in adaptive_jax is declared with
:func:`pytree_dataclass`.  Fields marked ``static_field()`` (flags, dtypes, names)
go into the tree definition; every other field is a child, so ``jax.grad``,
``jax.jvp`` and ``jax.vmap`` see the hyperparameters and a new value never
recompiles a jitted function that takes the transformation as an argument.

One exception keeps plain Python working: a field holding an ordinary Python
function (for example a schedule written as a ``lambda``) cannot be a JAX leaf, so
it is treated as static for that instance.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

import jax

T = TypeVar("T")

_STATIC = "adaptive_jax_static"


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is configuration (part of the tree definition), not data."""
    metadata = dict(kwargs.pop("metadata", {}))
    metadata[_STATIC] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def is_static(field: dataclasses.Field) -> bool:
    """Whether a dataclass ``field`` was declared with :func:`static_field`."""
    return bool(field.metadata.get(_STATIC))


def _is_opaque_callable(value: Any) -> bool:
    """True for callables JAX cannot treat as data (functions, bound methods, ...)."""
    if not callable(value):
        return False
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value))


@dataclass_transform(field_specifiers=(dataclasses.field, static_field), frozen_default=True)
def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass registered as a pytree with keyed children.

    Unflattening bypasses ``__init__`` (and so any validation in ``__post_init__``),
    because JAX rebuilds trees with tracers and placeholder objects as leaves.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)  # type: ignore[assignment]
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    static_names = tuple(f.name for f in fields if f.metadata.get(_STATIC))
    data_names = tuple(f.name for f in fields if not f.metadata.get(_STATIC))
    keys = {name: jax.tree_util.GetAttrKey(name) for name in data_names}

    def flatten_with_keys(obj):
        children, opaque = [], []
        for name in data_names:
            value = getattr(obj, name)
            if _is_opaque_callable(value):
                opaque.append((name, value))
            else:
                children.append((keys[name], value))
        static = tuple(getattr(obj, name) for name in static_names)
        child_names = tuple(k.name for k, _ in children)
        return children, (static, child_names, tuple(opaque))

    def unflatten(aux, children):
        static, child_names, opaque = aux
        obj = object.__new__(cls)
        for name, value in zip(static_names, static):
            object.__setattr__(obj, name, value)
        for name, value in zip(child_names, children):
            object.__setattr__(obj, name, value)
        for name, value in opaque:
            object.__setattr__(obj, name, value)
        return obj

    def flatten(obj):
        children, aux = flatten_with_keys(obj)
        return [v for _, v in children], aux

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


def replace(obj: T, **changes: Any) -> T:
    """A copy of the dataclass ``obj`` with ``changes`` (runs validation again)."""
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
