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
* **one pass over memory** — on one CPU device a large elementwise step runs as one
  generated C kernel instead of XLA's loop per output, with the same numbers.

The pieces, one module each: where a step runs (``dispatch.py``: :func:`choose_path`
and :func:`apply_step`), the transformation as an argument (``arguments.py``), the
donating machinery (``donation.py``, :class:`DonatingStep`), and here the two
helpers users call.

:func:`update_step` applies one update; :func:`make_train_step` adds the loss and its
gradient; :func:`apply_step` is their traceable body.  All accept an optax
transformation too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from adaptive_jax._src.performance.dispatch import accepts_extra_args, apply_step, short
from adaptive_jax._src.performance.donation import DonatingStep
from adaptive_jax._src.performance.layout import FlatParams

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
            f"{type(loss_fn).__name__} {short(loss_fn)}"
        )

    def train(tx, params, opt_state, *batch, native):
        def objective(params):
            tree = params.tree() if isinstance(params, FlatParams) else params
            return loss_fn(tree, *batch)

        value, grads = jax.value_and_grad(objective, has_aux=has_aux)(params)
        loss = value[0] if has_aux else value
        extra = {"value": loss} if accepts_extra_args(tx) else {}
        params, opt_state = apply_step(tx, params, opt_state, grads, native=native, **extra)
        if has_aux:
            return params, opt_state, loss, value[1]
        return params, opt_state, loss

    name = getattr(loss_fn, "__name__", "loss_fn")
    return DonatingStep(
        train, f"make_train_step({name}) step", arg_names=("params", "opt_state", "*batch")
    )
