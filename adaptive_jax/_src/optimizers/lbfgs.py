r"""L-BFGS with a line search: a quasi-Newton direction, scaled by a step the objective accepts."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.quasi_newton import scale_by_lbfgs
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate
from adaptive_jax._src.transforms.zoom_linesearch import scale_by_zoom_linesearch

DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@checks_arguments_by_name
def lbfgs(
    learning_rate: PerParameter | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Any = DEFAULT_LINESEARCH,
) -> Chain:
    r"""L-BFGS: :math:`w_{k+1} = w_k - \eta_k \alpha P_k \nabla f(w_k)`, :math:`\eta_k` from a line search.

    :math:`P_k` is the limited-memory BFGS inverse-Hessian estimate from the last
    ``memory_size`` steps (:func:`~adaptive_jax.scale_by_lbfgs`) and :math:`\eta_k` a step
    satisfying the strong Wolfe conditions (:func:`~adaptive_jax.scale_by_zoom_linesearch`,
    first trial :math:`\eta = 1`).  The chain ``scale_by_lbfgs → scale_by_learning_rate →
    linesearch``, the numbers of ``optax.lbfgs``.  Every update needs the objective::

        value_and_grad = aj.value_and_grad_from_state(f)
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)

    (optax's loop, unchanged; extra arguments of ``f`` such as a batch are passed as
    further keywords).  It is for deterministic objectives of moderate size: the memory
    is ``2 * memory_size`` copies of the parameters.

    **Which derivatives are supported.** Any number of L-BFGS iterations, unrolled (a
    ``lax.scan`` over the updates), can be differentiated in forward mode (``jax.jvp``,
    ``jax.jacfwd``) and in reverse mode (``jax.grad``) with respect to every
    floating-point input: ``learning_rate``, the line search's numbers, the initial
    parameters, and data the objective reads (closed over, or passed as extra
    arguments).  ``memory_size`` and ``max_linesearch_steps`` are integers (static), not
    differentiable.  The line search's data-dependent number of trials is a fixed-length
    ``lax.scan`` whose finished iterations are skipped by ``lax.cond``, not a
    ``while_loop`` (optax's, which reverse mode rejects), so both modes give the
    derivative of the branch taken: which trial was accepted and which interpolation
    produced it are held fixed.  That is the derivative of the (piecewise-smooth)
    iteration map wherever a small change does not change a branch, and it matches
    finite differences there (``tests/test_lbfgs.py`` checks reverse = forward = finite
    differences with respect to ``learning_rate`` and a scale of the data through six
    iterations); across a change of
    branch the iterates jump and no derivative exists.  Numbers that only enter
    comparisons (``slope_rtol``, ``curv_rtol``, ``tol``, ``stepsize_precision``) have
    derivative 0.  Reverse mode differentiates ``value_fn``'s gradient, so ``value_fn``
    must be twice differentiable; it stores every trial's gradient for the backward
    pass (``max_linesearch_steps`` parameter-sized residuals per iteration).

    Where optax differs: its first step's :math:`\gamma_0 = \min(1, 1/\|g_0\|)` is under
    ``stop_gradient`` (so its forward-mode derivative with respect to the data or the
    initial point misses that term), and its line search is a ``while_loop``, which
    reverse mode rejects (``tests/test_lbfgs.py`` checks the latter).  Not in
    ``tests/optimizer_catalog.py``: the generic suites pass no ``value_fn``, and the step
    is not elementwise (inner products over all parameters), so the native step does not
    apply.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree;
            ``None`` is 1 (the line search picks the step), and stays a hyperparameter.
        memory_size: the number of pairs kept (a Python int >= 1).
        scale_init_precond: start each estimate from :math:`\gamma_k I` (else :math:`I`).
        linesearch: a line search transformation (ours or optax's), or ``None`` for the
            plain step :math:`-\alpha P_k g_k`.

    Returns:
        The chain above; ``learning_rate`` is found by that name.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> def f(x): return jnp.sum(x ** 2)
        >>> tx = aj.lbfgs()
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> state = tx.init(params)
        >>> value_and_grad = aj.value_and_grad_from_state(f)
        >>> for _ in range(2):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        ...     params = aj.apply_updates(params, updates)
        ...     print(f"{float(f(params)):.2E}")  # optax's example prints the same
        7.52E+00
        7.46E-14

    References: Nocedal & Wright, "Numerical Optimization", 2006, Algorithms 7.4-7.5
    and 3.5-3.6; Liu & Nocedal, "On the limited memory BFGS method for large scale
    optimization", Math. Programming 1989.
    """
    blocks = [
        scale_by_lbfgs(memory_size, scale_init_precond),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    ]
    if linesearch is not None:
        blocks.append(linesearch)
    return aliased_chain(*blocks, aliases={"learning_rate": "transforms[1].learning_rate"})
