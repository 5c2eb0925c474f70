r"""The recommended step: jit-compiled, buffers donated, the transformation an argument.

Three things decide how fast an optimizer step runs (see ``benchmarks/README.md``):

* **donation** — without ``donate_argnums`` every step allocates fresh output
  buffers for the parameters and the state (on CPU: page faults on freshly mapped
  memory, often several times the cost of the arithmetic); donated, XLA updates them
  in place;
* **the transformation as an argument** — a new learning rate (or any
  hyperparameter) is a new *value*, not a new program: nothing recompiles, and
  ``jax.grad`` can still see it;
* **few leaves** — with :class:`~adaptive_jax.performance.FlatParams` (or
  :func:`~adaptive_jax.performance.flatten`) the update is one loop per output and
  dtype, whatever the number of leaves: compile time stops growing with the model;
* **one pass over memory** — XLA's CPU backend gives each output its own loop, so
  Adam's step moves 40 bytes per parameter instead of 28.  On one CPU device, an
  elementwise step of at least 2^16 parameters runs as one generated C kernel instead
  (:mod:`adaptive_jax.performance.native`), with the same numbers.

Optionally (``block_size``), elementwise updates on 1-D buffers run cache-blocked
(:mod:`adaptive_jax.performance.blocked`), reading and writing every byte once.

:func:`update_step` applies one update; :func:`make_train_step` adds the loss and its
gradient.  Both accept an optax transformation too (compiled with it as a constant).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax.performance.blocked import (
    blocked_step,
    blocking_problems,
    common_length,
)
from adaptive_jax.performance.flatten import check_flat_layout
from adaptive_jax.performance.layout import FlatParams
from adaptive_jax.performance.native import fused_apply_step
from adaptive_jax.performance.native.fused import MIN_SIZE


def apply_step(
    tx: Any,
    params: PyTree,
    opt_state: PyTree,
    grads: PyTree,
    block_size: int | None = None,
    check_layout: bool = True,
    native: bool = False,
) -> tuple[PyTree, PyTree]:
    """``params + tx.update(grads, opt_state, params)``; returns ``(params, opt_state)``.

    The traceable body of :func:`update_step` (call it inside your own jitted step).

    * ``native`` (what :func:`update_step` passes for parameters on one CPU device): an
      elementwise update of at least ``native.fused.MIN_SIZE`` parameters that writes
      two or more buffers runs as one generated C kernel
      (:mod:`adaptive_jax.performance.native`), reading and writing each byte once,
      with the same numbers; otherwise, or without a C compiler, XLA's path.  Do not
      pass it for sharded parameters: the kernel would see them gathered.
    * ``block_size`` (e.g. ``blocked.DEFAULT_BLOCK_SIZE``): an elementwise update of
      1-D buffers runs block by block (the same arithmetic; XLA may round it
      differently where it contracts ``a*b+c`` into a fused multiply-add).
    * With :class:`FlatParams` and ``check_layout``, raises
      :class:`~adaptive_jax.performance.FlatLayoutError` if ``tx`` would give other
      numbers on flat buffers than on the tree.
    """
    if check_layout and isinstance(params, FlatParams):
        check_flat_layout(tx, params.layout.groups, "update_step")
    if native and _total_size(params) >= MIN_SIZE:
        # Only where XLA would need several loops: one output is already one pass.
        fused = fused_apply_step(tx, params, opt_state, grads, min_buffers=2)
        if fused is not None:
            return fused
    length = common_length(params)
    if (
        block_size
        and length is not None
        and length >= 2 * block_size
        and not blocking_problems(tx, grads, opt_state, params)
    ):
        return blocked_step(tx, grads, opt_state, params, block_size)
    updates, opt_state = tx.update(grads, opt_state, params)
    return apply_updates(params, updates), opt_state


_TRACER = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]


def _total_size(tree: PyTree) -> int:
    return sum(jnp.size(x) for x in jax.tree_util.tree_leaves(tree))


def on_one_cpu_device(params: PyTree) -> bool:
    """Whether ``params`` (an array, :class:`FlatParams` or a pytree) is on one CPU device.

    Cheap enough for every step: one array's sharding is looked at (for a pytree, the
    first and the last leaf's), and each distinct sharding is examined once.
    """
    if isinstance(params, FlatParams):
        params = params.buffers
    sharding = getattr(params, "sharding", None)  # (isinstance(x, jax.Array) costs more)
    if sharding is not None and not isinstance(params, _TRACER):
        return _one_cpu_device(sharding)
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        return False
    for leaf in (leaves[0], leaves[-1]):
        sharding = getattr(leaf, "sharding", None)
        if sharding is None or isinstance(leaf, _TRACER) or not _one_cpu_device(sharding):
            return False
    return True


_SHARDINGS: dict[int, tuple[Any, bool]] = {}  # id -> (sharding kept alive, answer)


def _one_cpu_device(sharding: Any) -> bool:
    # Keyed by identity (hashing a sharding costs more than the whole check should).
    found = _SHARDINGS.get(id(sharding))
    if found is None:
        if len(_SHARDINGS) > 256:
            _SHARDINGS.clear()
        devices = sharding.device_set
        found = (sharding, len(devices) == 1 and next(iter(devices)).platform == "cpu")
        _SHARDINGS[id(sharding)] = found
    return found[1]


class DonatingStep:
    """``fn(tx, *args)`` jit-compiled with ``args[i]`` donated for ``i`` in ``donate``.

    Dispatch costs more than a small step itself, so the transformation is prepared
    once and reused while the same object comes back (transformations are
    immutable): its pytree is flattened, and its scalar hyperparameters are packed
    into one array per dtype, so the compiled step takes two or three small arrays
    instead of one argument per hyperparameter.  A new hyperparameter value is a new
    array value: no recompilation.  A foreign (optax) transformation is compiled in
    as a constant.

    If ``fn`` takes a ``native`` keyword (as :func:`apply_step` does), each call tells
    it whether the first argument (the parameters) lives on one CPU device, where the
    step can run as one native kernel; a compiled program is kept for each answer.
    ``native=False`` here never asks for it.
    """

    _CACHED = 8

    def __init__(self, fn: Callable[..., Any], donate: tuple[int, ...], native: bool = True):
        # ``fn`` takes ``native=`` (as apply_step does): it is told whether the
        # parameters live on one CPU device.  ``native=False`` never asks for the kernel.
        self._fn = fn
        self._native = native and "native" in inspect.signature(fn).parameters
        self._donate = tuple(i + 1 for i in donate)  # after the packed hyperparameters
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._recent: OrderedDict[int, tuple[Any, list[Any], Any]] = OrderedDict()
        self._last: tuple[Any, list[Any], Callable[..., Any], bool] | None = None

    def _compiled_for(self, treedef: Any, plan: Any, native: bool) -> Callable[..., Any]:
        key = (treedef, plan, native)
        if key not in self._compiled:

            def call(packed, *args):
                tx = _unflatten(treedef, _unpack(packed, plan))
                return self._fn(tx, *args, native=native) if self._native else self._fn(tx, *args)

            self._compiled[key] = jax.jit(call, donate_argnums=self._donate)
        return self._compiled[key]

    def _lookup(self, tx: Any) -> tuple[Any, list[Any], Any] | None:
        entry = self._recent.get(id(tx))
        if entry is not None and entry[0] is tx:
            return entry
        if isinstance(tx, Transform):
            leaves, treedef = jax.tree_util.tree_flatten(tx)
            if any(isinstance(leaf, _TRACER) for leaf in leaves):
                return None
            packed, plan = _pack(leaves)
            entry = (tx, packed, (treedef, plan))
        else:  # optax: functions in closures; the transformation itself is the program
            entry = (tx, [], (_Constant(tx), None))
        self._recent[id(tx)] = entry
        while len(self._recent) > self._CACHED:
            self._recent.popitem(last=False)
        return entry

    def __call__(self, tx: Any, *args: Any) -> Any:
        native = self._native and on_one_cpu_device(args[0])
        last = self._last
        if last is not None and last[0] is tx and last[3] == native:  # the common case
            return last[2](last[1], *args)
        entry = self._lookup(tx)
        if entry is None:  # traced hyperparameters: already inside a trace, nothing to donate
            self._last = None
            return self._fn(tx, *args)
        tx, packed, (treedef, plan) = entry
        compiled = self._compiled_for(treedef, plan, native)
        self._last = (tx, packed, compiled, native)
        return compiled(packed, *args)


def _pack(leaves: list[Any]) -> tuple[list[jax.Array], Any]:
    """Scalars stacked into one array per (dtype, weak type); other leaves as they are."""
    arrays = [jnp.asarray(leaf) for leaf in leaves]
    groups: dict[Any, list[int]] = {}
    singles = []
    for index, array in enumerate(arrays):
        if array.shape == ():
            groups.setdefault((array.dtype, array.weak_type), []).append(index)
        else:
            singles.append(index)
    packed = [jnp.stack([arrays[i] for i in indices]) for indices in groups.values()]
    plan = (tuple(tuple(indices) for indices in groups.values()), tuple(singles), len(arrays))
    return packed + [arrays[i] for i in singles], plan


def _unpack(packed: list[jax.Array], plan: Any) -> list[Any]:
    if plan is None:
        return []
    groups, singles, count = plan
    leaves: list[Any] = [None] * count
    for stacked, indices in zip(packed, groups):
        for row, index in enumerate(indices):
            leaves[index] = stacked[row]
    for value, index in zip(packed[len(groups) :], singles):
        leaves[index] = value
    return leaves


class _Constant:
    """A stand-in treedef whose unflattening returns a fixed (static) transformation."""

    def __init__(self, tx: Any):
        self.tx = tx

    def __hash__(self) -> int:
        return id(self.tx)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Constant) and other.tx is self.tx


def _unflatten(treedef: Any, leaves: list[Any]) -> Any:
    if isinstance(treedef, _Constant):
        return treedef.tx
    return jax.tree_util.tree_unflatten(treedef, leaves)


update_step = DonatingStep(apply_step, donate=(0, 1))
update_step.__doc__ = """Jitted ``update_step(tx, params, opt_state, grads) -> (params, state)``.

``params`` and ``opt_state`` are donated: do not use the arrays you passed in after
the call.  They come first, in the order they are returned, because JAX pairs donated
input buffers with outputs of the same shape by position: with ``(grads, opt_state,
params)`` in and ``(params, opt_state)`` out, the new parameters would be written into
the buffer of the first moment while it is still being read, and XLA would copy
whole buffers to keep that correct.  See :func:`apply_step` for what happens inside.

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


def make_train_step(
    loss_fn: Callable[..., Any],
    has_aux: bool = False,
    block_size: int | None = None,
) -> DonatingStep:
    """``step(tx, params, opt_state, *batch) -> (params, opt_state, loss[, aux])``, jitted.

    ``loss_fn(params_tree, *batch)`` returns a scalar loss (and ``aux`` with
    ``has_aux``).  ``params`` and ``opt_state`` are donated.  With
    :class:`~adaptive_jax.performance.FlatParams` parameters, ``loss_fn`` still receives
    the pytree (a view of the buffers) and the gradients arrive flat.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> step = aj.make_train_step(lambda w, x: jnp.sum((w * x - 1.0) ** 2))
        >>> tx = aj.sgd(0.1)
        >>> w = jnp.zeros(2)
        >>> w, state, loss = step(tx, w, tx.init(w), jnp.ones(2))
        >>> float(loss), w.tolist()
        (2.0, [0.20000000298023224, 0.20000000298023224])
    """

    def train(tx, params, opt_state, *batch, native=False):
        def objective(params):
            tree = params.tree() if isinstance(params, FlatParams) else params
            return loss_fn(tree, *batch)

        value, grads = jax.value_and_grad(objective, has_aux=has_aux)(params)
        params, opt_state = apply_step(tx, params, opt_state, grads, block_size, native=native)
        if has_aux:
            loss, aux = value
            return params, opt_state, loss, aux
        return params, opt_state, value

    return DonatingStep(train, donate=(0, 1))
