"""Reparameterisations keep hyperparameters valid; populations equal separate runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax.meta import (
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    differentiable_leaves,
    evaluate_population,
    from_unconstrained,
    meta_train_population,
    stack_population,
    to_unconstrained,
    unrolled_objective,
    unstack_population,
)
from tests.optimizer_catalog import NAMED_OPTIMIZERS

W0 = jnp.array([0.1, 0.0, -0.5])


def loss(w):
    return (w[0] - 1.0) ** 2 + w[0] * w[1] ** 2 + 0.5 * (w[2] + 0.3) ** 4


OBJECTIVE = unrolled_objective(W0, loss, lambda run: loss(run.params), num_steps=6)


@pytest.mark.parametrize(
    "rule, values",
    [
        (LOG, [1e-12, 1e-3, 0.5, 3.0, 1e6]),
        (LOG_ONE_MINUS, [1e-9, 0.1, 0.5, 0.9, 0.999, 1 - 1e-12]),
        (SOFTPLUS, [1e-12, 1e-4, 0.1, 1.0, 50.0, 1e4]),
    ],
)
def test_reparameterizations_round_trip(rule, values):
    x = jnp.asarray(values)
    np.testing.assert_allclose(rule.constrain(rule.unconstrain(x)), x, rtol=1e-10)
    # For z = -20, 1 - beta = 2e-9 is stored inside beta to absolute precision 1e-16 only.
    z = jnp.linspace(-20.0, 20.0, 41)
    np.testing.assert_allclose(rule.unconstrain(rule.constrain(z)), z, rtol=1e-9, atol=1e-6)


def test_betas_stay_strictly_inside_the_unit_interval_for_any_value():
    z = jnp.concatenate([jnp.linspace(-1e4, 1e4, 2001), jnp.array([-jnp.inf, jnp.inf])])
    for dtype in (jnp.float64, jnp.float32, jnp.bfloat16):
        beta = LOG_ONE_MINUS.constrain(z.astype(dtype))
        assert beta.dtype == dtype
        assert bool(jnp.all(beta > 0)) and bool(jnp.all(beta < 1)), dtype


def test_log_one_minus_is_log_of_one_minus_beta_near_one():
    # z = log(1 - beta) - log(beta): the -log(beta) term vanishes as beta -> 1.
    beta = jnp.asarray([0.99, 0.999, 0.9999])
    np.testing.assert_allclose(LOG_ONE_MINUS.unconstrain(beta), jnp.log1p(-beta), atol=1.1e-2)


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_any_unconstrained_values_give_valid_hyperparameters(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    z = to_unconstrained(tx)
    # Round trip at the catalog's values.
    for got, want in zip(
        jax.tree_util.tree_leaves(from_unconstrained(z)), jax.tree_util.tree_leaves(tx)
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    # Random unconstrained values: every reparameterised field lands in its range.
    leaves, rebuild = differentiable_leaves(z)
    key = jax.random.PRNGKey(0)
    for scale in (1.0, 30.0):
        key, subkey = jax.random.split(key)
        noise = jax.random.normal(subkey, (len(leaves),), jnp.float64) * scale
        wild = from_unconstrained(rebuild([x + n for x, n in zip(leaves, noise)]))
        rules = aj.meta.reparameterizations(tx)
        assert rules, "every numeric hyperparameter has a declared reparameterisation"
        for path, value in jax.tree_util.tree_flatten_with_path(wild)[0]:
            where = jax.tree_util.keystr(path).removeprefix(".")
            value, rule = float(value), rules.get(where)
            if rule is LOG_ONE_MINUS:
                assert 0.0 < value < 1.0, (where, value)
            elif rule is not None and rule is not aj.meta.IDENTITY:
                assert 0.0 <= value < np.inf, (where, value)


def test_gradient_through_the_reparameterization_matches_finite_differences():
    tx = aj.adamw(0.05, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.2)
    z_leaves, rebuild = differentiable_leaves(to_unconstrained(tx))
    z = jnp.stack(z_leaves)
    h = 1e-5

    def objective_of_z(vector):
        return OBJECTIVE(from_unconstrained(rebuild(list(vector))))

    @jax.jit
    def gradients_and_finite_differences(z):
        shifts = h * jnp.eye(z.size)
        values = jax.vmap(objective_of_z)(jnp.concatenate([z + shifts, z - shifts]))
        plus, minus = jnp.split(values, 2)
        direct = aj.meta.hypergradient(OBJECTIVE, tx)
        return jax.grad(objective_of_z)(z), (plus - minus) / (2 * h), direct

    grads, finite_differences, direct = gradients_and_finite_differences(z)
    np.testing.assert_allclose(grads, finite_differences, rtol=1e-6, atol=1e-12)
    # Chain rule: dF/dz = dF/dlambda * dlambda/dz, with lambda = e^z for the learning rate.
    lr_index = z.size - 1  # the last block holds the learning rate
    np.testing.assert_allclose(
        grads[lr_index], direct.transforms[-1].learning_rate * 0.05, rtol=1e-10
    )


SETTINGS = [aj.adam(lr, b1=b1) for lr, b1 in [(0.01, 0.9), (0.05, 0.5), (0.2, 0.95)]]


def test_population_evaluation_equals_separate_runs():
    population = stack_population(SETTINGS)
    values = jax.jit(lambda p: evaluate_population(OBJECTIVE, p))(population)
    separate = jnp.stack([OBJECTIVE(tx) for tx in SETTINGS])
    np.testing.assert_allclose(values, separate, rtol=1e-12)
    for member, tx in zip(unstack_population(population), SETTINGS):
        assert jax.tree_util.tree_structure(member) == jax.tree_util.tree_structure(tx)


def test_population_meta_training_equals_separate_meta_training_loops():
    outer = aj.adam(0.1)
    num_meta_steps = 3

    @jax.jit
    def train_all(population):
        return meta_train_population(OBJECTIVE, population, outer, num_meta_steps)

    result = train_all(stack_population(SETTINGS))

    # The same meta-training, one member at a time, written out by hand.
    _, rebuild = differentiable_leaves(to_unconstrained(SETTINGS[0]))

    @jax.jit
    def meta_step(z, state):
        value, grads = jax.value_and_grad(lambda v: OBJECTIVE(from_unconstrained(rebuild(v))))(z)
        updates, state = outer.update(grads, state, z)
        return aj.apply_updates(z, updates), state, value

    for index, tx in enumerate(SETTINGS):
        z, _ = differentiable_leaves(to_unconstrained(tx))
        state, losses = outer.init(z), []
        for _ in range(num_meta_steps):
            z, state, value = meta_step(z, state)
            losses.append(value)
        np.testing.assert_allclose(result.meta_losses[index], jnp.stack(losses), rtol=1e-10)
        expected = jax.tree_util.tree_leaves(from_unconstrained(rebuild(z)))
        got = jax.tree_util.tree_leaves(unstack_population(result.population)[index])
        np.testing.assert_allclose(jnp.stack(got), jnp.stack(expected), rtol=1e-10)
    # Meta-training helps every member.
    assert bool(jnp.all(result.meta_losses[:, -1] < result.meta_losses[:, 0]))


def test_population_members_must_share_a_structure():
    with pytest.raises(ValueError, match="share one structure"):
        stack_population([aj.adam(0.1), aj.sgd(0.1)])
