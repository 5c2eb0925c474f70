r"""What a transformation's update does across array elements, read off its jaxpr.

The **flat layout** (:func:`~adaptive_jax.performance.flatten`,
:class:`~adaptive_jax.performance.FlatParams`) merges the leaves of a pytree into one
buffer per dtype before a transformation sees them.  That is exact when every statistic
the update reduces to a scalar covers *all* leaves (a global norm) or there is none
(Adam); wrong for per-leaf statistics (LAMB's trust ratio :math:`\|\theta_i\|/\|u_i\|`,
which would become one ratio for the whole buffer).

This is decided by tracing the update to a jaxpr and following data flow.  Every
array input carries the set of leaves it belongs to (its *taint*); elementwise
primitives and broadcasts of scalars pass taints through; a reduction to a scalar
keeps the taint of what it reduced.  A scalar whose taint is a non-empty proper
subset of the leaves is a *per-leaf statistic*; the update is layout-invariant
when no per-leaf statistic reaches an array or an output, and no primitive
rearranges elements (reshape, slice, gather, dot, scan, ...).  The analysis is
conservative: what it cannot follow counts as a violation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

Taint = frozenset

_ELEMENTWISE = frozenset(
    """
    abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp complex conj
    convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2
    expm1 floor ge gt imag integer_pow is_finite le lgamma log log1p logistic lt max min
    mul ne neg nextafter not or pow real reduce_precision rem round rsqrt select_n sign
    sin sinh sqrt square sub tan tanh xor population_count shift_left
    shift_right_arithmetic shift_right_logical stop_gradient optimization_barrier
    """.split()
)
_FULL_REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor".split()
)
# Array values that depend on their position or on a random stream, not on the inputs.
_POSITIONAL = frozenset("iota random_bits rng_bit_generator rng_uniform threefry2x32".split())
# Primitives whose sub-jaxpr takes exactly the equation's inputs.
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "checkpoint": "jaxpr",
    "remat": "jaxpr",
}


class _Analysis:
    """Taint propagation over one jaxpr; collects violations instead of raising.

    Each variable carries ``(taint, is_statistic)``.  A statistic is a scalar, or an
    array computed from scalars only (e.g. a stack of per-leaf norms): not
    parameter-shaped data, so any primitive may rearrange it.
    """

    def __init__(self, all_leaves: Taint):
        self.all_leaves = all_leaves
        self.violations: list[str] = []

    def is_per_leaf(self, taint: Taint) -> bool:
        return bool(taint) and taint != self.all_leaves

    def run(self, jaxpr: Any, inputs: Sequence[tuple[Taint, bool]]) -> list[tuple[Taint, bool]]:
        env: dict[Any, tuple[Taint, bool]] = {}
        for var, value in zip(jaxpr.invars, inputs):
            env[var] = value
        for var in jaxpr.constvars:
            env[var] = (Taint(), _size(var) <= 1)

        def read(atom: Any) -> tuple[Taint, bool]:
            if hasattr(atom, "val"):  # a literal
                return Taint(), True
            return env.get(atom, (Taint(), _size(atom) <= 1))

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            union = Taint().union(*(taint for taint, _ in ins))
            if eqn.primitive.name in _POSITIONAL and any(_size(v) > 1 for v in eqn.outvars):
                self.violations.append(f"position-dependent values ({eqn.primitive.name})")
            if all(is_statistic for _, is_statistic in ins):
                outs = [(union, True)] * len(eqn.outvars)
            else:
                outs = self.equation(eqn, ins, union)
            for var, value in zip(eqn.outvars, outs):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]

    def equation(self, eqn: Any, ins: list[tuple[Taint, bool]], union: Taint):
        name = eqn.primitive.name
        shapes_in = [getattr(getattr(v, "aval", None), "shape", ()) for v in eqn.invars]
        array_out = [(union, _size(v) <= 1) for v in eqn.outvars]
        if name in _CALLS and _CALLS[name] in eqn.params:
            inner = eqn.params[_CALLS[name]]
            return self.run(getattr(inner, "jaxpr", inner), ins)
        if name == "cond":
            predicate = ins[0][0]
            if self.is_per_leaf(predicate):
                self.violations.append("a branch (lax.cond) chosen by a per-leaf statistic")
            outs = [(predicate, True)] * len(eqn.outvars)
            for branch in eqn.params["branches"]:
                branch_outs = self.run(branch.jaxpr, ins[1:])
                outs = [(a | b, s and t) for (a, s), (b, t) in zip(outs, branch_outs)]
            return outs
        if name in _FULL_REDUCTIONS:
            if len(eqn.params.get("axes", ())) != len(shapes_in[0]):
                self.violations.append(f"a partial reduction ({name} over some axes)")
            return [(union, True)] * len(eqn.outvars)
        if name == "broadcast_in_dim" or name in _ELEMENTWISE:
            if name == "broadcast_in_dim" and not ins[0][1]:
                if tuple(shapes_in[0]) != tuple(eqn.params["shape"]):
                    self.violations.append("a broadcast that repeats array elements")
            for taint, is_statistic in ins:
                if is_statistic and self.is_per_leaf(taint):
                    self.violations.append(
                        "a per-leaf statistic (a scalar reduced from some leaves only) "
                        f"used elementwise ({name})"
                    )
            return array_out
        self.violations.append(f"a primitive that moves array elements ({name})")
        return array_out


def _size(var: Any) -> int:
    shape = getattr(getattr(var, "aval", None), "shape", ())
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def cross_element_violations(
    fn: Callable[..., Any],
    args: Sequence[Any],
    arg_taints: Sequence[Any],
    num_leaves: int,
) -> list[str]:
    """Why ``fn(*args)`` is not layout-invariant; ``[]`` if it is.

    ``arg_taints`` mirrors ``args``: for every array leaf, the frozenset of leaf
    indices it belongs to (empty for hyperparameters and counters).
    """
    closed = jax.make_jaxpr(fn)(*args)
    taints = jax.tree_util.tree_leaves(arg_taints, is_leaf=lambda x: isinstance(x, frozenset))
    if len(taints) != len(closed.jaxpr.invars):
        raise AssertionError("one taint per flattened argument is required")
    analysis = _Analysis(Taint(range(num_leaves)))
    inputs = [(taint, _size(var) <= 1) for taint, var in zip(taints, closed.jaxpr.invars)]
    for taint, is_statistic in analysis.run(closed.jaxpr, inputs):
        if is_statistic and analysis.is_per_leaf(taint):
            analysis.violations.append("a per-leaf statistic returned as a scalar output")
    return list(dict.fromkeys(analysis.violations))
