r"""The claims the seed documents make about adaptive methods, each checked independently.

Every test compares against a closed form, a few lines of NumPy written from the seeds'
formulas, or (for invariances) the same run on the transformed problem; never against
numbers recorded from adaptive_jax itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax._src.transforms.moments.corrections import AmsgradMax

# The seeds' anisotropic quadratic L(x, y) = 1/2 (100 x^2 + y^2).
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
    position = [isinstance(member, AmsgradMax) for member in tx.transforms].index(True)
    updates, states = updates_for(tx, jnp.asarray(g))
    stored_max = np.asarray(states.inner[position].nu_max)
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
