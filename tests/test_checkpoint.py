"""Checkpoint and resume: optimizer state saved and restored exactly, training resumed bit for bit.

Two ways to save: orbax-checkpoint (a real checkpointing library) and plain NumPy
(``np.savez`` of the flattened leaves; the tree structure is rebuilt from
``jax.eval_shape(tx.init, params)``, so nothing but arrays is written).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS, VALUE

rng = np.random.default_rng(0)
FEATURES = jnp.asarray(rng.normal(size=(10, 8, 3)))  # 10 batches of 8 examples
TARGETS = jnp.asarray(rng.normal(size=(10, 8)))
PARAMS = {"w": jnp.array([0.1, -0.2, 0.3]), "b": jnp.asarray(0.0)}


def loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


gradient = jax.jit(jax.grad(loss))


@functools.cache
def train_step(tx, jit=True):
    def step(params, state, t):
        grads = gradient(params, FEATURES[t], TARGETS[t])
        # value= is the loss polyak_sgd needs (a stand-in); the others ignore it.
        updates, state = tx.update(grads, state, params, value=VALUE)
        return aj.apply_updates(params, updates), state

    return jax.jit(step) if jit else step


def train(tx, params, state, steps, jit=True):
    step = train_step(tx, jit)
    for t in steps:
        params, state = step(params, state, t)
    return params, state


def bits(tree):
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


def assert_bit_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert bits(a) == bits(b)


def save_numpy(path, tree):
    leaves = jax.tree_util.tree_leaves(tree)
    np.savez(path, *[np.asarray(x) for x in leaves])


def load_numpy(path, like):
    """Leaves from ``path``, rebuilt into the structure of ``like`` (arrays or shapes)."""
    with np.load(path) as saved:
        leaves = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    treedef = jax.tree_util.tree_structure(like)
    for leaf, reference in zip(leaves, jax.tree_util.tree_leaves(like)):
        assert leaf.shape == reference.shape and leaf.dtype == reference.dtype
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])


def catalog_tx(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    return factory(**kwargs)


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_resume_from_a_numpy_checkpoint_is_bit_identical(name, tmp_path):
    tx = catalog_tx(name)  # run eagerly: every optimizer of the catalog, compiled once per op
    uninterrupted = train(tx, PARAMS, tx.init(PARAMS), range(6), jit=False)

    params, state = train(tx, PARAMS, tx.init(PARAMS), range(3), jit=False)
    save_numpy(tmp_path / "params.npz", params)
    save_numpy(tmp_path / "state.npz", state)
    del params, state  # a fresh process knows only the shapes:
    params = load_numpy(tmp_path / "params.npz", jax.eval_shape(lambda: PARAMS))
    state = load_numpy(tmp_path / "state.npz", jax.eval_shape(tx.init, PARAMS))
    resumed = train(tx, params, state, range(3, 6), jit=False)

    assert_bit_identical(resumed, uninterrupted)


@pytest.mark.parametrize(
    "build",
    [
        lambda: aj.adam(0.05),
        lambda: aj.apply_if_finite(aj.adamw(aj.schedules.cosine_decay(0.05, 10)), 3),
    ],
    ids=["adam", "apply_if_finite-adamw-schedule"],
)
def test_resume_from_an_orbax_checkpoint_is_bit_identical(build, tmp_path):
    tx = build()
    uninterrupted = train(tx, PARAMS, tx.init(PARAMS), range(10))

    params, state = train(tx, PARAMS, tx.init(PARAMS), range(5))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "step5", {"params": params, "opt_state": state})
    checkpointer.wait_until_finished()
    target = {
        "params": jax.eval_shape(lambda: PARAMS),
        "opt_state": jax.eval_shape(tx.init, PARAMS),
    }
    restored = checkpointer.restore(tmp_path / "step5", target)
    checkpointer.close()

    assert_bit_identical(restored["opt_state"], state)
    resumed = train(tx, restored["params"], restored["opt_state"], range(5, 10))
    assert_bit_identical(resumed, uninterrupted)


def test_the_transformation_itself_checkpoints_like_state(tmp_path):
    # Hyperparameters are leaves: a meta-learned optimizer is saved with the same tools.
    tx = aj.adamw(0.05, b1=0.85, weight_decay=0.02)
    save_numpy(tmp_path / "tx.npz", tx)
    rebuilt = load_numpy(tmp_path / "tx.npz", jax.eval_shape(aj.adamw))
    assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(tx)
    np.testing.assert_array_equal(
        jax.tree_util.tree_leaves(rebuilt), np.asarray(jax.tree_util.tree_leaves(tx))
    )


def test_the_same_inputs_give_bit_identical_outputs():
    tx = aj.adamw(0.05)
    first = train(tx, PARAMS, tx.init(PARAMS), range(10))
    again = train(tx, PARAMS, tx.init(PARAMS), range(10))
    assert_bit_identical(again, first)
    train_step.cache_clear()  # a fresh compilation of the same program gives the same bits
    recompiled = train(tx, PARAMS, tx.init(PARAMS), range(10))
    assert_bit_identical(recompiled, first)
