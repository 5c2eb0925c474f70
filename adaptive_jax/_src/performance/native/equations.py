"""How the translator treats equations that hold sub-jaxprs, and scalars XLA computes.

Two questions :mod:`.codegen` asks of an equation before translating it into C:

* **Is it a call?**  Only the primitives of :data:`CALL_PRIMITIVES` run their
  sub-jaxpr exactly once on their own inputs; the translator enters those.  Every
  other primitive carrying a sub-jaxpr (:func:`has_sub_jaxpr`: ``scan``, ``while``,
  ``cond``, anything new) may run its body any number of times and is never treated
  as a call.
* **Can JAX compute it as it stands?**  In mode "xla" an all-scalar equation is
  bound again, unchanged (:func:`bind_as_is`: the same primitive and parameters, its
  outputs checked against the jaxpr's shapes and dtypes), so XLA computes exactly
  what the plain step computes — loops and branches over scalars included.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.extend.core
import numpy as np

from adaptive_jax._src.performance.native.errors import Unsupported

# The primitives that run their sub-jaxpr exactly once on their own inputs and return
# its outputs, by name (jax 0.4 to 0.10 spellings), and the parameter holding it.  They
# are translated by translating the sub-jaxpr in place.  Any other equation carrying a
# sub-jaxpr (scan, so fori_loop with static bounds; while; cond; anything new) may run
# its body any number of times: it is never translated into C; in mode "xla" an
# all-scalar one is bound as it is (XLA runs it), otherwise it is Unsupported.
CALL_PRIMITIVES = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
}


def called_jaxpr(eqn: Any) -> Any:
    """The closed sub-jaxpr a call primitive runs once, or ``None`` for other equations."""
    name = eqn.primitive.name
    if name not in CALL_PRIMITIVES:
        return None
    sub = eqn.params.get(CALL_PRIMITIVES[name])
    if sub is None:
        raise Unsupported(f"{name} without its {CALL_PRIMITIVES[name]}")
    closed = sub if hasattr(sub, "consts") else jax.extend.core.ClosedJaxpr(sub, [])
    if len(closed.jaxpr.invars) != len(eqn.invars):
        raise Unsupported(f"{name} passes its sub-jaxpr other arguments than its own")
    return closed


def has_sub_jaxpr(params: dict[str, Any]) -> bool:
    """Whether an equation's parameters hold a jaxpr (directly or in a tuple)."""

    def holds(value: Any) -> bool:
        if isinstance(value, jax.extend.core.Jaxpr | jax.extend.core.ClosedJaxpr):
            return True
        return isinstance(value, tuple | list) and any(holds(v) for v in value)

    return any(holds(value) for value in params.values())


def bind_as_is(eqn: Any, values: list[Any]) -> list[Any]:
    """``eqn`` applied by JAX itself to ``values``: the same primitive and parameters."""
    name = eqn.primitive.name
    try:
        bound = eqn.primitive.get_bind_params(eqn.params)
        # (subfuns, params) before jax 0.8, params since
        subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
        out = eqn.primitive.bind(*subfuns, *values, **params)
    except Exception as error:  # a primitive that cannot be re-bound this way
        raise Unsupported(f"binding {name}: {error}") from error
    outs = list(out) if eqn.primitive.multiple_results else [out]
    if len(outs) != len(eqn.outvars) or any(
        (np.shape(x), np.dtype(jax.numpy.result_type(x)))
        != (tuple(v.aval.shape), np.dtype(v.aval.dtype))
        for x, v in zip(outs, eqn.outvars)
    ):
        raise Unsupported(f"binding {name} gave other shapes or dtypes than its jaxpr")
    return outs


def binding_key(eqn: Any, values: list[Any]) -> Any:
    """A key equal for the same primitive and parameters on the same input values.

    JAX values are keyed by identity: the caller keeps them alive with the cached
    result, so an id is never reused for another value while the key is cached.
    """
    return (eqn.primitive, _params_key(eqn.params), tuple(_value_key(v) for v in values))


def _params_key(params: dict[str, Any]) -> Any:
    try:
        key = tuple(sorted(params.items()))
        hash(key)
        return key
    except TypeError:  # unhashable parameters (a jaxpr, ...): never shared
        return object()


def _value_key(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return ("literal", value.dtype.str, value.tobytes())
    return ("value", id(value))
