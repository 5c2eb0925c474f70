r"""What a hyperparameter may be: one :class:`Domain` per field, read by everything else.

A numeric hyperparameter of adaptive_jax is

* a Python number or a JAX/NumPy scalar — a pytree leaf, so ``jax.grad``, ``jax.jvp``
  and ``jax.vmap`` see it and a new value never recompiles;
* where its domain says ``schedule=True``: a schedule, any callable of the 0-based
  step (the pytree schedules of :mod:`adaptive_jax.schedules`, whose own numbers are
  leaves, or a plain function, held as configuration);
* where its domain says ``per_parameter=True``: a pytree that is a prefix of the
  parameters, e.g. ``{"encoder": 1e-3, "head": 1e-2}`` (each of its leaves a scalar,
  or a schedule where allowed).

A :class:`Domain` states that once, next to the field (see
:func:`adaptive_jax.extend.hyperparameter`): construction validates against it,
meta-learning reparameterises by it, and inspection and the documentation list it.

Checks run when a transformation is constructed and the value is concrete.  Traced
values (inside ``jit``, ``grad``, ``vmap``) cannot be inspected and are taken as given;
a schedule is traced once at construction (``jax.eval_shape`` at step 0) to check
that it is traceable and returns a real scalar; its values are only known during
training and are not checked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from adaptive_jax._src.core.reparameterization import (
    IDENTITY,
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    Reparameterization,
)

Schedule = Callable[[jax.Array], jax.Array]
Scalar = float | int | jax.Array | np.ndarray | np.number
ScalarOrSchedule = Scalar | Schedule
# A scalar, a schedule, or a pytree prefix of the parameters holding them.
PerParameter = Any

_UNTRACEABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values one hyperparameter may take, and how meta-learning moves it.

    ``low``/``high`` bound the range (``None``: unbounded; every value must be finite);
    ``schedule`` allows a function of the step; ``per_parameter`` allows a pytree
    prefix of the parameters; ``optional`` allows ``None`` (the block is off);
    ``representable`` rejects a positive value that rounds to 0 in float32, the
    narrowest dtype the library computes in; ``scalar=False`` accepts an array of such
    numbers (a learned schedule's knots), each checked.
    """

    description: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = False
    schedule: bool = False
    per_parameter: bool = False
    optional: bool = False
    representable: bool = False
    scalar: bool = True
    reparameterization: Reparameterization = IDENTITY

    @property
    def interval(self) -> str:
        left = "[" if self.low_inclusive else "("
        right = "]" if self.high_inclusive else ")"
        low = "-inf" if self.low is None else repr(float(self.low))
        high = "inf" if self.high is None else repr(float(self.high))
        return f"{left}{low}, {high}{right}"

    def accepts(self) -> str:
        """What a value must be, in words (for error messages and the docs)."""
        kinds = ["a number"]
        if self.schedule:
            kinds.append("a schedule")
        if self.per_parameter:
            kinds.append("a per-parameter pytree of them")
        if self.optional:
            kinds.append("None")
        return f"{', '.join(kinds[:-1])} or {kinds[-1]}" if len(kinds) > 1 else kinds[0]

    def check(self, name: str, value: Any) -> None:
        """Raise ``TypeError``/``ValueError`` naming ``name`` if a concrete ``value`` is not allowed."""
        if value is None:
            if not self.optional:
                raise TypeError(f"{name}=None is invalid: expected {self.accepts()}")
            return
        if callable(value):
            self._check_schedule(name, value)
            return
        if not jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)):
            if not self.per_parameter:
                raise TypeError(
                    f"{name}={value!r} is invalid: {name} takes one value for every parameter "
                    f"(expected {self.accepts()}); per-parameter values are not supported here"
                )
            for path, leaf in jax.tree_util.tree_flatten_with_path(value, is_leaf=callable)[0]:
                where = f"{name}{jax.tree_util.keystr(path)}"
                if callable(leaf):
                    self._check_schedule(where, leaf)
                elif leaf is not None:
                    self._check_number(where, leaf)
            return
        self._check_number(name, value)

    def _check_number(self, name: str, value: Any) -> None:
        if isinstance(value, Tracer):
            return
        if isinstance(value, bool) or getattr(value, "dtype", None) == np.bool_:
            raise TypeError(f"{name}={value!r} is invalid: expected {self.accepts()}, got a bool")
        try:
            array = np.asarray(value)
        except Exception:  # a placeholder object JAX put in a tree: nothing to check
            return
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == jnp.bfloat16
        ):
            raise TypeError(
                f"{name}={value!r} is invalid: expected {self.accepts()}, got {type(value).__name__}"
            )
        if np.iscomplexobj(array):
            raise TypeError(
                f"{name}={value!r} is invalid: expected a real number, got a complex one"
            )
        if array.ndim and not self.scalar:
            for number in np.ravel(array):
                self._check_number(name, number)
            return
        if array.ndim:
            hint = (
                "; per-parameter values are a pytree shaped like the parameters "
                "(e.g. {'w': 1e-3, 'b': 1e-2}), not an array"
                if self.per_parameter
                else ""
            )
            raise ValueError(
                f"{name} has shape {array.shape}: expected a scalar ({self.accepts()}){hint}"
            )
        number = float(array.astype(np.float64))
        if not self._in_range(number):
            raise ValueError(
                f"{name}={number!r} is invalid: expected a finite number in {self.interval}"
            )
        if self.representable and number > 0 and np.float32(number) == 0:
            raise ValueError(
                f"{name}={number!r} is invalid: it rounds to 0 in float32, where the library "
                f"computes it; use at least {float(np.finfo(np.float32).smallest_subnormal):g} "
                "or 0 explicitly"
            )

    def contains(self, value: Any) -> jax.Array:
        """Whether every number in ``value`` is in the domain, as a traceable boolean.

        Schedules are taken as valid (their values are only known during training).
        Used where values are traced and cannot raise, e.g. to reject a meta-learning step
        that would leave the range.
        """
        ok = jnp.asarray(True)
        if value is None or callable(value):
            return ok
        for leaf in jax.tree_util.tree_leaves(value, is_leaf=callable):
            if callable(leaf):
                continue
            x = jnp.asarray(leaf)
            if not jnp.issubdtype(x.dtype, jnp.floating):
                continue
            inside = jnp.isfinite(x)
            if self.low is not None:
                inside &= (x >= self.low) if self.low_inclusive else (x > self.low)
            if self.high is not None:
                inside &= (x <= self.high) if self.high_inclusive else (x < self.high)
            ok &= jnp.all(inside)
        return ok

    def _in_range(self, number: float) -> bool:
        if not math.isfinite(number):
            return False
        if self.low is not None and (
            number < self.low or (number == self.low and not self.low_inclusive)
        ):
            return False
        return self.high is None or not (
            number > self.high or (number == self.high and not self.high_inclusive)
        )

    def _check_schedule(self, name: str, schedule: Any) -> None:
        if not self.schedule:
            raise TypeError(
                f"{name}={schedule!r} is invalid: {name} cannot be a schedule here; "
                f"expected {self.accepts()}"
            )
        if any(isinstance(x, Tracer) for x in jax.tree_util.tree_leaves(schedule)):
            return
        step = jax.ShapeDtypeStruct((), jnp.int32)
        try:
            out = jax.eval_shape(schedule, step)
        except Exception:
            # Python control flow on the step works eagerly, and a schedule may rely on
            # a configuration (dtype promotion) set only where it is used: the first
            # update reports what is wrong (see value_at).
            return
        check_schedule_output(name, schedule, out)


def check_schedule_output(name: str, schedule: Any, out: Any) -> None:
    """Raise unless a schedule's output (a value or its shape/dtype) is a real scalar."""
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape is None or dtype is None:
        shape, dtype = np.shape(out), np.result_type(out)
    if tuple(shape) != ():
        raise ValueError(
            f"{name}: a schedule must return a scalar, got shape {tuple(shape)} from {schedule!r}"
        )
    if jnp.issubdtype(dtype, jnp.complexfloating) or not (
        jnp.issubdtype(dtype, jnp.number) and dtype != np.bool_
    ):
        raise TypeError(
            f"{name}: a schedule must return a real number, got dtype {np.dtype(dtype).name} "
            f"from {schedule!r}"
        )


def value_at(hyperparameter: Any, step: jax.Array, name: str = "a hyperparameter") -> Any:
    """The hyperparameter's value at 0-based ``step``: call it if it is a schedule.

    Raises ``TypeError`` naming ``name`` if a schedule cannot be traced (Python control
    flow on a traced step) or returns something other than a real scalar.
    """
    if not callable(hyperparameter):
        return hyperparameter
    try:
        value = hyperparameter(step)
    except _UNTRACEABLE as error:
        raise TypeError(
            f"{name}: the schedule {hyperparameter!r} is not traceable. It is called with "
            "the step as a traced JAX integer (inside jit, grad, vmap and scan), so it must "
            "compute with jax.numpy: jnp.where or lax.cond, not Python `if`, int() or "
            "float() on the step. JAX said: " + str(error).splitlines()[0]
        ) from error
    check_schedule_output(name, hyperparameter, value)
    return value


def per_leaf(
    hyperparameter: Any, step: jax.Array, tree: Any, name: str = "a hyperparameter"
) -> list[Any]:
    """One value of ``hyperparameter`` for each leaf of ``tree``, in leaf order.

    A scalar or schedule is shared by every leaf (the same object, so a computation on
    it can be done once); a pytree is broadcast as a prefix of ``tree``.  ``name``
    labels errors.
    """
    count = len(jax.tree_util.tree_leaves(tree))
    if callable(hyperparameter) or jax.tree_util.treedef_is_leaf(
        jax.tree_util.tree_structure(hyperparameter)
    ):
        return [value_at(hyperparameter, step, name)] * count
    try:
        broadcast = jax.tree_util.tree_map(
            lambda h, sub: jax.tree_util.tree_map(lambda _: h, sub),
            hyperparameter,
            tree,
            is_leaf=callable,
        )
    except ValueError as error:
        raise ValueError(
            "a per-parameter hyperparameter must be a pytree prefix of the parameters; "
            f"got structure {jax.tree_util.tree_structure(hyperparameter)} for parameters "
            f"{jax.tree_util.tree_structure(tree)}"
        ) from error
    # One value per distinct leaf object: a per-parameter tree repeating one schedule
    # calls it once.
    values: dict[int, Any] = {}
    out = []
    for h in jax.tree_util.tree_leaves(broadcast, is_leaf=callable):
        if id(h) not in values:
            values[id(h)] = (h, value_at(h, step, name))
        out.append(values[id(h)][1])
    return out


# The domains the library's blocks declare.
LEARNING_RATE = Domain("a learning rate", schedule=True, per_parameter=True, reparameterization=LOG)
DECAY_RATE = Domain("a decay rate", 0.0, 1.0, per_parameter=True, reparameterization=LOG_ONE_MINUS)
EPSILON = Domain("an epsilon", 0.0, None, representable=True, reparameterization=LOG)
WEIGHT_DECAY = Domain(
    "a weight decay", 0.0, None, schedule=True, per_parameter=True, reparameterization=SOFTPLUS
)
NONNEGATIVE = Domain("a non-negative number", 0.0, None, reparameterization=SOFTPLUS)
POSITIVE = Domain("a positive number", 0.0, None, low_inclusive=False, reparameterization=LOG)
REAL = Domain("a finite number", schedule=True, per_parameter=True)
FRACTION = Domain("a fraction", 0.0, 1.0, high_inclusive=True, reparameterization=LOG_ONE_MINUS)
REDUCTION_FACTOR = Domain(
    "a reduction factor", 0.0, 1.0, low_inclusive=False, reparameterization=LOG_ONE_MINUS
)


def check_count(name: str, value: Any, low: int = 1) -> None:
    """Raise unless ``value`` is a Python int of at least ``low`` (a static count)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is invalid: expected a Python int >= {low}")
    if value < low:
        raise ValueError(f"{name}={value!r} is invalid: expected an int >= {low}")
