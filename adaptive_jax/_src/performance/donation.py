r"""The donating step: jit-compiled, ``params`` and ``opt_state`` donated, ``tx`` an argument.

Without ``donate_argnums`` every step allocates fresh output buffers for the
parameters and the state (on CPU: page faults on freshly mapped memory, often several
times the cost of the arithmetic); donated, XLA updates them in place.  The price: the
step *consumes* the ``params`` and ``opt_state`` it is given.  :class:`DonatingStep`
adds what makes that safe to use: a clear error for a consumed array, copies for an
array passed twice, and inline tracing inside a caller's ``jit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.performance.arguments import ARRAY, Prepared, Program, split_transform
from adaptive_jax._src.performance.dispatch import TRACER, one_cpu_device

_SINGLE_DEVICE = jax.sharding.SingleDeviceSharding


class DonatingStep:
    """``fn(tx, params, opt_state, *rest, native=...)`` jit-compiled, ``params`` and ``opt_state`` donated.

    The machinery of :func:`update_step` and :func:`make_train_step`; ``fn`` is their
    traceable body (:func:`apply_step`, or the loss-and-gradient step), called with
    ``native`` telling it whether the parameters live on one CPU device
    (:func:`choose_path`; always ``False`` when built with ``native=False``).

    At every call:

    * ``tx`` must be a gradient transformation (else ``TypeError``).  Its
      hyperparameters are read at every call, as ``tx.update`` reads them: the
      transformation is a pytree argument of the compiled step (``split_transform``
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
    first), keyed by the static half of the transformation (``Program``), the tree
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
        self._prepared: dict[int, Prepared] = {}

    def _call(
        self,
        program: Program,
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
        array, tracer = ARRAY, TRACER
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

    def _split(self, tx: Any) -> Prepared:
        entry = split_transform(tx, self._name)
        if not entry.traced:
            if len(self._prepared) >= self.CACHED:
                del self._prepared[next(iter(self._prepared))]
            self._prepared[id(tx)] = entry
        return entry

    def _recover(
        self,
        error: Exception,
        program: Program,
        structure: Any,
        dynamic: list[Any],
        args: tuple,
        extra_args: dict[str, Any],
    ) -> Any:
        """After the compiled step failed: a clearer error, or a retry with copies."""
        for leaf in jax.tree_util.tree_leaves((args, dynamic)):
            if type(leaf) is ARRAY and leaf.is_deleted():
                raise self._deleted_error(args, leaf) from error
        keys = [
            _buffer_key(leaf)
            for leaf in jax.tree_util.tree_leaves((args[:2], dynamic, args[2:]))
            if type(leaf) is ARRAY
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
            if type(leaf) is ARRAY:
                if key(leaf) in seen:
                    leaf = jnp.copy(leaf)
                elif donated:
                    seen.add(key(leaf))
            out.append(leaf)
        return jax.tree_util.tree_unflatten(treedef, out)

    donated = tuple(copy_repeats(arg, True) for arg in args[:2])
    rest = tuple(copy_repeats(arg, False) for arg in args[2:])
    return copy_repeats(dynamic, False), donated + rest
