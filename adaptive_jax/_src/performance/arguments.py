r"""The transformation as an argument of the compiled step.

A new learning rate (or any hyperparameter) is a new *value*, not a new program:
:func:`split_transform` cuts a transformation into the arrays the compiled step takes
(its numbers, packed) and the static configuration that selects the program
(:class:`Program`: tree structure, packing plan, functions by identity).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.performance.dispatch import TRACER, check_transform

# The concrete jax.Array class (an isinstance check costs more).  Not type(jnp.zeros(())):
# that would start JAX's backend on import, and jax.distributed.initialize must come first.
ARRAY = jax._src.array.ArrayImpl  # pyright: ignore[reportAttributeAccessIssue]


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """The static half of a call: how the compiled step rebuilds ``tx`` from its leaves.

    A ``jax.jit`` static argument: hashed once; equal when the tree structure, the
    packing plan, the native flag and the static leaves (by identity) are.
    """

    treedef: Any
    plan: tuple[Any, ...]  # (groups of packed scalar positions, single positions, static positions)
    statics: tuple[Any, ...]  # leaves that are configuration: plain functions, strings, ...
    native: bool
    hash_value: int = dataclasses.field(init=False)

    def __post_init__(self):
        identity = (self.plan, tuple(id(x) for x in self.statics), self.native)
        try:
            value = hash((self.treedef, identity))
        except TypeError:  # unhashable configuration in the tree: one program per object
            value = hash((id(self.treedef), identity))
        object.__setattr__(self, "hash_value", value)

    def __hash__(self) -> int:
        return self.hash_value

    def __eq__(self, other: Any) -> bool:
        return self is other or (
            isinstance(other, Program)
            and self.hash_value == other.hash_value
            and self.native == other.native
            and self.plan == other.plan
            and len(self.statics) == len(other.statics)
            and all(a is b for a, b in zip(self.statics, other.statics))
            and self.treedef == other.treedef
        )

    def rebuild(self, dynamic: list[Any]) -> Any:
        """``tx`` from the dynamic arguments (inside the trace)."""
        groups, singles, static_positions = self.plan
        leaves: list[Any] = [None] * (
            sum(len(g) for g in groups) + len(singles) + len(static_positions)
        )
        for stacked, positions in zip(dynamic, groups):
            for row, position in enumerate(positions):
                leaves[position] = stacked[row]
        for value, position in zip(dynamic[len(groups) :], singles):
            leaves[position] = value
        for value, position in zip(self.statics, static_positions):
            leaves[position] = value
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


class Prepared:
    """A transformation split for the compiled step (see ``split_transform``).

    Also remembers the device answer for the shardings it last saw (the outputs of a
    compiled step share one sharding object from step to step, so this is an identity
    check per call).
    """

    __slots__ = ("tx", "dynamic", "programs", "traced", "reusable", "memo")

    def __init__(self, tx, dynamic, programs, traced, reusable):
        self.tx = tx
        self.dynamic: list[Any] = dynamic  # packed scalars, arrays, numpy arrays (read per call)
        self.programs: tuple[Program, Program] = programs  # for native=False, native=True
        self.traced: bool = traced  # a hyperparameter is a tracer: run inline in the trace
        self.reusable: bool = reusable  # nothing in it can change: reuse for the same object
        # (sharding of the first donated array, of the last one, the program for them):
        # one tuple, replaced whole, so a concurrent call never sees half of an update.
        self.memo: tuple[Any, Any, Program] = (None, None, programs[0])

    def reread(self, tx: Any) -> list[Any] | None:
        """The current leaves of a transformation that can change (``reusable`` false).

        ``None`` when its structure or its static configuration changed since it was
        split (split it again).  Costs a flatten: the price of a dict among its nodes.
        """
        leaves, treedef = jax.tree_util.tree_flatten(tx)
        program = self.programs[0]
        if treedef != program.treedef:
            return None
        groups, singles, static_positions = program.plan
        if any(leaves[i] is not x for i, x in zip(static_positions, program.statics)):
            return None
        values = [leaves[i] for i in singles]
        if any(isinstance(x, TRACER) or not isinstance(x, VALUES) for x in values):
            return None
        return self.dynamic[: len(groups)] + values


IMMUTABLE_SCALARS = (bool, int, float, complex, np.generic)
VALUES = IMMUTABLE_SCALARS + (np.ndarray, jax.Array)


def _frozen_node(kind: type) -> bool:
    if issubclass(kind, tuple) or kind is type(None):
        return True
    params = getattr(kind, "__dataclass_params__", None)
    return params is not None and params.frozen


def _mutable_leaves(treedef: Any, under_mutable: bool = False) -> tuple[bool, list[bool]]:
    """Whether ``treedef`` has a node that can be edited in place (a dict, a list: not a
    tuple or frozen dataclass), and for each leaf whether it sits below one."""
    data = treedef.node_data()
    if data is None:  # a leaf
        return False, [under_mutable]
    mutable = not _frozen_node(data[0])
    found, flags = mutable, []
    for child in treedef.children():
        child_found, child_flags = _mutable_leaves(child, under_mutable or mutable)
        found = found or child_found
        flags += child_flags
    return found, flags


def split_transform(tx: Any, where: str) -> Prepared:
    """Split ``tx`` into the arguments of the compiled step and its static configuration.

    * Python numbers, numpy scalars and jax arrays are values that cannot change: the
      scalars among them are packed into one array per (dtype, weak type), so the
      compiled step takes two or three small arrays instead of one argument per
      hyperparameter (measured: 12 µs less dispatch for Adam's five);
    * numpy arrays can be changed in place: passed as themselves, so JAX reads their
      current value at every call, as ``tx.update`` would;
    * anything else (a plain function in a per-parameter tree, a string) is static
      configuration of this object, compared by identity, as ``jax.jit`` treats
      functions: a new function is a new program.

    The result is reusable as it is while the same object comes back only if nothing
    in it can change: every node of its tree is a tuple or a frozen dataclass.  A dict
    or list in it (``adam({"w": 1e-3, "b": 1e-2})``) can be edited after construction,
    so the leaves below such a node are passed unpacked and read again at every call
    (:meth:`Prepared.reread`).
    """
    check_transform(tx, where)
    leaves, treedef = jax.tree_util.tree_flatten(tx)
    has_mutable, mutable = _mutable_leaves(treedef)
    groups: dict[Any, list[int]] = {}
    group_values: dict[Any, list[Any]] = {}
    singles: list[int] = []
    single_values: list[Any] = []
    static_positions: list[int] = []
    statics: list[Any] = []
    traced = False
    for position, leaf in enumerate(leaves):
        if isinstance(leaf, TRACER):
            traced = True
        elif isinstance(leaf, np.ndarray) or (
            mutable[position] and isinstance(leaf, IMMUTABLE_SCALARS + (ARRAY,))
        ):
            singles.append(position)
            single_values.append(leaf)
        elif isinstance(leaf, IMMUTABLE_SCALARS + (ARRAY,)):
            array = jnp.asarray(leaf)
            if array.shape == ():
                key = (array.dtype, array.weak_type)
                groups.setdefault(key, []).append(position)
                group_values.setdefault(key, []).append(array)
            else:
                singles.append(position)
                single_values.append(array)
        elif isinstance(leaf, jax.Array):  # another kind of jax array: passed as it is
            singles.append(position)
            single_values.append(leaf)
        else:
            static_positions.append(position)
            statics.append(leaf)
    if traced:
        return Prepared(tx, [], (None, None), True, False)
    packed = [jnp.stack(values) for values in group_values.values()]
    plan = (
        tuple(tuple(positions) for positions in groups.values()),
        tuple(singles),
        tuple(static_positions),
    )
    programs = tuple(Program(treedef, plan, tuple(statics), native) for native in (False, True))
    return Prepared(tx, packed + single_values, programs, False, not has_mutable)
