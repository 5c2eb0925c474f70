"""Property-based tests (hypothesis) over random shapes, dtypes, gradients and hyperparameters.

Examples are kept few and shapes come from a small set, so that the eagerly executed
operations are compiled once and reused across examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS, VALUE

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SHAPES = [(), (3,), (2, 3)]
# 0 or at least 1e-30: a positive value that rounds to 0 in float32 is rejected (as an eps).
decays = st.one_of(st.just(0.0), st.floats(1e-30, 0.999))
seeds = st.integers(0, 2**32 - 1)


@st.composite
def param_trees(draw):
    """A dict of 1 to 3 float64 leaves with shapes from ``SHAPES``, from a random seed."""
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    rng = np.random.default_rng(draw(seeds))
    return {f"p{i}": jnp.asarray(rng.normal(size=shape)) for i, shape in enumerate(shapes)}


def gradient_sequence(params, seed, steps, scale=1.0):
    rng = np.random.default_rng(seed)
    return [
        jax.tree_util.tree_map(lambda p: jnp.asarray(scale * rng.normal(size=p.shape)), params)
        for _ in range(steps)
    ]


def run_updates(tx, params, grads_sequence, **extra_args):
    state = tx.init(params)
    history = []
    for grads in grads_sequence:
        updates, state = tx.update(grads, state, params, **extra_args)
        params = aj.apply_updates(params, updates)
        history.append((updates, state))
    return history


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@SETTINGS
@given(
    params=param_trees(),
    seed=seeds,
    factor=st.floats(1e-3, 1e3),
    b1=decays,
    b2=decays,
    learning_rate=st.floats(1e-4, 1.0),
)
def test_adam_is_invariant_to_rescaling_the_gradients(params, seed, factor, b1, b2, learning_rate):
    # m scales by c and sqrt(v) by c, so with eps = 0 the update does not change.
    tx = aj.adam(learning_rate, b1, b2, eps=0.0)
    grads = gradient_sequence(params, seed, steps=3)
    scaled = [jax.tree_util.tree_map(lambda g: factor * g, g_t) for g_t in grads]
    for (u, _), (u_scaled, _) in zip(
        run_updates(tx, params, grads), run_updates(tx, params, scaled)
    ):
        for a, b in zip(leaves(u), leaves(u_scaled)):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-300)


@SETTINGS
@given(
    params=param_trees(),
    seed=seeds,
    which=st.sampled_from(["sgd", "sgd_momentum", "adam"]),
    decay=decays,
    b2=decays,
    eps=st.sampled_from([0.0, 1e-8, 1e-3]),
    nesterov=st.booleans(),
)
def test_zero_gradient_does_not_move_sgd_or_adam(params, seed, which, decay, b2, eps, nesterov):
    if which == "sgd":
        # plain SGD is memoryless: a zero gradient after any history gives a zero step
        tx = aj.sgd(0.1)
        history = gradient_sequence(params, seed, steps=2)
    else:
        # with memory (momentum, moments), a zero gradient from a fresh state
        tx = (
            aj.sgd(0.1, decay, nesterov)
            if which == "sgd_momentum"
            else aj.adam(0.1, decay, b2, eps)
        )
        history = []
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = run_updates(tx, params, history + [zeros])[-1]
    moved = aj.apply_updates(params, updates)
    for before, after in zip(leaves(params), leaves(moved)):
        np.testing.assert_array_equal(after, before)


@SETTINGS
@given(
    params=param_trees(),
    seed=seeds,
    b1=decays,
    b2=decays,
    spikes=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_amsgrad_denominator_never_decreases(params, seed, b1, b2, spikes):
    # Gradients jump between large and tiny so that v itself goes down at times.
    grads = [
        jax.tree_util.tree_map(lambda g, factor=(100.0 if spike else 0.01): factor * g, g_t)
        for g_t, spike in zip(gradient_sequence(params, seed, steps=6), spikes)
    ]
    torch_variant = aj.amsgrad(0.1, b1, b2, maximum_of="raw")  # max of v, then corrected
    default = aj.amsgrad(0.1, b1, b2)  # max of the bias-corrected v: the denominator itself
    for tx, position in [(torch_variant, 2), (default, 3)]:
        maxima = [leaves(state.inner[position]) for _, state in run_updates(tx, params, grads)]
        for earlier, later in zip(maxima, maxima[1:]):
            for a, b in zip(earlier, later):
                assert np.all(b >= a)


BLOCKS = {
    "clip": lambda h: aj.clip_by_global_norm(0.5 + h),
    "clip_entries": lambda h: aj.clip(0.5 + h),
    "clip_block_rms": lambda h: aj.clip_by_block_rms(0.5 + h),
    "zero_nans": lambda h: aj.zero_nans(),
    "trace": lambda h: aj.trace(h, nesterov=h > 0.5),
    "adam": lambda h: aj.scale_by_adam(b1=h, b2=0.99),
    "rms": lambda h: aj.scale_by_rms(decay=h),
    "adagrad": lambda h: aj.scale_by_adagrad(eps=1e-3),
    "scale": lambda h: aj.scale(1 + h),
    "sign": lambda h: aj.scale_by_sign(),
    "normalize": lambda h: aj.normalize_by_global_norm(eps=h),
    "decay": lambda h: aj.add_decoupled_weight_decay(h),
    "schedule": lambda h: aj.scale_by_learning_rate(aj.schedules.exponential_decay(0.1, h + 0.001)),
}


@SETTINGS
@given(
    params=param_trees(),
    seed=seeds,
    names=st.lists(st.sampled_from(sorted(BLOCKS)), min_size=3, max_size=3),
    hyper=st.lists(decays, min_size=3, max_size=3),
)
def test_chain_is_associative(params, seed, names, hyper):
    a, b, c = (BLOCKS[name](h) for name, h in zip(names, hyper))
    grads = gradient_sequence(params, seed, steps=3)
    results = [
        [leaves(u) for u, _ in run_updates(tx, params, grads)]
        for tx in [aj.chain(a, aj.chain(b, c)), aj.chain(aj.chain(a, b), c), aj.chain(a, b, c)]
    ]
    for other in results[1:]:
        for step_a, step_b in zip(results[0], other):
            for x, y in zip(step_a, step_b):
                np.testing.assert_array_equal(x, y)  # the same operations: the same bits


FLOAT_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@SETTINGS
@given(
    shape=st.sampled_from(SHAPES),
    param_dtype=st.sampled_from(FLOAT_DTYPES),
    update_dtype=st.sampled_from(FLOAT_DTYPES),
    seed=seeds,
)
def test_apply_updates_keeps_dtypes(shape, param_dtype, update_dtype, seed):
    rng = np.random.default_rng(seed)
    params = jnp.asarray(rng.normal(size=shape), param_dtype)
    updates = jnp.asarray(rng.normal(size=shape) * 1e-2, update_dtype)
    new = aj.apply_updates({"p": params}, {"p": updates})["p"]
    assert new.dtype == param_dtype and new.shape == shape
    # The sum is formed in the wider dtype and rounded once to the parameter's: within
    # half an ulp of each rounding, so within one epsilon of the parameter's dtype.
    exact = np.asarray(params, np.float64) + np.asarray(updates, np.float64)
    tolerance = float(jnp.finfo(param_dtype).eps) * np.abs(exact)
    assert np.all(np.abs(np.asarray(new, np.float64) - exact) <= tolerance)


@SETTINGS
@given(params=param_trees(), seed=seeds, name=st.sampled_from(sorted(NAMED_OPTIMIZERS)))
def test_states_round_trip_through_flatten_and_unflatten(params, seed, name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    grads = gradient_sequence(params, seed, steps=2)
    # value= is the loss polyak_sgd needs (a stand-in); the others ignore it.
    _, state = run_updates(tx, params, grads[:1], value=VALUE)[0]
    state_leaves, treedef = jax.tree_util.tree_flatten(state)
    rebuilt = jax.tree_util.tree_unflatten(treedef, state_leaves)
    assert jax.tree_util.tree_structure(rebuilt) == treedef
    tx_leaves, tx_treedef = jax.tree_util.tree_flatten(tx)
    rebuilt_tx = jax.tree_util.tree_unflatten(tx_treedef, tx_leaves)
    # continuing from the rebuilt state with the rebuilt transformation: the same bits
    u1, s1 = tx.update(grads[1], state, params, value=VALUE)
    u2, s2 = rebuilt_tx.update(grads[1], rebuilt, params, value=VALUE)
    for x, y in zip(leaves((u1, s1)), leaves((u2, s2))):
        np.testing.assert_array_equal(x, y)
