r"""Where an optimizer step runs, decided in one place: :func:`choose_path`.

XLA's CPU backend gives each output of an elementwise step its own loop, so Adam's
step moves 40 bytes per parameter instead of 28.  On one CPU device, a large
elementwise step runs as one generated C kernel instead
(:mod:`adaptive_jax._src.performance.native`), with the same numbers.
:func:`apply_step` is the traceable body of the donating helpers
(:mod:`adaptive_jax._src.performance.train_step`); it asks :func:`choose_path`.
"""

from __future__ import annotations

import enum
from typing import Any

import jax
import numpy as np

from adaptive_jax._src.core.combine import takes_extra_args
from adaptive_jax._src.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax._src.performance.flatten import check_flat_layout
from adaptive_jax._src.performance.layout import FlatParams
from adaptive_jax._src.performance.native import fused_apply_step
from adaptive_jax._src.performance.native.fused import MIN_SIZE

#: The tracer class (the compiled step traces inline when it meets one).
TRACER = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]


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
    check_transform(tx, "apply_step")
    if check_layout and isinstance(params, FlatParams):
        check_flat_layout(tx, params.layout.groups, "apply_step")
    if choose_path(tx, params, native) is StepPath.NATIVE:
        fused = fused_apply_step(tx, params, opt_state, grads, 2, extra_args)
        if fused is not None:
            return fused
    updates, opt_state = tx.update(grads, opt_state, params, **extra_args)
    return apply_updates(params, updates), opt_state


def check_transform(tx: Any, where: str) -> None:
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
        f"{short(tx)}{hint}. The arguments are (tx, params, opt_state, ...)."
    )


def accepts_extra_args(tx: Any) -> bool:
    """Whether ``tx.update`` takes extra keyword arguments (``value=``)."""
    return isinstance(tx, Transform) or takes_extra_args(tx.update)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_cpu_device(leaf: Any) -> bool:
    """Whether the array ``leaf`` lives on one CPU device (False for anything else)."""
    sharding = getattr(leaf, "sharding", None)
    if sharding is None or isinstance(leaf, TRACER):
        return False
    devices = sharding.device_set
    return len(devices) == 1 and next(iter(devices)).platform == "cpu"
