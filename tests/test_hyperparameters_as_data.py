"""Hyperparameters are data: transformations are pytrees whose numbers are leaves.

So ``jax.grad`` of a meta-loss returns a transformation-shaped tree of hypergradients,
``jax.vmap`` over a batch of transformations runs one program, a jitted step taking the
transformation as an argument never recompiles for new numbers, and an adaptive_jax
transformation interoperates with optax and flax in both directions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import adaptive_jax as aj

# A small least-squares problem with two parameter leaves.
INPUTS = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7], [2.0, 1.0]])
TARGETS = jnp.array([[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, -0.5, 1.0], [1.0, 1.0, 1.0]])
PARAMS = {"w": jnp.array([[0.1, -0.2, 0.3], [0.0, 0.2, -0.1]]), "b": jnp.array([0.1, 0.0, -0.1])}
STEPS = 10


def loss(params):
    return jnp.mean((INPUTS @ params["w"] + params["b"] - TARGETS) ** 2)


def train(tx, steps=STEPS):
    """Final parameters after ``steps`` updates of ``tx`` (unrolled with ``lax.scan``)."""

    def train_step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (aj.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(train_step, (PARAMS, tx.init(PARAMS)), None, length=steps)
    return params


def meta_loss(tx):
    return loss(train(tx))


jitted_meta_loss = jax.jit(meta_loss)
jitted_hypergradient = jax.jit(jax.grad(meta_loss))


def scheduled_adamw(learning_rate=None):
    if learning_rate is None:
        learning_rate = aj.schedules.exponential_decay(0.05, 0.9)
    return aj.adamw(learning_rate, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.1)


@functools.cache
def scheduled_adamw_hypergradient():
    return jitted_hypergradient(scheduled_adamw())


def replace_leaf(tree, index, value):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves[index] = value
    return jax.tree_util.tree_unflatten(treedef, leaves)


def test_hypergradient_is_a_tree_shaped_like_the_transformation():
    tx = scheduled_adamw()
    hypergradient = scheduled_adamw_hypergradient()
    assert jax.tree_util.tree_structure(hypergradient) == jax.tree_util.tree_structure(tx)
    # Every leaf, the schedule's init_value and decay_rate included, is d meta_loss / d leaf:
    # compare with central differences (each a call of the same compiled meta-loss).
    paths_and_values = jax.tree_util.tree_flatten_with_path(tx)[0]
    assert len(paths_and_values) == 7
    for index, (path, value) in enumerate(paths_and_values):
        step = 1e-6 * max(abs(value), 1e-2)
        plus = jitted_meta_loss(replace_leaf(tx, index, value + step))
        minus = jitted_meta_loss(replace_leaf(tx, index, value - step))
        finite_difference = (plus - minus) / (2 * step)
        exact = jax.tree_util.tree_leaves(hypergradient)[index]
        np.testing.assert_allclose(
            exact, finite_difference, rtol=1e-5, atol=1e-9, err_msg=jax.tree_util.keystr(path)
        )
    assert jitted_meta_loss._cache_size() == 1  # 14 new values, one compilation


def test_python_function_schedule_works_and_is_static():
    def plain_schedule(step):  # step is an int32 array
        return 0.05 * 0.9 ** step.astype(jnp.float64)

    tx = scheduled_adamw(plain_schedule)
    pytree_tx = scheduled_adamw()
    # The function is configuration, not a leaf: two leaves fewer than the pytree schedule.
    assert len(jax.tree_util.tree_leaves(tx)) == len(jax.tree_util.tree_leaves(pytree_tx)) - 2
    np.testing.assert_allclose(jitted_meta_loss(tx), jitted_meta_loss(pytree_tx), rtol=1e-12)
    hypergradient = jitted_hypergradient(tx)
    expected = [
        g
        for (path, g) in jax.tree_util.tree_flatten_with_path(scheduled_adamw_hypergradient())[0]
        if "learning_rate" not in jax.tree_util.keystr(path)
    ]
    np.testing.assert_allclose(jax.tree_util.tree_leaves(hypergradient), expected, rtol=1e-10)


def batch_axes(tx):
    """``in_axes`` for a transformation whose batched leaves have one dimension more."""
    return jax.tree_util.tree_map(lambda leaf: 0 if jnp.ndim(leaf) == 1 else None, tx)


def test_vmap_over_sixteen_learning_rates_is_one_program_and_matches_separate_runs():
    learning_rates = jnp.linspace(0.005, 0.08, 16)
    # A population: the optimizer built inside vmap has a batch axis on the learning rate.
    batched = jax.vmap(lambda rate: aj.adam(rate, b1=0.9, b2=0.99, eps=1e-6))(learning_rates)
    train_many = jax.vmap(train, in_axes=(batch_axes(batched),))

    jaxpr = jax.make_jaxpr(train_many)(batched)
    scans = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "scan"]
    assert len(scans) == 1, "one batched training loop, not sixteen"
    assert all(var.aval.shape[0] == 16 for var in jaxpr.jaxpr.outvars)

    compiled_many = jax.jit(train_many)
    batched_params = compiled_many(batched)
    assert compiled_many._cache_size() == 1

    train_one = jax.jit(train)
    for i, learning_rate in enumerate(learning_rates.tolist()):
        params = train_one(aj.adam(learning_rate, b1=0.9, b2=0.99, eps=1e-6))
        for name in params:
            np.testing.assert_allclose(batched_params[name][i], params[name], rtol=1e-12)
    assert train_one._cache_size() == 1  # sixteen learning rates, one compilation


def test_jitted_train_step_does_not_recompile_for_new_hyperparameter_values():
    @jax.jit
    def train_step(tx, params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return aj.apply_updates(params, updates), state

    losses = []
    for tx in [aj.adam(0.1), aj.adam(0.2), aj.adam(0.1, b1=0.8), aj.adam(0.1, 0.9, 0.9, 1e-4)]:
        params, state = PARAMS, tx.init(PARAMS)
        for _ in range(3):  # Adam's first step does not depend on b1, b2: take three
            params, state = train_step(tx, params, state)
        losses.append(float(loss(params)))
    assert train_step._cache_size() == 1
    assert len(set(losses)) == 4  # the new values were used, not baked-in constants

    # A different transformation (another tree structure) is a new program: the count moves.
    train_step(aj.sgd(0.1), PARAMS, aj.sgd(0.1).init(PARAMS))
    assert train_step._cache_size() == 2


def test_per_parameter_learning_rates_apply_to_their_leaves():
    rates = {"w": 0.1, "b": 0.01}
    g = jax.grad(loss)(PARAMS)

    def first_update(tx):
        return tx.update(g, tx.init(PARAMS), PARAMS)[0]

    def one_step_loss(rates):
        return loss(aj.apply_updates(PARAMS, first_update(aj.sgd(rates))))

    @jax.jit
    def compute(rates):
        return (
            first_update(aj.sgd(rates)),
            first_update(aj.adam(rates, eps=1e-8)),
            jax.grad(one_step_loss)(rates),
        )

    sgd_updates, adam_updates, hypergradient = compute(rates)
    # d loss(theta - lr * g) / d lr_leaf = -<grad loss(theta'), g_leaf>
    g_after = jax.grad(loss)({name: PARAMS[name] - rates[name] * g[name] for name in PARAMS})
    for name in PARAMS:
        np.testing.assert_allclose(sgd_updates[name], -rates[name] * g[name], rtol=1e-15)
        # First Adam step: -lr g / (|g| + eps).
        expected = -rates[name] * g[name] / (jnp.abs(g[name]) + 1e-8)
        np.testing.assert_allclose(adam_updates[name], expected, rtol=1e-12)
        expected = -jnp.sum(g_after[name] * g[name])
        np.testing.assert_allclose(hypergradient[name], expected, rtol=1e-12)


def test_chain_keeps_one_step_counter_also_when_nested():
    schedule = aj.schedules.linear_schedule(1.0, 0.0, 10)
    tx = aj.chain(
        aj.clip_by_global_norm(100.0),
        aj.chain(aj.scale(2.0), aj.chain(aj.trace(0.0), aj.scale_by_learning_rate(schedule))),
        aj.chain(aj.chain(aj.scale(0.5))),
    )
    params = jnp.zeros(3)
    state = tx.init(params)
    for step in range(1, 5):
        updates, state = tx.update(jnp.ones(3), state, params)
        # The schedule deep inside sees the shared 0-based step: lr = 1 - (step - 1)/10.
        np.testing.assert_allclose(updates, -(1 - (step - 1) / 10) * jnp.ones(3), rtol=1e-15)
    integer_leaves = [
        leaf
        for leaf in jax.tree_util.tree_leaves(state)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.integer)
    ]
    assert len(integer_leaves) == 1 and int(integer_leaves[0]) == 4
    assert state.count is integer_leaves[0]


def run_optax_protocol(tx, steps=5):
    """Parameters after ``steps`` updates, through ``init``/``update``/``optax.apply_updates``."""

    @jax.jit
    def run():
        params, state = PARAMS, tx.init(PARAMS)
        for _ in range(steps):
            grads = jax.tree_util.tree_map(lambda g: 10 * g, jax.grad(loss)(params))
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params

    return run()


def assert_same_params(actual, expected):
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-12, atol=1e-15)


def test_adaptive_jax_transformation_inside_optax_chain():
    with jax.numpy_dtype_promotion("standard"):  # optax's internals mix weak types
        mixed = run_optax_protocol(optax.chain(aj.adam(0.05, b1=0.8), optax.scale(0.5)))
        pure_optax = run_optax_protocol(optax.chain(optax.adam(0.05, b1=0.8), optax.scale(0.5)))
        ours = run_optax_protocol(aj.chain(aj.adam(0.05, b1=0.8), aj.scale(0.5)))
    assert_same_params(mixed, pure_optax)
    assert_same_params(ours, pure_optax)


def test_optax_transformation_inside_adaptive_jax_chain():
    # Gradients are scaled by 10 so clipping at norm 1 is active at every step.
    with jax.numpy_dtype_promotion("standard"):
        mixed = run_optax_protocol(aj.chain(optax.clip_by_global_norm(1.0), aj.adam(0.05)))
        pure_optax = run_optax_protocol(
            optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
        )
        ours = run_optax_protocol(aj.chain(aj.clip_by_global_norm(1.0), aj.adam(0.05)))
    assert_same_params(mixed, pure_optax)
    assert_same_params(ours, pure_optax)
    assert optax.tree.norm(jax.grad(loss)(PARAMS)) * 10 > 1.0


def test_flax_nnx_optimizer_accepts_an_adaptive_jax_transformation():
    learning_rate = 0.1
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    kernel, bias = np.asarray(model.kernel[...]), np.asarray(model.bias[...])

    def model_loss(model):
        return jnp.mean((model(INPUTS) - TARGETS) ** 2)

    with jax.numpy_dtype_promotion("standard"):
        optimizer = nnx.Optimizer(model, aj.adam(learning_rate), wrt=nnx.Param)
        grads = nnx.grad(model_loss)(model)
        optimizer.update(model, grads)

    # Manual first Adam step: theta - lr * g / (|g| + eps), with g from the closed form
    # of the mean-squared error's gradient.
    residual = np.asarray(INPUTS) @ kernel + bias - np.asarray(TARGETS)
    g_kernel = 2 * np.asarray(INPUTS).T @ residual / residual.size
    g_bias = 2 * residual.sum(axis=0) / residual.size
    np.testing.assert_allclose(
        model.kernel[...], kernel - learning_rate * g_kernel / (np.abs(g_kernel) + 1e-8), rtol=1e-12
    )
    np.testing.assert_allclose(
        model.bias[...], bias - learning_rate * g_bias / (np.abs(g_bias) + 1e-8), rtol=1e-12
    )
