"""Regressions from trying the library as a new user: each test failed before its fix.

Each compares with an independent computation: optax's own transformation, a hand
computation of the formula, or the plain ``tx.update`` path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

PARAMS = {"w": jnp.array([[0.3, -0.2], [0.1, 0.4]]), "b": jnp.array([0.05, -0.1])}


def loss(params):
    return jnp.sum(jnp.sin(params["w"]) ** 2) + jnp.sum((params["b"] - 0.5) ** 2)


def run(tx, losses, params=PARAMS):
    """Updates ``tx`` computes when each step's ``value=`` is the loss in ``losses``."""
    state = tx.init(params)
    out = []
    for value in losses:
        updates, state = tx.update(jax.grad(loss)(params), state, params, value=value)
        out.append(updates)
    return out


def test_chain_forwards_extra_arguments_to_an_optax_member_that_takes_them():
    """``optax.contrib.reduce_on_plateau`` needs ``value=``: aj.chain passes it on as optax.chain does."""
    losses = [jnp.asarray(v) for v in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)]  # a plateau
    plateau = dict(factor=0.5, patience=1, cooldown=0, accumulation_size=1)
    with jax.numpy_dtype_promotion("standard"):  # optax's internals mix weak types
        ours = run(aj.chain(aj.adam(1e-2), optax.contrib.reduce_on_plateau(**plateau)), losses)
        theirs = run(
            optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(**plateau)), losses
        )
    for a, b in zip(ours, theirs):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-12)
    # The plateau did lower the rate: the last update is smaller than the first.
    ratio = float(jnp.abs(ours[-1]["b"][0] / theirs[0]["b"][0]))
    assert ratio < 0.9


def test_extra_arguments_reach_a_member_nested_in_apply_if_finite():
    losses = [jnp.asarray(1.0)] * 4
    inner = optax.contrib.reduce_on_plateau(factor=0.5, patience=0, accumulation_size=1)
    with jax.numpy_dtype_promotion("standard"):
        ours = run(aj.apply_if_finite(aj.chain(aj.sgd(0.1), inner)), losses)
        theirs = run(optax.chain(optax.sgd(0.1), inner), losses)
    np.testing.assert_allclose(ours[-1]["w"], theirs[-1]["w"], rtol=1e-12)


def test_transforms_that_take_no_extra_arguments_ignore_them():
    (plain,) = run(aj.adam(1e-2), [jnp.asarray(3.0)])
    updates, _ = aj.adam(1e-2).update(jax.grad(loss)(PARAMS), aj.adam(1e-2).init(PARAMS), PARAMS)
    np.testing.assert_array_equal(plain["w"], updates["w"])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_accumulator_dtype_matches_optax(nesterov):
    ours = aj.sgd(0.1, momentum=0.9, nesterov=nesterov, accumulator_dtype=jnp.float32)
    theirs = optax.sgd(0.1, momentum=0.9, nesterov=nesterov, accumulator_dtype=jnp.float32)
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), PARAMS)
    ours_state, theirs_state = ours.init(params), theirs.init(params)
    assert ours_state.inner[0].trace["w"].dtype == jnp.float32
    for _ in range(5):
        grads = jax.grad(loss)(params)
        ours_updates, ours_state = ours.update(grads, ours_state, params)
        with jax.numpy_dtype_promotion("standard"):
            theirs_updates, theirs_state = theirs.update(grads, theirs_state, params)
        np.testing.assert_allclose(ours_updates["w"], theirs_updates["w"], rtol=1e-6)
        assert ours_updates["w"].dtype == theirs_updates["w"].dtype
        params = aj.apply_updates(params, ours_updates)


def adam_by_hand(gradients, learning_rate, b1, b2, eps):
    """Adam's formulas in NumPy for one leaf (Kingma & Ba 2015, Algorithm 1)."""
    m = v = 0.0
    updates = []
    for t, g in enumerate(gradients, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        updates.append(-learning_rate * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return np.array(updates)


def test_per_parameter_b1_and_b2_apply_to_their_leaves():
    tx = aj.adam(0.1, b1={"w": 0.9, "b": 0.5}, b2={"w": 0.99, "b": 0.8}, eps=1e-3)
    grads = [{"w": jnp.full((2, 2), g), "b": jnp.full((2,), -g)} for g in (1.0, 0.5, -0.25, 2.0)]
    state, params = tx.init(PARAMS), PARAMS
    updates = []
    for g in grads:
        u, state = tx.update(g, state, params)
        updates.append(u)
    w = np.array([u["w"][0, 0] for u in updates])
    b = np.array([u["b"][0] for u in updates])
    g = np.array([1.0, 0.5, -0.25, 2.0])
    np.testing.assert_allclose(w, adam_by_hand(g, 0.1, 0.9, 0.99, 1e-3), rtol=1e-12)
    np.testing.assert_allclose(b, adam_by_hand(-g, 0.1, 0.5, 0.8, 1e-3), rtol=1e-12)


def test_per_parameter_decay_meta_gradient_is_per_leaf_and_finite():
    tx = aj.adam(0.05, b1={"w": 0.9, "b": 0.8})

    def final_loss(tx):
        return loss(aj.meta.unroll(tx, PARAMS, loss, num_steps=5).params)

    grads = aj.meta.hypergradient(final_loss, tx)
    b1 = aj.get_hyperparameter(grads, "b1")
    assert set(b1) == {"w", "b"} and all(np.isfinite(float(v)) for v in b1.values())
    # Finite differences on the bias's b1 alone.
    step = 1e-6
    plus = final_loss(aj.set_hyperparameter(tx, "b1", {"w": 0.9, "b": 0.8 + step}))
    minus = final_loss(aj.set_hyperparameter(tx, "b1", {"w": 0.9, "b": 0.8 - step}))
    np.testing.assert_allclose(b1["b"], (plus - minus) / (2 * step), rtol=1e-5)
