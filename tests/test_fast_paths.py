"""The fast paths give the numbers of the plain path.

* ``flatten(tx)`` (state in one buffer per dtype) against ``tx`` on the tree, for every
  named optimizer: bit-identical where the arithmetic is elementwise, equal up to the
  order of a sum where a global norm is involved; refused for per-leaf statistics
  and per-parameter hyperparameters.
* ``ravel_params`` / ``FlatParams``: the view is the tree, gradients arrive flat.
* ``update_step`` against the plain jitted step, bit for bit; donation; no
  recompilation for new hyperparameter values.

The reference is always the plain path computed the same way (eager against eager,
jitted against jitted): XLA may contract ``a*b+c`` differently in a fused loop than
op by op, so only like is compared with like.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from adaptive_jax._src.performance.layout import ALIGNMENT
from adaptive_jax.performance import FlatLayoutError
from tests.optimizer_catalog import NAMED_OPTIMIZERS

# Optimizers whose step sums over all leaves (a global norm): the flat buffer sums in
# another order, so equal to rounding, not bit for bit.
GLOBAL_REDUCTIONS = {"normalized_gd", "dadapt_adamw", "dog", "prodigy"}
# Per-leaf statistics (trust ratios): a flat buffer would change the numbers.
PER_LEAF = {"lamb"}
# Norms per tensor: lars, fromage, novograd.
PER_LEAF |= {"fromage", "lars", "novograd"}
# Not run on flat buffers: polyak_sgd needs the loss (value=) that this path does not
# pass; noisy_sgd's key is state not shaped like a leaf; SM3's cover depends on each
# tensor's shape (rows, columns), so on the raveled vector it is another optimizer
# (per-entry Adagrad) -- flatten cannot detect that, use the tree layout for SM3.
NOT_FLATTENED = {"noisy_sgd", "polyak_sgd", "sm3"}
# Adafactor's block RMS of each leaf (and its factored rows and columns).
PER_LEAF |= {"adafactor"}


def mixed_tree(with_bfloat16=True):
    """Leaves of two or three dtypes and several shapes (x64 is on in this suite).

    Few distinct shapes, because eager steps compile each primitive once per shape.
    """
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    tree = {
        "dense": {"w": jax.random.normal(k1, (4, 3)), "b": jnp.linspace(-1.0, 1.0, 3)},
        "embed": jax.random.normal(k2, (5,), jnp.float32),
    }
    if with_bfloat16:
        tree["half"] = jax.random.normal(k3, (6,), jnp.bfloat16)
    return tree


def gradient_at(params, step):
    """A deterministic gradient that changes from step to step (no sign is constant)."""
    return jax.tree_util.tree_map(
        lambda p: (jnp.sin(3.0 * p.astype(jnp.float32) + step) + 0.1).astype(p.dtype), params
    )


def run_steps(tx, params, steps=2):
    state = tx.init(params)
    for step in range(steps):
        updates, state = tx.update(gradient_at(params, step), state, params)
        params = aj.apply_updates(params, updates)
    return params, state


def assert_trees_equal(actual, expected):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(e, np.float64))


@pytest.mark.parametrize("name", sorted(set(NAMED_OPTIMIZERS) - NOT_FLATTENED))
def test_flatten_gives_the_tree_path_numbers(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx, params = factory(**kwargs), mixed_tree(with_bfloat16=False)
    if name in PER_LEAF:
        with pytest.raises(FlatLayoutError, match="per-leaf statistic"):
            run_steps(aj.performance.flatten(tx), params)
        return
    expected, _ = run_steps(tx, params)
    actual, _ = run_steps(aj.performance.flatten(tx), params)
    if name in GLOBAL_REDUCTIONS:
        for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
            rtol = 1e-2 if a.dtype == jnp.bfloat16 else 1e-6
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol)
    else:
        assert_trees_equal(actual, expected)


def test_flat_state_is_one_padded_buffer_per_dtype():
    params = mixed_tree()
    _, state = run_steps(aj.performance.flatten(aj.adam(0.1)), params, steps=2)
    sizes = {}
    for leaf in jax.tree_util.tree_leaves(params):
        sizes[leaf.dtype.name] = sizes.get(leaf.dtype.name, 0) + leaf.size
    for moment in (state.inner[0].mu, state.inner[1].nu):  # Adam's mu and nu
        for dtype, size in sizes.items():
            buffer = moment.buffers[dtype]
            assert buffer.shape == (-(-size // ALIGNMENT) * ALIGNMENT,)
            assert not np.any(np.asarray(buffer[size:], np.float64))  # padding stays zero
            assert np.all(np.asarray(buffer[:size], np.float64) != 0)
        assert set(moment.buffers) == set(sizes)
    # The state of flatten(tx) is the state of tx on the raveled tree.
    tx, tree = aj.adam(0.1), params
    flat = aj.ravel_params(tree)
    reference = tx.init(flat)
    for step in range(2):
        updates, reference = tx.update(aj.ravel_params(gradient_at(tree, step)), reference, flat)
        flat = aj.apply_updates(flat, updates)
        tree = flat.tree()
    assert_trees_equal(state, reference)


def test_low_precision_moments_through_the_flat_path():
    params = {"w": jnp.linspace(-1.0, 1.0, 7, dtype=jnp.float32), "b": jnp.ones(2, jnp.float32)}
    tx = aj.adam(0.05, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    expected, _ = run_steps(tx, params)
    actual, state = run_steps(aj.performance.flatten(tx), params)
    assert_trees_equal(actual, expected)
    assert state.inner[0].mu.buffers["float32"].dtype == jnp.bfloat16
    assert state.inner[1].nu.buffers["float32"].dtype == jnp.bfloat16


def test_flatten_refuses_per_parameter_hyperparameters():
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    tx = aj.performance.flatten(aj.adam({"w": 0.1, "b": 0.0}))
    with pytest.raises(FlatLayoutError, match=r"learning_rate is a per-parameter pytree"):
        tx.update(params, tx.init(params), params)


def test_flatten_refuses_an_optax_per_leaf_trust_ratio():
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    tx = aj.performance.flatten(optax.lamb(0.1))
    with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
        with pytest.raises(FlatLayoutError, match="per-leaf statistic"):
            tx.update(params, tx.init(params), params)


def test_flatten_meta_gradient_equals_the_tree_path():
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])}

    def loss(p):
        return jnp.sum(p["w"] ** 2) + 3.0 * jnp.sum((p["b"] - 1.0) ** 2)

    def meta_loss(learning_rate, wrap):
        tx = wrap(aj.adam(learning_rate))
        p, state = params, tx.init(params)
        for _ in range(3):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            p = aj.apply_updates(p, updates)
        return loss(p)

    hypergradient = jax.jit(jax.grad(meta_loss), static_argnums=1)
    plain = hypergradient(0.1, lambda tx: tx)
    flat = hypergradient(0.1, aj.performance.flatten)
    np.testing.assert_allclose(flat, plain, rtol=1e-12)


def test_flat_params_view_and_flat_gradients():
    params = {**mixed_tree(), "scale": jnp.asarray(0.7, jnp.float32)}
    flat = aj.ravel_params(params)
    assert_trees_equal(flat.tree(), params)

    def loss(tree):
        return sum(
            jnp.sum(jnp.sin(x.astype(jnp.float64)) ** 2) for x in jax.tree_util.tree_leaves(tree)
        )

    flat_grads = jax.jit(jax.grad(lambda f: loss(f.tree())))(flat)
    assert_trees_equal(flat_grads, aj.ravel_params(jax.jit(jax.grad(loss))(params)))


@jax.jit
def plain_step(tx, grads, state, params):
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state


def test_update_step_matches_plain_step_and_donates():
    tx = aj.adam(0.05, mu_dtype=jnp.bfloat16)
    params = jnp.linspace(-1.0, 1.0, 1000, dtype=jnp.float32)
    grads = gradient_at(params, 0)
    expected = plain_step(tx, grads, tx.init(params), params)
    state = tx.init(params)
    given = params + 0.0
    actual = aj.update_step(tx, given, state, grads)
    assert_trees_equal(actual, expected)
    assert given.is_deleted() and state.inner[0].mu.is_deleted()


def test_update_step_with_flat_params_matches_the_tree_path():
    params = mixed_tree()
    tx = aj.adamw(0.05, weight_decay=0.1)
    flat, flat_state = aj.ravel_params(params), tx.init(aj.ravel_params(params))
    tree, tree_state = params, tx.init(params)
    for step in range(2):
        grads = gradient_at(tree, step)
        tree, tree_state = plain_step(tx, grads, tree_state, tree)
        flat, flat_state = aj.update_step(tx, flat, flat_state, aj.ravel_params(grads))
    assert_trees_equal(flat.tree(), tree)
    with pytest.raises(FlatLayoutError):
        aj.update_step(aj.lamb(0.1), flat, aj.lamb(0.1).init(flat), flat)


def test_new_hyperparameter_values_do_not_recompile():
    step = aj.performance.DonatingStep(aj.performance.apply_step, "update_step")
    params = jnp.ones(5)
    for learning_rate in [0.1, 0.2, 0.3]:
        tx = aj.adam(learning_rate)
        new_params, _ = step(tx, params + 0.0, tx.init(params), jnp.ones(5))
        # First Adam step with g = 1: m_hat = v_hat = 1, so -lr / (1 + eps).
        np.testing.assert_allclose(new_params, 1.0 - learning_rate / (1.0 + 1e-8), rtol=1e-12)
    assert step._jitted._cache_size() == 1


def test_update_step_runs_optax_transformations():
    tx = optax.adam(0.1)
    params = jnp.linspace(-1.0, 1.0, 9, dtype=jnp.float32)
    grads = gradient_at(params, 0)
    with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
        updates, expected_state = tx.update(grads, tx.init(params), params)
        expected = optax.apply_updates(params, updates)
        actual, actual_state = aj.update_step(tx, params + 0.0, tx.init(params), grads)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)
    np.testing.assert_allclose(actual_state[0].mu, expected_state[0].mu, rtol=1e-6)


def test_train_step_with_flat_params_matches_the_tree_path():
    params = {"w": jnp.array([[0.5, -0.2], [0.1, 0.4]]), "b": jnp.array([0.0, 0.1])}
    x, y = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7]]), jnp.array([1.0, -1.0, 0.5])

    def loss(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]).sum(axis=1) - y) ** 2)

    train = aj.make_train_step(loss)
    tx = aj.rmsprop(0.01, momentum=0.9)
    tree, tree_state = params, tx.init(params)
    flat = aj.ravel_params(params)
    flat_state = tx.init(flat)
    for _ in range(3):
        grads = jax.grad(loss)(tree, x, y)
        expected_loss = loss(tree, x, y)
        tree, tree_state = plain_step(tx, grads, tree_state, tree)
        flat, flat_state, flat_loss = train(tx, flat, flat_state, x, y)
        np.testing.assert_allclose(flat_loss, expected_loss, rtol=1e-12)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), flat.tree(), tree
    )
