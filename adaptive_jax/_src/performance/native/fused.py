r"""The whole optimizer step as one native loop on CPU: :func:`fused_apply_step`.

For any transformation whose update is elementwise (what :mod:`.codegen` can
translate: Adam, AdamW, AMSGrad, RMSProp, Adagrad, SGD with momentum, Lion, ...),
``params + tx.update(grads, state, params)`` is traced to a jaxpr, translated into
one C loop, compiled once (:mod:`.build`) and called through XLA's FFI, with the
parameter and state buffers aliased to the outputs, so a donated step updates them
in place reading and writing each byte once — 28 bytes per parameter for Adam where
XLA's CPU backend moves 40.  Large calls are split over the cores by the FFI
handler's own worker threads.  A rank-0 output (the step count) is never written
over its input: the first chunk stores it while the other chunks may still be
reading the inputs.

Hyperparameters stay *data*: they are inputs of the call, not constants of the
kernel, so a new learning rate neither recompiles nor rebuilds anything.  The call
is wrapped in :func:`jax.custom_jvp` whose rule differentiates the plain XLA step, so
``jax.grad``/``jax.jvp`` through a fused step give the plain step's derivatives;
under ``vmap`` the kernel runs once per batch member.

The path applies to any pytree of parameters — one array, the buffer of
:class:`~adaptive_jax.performance.FlatParams`, or a tree of leaves of many shapes
(one loop per leaf, all in one kernel; leaves doing the same arithmetic share one
compiled loop body) —
in float32/float64 (with integer/bool scalars).  A step that is not elementwise (a
global norm, a per-leaf trust ratio), or a loop or branch over vectors, makes
:func:`fused_apply_step` return ``None``, and the caller runs XLA's path; so does any
failure to build or load the kernel (:mod:`.build`), and — logged as a warning — a
fault of the translator itself: the step never raises for the native path's sake.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax._src.performance.native import build
from adaptive_jax._src.performance.native.codegen import Kernel, Unsupported, translate

logger = logging.getLogger(__name__)

# apply_step(native=True) fuses steps of at least this many elements.  Below it XLA's
# loops win: XLA runs a program its cost model counts as under 1000 flops (a custom
# call counts none) inline on the calling thread, so the kernel's time adds to
# Python's dispatch instead of overlapping it.
MIN_SIZE = 1 << 16

# Below this many elements one thread does the whole loop (handing work to another
# thread costs a few microseconds).
PARALLEL_GRAIN = 1 << 14

# Chunks a large step is split into: the CPUs this process may run on.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

# Scalars (bias corrections, the step count) computed by XLA before the call, so they
# round exactly as in the plain step; "c" (in the kernel) is the fallback.
MODES = ("xla", "c")


def vector_shapes(leaves: list[Any]) -> list[tuple[int, ...]]:
    """The distinct shapes of the non-scalar leaves, in order of first appearance."""
    return list(dict.fromkeys(tuple(jnp.shape(x)) for x in leaves if jnp.ndim(x)))


def _kernel(
    closed: Any, flat: list[Any], shapes: list[tuple[int, ...]]
) -> tuple[str, Kernel] | None:
    for mode in MODES:
        try:
            return mode, translate(closed, flat, shapes, mode)
        except Unsupported:
            continue
    return None


def fused_elementwise(
    fn: Callable[..., tuple[Any, ...]],
    args: list[Any],
    aliased_from: int | None = None,
    min_buffers: int = 1,
) -> tuple[Any, ...] | None:
    """``fn(*args)`` (a tuple of arrays) computed by one generated native loop, or ``None``.

    ``fn`` must be elementwise: every output element depends only on the elements at
    the same position of the inputs of its shape, and on scalars.
    With ``aliased_from``, output ``j`` may be written in place of
    ``args[aliased_from + j]`` (same shape and dtype): donate those and nothing is
    copied.  Differentiating the result differentiates ``fn`` itself (a
    :func:`jax.custom_jvp`); under ``vmap`` the kernel runs once per batch member.
    ``None`` if ``fn`` is not translatable (:mod:`.codegen`), it
    writes fewer than ``min_buffers`` non-scalar outputs, or native kernels are
    unavailable here.
    """
    try:
        build.register_handler()
    except build.NativeUnavailable:  # the reason: build.available()
        return None
    flat = [x if isinstance(x, jax.Array | np.ndarray) else jnp.asarray(x) for x in args]
    shapes = vector_shapes(flat)
    if not shapes:
        return None
    try:
        closed = jax.make_jaxpr(fn)(*flat)
    except Exception:  # fn fails by itself: let the caller's plain path raise its error
        return None
    chosen: dict[str, Any] = {}

    def probe(*args):  # translate under a throwaway trace, to learn the mode and source
        chosen["found"] = _kernel(closed, list(args), shapes)
        return jnp.zeros(())

    try:
        jax.make_jaxpr(probe)(*flat)
    except Exception:  # a fault of the translator itself: never the caller's problem
        logger.warning("the native translation failed; the step stays on XLA", exc_info=True)
        return None
    if chosen["found"] is None:
        return None
    mode, kernel = chosen["found"]
    if sum(shape_ != () for shape_, _ in kernel.results) < min_buffers:
        return None
    try:
        address = build.kernel_address(kernel.source)
    except build.NativeUnavailable:
        return None

    def native(*flat):
        kernel = translate(closed, list(flat), shapes, mode)
        inputs = [
            flat[what] if kind == "arg" else jnp.asarray(what) for kind, what in kernel.inputs
        ]
        aliases: dict[int, int] = {}
        for j, (kind, what) in enumerate(kernel.outputs):
            # Rank-0 results (the step count) are never written over an input: chunk 0
            # stores them while other chunks may still be reading the scalar inputs.
            if kind != "kernel" or aliased_from is None or kernel.results[what][0] == ():
                continue
            for k, (source, index) in enumerate(kernel.inputs):
                if (
                    source == "arg"
                    and index == aliased_from + j
                    and k not in aliases
                    and (jnp.shape(flat[index]), jnp.result_type(flat[index]))
                    == kernel.results[what]
                ):
                    aliases[k] = what
        call = jax.ffi.ffi_call(
            build.TARGET_NAME,
            [jax.ShapeDtypeStruct(s, d) for s, d in kernel.results],
            input_output_aliases=aliases,
            vmap_method="sequential",
        )
        results = call(
            *inputs,
            kernel=np.int64(address),
            size=np.int64(kernel.size),
            grain=np.int64(PARALLEL_GRAIN),
            threads=np.int64(THREADS),
        )
        outs = []
        for kind, what in kernel.outputs:
            if kind == "kernel":
                outs.append(results[what])
            elif kind == "input":
                outs.append(flat[what])
            else:
                outs.append(jnp.asarray(what))
        return tuple(outs)

    fused = jax.custom_jvp(native)
    fused.defjvp(lambda primals, tangents: jax.jvp(fn, primals, tangents))
    return fused(*flat)


def fused_apply_step(
    tx: Any,
    params: PyTree,
    opt_state: PyTree,
    grads: PyTree,
    min_buffers: int = 1,
    extra_args: dict[str, Any] | None = None,
) -> tuple[PyTree, PyTree] | None:
    """``(params, opt_state)`` after one step as one native loop, or ``None``.

    ``None`` when the step cannot be fused (see the module docstring), when it writes
    fewer than ``min_buffers`` per-parameter buffers (with one, as plain SGD, XLA's
    own loop already reads and writes everything once), or native kernels are
    unavailable here (:func:`adaptive_jax.performance.native_available`).
    ``extra_args`` (``value=loss``) are passed to ``tx.update`` as read-only inputs.
    """
    if not isinstance(tx, Transform):
        return None
    tx_leaves, tx_def = jax.tree_util.tree_flatten((tx, extra_args or {}))
    g_leaves, g_def = jax.tree_util.tree_flatten(grads)
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    s_leaves, s_def = jax.tree_util.tree_flatten(opt_state)
    if not p_leaves:
        return None
    cuts = np.cumsum([len(tx_leaves), len(g_leaves), len(p_leaves)])

    def step(*flat):
        tx_, g_, p_, s_ = np.split(np.arange(len(flat)), cuts)
        tx, extra = jax.tree_util.tree_unflatten(tx_def, [flat[i] for i in tx_])
        grads = jax.tree_util.tree_unflatten(g_def, [flat[i] for i in g_])
        params = jax.tree_util.tree_unflatten(p_def, [flat[i] for i in p_])
        state = jax.tree_util.tree_unflatten(s_def, [flat[i] for i in s_])
        updates, state = tx.update(grads, state, params, **extra)
        params = apply_updates(params, updates)
        new_p, new_s = jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state)
        if len(new_p) != len(p_leaves) or len(new_s) != len(s_leaves):
            raise ValueError("the step changed the number of leaves")
        return (*new_p, *new_s)

    # Outputs (params, state) are written over the inputs (params, state), in order.
    outs = fused_elementwise(
        step, [*tx_leaves, *g_leaves, *p_leaves, *s_leaves], int(cuts[1]), min_buffers
    )
    if outs is None:
        return None
    n = len(p_leaves)
    return (
        jax.tree_util.tree_unflatten(p_def, list(outs[:n])),
        jax.tree_util.tree_unflatten(s_def, list(outs[n:])),
    )
