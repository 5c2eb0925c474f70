"""The meta-training loop and truncated backpropagation windows.

Meta-losses are SGD runs on a 1-D quadratic :math:`f(w) = h (w - c)^2 / 2`, where
:math:`w_T - c = (1 - \\alpha h)^T (w_0 - c)`: the optimal learning rate is :math:`1/h`, the
meta-gradient is available in closed form and explodes once :math:`|1 - \\alpha h| > 1`.
"""

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax.meta import (
    MetaGradientExplosionWarning,
    meta_train,
    truncated_backprop,
    unroll,
)

CURVATURE, CENTRE, HORIZON = 2.0, 3.0, 10


def quadratic(w):
    return 0.5 * CURVATURE * jnp.sum((w - CENTRE) ** 2)


def final_loss(tx, num_steps=HORIZON):
    return quadratic(unroll(tx, jnp.zeros(1), quadratic, num_steps=num_steps).params)


def closed_form_final_loss(rate, num_steps=HORIZON):
    return 0.5 * CURVATURE * ((1 - rate * CURVATURE) ** num_steps * CENTRE) ** 2


def test_meta_train_finds_the_optimal_learning_rate_and_records_its_history():
    one_step_loss = lambda tx: final_loss(tx, num_steps=1)  # noqa: E731
    result = meta_train(
        one_step_loss, aj.sgd(0.1), aj.adam(0.02), 80, reparameterize=False, progress=False
    )
    rates = result.history.hyperparameters.transforms[0].learning_rate
    losses = result.history.meta_losses
    assert rates.shape == losses.shape == result.history.meta_grad_norms.shape == (80,)
    assert rates[0] == 0.1
    # row k is evaluated at the rate of iteration k: check it against the closed form
    np.testing.assert_allclose(losses, closed_form_final_loss(rates, 1), rtol=1e-10)
    closed_form_gradient = jax.vmap(jax.grad(closed_form_final_loss), (0, None))(
        jnp.asarray(rates), 1
    )
    np.testing.assert_allclose(
        result.history.meta_grad_norms, jnp.abs(closed_form_gradient), rtol=1e-8
    )
    assert losses[-1] < 1e-4 * losses[0]
    final_rate = result.meta_params.transforms[0].learning_rate
    assert float(final_rate) == pytest.approx(1 / CURVATURE, abs=5e-3)


def test_iterations_per_call_does_not_change_the_numbers():
    one = meta_train(final_loss, aj.sgd(0.1), aj.adam(0.02), 12, progress=False)
    chunked = meta_train(
        final_loss, aj.sgd(0.1), aj.adam(0.02), 12, progress=False, iterations_per_call=5
    )
    np.testing.assert_array_equal(chunked.history.rejected, one.history.rejected)
    np.testing.assert_allclose(chunked.history.meta_losses, one.history.meta_losses, rtol=1e-12)
    np.testing.assert_allclose(
        chunked.meta_params.transforms[0].learning_rate,
        one.meta_params.transforms[0].learning_rate,
        rtol=1e-12,
    )


def test_an_exploding_meta_gradient_is_rolled_back_and_the_step_shrinks():
    # Gradient ascent on the meta-loss drives the rate past the stability limit 2/h = 1, where
    # the meta-gradient h^2 T c^2 |1 - alpha h|^(2T - 1) grows exponentially with T.
    long_loss = lambda tx: final_loss(tx, num_steps=40)  # noqa: E731
    with pytest.warns(MetaGradientExplosionWarning, match="rolled back at iteration") as caught:
        result = meta_train(
            long_loss, aj.sgd(0.99), aj.sgd(-1e-4), 30, reparameterize=False, progress=False
        )
    assert len([w for w in caught if w.category is MetaGradientExplosionWarning]) == 1
    history = result.history
    rates = history.hyperparameters.transforms[0].learning_rate
    first = int(np.argmax(history.rejected))
    assert history.rejected.any() and rates[first] > 2 / CURVATURE  # rejected outside
    # after a roll-back: the next iterate is the best one so far, with half the step
    accepted_losses = history.meta_losses[: first + 1][~history.rejected[: first + 1]]
    best_before = rates[: first + 1][~history.rejected[: first + 1]][np.argmin(accepted_losses)]
    assert rates[first + 1] == best_before
    assert history.step_scales[first + 1] == 0.5 * history.step_scales[first]
    assert np.all(np.isfinite(result.meta_params.transforms[0].learning_rate))


@pytest.mark.parametrize("outer", [aj.adam(3.0), aj.sgd(10.0)], ids=["adam(3)", "sgd(10)"])
def test_a_too_large_outer_step_ends_at_the_best_meta_parameters_not_at_nan(outer):
    """The outer steps that used to end at a meta-loss of 1.6e7 (adam(3.0)) or NaN (sgd(10))."""
    long_loss = lambda tx: final_loss(tx, num_steps=20)  # noqa: E731
    with warnings.catch_warnings():  # a roll-back may be announced: it is what we test
        warnings.simplefilter("ignore", MetaGradientExplosionWarning)
        result = meta_train(long_loss, aj.sgd(0.1), outer, 40, progress=False)
    losses = result.history.meta_losses
    assert np.isfinite(result.best_meta_loss)
    assert result.best_meta_loss == np.min(losses[np.isfinite(losses)])
    best_rate = float(aj.get_hyperparameter(result.best_meta_params, "learning_rate"))
    np.testing.assert_allclose(
        closed_form_final_loss(best_rate, 20), result.best_meta_loss, rtol=1e-9, atol=1e-30
    )
    assert result.best_meta_loss <= losses[0]
    final_rate = float(aj.get_hyperparameter(result.meta_params, "learning_rate"))
    assert np.isfinite(final_rate) and np.isfinite(closed_form_final_loss(final_rate, 20))


def test_only_the_named_hyperparameters_are_learned():
    tx = aj.sgd(0.05, momentum=0.3)
    result = meta_train(final_loss, tx, num_iterations=20, learn=["momentum"], progress=False)
    final = result.meta_params
    assert aj.get_hyperparameter(final, "learning_rate") == 0.05  # frozen, the very value
    assert float(aj.get_hyperparameter(final, "momentum")) != 0.3
    assert result.best_meta_loss < result.history.meta_losses[0]


def test_a_raw_step_that_leaves_the_range_is_rejected():
    """Without reparameterisation a big step would make the momentum >= 1: it is refused."""
    tx = aj.sgd(0.05, momentum=0.95)
    result = meta_train(
        final_loss, tx, aj.sgd(-5.0), 5, learn=["momentum"], reparameterize=False, progress=False
    )
    momenta = result.history.hyperparameters.transforms[0].decay
    assert result.history.rejected.all()
    assert np.all((momenta >= 0) & (momenta < 1))
    assert float(aj.get_hyperparameter(result.meta_params, "momentum")) == pytest.approx(0.95)


def test_learning_in_unconstrained_coordinates_keeps_every_iterate_valid():
    tx = aj.sgd(0.05, momentum=0.5)
    result = meta_train(final_loss, tx, aj.sgd(50.0), 10, progress=False)  # wild steps
    momenta = result.history.hyperparameters.transforms[0].decay
    assert np.all((momenta > 0) & (momenta < 1))
    rates = result.history.hyperparameters.transforms[1].learning_rate
    assert np.all(rates > 0)


def test_learn_names_a_missing_hyperparameter():
    with pytest.raises(aj.HyperparameterLookupError, match="beta1"):
        meta_train(final_loss, aj.adam(1e-2), num_iterations=1, learn=["beta1"], progress=False)


def two_hyperparameter_loss(meta):
    tx = aj.sgd(meta["learning_rate"], meta["momentum"])
    return quadratic(unroll(tx, jnp.zeros(1), quadratic, num_steps=HORIZON).params)


def test_clipping_bounds_the_meta_gradient_step():
    clip = 0.05
    meta = {"learning_rate": jnp.array(0.05), "momentum": jnp.array(0.3)}
    # with SGD(1) as outer optimizer the step is minus the clipped meta-gradient
    result = meta_train(
        two_hyperparameter_loss, meta, aj.sgd(1.0), 8, clip_norm=clip, progress=False
    )
    assert not result.history.rejected.any()
    history = result.history.hyperparameters
    trajectory = np.stack([history["learning_rate"], history["momentum"]], axis=1)
    final = np.array([result.meta_params["learning_rate"], result.meta_params["momentum"]])
    steps = np.diff(np.vstack([trajectory, final]), axis=0)
    norms = result.history.meta_grad_norms
    assert norms.max() > clip  # clipping was active
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), np.minimum(norms, clip), rtol=1e-10)
    raw_gradient = jax.jit(jax.grad(two_hyperparameter_loss))
    for k in range(len(norms)):  # same direction as the raw gradient
        raw = raw_gradient({"learning_rate": trajectory[k, 0], "momentum": trajectory[k, 1]})
        raw = np.array([raw["learning_rate"], raw["momentum"]])
        np.testing.assert_allclose(
            -steps[k] / np.linalg.norm(steps[k]), raw / np.linalg.norm(raw), rtol=1e-8
        )


def test_progress_falls_back_to_a_stderr_line_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    meta_train(final_loss, aj.sgd(0.1), aj.adam(0.02), 3, progress=True)
    assert "meta-train 3/3" in capsys.readouterr().err


def test_truncated_windows_follow_the_closed_form_and_restart_at_the_horizon():
    """K=1 windows on f(w) = h (w - x_t)^2 / 2 with a data stream x_t: the window objective is
    the loss after the step, differentiated with the window's start held fixed."""
    targets = jnp.array([1.0, -2.0, 0.5, 4.0])

    def stream_loss(w, x):
        return 0.5 * CURVATURE * jnp.sum((w - x) ** 2)

    estimator = truncated_backprop(
        stream_loss,
        jnp.zeros(1),
        targets,
        window=1,
        horizon=2,
        objective=lambda r: stream_loss(r.params, targets[0]),
    )
    rate = 0.1
    tx = aj.sgd(rate)
    state = estimator.init(tx)
    estimate = jax.jit(estimator.estimate)
    w = 0.0
    for t in range(5):
        if t % 2 == 0:
            w = 0.0  # restart every horizon = 2 steps, and the data restarts with it
        x = float(targets[t % 2])
        gradient = CURVATURE * (w - x)
        w_next = w - rate * gradient
        expected_value = 0.5 * CURVATURE * (w_next - float(targets[0])) ** 2
        # d/d rate of f0(w - rate * gradient) with w fixed
        expected_grad = CURVATURE * (w_next - float(targets[0])) * -gradient
        value, grads, state = estimate(tx, state)
        assert float(value) == pytest.approx(expected_value, rel=1e-12)
        assert float(grads.transforms[0].learning_rate) == pytest.approx(expected_grad, rel=1e-12)
        np.testing.assert_allclose(state.params, [w_next], rtol=1e-12)
        w = w_next


def test_a_single_window_spanning_the_horizon_is_the_exact_meta_gradient():
    estimator = truncated_backprop(quadratic, jnp.zeros(1), window=HORIZON, horizon=HORIZON)
    tx = aj.sgd(0.1, momentum=0.5)
    _, grads, _ = estimator.estimate(tx, estimator.init(tx))

    def mean_training_loss(tx):
        return jnp.mean(unroll(tx, jnp.zeros(1), quadratic, num_steps=HORIZON).losses)

    exact = jax.grad(mean_training_loss)(tx)
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(exact)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_window_must_divide_the_horizon():
    with pytest.raises(ValueError, match="multiple of window"):
        truncated_backprop(quadratic, jnp.zeros(1), window=3, horizon=10)
