"""The one base class of transformations, schedules and estimators: a frozen dataclass pytree.

A :class:`Module` subclass is made a frozen dataclass and registered as a pytree with
keyed children when it is defined, in the spirit of ``equinox.Module``:

* **fields say what they are.** :func:`hyperparameter` declares a numeric
  hyperparameter once — its default and its :class:`~adaptive_jax.extend.Domain`
  (valid range, whether it may be a schedule or a per-parameter tree, how meta-learning
  reparameterises it); validation, meta-learning, inspection and the docs all read
  that declaration.  :func:`static` is configuration (flags, dtypes) that goes into the
  tree definition; :func:`child` holds other pytrees (transforms in a chain, a loss
  function, data) that are neither.  An undeclared data field is an error, so a new
  hyperparameter cannot be left unvalidated by accident;
* **abstract or final.** A class either declares ``abstract=True`` or may not be
  subclassed: variants are built by composition (a chain, another block), so a
  class's constructor is never a re-ordered copy of its parent's;
* **validation at construction only.** ``__init__`` checks every declared
  hyperparameter, then runs the class's own ``__check_init__``.  Rebuilding from
  leaves (``tree_unflatten``) bypasses both, because JAX rebuilds trees with tracers,
  placeholder objects and cotangents (a gradient with respect to :math:`\\beta_1` is not
  a valid :math:`\\beta_1`).

Why not ``jax.tree_util.register_dataclass`` or ``equinox.Module`` directly: JAX's
registration rebuilds trees by calling the constructor (which would validate
cotangents), and equinox would be a runtime dependency for the ~100 lines here.
Plain Python functions given as hyperparameters (a schedule written as a ``lambda``)
are wrapped in :class:`StaticFunction`, a node with no leaves, so they travel in the
tree definition: a transformation holding one stays a valid argument of ``jax.jit``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar, dataclass_transform

import jax

from adaptive_jax._src.core.hyperparameter import Domain

T = TypeVar("T")
M = TypeVar("M", bound="Module")

_KEY = "adaptive_jax"


class Role(enum.Enum):
    """What a dataclass field of a :class:`Module` holds."""

    HYPERPARAMETER = "hyperparameter"  # a numeric leaf (or schedule / per-parameter tree)
    STATIC = "static"  # configuration: part of the tree definition
    CHILD = "child"  # other pytrees: transforms, functions, data


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """The declaration attached to a field's metadata."""

    role: Role
    domain: Domain | None = None
    converter: Callable[[Any], Any] | None = None


def _field(spec: FieldSpec, default: Any, **kwargs: Any) -> Any:
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(metadata={_KEY: spec}, **kwargs)


def hyperparameter(default: Any = dataclasses.MISSING, *, domain: Domain, **overrides: Any) -> Any:
    """Declare a hyperparameter field: its default and its :class:`Domain`.

    ``overrides`` replace attributes of ``domain`` for this field (for example
    ``per_parameter=False`` where a block supports only one value for every leaf).
    """
    if overrides:
        domain = dataclasses.replace(domain, **overrides)
    return _field(FieldSpec(Role.HYPERPARAMETER, domain), default)


def static(
    default: Any = dataclasses.MISSING, *, converter: Callable[[Any], Any] | None = None
) -> Any:
    """Declare a configuration field (a flag, a dtype, a count): part of the tree definition."""
    return _field(FieldSpec(Role.STATIC, converter=converter), default)


def child(
    default: Any = dataclasses.MISSING, *, converter: Callable[[Any], Any] | None = None
) -> Any:
    """Declare a field holding other pytrees (transforms, functions, data); ``converter`` runs at construction."""
    return _field(FieldSpec(Role.CHILD, converter=converter), default)


_DEFERRED = contextvars.ContextVar("adaptive_jax_deferred_validation", default=False)


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Construct modules without checking their hyperparameters' domains (checked later).

    Named optimizers build their blocks inside this, then check the finished chain
    with each hyperparameter reported by the argument name the user gave
    (:func:`adaptive_jax._src.core.inspect.check_hyperparameters`).
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def spec_of(field: dataclasses.Field) -> FieldSpec:
    """The declaration of one of a :class:`Module`'s fields."""
    return field.metadata[_KEY]


def hyperparameter_fields(obj: Any) -> list[tuple[dataclasses.Field, Domain]]:
    """``(field, domain)`` for each declared hyperparameter of a :class:`Module` (else [])."""
    if not isinstance(obj, Module):
        return []
    return [(f, s.domain) for f in dataclasses.fields(obj) if (s := spec_of(f)).domain is not None]


class StaticFunction:
    """A plain Python function held as configuration: a pytree node with no leaves.

    Calls go to the function; equality and hashing are those of the function, so two
    transformations holding the same function share a tree definition (and a
    compiled program), and a new function is a new program.
    """

    __slots__ = ("function", "__weakref__")

    def __init__(self, function: Callable[..., Any]):
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticFunction) and other.function == self.function

    def __hash__(self) -> int:
        return hash(self.function)

    def __repr__(self) -> str:
        return repr(self.function)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.function


jax.tree_util.register_pytree_node(
    StaticFunction,
    lambda s: ((), s.function),
    lambda function, _: StaticFunction(function),  # type: ignore[arg-type]
)


def _is_opaque_callable(value: Any) -> bool:
    """A callable that JAX would take as a leaf (a function, a bound method, a partial)."""
    if not callable(value) or isinstance(value, StaticFunction):
        return False
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value))


def wrap_functions(value: Any) -> Any:
    """``value`` with every plain function in it wrapped in a :class:`StaticFunction`."""
    if _is_opaque_callable(value):
        return StaticFunction(value)
    leaves = jax.tree_util.tree_leaves(value, is_leaf=_is_opaque_callable)
    if not any(_is_opaque_callable(leaf) for leaf in leaves):
        return value  # the very same object: nothing to wrap
    return jax.tree_util.tree_map(
        lambda x: StaticFunction(x) if _is_opaque_callable(x) else x,
        value,
        is_leaf=_is_opaque_callable,
    )


@dataclass_transform(field_specifiers=(hyperparameter, static, child), frozen_default=True)
class Module:
    """Base class: a frozen dataclass pytree whose fields declare what they hold.

    Subclasses declare ``abstract=True`` to be subclassed (``class Transform(Module,
    abstract=True)``); every other subclass is final.  Cross-field checks go in a
    ``__check_init__(self)`` method, which runs after the declared hyperparameters
    have been checked.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    _abstract: ClassVar[bool] = True
    _data_names: ClassVar[tuple[str, ...]] = ()
    _static_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        for base in cls.__mro__[1:]:
            if issubclass(base, Module) and not base.__dict__.get("_abstract", False):
                raise TypeError(
                    f"{cls.__name__} subclasses {base.__name__}, which is final: build the "
                    "variant by composition (a chain, or a block of its own), or mark the "
                    "parent abstract=True"
                )
        if "__post_init__" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: put construction checks in __check_init__")
        cls._abstract = abstract
        dataclasses.dataclass(frozen=True, eq=False)(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        for field in fields:
            if _KEY not in field.metadata:
                raise TypeError(
                    f"{cls.__name__}.{field.name} must be declared with hyperparameter(...), "
                    "static(...) or child(...)"
                )
        cls._static_names = tuple(f.name for f in fields if spec_of(f).role is Role.STATIC)
        cls._data_names = tuple(f.name for f in fields if spec_of(f).role is not Role.STATIC)
        if not abstract:
            _register(cls)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            spec = spec_of(field)
            value = getattr(self, field.name)
            if spec.converter is not None:
                value = spec.converter(value)
            if spec.role is Role.STATIC:
                object.__setattr__(self, field.name, value)
                continue
            value = wrap_functions(value)
            if spec.domain is not None and not _DEFERRED.get():
                spec.domain.check(field.name, value)
            object.__setattr__(self, field.name, value)
        check = getattr(self, "__check_init__", None)
        if check is not None:
            check()

    def replace(self: M, **changes: Any) -> M:
        """A copy with ``changes`` applied (validated as at construction)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _register(cls: type[Module]) -> None:
    data_names, static_names = cls._data_names, cls._static_names
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in data_names)

    def flatten(obj: Any) -> tuple[list[Any], tuple[Any, ...]]:
        return [getattr(obj, name) for name in data_names], tuple(
            getattr(obj, name) for name in static_names
        )

    def flatten_with_keys(obj: Any) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
        children, aux = flatten(obj)
        return list(zip(keys, children)), aux

    def unflatten(aux: tuple[Any, ...], children: Any) -> Any:
        obj = object.__new__(cls)
        for name, value in zip(static_names, aux):
            object.__setattr__(obj, name, value)
        for name, value in zip(data_names, children):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
