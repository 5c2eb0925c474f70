"""Reading and replacing hyperparameters of nested chains, and reading a state's step count."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import adaptive_jax as aj


def quadratic_grad(w):
    return jax.grad(lambda w: 0.5 * jnp.sum(jnp.arange(1.0, 4.0) * w**2))(w)


def test_hyperparameters_lists_every_numeric_field_by_path():
    tx = aj.chain(aj.clip_by_global_norm(2.0), aj.adamw(0.01, b1=0.8, b2=0.95, weight_decay=0.3))
    assert aj.hyperparameters(tx) == {
        "transforms[0].max_norm": 2.0,
        "transforms[1].transforms[0].decay": 0.8,
        "transforms[1].transforms[1].decay": 0.95,
        "transforms[1].transforms[3].eps": 1e-8,
        "transforms[1].transforms[3].eps_root": 0.0,
        "transforms[1].transforms[4].weight_decay": 0.3,
        "transforms[1].transforms[5].learning_rate": 0.01,
    }


def test_hyperparameter_paths_are_the_jax_key_paths_of_the_leaves():
    tx = aj.chain(aj.clip_by_global_norm(2.0), aj.adam(0.01))
    leaf_paths = {
        jax.tree_util.keystr(path).removeprefix(".")
        for path, _ in jax.tree_util.tree_flatten_with_path(tx)[0]
    }
    assert set(aj.hyperparameters(tx)) == leaf_paths


@pytest.mark.parametrize(
    "name",
    [
        "b2",  # the name adam took
        "transforms[1].b2",  # the same, with the path of the chain that records it
        "transforms[1].transforms[1].decay",  # the field's path
        ".transforms[1].decay",  # a trailing part of it
        "[1].transforms[1].decay",
    ],
)
def test_get_hyperparameter_by_name_or_by_path(name):
    tx = aj.chain(aj.clip_by_global_norm(1.0), aj.adam(b2=0.97))
    assert aj.get_hyperparameter(tx, name) == 0.97


def test_ambiguous_name_raises_and_lists_the_candidates():
    tx = aj.chain(aj.normalize_by_global_norm(eps=0.5), aj.adam())
    with pytest.raises(
        aj.HyperparameterLookupError, match=r"transforms\[0\]\.eps, .*transforms\[3\]\.eps"
    ):
        aj.get_hyperparameter(tx, "eps")
    assert aj.get_hyperparameter(tx, "transforms[0].eps") == 0.5
    assert aj.get_hyperparameter(tx, "transforms[1].transforms[3].eps") == 1e-8


def test_missing_name_raises_and_lists_what_exists():
    with pytest.raises(
        aj.HyperparameterLookupError,
        match=r"no hyperparameter 'beta1'.*b1, b2.*transforms\[0\]\.decay",
    ):
        aj.get_hyperparameter(aj.adam(), "beta1")


@pytest.mark.parametrize(
    "tx, name, value",
    [
        (aj.sgd(0.1, momentum=0.8), "momentum", 0.8),
        (aj.rmsprop(0.1, decay=0.7, momentum=0.6), "decay", 0.7),
        (aj.rmsprop(0.1, decay=0.7, momentum=0.6), "momentum", 0.6),
        (aj.adamw(0.1, b1=0.85, b2=0.95), "b1", 0.85),
        (aj.yogi(0.1, b1=0.85, b2=0.95), "b2", 0.95),
        (aj.sign_descent(0.1, momentum=0.5), "momentum", 0.5),
    ],
)
def test_hyperparameters_are_found_by_the_names_their_constructor_took(tx, name, value):
    assert aj.get_hyperparameter(tx, name) == value
    changed = aj.set_hyperparameter(tx, name, 0.25)
    assert aj.get_hyperparameter(changed, name) == 0.25
    assert jax.tree_util.tree_structure(changed) == jax.tree_util.tree_structure(tx)


def test_static_configuration_is_not_a_hyperparameter():
    tx = aj.sgd(0.1, momentum=0.9, nesterov=True)
    assert "transforms[0].nesterov" not in aj.hyperparameters(tx)
    with pytest.raises(aj.HyperparameterLookupError):
        aj.set_hyperparameter(tx, "nesterov", False)


def test_optax_transformations_cannot_be_inspected():
    with pytest.raises(TypeError, match="optax"):
        aj.hyperparameters(optax.adam(1e-3))


def test_set_hyperparameter_changes_only_that_value_and_keeps_the_treedef():
    tx = aj.chain(aj.clip_by_global_norm(1.0), aj.adam(0.01))
    new = aj.set_hyperparameter(tx, "learning_rate", 0.5)
    expected = dict(aj.hyperparameters(tx), **{"transforms[1].transforms[4].learning_rate": 0.5})
    assert aj.hyperparameters(new) == expected
    assert aj.get_hyperparameter(tx, "learning_rate") == 0.01  # the original is untouched
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(tx)


def test_set_hyperparameter_validates_the_new_value():
    with pytest.raises(ValueError, match=r"decay=1\.5 is invalid"):
        aj.set_hyperparameter(aj.adam(), "b1", 1.5)


def test_replacing_the_learning_rate_does_not_recompile_a_jitted_step():
    w = jnp.array([1.0, -2.0, 0.5])
    traces = []

    @jax.jit
    def step(tx, w, state):
        traces.append(tx)  # runs only when jit traces (compiles) the function
        updates, state = tx.update(quadratic_grad(w), state, w)
        return aj.apply_updates(w, updates), state

    tx = aj.adam(0.1)
    state = tx.init(w)
    for rate in (0.1, 0.05, 0.01):
        tx = aj.set_hyperparameter(tx, "learning_rate", rate)
        w, state = step(tx, w, state)
    assert len(traces) == 1


def test_state_stays_valid_after_a_learning_rate_change_like_torch_param_groups():
    w0 = np.array([1.0, -2.0, 0.5])
    tx = aj.adam(0.1, b1=0.8, b2=0.9)
    w, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    for step in range(6):
        if step == 3:
            tx = aj.set_hyperparameter(tx, "learning_rate", 0.02)
        updates, state = tx.update(quadratic_grad(w), state, w)
        w = aj.apply_updates(w, updates)

    weights = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([weights], lr=0.1, betas=(0.8, 0.9))
    scales = torch.arange(1.0, 4.0, dtype=torch.float64)
    for step in range(6):
        if step == 3:
            reference.param_groups[0]["lr"] = 0.02
        reference.zero_grad()
        (0.5 * torch.sum(scales * weights**2)).backward()
        reference.step()
    np.testing.assert_allclose(w, weights.detach().numpy(), rtol=1e-12)


def test_set_hyperparameter_is_differentiable():
    # One SGD step on L(w) = w^2/2 from w: L(w(1 - a)) = w^2 (1 - a)^2 / 2,
    # so dL/da = -w^2 (1 - a).
    w = jnp.array(3.0)

    def loss_after_one_step(rate):
        tx = aj.set_hyperparameter(aj.sgd(1.0), "learning_rate", rate)
        updates, _ = tx.update(w, tx.init(w), w)
        return 0.5 * aj.apply_updates(w, updates) ** 2

    np.testing.assert_allclose(jax.grad(loss_after_one_step)(0.1), -9.0 * 0.9, rtol=1e-12)


def test_step_count_counts_updates():
    tx = aj.adam()
    w = jnp.ones(2)
    state = tx.init(w)
    assert int(aj.step_count(state)) == 0
    for _ in range(4):
        _, state = tx.update(w, state, w)
    assert int(aj.step_count(state)) == 4


def test_step_count_finds_the_counter_inside_an_optax_chain():
    tx = optax.chain(optax.clip(1.0), aj.adam())
    w = jnp.ones(2)
    state = tx.init(w)
    for _ in range(2):
        _, state = tx.update(w, state, w)
    assert int(aj.step_count(state)) == 2


def test_step_count_refuses_a_state_with_two_counters():
    tx = optax.chain(aj.sgd(0.1), aj.sgd(0.1))
    with pytest.raises(ValueError, match="found 2"):
        aj.step_count(tx.init(jnp.ones(2)))


def test_current_learning_rate_is_the_rate_of_the_next_update():
    schedule = aj.schedules.cosine_decay(0.5, decay_steps=10)
    tx = aj.sgd(schedule)
    w = jnp.array([2.0])
    state = tx.init(w)
    for step in range(5):
        rate = aj.current_learning_rate(tx, state)
        np.testing.assert_allclose(rate, 0.5 * 0.5 * (1 + np.cos(np.pi * step / 10)), rtol=1e-12)
        updates, state = tx.update(w, state, w)  # plain SGD: update = -rate * gradient
        np.testing.assert_allclose(updates, -rate * w, rtol=1e-12)


def test_current_learning_rate_of_a_plain_function_schedule_and_of_per_parameter_rates():
    tx = aj.sgd(lambda step: 1.0 / jnp.asarray(step + 1, float))
    state = tx.init(jnp.ones(1))
    _, state = tx.update(jnp.ones(1), state)
    assert aj.current_learning_rate(tx, state) == 0.5

    tx = aj.sgd({"head": aj.schedules.linear_schedule(1.0, 0.0, 4), "body": 0.3})
    params = {"head": jnp.ones(1), "body": jnp.ones(2)}
    state = tx.init(params)
    _, state = tx.update(params, state)
    rates = aj.current_learning_rate(tx, state)
    assert rates["body"] == 0.3
    np.testing.assert_allclose(rates["head"], 0.75, rtol=1e-12)


def test_get_hyperparameter_with_a_state_evaluates_any_schedule():
    decay = aj.schedules.exponential_decay(0.1, 0.5)
    tx = aj.adamw(1e-3, weight_decay=decay)
    state = tx.init(jnp.ones(2))
    for _ in range(3):
        _, state = tx.update(jnp.ones(2), state, jnp.ones(2))
    assert aj.get_hyperparameter(tx, "weight_decay") is decay
    np.testing.assert_allclose(aj.get_hyperparameter(tx, "weight_decay", state), 0.1 * 0.5**3)
