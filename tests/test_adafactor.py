r"""Adafactor: optax's numbers in float64, the state's memory, and meta-gradients through it.

The parity problem has four leaves: a :math:`136 \times 128` matrix (factored under
optax's default ``min_dim_size_to_factor=128``), a vector and a scalar (full second
moments) and a :math:`3 \times 4 \times 5` tensor (factored over its two largest
axes when the threshold is 4).  Every iterate of 30 steps must agree with optax's to
``rtol=1e-9``.  optax rounds its decay :math:`\hat\beta_t` to float32 when
``decay_rate`` is a Python float; given as a float64 array it computes in float64,
which is how its side is built here (ours computes in the hyperparameters' precision).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

STEPS = 30
RTOL = 1e-9
ATOL = 1e-13

_rng = np.random.default_rng(7)
INPUTS = jnp.asarray(_rng.normal(size=(8, 136)))
TARGETS = jnp.asarray(_rng.normal(size=(8, 128)))
INITIAL = {
    "W": jnp.asarray(0.1 * _rng.normal(size=(136, 128))),
    "b": jnp.asarray(_rng.normal(size=(128,))),
    "s": jnp.asarray(0.7),
    "T": jnp.asarray(_rng.normal(size=(3, 4, 5))),
}


def loss(p):
    prediction = jnp.tanh(p["s"] * (INPUTS @ p["W"]) + p["b"])
    fit = jnp.mean((prediction - TARGETS) ** 2)
    return fit + 0.1 * jnp.sum(jnp.sin(p["T"]) ** 2 * jnp.arange(1.0, 6.0)) + 0.05 * p["s"] ** 2


def trajectory(tx, initial=INITIAL, objective=loss, steps=STEPS):
    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(objective)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, history = jax.lax.scan(step, (initial, tx.init(initial)), None, length=steps)
    return history


def f64(x):
    return jnp.asarray(x, jnp.float64)


CASES = {
    # optax's defaults (learning_rate=None: no scaling), decay in float64 on its side.
    "defaults": (
        dict(learning_rate=0.01),
        dict(learning_rate=0.01, decay_rate=f64(0.8)),
    ),
    # Every option on: momentum (float32 accumulator, as optax), masked weight decay, a
    # schedule, the 3-D tensor factored, no update clipping.  (A step offset is checked
    # by hand below: from a fresh state optax's decay is NaN for t <= offset.)
    "all_options": (
        dict(
            learning_rate=aj.schedules.cosine_decay(0.02, STEPS, 0.1),
            min_dim_size_to_factor=4,
            decay_rate=0.7,
            multiply_by_parameter_scale=False,
            clipping_threshold=None,
            momentum=0.8,
            weight_decay_rate=0.01,
            eps=1e-20,
            weight_decay_mask={"W": True, "b": False, "s": False, "T": True},
        ),
        dict(
            learning_rate=optax.cosine_decay_schedule(0.02, STEPS, 0.1),
            min_dim_size_to_factor=4,
            decay_rate=f64(0.7),
            multiply_by_parameter_scale=False,
            clipping_threshold=None,
            momentum=0.8,
            weight_decay_rate=0.01,
            eps=1e-20,
            weight_decay_mask={"W": True, "b": False, "s": False, "T": True},
        ),
    ),
    "clipped_momentum_unfactored": (
        dict(learning_rate=0.05, clipping_threshold=0.5, momentum=0.5, factored=False),
        dict(
            learning_rate=0.05,
            clipping_threshold=0.5,
            momentum=0.5,
            factored=False,
            decay_rate=f64(0.8),
        ),
    ),
}


@pytest.fixture(scope="module")
def trajectories():
    def run(ours):
        histories = {name: trajectory(tx) for name, tx in ours.items()}
        with jax.numpy_dtype_promotion("standard"):
            theirs = {name: trajectory(optax.adafactor(**c[1])) for name, c in CASES.items()}
        return histories, theirs

    ours = {name: aj.adafactor(**c[0]) for name, c in CASES.items()}
    compiled = jax.jit(run).lower(ours).compile()
    return jax.tree_util.tree_map(np.asarray, compiled(ours))


@pytest.mark.parametrize("name", sorted(CASES))
def test_adafactor_matches_optax_in_float64(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    for leaf in INITIAL:
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
        assert np.max(np.abs(theirs[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf


def test_which_leaves_are_factored_follows_the_two_largest_axes():
    tx = aj.scale_by_factored_rms(min_dim_size_to_factor=4)
    state = jax.eval_shape(tx.init, INITIAL)
    # W (136, 128): rows over axis 1 (128, the second largest), columns over axis 0.
    assert state.inner.v_row["W"].shape == (128,) and state.inner.v_col["W"].shape == (136,)
    # T (3, 4, 5): factored over axes 1 and 2, the leading axis kept.
    assert state.inner.v_row["T"].shape == (3, 4) and state.inner.v_col["T"].shape == (3, 5)
    assert state.inner.v["b"].shape == (128,) and state.inner.v["s"].shape == ()
    assert state.inner.v["W"] is None and state.inner.v_row["b"] is None


def test_decay_schedule_with_an_offset_is_one_minus_a_power():
    from adaptive_jax._src.transforms.factored import decay_at

    counts = jnp.arange(1, 8)
    got = decay_at(counts, 0.8, 2.0)
    t = np.arange(1, 8) - 2.0
    expected = np.where(t > 0, 1 - np.maximum(t, 1) ** -0.8, 0.0)  # 0 until t > t_0
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    # optax's schedule at the same 1-based steps, with t_0 = 0.
    with jax.numpy_dtype_promotion("standard"):
        optax_decay = 1 - (counts.astype(jnp.float64)) ** -f64(0.8)
    np.testing.assert_allclose(decay_at(counts, 0.8, 0.0), optax_decay, rtol=1e-15)


def state_bytes(tx, params):
    """Bytes of every array in ``tx``'s state, from shapes only (nothing allocated)."""
    shapes = jax.eval_shape(tx.init, params)
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))


def test_factored_state_of_a_matrix_is_rows_plus_columns():
    rows, cols = 1024, 512
    matrix = {"w": jax.ShapeDtypeStruct((rows, cols), jnp.float32)}
    vector = {"b": jax.ShapeDtypeStruct((cols,), jnp.float32)}
    counter = 4  # the shared int32 step count
    ours = state_bytes(aj.adafactor(1e-3), matrix)
    assert ours == 4 * (rows + cols) + counter  # 6,148 bytes
    assert state_bytes(aj.adam(1e-3), matrix) == 4 * 2 * rows * cols + counter  # 4,194,308
    # optax stores a (1,) placeholder for the unused statistic of each leaf.
    assert state_bytes(optax.adafactor(1e-3), matrix) == 4 * (rows + cols + 1) + counter
    # A vector keeps its full second moment; momentum adds one full (float32) buffer.
    assert state_bytes(aj.adafactor(1e-3), vector) == 4 * cols + counter
    with_momentum = state_bytes(aj.adafactor(1e-3, momentum=0.9), matrix)
    assert with_momentum == 4 * (rows + cols + rows * cols) + counter


def test_factored_step_is_the_rank_one_formula():
    # A 2x3 gradient at step 1 (beta_1 = 0): V_hat = R C^T / mean(R) from g^2 + eps.
    g = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
    eps = 1e-3
    tx = aj.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=eps)
    u, _ = tx.update(g, tx.init(g))
    g2 = np.asarray(g) ** 2 + eps
    r, c = g2.mean(axis=1), g2.mean(axis=0)  # axis 1 (3) is the largest: R is per row
    np.testing.assert_allclose(u, g / np.sqrt(np.outer(r, c) / r.mean()), rtol=1e-14)


# Meta-gradients on a factored matrix and a leaf whose gradient is exactly 0 at every
# step ("z", coupled to the loss through the Hessian only): reverse = forward = FD.
META_INITIAL = {
    "W": jnp.asarray(_rng.normal(size=(4, 3))),
    "z": jnp.zeros(3),
    "v": jnp.asarray([0.5, -0.3]),
}


def meta_problem_loss(p):
    fit = jnp.sum((p["W"] - 0.5) ** 2 * jnp.arange(1.0, 13.0).reshape(4, 3))
    return fit + jnp.sum(p["v"] ** 2) * (1 + jnp.sum(p["z"] ** 2))


META = dict(
    learning_rate=0.05,
    decay_rate=0.7,
    decay_offset=0.5,
    clipping_threshold=0.8,
    momentum=0.6,
    weight_decay_rate=0.02,
    eps=1e-3,
)


def meta_loss(values):
    # A float64 momentum buffer: the default float32 one rounds what FD compares.
    tx = aj.adafactor(
        **dict(zip(META, values)), min_dim_size_to_factor=2, dtype_momentum=jnp.float64
    )
    history = trajectory(tx, META_INITIAL, meta_problem_loss, steps=8)
    return meta_problem_loss(jax.tree_util.tree_map(lambda x: x[-1], history))


def test_meta_gradients_through_factored_adafactor_match_finite_differences():
    theta = jnp.asarray(list(META.values()), jnp.float64)
    n = theta.size

    def program(theta):
        value, reverse = jax.value_and_grad(meta_loss)(theta)
        forward = jax.vmap(lambda d: jax.jvp(meta_loss, (theta,), (d,))[1])(jnp.eye(n))
        steps = 1e-5 * jnp.minimum(jnp.abs(theta), 1.0)
        plus = jax.vmap(meta_loss)(theta + jnp.diag(steps))
        minus = jax.vmap(meta_loss)(theta - jnp.diag(steps))
        return value, reverse, forward, (plus - minus) / (2 * steps)

    compiled = jax.jit(program).lower(theta).compile()
    value, reverse, forward, fd = compiled(theta)
    assert np.all(np.isfinite(reverse)) and np.all(reverse != 0), reverse
    np.testing.assert_allclose(forward, reverse, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(reverse, fd, rtol=1e-5, atol=1e-8 * float(value))


def test_zero_update_leaf_has_finite_meta_gradient_where_optax_gives_nan():
    # "z" gets a zero gradient, so its clipped block RMS is sqrt(0): optax's reverse-mode
    # derivative of the clipping is 0 * inf = NaN, ours 0.
    def final_z_loss(threshold, make):
        tx = make(threshold)
        history = trajectory(tx, META_INITIAL, meta_problem_loss, steps=3)
        return meta_problem_loss(jax.tree_util.tree_map(lambda x: x[-1], history))

    ours = jax.grad(final_z_loss)(0.8, lambda d: aj.adafactor(0.05, clipping_threshold=d))
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.grad(final_z_loss)(0.8, lambda d: optax.adafactor(0.05, clipping_threshold=d))
    assert np.isfinite(ours) and ours != 0
    assert np.isnan(theirs)


def test_zero_gradient_with_eps_zero_gives_a_zero_step_where_optax_gives_nan():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    grads = {"w": jnp.zeros((2, 3)), "b": jnp.array([0.0, 1.0, -2.0])}
    ours = aj.adafactor(0.1, eps=0.0, min_dim_size_to_factor=2)
    updates, _ = ours.update(grads, ours.init(params), params)
    # b at step 1: V = g^2, so U = sign(g); RMS(U) = sqrt(2/3) is not clipped; RMS(b) = 1.
    np.testing.assert_array_equal(updates["w"], np.zeros((2, 3)))
    np.testing.assert_array_equal(updates["b"], [0.0, -0.1, 0.1])
    theirs = optax.adafactor(0.1, eps=0.0, min_dim_size_to_factor=2)
    with jax.numpy_dtype_promotion("standard"):
        optax_updates, _ = theirs.update(grads, theirs.init(params), params)
    assert np.all(np.isnan(optax_updates["w"]))
