r"""Schedules agree with optax's schedules and with their closed forms at every step.

Each schedule is evaluated at the 0-based steps :math:`s = 0, \dots, 119` (int32, as the
optimizers pass them), well past the end of every transition, and compared with the
optax schedule of the same definition or with the formula evaluated in numpy.  optax
evaluates its schedules in float32 when given an int32 step, so it is given the same
steps as exact float64 numbers to evaluate its definition in float64.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

STEPS = jnp.arange(120, dtype=jnp.int32)
RTOL = 1e-12


def evaluate(schedule, steps=STEPS):
    """The schedule at every step, in one compiled program (eager vmap compiles op by op)."""
    pytree = isinstance(schedule, aj.schedules.Schedule)  # else a closure (optax's)
    run = jax.jit(lambda s, t: jax.vmap(s if pytree else schedule)(t))
    s = schedule if pytree else None
    return np.asarray(run.lower(s, steps).compile()(s, steps))


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
    # -- optax's names, arguments and numbers --------------------------------------------
    "cosine_decay_schedule_exponent": (
        aj.schedules.cosine_decay_schedule(0.3, 50, alpha=0.1, exponent=2.5),
        optax.cosine_decay_schedule(0.3, 50, alpha=0.1, exponent=2.5),
    ),
    "exponential_decay_begin_end": (
        aj.schedules.exponential_decay(
            0.5, 0.9, transition_steps=7, transition_begin=12, end_value=0.2
        ),
        optax.exponential_decay(
            0.5, transition_steps=7, decay_rate=0.9, transition_begin=12, end_value=0.2
        ),
    ),
    "exponential_growth_capped": (  # decay_rate > 1: end_value is an upper bound
        aj.schedules.exponential_decay(0.1, 1.1, 3, staircase=True, end_value=0.9),
        optax.exponential_decay(0.1, 3, 1.1, staircase=True, end_value=0.9),
    ),
    "linear_schedule_begin": (
        aj.schedules.linear_schedule(0.1, 0.01, transition_steps=40, transition_begin=30),
        optax.linear_schedule(0.1, 0.01, transition_steps=40, transition_begin=30),
    ),
    "polynomial_schedule": (
        aj.schedules.polynomial_schedule(1.0, 0.01, power=2.0, transition_steps=50),
        optax.polynomial_schedule(1.0, 0.01, power=2.0, transition_steps=50),
    ),
    "polynomial_schedule_begin": (
        aj.schedules.polynomial_schedule(0.7, 0.2, 1.5, 60, transition_begin=25),
        optax.polynomial_schedule(0.7, 0.2, 1.5, 60, transition_begin=25),
    ),
    "piecewise_constant_schedule": (
        aj.schedules.piecewise_constant_schedule(0.8, {60: 0.5, 20: 0.1, 90: 3.0}),
        optax.piecewise_constant_schedule(0.8, {60: 0.5, 20: 0.1, 90: 3.0}),
    ),
    "piecewise_interpolate_linear": (
        aj.schedules.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 40: 0.1, 41: 2.0}),
        optax.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 40: 0.1, 41: 2.0}),
    ),
    "piecewise_interpolate_cosine": (
        aj.schedules.piecewise_interpolate_schedule("cosine", 0.3, {0: 2.0, 70: 0.01}),
        optax.piecewise_interpolate_schedule("cosine", 0.3, {0: 2.0, 70: 0.01}),
    ),
    "cosine_onecycle_schedule": (
        aj.schedules.cosine_onecycle_schedule(100, 0.5, pct_start=0.25, final_div_factor=50.0),
        optax.cosine_onecycle_schedule(100, 0.5, pct_start=0.25, final_div_factor=50.0),
    ),
    "linear_onecycle_schedule": (
        aj.schedules.linear_onecycle_schedule(90, 0.5, div_factor=10.0, final_div_factor=20.0),
        optax.linear_onecycle_schedule(90, 0.5, div_factor=10.0, final_div_factor=20.0),
    ),
    # int(0.3 * 3) = 0 and int(0.85 * 3) = 2: optax's boundary dict has a step 0; same here.
    "linear_onecycle_schedule_short": (
        aj.schedules.linear_onecycle_schedule(3, 0.5),
        optax.linear_onecycle_schedule(3, 0.5),
    ),
    "warmup_constant_schedule": (
        aj.schedules.warmup_constant_schedule(0.01, 0.4, warmup_steps=33),
        optax.warmup_constant_schedule(0.01, 0.4, warmup_steps=33),
    ),
    "warmup_cosine_decay_schedule": (
        aj.schedules.warmup_cosine_decay_schedule(0.1, 1.0, 10, 80, end_value=0.05, exponent=1.5),
        optax.warmup_cosine_decay_schedule(0.1, 1.0, 10, 80, end_value=0.05, exponent=1.5),
    ),
    "warmup_cosine_decay_schedule_no_warmup": (
        aj.schedules.warmup_cosine_decay_schedule(0.1, 1.0, 0, 70, end_value=0.05),
        optax.warmup_cosine_decay_schedule(0.1, 1.0, 0, 70, end_value=0.05),
    ),
    "warmup_exponential_decay_schedule": (
        aj.schedules.warmup_exponential_decay_schedule(
            0.0, 0.6, 15, 6, 0.8, transition_begin=10, staircase=True, end_value=0.1
        ),
        optax.warmup_exponential_decay_schedule(
            0.0, 0.6, 15, 6, 0.8, transition_begin=10, staircase=True, end_value=0.1
        ),
    ),
    "sgdr_schedule": (
        aj.schedules.sgdr_schedule(
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30),
                dict(
                    init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=40, end_value=0.01
                ),
                dict(init_value=0.0, peak_value=0.3, warmup_steps=10, decay_steps=30, exponent=2.0),
            ]
        ),
        optax.sgdr_schedule(
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30),
                dict(
                    init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=40, end_value=0.01
                ),
                dict(init_value=0.0, peak_value=0.3, warmup_steps=10, decay_steps=30, exponent=2.0),
            ]
        ),
    ),
    # optax 0.2.8 has no warmup-stable-decay: compared with the same curve joined from optax's pieces.
    "warmup_stable_decay_linear": (
        aj.schedules.warmup_stable_decay_schedule(0.05, 1.0, 10, 60, 30, end_value=0.1),
        optax.join_schedules(
            [
                optax.linear_schedule(0.05, 1.0, 10),
                optax.constant_schedule(1.0),
                optax.linear_schedule(1.0, 0.1, 30),
            ],
            [10, 70],
        ),
    ),
    "warmup_stable_decay_cosine": (
        aj.schedules.warmup_stable_decay_schedule(0.0, 0.8, 0, 40, 50, 0.2, decay_shape="cosine"),
        optax.join_schedules(
            [optax.constant_schedule(0.8), optax.cosine_decay_schedule(0.8, 50, alpha=0.25)],
            [40],
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


def test_constant_schedule_is_optax_constant_schedule():
    ours = evaluate(aj.schedules.constant_schedule(0.25))
    np.testing.assert_array_equal(ours, np.full(len(STEPS), 0.25))
    assert float(optax.constant_schedule(0.25)(7)) == 0.25


def test_polynomial_schedule_with_a_root_reaches_its_end_value_exactly():
    # (I - E)(1 - (s - B)/T)^P + E by hand.  With P < 1 a rounding of the fraction near the
    # end is magnified (optax's jitted schedule ends at 0.2 + 1.9e-9 here); ours ends at E.
    s = np.arange(len(STEPS), dtype=np.float64)
    expected = 0.5 * (1 - np.clip((s - 25) / 60, 0.0, 1.0)) ** 0.5 + 0.2
    ours = evaluate(aj.schedules.polynomial_schedule(0.7, 0.2, 0.5, 60, transition_begin=25))
    np.testing.assert_allclose(ours, expected, rtol=RTOL, atol=0)
    assert np.all(ours[85:] == 0.2)


def test_warmup_stable_decay_one_minus_sqrt_cooldown_by_hand():
    # Hägele et al.'s 1 - sqrt cooldown: peak + (end - peak) sqrt((s - W - S) / D) in the cooldown.
    schedule = aj.schedules.warmup_stable_decay_schedule(
        0.1, 1.0, 20, 30, 40, end_value=0.05, decay_shape="1-sqrt"
    )
    s = np.arange(len(STEPS), dtype=np.float64)
    cooldown = np.clip((s - 50) / 40, 0.0, 1.0)
    expected = np.where(s < 20, 0.1 + 0.9 * s / 20, 0.05 + (1.0 - 0.05) * (1 - np.sqrt(cooldown)))
    np.testing.assert_allclose(evaluate(schedule), expected, rtol=RTOL, atol=0)
    assert expected[50] == 1.0 and expected[90] == 0.05


# -- the numbers of every schedule are differentiable ---------------------------------------

NAMES = sorted(PAIRS)
SCHEDULES = {name: PAIRS[name][0] for name in NAMES}
WEIGHTS = jnp.cos(0.1 * STEPS.astype(jnp.float64)) + 1.5  # a generic linear functional


def weighted_sums(leaves, rebuild):
    """``sum_s w_s schedule(s)`` for every schedule, as one vector (one entry per name)."""
    schedules = rebuild(leaves)
    return jnp.stack([jnp.sum(WEIGHTS * jax.vmap(schedules[n])(STEPS)) for n in NAMES])


def test_every_number_of_every_schedule_gets_the_finite_difference_gradient():
    leaves, rebuild = aj.meta.differentiable_leaves(SCHEDULES)
    owners = [
        index
        for index, name in enumerate(NAMES)
        for _ in aj.meta.differentiable_leaves(SCHEDULES[name])[0]
    ]
    assert len(owners) == len(leaves)
    # Central differences for every scalar entry of every leaf, evaluated in one vmapped call.
    probes, where = [], []
    for i, leaf in enumerate(leaves):
        for entry in np.ndindex(np.shape(leaf)):
            h = 1e-6 * max(abs(float(np.asarray(leaf)[entry])), 0.1)
            for sign in (1.0, -1.0):
                values = list(leaves)
                values[i] = jnp.asarray(leaf).at[entry].add(sign * h)
                probes.append(values)
            where.append((i, entry, h))
    batched = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *probes)

    def gradient_and_probes(values, batched):
        total = lambda v: jnp.sum(weighted_sums(v, rebuild))  # noqa: E731
        return jax.grad(total)(values), jax.vmap(lambda v: weighted_sums(v, rebuild))(batched)

    program = jax.jit(gradient_and_probes).lower(leaves, batched).compile()
    grads, sums = program(leaves, batched)
    for k, (i, entry, h) in enumerate(where):
        owner = owners[i]
        assert np.all(np.isfinite(grads[i])), NAMES[owner]
        finite_difference = (sums[2 * k, owner] - sums[2 * k + 1, owner]) / (2 * h)
        np.testing.assert_allclose(
            np.asarray(grads[i])[entry],
            finite_difference,
            rtol=1e-6,
            atol=1e-7,
            err_msg=f"{NAMES[owner]} leaf {i} {entry}",
        )
    checked = len(where)
    assert checked >= 2 * len(NAMES)


# -- inside an optimizer: optax's numbers, and new numbers never recompile ----------------

TARGET = {"w": jnp.array([0.5, -1.0, 2.0]), "m": jnp.array([[1.0, -0.5], [0.25, 3.0]])}


def adam_trajectory(tx):
    """25 steps of ``tx`` on a quadratic with two leaves (one compiled scan)."""

    def loss(p):
        return sum(
            jnp.sum(jnp.arange(1.0, 1.0 + p[k].size).reshape(p[k].shape) * (p[k] - TARGET[k]) ** 2)
            for k in p
        )

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    start = jax.tree_util.tree_map(jnp.zeros_like, TARGET)
    return jax.lax.scan(step, (start, tx.init(start)), None, length=25)[1]


def as_optax(schedule):
    """optax's schedule built from the numbers held by one of ours (its constructor, its arguments)."""
    s = schedule
    if isinstance(s, aj.schedules.JoinSchedules):
        return optax.join_schedules([as_optax(x) for x in s.schedules], list(s.boundaries))
    if isinstance(s, aj.schedules.WarmupStableDecaySchedule):
        if s.decay_shape == "linear":
            cooldown = optax.linear_schedule(s.peak_value, s.end_value, s.decay_steps)
        else:
            alpha = s.end_value / s.peak_value
            cooldown = optax.cosine_decay_schedule(s.peak_value, s.decay_steps, alpha=alpha)
        pieces = [optax.constant_schedule(s.peak_value), cooldown]
        boundaries = [s.warmup_steps + s.stable_steps]
        if s.warmup_steps:
            pieces.insert(0, optax.linear_schedule(s.init_value, s.peak_value, s.warmup_steps))
            boundaries.insert(0, s.warmup_steps)
        return optax.join_schedules(pieces, boundaries)
    if isinstance(
        s, (aj.schedules.PiecewiseConstantSchedule, aj.schedules.PiecewiseInterpolateSchedule)
    ):
        table = {b: float(f) for b, f in zip(s.boundaries, np.asarray(s.scales))}
        if isinstance(s, aj.schedules.PiecewiseConstantSchedule):
            return optax.piecewise_constant_schedule(s.init_value, table)
        return optax.piecewise_interpolate_schedule(s.interpolate_type, s.init_value, table)
    by_class = {
        aj.schedules.Constant: optax.constant_schedule,
        aj.schedules.CosineDecay: optax.cosine_decay_schedule,
        aj.schedules.ExponentialDecay: optax.exponential_decay,
        aj.schedules.LinearSchedule: optax.linear_schedule,
        aj.schedules.PolynomialSchedule: optax.polynomial_schedule,
        aj.schedules.CosineOnecycleSchedule: optax.cosine_onecycle_schedule,
        aj.schedules.LinearOnecycleSchedule: optax.linear_onecycle_schedule,
        aj.schedules.WarmupCosineDecaySchedule: optax.warmup_cosine_decay_schedule,
        aj.schedules.WarmupExponentialDecaySchedule: optax.warmup_exponential_decay_schedule,
    }
    fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    return by_class[type(s)](**fields)


def optax_adam(schedule):
    # Exact float64 steps (optax evaluates some schedules in float32 for an int32 count).
    return optax.adam(lambda count: schedule(count.astype(jnp.float64)), b1=0.8, b2=0.95, eps=1e-3)


def test_schedules_drive_adam_with_optax_numbers_and_new_values_do_not_recompile():
    traces = []

    @jax.jit
    def ours(schedules):
        traces.append(None)  # runs once per compilation
        return {
            n: adam_trajectory(aj.adam(s, b1=0.8, b2=0.95, eps=1e-3)) for n, s in schedules.items()
        }

    def theirs(schedules):
        # optax's schedules are closures: a new program for each set of numbers.
        def run():
            with jax.numpy_dtype_promotion("standard"):
                return {n: adam_trajectory(optax_adam(as_optax(s))) for n, s in schedules.items()}

        return jax.jit(run).lower().compile()()

    # float64 arrays on both sides (a Python float is weakly typed: another signature).
    first = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), SCHEDULES)
    changed = jax.tree_util.tree_map(lambda x: 1.25 * x, first)
    for current in (first, changed):
        expected = theirs(current)
        got = ours(current)
        for name in NAMES:
            for a, b in zip(
                jax.tree_util.tree_leaves(got[name]), jax.tree_util.tree_leaves(expected[name])
            ):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
    assert len(traces) == 1  # the second set of numbers reused the compiled program
    first, second = ours(first), ours(changed)
    for name in NAMES:
        assert not np.allclose(first[name]["w"], second[name]["w"]), name


# -- bad inputs raise at construction, naming the argument ----------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: aj.schedules.polynomial_schedule(1.0, 0.1, 2.0, transition_steps=0),
            "transition_steps",
        ),
        (
            lambda: aj.schedules.polynomial_schedule(1.0, 0.1, 2.0, 10, transition_begin=-1),
            "transition_begin",
        ),
        (
            lambda: aj.schedules.piecewise_constant_schedule(1.0, {10: -0.5}),
            r"boundaries_and_scales\[10\]",
        ),
        (
            lambda: aj.schedules.piecewise_constant_schedule(1.0, {-3: 0.5}),
            "boundaries_and_scales key -3",
        ),
        (lambda: aj.schedules.piecewise_constant_schedule(1.0, [0.5]), "boundaries_and_scales"),
        (lambda: aj.schedules.cosine_onecycle_schedule(100, 0.5, pct_start=1.5), "pct_start"),
        (lambda: aj.schedules.linear_onecycle_schedule(0, 0.5), "transition_steps"),
        (lambda: aj.schedules.warmup_constant_schedule(0.0, 1.0, warmup_steps=0), "warmup_steps"),
        (lambda: aj.schedules.warmup_cosine_decay_schedule(0.0, 1.0, 20, 20), "decay_steps"),
        (
            lambda: aj.schedules.warmup_exponential_decay_schedule(0.0, 1.0, 5, 0, 0.5),
            "transition_steps",
        ),
        (lambda: aj.schedules.sgdr_schedule([]), "at least one cycle"),
        (lambda: aj.schedules.warmup_stable_decay_schedule(0.0, 1.0, 5, 5, 0), "decay_steps"),
        (lambda: aj.schedules.warmup_stable_decay_schedule(0.0, 1.0, 5, -1, 5), "stable_steps"),
        (
            lambda: aj.schedules.warmup_stable_decay_schedule(
                0.0, 1.0, 5, 5, 5, decay_shape="step"
            ),
            "decay_shape",
        ),
    ],
)
def test_bad_schedule_arguments_are_named(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()
