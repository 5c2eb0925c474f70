r"""Robustness: skip the updates computed from non-finite gradients.

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

from typing import NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.numerics import COUNT_DTYPE, increment
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
