r"""The protocol: a transformation is a pair of pure functions.

.. math::

   \text{state}_0 = \mathrm{init}(\theta_0), \qquad
   (u_t, \text{state}_t) = \mathrm{update}(g_t, \text{state}_{t-1}, \theta_{t-1}), \qquad
   \theta_t = \theta_{t-1} + u_t .

This is structurally optax's ``GradientTransformation``: any object with ``init``
and ``update`` can be given to code written for optax (``optax.chain``,
``flax.nnx.Optimizer``), and optax transformations can sit inside :func:`chain`.

Every :class:`Transform` is a :class:`~adaptive_jax.extend.Module`: a frozen
dataclass pytree whose numeric hyperparameters are declared leaves.  Internally a
transform implements

* ``init_state(params) -> state`` and
* ``apply(updates, state, params, count) -> (updates, state)``,

where ``count`` is the 1-based number of the update being computed.  The public
``init``/``update`` add one step counter around them; :func:`chain` keeps a single
counter for all of its members, so a chain of ten transforms counts steps once.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.module import Module
from adaptive_jax._src.core.numerics import COUNT_DTYPE, increment, one_step, widest_dtype
from adaptive_jax._src.core.trees import as_inexact_arrays, check_inexact, check_same_structure

PyTree = Any


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


class StepState(NamedTuple):
    """What ``Transform.init`` returns: the shared step counter and the inner state.

    ``count`` is the number of updates applied so far (int32, saturating).
    """

    count: jax.Array
    inner: PyTree


class Transform(Module, abstract=True):
    """Base class of every adaptive_jax transformation (a :class:`~adaptive_jax.extend.Module`).

    A transform whose ``apply`` needs the extra keyword arguments of an update (optax's
    ``GradientTransformationExtraArgs`` protocol, e.g. ``value=loss``) sets
    ``takes_extra_args = True`` and accepts them as ``**extra_args``.
    """

    takes_extra_args: ClassVar[bool] = False

    # -- what subclasses implement ------------------------------------------------
    def init_state(self, params: PyTree) -> PyTree:
        """The state before the first update (without the step counter)."""
        del params
        return EmptyState()

    def apply(
        self, updates: PyTree, state: PyTree, params: PyTree | None, count: jax.Array
    ) -> tuple[PyTree, PyTree]:
        """Transform ``updates`` at 1-based step ``count``; return ``(updates, state)``."""
        raise NotImplementedError

    # -- the optax-compatible protocol ---------------------------------------------
    def init(self, params: PyTree) -> StepState:
        """Initial state: a step counter at 0 and the transform's own state."""
        from adaptive_jax._src.core.inspect import (
            check_per_parameter_trees,  # (imports this module)
        )

        check_inexact(params, "params")
        check_per_parameter_trees(self, params)
        return StepState(jnp.zeros([], COUNT_DTYPE), self.init_state(params))

    def update(
        self, updates: PyTree, state: StepState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, StepState]:
        """One step: returns the transformed updates and the new state.

        ``updates`` must match ``params`` (when given) in structure, shapes and dtypes,
        and be floating point or complex; a mismatch raises
        :class:`~adaptive_jax.TreeMismatchError` naming the first differing path.
        """
        if not isinstance(state, StepState):
            raise TypeError(
                f"{type(self).__name__}.update expects the state returned by its init "
                f"(a StepState), got {type(state).__name__}"
            )
        updates = as_inexact_arrays(updates, "updates")
        if params is not None:
            params = as_inexact_arrays(params, "params")
            check_same_structure(updates, params, "updates", "params", check_dtypes=True)
        count = increment(state.count)
        # Scalars shared by the leaves (hyperparameters in a leaf's dtype, bias
        # corrections) are computed once for the whole step: see numerics.once.
        with one_step():
            if self.takes_extra_args:
                updates, inner = self.apply(updates, state.inner, params, count, **extra_args)
            else:  # extra arguments this transform does not use are ignored, as in optax
                updates, inner = self.apply(updates, state.inner, params, count)
        return updates, StepState(count, inner)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates``, leaf by leaf, keeping each parameter's dtype.

    The sum is computed in the wider of the two dtypes and cast back, so a bfloat16
    parameter stays bfloat16 and no implicit promotion happens.  ``None`` updates
    leave the parameter unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.ones(2, jnp.bfloat16)}
        >>> new = aj.apply_updates(params, {"w": jnp.array([0.5, -0.25])})
        >>> new["w"].dtype, new["w"].tolist()
        (dtype(bfloat16), [1.5, 0.75])
    """
    check_same_structure(updates, params, "updates", "params")

    def add(p: jax.Array, u: jax.Array | None) -> jax.Array:
        if u is None:
            return p
        p = jnp.asarray(p)
        wide = widest_dtype(p.dtype, jnp.result_type(u))
        return (p.astype(wide) + jnp.asarray(u).astype(wide)).astype(p.dtype)

    return jax.tree_util.tree_map(add, params, updates, is_leaf=lambda x: x is None)
