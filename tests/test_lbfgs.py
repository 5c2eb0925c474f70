r"""L-BFGS with the zoom line search: optax's iterates in float64, and derivatives through it.

Both libraries run optax's loop (``value_and_grad_from_state``, then ``update`` with
``value``, ``grad`` and ``value_fn``) inside one ``lax.scan``, on an ill-conditioned
quadratic (whose minimiser is known in closed form) and on an L2-regularised softmax
regression of a subset of sklearn's digits (two leaves: weights and biases).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import adaptive_jax as aj

ITERATIONS = 30

_rng = np.random.default_rng(11)
_basis, _ = np.linalg.qr(_rng.normal(size=(12, 12)))
CURVATURE = jnp.asarray(_basis @ np.diag(np.logspace(0, 3, 12)) @ _basis.T)  # cond 1e3
LINEAR = jnp.asarray(_rng.normal(size=12))
QUADRATIC_START = {"x": jnp.asarray(_rng.normal(size=(3, 4)))}


def quadratic(params):
    x = params["x"].reshape(-1)
    return 0.5 * x @ CURVATURE @ x - LINEAR @ x


_digits = load_digits()
_subset = _rng.choice(len(_digits.target), 150, replace=False)
FEATURES = jnp.asarray(_digits.data[_subset] / 16.0)
LABELS = jnp.asarray(_digits.target[_subset])
REGRESSION_START = {"W": jnp.zeros((64, 10)), "b": jnp.zeros(10)}


def logistic(params, features=FEATURES):
    logits = features @ params["W"] + params["b"]
    log_likelihood = jnp.take_along_axis(jax.nn.log_softmax(logits), LABELS[:, None], axis=1)
    return -jnp.mean(log_likelihood) + 5e-3 * jnp.sum(params["W"] ** 2)


def run(tx, value_and_grad_from_state, objective, start, iterations=ITERATIONS):
    """Iterates 1..iterations of optax's L-BFGS loop for any transformation."""
    value_and_grad = value_and_grad_from_state(objective)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=objective)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    (_, _), history = jax.lax.scan(step, (start, tx.init(start)), None, length=iterations)
    return history


PROBLEMS = {"quadratic": (quadratic, QUADRATIC_START), "logistic": (logistic, REGRESSION_START)}
SETTINGS = {
    "defaults": (dict(), dict()),
    "small_memory_rate": (
        dict(learning_rate=0.8, memory_size=3),
        dict(learning_rate=0.8, memory_size=3),
    ),  # A stricter curvature condition (c_2 = 0.1): near-exact line searches.
    "strong_wolfe": (
        dict(
            linesearch=aj.scale_by_zoom_linesearch(30, curv_rtol=0.1, initial_guess_strategy="one")
        ),
        dict(
            linesearch=optax.scale_by_zoom_linesearch(
                30, curv_rtol=0.1, initial_guess_strategy="one"
            )
        ),
    ),
}


@pytest.fixture(scope="module")
def histories():
    def both():
        ours, theirs = {}, {}
        for problem, (objective, start) in PROBLEMS.items():
            for setting, (our_kwargs, their_kwargs) in SETTINGS.items():
                key = f"{problem}-{setting}"
                ours[key] = run(
                    aj.lbfgs(**our_kwargs), aj.value_and_grad_from_state, objective, start
                )
                with jax.numpy_dtype_promotion("standard"):
                    theirs[key] = run(
                        optax.lbfgs(**their_kwargs),
                        optax.value_and_grad_from_state,
                        objective,
                        start,
                    )
        return ours, theirs

    compiled = jax.jit(both).lower().compile()
    return jax.tree_util.tree_map(np.asarray, compiled())


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_lbfgs_matches_optax_in_float64(problem, setting, histories):
    ours, theirs = histories[0][f"{problem}-{setting}"], histories[1][f"{problem}-{setting}"]
    for leaf in ours:
        scale = np.max(np.abs(theirs[leaf]))
        np.testing.assert_allclose(
            ours[leaf], theirs[leaf], rtol=1e-9, atol=1e-11 * scale, err_msg=leaf
        )
        assert np.max(np.abs(theirs[leaf][-1] - theirs[leaf][0])) > 1e-3 * scale, leaf


def test_lbfgs_reaches_the_closed_form_minimum_of_a_quadratic(histories):
    minimiser = np.linalg.solve(np.asarray(CURVATURE), np.asarray(LINEAR))
    # With optax's default c_2 = 0.9 (both libraries alike) the gradient norm is still
    # about 1 after 30 iterations on this condition number 1e3; with c_2 = 0.1 it is 1e-10.
    final = histories[0]["quadratic-strong_wolfe"]["x"][-1].reshape(-1)
    np.testing.assert_allclose(final, minimiser, rtol=1e-8, atol=1e-10)


def test_logistic_regression_gradient_falls_a_hundredfold(histories):
    final = jax.tree_util.tree_map(lambda x: x[-1], histories[0]["logistic-strong_wolfe"])
    start_norm = optax.tree.norm(jax.grad(logistic)(REGRESSION_START))
    assert float(optax.tree.norm(jax.grad(logistic)(final))) < 1e-2 * float(start_norm)


# Derivatives through the unrolled run: reverse = forward = finite differences, with
# respect to the learning rate and to the data (a scale of the features), where the
# line search's branches (accepted trial, interpolation) do not change nearby.
def final_loss(theta, iterations=6):
    rate, data_scale = theta[0], theta[1]

    def objective(params):
        return logistic(params, data_scale * FEATURES)

    history = run(
        aj.lbfgs(learning_rate=rate, memory_size=4),
        aj.value_and_grad_from_state,
        objective,
        REGRESSION_START,
        iterations,
    )
    return logistic(jax.tree_util.tree_map(lambda x: x[-1], history))


def test_derivatives_through_the_line_search_match_finite_differences():
    theta = jnp.asarray([0.7, 1.1])

    def program(theta):
        reverse = jax.grad(final_loss)(theta)
        forward = jax.vmap(lambda d: jax.jvp(final_loss, (theta,), (d,))[1])(jnp.eye(2))
        steps = 1e-6 * theta
        shifts = jnp.diag(steps)
        points = jnp.concatenate(
            [theta + shifts, theta - shifts, theta + 2 * shifts, theta - 2 * shifts]
        )
        values = jax.vmap(final_loss)(points).reshape(4, 2)
        fd = (8 * (values[0] - values[1]) - (values[2] - values[3])) / (12 * steps)
        return reverse, forward, fd

    compiled = jax.jit(program).lower(theta).compile()
    reverse, forward, fd = compiled(theta)
    assert np.all(np.isfinite(reverse)) and np.all(reverse != 0), reverse
    np.testing.assert_allclose(forward, reverse, rtol=1e-8)
    np.testing.assert_allclose(reverse, fd, rtol=1e-5)


def test_optax_line_search_cannot_be_reverse_differentiated():
    # optax's zoom line search is a while_loop: reverse mode is rejected, ours is not.
    def optax_final_loss(rate):
        with jax.numpy_dtype_promotion("standard"):
            history = run(
                optax.lbfgs(learning_rate=rate),
                optax.value_and_grad_from_state,
                logistic,
                REGRESSION_START,
                2,
            )
        return logistic(jax.tree_util.tree_map(lambda x: x[-1], history))

    with pytest.raises(ValueError, match="while_loop"):  # raised while tracing
        jax.jit(jax.grad(optax_final_loss)).trace(0.7)


def test_plain_lbfgs_steps_from_a_zero_start_differentiate_as_finite_differences():
    # From theta_0 = 0 the first pair is empty (<y, s> = 0, guarded); plain steps, no line
    # search: a smooth map of the learning rate.  optax's derivative agrees here.
    start = {"x": jnp.zeros((3, 4))}

    def final(rate, scale_by_lbfgs, scale_by_learning_rate):
        tx = optax.chain(scale_by_lbfgs(memory_size=3), scale_by_learning_rate(rate))

        def step(carry, _):
            params, state = carry
            updates, state = tx.update(jax.grad(quadratic)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (start, tx.init(start)), None, length=4)
        return quadratic(params)

    @jax.jit
    def ours(rate):
        return final(rate, aj.scale_by_lbfgs, aj.scale_by_learning_rate)

    @jax.jit
    def theirs(rate):
        with jax.numpy_dtype_promotion("standard"):
            return final(rate, optax.scale_by_lbfgs, optax.scale_by_learning_rate)

    rate, h = 1e-3, 1e-8
    derivative = jax.grad(ours)(rate)
    fd = (ours(rate + h) - ours(rate - h)) / (2 * h)
    assert np.isfinite(derivative) and derivative != 0
    np.testing.assert_allclose(derivative, fd, rtol=1e-5)
    np.testing.assert_allclose(jax.jvp(ours, (rate,), (1.0,))[1], derivative, rtol=1e-9)
    np.testing.assert_allclose(ours(rate), theirs(rate), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(theirs)(rate), derivative, rtol=1e-9)
