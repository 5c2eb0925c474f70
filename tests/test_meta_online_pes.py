"""Online hypergradient descent (Baydin et al. 2018) and Persistent Evolution Strategies.

HD is checked against the one-step hypergradient obtained with ``jax.grad`` through one plain
SGD / Adam step and against its closed form; PES against the influence-balancing task of
Vicol, Metz & Sohl-Dickstein (2021), whose optimum is known in closed form, and against the
exact full-horizon gradient.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import extend
from adaptive_jax.meta import (
    adam_hd,
    meta_train,
    persistent_es,
    sgd_hd,
    truncated_backprop,
    unroll,
)

TARGET = jnp.array([1.0, -2.0, 0.5])


def loss(w):
    """A non-quadratic loss, so successive gradients are not collinear."""
    return jnp.sum((w - TARGET) ** 2) + 0.1 * jnp.sum(w**4)


W0 = jnp.array([0.3, 0.8, -1.0])


def run_hd(tx, num_steps):
    """Params, gradients and the HD learning rate after every step (index 0 = before step 1)."""

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), grads, state

    params, state = W0, tx.init(W0)
    history = [(params, None, float(state.inner.learning_rate))]
    for _ in range(num_steps):
        params, grads, state = step(params, state)
        history.append((params, grads, float(state.inner.learning_rate)))
    return history


def test_sgd_hd_rate_moves_by_minus_beta_times_the_one_step_hypergradient():
    alpha0, beta = 0.05, 0.02
    history = run_hd(sgd_hd(alpha0, beta), 5)
    assert history[1][2] == pytest.approx(alpha0, rel=1e-15)  # g_0 = 0: first step keeps alpha0
    for t in range(2, 6):
        theta_before, g_prev, alpha_prev = history[t - 2][0], history[t - 1][1], history[t - 1][2]
        g_t = history[t][1]

        def after_one_step(alpha, theta_before=theta_before, g_prev=g_prev):
            tx = aj.sgd(alpha)
            updates, _ = tx.update(g_prev, tx.init(theta_before), theta_before)
            return loss(aj.apply_updates(theta_before, updates))

        hypergradient = jax.grad(after_one_step)(alpha_prev)
        np.testing.assert_allclose(hypergradient, -jnp.dot(g_t, g_prev), rtol=1e-12)
        assert history[t][2] == pytest.approx(alpha_prev - beta * float(hypergradient), rel=1e-13)
        # the parameter step uses the new rate
        np.testing.assert_allclose(
            history[t][0], history[t - 1][0] - history[t][2] * g_t, rtol=1e-13
        )


def adam_direction(gradients, b1, b2, eps):
    """Adam's u_t = m_hat / (sqrt(v_hat) + eps) from the list of gradients g_1..g_t (numpy)."""
    m = np.zeros_like(gradients[0])
    v = np.zeros_like(gradients[0])
    for g in gradients:
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
    t = len(gradients)
    return (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


def test_adam_hd_rate_moves_by_minus_beta_times_the_one_step_hypergradient():
    alpha0, beta, b1, b2, eps = 0.05, 0.01, 0.8, 0.95, 1e-6
    history = run_hd(adam_hd(alpha0, beta, b1, b2, eps), 5)
    gradients = [np.asarray(h[1]) for h in history[1:]]
    for t in range(2, 6):
        theta_before, alpha_prev = history[t - 2][0], history[t - 1][2]
        g_t = gradients[t - 1]
        u_prev = adam_direction(gradients[: t - 1], b1, b2, eps)

        def after_one_step(alpha, theta_before=theta_before, t=t):
            # plain Adam fed the same gradients g_1 .. g_{t-1}; only its last step is taken
            tx = aj.adam(alpha, b1, b2, eps)
            state = tx.init(theta_before)
            for g in gradients[: t - 1]:
                updates, state = tx.update(jnp.asarray(g), state, theta_before)
            return loss(aj.apply_updates(theta_before, updates))

        hypergradient = jax.jit(jax.grad(after_one_step))(alpha_prev)
        np.testing.assert_allclose(hypergradient, -np.dot(g_t, u_prev), rtol=1e-10)
        assert history[t][2] == pytest.approx(alpha_prev - beta * float(hypergradient), rel=1e-12)


@pytest.mark.parametrize(
    "hd, plain",
    [(sgd_hd(0.05, 0.0), aj.sgd(0.05)), (adam_hd(0.05, 0.0, 0.8, 0.95), aj.adam(0.05, 0.8, 0.95))],
    ids=["sgd", "adam"],
)
def test_hd_with_zero_hypergradient_rate_is_the_plain_optimizer(hd, plain):
    hd_params = unroll(hd, W0, loss, num_steps=8).params
    plain_params = unroll(plain, W0, loss, num_steps=8).params
    np.testing.assert_allclose(hd_params, plain_params, rtol=1e-14)


def test_hd_hyperparameters_are_differentiable_leaves():
    def final_loss(tx):
        return loss(unroll(tx, W0, loss, num_steps=10).params)

    tx = sgd_hd(0.05, 0.01)
    grads = jax.grad(final_loss)(tx)
    # steps small enough for the loss's curvature in each hyperparameter, large against round-off
    for field, value, step in [("learning_rate", 0.05, 1e-5), ("hypergrad_lr", 0.01, 1e-7)]:
        plus = final_loss(
            sgd_hd(**{"learning_rate": 0.05, "hypergrad_lr": 0.01, field: value + step})
        )
        minus = final_loss(
            sgd_hd(**{"learning_rate": 0.05, "hypergrad_lr": 0.01, field: value - step})
        )
        np.testing.assert_allclose(getattr(grads, field), (plus - minus) / (2 * step), rtol=1e-5)


# --- Persistent Evolution Strategies ----------------------------------------------------------

# Influence balancing (Tallec & Ollivier 2017, as set up by Vicol et al. 2021): a linear system
# s_{t+1} = A s_t + b * theta, A = 0.5 I + 0.5 superdiagonal, b with 10 entries +1 and 13 -1,
# s_0 = 1, loss 1/2 (s[0] - 1)^2.  One-step truncation sees only b[0] = +1, while the long-run
# influence of theta on s[0] is negative: truncated backprop is pushed the wrong way.
N_STATE = 23
A_MATRIX = 0.5 * np.eye(N_STATE) + 0.5 * np.eye(N_STATE, k=1)
B_SIGNS = np.array([1.0] * 10 + [-1.0] * 13)


class InfluenceBalancing(extend.Transform):
    """The toy dynamics as a transformation whose hyperparameter is theta (gradients unused)."""

    theta: Any = extend.hyperparameter(domain=extend.REAL)

    def apply(self, updates, state, params, count):
        following = jnp.asarray(A_MATRIX) @ params + self.theta * jnp.asarray(B_SIGNS)
        return following - params, state


def balance_loss(s):
    return 0.5 * (s[0] - 1.0) ** 2


def window_end_loss(result):
    return balance_loss(result.params)


def test_pes_reaches_the_influence_balancing_optimum_and_truncated_backprop_does_not():
    # Steady state s* = (I - A)^{-1} b theta, so loss(s*) = 1/2 (c theta - 1)^2, optimum 1/c.
    c = np.linalg.solve(np.eye(N_STATE) - A_MATRIX, B_SIGNS)[0]
    theta_star = 1.0 / c
    start = InfluenceBalancing(jnp.array(0.5))
    s0 = jnp.ones(N_STATE)
    common = dict(window=1, objective=window_end_loss)
    # The paper's settings: K=1, N=1000 particles, sigma=0.1, SGD with rate 1e-4, 3000 steps.
    pes = persistent_es(balance_loss, s0, num_particles=1000, sigma=0.1, **common)
    tbptt = truncated_backprop(balance_loss, s0, **common)
    outer = aj.sgd(1e-4)
    fast = dict(progress=False, iterations_per_call=1000)
    pes_run = meta_train(pes, start, outer, 3000, key=jax.random.PRNGKey(3), **fast)
    tbptt_run = meta_train(tbptt, start, outer, 3000, **fast)
    assert float(pes_run.meta_params.theta) == pytest.approx(theta_star, abs=2e-3)
    # truncated backprop runs away from the optimum: theta grows from 0.5 without bound
    tbptt_thetas = tbptt_run.history.hyperparameters.theta
    assert float(tbptt_run.meta_params.theta) > 1.0
    assert np.all(np.diff(tbptt_thetas[1000:]) > 0)


def test_pes_sum_over_a_run_estimates_the_full_horizon_gradient():
    """Summed over the windows of one run (hyperparameters fixed), PES is unbiased for the
    gradient of the total objective; truncated backprop's sum is not."""
    horizon, window = 6, 1
    meta = {"learning_rate": jnp.array(0.05), "momentum": jnp.array(0.7)}

    def to_transform(m):
        return aj.sgd(m["learning_rate"], m["momentum"])

    def total_objective(m):  # sum of the windows' end-of-window losses over one run
        tx = to_transform(m)
        params, state, total = W0, tx.init(W0), 0.0
        for _ in range(horizon // window):
            result = unroll(tx, params, loss, num_steps=window, opt_state=state)
            params, state = result.params, result.opt_state
            total = total + loss(params)
        return total

    exact = jax.grad(total_objective)(meta)

    @jax.jit
    def summed(estimator, key):
        def one_window(state, _):
            _, grads, state = estimator.estimate(meta, state)
            return state, grads

        _, grads = jax.lax.scan(
            one_window, estimator.init(meta, key), None, length=horizon // window
        )
        return jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), grads)

    def error(estimate):  # relative to the gradient's norm: ES noise is isotropic
        flat = jnp.stack([estimate[name] - exact[name] for name in meta])
        return float(jnp.linalg.norm(flat) / jnp.linalg.norm(jnp.stack(list(exact.values()))))

    common = dict(
        window=window,
        horizon=horizon,
        objective=lambda r: loss(r.params),
        to_transform=to_transform,
    )
    pes = persistent_es(loss, W0, num_particles=4000, sigma=1e-3, **common)
    pes_sum = summed(pes, jax.random.PRNGKey(0))
    tbptt_sum = summed(truncated_backprop(loss, W0, **common), None)
    # ES error ~ sqrt(windows * dims / N) ~ 5%; one-step truncation misses ~40% of the gradient
    assert error(pes_sum) < 0.1
    assert error(tbptt_sum) > 0.3


def test_pes_restarts_particles_and_perturbation_sums_at_the_horizon():
    estimator = persistent_es(
        loss, W0, window=1, horizon=2, num_particles=4, sigma=0.1, to_transform=aj.sgd
    )
    meta = jnp.array(0.05)
    state = estimator.init(meta, jax.random.PRNGKey(1))
    estimate = jax.jit(estimator.estimate)
    perturbations = []
    for _ in range(3):
        previous = state.perturbation_sums
        _, _, state = estimate(meta, state)
        perturbations.append(state.perturbation_sums - (previous if len(perturbations) < 2 else 0))
    # antithetic pairs, and after the restart xi holds only the new perturbation
    for eps in perturbations:
        np.testing.assert_allclose(eps[:2], -eps[2:], rtol=0, atol=0)
    np.testing.assert_array_equal(state.particles.step, 1)
    for i in range(4):  # the restarted particle took one step of SGD with its own rate
        rate = meta + perturbations[2][i]
        np.testing.assert_allclose(state.particles.params[i], W0 - rate * jax.grad(loss)(W0))


def test_pes_needs_an_even_number_of_particles():
    with pytest.raises(ValueError, match="even"):
        persistent_es(loss, W0, window=1, num_particles=3)
