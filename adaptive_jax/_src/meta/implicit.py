r"""Implicit hypergradients: differentiate a converged solution, not the run that found it.

When the hyperparameters :math:`\lambda` enter the *training objective* (weight decay,
per-parameter regularisation, example weights) and training has converged to
:math:`\theta^*(\lambda)` with :math:`\nabla_\theta L_{\text{train}}(\theta^*, \lambda) = 0`,
the implicit function theorem gives the derivative of the solution without unrolling:

.. math::
   \frac{d\theta^*}{d\lambda} = -H^{-1}\,
       \frac{\partial^2 L_{\text{train}}}{\partial\theta\,\partial\lambda},
   \qquad H = \nabla^2_\theta L_{\text{train}}(\theta^*, \lambda),

so the hypergradient of a validation loss :math:`V(\theta^*(\lambda), \lambda)` costs one
linear solve with :math:`H`, whatever the number of training steps.  The solve is
matrix-free (Hessian-vector products): :class:`ConjugateGradient` (exact for a positive
definite :math:`H`), or :class:`Neumann`, the truncated series
:math:`H^{-1} \approx \alpha \sum_{k=0}^{K} (I - \alpha H)^k` of Lorraine, Vicol & Duvenaud,
"Optimizing Millions of Hyperparameters by Implicit Differentiation", AISTATS 2020.

:func:`implicit_solution` returns :math:`\theta^*` as a differentiable function of
:math:`\lambda` through a :func:`jax.custom_jvp` whose tangent is that linear solve,
wrapped in :func:`jax.lax.custom_linear_solve` so that JAX transposes it with the same
(symmetric) solver: forward mode (``jax.jvp``), reverse mode (``jax.grad``), ``vmap`` and
``jit`` all work, and no ``custom_vjp`` blocks forward mode.  The rule differentiates
itself, so second derivatives (``jax.hessian`` of a validation loss) are exact too.
:func:`implicit_hypergradient` is the reverse-mode gradient of the validation loss through
it.  The derivative is that of the *exact* minimiser: it is as accurate as ``params`` is
converged (the residual :math:`\|\nabla_\theta L_{\text{train}}\|` says how close it is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.scipy.sparse.linalg

from adaptive_jax._src.core.hyperparameter import POSITIVE
from adaptive_jax._src.core.module import Module, hyperparameter, static
from adaptive_jax._src.core.protocol import PyTree

Loss = Callable[[PyTree, PyTree], jax.Array]
LinearMap = Callable[[PyTree], PyTree]


class LinearSolver(Module, abstract=True):
    r"""Solves :math:`H x = y` for a symmetric linear map :math:`H` given as a function.

    A subclass implements :meth:`approximate`; :meth:`solve` wraps it in
    :func:`jax.lax.custom_linear_solve` (``symmetric=True``), so the solution is linear
    in ``y`` for JAX's transformations whatever the iteration does inside (a stopping
    rule that depends on :math:`\|y\|`, for instance), and its transpose is the same
    solve.
    """

    def approximate(self, matvec: LinearMap, rhs: PyTree) -> PyTree:
        """An approximation of :math:`H^{-1}` ``rhs`` from products with :math:`H`."""
        raise NotImplementedError

    def solve(self, matvec: LinearMap, rhs: PyTree) -> PyTree:
        """:math:`H^{-1}` ``rhs``, differentiable and transposable."""
        return jax.lax.custom_linear_solve(matvec, rhs, self.approximate, symmetric=True)


class ConjugateGradient(LinearSolver):
    r"""Conjugate gradients (``jax.scipy.sparse.linalg.cg``) on :math:`(H + \rho I) x = y`.

    Exact in at most :math:`n` iterations for a positive definite :math:`H`; ``ridge``
    :math:`\rho` damps a singular or slightly indefinite Hessian (a not-quite-converged
    or over-parameterised model).

    Args:
        maxiter: the most iterations.
        tol: the relative residual at which to stop.
        ridge: :math:`\rho \ge 0`, added to the diagonal.
    """

    maxiter: int = static(default=500)
    tol: float = static(default=1e-12)
    ridge: Any = hyperparameter(default=0.0, domain=POSITIVE, low_inclusive=True)

    def solve(self, matvec, rhs):
        def damped(x):
            return jax.tree_util.tree_map(lambda hx, v: hx + self.ridge * v, matvec(x), x)

        return super().solve(damped, rhs)

    def approximate(self, matvec, rhs):
        solution, _ = jax.scipy.sparse.linalg.cg(matvec, rhs, tol=self.tol, maxiter=self.maxiter)
        return solution


class Neumann(LinearSolver):
    r"""The truncated Neumann series :math:`H^{-1} y \approx \alpha \sum_{k=0}^{K} (I - \alpha H)^k y`.

    Converges when :math:`0 < \alpha < 2/\lambda_{\max}(H)` and :math:`H` is positive
    definite; :math:`K` and :math:`\alpha` trade accuracy for cost (Lorraine et al. 2020
    use a few steps on large models).

    Args:
        steps: :math:`K`, the number of terms after the first.
        scale: :math:`\alpha > 0`.
    """

    steps: int = static(default=100)
    scale: Any = hyperparameter(default=0.1, domain=POSITIVE)

    def approximate(self, matvec, rhs):
        def term(_, carry):
            power, total = carry  # (I - alpha H)^k y and the partial sum
            hv = matvec(power)
            power = jax.tree_util.tree_map(lambda p, h: p - self.scale * h, power, hv)
            return power, jax.tree_util.tree_map(jnp.add, total, power)

        _, total = jax.lax.fori_loop(0, self.steps, term, (rhs, rhs))
        return jax.tree_util.tree_map(lambda t: self.scale * t, total)


def implicit_solution(
    train_loss: Loss, params: PyTree, hparams: PyTree, solver: LinearSolver | None = None
) -> PyTree:
    r"""``params`` — a minimiser of ``train_loss(·, hparams)`` — as a differentiable function of ``hparams``.

    Args:
        train_loss: ``train_loss(params, hparams) -> scalar``.
        params: the converged minimiser :math:`\theta^*` (its value is returned unchanged).
        hparams: the hyperparameters :math:`\lambda` (any pytree of floats).
        solver: how :math:`H x = y` is solved (default :class:`ConjugateGradient`).

    Returns:
        ``params``, whose derivatives with respect to ``hparams`` (``jax.jvp``, ``jax.grad``)
        are :math:`d\theta^*/d\lambda` by the implicit function theorem.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> train = lambda w, lam: 0.5 * jnp.sum((w - 3.0) ** 2) + 0.5 * lam * jnp.sum(w**2)
        >>> w_star = lambda lam: 3.0 / (1.0 + lam)  # the closed form
        >>> dw = jax.grad(lambda lam: aj.meta.implicit_solution(train, w_star(lam), lam))
        >>> round(float(dw(1.0)), 6)  # d/d lam 3 / (1 + lam) = -3 / 4 at lam = 1
        -0.75
    """
    solver = ConjugateGradient() if solver is None else solver
    converged = jax.lax.stop_gradient(params)

    def optimality(theta, h):
        return jax.grad(train_loss)(theta, h)

    @jax.custom_jvp
    def solution(h):
        return converged

    @solution.defjvp
    def solution_jvp(primals, tangents):
        (h,), (h_dot,) = primals, tangents
        # The rule calls ``solution`` itself, so that differentiating the tangent again
        # (a Hessian in the hyperparameters) sees theta* move with h as well.
        theta = solution(h)
        _, mixed = jax.jvp(lambda h_: optimality(theta, h_), (h,), (h_dot,))

        # One flat vector: a leaf of ``mixed`` that no hyperparameter touches is a
        # constant zero, and JAX transposes a linear solve only when every leaf of its
        # right-hand side is linear in the tangent; the concatenation is.
        flat_mixed, unflatten = jax.flatten_util.ravel_pytree(mixed)

        def hessian_vector(v):
            product = jax.jvp(lambda t: optimality(t, h), (theta,), (unflatten(v),))[1]
            return jax.flatten_util.ravel_pytree(product)[0]

        theta_dot = unflatten(solver.solve(hessian_vector, flat_mixed))
        return theta, jax.tree_util.tree_map(jnp.negative, theta_dot)

    return solution(hparams)


def implicit_hypergradient(
    train_loss: Loss,
    val_loss: Loss,
    params: PyTree,
    hparams: PyTree,
    *,
    solver: LinearSolver | None = None,
) -> tuple[jax.Array, PyTree]:
    r"""The validation loss at a converged ``params`` and its hypergradient by the implicit function theorem.

    .. math::
       \frac{dV}{d\lambda} = \frac{\partial V}{\partial\lambda}
         - \Big(\frac{\partial^2 L_{\text{train}}}{\partial\lambda\,\partial\theta}\Big)
           H^{-1}\,\nabla_\theta V .

    Args:
        train_loss: ``train_loss(params, hparams) -> scalar``, minimised by ``params``.
        val_loss: ``val_loss(params, hparams) -> scalar``.
        params: the converged minimiser of ``train_loss(·, hparams)``.
        hparams: the hyperparameters (any pytree of floats: a weight decay, a tree of
            per-parameter decays, per-example weights).
        solver: :class:`ConjugateGradient` (default) or :class:`Neumann`.

    Returns:
        ``(val_loss(params, hparams), dV/d hparams)``, the gradient shaped like ``hparams``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> train = lambda w, lam: 0.5 * jnp.sum((w - 3.0) ** 2) + 0.5 * lam * jnp.sum(w**2)
        >>> val = lambda w, lam: 0.5 * jnp.sum((w - 2.0) ** 2)
        >>> w = jnp.array([3.0 / 1.5])  # the minimiser at lam = 0.5
        >>> value, grad = aj.meta.implicit_hypergradient(train, val, w, 0.5)
        >>> float(value), round(float(grad), 6)  # w* = 2 is the validation optimum: gradient 0
        (0.0, 0.0)
    """

    def validation(h):
        return val_loss(implicit_solution(train_loss, params, h, solver), h)

    return jax.value_and_grad(validation)(hparams)
