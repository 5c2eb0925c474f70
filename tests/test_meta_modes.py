"""Every hypergradient mode gives the same numbers, and they are the derivative.

For every named optimizer and every numeric hyperparameter: reverse mode, forward mode
and a checkpointed reverse mode agree to rtol 1e-8 (float64), and agree with central
finite differences of the meta-objective.  The three checkpointing policies take turns
over the catalog (each runs on a third of it), and all three run on optimizers chosen
for the kinds of state a policy must carry through its recomputation: integer counts,
a PRNG key, a running maximum, factored moments, an interpolated sequence, a learned
step size, a stored previous gradient and a sign memory.  The problem
:math:`L(w) = (w_0-1)^2 + w_0 w_1^2` started at :math:`w = (0.1, 0)` keeps
:math:`w_1 = 0` with a gradient that is exactly zero at every step: the case where a
naive square root of the second moment turns meta-gradients into NaN.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax.meta import (
    Bisection,
    EveryStep,
    Forward,
    Reverse,
    SqrtBlocks,
    differentiable_leaves,
    unroll,
    unrolled_objective,
)
from tests.optimizer_catalog import NAMED_OPTIMIZERS
from tests.test_differentiability import RUNNING_MAXIMUM

MODES = {
    "reverse": Reverse(),
    "reverse_step": Reverse(checkpointing=EveryStep()),
    "reverse_sqrt": Reverse(checkpointing=SqrtBlocks()),
    "reverse_recursive": Reverse(checkpointing=Bisection()),
    "forward": Forward(),
}
CHECKPOINTED = ("reverse_step", "reverse_sqrt", "reverse_recursive")
# Every checkpointing policy on these (the state kinds of the module docstring): adam's
# count, noisy_sgd's key, amsgrad's maximum, adafactor's factored moments,
# schedule_free_adamw's interpolation, prodigy's step size, optimistic_adam's previous
# gradient, rprop's sign memory.
ALL_POLICIES = {
    "adam",
    "noisy_sgd",
    "amsgrad",
    "adafactor",
    "schedule_free_adamw",
    "prodigy",
    "optimistic_adam",
    "rprop",
}
NUM_STEPS = 4  # short: compile time, not the horizon, is what these tests pay for
W0 = jnp.array([0.1, 0.0])


def loss(w):
    return (w[0] - 1.0) ** 2 + w[0] * w[1] ** 2


def meta_loss(run):
    # Final loss plus the mean of the trace: depends on every step, not only the last.
    return loss(run.params) + jnp.mean(run.losses)


OBJECTIVE = unrolled_objective(W0, loss, meta_loss, num_steps=NUM_STEPS)

CASES = dict(NAMED_OPTIMIZERS)
# Adam with its default eps_root = 0: sqrt(v) at v = 0 for the coordinate w_1.
# Adam at its default eps_root = 0 (sqrt(v) at v = 0 for the coordinate w_1), with a
# scheduled learning rate whose own numbers are hyperparameters too.
CASES["adam_eps_root_zero_cosine"] = (
    aj.adam,
    dict(learning_rate=aj.schedules.cosine_decay(0.03, NUM_STEPS, 0.1), b1=0.8, eps=1e-3),
)


def finite_difference_gradient(tx):
    """Central differences per leaf (one-sided, second order, at a hyperparameter at 0)."""
    leaves, rebuild = differentiable_leaves(tx)
    flat = jnp.concatenate([jnp.ravel(x) for x in leaves])
    offsets = np.cumsum([0] + [int(np.size(x)) for x in leaves])

    def objective_at(vector):
        values = [
            vector[a:b].reshape(jnp.shape(x)).astype(x.dtype)
            for x, a, b in zip(leaves, offsets[:-1], offsets[1:])
        ]
        return OBJECTIVE(rebuild(values))

    steps = 1e-5 * jnp.maximum(jnp.abs(flat), 1e-3)
    at_zero = flat == 0.0
    directions = jnp.diag(steps)
    # x+h with x-h (central), or x+h with x+2h (one-sided) for each coordinate.
    second = jnp.where(at_zero[:, None], 2 * directions, -directions)
    points = jnp.concatenate([flat + directions, flat + second, flat[None]])
    values = jax.vmap(objective_at)(points)
    k = flat.size
    plus, other, center = values[:k], values[k : 2 * k], values[-1]
    central = (plus - other) / (2 * steps)
    one_sided = (-3 * center + 4 * plus - other) / (2 * steps)
    return jnp.where(at_zero, one_sided, central)


def modes_for(name):
    """Reverse, forward and the checkpointed mode(s) this optimizer runs under."""
    if name in ALL_POLICIES:
        return tuple(MODES)
    turn = CHECKPOINTED[sorted(CASES).index(name) % len(CHECKPOINTED)]
    return ("reverse", turn, "forward")


@functools.partial(jax.jit, static_argnums=1)
def mode_gradients_and_finite_differences(tx, modes):
    """One compiled program per optimizer: its modes, and the finite differences."""
    grads = {name: aj.meta.hypergradient(OBJECTIVE, tx, mode=MODES[name]) for name in modes}
    return grads, finite_difference_gradient(tx)


def as_vector(tree):
    leaves, _ = differentiable_leaves(tree)
    return jnp.concatenate([jnp.ravel(x) for x in leaves])


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_mode_agrees_with_finite_differences(name):
    factory, kwargs = CASES[name]
    tx = factory(**kwargs)
    trees, finite_differences = mode_gradients_and_finite_differences(tx, modes_for(name))
    for tree in trees.values():  # shaped like the transformation
        assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(tx)
    grads = {mode: as_vector(tree) for mode, tree in trees.items()}
    reference = grads["reverse"]
    assert reference.size == as_vector(tx).size >= 1
    assert np.all(np.isfinite(reference)), reference
    assert np.any(reference != 0.0)
    for mode, grad in grads.items():
        np.testing.assert_allclose(grad, reference, rtol=1e-8, atol=1e-14, err_msg=mode)
    if name in RUNNING_MAXIMUM:
        return  # see tests/test_differentiability.py: checked at a smaller step there
    scale = np.max(np.abs(reference))
    np.testing.assert_allclose(reference, finite_differences, rtol=1e-5, atol=1e-7 * scale)


def test_each_checkpointing_policy_runs_on_a_third_of_the_catalog_and_on_every_state_kind():
    counts = {mode: sum(mode in modes_for(name) for name in CASES) for mode in CHECKPOINTED}
    assert ALL_POLICIES <= set(CASES)
    assert all(count >= len(CASES) // 3 for count in counts.values()), counts
    assert all(len(set(CHECKPOINTED) & set(modes_for(name))) >= 1 for name in CASES)


def test_zero_gradient_coordinate_stays_put_and_unroll_matches_a_python_loop():
    tx = aj.adam(0.02)
    run = unroll(tx, W0, loss, num_steps=NUM_STEPS)
    params, state, expected_losses = W0, tx.init(W0), []

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return aj.apply_updates(params, updates), state

    for _ in range(NUM_STEPS):
        expected_losses.append(loss(params))
        params, state = step(params, state)
    assert run.params[1] == 0.0
    np.testing.assert_allclose(run.params, params, rtol=1e-13)
    np.testing.assert_allclose(run.losses, jnp.stack(expected_losses), rtol=1e-13)
    assert int(run.opt_state.count) == NUM_STEPS


@pytest.mark.parametrize("policy", [EveryStep(), SqrtBlocks(), Bisection()], ids=repr)
@pytest.mark.parametrize("length", [13, 16])
def test_checkpointed_scans_match_lax_scan_values_and_gradients(policy, length):
    # 13 steps: uneven blocks and remainders; 16: exact powers and squares.
    xs = jnp.linspace(0.5, 1.5, 2 * length).reshape(length, 2)

    def run(carry, rate, scheme):
        def body(c, x):
            c = c - rate * jnp.sin(c * x) + 0.1 * x
            return c, jnp.sum(c**2)

        final, ys = aj.meta.checkpointed_scan(body, carry, xs, length, scheme)
        return jnp.sum(final**3) + jnp.sum(ys), ys

    start, rate = jnp.array([0.3, -0.2]), jnp.asarray(0.7)
    grad = jax.jit(jax.grad(run, argnums=(0, 1), has_aux=True), static_argnums=2)
    (d_start, d_rate), ys = grad(start, rate, policy)
    (plain_d_start, plain_d_rate), plain_ys = grad(start, rate, None)
    np.testing.assert_array_equal(ys, plain_ys)
    np.testing.assert_allclose(d_start, plain_d_start, rtol=1e-12)
    np.testing.assert_allclose(d_rate, plain_d_rate, rtol=1e-12)


def test_callable_data_sees_steps_counted_from_the_state():
    def batch_loss(w, step):
        return jnp.sum((w - step.astype(w.dtype)) ** 2)

    first = unroll(aj.sgd(0.1), W0, batch_loss, lambda step: step, num_steps=4)
    second = unroll(
        aj.sgd(0.1), first.params, batch_loss, lambda s: s, num_steps=3, opt_state=first.opt_state
    )
    whole = unroll(aj.sgd(0.1), W0, batch_loss, lambda step: step, num_steps=7)
    np.testing.assert_allclose(second.params, whole.params, rtol=1e-14)
    np.testing.assert_allclose(
        jnp.concatenate([first.losses, second.losses]), whole.losses, rtol=1e-14
    )


def test_array_data_indexed_by_step_and_length_checked():
    data = {"target": jnp.arange(10.0).reshape(5, 2)}

    def batch_loss(w, batch):
        return jnp.sum((w - batch["target"]) ** 2)

    run = unroll(aj.sgd(0.5), W0, batch_loss, data)
    # lr 0.5 on (w - x)^2 jumps exactly to x: the last target.
    np.testing.assert_allclose(run.params, data["target"][-1])
    with pytest.raises(ValueError, match="num_steps=4"):
        unroll(aj.sgd(0.5), W0, batch_loss, data, num_steps=4)
    with pytest.raises(ValueError, match="num_steps is required"):
        unroll(aj.sgd(0.5), W0, loss)


def test_a_mode_or_policy_that_is_not_an_object_is_rejected():
    with pytest.raises(TypeError, match="mode must be a Mode object"):
        aj.meta.hypergradient(OBJECTIVE, aj.sgd(0.1), mode="reverse")
    with pytest.raises(TypeError, match="checkpointing must be a Checkpointing policy"):
        unroll(aj.sgd(0.1), W0, loss, num_steps=2, checkpointing="binomial")
    with pytest.raises(TypeError, match="checkpointing must be a Checkpointing policy"):
        Reverse(checkpointing="sqrt")


@pytest.mark.parametrize("name", sorted(MODES))
def test_a_meta_objective_that_is_not_a_scalar_is_rejected_in_every_mode(name):
    def vector_objective(tx):
        return jnp.stack([OBJECTIVE(tx)])  # shape (1,): not a scalar

    with pytest.raises(TypeError, match=r"must return a scalar, got shape \(1,\)"):
        aj.meta.hypergradient(vector_objective, aj.sgd(0.1), mode=MODES[name])


def test_reverse_mode_checkpoints_every_unroll_inside_the_objective():
    """The user's objective takes no checkpointing argument: the mode's policy reaches the
    unroll inside it, so the backward pass stores less."""
    size = 1024

    def objective(tx):  # written by a user: no checkpointing argument anywhere
        quadratic = lambda w: jnp.sum((w - 1.0) ** 2)  # noqa: E731
        return quadratic(unroll(tx, jnp.zeros(size), quadratic, num_steps=64).params)

    def temp_bytes(mode):
        program = jax.jit(lambda t: aj.meta.hypergradient(objective, t, mode=mode))
        return (
            program.lower(aj.sgd(0.1, momentum=0.9)).compile().memory_analysis().temp_size_in_bytes
        )

    assert temp_bytes(MODES["reverse_sqrt"]) < 0.5 * temp_bytes(MODES["reverse"])
