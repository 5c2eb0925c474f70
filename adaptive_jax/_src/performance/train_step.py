r"""The recommended step: jit-compiled, buffers donated, the transformation an argument.

What decides how fast an optimizer step runs (see ``benchmarks/README.md``):

* **donation** — without ``donate_argnums`` every step allocates fresh output
  buffers for the parameters and the state (on CPU: page faults on freshly mapped
  memory, often several times the cost of the arithmetic); donated, XLA updates them
  in place.  The price: the helpers *consume* the ``params`` and ``opt_state`` they
  are given (those arrays are deleted); always continue with the returned ones;
* **the transformation as an argument** — a new learning rate (or any
  hyperparameter) is a new *value*, not a new program: nothing recompiles, and
  ``jax.grad`` can still see it;
* **few leaves** — with :class:`~adaptive_jax.performance.FlatParams` (or
  :func:`~adaptive_jax.performance.flatten`) the update is one loop per output and
  dtype, whatever the number of leaves: compile time stops growing with the model;
* **one pass over memory** — XLA's CPU backend gives each output its own loop, so
  Adam's step moves 40 bytes per parameter instead of 28.  On one CPU device, an
  elementwise step of at least 2^16 parameters runs as one generated C kernel instead
  (:mod:`adaptive_jax._src.performance.native`), with the same numbers.  Which of the two
  runs is decided in one place, :func:`choose_path`.

:func:`update_step` applies one update; :func:`make_train_step` adds the loss and its
gradient; :func:`apply_step` is their traceable body.  All accept an optax
transformation too.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.combine import takes_extra_args
from adaptive_jax._src.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax._src.performance.flatten import check_flat_layout
from adaptive_jax._src.performance.layout import FlatParams
from adaptive_jax._src.performance.native import fused_apply_step
from adaptive_jax._src.performance.native.fused import MIN_SIZE

_TRACER = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]
_ARRAY = type(jnp.zeros(()))  # the concrete jax.Array class (an isinstance check costs more)
_SINGLE_DEVICE = jax.sharding.SingleDeviceSharding


class StepPath(enum.Enum):
    """Where an optimizer step runs: see :func:`choose_path`."""

    XLA = "xla"
    NATIVE = "native"


def choose_path(tx: Any, params: PyTree, on_one_cpu_device: bool) -> StepPath:
    """The dispatch rule of :func:`apply_step`: XLA's loops, or one generated native loop.

    ``NATIVE`` when all of these hold, else ``XLA``:

    1. the parameters live on one CPU device (a native custom call on sharded
       parameters would see them gathered; other platforms fuse the step themselves).
       Only concrete arrays know their device, so the caller says so:
       :func:`update_step` and :func:`make_train_step` look at the arrays they are
       given, inside your own ``jit`` you vouch for it with ``apply_step(native=True)``;
    2. ``tx`` is an adaptive_jax :class:`~adaptive_jax.Transform` (an optax
       transformation keeps its arithmetic in closures the translator does not read);
    3. the parameters hold at least ``native.fused.MIN_SIZE`` (2^16) elements: below
       that XLA's loops overlap Python's dispatch and win.

    ``NATIVE`` is then an attempt: two more conditions are only known once the step is
    traced, and :func:`~adaptive_jax._src.performance.native.fused_apply_step` checks them
    (returning ``None``, so the step runs on XLA's loops, when either fails):

    4. the step writes at least two per-parameter buffers (plain SGD writes one: XLA's
       own loop already reads and writes each byte once);
    5. the step is elementwise and every primitive in it translates to C (a global norm
       or a per-leaf trust ratio does not), and a C compiler is available.

    Args:
        tx: the transformation.
        params: the parameters (arrays, tracers or shape structs; only shapes are read).
        on_one_cpu_device: whether the parameters live on one CPU device.

    Returns:
        :attr:`StepPath.NATIVE` or :attr:`StepPath.XLA`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> from adaptive_jax.performance import choose_path
        >>> choose_path(aj.adam(1e-3), jnp.zeros(2**16), on_one_cpu_device=True).name
        'NATIVE'
        >>> choose_path(aj.adam(1e-3), jnp.zeros(1000), on_one_cpu_device=True).name
        'XLA'
    """
    if not on_one_cpu_device or not isinstance(tx, Transform):
        return StepPath.XLA
    size = sum(np.size(x) for x in jax.tree_util.tree_leaves(params))
    return StepPath.NATIVE if size >= MIN_SIZE else StepPath.XLA


def apply_step(
    tx: Any,
    params: PyTree,
    opt_state: PyTree,
    grads: PyTree,
    *,
    native: bool = False,
    check_layout: bool = True,
    **extra_args: Any,
) -> tuple[PyTree, PyTree]:
    """``params + tx.update(grads, opt_state, params, **extra_args)``; the traceable body of the helpers.

    Call it inside your own jitted step.  It donates nothing itself: donation is
    decided by the ``jax.jit`` around it (:func:`update_step` and
    :func:`make_train_step` donate ``params`` and ``opt_state``).  The step runs on
    XLA's loops or as one native loop, as :func:`choose_path` decides; the numbers are
    the same either way.

    Args:
        tx: a gradient transformation (adaptive_jax or optax).
        params: the parameters: a pytree of arrays or
            :class:`~adaptive_jax.performance.FlatParams`.
        opt_state: ``tx``'s state for ``params``.
        grads: the gradients, structured like ``params``.
        native: whether the parameters live on one CPU device, where the step may run
            as one native loop (:func:`choose_path`).  Do not pass ``True`` for sharded
            parameters: the kernel would see them gathered.
        check_layout: with :class:`~adaptive_jax.performance.FlatParams`, check that
            ``tx`` gives the numbers of the tree path on flat buffers.
        **extra_args: extra update arguments (``value=loss`` for
            :func:`~adaptive_jax.reduce_on_plateau`), passed to ``tx.update``.

    Returns:
        ``(new_params, new_opt_state)``.

    Raises:
        TypeError: ``tx`` is not a gradient transformation.
        FlatLayoutError: with ``FlatParams`` and ``check_layout``, if ``tx`` would give
            other numbers on flat buffers than on the tree (per-leaf statistics,
            per-parameter hyperparameters).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sgd(0.5)
        >>> step = jax.jit(aj.performance.apply_step, donate_argnums=(1, 2))
        >>> params, state = step(tx, jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))
        >>> params.tolist()
        [0.5, 0.5]
    """
    _check_transform(tx, "apply_step")
    if check_layout and isinstance(params, FlatParams):
        check_flat_layout(tx, params.layout.groups, "apply_step")
    if choose_path(tx, params, native) is StepPath.NATIVE:
        fused = fused_apply_step(tx, params, opt_state, grads, 2, extra_args)
        if fused is not None:
            return fused
    updates, opt_state = tx.update(grads, opt_state, params, **extra_args)
    return apply_updates(params, updates), opt_state


def _check_transform(tx: Any, where: str) -> None:
    if isinstance(tx, Transform):
        return
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return
    hint = ""
    if callable(tx):
        hint = " (a function: call it to build the transformation, e.g. aj.adam(1e-3))"
    raise TypeError(
        f"{where}: tx must be a gradient transformation, an object with init and update "
        f"such as aj.adam(1e-3) or optax.adam(1e-3); got {type(tx).__name__} "
        f"{_short(tx)}{hint}. The arguments are (tx, params, opt_state, ...)."
    )


def _accepts_extra_args(tx: Any) -> bool:
    """Whether ``tx.update`` takes extra keyword arguments (``value=``)."""
    return isinstance(tx, Transform) or takes_extra_args(tx.update)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_cpu_device(leaf: Any) -> bool:
    """Whether the array ``leaf`` lives on one CPU device (False for anything else)."""
    sharding = getattr(leaf, "sharding", None)
    if sharding is None or isinstance(leaf, _TRACER):
        return False
    devices = sharding.device_set
    return len(devices) == 1 and next(iter(devices)).platform == "cpu"


# --- Preparing a transformation for the compiled step --------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Program:
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
            isinstance(other, _Program)
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


class _Prepared:
    """A transformation split for the compiled step (see ``_split_transform``).

    Also remembers the device answer for the shardings it last saw (the outputs of a
    compiled step share one sharding object from step to step, so this is an identity
    check per call).
    """

    __slots__ = ("tx", "dynamic", "programs", "traced", "reusable", "memo")

    def __init__(self, tx, dynamic, programs, traced, reusable):
        self.tx = tx
        self.dynamic: list[Any] = dynamic  # packed scalars, arrays, numpy arrays (read per call)
        self.programs: tuple[_Program, _Program] = programs  # for native=False, native=True
        self.traced: bool = traced  # a hyperparameter is a tracer: run inline in the trace
        self.reusable: bool = reusable  # nothing in it can change: reuse for the same object
        # (sharding of the first donated array, of the last one, the program for them):
        # one tuple, replaced whole, so a concurrent call never sees half of an update.
        self.memo: tuple[Any, Any, _Program] = (None, None, programs[0])

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
        if any(isinstance(x, _TRACER) or not isinstance(x, _VALUES) for x in values):
            return None
        return self.dynamic[: len(groups)] + values


_IMMUTABLE_SCALARS = (bool, int, float, complex, np.generic)
_VALUES = _IMMUTABLE_SCALARS + (np.ndarray, jax.Array)


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


def _split_transform(tx: Any, where: str) -> _Prepared:
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
    (:meth:`_Prepared.reread`).
    """
    _check_transform(tx, where)
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
        if isinstance(leaf, _TRACER):
            traced = True
        elif isinstance(leaf, np.ndarray) or (
            mutable[position] and isinstance(leaf, _IMMUTABLE_SCALARS + (_ARRAY,))
        ):
            singles.append(position)
            single_values.append(leaf)
        elif isinstance(leaf, _IMMUTABLE_SCALARS + (_ARRAY,)):
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
        return _Prepared(tx, [], (None, None), True, False)
    packed = [jnp.stack(values) for values in group_values.values()]
    plan = (
        tuple(tuple(positions) for positions in groups.values()),
        tuple(singles),
        tuple(static_positions),
    )
    programs = tuple(_Program(treedef, plan, tuple(statics), native) for native in (False, True))
    return _Prepared(tx, packed + single_values, programs, False, not has_mutable)


# --- The donating step ---------------------------------------------------------------


class DonatingStep:
    """``fn(tx, params, opt_state, *rest, native=...)`` jit-compiled, ``params`` and ``opt_state`` donated.

    The machinery of :func:`update_step` and :func:`make_train_step`; ``fn`` is their
    traceable body (:func:`apply_step`, or the loss-and-gradient step), called with
    ``native`` telling it whether the parameters live on one CPU device
    (:func:`choose_path`; always ``False`` when built with ``native=False``).

    At every call:

    * ``tx`` must be a gradient transformation (else ``TypeError``).  Its
      hyperparameters are read at every call, as ``tx.update`` reads them: the
      transformation is a pytree argument of the compiled step (``_split_transform``
      says how its leaves are passed cheaply);
    * a deleted array among the arguments (typically one donated to an earlier step)
      raises a ``RuntimeError`` naming the helper, the argument and its path;
    * an array that appears twice among the arguments (tied weights, the parameters
      passed as gradients too) is copied for this call, so XLA never donates a buffer
      twice and the numbers are those of ``tx.update`` (which returns separate arrays
      too).  Repeated array *objects* are found before the call; two array objects on
      one buffer (``jax.device_put(x, x.sharding)``) only when XLA refuses the call
      (it logs a line), after which the step is retried with a copy;
    * inside a trace (tracers among the arguments or hyperparameters) ``fn`` is
      traced inline into the caller's program: nothing to donate or check.

    One cache: the transformations split for the compiled step (with the device
    answer for the shardings last seen; for one holding a dict or list, read again at
    every call), keyed by object identity, at most
    :data:`CACHED` (the oldest goes first); each entry keeps its object alive, so an
    identity cannot be reused while cached.  Compiled programs live in the caches of
    the one ``jax.jit`` of this step (JAX bounds them: least recently used entries go
    first), keyed by the static half of the transformation (``_Program``), the tree
    structure of ``(params, opt_state)`` and the argument shapes.

    Calling it raises ``TypeError`` when ``tx`` is not a gradient transformation and
    ``RuntimeError`` when an argument was deleted (see above).

    Args:
        fn: ``fn(tx, params, opt_state, *rest, native: bool)``.
        name: the helper's name, used in error messages.
        arg_names: names of the arguments after ``tx`` for error messages; a last name
            starting with ``*`` names the remaining ones (``"*batch"``: ``batch[0]``, ...).
        native: ``False`` never lets the step run as a native loop.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> step = aj.performance.DonatingStep(aj.performance.apply_step, "my_step")
        >>> tx = aj.sgd(0.5)
        >>> params, state = step(tx, jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))
        >>> params.tolist()
        [0.5, 0.5]
    """

    #: How many transformations are kept split for the compiled step (by identity).
    CACHED = 8

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        arg_names: tuple[str, ...] = ("params", "opt_state", "grads"),
        native: bool = True,
    ):
        self._fn = fn
        self._name = name
        self._arg_names = arg_names
        self._native = native
        # (program, structure of (params, opt_state), tx's dynamic leaves, the leaves of
        # (params, opt_state), extra update arguments, *rest): the donated arrays arrive as one flat list, since
        # they are flattened here anyway (for the checks), and jit would flatten again.
        self._jitted = jax.jit(self._call, static_argnums=(0, 1), donate_argnums=3)
        self._prepared: dict[int, _Prepared] = {}

    def _call(
        self,
        program: _Program,
        structure: Any,
        dynamic: list[Any],
        donated: list[Any],
        extra_args: dict[str, Any],
        *rest: Any,
    ) -> Any:
        params, opt_state = jax.tree_util.tree_unflatten(structure, donated)
        tx = program.rebuild(dynamic)
        return self._fn(tx, params, opt_state, *rest, native=program.native, **extra_args)

    def __call__(self, tx: Any, *args: Any, **extra_args: Any) -> Any:
        entry = self._prepared.get(id(tx))
        if entry is None or entry.tx is not tx:
            entry = self._split(tx)
            dynamic = entry.dynamic
        elif entry.reusable:
            dynamic = entry.dynamic
        else:  # a dict or list in it may have been edited: read its values again
            dynamic = entry.reread(tx)
            if dynamic is None:
                entry = self._split(tx)
                dynamic = entry.dynamic
        if len(args) < 2:
            raise TypeError(
                f"{self._name} takes (tx, params, opt_state, ...); got {len(args) + 1} arguments"
            )
        donated, structure = jax.tree_util.tree_flatten(args[:2])
        # One pass: deleted arrays, tracers, and array objects that appear twice.
        array, tracer = _ARRAY, _TRACER
        seen: set[int] = set()
        arrays, traced = 0, entry.traced
        for leaf in donated:
            if type(leaf) is array:
                if leaf.is_deleted():
                    raise self._deleted_error(args, leaf)
                seen.add(id(leaf))
                arrays += 1
            elif isinstance(leaf, tracer):
                traced = True
        repeated = len(seen) != arrays
        for leaf in jax.tree_util.tree_leaves((args[2:], extra_args)):
            if type(leaf) is array:
                if leaf.is_deleted():
                    raise self._deleted_error(args, leaf)
                repeated = repeated or id(leaf) in seen
            elif isinstance(leaf, tracer):
                traced = True
        if traced:  # inside the caller's trace: nothing is donated here
            return self._fn(tx, *args, native=False, **extra_args)
        if repeated:
            dynamic, args = _copy_repeats(dynamic, args, id)
            donated = jax.tree_util.tree_leaves(args[:2])
        memo = entry.memo
        if donated:
            first = getattr(donated[0], "sharding", None)
            last = getattr(donated[-1], "sharding", None)
            if first is not memo[0] or last is not memo[1]:
                native = self._native and one_cpu_device(donated[0]) and one_cpu_device(donated[-1])
                memo = entry.memo = (first, last, entry.programs[native])
        try:
            return self._jitted(memo[2], structure, dynamic, donated, extra_args, *args[2:])
        except Exception as error:
            return self._recover(error, memo[2], structure, dynamic, args, extra_args)

    def _split(self, tx: Any) -> _Prepared:
        entry = _split_transform(tx, self._name)
        if not entry.traced:
            if len(self._prepared) >= self.CACHED:
                del self._prepared[next(iter(self._prepared))]
            self._prepared[id(tx)] = entry
        return entry

    def _recover(
        self,
        error: Exception,
        program: _Program,
        structure: Any,
        dynamic: list[Any],
        args: tuple,
        extra_args: dict[str, Any],
    ) -> Any:
        """After the compiled step failed: a clearer error, or a retry with copies."""
        for leaf in jax.tree_util.tree_leaves((args, dynamic)):
            if type(leaf) is _ARRAY and leaf.is_deleted():
                raise self._deleted_error(args, leaf) from error
        keys = [
            _buffer_key(leaf)
            for leaf in jax.tree_util.tree_leaves((args[:2], dynamic, args[2:]))
            if type(leaf) is _ARRAY
        ]
        if "donate" not in str(error) or len(set(keys)) == len(keys):
            raise error
        dynamic, args = _copy_repeats(dynamic, args, _buffer_key)
        donated = jax.tree_util.tree_leaves(args[:2])
        return self._jitted(program, structure, dynamic, donated, extra_args, *args[2:])

    def _arg_name(self, index: int) -> str:
        names = self._arg_names
        if index < len(names) and not names[index].startswith("*"):
            return names[index]
        if names and names[-1].startswith("*"):
            return f"{names[-1][1:]}[{index - len(names) + 1}]"
        return f"args[{index}]"

    def _deleted_error(self, args: tuple[Any, ...], deleted: Any) -> RuntimeError:
        index, where = -1, "a hyperparameter array of tx"
        for i, arg in enumerate(args):
            found = [
                path
                for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]
                if leaf is deleted
            ]
            if found:
                index, where = i, self._arg_name(i) + jax.tree_util.keystr(found[0])
                break
        call = "params, opt_state = update_step(tx, params, opt_state, grads)"
        if self._name != "update_step":
            call = "params, opt_state, loss = step(tx, params, opt_state, *batch)"
        if index in (0, 1):
            why = (
                f"{self._name} donates (consumes) params and opt_state: the arrays passed in "
                f"are deleted by the call, and the caller must use the returned ones instead "
                f"({call})."
            )
        else:
            why = (
                "was it passed as params or opt_state to an earlier donating step "
                "(update_step or make_train_step), which consumed it? Use the arrays those "
                f"steps returned ({call})."
            )
        return RuntimeError(f"{self._name}: {where} has been deleted; {why}")


def _buffer_key(leaf: Any) -> int:
    """The address of a single-device array's buffer (two array objects may share one);
    the object's identity for a sharded array (several buffers)."""
    if type(leaf.sharding) is _SINGLE_DEVICE:
        return leaf.unsafe_buffer_pointer()
    return id(leaf)


def _copy_repeats(
    dynamic: list[Any], args: tuple[Any, ...], key: Callable[[Any], int]
) -> tuple[list[Any], tuple[Any, ...]]:
    """Copy every array whose ``key`` (identity or buffer) already appeared as donated.

    The donated arguments (``args[0]``, ``args[1]``) are scanned first, so their first
    occurrence of a buffer is donated and later ones are copies; a non-donated argument
    (the gradients, the batch, a hyperparameter) on a donated buffer is copied too.
    """
    seen: set[int] = set()

    def copy_repeats(tree: Any, donated: bool) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        out = []
        for leaf in leaves:
            if type(leaf) is _ARRAY:
                if key(leaf) in seen:
                    leaf = jnp.copy(leaf)
                elif donated:
                    seen.add(key(leaf))
            out.append(leaf)
        return jax.tree_util.tree_unflatten(treedef, out)

    donated = tuple(copy_repeats(arg, True) for arg in args[:2])
    rest = tuple(copy_repeats(arg, False) for arg in args[2:])
    return copy_repeats(dynamic, False), donated + rest


update_step = DonatingStep(apply_step, "update_step")
update_step.__doc__ = """``update_step(tx, params, opt_state, grads, **extra_args) -> (params, opt_state)``, jitted, donating.

One optimizer step, ``params + tx.update(grads, opt_state, params, **extra_args)``, compiled once
per transformation structure and shapes, with ``tx`` an argument (a new
hyperparameter value is a new value, not a new program).  On one CPU device a large
elementwise step runs as one native loop (:func:`choose_path`).

**``params`` and ``opt_state`` are consumed**: their buffers are donated to the
step, updated in place, and the arrays you passed are deleted.  Always continue with
the returned values, ``params, opt_state = update_step(tx, params, opt_state,
grads)``, and keep no other reference to the old ones (a loss evaluated on them
afterwards fails with "Array has been deleted").  They come first, in the order they
are returned, because JAX pairs donated buffers with outputs of the same shape by
position.

Hyperparameters are read at every call, as ``tx.update`` reads them (a numpy array
changed in place, an edited per-parameter dict).  An array that appears twice among
the arguments (tied weights, the parameters passed as gradients too) is copied for
the call, so the numbers are those of ``tx.update`` and the returned leaves are
separate arrays.  Called inside your own ``jax.jit`` the step is traced into your
program and donates nothing.

Args:
    tx: a gradient transformation (adaptive_jax or optax).
    params: the parameters (a pytree of arrays or
        :class:`~adaptive_jax.performance.FlatParams`); consumed.
    opt_state: ``tx``'s state for ``params``; consumed.
    grads: the gradients, structured like ``params``; not consumed.
    **extra_args: extra update arguments, e.g. ``value=loss`` for
        :func:`~adaptive_jax.reduce_on_plateau`; not consumed.

Returns:
    ``(new_params, new_opt_state)``.

Raises:
    TypeError: ``tx`` is not a gradient transformation (an object with ``init`` and
        ``update``).
    RuntimeError: an argument has been deleted, typically because it was consumed by
        an earlier donating step; the message names the argument and its path.
    FlatLayoutError: ``tx`` cannot run on the given ``FlatParams``.

Example:
    >>> import jax.numpy as jnp
    >>> import adaptive_jax as aj
    >>> tx = aj.adam(0.1)
    >>> params = jnp.array([1.0, -1.0])
    >>> state = tx.init(params)
    >>> params, state = aj.update_step(tx, params, state, jnp.array([3.0, -0.5]))
    >>> params.round(6).tolist()
    [0.9, -0.9]
"""


def make_train_step(loss_fn: Callable[..., Any], has_aux: bool = False) -> DonatingStep:
    """Build ``step(tx, params, opt_state, *batch) -> (params, opt_state, loss[, aux])``.

    The step computes ``loss_fn(params, *batch)`` and its gradient and applies one
    update of ``tx`` (as :func:`update_step`), all in one jitted program with ``tx`` an
    argument.  The loss is passed to the update as ``value=loss`` (optax's extra
    argument, read by :func:`~adaptive_jax.reduce_on_plateau`) when ``tx`` accepts
    extra arguments: every adaptive_jax transformation, and an optax one whose
    ``update`` takes ``**extra_args``.  With :class:`~adaptive_jax.performance.FlatParams` parameters,
    ``loss_fn`` still receives the pytree (a view of the buffers) and the gradients
    arrive flat.

    **The step consumes ``params`` and ``opt_state``**: their buffers are donated and
    updated in place, and the arrays you passed are deleted.  Always continue with the
    returned values, ``params, opt_state, loss = step(tx, params, opt_state, *batch)``.
    The batch is not consumed.  Hyperparameters are read at every call; an array that
    appears twice among the arguments is copied for the call (see :func:`update_step`).

    Args:
        loss_fn: ``loss_fn(params_tree, *batch)``, a scalar loss (``(loss, aux)`` with
            ``has_aux``).
        has_aux: whether ``loss_fn`` returns auxiliary data as well.

    Returns:
        The step function (a :class:`DonatingStep`).  Calling it raises what
        :func:`update_step` raises: ``TypeError`` when its ``tx`` is not a gradient
        transformation, ``RuntimeError`` when an argument was deleted (consumed by an
        earlier step), naming the argument and its path, ``FlatLayoutError`` when
        ``tx`` cannot run on the given ``FlatParams``.

    Raises:
        TypeError: ``loss_fn`` is not callable.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> step = aj.make_train_step(lambda w, x: jnp.sum((w * x - 1.0) ** 2))
        >>> tx = aj.sgd(0.1)
        >>> w = jnp.zeros(2)
        >>> w, state, loss = step(tx, w, tx.init(w), jnp.ones(2))  # w is replaced
        >>> float(loss), w.tolist()
        (2.0, [0.20000000298023224, 0.20000000298023224])
    """
    if not callable(loss_fn):
        raise TypeError(
            f"make_train_step: loss_fn must be a function loss_fn(params, *batch), got "
            f"{type(loss_fn).__name__} {_short(loss_fn)}"
        )

    def train(tx, params, opt_state, *batch, native):
        def objective(params):
            tree = params.tree() if isinstance(params, FlatParams) else params
            return loss_fn(tree, *batch)

        value, grads = jax.value_and_grad(objective, has_aux=has_aux)(params)
        loss = value[0] if has_aux else value
        extra = {"value": loss} if _accepts_extra_args(tx) else {}
        params, opt_state = apply_step(tx, params, opt_state, grads, native=native, **extra)
        if has_aux:
            return params, opt_state, loss, value[1]
        return params, opt_state, loss

    name = getattr(loss_fn, "__name__", "loss_fn")
    return DonatingStep(
        train, f"make_train_step({name}) step", arg_names=("params", "opt_state", "*batch")
    )
