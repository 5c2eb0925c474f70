r"""Schedules agree with optax's schedules and with their closed forms at every step.

Each schedule is evaluated at the 0-based steps :math:`s = 0, \dots, 119` (int32, as the
optimizers pass them), well past the end of every transition, and compared with the
optax schedule of the same definition or with the formula evaluated in numpy.  optax
evaluates its schedules in float32 when given an int32 step, so it is given the same
steps as exact float64 numbers to evaluate its definition in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

STEPS = jnp.arange(120, dtype=jnp.int32)
RTOL = 1e-12


def evaluate(schedule, steps=STEPS):
    return np.asarray(jax.vmap(schedule)(steps))


def evaluate_optax(schedule, steps=STEPS):
    # optax's schedules rely on standard dtype promotion.
    with jax.numpy_dtype_promotion("standard"):
        return evaluate(schedule, jnp.asarray(steps, jnp.float64))


PAIRS = {
    "exponential_decay": (
        aj.schedules.exponential_decay(0.5, 0.9, transition_steps=7),
        optax.exponential_decay(0.5, transition_steps=7, decay_rate=0.9),
    ),
    "exponential_decay_staircase": (
        aj.schedules.exponential_decay(0.5, 0.9, transition_steps=7, staircase=True),
        optax.exponential_decay(0.5, transition_steps=7, decay_rate=0.9, staircase=True),
    ),
    "cosine_decay": (
        aj.schedules.cosine_decay(0.3, decay_steps=50, alpha=0.1),
        optax.cosine_decay_schedule(0.3, decay_steps=50, alpha=0.1),
    ),
    "linear_schedule": (
        aj.schedules.linear_schedule(0.1, 0.01, transition_steps=40),
        optax.linear_schedule(0.1, 0.01, transition_steps=40),
    ),
    "linear_warmup": (
        aj.schedules.linear_warmup(0.2, warmup_steps=15, init_value=0.02),
        optax.linear_schedule(0.02, 0.2, transition_steps=15),
    ),
    # optax's decay_steps counts the warm-up too; ours is the length of the decay phase.
    "warmup_cosine_decay": (
        aj.schedules.warmup_cosine_decay(
            1.0, warmup_steps=10, decay_steps=40, init_value=0.1, end_value=0.05
        ),
        optax.warmup_cosine_decay_schedule(
            0.1, 1.0, warmup_steps=10, decay_steps=50, end_value=0.05
        ),
    ),
    "join_schedules": (
        aj.schedules.join_schedules(
            [
                aj.schedules.constant(0.3),
                aj.schedules.exponential_decay(0.2, 0.95),
                aj.schedules.cosine_decay(0.1, decay_steps=30),
            ],
            boundaries=[10, 45],
        ),
        optax.join_schedules(
            [
                optax.constant_schedule(0.3),
                optax.exponential_decay(0.2, transition_steps=1, decay_rate=0.95),
                optax.cosine_decay_schedule(0.1, decay_steps=30),
            ],
            boundaries=[10, 45],
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_schedule_matches_optax(name):
    ours, theirs = PAIRS[name]
    expected = evaluate_optax(theirs)
    np.testing.assert_allclose(evaluate(ours), expected, rtol=RTOL, atol=0)
    assert np.ptp(expected) > 0  # the compared range is not a constant stretch


def test_inverse_sqrt_is_alpha_over_root_t_with_t_from_one():
    t = np.arange(1, len(STEPS) + 1, dtype=np.float64)
    np.testing.assert_allclose(
        evaluate(aj.schedules.inverse_sqrt(0.7)), 0.7 / np.sqrt(t), rtol=RTOL, atol=0
    )


def test_constant_schedule_is_constant():
    np.testing.assert_array_equal(evaluate(aj.schedules.constant(0.25)), np.full(len(STEPS), 0.25))


def test_scheduled_learning_rate_is_read_at_the_zero_based_step_as_in_optax():
    """The t-th update (1-based) of SGD is -schedule(t - 1) * g_t: the first uses schedule(0)."""
    grads = jnp.asarray(np.random.default_rng(0).normal(size=(30, 3)))
    tx = aj.sgd(aj.schedules.warmup_cosine_decay(0.5, 5, 20, init_value=0.05))
    rates = evaluate_optax(
        optax.warmup_cosine_decay_schedule(0.05, 0.5, 5, 25), jnp.arange(len(grads))
    )
    params = jnp.zeros(3)
    state = tx.init(params)
    update_fn = jax.jit(tx.update)
    for rate, g in zip(rates, grads):
        update, state = update_fn(g, state, params)
        np.testing.assert_allclose(update, -rate * g, rtol=RTOL, atol=0)
