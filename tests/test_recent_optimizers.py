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
from tests.test_against_optax import ATOL, FAST_COMPILE, INITIAL, RTOL, STEPS, Case, trajectory

assert STEPS >= 25

CASES = {
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
}


@pytest.fixture(scope="module")
def trajectories():
    """Both sides of every case, trained in one compiled program (compiling dominates)."""

    def run(ours):
        ours_history = {name: trajectory(tx) for name, tx in ours.items()}
        with jax.numpy_dtype_promotion("standard"):
            optax_history = {name: trajectory(case.theirs) for name, case in CASES.items()}
        return ours_history, optax_history

    ours = {name: case.ours for name, case in CASES.items()}
    compiled = jax.jit(run).lower(ours).compile(compiler_options=FAST_COMPILE)
    return jax.tree_util.tree_map(np.asarray, compiled(ours))


@pytest.mark.parametrize("name", sorted(CASES))
def test_recent_optimizer_matches_optax(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    for leaf in INITIAL:
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
    for leaf in INITIAL:
        assert np.max(np.abs(theirs[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf


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


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("adopt", lambda lr: aj.adopt(lr, b2=0.9), lambda lr: optax.contrib.adopt(lr, b2=0.9)),
    ],
)
def test_meta_gradient_finite_where_optax_is_nan(name, ours, theirs):
    learning_rate = jnp.asarray(0.01)
    ours_value, ours_gradient = jax.value_and_grad(zero_gradient_meta_loss(ours))(learning_rate)
    with jax.numpy_dtype_promotion("standard"):
        value, gradient = jax.value_and_grad(zero_gradient_meta_loss(theirs))(learning_rate)
    np.testing.assert_allclose(ours_value, value, rtol=1e-12)  # the same training run
    assert np.isnan(gradient), name
    h = 1e-6
    finite_difference = (
        zero_gradient_meta_loss(ours)(learning_rate + h)
        - zero_gradient_meta_loss(ours)(learning_rate - h)
    ) / (2 * h)
    np.testing.assert_allclose(ours_gradient, finite_difference, rtol=1e-6)
