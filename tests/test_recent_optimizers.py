r"""The recent optimizers of ``optax.contrib`` against optax itself, in float64.

The problem, the start and the tolerances are those of ``tests/test_against_optax.py``
(softmax regression with a temperature plus a least-squares block: four leaves of
different shapes, 100 steps, every iterate compared at ``rtol=1e-9``).  Where optax's
meta-gradient is NaN and ours is finite, that is checked here too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import adaptive_jax as aj
from tests.test_against_optax import (
    ATOL,
    INITIAL,
    RTOL,
    STEPS,
    Case,
    loss,
    trajectory,
)

assert STEPS >= 25


def slow_decay_warmup(step):
    return 0.99 - 0.19 * 0.9 ** step.astype(jnp.float64)


def alpha_warmup(step):
    return 4.0 * jnp.minimum(step.astype(jnp.float64) / 50, 1.0)


def warmup(step):
    """optax's warmup_constant_schedule(0, 0.01, 10) in float64 (optax's computes in float32)."""
    return 0.01 * jnp.minimum(step.astype(jnp.float64) / 10, 1.0)


OPTAX_INSIDE = "schedule_free_optax_base"
CASES = {
    "ademamix": Case(
        aj.ademamix(
            0.01, b1=0.8, b2=0.95, b3=0.99, alpha=3.0, eps=1e-3, eps_root=1e-4, weight_decay=0.1
        ),
        optax.contrib.ademamix(
            0.01, b1=0.8, b2=0.95, b3=0.99, alpha=3.0, eps=1e-3, eps_root=1e-4, weight_decay=0.1
        ),
    ),
    # The paper's warm-ups: alpha from 0, b3 from b1 (schedules of the 0-based step, the
    # same functions on both sides: optax's own schedules compute in float32).
    "ademamix_scheduled": Case(
        aj.ademamix(0.01, b1=0.8, b2=0.95, b3=slow_decay_warmup, alpha=alpha_warmup, eps=1e-3),
        optax.contrib.ademamix(
            0.01, b1=0.8, b2=0.95, b3=slow_decay_warmup, alpha=alpha_warmup, eps=1e-3
        ),
    ),
    "adopt": Case(
        aj.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3),
        optax.contrib.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3),
    ),
    "adopt_nesterov": Case(
        aj.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3, nesterov=True),
        optax.contrib.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3, nesterov=True),
    ),
    "adopt_unclipped": Case(
        aj.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3, use_clipping=False),
        optax.contrib.adopt(0.01, b1=0.8, b2=0.95, eps=1e-3, use_clipping=False),
    ),
    "schedule_free_sgd": Case(
        aj.schedule_free_sgd(0.05, b1=0.8, weight_decay=0.05),
        optax.contrib.schedule_free_sgd(0.05, b1=0.8, weight_decay=0.05),
    ),
    "schedule_free_adamw": Case(
        aj.schedule_free_adamw(0.01, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.1),
        optax.contrib.schedule_free_adamw(0.01, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.1),
    ),
    "schedule_free_adamw_warmup": Case(
        aj.schedule_free_adamw(
            0.01, warmup_steps=10, b1=0.8, b2=0.95, eps=1e-3, weight_lr_power=1.5
        ),
        optax.contrib.schedule_free(
            optax.chain(
                optax.scale_by_rms(decay=0.95, eps=1e-3, eps_in_sqrt=False, bias_correction=True),
                optax.add_decayed_weights(0.0),
                optax.scale_by_learning_rate(warmup),
            ),
            warmup,
            b1=0.8,
            weight_lr_power=1.5,
        ),
    ),
    # An optax base optimizer inside our wrapper.
    OPTAX_INSIDE: Case(
        aj.schedule_free(optax.adam(0.01, b1=0.0, b2=0.95), 0.01, b1=0.8),
        optax.contrib.schedule_free(optax.adam(0.01, b1=0.0, b2=0.95), 0.01, b1=0.8),
    ),
    "prodigy": Case(
        aj.prodigy(0.5, betas=(0.8, 0.95), eps=1e-3, estim_lr0=1e-3, weight_decay=0.1),
        optax.contrib.prodigy(0.5, betas=(0.8, 0.95), eps=1e-3, estim_lr0=1e-3, weight_decay=0.1),
    ),
    # (With learning_rate=1 and estim_lr_coef=2 the run is chaotic: the two libraries'
    # rounding differences grow from 1e-16 to 1e-9 by step 100.)
    "prodigy_safeguard": Case(
        aj.prodigy(0.5, (0.8, 0.95), 0.9, estim_lr0=1e-3, estim_lr_coef=1.5, safeguard_warmup=True),
        optax.contrib.prodigy(
            0.5, (0.8, 0.95), 0.9, estim_lr0=1e-3, estim_lr_coef=1.5, safeguard_warmup=True
        ),
    ),
    "dadapt_adamw": Case(
        aj.dadapt_adamw(0.5, betas=(0.8, 0.95), eps=1e-3, estim_lr0=1e-3, weight_decay=0.1),
        optax.contrib.dadapt_adamw(
            0.5, betas=(0.8, 0.95), eps=1e-3, estim_lr0=1e-3, weight_decay=0.1
        ),
    ),
    "dog": Case(
        aj.dog(0.5, init_step=("heuristic", 1e-2), eps=1e-4),
        optax.contrib.dog(0.5, init_step=("heuristic", 1e-2), eps=1e-4),
    ),
    "dog_distance": Case(
        aj.dog(init_step=("distance", 1e-2), weight_decay=0.1),
        optax.contrib.dog(init_step=("distance", 1e-2), weight_decay=0.1),
    ),
    "dog_learning_rate": Case(
        aj.dog(init_step=("learning_rate", 1e-2)),
        optax.contrib.dog(init_step=("learning_rate", 1e-2)),
    ),
    # Newton-Schulz on W (4x3) and v (2x3), NAdamW on b and s.
    "muon": Case(
        aj.muon(0.01, beta=0.8, weight_decay=0.1, adam_b2=0.95, adam_weight_decay=0.05),
        optax.contrib.muon(0.01, beta=0.8, weight_decay=0.1, adam_b2=0.95, adam_weight_decay=0.05),
    ),
}


@pytest.fixture(scope="module")
def trajectories():
    """Both sides of every case, trained in one compiled program (compiling dominates)."""

    def run(ours):
        ours_history = {name: trajectory(tx) for name, tx in ours.items() if name != OPTAX_INSIDE}
        with jax.numpy_dtype_promotion("standard"):  # optax's base relies on it
            ours_history[OPTAX_INSIDE] = trajectory(ours[OPTAX_INSIDE])
        with jax.numpy_dtype_promotion("standard"):
            optax_history = {name: trajectory(case.theirs) for name, case in CASES.items()}
        return ours_history, optax_history

    ours = {name: case.ours for name, case in CASES.items()}
    compiled = jax.jit(run).lower(ours).compile()
    return jax.tree_util.tree_map(np.asarray, compiled(ours))


@pytest.mark.parametrize("name", sorted(CASES))
def test_recent_optimizer_matches_optax(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    for leaf in INITIAL:
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
    for leaf in INITIAL:
        assert np.max(np.abs(theirs[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf


def delayed_warmup(step):
    """0 at the first two 0-based steps, then rising linearly to 0.1 over 10."""
    return 0.1 * jnp.clip((step.astype(jnp.float64) - 1) / 10, 0.0, 1.0)


def test_weight_lr_power_meta_gradient_matches_finite_differences():
    def meta_loss(power):
        return zero_gradient_meta_loss(
            lambda lr: aj.schedule_free_sgd(lr, warmup_steps=5, b1=0.8, weight_lr_power=power)
        )(jnp.asarray(0.05))

    power = jnp.asarray(1.5)
    gradient = jax.grad(meta_loss)(power)
    h = 1e-5
    finite_difference = (meta_loss(power + h) - meta_loss(power - h)) / (2 * h)
    assert abs(gradient) > 1e-6  # the power matters during the warm-up
    np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6)


def zero_gradient_meta_loss(make):
    """Loss after 10 steps from ``(0.1, 0)`` on :math:`(w_0-1)^2 + w_0 w_1^2`, as a
    function of the learning rate: :math:`w_1`'s gradient is exactly 0 at every step."""

    def meta_loss(learning_rate):
        tx = make(learning_rate)

        def loss(w):
            return (w[0] - 1) ** 2 + w[0] * w[1] ** 2

        def step(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        w = jnp.array([0.1, 0.0])
        (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), None, length=10)
        return loss(w)

    return meta_loss


def test_schedule_free_eval_params_matches_optax(trajectories):
    for name in ("schedule_free_sgd", "schedule_free_adamw"):
        ours, theirs = CASES[name]
        params = jax.tree_util.tree_map(lambda h: jnp.asarray(h[-1]), trajectories[0][name])
        grads = jax.tree_util.tree_map(jnp.cos, params)
        our_state = ours.update(grads, ours.init(INITIAL), INITIAL)[1]
        with jax.numpy_dtype_promotion("standard"):
            their_state = theirs.update(grads, theirs.init(INITIAL), INITIAL)[1]
            expected = optax.contrib.schedule_free_eval_params(their_state, params)
        got = aj.schedule_free_eval_params(our_state, params)
        for leaf in INITIAL:
            np.testing.assert_allclose(got[leaf], expected[leaf], rtol=1e-12, err_msg=leaf)
            assert np.max(np.abs(got[leaf] - params[leaf])) > 1e-6  # x differs from y


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("adopt", lambda lr: aj.adopt(lr, b2=0.9), lambda lr: optax.contrib.adopt(lr, b2=0.9)),
        # The zero-gradient parameter's sqrt(v) at v = 0.
        (
            "prodigy",
            lambda lr: aj.prodigy(lr, estim_lr0=1e-2),
            lambda lr: optax.contrib.prodigy(lr, estim_lr0=1e-2),
        ),
        (
            "dadapt_adamw",
            lambda lr: aj.dadapt_adamw(lr, estim_lr0=1e-2),
            lambda lr: optax.contrib.dadapt_adamw(lr, estim_lr0=1e-2),
        ),
        # The zero-gradient parameter's cube root of G = 0.
        (
            "madgrad",
            lambda lr: aj.madgrad(lr, eps=1e-3),
            lambda lr: optax.contrib.madgrad(lr, eps=1e-3),
        ),
        # A schedule that is 0 at the first step: optax's weight 0 ** r has derivative
        # 0 * log 0 = NaN in r (here the hyperparameter varied is weight_lr_power).
        (
            "schedule_free",
            lambda r: aj.schedule_free(aj.sgd(delayed_warmup), delayed_warmup, 0.9, 2 + 100 * r),
            lambda r: optax.contrib.schedule_free(
                optax.sgd(delayed_warmup), delayed_warmup, 0.9, 2 + 100 * r
            ),
        ),
    ],
)
def test_meta_gradient_finite_where_optax_is_nan(name, ours, theirs):
    learning_rate = jnp.asarray(0.01)
    ours_value, ours_gradient = jax.value_and_grad(zero_gradient_meta_loss(ours))(learning_rate)
    with jax.numpy_dtype_promotion("standard"):
        value, gradient = jax.value_and_grad(zero_gradient_meta_loss(theirs))(learning_rate)
    # The same training run (optax's MADGRAD rounds sqrt(t) to float32).
    np.testing.assert_allclose(ours_value, value, rtol=1e-6 if name == "madgrad" else 1e-12)
    assert np.isnan(gradient), name
    h = 1e-6
    finite_difference = (
        zero_gradient_meta_loss(ours)(learning_rate + h)
        - zero_gradient_meta_loss(ours)(learning_rate - h)
    ) / (2 * h)
    np.testing.assert_allclose(ours_gradient, finite_difference, rtol=1e-6)


def madgrad_by_hand(learning_rate, momentum, weight_decay, eps, steps):
    """Algorithm 1 of Defazio & Jelassi (2022) in NumPy float64, with coupled decay."""
    gradient = jax.jit(jax.grad(loss))
    x0 = {k: np.asarray(v) for k, v in INITIAL.items()}
    x = dict(x0)
    grad_sum_sq = {k: np.zeros_like(v) for k, v in x0.items()}
    s = {k: np.zeros_like(v) for k, v in x0.items()}
    history = []
    for t in range(1, steps + 1):
        g = {k: np.asarray(v) + weight_decay * x[k] for k, v in gradient(x).items()}
        weight = (learning_rate + eps) * np.sqrt(t)
        new_x = {}
        for k in x:
            grad_sum_sq[k] = grad_sum_sq[k] + weight * g[k] ** 2
            s[k] = s[k] + weight * g[k]
            z = x0[k] - s[k] / (np.cbrt(grad_sum_sq[k]) + eps)
            new_x[k] = (1 - momentum) * z + momentum * x[k]
        x = new_x
        history.append(x)
    return {k: np.stack([h[k] for h in history]) for k in x0}


def test_madgrad_matches_the_papers_algorithm_and_optax():
    settings = dict(learning_rate=0.05, momentum=0.8, weight_decay=0.05, eps=1e-4)
    ours = jax.tree_util.tree_map(np.asarray, jax.jit(lambda: trajectory(aj.madgrad(**settings)))())
    expected = madgrad_by_hand(**settings, steps=STEPS)
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(lambda: trajectory(optax.contrib.madgrad(**settings)))()
    for leaf in INITIAL:
        np.testing.assert_allclose(ours[leaf], expected[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
        assert np.max(np.abs(ours[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf
        # optax computes sqrt(t) in float32: agreement to its rounding only.
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=1e-6, atol=1e-8, err_msg=leaf)


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: aj.dog(lr, eps=1e-3, weight_decay=0.01),
        lambda lr: aj.prodigy(lr, beta3=0.9, eps=1e-3, estim_lr0=1e-2, weight_decay=0.01),
        lambda lr: aj.dadapt_adamw(lr, eps=1e-3, estim_lr0=1e-2, weight_decay=0.01),
    ],
    ids=["dog", "prodigy", "dadapt_adamw"],
)
def test_learning_rate_free_meta_gradient_matches_a_central_difference(make):
    # The catalog's settings on tests/test_differentiability.py's problem (a coordinate
    # with zero gradient), with a step h small enough not to cross a switch of the
    # running maximum (its suite's stencil, +-2e-4, does).
    from tests.test_differentiability import unrolled_loss

    def meta_loss(learning_rate):
        return unrolled_loss(make(learning_rate))

    learning_rate = jnp.asarray(1.0)
    gradient = jax.grad(meta_loss)(learning_rate)
    h = 1e-6
    difference = (meta_loss(learning_rate + h) - meta_loss(learning_rate - h)) / (2 * h)
    assert np.isfinite(gradient) and abs(gradient) > 1e-6
    np.testing.assert_allclose(gradient, difference, rtol=1e-5)


@pytest.mark.parametrize("nesterov", [True, False])
def test_scale_by_muon_matches_optax_on_the_matrices(nesterov):
    from optax.contrib._muon import scale_by_shape

    matrices = {"W": INITIAL["W"], "v": INITIAL["v"]}

    def numbers(_):
        return jax.tree_util.tree_map(lambda _: optax.contrib.MuonDimensionNumbers(), matrices)

    ours = aj.chain(aj.scale_by_muon(beta=0.8, nesterov=nesterov), aj.scale_by_learning_rate(0.01))
    theirs = optax.chain(
        optax.contrib.scale_by_muon(beta=0.8, nesterov=nesterov, weight_dimension_numbers=numbers),
        scale_by_shape(weight_dimension_numbers=numbers),
        optax.scale_by_learning_rate(0.01),
    )

    def gradient(params):
        return {k: v for k, v in jax.grad(loss)(dict(INITIAL, **params)).items() if k in params}

    def run(tx):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(gradient(params), state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params

        return jax.lax.scan(step, (matrices, tx.init(matrices)), None, length=30)[1]

    got = jax.jit(lambda: run(ours))()
    with jax.numpy_dtype_promotion("standard"):
        expected = jax.jit(lambda: run(theirs))()
    for leaf in matrices:
        np.testing.assert_allclose(got[leaf], expected[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
        assert np.max(np.abs(got[leaf][-1] - matrices[leaf])) > 1e-3, leaf


MUON_HYPERPARAMETERS = ("learning_rate", "beta", "weight_decay", "adam_b1", "adam_weight_decay")


def muon_meta_loss(values):
    """Loss after 6 muon steps on a matrix, a vector and a matrix whose gradient is 0."""
    tx = aj.muon(
        values["learning_rate"],
        beta=values["beta"],
        weight_decay=values["weight_decay"],
        adam_b1=values["adam_b1"],
        adam_weight_decay=values["adam_weight_decay"],
        adam_learning_rate=0.05,
    )
    target = jnp.arange(12.0).reshape(4, 3) / 10

    def loss(params):
        return jnp.sum((params["w"] - target) ** 2) + jnp.sum((params["b"] - 0.5) ** 2)

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    params = {"w": jnp.eye(4, 3), "b": jnp.zeros(3), "dormant": jnp.ones((3, 2))}
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=6)
    return loss(params) + jnp.sum(params["dormant"] ** 2)


def test_muon_meta_gradients_match_finite_differences_forward_and_reverse():
    """Every numeric hyperparameter of muon, through Newton-Schulz on the matrices.

    ``dormant`` is a matrix whose gradient is exactly 0 at every step: its momentum stays
    0 and is orthogonalised as a zero matrix, where the derivative must stay finite.
    """
    values = {
        "learning_rate": jnp.asarray(0.02),
        "beta": jnp.asarray(0.9),
        "weight_decay": jnp.asarray(0.1),
        "adam_b1": jnp.asarray(0.8),
        "adam_weight_decay": jnp.asarray(0.05),
    }
    reverse = jax.grad(muon_meta_loss)(values)
    for name in MUON_HYPERPARAMETERS:
        direction = {k: jnp.asarray(float(k == name)) for k in values}
        _, forward = jax.jvp(muon_meta_loss, (values,), (direction,))
        h = 1e-6
        plus = {k: v + h * direction[k] for k, v in values.items()}
        minus = {k: v - h * direction[k] for k, v in values.items()}
        finite_difference = (muon_meta_loss(plus) - muon_meta_loss(minus)) / (2 * h)
        assert jnp.isfinite(reverse[name]), name
        np.testing.assert_allclose(forward, reverse[name], rtol=1e-9, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(
            reverse[name], finite_difference, rtol=1e-5, atol=1e-9, err_msg=name
        )
