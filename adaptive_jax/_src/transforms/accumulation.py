r"""Gradient accumulation: one optimizer step per :math:`k` micro-batches.

:class:`MultiSteps` (optax's class, same arguments, state fields and numbers) averages
(or sums) the gradients of :math:`k` consecutive calls and hands the result to the
wrapped optimizer on the :math:`k`-th; the calls in between return zero updates and
leave the optimizer's state untouched, so :math:`k` micro-batches of size :math:`B`
give the step of one batch of size :math:`kB`:

.. math::

   a_j = a_{j-1} + \frac{g_j - a_{j-1}}{j} \quad (j = 1..k), \qquad
   u = \begin{cases} \mathrm{opt}(a_k) & \text{at the } k\text{-th call,}\\
                     0 & \text{before.} \end{cases}

(the running mean in Welford's form, as optax; ``use_grad_mean=False`` sums).
:func:`apply_every` is the lighter, older variant: it accumulates the *updates* of
whatever stands before it in a chain, so the transformations before it still step at
every call.

Step counts.  The wrapped optimizer is called through ``init_state``/``apply`` with
the 1-based number of the *optimizer* step (``gradient_step + 1``), so its bias
corrections and schedules advance once per :math:`k` calls, exactly as optax's inner
state does.  The counter of the wrapper's own ``StepState`` (what
:func:`~adaptive_jax.step_count` reads) counts calls, i.e. micro-batches.

Mixed precision.  The accumulator is kept in ``accumulator_dtype``; by default (None)
in each gradient's dtype widened to at least float32, so bfloat16 gradients are summed
in float32 as in optax, and float64 ones in float64 (optax's default float32 would
round them).  The optimizer receives the mean cast back to the gradients' dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import COUNT_DTYPE, increment, widest_dtype
from adaptive_jax._src.core.protocol import PyTree, StepState, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like


class MultiStepsState(NamedTuple):
    """State of :class:`MultiSteps` (optax's ``MultiStepsState`` fields).

    ``mini_step`` counts the calls since the last optimizer step (0..k-1),
    ``gradient_step`` the optimizer steps taken, ``inner_opt_state`` is the wrapped
    optimizer's state, ``acc_grads`` the accumulated gradients and ``skip_state`` what
    ``should_skip_update_fn`` returned last.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: PyTree
    acc_grads: PyTree
    skip_state: PyTree = ()


def skip_not_finite(updates: PyTree, gradient_step: jax.Array, params: PyTree) -> tuple:
    """A ``should_skip_update_fn`` for :class:`MultiSteps`: skip gradients with NaN or Inf.

    optax's ``skip_not_finite``: returns ``(should_skip, {"should_skip": ...,
    "num_not_finite": ...})``, the second part stored in ``MultiStepsState.skip_state``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> skip, info = aj.skip_not_finite({"w": jnp.array([1.0, jnp.nan, jnp.inf])}, 0, None)
        >>> bool(skip), int(info["num_not_finite"])
        (True, 2)
    """
    del gradient_step, params
    counts = [
        jnp.sum(~jnp.isfinite(x)).astype(COUNT_DTYPE) for x in jax.tree_util.tree_leaves(updates)
    ]
    num_not_finite = sum(counts, jnp.zeros([], COUNT_DTYPE))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def _check_every_k(value: Any) -> Any:
    if callable(value):
        return value
    check_count("every_k_schedule", value)
    return int(value)


class MultiSteps(Transform):
    r"""Accumulate gradients over ``every_k_schedule`` calls, then step the optimizer once.

    optax's ``MultiSteps`` with its arguments, its state fields
    (:class:`MultiStepsState`) and its methods ``has_updated`` and
    ``gradient_transformation``.  Being an adaptive_jax transformation itself, it goes
    straight into :func:`~adaptive_jax.chain`, ``update_step`` or
    ``flax.nnx.Optimizer``; ``gradient_transformation()`` returns it unchanged.  Its
    state is ``StepState(count, MultiStepsState(...))``: the optax fields are under
    ``.inner``.  See the module docstring for step counts and precision.

    Args:
        opt: the optimizer to step every :math:`k` calls (adaptive_jax or optax).
        every_k_schedule: :math:`k`, a Python int >= 1, or a function of the number of
            optimizer steps taken so far returning it (a varying batch size).
        use_grad_mean: average the accumulated gradients (default) or sum them.
        should_skip_update_fn: ``f(updates, gradient_step, params) -> (skip, info)``;
            a skipped call leaves the state as it was (``info`` goes to
            ``skip_state``), e.g. :func:`~adaptive_jax.skip_not_finite`.
        accumulator_dtype: dtype of ``acc_grads``; None: each gradient's dtype, at
            least float32.

    Raises:
        ValueError: ``every_k_schedule`` is an int below 1.

    Example:
        Two micro-batches make one SGD step on their mean gradient:

        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.MultiSteps(aj.sgd(0.5), every_k_schedule=2)
        >>> params = jnp.zeros(2)
        >>> state = tx.init(params)
        >>> first, state = tx.update(jnp.array([1.0, 2.0]), state, params)
        >>> second, state = tx.update(jnp.array([3.0, 6.0]), state, params)
        >>> first.tolist(), second.tolist()  # -0.5 * mean([1, 2], [3, 6])
        ([0.0, 0.0], [-1.0, -2.0])
        >>> bool(tx.has_updated(state)), int(state.inner.gradient_step)
        (True, 1)
    """

    opt: Transform = child(converter=lambda tx: as_transform(tx, "opt"))
    every_k_schedule: int | Callable[[jax.Array], Any] = static(converter=_check_every_k)
    use_grad_mean: bool = static(default=True)
    should_skip_update_fn: Callable[..., tuple[jax.Array, PyTree]] | None = static(default=None)
    accumulator_dtype: Any = static(default=None)
    takes_extra_args = True

    def __check_init__(self):
        if callable(self.every_k_schedule):
            try:  # a constant or eager schedule can be checked now
                first = int(self.every_k_schedule(jnp.zeros([], COUNT_DTYPE)))
            except Exception:  # traced or eager-unfriendly: checked by nobody, as in optax
                return
            check_count("every_k_schedule(0)", first)

    @property
    def inner_opt(self) -> Transform:
        """The wrapped optimizer (optax's name)."""
        return self.opt

    def gradient_transformation(self) -> MultiSteps:
        """This transformation itself: it already has ``init`` and ``update`` (optax's method)."""
        return self

    @staticmethod
    def has_updated(state: Any) -> jax.Array:
        """Whether the last call stepped the optimizer (``mini_step == 0`` after a step).

        Takes the state ``init``/``update`` return, or its :class:`MultiStepsState`.
        """
        if isinstance(state, StepState):
            state = state.inner
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def _acc_dtype(self, leaf: Any) -> Any:
        if self.accumulator_dtype is not None:
            return jnp.dtype(self.accumulator_dtype)
        return widest_dtype(jnp.result_type(leaf), jnp.float32)

    def _skip(self, updates, gradient_step, params):
        if self.should_skip_update_fn is None:
            return None, ()
        skip, info = self.should_skip_update_fn(updates, gradient_step, params)
        skip = jnp.asarray(skip)
        if (skip.dtype, skip.shape) != (jnp.bool_, ()):
            raise ValueError(
                "should_skip_update_fn must return a scalar bool as its first output, got "
                f"dtype {skip.dtype} and shape {skip.shape}"
            )
        return skip, info

    def init_state(self, params):
        acc = jax.tree_util.tree_map(lambda p: zeros_like(p, self._acc_dtype(p)), params)
        gradient_step = jnp.zeros([], COUNT_DTYPE)
        _, skip_state = self._skip(zeros_like(params), gradient_step, params)
        return MultiStepsState(
            jnp.zeros([], COUNT_DTYPE), gradient_step, self.opt.init_state(params), acc, skip_state
        )

    def apply(self, updates, state, params, count, **extra_args):
        del count  # the optimizer counts its own steps: gradient_step + 1
        expect_gradients(updates, "MultiSteps")
        k = self.every_k_schedule
        if callable(k):
            k = jnp.asarray(k(state.gradient_step)).astype(COUNT_DTYPE)
        skip, skip_state = self._skip(updates, state.gradient_step, params)
        mini_step = state.mini_step

        def accumulate(g, acc):
            wide = acc.dtype
            if self.use_grad_mean:  # Welford's running mean
                return acc + (g.astype(wide) - acc) / (mini_step + 1).astype(wide)
            return acc + g.astype(wide)

        acc = map_params(accumulate, updates, state.acc_grads, names=("acc_grads",))
        emit = mini_step == k - 1

        def step(inner_state):
            mean = jax.tree_util.tree_map(lambda a, g: a.astype(g.dtype), acc, updates)
            inner_count = increment(state.gradient_step)
            if self.opt.takes_extra_args:
                return self.opt.apply(mean, inner_state, params, inner_count, **extra_args)
            return self.opt.apply(mean, inner_state, params, inner_count)

        def hold(inner_state):
            return zeros_like(shapes), inner_state

        shapes = jax.eval_shape(step, state.inner_opt_state)[0]
        new_updates, inner_state = jax.lax.cond(emit, step, hold, state.inner_opt_state)
        new_state = MultiStepsState(
            mini_step=increment(mini_step) % k,
            gradient_step=jnp.where(emit, increment(state.gradient_step), state.gradient_step),
            inner_opt_state=inner_state,
            acc_grads=jax.tree_util.tree_map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc),
            skip_state=skip_state,
        )
        if skip is None:
            return new_updates, new_state
        skipped = state._replace(skip_state=skip_state)
        choose = lambda new, old: jnp.where(skip, old, new)  # noqa: E731
        return (
            jax.tree_util.tree_map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), new_updates),
            jax.tree_util.tree_map(choose, new_state, skipped),
        )


class ApplyEveryState(NamedTuple):
    """State of :func:`apply_every`: the updates accumulated since the last emitted one
    (optax's ``grad_acc``; the position in the cycle comes from the shared step counter)."""

    grad_acc: PyTree


class ApplyEvery(Transform):
    r"""Sum the updates of ``k`` calls and emit the sum on the ``k``-th, zeros before.

    optax's ``apply_every``: with :math:`t` the 1-based call,
    :math:`a_t = g_t + [t-1 \not\equiv 0 \ (\mathrm{mod}\ k)]\, a_{t-1}` and
    :math:`u_t = [t \equiv 0 \ (\mathrm{mod}\ k)]\, a_t`.  The transformations before
    it in a chain still update their state at every call; for the equivalent of a
    :math:`k`-times larger batch use :class:`MultiSteps`.

    Args:
        k: a Python int >= 1.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.apply_every(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> outs = []
        >>> for g in (1.0, 2.0, 3.0, 4.0):
        ...     u, state = tx.update(jnp.array([g]), state)
        ...     outs.append(float(u[0]))
        >>> outs  # 0, 1 + 2, 0, 3 + 4
        [0.0, 3.0, 0.0, 7.0]
    """

    k: int = static(default=1)

    def __check_init__(self):
        check_count("k", self.k)

    def init_state(self, params):
        return ApplyEveryState(zeros_like(params))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "apply_every")
        position = (count - 1) % self.k  # 0 starts a new sum
        restart, emit = position == 0, position == self.k - 1
        grad_acc = map_params(
            lambda g, a: jnp.where(restart, g, a + g.astype(a.dtype)).astype(a.dtype),
            updates,
            state.grad_acc,
            names=("grad_acc",),
        )
        emitted = jax.tree_util.tree_map(
            lambda a, g: jnp.where(emit, a, jnp.zeros_like(a)).astype(g.dtype), grad_acc, updates
        )
        return emitted, ApplyEveryState(grad_acc)


apply_every = ApplyEvery
