r"""Robustness: skip or repair the updates computed from non-finite (or huge) gradients.

* :func:`apply_if_finite` wraps an optimizer and skips a step whose gradients hold a
  NaN or an Inf (below);
* :func:`zero_nans` replaces NaN entries by 0 and records which leaves had one;
* :func:`skip_large_updates` is optax's ``should_skip_update_fn`` of that name (for
  ``MultiSteps``; ``skip_not_finite`` stands next to ``MultiSteps`` in
  :mod:`adaptive_jax._src.transforms.accumulation`): it decides, it does not transform.

One batch with an overflowing loss gives NaN or Inf gradients; passed to Adam they
poison both moments, and every later step is NaN.  :func:`apply_if_finite` wraps an
optimizer so that such a step is skipped instead:

.. math::

   (u_t, s_t) = \begin{cases}
     \mathrm{inner}(g_t, s_{t-1}) & \text{if every entry of } g_t \text{ is finite,}\\
     (0,\ s_{t-1}) & \text{otherwise,}
   \end{cases}

counting skipped steps in a row (:math:`k_t`) and in total.  After
``max_consecutive_errors`` skips in a row it gives up and applies the next non-finite
update anyway (as ``optax.apply_if_finite`` does): a run whose gradients stay
non-finite then shows NaN parameters instead of silently standing still.

Step counts.  The wrapped transformation keeps its own step counter, which advances
only on applied steps: a skipped step leaves its state bit-identical, so bias
corrections and schedules inside it continue exactly as if the bad batch had never
been seen.  The counter of an enclosing :func:`~adaptive_jax.chain` (or of the
wrapper's own ``StepState``) counts every call, skipped or not; transforms placed in
the chain *outside* the wrapper therefore see skipped steps too.  Wrap the whole
optimizer to skip a step completely.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.hyperparameter import check_bound, check_count
from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import COUNT_DTYPE, increment, squared_magnitude
from adaptive_jax._src.core.protocol import PyTree, StepState, Transform
from adaptive_jax._src.core.trees import zeros_like


class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite` (field names as in ``optax.ApplyIfFiniteState``).

    ``notfinite_count`` counts non-finite steps in a row (reset by a finite one),
    ``last_finite`` says whether the last gradient was finite, ``total_notfinite``
    counts all non-finite steps, and ``inner_state`` is the wrapped transformation's
    state with its own step counter.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: StepState


def all_finite(tree: PyTree) -> jax.Array:
    """True when every entry of every leaf of ``tree`` is finite (True for an empty tree).

    Example:
        >>> import jax.numpy as jnp
        >>> from adaptive_jax._src.transforms.robustness import all_finite
        >>> bool(all_finite({"a": jnp.ones(2), "b": jnp.array([1.0, jnp.inf])}))  # one Inf suffices
        False
    """
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves], dtype=bool))


class ApplyIfFinite(Transform):
    r"""Skip steps whose gradients contain NaN or Inf: zero update, inner state unchanged.

    ``inner`` is any transformation (an adaptive_jax transform, a chain, or an optax
    transformation).  A skipped step returns zeros shaped like ``inner``'s updates and
    leaves ``inner``'s state — its step counter included — bit-identical.  After
    ``max_consecutive_errors`` consecutive skips, further non-finite steps are applied
    (until a finite gradient arrives), so persistent divergence becomes visible.
    See the module docstring for how step counters behave.

    Args:
        inner: the transformation to protect (adaptive_jax or optax).
        max_consecutive_errors: skips in a row before non-finite updates are applied
            (a Python int >= 0).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.apply_if_finite(aj.adam(0.1), max_consecutive_errors=3)
        >>> params = jnp.array([1.0, 2.0])
        >>> state = tx.init(params)
        >>> updates, state = tx.update(jnp.array([jnp.nan, 1.0]), state, params)
        >>> updates.tolist(), int(state.inner.total_notfinite)
        ([0.0, 0.0], 1)

    Reference: the loss-scaling and step-skipping practice of Micikevicius et al.,
    "Mixed Precision Training", ICLR 2018; ``optax.apply_if_finite``.
    """

    inner: Transform = child(converter=lambda tx: as_transform(tx, "inner"))
    max_consecutive_errors: int = static(default=5)
    takes_extra_args = True

    def __check_init__(self):
        check_count("max_consecutive_errors", self.max_consecutive_errors, low=0)

    def init_state(self, params):
        # Two separate zeros: one array in two fields cannot be donated (update_step).
        return ApplyIfFiniteState(
            jnp.zeros([], COUNT_DTYPE),
            jnp.asarray(True),
            jnp.zeros([], COUNT_DTYPE),
            self.inner.init(params),
        )

    def apply(self, updates, state, params, count, **extra_args):
        del count  # the inner transformation counts applied steps only
        finite = all_finite(updates)
        notfinite_count = jnp.where(
            finite, jnp.zeros_like(state.notfinite_count), increment(state.notfinite_count)
        )
        total_notfinite = jnp.where(finite, state.total_notfinite, increment(state.total_notfinite))
        give_up = notfinite_count > self.max_consecutive_errors

        def apply_inner(inner_state):
            return self.inner.update(updates, inner_state, params, **extra_args)

        def skip(inner_state):
            return zeros_like(update_shapes), inner_state

        update_shapes = jax.eval_shape(apply_inner, state.inner_state)[0]
        new_updates, inner_state = jax.lax.cond(
            finite | give_up, apply_inner, skip, state.inner_state
        )
        new_state = ApplyIfFiniteState(notfinite_count, finite, total_notfinite, inner_state)
        return new_updates, new_state


apply_if_finite = ApplyIfFinite


class ZeroNansState(NamedTuple):
    """State of :func:`zero_nans` (as ``optax.ZeroNansState``).

    ``found_nan`` is shaped like the parameters, one boolean per leaf: whether that
    leaf's last update held a NaN (before it was replaced by 0).
    """

    found_nan: Any


class ZeroNans(Transform):
    r"""Replace every NaN entry of the updates by 0: :math:`u_i = 0` if :math:`g_i` is NaN, else :math:`g_i`.

    The state records, per leaf, whether the last update held a NaN (optax's
    ``zero_nans`` and ``ZeroNansState(found_nan)``, with its numbers).  Infinities are
    kept; a complex entry with a NaN part becomes 0.  To skip the whole step instead,
    wrap the optimizer in :func:`apply_if_finite`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.zero_nans()
        >>> grads = {"w": jnp.array([1.0, jnp.nan]), "b": jnp.array([2.0])}
        >>> updates, state = tx.update(grads, tx.init(grads))
        >>> updates["w"].tolist(), bool(state.inner.found_nan["w"]), bool(state.inner.found_nan["b"])
        ([1.0, 0.0], True, False)
    """

    def init_state(self, params):
        # One array per leaf: an array shared by two leaves could not be donated.
        return ZeroNansState(jax.tree_util.tree_map(lambda _: jnp.zeros([], bool), params))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "zero_nans")
        found_nan = jax.tree_util.tree_map(lambda u: jnp.any(jnp.isnan(u)), updates)
        repaired = jax.tree_util.tree_map(
            lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates
        )
        return repaired, ZeroNansState(found_nan)


def skip_large_updates(
    updates: PyTree, gradient_step: Any, params: PyTree | None, max_squared_norm: Any
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""optax's ``skip_large_updates``: skip unless :math:`\|u\|_2^2 <` ``max_squared_norm``.

    A ``should_skip_update_fn`` for ``MultiSteps`` once ``max_squared_norm`` is bound,
    e.g. ``functools.partial(aj.skip_large_updates, max_squared_norm=100.0)``.  A NaN
    norm is skipped too.  The squared norm is :math:`\sum |u_i|^2` (optax squares
    complex entries without conjugating; this uses the magnitude).

    Args:
        updates: the updates proposed.
        gradient_step: the step within the accumulation (unused).
        params: the parameters (unused).
        max_squared_norm: the squared global norm from which updates are skipped, in
            :math:`[0, \infty]` (a negative or NaN value, which would skip every
            update, raises ``ValueError``).

    Returns:
        ``(should_skip, {"should_skip": ..., "norm_squared": ...})``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> skip, info = aj.skip_large_updates({"w": jnp.array([3.0, 4.0])}, 0, None, 20.0)
        >>> bool(skip), float(info["norm_squared"])  # 25 >= 20
        (True, 25.0)
    """
    del gradient_step, params
    check_bound("max_squared_norm", max_squared_norm)
    leaves = jax.tree_util.tree_leaves(updates)
    wide = any(jnp.finfo(jnp.result_type(u)).bits == 64 for u in leaves)
    dtype = jnp.float64 if wide else jnp.float32
    norm_squared = sum((jnp.sum(squared_magnitude(u, dtype)) for u in leaves), jnp.zeros([], dtype))
    should_skip = jnp.logical_not(norm_squared < jnp.asarray(max_squared_norm).astype(dtype))
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_squared}


zero_nans = ZeroNans
