r"""Claims about adaptive methods that are statements about a formula, each checked independently.

``notebooks/README.md`` ("The claims one by one") maps every claim to the notebook or the test
here that reproduces it.  Every test compares against a closed form, a few lines of NumPy
written from the formulas, or (for invariances) the same run on the transformed problem; never
against numbers recorded from adaptive_jax itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj

# The anisotropic quadratic L(x, y) = 1/2 (100 x^2 + y^2).
CURVATURES = jnp.array([100.0, 1.0])


def quadratic(params, scale=1.0):
    return 0.5 * scale * jnp.sum(CURVATURES * params**2)


def trajectory(tx, loss, initial_params, steps):
    """Iterates ``[theta_1, ..., theta_steps]`` of ``tx`` on ``loss``."""

    def train_step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, iterates = jax.lax.scan(
        train_step, (initial_params, tx.init(initial_params)), None, length=steps
    )
    return np.asarray(iterates)


def updates_for(tx, gradients):
    """The updates ``tx`` emits for a sequence of gradients (rows), and the stacked states."""
    params = jnp.zeros_like(gradients[0])

    def step(state, g):
        u, state = tx.update(g, state, params)
        return state, (u, state)

    _, (updates, states) = jax.lax.scan(step, tx.init(params), gradients)
    return np.asarray(updates), states


def random_gradients(steps, size, seed=0, spread=3.0):
    """Gradients whose magnitudes vary over ``exp(±spread)``, never exactly 0."""
    rng = np.random.default_rng(seed)
    magnitude = np.exp(rng.uniform(-spread, spread, (steps, size)))
    return jnp.asarray(rng.choice([-1.0, 1.0], (steps, size)) * magnitude)


def test_adam_with_zero_betas_is_sign_descent():
    r""":math:`\beta_1=\beta_2=0`: :math:`\hat m = g,\ \hat v = g^2`, so the step is
    :math:`-\alpha g/(|g|+\epsilon)` at every step, and :math:`-\alpha\,\mathrm{sign}(g)`
    as :math:`\epsilon \to 0`."""
    learning_rate, eps = 0.1, 1e-3
    gradients = random_gradients(12, 5)
    updates, _ = updates_for(aj.adam(learning_rate, b1=0.0, b2=0.0, eps=eps), gradients)
    g = np.asarray(gradients)
    np.testing.assert_allclose(updates, -learning_rate * g / (np.abs(g) + eps), rtol=1e-12)

    tiny_eps, _ = updates_for(aj.adam(learning_rate, b1=0.0, b2=0.0, eps=1e-14), gradients)
    sign_updates, _ = updates_for(aj.sign_descent(learning_rate), gradients)
    np.testing.assert_allclose(sign_updates, -learning_rate * np.sign(g), rtol=0)
    np.testing.assert_allclose(tiny_eps, sign_updates, rtol=1e-11)


@pytest.mark.parametrize("loss_scale", [1e-3, 7.0, 300.0])
def test_adam_is_invariant_to_scaling_the_loss(loss_scale):
    r"""Gradients scale by :math:`c`, :math:`\hat m` by :math:`c`, :math:`\sqrt{\hat v}` by
    :math:`|c|`: with :math:`\epsilon = 0` the iterates do not depend on :math:`c > 0`.
    Gradient descent's do: on this quadratic they are :math:`(1-\eta c a_i)^t\,\theta_0`."""
    start, steps = jnp.array([1.0, 1.0]), 40
    adam = aj.adam(0.05, eps=0.0)
    reference = trajectory(adam, quadratic, start, steps)
    scaled = trajectory(adam, lambda p: quadratic(p, loss_scale), start, steps)
    np.testing.assert_allclose(scaled, reference, rtol=1e-9, atol=1e-12)

    learning_rate = 1e-5
    sgd = trajectory(aj.sgd(learning_rate), lambda p: quadratic(p, loss_scale), start, steps)
    t = np.arange(1, steps + 1)[:, None]
    closed_form = (1 - learning_rate * loss_scale * np.asarray(CURVATURES)) ** t * np.asarray(start)
    np.testing.assert_allclose(sgd, closed_form, rtol=1e-10)


def test_adam_is_not_invariant_to_rotations():
    r"""Rotating the problem, :math:`L_R(y) = L(R^\top y)`, :math:`y_0 = R\theta_0`, rotates
    gradient descent's iterates (:math:`y_t = R\theta_t`) but not Adam's: its first step is
    :math:`-\alpha\,\mathrm{sign}(\nabla L)` in whatever basis the parameters are written."""
    angle = np.pi / 4
    rotation = jnp.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    start, steps = jnp.array([1.0, 1.0]), 30

    def rotated(y):
        return quadratic(rotation.T @ y)

    gd_plain = trajectory(aj.sgd(0.005), quadratic, start, steps)
    gd_rotated = trajectory(aj.sgd(0.005), rotated, rotation @ start, steps)
    np.testing.assert_allclose(gd_rotated, gd_plain @ np.asarray(rotation).T, atol=1e-12)

    learning_rate = 0.05
    adam_plain = trajectory(aj.adam(learning_rate, eps=1e-12), quadratic, start, steps)
    adam_rotated = trajectory(aj.adam(learning_rate, eps=1e-12), rotated, rotation @ start, steps)
    gradient = np.asarray(jax.grad(quadratic)(start))
    np.testing.assert_allclose(adam_plain[0], start - learning_rate * np.sign(gradient))
    np.testing.assert_allclose(
        adam_rotated[0],
        np.asarray(rotation @ start) - learning_rate * np.sign(np.asarray(rotation) @ gradient),
    )
    gap = np.linalg.norm(adam_rotated - adam_plain @ np.asarray(rotation).T, axis=1)
    assert gap[0] > 0.5 * learning_rate and gap.max() > 0.1


def numpy_ema(gradients, decay):
    """:math:`v_t = \\beta v_{t-1} + (1-\\beta) g_t^2`, :math:`v_0 = 0`, for every t."""
    v, out = np.zeros(gradients.shape[1]), []
    for g in np.asarray(gradients):
        v = decay * v + (1 - decay) * g**2
        out.append(v)
    return np.stack(out)


def test_amsgrad_denominator_never_decreases():
    r"""AMSGrad's effective denominator :math:`\sqrt{\max_{k\le t}\hat v_k} + \epsilon` never
    decreases; Adam's goes down as soon as gradients shrink.  With :math:`\beta_1 = 0` the
    denominator is :math:`-\alpha g/u`."""
    b2, eps, learning_rate = 0.9, 1e-8, 0.1
    gradients = random_gradients(60, 4, seed=1)
    g = np.asarray(gradients)
    v = numpy_ema(g, b2)
    t = np.arange(1, len(g) + 1)[:, None]

    # The default (optax's variant): the maximum of the bias-corrected v_hat.
    updates, _ = updates_for(aj.amsgrad(learning_rate, b1=0.0, b2=b2, eps=eps), gradients)
    denominator = -learning_rate * g / updates
    assert np.all(np.diff(denominator, axis=0) >= -1e-12 * denominator[1:])
    expected = np.sqrt(np.maximum.accumulate(v / (1 - b2**t))) + eps
    np.testing.assert_allclose(denominator, expected, rtol=1e-10)

    # Adam on the same gradients: its denominator does decrease.
    adam_updates, _ = updates_for(aj.adam(learning_rate, b1=0.0, b2=b2, eps=eps), gradients)
    adam_denominator = -learning_rate * g / adam_updates
    assert np.any(np.diff(adam_denominator, axis=0) < -0.1 * adam_denominator[1:])


def test_torch_amsgrad_keeps_the_raw_maximum_and_its_denominator_shrinks_with_the_correction():
    r"""``maximum_of="raw"`` (``torch.optim.Adam(amsgrad=True)``) stores :math:`\max_k v_k` and
    divides it by :math:`1-\beta_2^t` afterwards: with one large gradient followed by small
    ones the maximum stays put while :math:`1-\beta_2^t` grows, so the denominator shrinks."""
    b2, eps, learning_rate = 0.9, 1e-8, 0.1
    g = np.array([[10.0]] + [[0.1]] * 5)
    v = numpy_ema(g, b2)
    t = np.arange(1, len(g) + 1)[:, None]
    tx = aj.amsgrad(learning_rate, b1=0.0, b2=b2, eps=eps, maximum_of="raw")
    updates, states = updates_for(tx, jnp.asarray(g))
    (stored_max,) = [np.asarray(s.nu_max) for s in states.inner if hasattr(s, "nu_max")]
    np.testing.assert_allclose(stored_max, np.maximum.accumulate(v), rtol=1e-12)
    denominator = -learning_rate * g / updates
    np.testing.assert_allclose(denominator, np.sqrt(v[0] / (1 - b2**t)) + eps, rtol=1e-10)
    assert np.all(np.diff(denominator, axis=0) < 0)  # sqrt((1 - 0.9) / (1 - 0.81)): -27 %


# Reddi, Kale & Kumar (ICLR 2018), section 3: f_t(x) = C x if t mod 3 == 1 else -x on
# [-1, 1].  The average slope per cycle is (C - 2)/3 > 0, so the best point is x = -1.
# beta1 = 0, beta2 = 1/(1 + C^2), alpha_t = alpha/sqrt(t).  With C = 3, alpha = 0.5 and
# 1500 steps (500 cycles) both methods have settled: Adam at +1, AMSGrad at -1 (the
# last steps move x by at most alpha/sqrt(t) < 0.02).
REDDI_C, REDDI_ALPHA, REDDI_STEPS = 3.0, 0.5, 1500


def reddi_run(tx):
    def train_step(carry, t):
        x, state = carry
        gradient = jnp.where(t % 3 == 1, REDDI_C, -1.0)
        updates, state = tx.update(gradient, state, x)
        x = jnp.clip(aj.apply_updates(x, updates), -1.0, 1.0)  # projection onto [-1, 1]
        return (x, state), x

    x0 = jnp.asarray(0.0)
    _, xs = jax.lax.scan(train_step, (x0, tx.init(x0)), jnp.arange(1, REDDI_STEPS + 1))
    return np.asarray(xs)


def reddi_numpy(amsgrad, eps=1e-8):
    """The same experiment in plain NumPy (AMSGrad: max of the bias-corrected v)."""
    b2 = 1 / (1 + REDDI_C**2)
    x, v, v_hat_max, xs = 0.0, 0.0, 0.0, []
    for t in range(1, REDDI_STEPS + 1):
        g = REDDI_C if t % 3 == 1 else -1.0
        v = b2 * v + (1 - b2) * g**2
        v_hat_max = max(v_hat_max, v / (1 - b2**t))
        v_hat = v_hat_max if amsgrad else v / (1 - b2**t)
        x = float(np.clip(x - REDDI_ALPHA / np.sqrt(t) * g / (np.sqrt(v_hat) + eps), -1, 1))
        xs.append(x)
    return np.array(xs)


def test_reddi_online_problem_adam_ends_near_plus_one_amsgrad_near_minus_one():
    b2 = 1 / (1 + REDDI_C**2)
    schedule = aj.schedules.inverse_sqrt(REDDI_ALPHA)
    adam_xs = reddi_run(aj.adam(schedule, b1=0.0, b2=b2))
    amsgrad_xs = reddi_run(aj.amsgrad(schedule, b1=0.0, b2=b2))

    np.testing.assert_allclose(adam_xs, reddi_numpy(amsgrad=False), atol=1e-10)
    np.testing.assert_allclose(amsgrad_xs, reddi_numpy(amsgrad=True), atol=1e-10)
    last_cycles = slice(-300, None)
    assert adam_xs[last_cycles].min() > 0.95, "Adam should be stuck near the worst point +1"
    assert amsgrad_xs[last_cycles].max() < -0.95, "AMSGrad should reach the optimum -1"


def test_l2_and_decoupled_decay_coincide_for_sgd_once_rescaled():
    r"""Loshchilov & Hutter's decoupled step :math:`\theta \leftarrow (1-\lambda')\theta - \eta g`
    equals SGD on the L2-regularised loss with :math:`\lambda = \lambda'/\eta`.  (Our
    ``add_decoupled_weight_decay`` already multiplies by :math:`\eta`, as torch's AdamW, so
    in this library both chains take the same :math:`\lambda = \lambda'/\eta`.)"""
    learning_rate, decoupled_decay, steps = 0.01, 0.003, 25
    start = jnp.array([1.0, -2.0])
    weight_decay = decoupled_decay / learning_rate

    def gradient(theta):
        return np.asarray(CURVATURES) * theta

    theta, expected = np.asarray(start), []
    for _ in range(steps):
        theta = (1 - decoupled_decay) * theta - learning_rate * gradient(theta)
        expected.append(theta)

    l2 = aj.chain(aj.add_l2_regularization(weight_decay), aj.scale_by_learning_rate(learning_rate))
    decoupled = aj.chain(
        aj.add_decoupled_weight_decay(weight_decay), aj.scale_by_learning_rate(learning_rate)
    )
    np.testing.assert_allclose(trajectory(l2, quadratic, start, steps), expected, rtol=1e-12)
    np.testing.assert_allclose(trajectory(decoupled, quadratic, start, steps), expected, rtol=1e-12)


def test_l2_and_decoupled_decay_differ_for_adam():
    r"""First step, where :math:`\hat m = g',\ \hat v = g'^2`: L2 puts the decay inside the
    normalisation, :math:`-\eta\,\mathrm{sign}(g + \lambda\theta)`, so it has no effect on the
    step size; AdamW adds it outside, :math:`-\eta(\mathrm{sign}(g) + \lambda\theta)`."""
    learning_rate, weight_decay, eps = 0.1, 0.5, 1e-12
    theta = jnp.array([1.0, -3.0, 3.0])
    g = jnp.array([0.3, 0.2, -4.0])
    l2_adam = aj.chain(aj.add_l2_regularization(weight_decay), aj.adam(learning_rate, eps=eps))
    adamw = aj.adamw(learning_rate, eps=eps, weight_decay=weight_decay)

    l2_step, _ = l2_adam.update(g, l2_adam.init(theta), theta)
    adamw_step, _ = adamw.update(g, adamw.init(theta), theta)
    theta_np, g_np = np.asarray(theta), np.asarray(g)
    np.testing.assert_allclose(l2_step, -learning_rate * np.sign(g_np + weight_decay * theta_np))
    np.testing.assert_allclose(
        adamw_step, -learning_rate * (np.sign(g_np) + weight_decay * theta_np), rtol=1e-10
    )
    assert np.abs(np.asarray(l2_step) - np.asarray(adamw_step)).min() > 0.04

    steps = 20
    l2_path = trajectory(l2_adam, quadratic, jnp.array([1.0, 1.0]), steps)
    adamw_path = trajectory(adamw, quadratic, jnp.array([1.0, 1.0]), steps)
    assert np.abs(l2_path - adamw_path).max() > 0.1


def test_adagrad_rate_only_decays_while_rmsprop_recovers():
    r"""Effective rate :math:`\eta/(\sqrt{s_t}+\epsilon)` (the update divided by the gradient).
    Gradients of size 10 for 30 steps, then 0.1: Adagrad's sum :math:`G_t` only grows, so its
    rate only falls; RMSProp's EMA forgets the large gradients within a few
    :math:`1/(1-\rho)` steps and its rate returns to about :math:`\eta/0.1`."""
    learning_rate, decay, eps = 0.01, 0.9, 1e-8
    magnitudes = np.concatenate([np.full(30, 10.0), np.full(200, 0.1)])
    gradients = jnp.asarray(magnitudes[:, None] * np.array([1.0, -1.0]))
    g = np.asarray(gradients)

    adagrad_updates, _ = updates_for(aj.adagrad(learning_rate, eps=eps), gradients)
    adagrad_rate = -adagrad_updates / g
    expected = learning_rate / (np.sqrt(np.cumsum(g**2, axis=0)) + eps)
    np.testing.assert_allclose(adagrad_rate, expected, rtol=1e-12)
    assert np.all(np.diff(adagrad_rate, axis=0) <= 0)

    rmsprop_updates, _ = updates_for(aj.rmsprop(learning_rate, decay=decay, eps=eps), gradients)
    rmsprop_rate = -rmsprop_updates / g
    expected = learning_rate / (np.sqrt(numpy_ema(g, decay)) + eps)
    np.testing.assert_allclose(rmsprop_rate, expected, rtol=1e-12)
    rate_with_large_gradients = rmsprop_rate[29]
    assert np.all(rmsprop_rate[-1] > 90 * rate_with_large_gradients)
    np.testing.assert_allclose(rmsprop_rate[-1], learning_rate / 0.1, rtol=1e-3)
    assert np.all(adagrad_rate[-1] < adagrad_rate[29])


@pytest.mark.parametrize("eps, learning_rate", [(1e-3, 0.1), (1e-8, 1e-4)])
@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad"])
def test_eps_floors_the_denominator_when_the_squared_gradient_underflows_in_float16(
    name, eps, learning_rate
):
    r"""In float16 :math:`g = 10^{-5}` is representable but :math:`g^2 = 10^{-10}` is below the
    smallest subnormal (:math:`6\cdot10^{-8}`), so :math:`v = 0` and the denominator is
    :math:`\sqrt{0}+\epsilon`: the step is :math:`\eta g/\epsilon`, finite.  (The rates are
    chosen so that the rate and the step are normal float16 numbers, not subnormals.)"""
    g16 = jnp.full((3,), 1e-5, jnp.float16)
    assert np.all(np.asarray(g16 * g16) == 0) and np.all(np.asarray(g16) > 0)
    factories = {
        "adam": lambda: aj.adam(learning_rate, b1=0.5, b2=0.999, eps=eps),
        "rmsprop": lambda: aj.rmsprop(learning_rate, eps=eps),
        "adagrad": lambda: aj.adagrad(learning_rate, eps=eps),
    }
    tx = factories[name]()
    params = jnp.ones(3, jnp.float16)
    updates, state = tx.update(g16, tx.init(params), params)

    second_moments = [
        leaf
        for leaf in jax.tree_util.tree_leaves(state.inner)
        if jnp.result_type(leaf) == jnp.float16
    ]
    # The second moment (or Adagrad's sum) is stored in float16 and is exactly 0.
    assert any(np.all(np.asarray(leaf) == 0) for leaf in second_moments)
    assert updates.dtype == jnp.float16 and np.all(np.isfinite(np.asarray(updates)))
    g = np.float64(np.asarray(g16)[0])
    np.testing.assert_allclose(np.asarray(updates, np.float64), -learning_rate * g / eps, rtol=2e-3)


def adam_by_hand(gradients, learning_rate, b1, b2, eps):
    """Kingma & Ba's update, written out: m, v, their bias corrections and the step."""
    m = v = np.zeros(gradients.shape[1])
    steps = []
    for t, g in enumerate(np.asarray(gradients), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        steps.append(-learning_rate * m_hat / (np.sqrt(v_hat) + eps))
    return np.stack(steps)


@pytest.mark.parametrize("b1, b2", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.99, 0.999)])
def test_adam_is_kingma_and_ba_update_rule(b1, b2):
    r""":math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, :math:`v_t = \beta_2 v_{t-1} +
    (1-\beta_2) g_t^2`, :math:`\theta_t = \theta_{t-1} - \alpha\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)`,
    with :math:`\hat m_t = m_t/(1-\beta_1^t)` and :math:`\hat v_t = v_t/(1-\beta_2^t)`."""
    gradients = random_gradients(40, 6, seed=3)
    updates, _ = updates_for(aj.adam(0.01, b1=b1, b2=b2, eps=1e-6), gradients)
    np.testing.assert_allclose(updates, adam_by_hand(gradients, 0.01, b1, b2, 1e-6), rtol=1e-10)


def test_moving_averages_start_biased_towards_zero_by_one_minus_beta_to_the_t():
    r"""For a constant gradient :math:`g`, :math:`m_t = (1-\beta_1^t)\,g` and
    :math:`v_t = (1-\beta_2^t)\,g^2` exactly (the geometric series of the unrolled EMA); the
    bias-corrected :math:`\hat m_t, \hat v_t` are :math:`g, g^2` from the first step."""
    g, b1, b2 = np.array([0.3, -2.0, 5.0]), 0.9, 0.999
    _, states = updates_for(aj.adam(0.1, b1=b1, b2=b2), jnp.asarray(np.tile(g, (30, 1))))
    (m,) = [np.asarray(s.mu) for s in states.inner if hasattr(s, "mu")]
    (v,) = [np.asarray(s.nu) for s in states.inner if hasattr(s, "nu")]
    t = np.arange(1, 31)[:, None]
    np.testing.assert_allclose(m, (1 - b1**t) * g, rtol=1e-12)
    np.testing.assert_allclose(v, (1 - b2**t) * g**2, rtol=1e-12)
    np.testing.assert_allclose(m / (1 - b1**t), np.broadcast_to(g, m.shape), rtol=1e-12)
    np.testing.assert_allclose(v / (1 - b2**t), np.broadcast_to(g**2, v.shape), rtol=1e-12)


def test_bias_corrected_moments_are_discounted_averages_of_the_gradients():
    r"""The Bayesian reading of Adam's averages: :math:`\hat m_t` is the mean of :math:`g_1..g_t`
    weighted by :math:`\beta_1^{t-k}`, i.e. :math:`\arg\min_\mu \sum_k \beta_1^{t-k}(g_k-\mu)^2`,
    the posterior mean of a latent mean under a flat prior with Gaussian observations whose
    precision decays by :math:`\beta_1` per step (and the same for :math:`\hat v_t` and
    :math:`g^2`).  The normaliser :math:`\sum_{k\le t}\beta^{t-k} = (1-\beta^t)/(1-\beta)` is
    exactly the bias correction."""
    gradients = np.asarray(random_gradients(25, 4, seed=5))
    b1, b2 = 0.8, 0.95
    _, states = updates_for(aj.adam(0.1, b1=b1, b2=b2), jnp.asarray(gradients))
    (m,) = [np.asarray(s.mu) for s in states.inner if hasattr(s, "mu")]
    (v,) = [np.asarray(s.nu) for s in states.inner if hasattr(s, "nu")]
    for t in [1, 2, 10, 25]:
        weights1, weights2 = b1 ** np.arange(t)[::-1], b2 ** np.arange(t)[::-1]
        posterior_mean = weights1 @ gradients[:t] / weights1.sum()
        posterior_square = weights2 @ gradients[:t] ** 2 / weights2.sum()
        np.testing.assert_allclose(m[t - 1] / (1 - b1**t), posterior_mean, rtol=1e-10)
        np.testing.assert_allclose(v[t - 1] / (1 - b2**t), posterior_square, rtol=1e-10)


def test_adam_is_preconditioned_gradient_descent_and_a_mirror_step():
    r"""Adam's step is :math:`-\alpha G_t^{-1}\hat m_t` with the metric
    :math:`G_t = \mathrm{diag}(\sqrt{\hat v_t}+\epsilon)` read from its state; equivalently a
    mirror-descent step with the potential :math:`\psi_t(\theta) = \tfrac12\theta^\top G_t\theta`,
    :math:`\nabla\psi_t(\theta_{t+1}) = \nabla\psi_t(\theta_t) - \alpha\hat m_t` (a plain step in
    the dual coordinates, mapped back)."""
    learning_rate, b1, b2, eps = 0.05, 0.9, 0.99, 1e-3
    gradients = random_gradients(12, 5, seed=7)
    tx = aj.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    updates, states = updates_for(tx, gradients)
    (m,) = [np.asarray(s.mu) for s in states.inner if hasattr(s, "mu")]
    (v,) = [np.asarray(s.nu) for s in states.inner if hasattr(s, "nu")]
    t = np.asarray(states.count)[:, None]
    metric = np.sqrt(v / (1 - b2**t)) + eps
    m_hat = m / (1 - b1**t)
    np.testing.assert_allclose(updates, -learning_rate * m_hat / metric, rtol=1e-10)

    theta = np.random.default_rng(0).normal(size=(12, 5))
    for k in range(12):
        grad_psi = jax.grad(lambda x, k=k: 0.5 * jnp.sum(metric[k] * x**2))
        dual_after = np.asarray(grad_psi(jnp.asarray(theta[k] + updates[k])))
        dual_before = np.asarray(grad_psi(jnp.asarray(theta[k])))
        np.testing.assert_allclose(dual_after, dual_before - learning_rate * m_hat[k], rtol=1e-9)


@pytest.mark.parametrize("eps", [1e-8, 1e-4])
def test_constant_gradient_step_is_linear_below_eps_and_saturates_at_alpha_above(eps):
    r"""With a constant gradient :math:`g`, :math:`\hat m_t = g`, :math:`\hat v_t = g^2`, so every
    step is :math:`-\alpha g/(|g|+\epsilon)`: about :math:`\alpha|g|/\epsilon` (linear) for
    :math:`|g| \ll \epsilon`, about :math:`\alpha` whatever :math:`|g|` for :math:`|g| \gg \epsilon`:
    only the sign matters."""
    learning_rate = 0.01
    g = np.logspace(-12, 4, 33) * np.where(np.arange(33) % 2, 1.0, -1.0)
    updates, _ = updates_for(aj.adam(learning_rate, eps=eps), jnp.asarray(np.tile(g, (20, 1))))
    np.testing.assert_allclose(
        updates, np.broadcast_to(-learning_rate * g / (np.abs(g) + eps), updates.shape), rtol=1e-9
    )
    small, large = np.abs(g) < 1e-3 * eps, np.abs(g) > 1e3 * eps
    np.testing.assert_allclose(
        np.abs(updates[-1, small]), learning_rate * np.abs(g[small]) / eps, rtol=2e-3
    )
    np.testing.assert_allclose(np.abs(updates[-1, large]), learning_rate, rtol=2e-3)


def test_adam_step_is_bounded_whatever_the_gradients():
    r"""Cauchy–Schwarz on :math:`m_t = (1-\beta_1)\sum_k\beta_1^{t-k}g_k` against
    :math:`v_t = (1-\beta_2)\sum_k\beta_2^{t-k}g_k^2` gives, for :math:`\beta_1^2 < \beta_2`,
    :math:`|\hat m_t|/\sqrt{\hat v_t} \le B_t = \frac{1-\beta_1}{\sqrt{1-\beta_2}}
    \sqrt{\frac{1-r^t}{1-r}}\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}`, :math:`r = \beta_1^2/\beta_2`:
    a gradient a billion times larger than the others moves the parameter by at most
    :math:`\alpha B_t` (Kingma & Ba 2015, §2.1, bound the step in the same spirit).  The bound is
    attained by gradients :math:`g_k \propto (\beta_1/\beta_2)^{t-k}`."""
    learning_rate, b1, b2 = 0.1, 0.9, 0.999
    rng = np.random.default_rng(11)
    heavy = rng.standard_cauchy((300, 50)) * np.exp(rng.uniform(-10, 10, (300, 50)))
    updates, _ = updates_for(aj.adam(learning_rate, b1=b1, b2=b2, eps=0.0), jnp.asarray(heavy))
    t = np.arange(1, 301)[:, None]
    r = b1**2 / b2
    bound = (
        (1 - b1)
        / np.sqrt(1 - b2)
        * np.sqrt((1 - r**t) / (1 - r))
        * np.sqrt(1 - b2**t)
        / (1 - b1**t)
    )
    assert np.all(np.abs(updates) <= learning_rate * bound * (1 + 1e-12))

    horizon = 40  # the extremal sequence reaches the bound at step 40
    extremal = (b1 / b2) ** np.arange(horizon)[::-1]
    steps, _ = updates_for(
        aj.adam(learning_rate, b1=b1, b2=b2, eps=0.0), jnp.asarray(extremal[:, None])
    )
    np.testing.assert_allclose(abs(steps[-1, 0]), learning_rate * bound[horizon - 1, 0], rtol=1e-10)


def test_adagrad_with_eps_outside_or_inside_the_root():
    r"""Adagrad's :math:`\eta\,g_t/(\sqrt{G_t}+\epsilon)` (``aj.adagrad``) and the variant
    :math:`\eta\,g_t/\sqrt{G_t+\epsilon}` (``precondition(eps=0, eps_root=eps)``), both against
    the cumulative sum of squares."""
    rate, eps = 0.1, 1e-2
    gradients = random_gradients(30, 4, seed=13, spread=5.0)
    g = np.asarray(gradients)
    total = np.cumsum(g**2, axis=0)
    outside, _ = updates_for(aj.adagrad(rate, eps=eps), gradients)
    inside_tx = aj.chain(
        aj.accumulate_squares(),
        aj.precondition(eps=0.0, eps_root=eps),
        aj.scale_by_learning_rate(rate),
    )
    inside, _ = updates_for(inside_tx, gradients)
    np.testing.assert_allclose(outside, -rate * g / (np.sqrt(total) + eps), rtol=1e-12)
    np.testing.assert_allclose(inside, -rate * g / np.sqrt(total + eps), rtol=1e-12)


def test_adamw_shrinks_by_eta_lambda_theta_whatever_the_gradient_history():
    r"""AdamW's step is Adam's plus :math:`-\eta\lambda\theta_{t-1}`, exactly, whatever the
    scale of the gradients (so the shrinkage is not divided by :math:`\sqrt{\hat v_t}`); with L2
    the decay term goes through the normalisation."""
    rate, decay = 0.01, 0.3
    gradients = random_gradients(20, 6, seed=17, spread=6.0)
    params = jnp.asarray(np.random.default_rng(1).normal(size=6))

    def steps(tx):
        def step(state, g):
            u, state = tx.update(g, state, params)
            return state, u

        return np.asarray(jax.lax.scan(step, tx.init(params), gradients)[1])

    adamw, adam = steps(aj.adamw(rate, weight_decay=decay)), steps(aj.adam(rate))
    np.testing.assert_allclose(
        adamw - adam, np.broadcast_to(-rate * decay * np.asarray(params), adam.shape), rtol=1e-9
    )


def test_hypergradients_of_alpha_beta1_beta2_match_finite_differences():
    r"""The whole unrolled run is one differentiable function of Adam's :math:`\alpha,
    \beta_1, \beta_2` (they are pytree leaves): its derivative through 30 steps equals central
    finite differences of the same run."""
    x = jnp.asarray(np.random.default_rng(2).normal(size=(30, 8, 3)))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss(w, batch):
        xb, yb = batch
        return 0.5 * jnp.mean((xb @ w - yb) ** 2)

    @jax.jit
    def final_loss(h):
        run = aj.meta.unroll(aj.adam(**h), jnp.zeros(3), loss, (x, y))
        return loss(run.params, (x[-1], y[-1]))

    h = {"learning_rate": jnp.asarray(0.05), "b1": jnp.asarray(0.8), "b2": jnp.asarray(0.95)}
    grads = jax.jit(jax.grad(final_loss))(h)
    for name in h:
        step = 1e-6
        up = dict(h, **{name: h[name] + step})
        down = dict(h, **{name: h[name] - step})
        fd = (final_loss(up) - final_loss(down)) / (2 * step)
        np.testing.assert_allclose(float(grads[name]), float(fd), rtol=1e-5)
        assert abs(float(grads[name])) > 1e-4, name
