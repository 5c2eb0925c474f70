r"""Line searches: scale a descent direction by a step size the objective accepts.

A line search block takes the direction :math:`u` from the blocks before it and returns
:math:`\eta u`, with :math:`\eta` chosen by evaluating the objective along
:math:`\eta \mapsto f(w + \eta u)`.  It needs more than the gradient: the update must
pass ``value=f(w)``, ``grad=\nabla f(w)`` and ``value_fn=f`` (optax's
``GradientTransformationExtraArgs`` protocol; further keyword arguments that ``value_fn``
takes, such as a batch, are passed on to it)::

    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)

:class:`~adaptive_jax.scale_by_zoom_linesearch` finds one satisfying the strong Wolfe
conditions by interval search and zoom (:mod:`adaptive_jax._src.transforms.zoom_linesearch`);
this module holds what line searches share.  A line search stores the value (and gradient) at the accepted point, which
:func:`value_and_grad_from_state` returns for the next step instead of recomputing it.

**Differentiating through a line search.** The number of trials is data-dependent.
``jax.lax.while_loop`` (optax's choice) cannot be reverse-differentiated, so the search
here is a ``lax.scan`` of fixed length (the largest number of trials) whose iterations
after the search has ended are skipped with ``lax.cond`` (:func:`bounded_loop`): the
same numbers, differentiable in forward and reverse mode.  The accepted step is a
piecewise-smooth function of its inputs: the derivative is that of the branch taken
(which trial was accepted, which interpolation was used); it equals finite differences
wherever a small change of the inputs does not change a branch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import Domain
from adaptive_jax._src.core.numerics import cast_like
from adaptive_jax._src.core.protocol import PyTree

# Domains of the line searches' numbers.
SLOPE_RTOL = Domain("a sufficient-decrease coefficient", 0.0, 1.0)
INCREASE_FACTOR = Domain("an increase factor", 1.0, None)


def tree_vdot(x: Any, y: Any) -> jax.Array:
    r""":math:`\langle x, y\rangle = \sum_{\text{leaves}} \sum_i \bar x_i y_i`, leaf by leaf in leaf order.

    The inner product of ``optax.tree.vdot`` (a ``tensordot`` per leaf, conjugating
    ``x``), so the line searches and L-BFGS round as optax does.

    Example:
        >>> import jax.numpy as jnp
        >>> from adaptive_jax._src.transforms.linesearch import tree_vdot
        >>> float(tree_vdot({"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)},
        ...                 {"a": jnp.array([3.0, -1.0]), "b": jnp.array(2.0)}))  # 3 - 2 + 6
        7.0
    """
    total: Any = 0
    for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
        a, b = jnp.asarray(a), jnp.asarray(b)
        if jnp.iscomplexobj(a):
            a = jnp.conj(a)
        total = total + jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST)
    return jnp.asarray(total)


def bounded_loop(
    step: Callable[[Any], Any], state: Any, max_steps: int, finished: Callable[[Any], Any]
) -> Any:
    """``while not finished(state): state = step(state)``, at most ``max_steps`` times.

    A ``lax.scan`` of ``max_steps`` iterations, each a ``lax.cond`` that skips ``step``
    once ``finished``: reverse-mode differentiable (a ``while_loop`` is not), and no
    more work than the loop at run time (under ``vmap`` the ``cond`` becomes a select
    and every iteration computes).
    """

    def body(carry: Any, _: Any) -> tuple[Any, None]:
        return jax.lax.cond(finished(carry), lambda s: s, step, carry), None

    return jax.lax.scan(body, state, None, length=max_steps)[0]


def value_fn_arguments(value_fn: Any, extra_args: dict[str, Any], block: str) -> dict[str, Any]:
    """The extra update arguments ``value_fn`` takes (by name); raise on any left over."""
    if value_fn is None or not callable(value_fn):
        raise TypeError(
            f"{block} needs the objective: call update(updates, state, params, value=f(params), "
            f"grad=grad_f(params), value_fn=f), got value_fn={value_fn!r}"
        )
    parameters = inspect.signature(value_fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(extra_args)
    taken = {k: v for k, v in extra_args.items() if k in parameters}
    unused = sorted(set(extra_args) - set(taken))
    if unused:
        raise TypeError(
            f"{block}: keyword arguments {unused} of the update are not arguments of value_fn"
        )
    return taken


def check_value_and_grad(value: Any, grad: Any, block: str) -> None:
    if value is None or grad is None:
        raise TypeError(
            f"{block} needs the value and the gradient at the current parameters: "
            "update(..., value=f(params), grad=grad_f(params), value_fn=f)"
        )


def along(params: PyTree, stepsize: jax.Array, updates: PyTree) -> PyTree:
    r""":math:`w + \eta u`, leaf by leaf in each leaf's dtype."""
    return jax.tree_util.tree_map(lambda w, u: w + cast_like(stepsize, u) * u, params, updates)


def slope(grad: PyTree, updates: PyTree) -> jax.Array:
    r""":math:`\mathrm{Re}\,\langle \nabla f, u\rangle`, the derivative of :math:`\eta \mapsto f(w+\eta u)`."""
    return jnp.real(tree_vdot(jax.tree_util.tree_map(jnp.conj, grad), updates))


def value_dtype(params: PyTree) -> jnp.dtype:
    """The real dtype of the first parameter leaf: the dtype of values and step sizes (as optax)."""
    return jnp.finfo(jnp.result_type(jax.tree_util.tree_leaves(params)[0])).dtype


def non_negative(error: jax.Array) -> jax.Array:
    """``max(error, 0)`` with NaN (the objective undefined there) counted as an infinite error."""
    error = jnp.maximum(error, jnp.zeros_like(error))
    return jnp.where(jnp.isnan(error), jnp.full_like(error, jnp.inf), error)


def _named_fields(tree: Any, name: str) -> list[Any]:
    """Every field called ``name`` of a NamedTuple inside ``tree`` (an optimizer state)."""
    found = []
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for field in tree._fields:  # pyright: ignore[reportAttributeAccessIssue]
            if field == name:
                found.append(getattr(tree, field))
            else:
                found.extend(_named_fields(getattr(tree, field), name))
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            found.extend(_named_fields(item, name))
    elif isinstance(tree, dict):
        for item in tree.values():
            found.extend(_named_fields(item, name))
    return found


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., Any]:
    r"""``jax.value_and_grad(value_fn)`` that reuses the value and gradient a line search stored.

    The returned function is called as ``value_and_grad(params, *args, state=opt_state,
    **kwargs)``.  A line search evaluates the objective at the point it accepts; the next
    step needs the value and gradient at that same point, so they are taken from the
    state (its fields ``value`` and ``grad``) when the stored value is finite, and
    computed with ``jax.value_and_grad(value_fn)`` otherwise (at the first step, where
    the state holds ``inf``).  The same contract as ``optax.value_and_grad_from_state``,
    which also works on our states.

    Raises:
        ValueError: the state has no ``value`` or no ``grad`` field, or several, or a
            ``grad`` that is ``None`` (``store_grad=False``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> def f(x): return jnp.sum((x - 1.0) ** 2)
        >>> tx = aj.lbfgs()
        >>> params = jnp.zeros(2)
        >>> state = tx.init(params)
        >>> value_and_grad = aj.value_and_grad_from_state(f)
        >>> for _ in range(2):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        ...     params = aj.apply_updates(params, updates)
        >>> params.tolist()  # a quadratic: the first line search lands on the minimum
        [1.0, 1.0]
    """

    def value_and_grad(params: PyTree, *args: Any, state: Any, **kwargs: Any) -> tuple[Any, Any]:
        values, grads = _named_fields(state, "value"), _named_fields(state, "grad")
        if len(values) != 1 or len(grads) != 1 or grads[0] is None:
            raise ValueError(
                "value_and_grad_from_state needs a state with exactly one stored value and "
                f"gradient (found {len(values)} values and {len(grads)} gradients"
                + (", the gradient None: use store_grad=True" if grads == [None] else "")
                + "); the line searches store them"
            )
        value, grad = values[0], grads[0]
        return jax.lax.cond(
            jnp.isfinite(value),
            lambda *_: (value, grad),
            lambda p, a, kw: jax.value_and_grad(value_fn)(p, *a, **kw),
            params,
            args,
            kwargs,
        )

    return value_and_grad
