"""apply_if_finite: a NaN/Inf gradient is skipped as if the batch had never been seen."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS, NEEDS_VALUE
from tests.xla_defaults import XLA_DEFAULTS

PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.asarray(0.25)}


def gradient(step, poison=None):
    """A deterministic gradient for ``step``; ``poison`` puts NaN/Inf into one entry."""
    g = {"w": jnp.array([0.3, -0.2, 0.1]) * (1 + step), "b": jnp.asarray(0.05 * step - 0.1)}
    if poison is not None:
        g["w"] = g["w"].at[1].set(poison)
    return g


def bits(tree):
    """The exact bytes of every leaf: equal bits means bit-identical."""
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


def run(tx, poisons, params=PARAMS, compiler_options=None):
    """Apply updates for gradients ``gradient(t, poisons[t])``; return params, state, updates.

    The whole run is one jitted function (one compilation per test).
    """

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def steps(params):
        state = tx.init(params)
        history = []
        for t, poison in enumerate(poisons):
            updates, state = tx.update(gradient(t, poison), state, params)
            params = aj.apply_updates(params, updates)
            history.append((params, state, updates))
        return history

    return steps(params)


POISONS = [jnp.nan, jnp.inf, -jnp.inf]


# polyak_sgd needs the loss as value=, which run() does not pass.
@pytest.mark.parametrize(
    "index, name", list(enumerate(sorted(set(NAMED_OPTIMIZERS) - NEEDS_VALUE)))
)
def test_after_a_non_finite_step_params_and_inner_state_are_bit_identical(index, name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = aj.apply_if_finite(factory(**kwargs), max_consecutive_errors=3)
    poison = POISONS[index % len(POISONS)]  # NaN, +Inf and -Inf in turn
    (p1, s1, _), (p2, s2, u2) = run(tx, [None, poison])
    assert bits(p2) == bits(p1)
    assert bits(s2.inner.inner_state) == bits(s1.inner.inner_state)
    assert all(not np.any(np.asarray(u)) for u in jax.tree_util.tree_leaves(u2))


def test_skipping_is_as_if_the_bad_batch_had_never_been_seen():
    # Finite steps 0, 1, 3, 5 around two bad ones give exactly the run on 0, 1, 3, 5 alone:
    # the inner step counter (bias correction, schedules) did not advance either.
    tx = aj.adamw(aj.schedules.exponential_decay(0.1, 0.5), weight_decay=0.1)
    wrapped = aj.apply_if_finite(tx, max_consecutive_errors=2)
    poisons = [None, None, jnp.nan, None, jnp.inf, None]
    # Bits compared across two programs: both compiled as XLA compiles by default.
    skipped = run(wrapped, poisons, compiler_options=XLA_DEFAULTS)

    @functools.partial(jax.jit, compiler_options=XLA_DEFAULTS)
    def finite_steps_only(params):
        state = tx.init(params)
        for t in [0, 1, 3, 5]:
            updates, state = tx.update(gradient(t), state, params)
            params = aj.apply_updates(params, updates)
        return params, state

    params, state = finite_steps_only(PARAMS)
    final_params, final_state, _ = skipped[-1]
    assert bits(final_params) == bits(params)
    assert bits(final_state.inner.inner_state) == bits(state)
    assert int(final_state.inner.inner_state.count) == 4
    assert int(final_state.count) == 6  # the wrapper's own counter counts every call


def test_counts_skipped_steps_in_total_and_in_a_row():
    tx = aj.apply_if_finite(aj.adam(0.1), max_consecutive_errors=5)
    poisons = [None, jnp.nan, jnp.nan, None, jnp.inf, None]
    history = run(tx, poisons)
    consecutive = [int(s.inner.notfinite_count) for _, s, _ in history]
    total = [int(s.inner.total_notfinite) for _, s, _ in history]
    last_finite = [bool(s.inner.last_finite) for _, s, _ in history]
    assert consecutive == [0, 1, 2, 0, 1, 0]
    assert total == [0, 1, 2, 2, 3, 3]
    assert last_finite == [True, False, False, True, False, True]


def test_gives_up_and_applies_the_update_after_max_consecutive_errors():
    tx = aj.apply_if_finite(aj.sgd(0.1), max_consecutive_errors=2)
    history = run(tx, [None, jnp.nan, jnp.nan, jnp.nan, jnp.nan])
    applied = [bool(np.isnan(np.asarray(p["w"][1]))) for p, _, _ in history]
    # two skips in a row are tolerated; the third non-finite update reaches the parameters
    assert applied == [False, False, False, True, True]


def test_matches_optax_apply_if_finite_step_by_step():
    limit = 2
    poisons = [None, jnp.nan, None, jnp.inf, jnp.inf, None, jnp.nan, jnp.nan, jnp.nan]
    ours = run(aj.apply_if_finite(aj.adam(0.1), max_consecutive_errors=limit), poisons)
    theirs_tx = optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=limit)
    with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
        theirs = run(theirs_tx, poisons)
    for (_, s_ours, u_ours), (_, s_theirs, u_theirs) in zip(ours, theirs):
        for a, b in zip(jax.tree_util.tree_leaves(u_ours), jax.tree_util.tree_leaves(u_theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, equal_nan=True)
        assert int(s_ours.inner.notfinite_count) == int(s_theirs.notfinite_count)
        assert int(s_ours.inner.total_notfinite) == int(s_theirs.total_notfinite)
        assert bool(s_ours.inner.last_finite) == bool(s_theirs.last_finite)


def test_wraps_an_optax_transformation_and_composes_in_a_chain():
    tx = aj.chain(aj.apply_if_finite(optax.sgd(0.5)), aj.scale(2.0))
    (_, _, skipped), (_, state, applied) = run(tx, [jnp.nan, None])
    assert all(not np.any(np.asarray(u)) for u in jax.tree_util.tree_leaves(skipped))
    np.testing.assert_allclose(applied["w"], -2 * 0.5 * gradient(1)["w"], rtol=1e-15)
    assert int(state.count) == 2


def test_meta_gradient_through_the_wrapper_equals_the_unwrapped_one():
    def meta_loss(learning_rate, wrap):
        tx = aj.adam(learning_rate)
        tx = aj.apply_if_finite(tx) if wrap else tx
        params, state = PARAMS, tx.init(PARAMS)
        for t in range(3):
            updates, state = tx.update(gradient(t), state, params)
            params = aj.apply_updates(params, updates)
        return jnp.sum(params["w"] ** 2) + params["b"] ** 2

    wrapped = jax.jit(jax.grad(functools.partial(meta_loss, wrap=True)))(0.1)
    plain = jax.jit(jax.grad(functools.partial(meta_loss, wrap=False)))(0.1)
    np.testing.assert_allclose(wrapped, plain, rtol=1e-12)


def test_all_finite_of_an_empty_tree_is_true():
    tx = aj.apply_if_finite(aj.adam(0.1))
    updates, state = tx.update({}, tx.init({}), {})
    assert updates == {} and bool(state.inner.last_finite)
