r"""Every named optimizer matches its optax counterpart where the definitions coincide.

Both train a softmax regression with a temperature and an extra least-squares block,

.. math::
   L = \mathrm{CE}\big(s\,(X W + b),\ y\big) + \tfrac12 \|A v - c\|^2,

from the same start for 100 steps in float64, and every iterate must agree to
``rtol=1e-9``.  The four parameter leaves have different shapes (matrix, vector,
scalar, matrix).  Where the two libraries define an optimizer differently the
adaptive_jax side is the chain that reproduces optax's definition, e.g. optax's
Adagrad (epsilon under the root, accumulator starting at 0.1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

STEPS = 100
RTOL = 1e-9
ATOL = 1e-13

_rng = np.random.default_rng(3)
FEATURES = jnp.asarray(_rng.normal(size=(30, 4)))
CLASSES = jnp.asarray(_rng.integers(0, 3, size=30))
COUPLING = jnp.asarray(_rng.normal(size=(6, 2)))
OFFSETS = jnp.asarray(_rng.normal(size=(6, 3)))
INITIAL = {
    "W": jnp.asarray(0.5 * _rng.normal(size=(4, 3))),
    "b": jnp.asarray([0.3, -0.2, 0.1]),
    "s": jnp.asarray(1.5),
    "v": jnp.asarray(_rng.normal(size=(2, 3))),
}


def loss(p):
    logits = p["s"] * (FEATURES @ p["W"] + p["b"])
    cross_entropy = -jnp.mean(
        jnp.take_along_axis(jax.nn.log_softmax(logits), CLASSES[:, None], axis=1)
    )
    return cross_entropy + 0.5 * jnp.sum((COUPLING @ p["v"] - OFFSETS) ** 2)


def trajectory(tx):
    """Iterates 1..STEPS of any optax-protocol transformation on :func:`loss`."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, history = jax.lax.scan(step, (INITIAL, tx.init(INITIAL)), None, length=STEPS)
    return history


class Case(NamedTuple):
    ours: Any
    theirs: Any  # an optax GradientTransformation


LR = 0.01
CASES = {
    "sgd": Case(aj.sgd(0.05), optax.sgd(0.05)),
    "sgd_momentum": Case(aj.sgd(0.05, momentum=0.8), optax.sgd(0.05, momentum=0.8)),
    "sgd_nesterov": Case(
        aj.sgd(0.05, momentum=0.8, nesterov=True), optax.sgd(0.05, momentum=0.8, nesterov=True)
    ),
    "adam": Case(
        aj.adam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax.adam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    "adamw": Case(
        aj.adamw(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.2),
        optax.adamw(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.2),
    ),
    # optax's AMSGrad takes the maximum of the bias-corrected second moment: our default.
    "amsgrad": Case(
        aj.amsgrad(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax.amsgrad(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    "nadamw": Case(
        aj.nadamw(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.2),
        optax.nadamw(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.2),
    ),
    "adamaxw": Case(
        aj.adamaxw(LR, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.2),
        optax.adamaxw(LR, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.2),
    ),
    # optax's default puts eps under the root; eps_in_sqrt=False is torch's (and ours).
    "rmsprop": Case(
        aj.rmsprop(LR, decay=0.8, eps=0.05),
        optax.rmsprop(LR, decay=0.8, eps=0.05, eps_in_sqrt=False),
    ),
    "rmsprop_momentum": Case(
        aj.rmsprop(LR, decay=0.8, eps=0.05, momentum=0.7),
        optax.rmsprop(LR, decay=0.8, eps=0.05, eps_in_sqrt=False, momentum=0.7),
    ),
    "rmsprop_centered": Case(
        aj.rmsprop(LR, decay=0.8, eps=0.05, centered=True),
        optax.rmsprop(LR, decay=0.8, eps=0.05, eps_in_sqrt=False, centered=True),
    ),
    # optax's Adagrad: G_0 = 0.1 and eps under the root.
    "adagrad": Case(
        aj.chain(
            aj.scale_by_adagrad(eps=0.0, eps_root=1e-3, initial_accumulator_value=0.1),
            aj.scale_by_learning_rate(0.1),
        ),
        optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-3),
    ),
    "nadam": Case(
        aj.nadam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax.nadam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    "adamax": Case(
        aj.adamax(LR, b1=0.8, b2=0.95, eps=1e-3), optax.adamax(LR, b1=0.8, b2=0.95, eps=1e-3)
    ),
    "adabelief": Case(
        aj.adabelief(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax.adabelief(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    # With b2 = 0.95, rho_t first reaches 5 at t = 6: both branches are compared.
    "radam": Case(
        aj.radam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, threshold=5.0),
        optax.radam(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, threshold=5.0),
    ),
    "yogi": Case(aj.yogi(LR, b1=0.8, b2=0.95, eps=1e-3), optax.yogi(LR, b1=0.8, b2=0.95, eps=1e-3)),
    "lion": Case(
        aj.lion(0.003, b1=0.8, b2=0.95, weight_decay=0.1),
        optax.lion(0.003, b1=0.8, b2=0.95, weight_decay=0.1),
    ),
    "adadelta": Case(
        aj.adadelta(0.5, rho=0.8, eps=1e-4, weight_decay=0.05),
        optax.adadelta(0.5, rho=0.8, eps=1e-4, weight_decay=0.05),
    ),
    "lamb": Case(
        aj.lamb(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
        optax.lamb(LR, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "sign_descent": Case(aj.sign_descent(0.003), optax.sign_sgd(0.003)),
    # Signum's EMA and our trace differ by the factor 1 - momentum, which the sign removes.
    "sign_descent_momentum": Case(
        aj.sign_descent(0.003, momentum=0.8), optax.signum(0.003, beta=0.8)
    ),
    "normalized_gd": Case(
        aj.normalized_gd(LR, eps=1e-3),
        optax.chain(optax.normalize_by_update_norm(eps=1e-3), optax.scale_by_learning_rate(LR)),
    ),
    # W (4, 3) is factored at min_dim_size_to_factor=3; optax's decay is float64 only if
    # decay_rate is a float64 array (a Python float rounds it to float32).
    "adafactor": Case(
        aj.adafactor(LR, min_dim_size_to_factor=3, momentum=0.8, weight_decay_rate=0.01),
        optax.adafactor(
            LR,
            min_dim_size_to_factor=3,
            decay_rate=jnp.asarray(0.8, jnp.float64),
            momentum=0.8,
            weight_decay_rate=0.01,
        ),
    ),
}


@pytest.fixture(scope="module")
def trajectories():
    """Both sides of every case, trained in one compiled program (compiling dominates)."""

    def run(ours):
        ours_history = {name: trajectory(tx) for name, tx in ours.items()}
        # optax relies on standard dtype promotion; adaptive_jax is traced under strict.
        with jax.numpy_dtype_promotion("standard"):
            optax_history = {name: trajectory(case.theirs) for name, case in CASES.items()}
        return ours_history, optax_history

    ours = {name: case.ours for name, case in CASES.items()}
    compiled = jax.jit(run).lower(ours).compile()
    return jax.tree_util.tree_map(np.asarray, compiled(ours))


@pytest.mark.parametrize("name", sorted(CASES))
def test_named_optimizer_matches_optax(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    for leaf in INITIAL:
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
    # The comparison is only meaningful if the optimizer actually moved every leaf.
    for leaf in INITIAL:
        assert np.max(np.abs(theirs[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf
