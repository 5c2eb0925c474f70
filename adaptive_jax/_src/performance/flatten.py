r"""``flatten(tx)``: run any transformation on one contiguous buffer per dtype.

The user's code keeps its pytree; inside, each step concatenates the gradient
leaves of each dtype into one 1-D buffer, runs ``tx`` on the buffers, and splits the
updates back into the tree:

.. math::
   u = \mathrm{unravel}\bigl(\mathrm{tx}(\mathrm{ravel}(g),\ s,\ \mathrm{ravel}(\theta))\bigr),

so the state (Adam's :math:`m` and :math:`v`, ...) lives in one buffer per dtype and
XLA compiles one loop per dtype instead of one per leaf: compile time stops growing
with the number of leaves.  The numbers are those of ``tx`` on the tree, bit for bit
op by op, whenever ``tx`` is elementwise (Adam, SGD, RMSProp, Lion, ...); under
``jax.jit`` XLA fuses the two programs differently and may round the last bit
differently where it contracts ``a*b+c`` into a fused multiply-add.

What cannot be flat, and is refused with a ``ValueError`` when the step is traced:

* **per-parameter hyperparameters** (``learning_rate={"encoder": 1e-4, ...}``, masks):
  a buffer has no leaves to address.  Keep the tree path for such a transformation,
  or give it a scalar;
* **per-leaf statistics** (LAMB/LARS trust ratios :math:`\|\theta_i\|/\|u_i\|`, per-leaf
  clipping): on a buffer they silently become one statistic for all leaves.  Global
  statistics (``clip_by_global_norm``, ``normalize_by_global_norm``) are fine: their
  sum over a buffer is the sum over the leaves (rounded in another order).

The check traces ``tx`` on a small probe tree and follows its data flow
(:mod:`adaptive_jax._src.performance.dataflow`); ``check=False`` skips it for a
transformation you know to be layout-invariant but the analysis cannot follow.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.inspect import walk
from adaptive_jax._src.core.module import Module, child, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import COUNT_DTYPE
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.performance.dataflow import cross_element_violations
from adaptive_jax._src.performance.layout import FlatLayout, FlatParams

# Distinct lengths, so that a state array can be traced back to its probe leaf.
_PROBE_LENGTHS = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
_checked: dict[Any, list[str]] = {}


class FlatLayoutError(ValueError):
    """A transformation whose numbers would change if its parameters were flat buffers."""


def per_parameter_hyperparameters(tx: Any) -> list[str]:
    """Paths of hyperparameters of ``tx`` that are pytrees over the parameters."""
    if not isinstance(tx, Transform):
        return []
    found = []
    for path, value, domain in walk(tx):
        if callable(value) or isinstance(value, Module):
            continue
        if not jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)):
            found.append(jax.tree_util.keystr(path).removeprefix("."))
        elif jnp.ndim(value) > 0 and domain.scalar:  # not an array of knots or scales
            found.append(jax.tree_util.keystr(path).removeprefix("."))
    return found


def layout_problems(tx: Transform, dtypes: tuple[str, ...]) -> list[str]:
    """Why ``tx`` would give other numbers on flat buffers than on a tree; ``[]`` if none."""
    try:
        key = (jax.tree_util.tree_structure(tx), dtypes)
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _checked:
        return _checked[key]
    problems = [
        f"hyperparameter {path} is a per-parameter pytree; flat buffers have no leaves to address"
        for path in per_parameter_hyperparameters(tx)
    ]
    failed = False
    if not problems:
        problems, failed = _dataflow_problems(tx, dtypes)
    if key is not None and not failed:  # a failure may depend on global config: retry
        _checked[key] = problems
    return problems


def _dataflow_problems(tx: Transform, dtypes: tuple[str, ...]) -> tuple[list[str], bool]:
    """The problems found, and whether tracing ``tx`` on the probe failed."""
    kinds = [dtype for dtype in dtypes for _ in range(2)]  # two leaves of each dtype
    if len(kinds) > len(_PROBE_LENGTHS):
        return [], False  # more dtypes than probe sizes: nothing realistic; skip the check
    probe = tuple(jax.ShapeDtypeStruct((n,), jnp.dtype(d)) for n, d in zip(_PROBE_LENGTHS, kinds))
    leaf_of_length = {n: frozenset([i]) for i, n in enumerate(_PROBE_LENGTHS[: len(kinds)])}
    try:
        state = jax.eval_shape(tx.init_state, probe)
    except (ValueError, TypeError) as error:
        return [f"its state cannot be built for flat buffers ({error})"], True
    problems = []

    def state_taint(leaf: Any) -> frozenset:
        if jnp.ndim(leaf) == 0:
            return frozenset()
        if jnp.ndim(leaf) == 1 and jnp.shape(leaf)[0] in leaf_of_length:
            return leaf_of_length[jnp.shape(leaf)[0]]
        problems.append(f"it keeps a state array of shape {jnp.shape(leaf)} not shaped like a leaf")
        return frozenset()

    none = jax.tree_util.tree_map(lambda _: frozenset(), tx)
    leaf_taints = tuple(frozenset([i]) for i in range(len(probe)))
    taints = (
        none,
        leaf_taints,
        jax.tree_util.tree_map(state_taint, state),
        leaf_taints,
        frozenset(),
    )
    count = jax.ShapeDtypeStruct((), COUNT_DTYPE)

    def apply(tx, updates, state, params, count):
        return tx.apply(updates, state, params, count)

    try:
        problems += cross_element_violations(
            apply, (tx, probe, state, probe, count), taints, len(probe)
        )
    except (ValueError, TypeError) as error:
        return problems + [f"it cannot run on flat buffers ({error})"], True
    return problems, False


def check_flat_layout(tx: Any, dtypes: tuple[str, ...], where: str) -> None:
    """Raise :class:`FlatLayoutError` if ``tx`` is not exact on flat buffers of ``dtypes``."""
    problems = layout_problems(as_transform(tx), dtypes)
    if problems:
        raise FlatLayoutError(
            f"{where}: {type(tx).__name__} cannot run on flat buffers: "
            + "; ".join(problems)
            + ". Use the tree layout for it (or check=False if you know it is exact)."
        )


class Flattened(Transform):
    """See :func:`flatten`."""

    inner: Transform = child()
    check: bool = static(default=True)

    def init_state(self, params: PyTree) -> PyTree:
        return self.inner.init_state(FlatLayout.of(params).ravel(params))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "flatten")
        layout = FlatLayout.of(updates)
        if self.check:
            check_flat_layout(self.inner, layout.groups, "flatten")
        flat_params = None if params is None else layout.ravel(params)
        flat_updates, state = self.inner.apply(layout.ravel(updates), state, flat_params, count)
        if not isinstance(flat_updates, FlatParams):
            raise TypeError(
                f"flatten: the inner transformation returned {type(flat_updates).__name__}, "
                "not updates; flatten a whole optimizer (ending in scale_by_learning_rate)"
            )
        return layout.unravel(flat_updates.buffers), state


def flatten(tx: Any, check: bool = True) -> Flattened:
    r"""Keep ``tx``'s state in one contiguous buffer per dtype; the user's code keeps its pytree.

    ``flatten(tx)`` is a transformation like any other (put it in a chain, jit it,
    differentiate through it); its updates and the numbers they hold are those of
    ``tx`` on the tree, and its state is ``tx``'s state on the flat buffers.  Raises
    :class:`FlatLayoutError` when the step is traced if ``tx`` has per-parameter
    hyperparameters or per-leaf statistics (see the module docstring).

    For the fastest step, keep the parameters flat too
    (:func:`~adaptive_jax.performance.ravel_params`): then there is no concatenation
    and no split per step.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> tx = aj.performance.flatten(aj.adam(0.1))
        >>> state = tx.init(params)
        >>> state.inner[0].mu.buffers["float32"].shape  # both leaves, padded to 128
        (128,)
        >>> updates, state = tx.update(params, state, params)
        >>> [[round(u, 6) for u in row] for row in updates["w"].tolist()]
        [[-0.1, -0.1, -0.1], [-0.1, -0.1, -0.1]]
    """
    return Flattened(as_transform(tx), check)
