"""Long runs: the step counter saturates instead of overflowing; bias correction stays exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax._src.core.numerics import bias_correction, increment

INT32_MAX = np.iinfo(np.int32).max


def test_increment_saturates_at_int32_max():
    counts = jnp.array([0, 41, INT32_MAX - 1, INT32_MAX], jnp.int32)
    out = jax.jit(increment)(counts)
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(out, [1, 42, INT32_MAX, INT32_MAX])


def adam_from_count(start_count, steps, b1=0.9, b2=0.999, lr=0.1):
    """Adam run for ``steps`` updates from a state whose counter is ``start_count``."""
    tx = aj.adam(lr, b1, b2, eps=0.0)
    params = jnp.array([1.0, -2.0])
    state = tx.init(params)._replace(count=jnp.asarray(start_count, jnp.int32))

    @jax.jit
    def run(params, state):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(2 * params, state, params)
            return (aj.apply_updates(params, updates), state), (updates, state.count)

        return jax.lax.scan(step, (params, state), None, length=steps)

    return run(params, state)


def adam_by_hand(counts, steps, b1=0.9, b2=0.999, lr=0.1):
    """Adam in float64 NumPy with the given step numbers t (for the bias corrections)."""
    params, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    updates = []
    for t in counts[:steps]:
        g = 2 * params
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        u = -lr * (m / (1 - b1 ** float(t))) / np.sqrt(v / (1 - b2 ** float(t)))
        params = params + u
        updates.append(u)
    return np.array(updates)


def test_step_counter_saturates_at_int32_max_and_training_continues():
    (params, state), (updates, counts) = adam_from_count(INT32_MAX - 2, steps=5)
    np.testing.assert_array_equal(
        counts, [INT32_MAX - 1, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX]
    )
    assert state.count.dtype == jnp.int32
    expected = adam_by_hand([INT32_MAX - 1] + [INT32_MAX] * 4, steps=5)
    np.testing.assert_allclose(updates, expected, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.9, 0.999, 1 - 1e-7, 1 - 1e-9])
def test_bias_correction_at_ten_million_steps_matches_the_closed_form(beta):
    t = 10**7
    correction = bias_correction(jnp.asarray(beta, jnp.float64), jnp.asarray(t, jnp.int32))
    np.testing.assert_allclose(float(correction), 1 - np.float64(beta) ** t, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.999, 1 - 1e-7])
def test_float32_bias_correction_at_ten_million_steps_matches_the_closed_form(beta):
    # Compared with the closed form at the float32-rounded beta, evaluated in float64.
    beta32 = np.float32(beta)
    correction = bias_correction(jnp.asarray(beta32), jnp.asarray(10**7, jnp.int32))
    assert correction.dtype == jnp.float32
    np.testing.assert_allclose(float(correction), 1 - np.float64(beta32) ** 10**7, rtol=1e-5)


def test_adam_step_at_ten_million_matches_a_hand_computation():
    b2 = 1 - 1e-7  # bias correction still far from 1 at t = 1e7: 1 - e^-1
    (_, _), (updates, counts) = adam_from_count(10**7 - 1, steps=3, b2=b2)
    np.testing.assert_array_equal(counts, [10**7, 10**7 + 1, 10**7 + 2])
    expected = adam_by_hand([10**7, 10**7 + 1, 10**7 + 2], steps=3, b2=b2)
    np.testing.assert_allclose(updates, expected, rtol=1e-10)


def test_ten_thousand_adam_steps_match_an_independent_float64_implementation():
    steps = 10_000
    (params, state), (updates, counts) = adam_from_count(0, steps=steps, lr=1e-3)
    assert int(state.count) == steps
    expected = adam_by_hand(np.arange(1, steps + 1), steps=steps, lr=1e-3)
    np.testing.assert_allclose(updates[-1], expected[-1], rtol=1e-9)
    np.testing.assert_allclose(updates[::997], expected[::997], rtol=1e-9)
