"""Gradients that do not line up with the parameters or the state fail with a clear error.

The error is a :class:`adaptive_jax.TreeMismatchError` (a ``ValueError``) that names the
first differing path and what each side has there, raised before any arithmetic (so
also at trace time under ``jax.jit``), never a traceback from inside ``tree_map``.

Decided behaviour, documented in ``docs/bad_inputs.md``:

* ``None`` is an empty subtree (JAX's convention): a parameter that is ``None`` in the
  parameters, the gradients and hence the state is skipped; ``None`` on one side only is a
  mismatch.
* Masking is done by composition: ``optax.masked(aj_transform, mask)`` runs an
  adaptive_jax transform on the selected leaves only (the others pass through unchanged),
  and per-parameter hyperparameter trees (``weight_decay={"b": 0.0, ...}``) switch a
  block off for some leaves.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS

PARAMS = {"layer": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, "scale": jnp.asarray(1.0)}


def grads_like(params, value=0.5):
    return jax.tree_util.tree_map(lambda p: jnp.full_like(p, value), params)


def update(tx, grads, params=PARAMS):
    return tx.update(grads, tx.init(params), params)


def replace_leaf(tree, path_keys, value):
    """A copy of the nested dict ``tree`` with the entry at ``path_keys`` replaced."""
    tree = dict(tree)
    head, *rest = path_keys
    tree[head] = value if not rest else replace_leaf(tree[head], rest, value)
    return tree


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_every_optimizer_names_the_path_of_a_shape_mismatch(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    grads = replace_leaf(grads_like(PARAMS), ["layer", "b"], jnp.ones(4))
    with pytest.raises(aj.TreeMismatchError) as error:
        update(factory(**kwargs), grads)
    assert str(error.value) == (
        "updates and params differ at ['layer']['b']: updates has float64[4], params has float64[3]"
    )


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_every_optimizer_names_the_path_of_a_missing_gradient(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    grads = grads_like(PARAMS)
    del grads["scale"]
    with pytest.raises(aj.TreeMismatchError, match=r"different structures at \['scale'\]: "):
        update(factory(**kwargs), grads)


@pytest.mark.parametrize(
    "grads, excerpt",
    [
        (
            replace_leaf(grads_like(PARAMS), ["layer", "extra"], jnp.ones(2)),
            "at ['layer']['extra']: updates has float64[2], params has nothing",
        ),
        (
            replace_leaf(grads_like(PARAMS), ["layer", "w"], None),
            "at ['layer']['w']: updates has None, params has float64[2, 3]",
        ),
        (
            replace_leaf(grads_like(PARAMS), ["layer"], [jnp.ones(3), jnp.ones((2, 3))]),
            "at ['layer']: updates has a list node",
        ),
        (
            replace_leaf(grads_like(PARAMS), ["layer", "w"], jnp.ones((2, 3), jnp.float32)),
            "differ at ['layer']['w']: updates has float32[2, 3], params has float64[2, 3]",
        ),
    ],
    ids=["extra-key", "none-vs-array", "list-vs-dict", "dtype"],
)
def test_mismatch_message_names_path_and_both_sides(grads, excerpt):
    with pytest.raises(aj.TreeMismatchError) as error:
        update(aj.adam(0.1), grads)
    assert excerpt in str(error.value)


def test_structure_message_shows_both_tree_definitions():
    with pytest.raises(aj.TreeMismatchError) as error:
        update(aj.sgd(0.1), {"layer": grads_like(PARAMS["layer"])})
    message = str(error.value)
    assert f"updates: {jax.tree_util.tree_structure({'layer': PARAMS['layer']})}" in message
    assert f"params: {jax.tree_util.tree_structure(PARAMS)}" in message


class Pair(NamedTuple):
    first: jax.Array
    second: jax.Array


def test_container_types_are_compared_too():
    params = Pair(jnp.ones(2), jnp.ones(2))
    with pytest.raises(aj.TreeMismatchError, match=r"at <root>: updates has a tuple node"):
        update(aj.sgd(0.1), (jnp.ones(2), jnp.ones(2)), params)


def test_state_mismatch_is_reported_when_params_are_not_given():
    tx = aj.adam(0.1)
    state = tx.init(PARAMS)
    grads = replace_leaf(grads_like(PARAMS), ["layer", "w"], jnp.ones((3, 2)))
    with pytest.raises(aj.TreeMismatchError) as error:
        tx.update(grads, state)
    assert "mu and updates differ at ['layer']['w']: mu has float64[2, 3], updates has " in str(
        error.value
    )


def test_mismatch_is_reported_at_trace_time_under_jit():
    tx = aj.adam(0.1)
    grads = replace_leaf(grads_like(PARAMS), ["layer", "b"], jnp.ones(4))
    with pytest.raises(aj.TreeMismatchError, match=r"differ at \['layer'\]\['b'\]"):
        jax.jit(tx.update)(grads, tx.init(PARAMS), PARAMS)


def test_integer_leaves_are_rejected_with_their_path():
    params = {"w": jnp.ones(2), "steps": jnp.array([1, 2])}
    for tx in [aj.adam(0.1), aj.sgd(0.1)]:
        with pytest.raises(TypeError, match=r"params at \['steps'\] has dtype int64"):
            tx.init(params)
    # Without integer parameters, plain sgd would scale by int(0.1) = 0: silently no step.
    tx = aj.sgd(0.1)
    with pytest.raises(TypeError, match=r"updates at <root> has dtype int64"):
        tx.update(jnp.array([1, 1]), tx.init(jnp.ones(2)))


def test_wrong_state_is_rejected():
    tx = aj.adam(0.1)
    with pytest.raises(TypeError, match="expects the state returned by its init"):
        tx.update(grads_like(PARAMS), optax.adam(0.1).init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match="chain of 5 transforms got a state with 1 entries"):
        tx.update(grads_like(PARAMS), aj.sgd(0.1).init(PARAMS), PARAMS)


# -- None leaves and masks -------------------------------------------------------------------


def test_none_leaves_are_skipped_and_the_rest_matches_the_tree_without_them():
    with_none = {"w": jnp.array([1.0, -2.0]), "frozen": None}
    without = {"w": jnp.array([1.0, -2.0])}
    grads_none = {"w": jnp.array([0.3, 0.4]), "frozen": None}
    tx = aj.adamw(0.1, weight_decay=0.1)
    updates, state = update(tx, grads_none, with_none)
    expected, expected_state = update(tx, {"w": grads_none["w"]}, without)
    assert updates["frozen"] is None
    np.testing.assert_array_equal(updates["w"], expected["w"])
    assert state.inner[0].mu["frozen"] is None
    new_params = aj.apply_updates(with_none, updates)
    assert new_params["frozen"] is None
    np.testing.assert_array_equal(new_params["w"], with_none["w"] + expected["w"])


def test_optax_masked_applies_an_adaptive_jax_block_to_selected_leaves_only():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([0.1, 0.2]), "b": jnp.array([0.3])}
    mask = {"w": True, "b": False}
    tx = aj.chain(
        optax.masked(aj.add_decoupled_weight_decay(0.1), mask), aj.scale_by_learning_rate(0.5)
    )
    updates, _ = update(tx, grads, params)
    # decay on w only: u = -lr (g + wd * p) for w, -lr g for b
    np.testing.assert_allclose(updates["w"], -0.5 * (grads["w"] + 0.1 * params["w"]), rtol=1e-15)
    np.testing.assert_allclose(updates["b"], -0.5 * grads["b"], rtol=1e-15)
    # the same thing with a per-parameter hyperparameter tree
    per_leaf = aj.chain(
        aj.add_decoupled_weight_decay({"w": 0.1, "b": 0.0}), aj.scale_by_learning_rate(0.5)
    )
    same, _ = update(per_leaf, grads, params)
    np.testing.assert_array_equal(same["w"], updates["w"])
    np.testing.assert_array_equal(same["b"], updates["b"])


def test_optax_masked_adam_keeps_state_for_selected_leaves_only():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([0.1, 0.2]), "b": jnp.array([0.3])}
    tx = optax.masked(aj.adam(0.1), {"w": True, "b": False})
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    # first step: -lr g / (|g| + eps)
    np.testing.assert_allclose(updates["w"], -0.1 * grads["w"] / (grads["w"] + 1e-8), rtol=1e-15)
    np.testing.assert_array_equal(updates["b"], grads["b"])  # passed through, as optax does
    assert jax.tree_util.tree_leaves(state.inner_state.inner[0].mu) == [
        pytest.approx(np.array([0.01, 0.02]))
    ]


def test_empty_and_scalar_and_python_number_trees_are_accepted():
    updates, state = update(aj.adam(0.1), {}, {})
    assert updates == {} and int(state.count) == 1
    first_step = -0.1 * 2.0 / (2.0 + 1e-8)  # -lr g / (|g| + eps)
    updates, _ = update(aj.adam(0.1), jnp.asarray(2.0), jnp.asarray(1.0))
    np.testing.assert_allclose(updates, first_step, rtol=1e-15)
    updates, _ = update(aj.adam(0.1), 2.0, 1.0)  # Python floats become arrays
    np.testing.assert_allclose(updates, first_step, rtol=1e-15)
    updates, _ = update(aj.adam(0.1), np.array([2.0, -2.0]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(updates, [first_step, -first_step], rtol=1e-15)
