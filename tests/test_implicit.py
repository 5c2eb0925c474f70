"""Implicit hypergradients against closed forms, finite differences and jaxopt.

Ridge regression with a per-parameter penalty has the closed-form minimiser
``theta*(lam) = (X^T X + diag(lam))^{-1} X^T y``; differentiating that formula with JAX
(through ``jnp.linalg.solve``, no implicit function theorem) is the independent oracle.
For logistic regression (no closed form) the oracles are jaxopt's own implicit
differentiation (``jaxopt.implicit_diff.custom_root``) and central finite differences of
a re-solved minimiser.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "no longer maintained": an oracle
    import jaxopt

RNG = np.random.default_rng(0)
X_TRAIN = jnp.asarray(RNG.normal(size=(40, 5)))
Y_TRAIN = jnp.asarray(RNG.normal(size=40))
X_VAL = jnp.asarray(RNG.normal(size=(30, 5)))
Y_VAL = jnp.asarray(RNG.normal(size=30))
PENALTY = jnp.array([0.3, 1.0, 2.0, 0.1, 5.0])  # one lambda per coefficient


def ridge_train(w, lam):
    return 0.5 * jnp.sum((X_TRAIN @ w - Y_TRAIN) ** 2) + 0.5 * jnp.sum(lam * w**2)


def ridge_val(w, lam):
    del lam
    return 0.5 * jnp.sum((X_VAL @ w - Y_VAL) ** 2)


def ridge_minimiser(lam):
    return jnp.linalg.solve(X_TRAIN.T @ X_TRAIN + jnp.diag(lam), X_TRAIN.T @ Y_TRAIN)


def ridge_validation_closed_form(lam):
    return ridge_val(ridge_minimiser(lam), lam)


def ridge_validation_implicit(lam, solver=None):
    w = aj.meta.implicit_solution(ridge_train, ridge_minimiser(lam), lam, solver)
    return ridge_val(w, lam)


def neumann_for_ridge():
    """A Neumann series that converges: scale below 2 / largest eigenvalue of the Hessian."""
    largest = float(jnp.linalg.eigvalsh(X_TRAIN.T @ X_TRAIN)[-1]) + float(PENALTY.max())
    return aj.meta.Neumann(steps=3000, scale=1.0 / largest)


@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_ridge_hypergradient_matches_the_closed_form(solver):
    solver = aj.meta.ConjugateGradient() if solver == "cg" else neumann_for_ridge()
    expected = jax.grad(ridge_validation_closed_form)(PENALTY)
    value, gradient = aj.meta.implicit_hypergradient(
        ridge_train, ridge_val, ridge_minimiser(PENALTY), PENALTY, solver=solver
    )
    np.testing.assert_allclose(value, ridge_validation_closed_form(PENALTY), rtol=1e-12)
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-9)
    assert jnp.abs(expected).min() > 1e-4  # every coordinate is really tested


def test_forward_mode_jit_and_vmap_agree_with_the_closed_form():
    expected = jax.grad(ridge_validation_closed_form)(PENALTY)
    direction = jnp.asarray(RNG.normal(size=5))
    _, forward = jax.jvp(ridge_validation_implicit, (PENALTY,), (direction,))
    np.testing.assert_allclose(forward, expected @ direction, rtol=1e-9)
    np.testing.assert_allclose(jax.jit(jax.grad(ridge_validation_implicit))(PENALTY), expected)
    population = jnp.stack([PENALTY, 2.0 * PENALTY, PENALTY + 1.0])
    batched = jax.vmap(jax.grad(ridge_validation_implicit))(population)
    np.testing.assert_allclose(
        batched, jax.vmap(jax.grad(ridge_validation_closed_form))(population), rtol=1e-8
    )


def test_second_derivatives_in_every_order_of_modes():
    expected = jax.jit(jax.hessian(ridge_validation_closed_form))(PENALTY)
    f = ridge_validation_implicit
    for second in (
        jax.hessian(f),  # forward over reverse
        jax.jacfwd(jax.jacfwd(f)),
        jax.jacrev(jax.jacrev(f)),
    ):
        result = jax.jit(second)(PENALTY)
        np.testing.assert_allclose(result, expected, rtol=1e-7, atol=1e-10)


def test_pytree_params_and_a_per_leaf_penalty_tree():
    """Two parameter leaves (weights and bias) with a penalty tree shaped like them."""

    def train(params, lam):
        residual = X_TRAIN @ params["w"] + params["b"] - Y_TRAIN
        penalty = jnp.sum(lam["w"] * params["w"] ** 2) + lam["b"] * params["b"] ** 2
        return 0.5 * jnp.sum(residual**2) + 0.5 * penalty

    def val(params, lam):
        return 0.5 * jnp.sum((X_VAL @ params["w"] + params["b"] - Y_VAL) ** 2)

    def minimiser(lam):
        design = jnp.concatenate([X_TRAIN, jnp.ones((40, 1))], axis=1)
        penalty = jnp.diag(jnp.concatenate([lam["w"], lam["b"][None]]))
        solution = jnp.linalg.solve(design.T @ design + penalty, design.T @ Y_TRAIN)
        return {"w": solution[:5], "b": solution[5]}

    lam = {"w": PENALTY, "b": jnp.asarray(0.7)}
    expected = jax.grad(lambda h: val(minimiser(h), h))(lam)
    _, gradient = aj.meta.implicit_hypergradient(train, val, minimiser(lam), lam)
    for key in ("w", "b"):
        np.testing.assert_allclose(gradient[key], expected[key], rtol=1e-8)


# Weighted, L2-regularised logistic regression: no closed form.
FEATURES = jnp.asarray(RNG.normal(size=(60, 4)))
LABELS = jnp.asarray((RNG.normal(size=60) + FEATURES[:, 0] > 0).astype(np.float64))
VAL_FEATURES = jnp.asarray(RNG.normal(size=(50, 4)))
VAL_LABELS = jnp.asarray((VAL_FEATURES[:, 0] > 0).astype(np.float64))


def logistic_train(w, hparams):
    """``hparams = (per-example weights, L2 penalty)``."""
    example_weights, penalty = hparams
    logits = FEATURES @ w
    losses = jnp.logaddexp(0.0, logits) - LABELS * logits
    return jnp.sum(example_weights * losses) + 0.5 * penalty * jnp.sum(w**2)


def logistic_val(w, hparams):
    logits = VAL_FEATURES @ w
    return jnp.mean(jnp.logaddexp(0.0, logits) - VAL_LABELS * logits)


@jax.jit
def newton_minimiser(hparams, iterations=30):
    """The converged minimiser by Newton's method (quadratic convergence to float64)."""

    def step(w, _):
        gradient = jax.grad(logistic_train)(w, hparams)
        return w - jnp.linalg.solve(jax.hessian(logistic_train)(w, hparams), gradient), None

    return jax.lax.scan(step, jnp.zeros(4), None, length=iterations)[0]


HPARAMS = (jnp.asarray(RNG.uniform(0.5, 1.5, size=60)), jnp.asarray(0.8))


def test_logistic_regression_against_jaxopt_and_finite_differences():
    w = newton_minimiser(HPARAMS)
    assert jnp.linalg.norm(jax.grad(logistic_train)(w, HPARAMS)) < 1e-12  # converged

    _, ours = jax.jit(aj.meta.implicit_hypergradient, static_argnums=(0, 1))(
        logistic_train, logistic_val, w, HPARAMS
    )

    @jaxopt.implicit_diff.custom_root(jax.grad(logistic_train))
    def jaxopt_solver(init, hparams):
        del init
        return newton_minimiser(hparams)

    reference = jax.jit(jax.grad(lambda h: logistic_val(jaxopt_solver(None, h), h)))(HPARAMS)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-8)

    def validation_of_penalty(penalty):
        hparams = (HPARAMS[0], penalty)
        return logistic_val(newton_minimiser(hparams), hparams)

    step = 1e-5
    finite_difference = (
        validation_of_penalty(HPARAMS[1] + step) - validation_of_penalty(HPARAMS[1] - step)
    ) / (2 * step)
    np.testing.assert_allclose(ours[1], finite_difference, rtol=1e-6)


def test_ridge_damps_a_singular_hessian():
    """More coefficients than examples: the Hessian of the unpenalised loss is singular.

    With ``ridge`` rho, the solve is that of ``H + rho I``: against the same formula
    written out with a dense matrix.
    """
    design = X_TRAIN[:3]  # 3 examples, 5 coefficients

    def train(w, shift):
        return 0.5 * jnp.sum((design @ w - Y_TRAIN[:3] - shift) ** 2)

    w = jnp.linalg.lstsq(design, Y_TRAIN[:3] + 0.2)[0]
    solver = aj.meta.ConjugateGradient(ridge=1e-3)
    _, gradient = aj.meta.implicit_hypergradient(train, ridge_val, w, 0.2, solver=solver)
    hessian = design.T @ design + 1e-3 * jnp.eye(5)
    mixed = -design.T @ jnp.ones(3)  # d/d shift of the gradient in w
    dw = -jnp.linalg.solve(hessian, mixed)
    expected = jax.grad(ridge_val)(w, None) @ dw
    np.testing.assert_allclose(gradient, expected, rtol=1e-8)
    assert jnp.isfinite(gradient)


def test_solver_settings_are_checked():
    with pytest.raises(ValueError, match="scale"):
        aj.meta.Neumann(scale=0.0)
    with pytest.raises(ValueError, match="ridge"):
        aj.meta.ConjugateGradient(ridge=-1.0)
