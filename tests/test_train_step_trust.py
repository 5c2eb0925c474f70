"""The donating helpers (``update_step``, ``make_train_step``) behave like ``tx.update``.

Every named optimizer and wrapper, run through both helpers from a fresh ``tx.init``,
gives the numbers of the plain path (``tx.update`` then ``apply_updates``, eager);
hyperparameters are read at every call (numpy arrays changed in place, dicts changed
after construction, plain functions as leaves of per-parameter trees); an array that
appears twice among the inputs is copied rather than donated twice; a deleted
(already donated) input and a non-transformation ``tx`` raise errors that name the
helper, the argument and the tree path.

The reference is eager and the helpers are jitted: XLA may contract ``a*b+c`` into a
fused multiply-add inside a fused loop, so float64 results agree to rounding, not bit
for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from adaptive_jax._src.performance.native.fused import MIN_SIZE
from adaptive_jax.performance import StepPath, choose_path
from tests.optimizer_catalog import NAMED_OPTIMIZERS, NEEDS_VALUE

RTOL, ATOL = 1e-11, 1e-13
STEPS = 2


def loss(tree, t):
    """A loss whose gradient, ``0.1 - sin(3x + t)``, changes from step to step."""
    return sum(
        jnp.sum(jnp.cos(3.0 * x + t) / 3.0 + 0.1 * x) for x in jax.tree_util.tree_leaves(tree)
    )


def objective(params, t):
    tree = params.tree() if isinstance(params, aj.performance.FlatParams) else params
    return loss(tree, t)


def small_tree():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.3, -0.7, 1.1])}


def copy(tree):
    """Fresh buffers: the helpers consume what they are given."""
    return jax.tree_util.tree_map(lambda x: x + 0, tree)


def decaying_rate(count):
    """A plain function as a leaf of a per-parameter learning-rate tree."""
    return 0.02 / (1.0 + count.astype(jnp.float64))


def catalogue():
    # The step helpers pass gradients only: polyak_sgd, which needs the loss, is left out.
    cases = {
        name: (lambda f=f, k=k: f(**k))
        for name, (f, k) in NAMED_OPTIMIZERS.items()
        if name not in NEEDS_VALUE
    }
    cases["apply_if_finite(adam)"] = lambda: aj.apply_if_finite(aj.adam(0.02))
    cases["chain(clip_by_global_norm, adam)"] = lambda: aj.chain(
        aj.clip_by_global_norm(0.5), aj.adam(0.02)
    )
    cases["optax.adam"] = lambda: optax.adam(0.02)
    cases["flatten(adam)"] = lambda: aj.performance.flatten(aj.adam(0.02))
    cases["adam on FlatParams"] = lambda: aj.adam(0.02)
    cases["adam with function leaves"] = lambda: aj.adam({"w": decaying_rate, "b": 1e-2})
    return cases


CASES = catalogue()


def setup(name):
    tx = CASES[name]()
    params = aj.ravel_params(small_tree()) if name == "adam on FlatParams" else small_tree()
    return tx, params


def promotion(name):
    # optax relies on implicit dtype promotion; this suite runs with strict promotion.
    return jax.numpy_dtype_promotion("standard" if name.startswith("optax") else "strict")


def plain_step(tx, params, state, t):
    grads = jax.grad(objective)(params, t)
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state


def plain_run(tx, params, steps=STEPS, step=plain_step):
    """The reference: ``tx.update`` then ``apply_updates``, eager unless ``step`` is jitted."""
    state = tx.init(params)
    trajectory = []
    for t in range(steps):
        params, state = step(tx, params, state, float(t))
        trajectory.append(snapshot((params, state)))
    return trajectory


def snapshot(tree):
    """Host copies: the next donating step deletes (and reuses) these buffers."""
    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), tree)


def assert_close(actual, expected):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        assert jnp.result_type(a) == jnp.result_type(e)
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=RTOL, atol=ATOL)


def run_update_step(tx, params, steps=STEPS):
    state = tx.init(params)
    trajectory = []
    for t in range(steps):
        grads = jax.grad(objective)(params, float(t))
        params, state = aj.update_step(tx, params, state, grads)
        trajectory.append(snapshot((params, state)))
    return trajectory


def run_train_step(train, tx, params, steps=STEPS):
    state = tx.init(params)
    trajectory = []
    for t in range(steps):
        expected_loss = objective(params, float(t))
        params, state, value = train(tx, params, state, jnp.asarray(float(t)))
        np.testing.assert_allclose(value, expected_loss, rtol=RTOL)
        trajectory.append(snapshot((params, state)))
    return trajectory


TRAIN = aj.make_train_step(loss)  # one step function for every case, as a user would


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_helpers_match_the_plain_path_from_a_fresh_init(name):
    tx, params = setup(name)
    with promotion(name):
        expected = plain_run(tx, params)
        by_update_step = run_update_step(tx, copy(params))
        by_train_step = run_train_step(TRAIN, tx, copy(params))
    for (p, s), (ep, es) in zip(by_update_step, expected):
        assert_close(p, ep)
        assert_close(s, es)
    for (p, s), (ep, es) in zip(by_train_step, expected):
        assert_close(p, ep)
        assert_close(s, es)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fresh_states_hold_no_array_twice(name):
    # A state that holds one array in two fields cannot be donated (XLA refuses to
    # donate a buffer twice): not only for these helpers, for any donating jit.
    tx, params = setup(name)
    with promotion(name):
        leaves = jax.tree_util.tree_leaves(tx.init(params))
    arrays = [id(x) for x in leaves if isinstance(x, jax.Array)]
    assert len(arrays) == len(set(arrays))


def test_a_native_sized_step_through_both_helpers_matches_the_plain_path():
    # At MIN_SIZE elements on one CPU device the step may run as one native loop.
    size = MIN_SIZE + 5
    tx = aj.adam(0.02)
    params = {"v": jnp.linspace(-1.0, 1.0, size), "b": jnp.array([0.5, -0.5])}
    assert choose_path(tx, params, on_one_cpu_device=True) is StepPath.NATIVE
    expected = plain_run(tx, params, step=jax.jit(plain_step))  # eager: a compile per op
    for actual in (
        run_update_step(tx, copy(params)),
        run_train_step(TRAIN, tx, copy(params)),
    ):
        for (p, s), (ep, es) in zip(actual, expected):
            assert_close(p, ep)
            assert_close(s, es)


# --- hyperparameters are read at every call, as tx.update reads them


def test_a_numpy_hyperparameter_changed_in_place_is_read_at_every_call():
    rate = np.array(0.1)
    tx = aj.sgd(rate)
    params, grads = jnp.array([1.0, -2.0]), jnp.array([1.0, 1.0])
    state = tx.init(params)
    new, state = aj.update_step(tx, params + 0, state, grads)
    np.testing.assert_allclose(new, [0.9, -2.1], rtol=1e-15)
    rate[...] = 0.5
    expected = aj.apply_updates(params, tx.update(grads, tx.init(params), params)[0])
    new, state = aj.update_step(tx, params + 0, state, grads)
    np.testing.assert_allclose(new, expected, rtol=1e-15)
    np.testing.assert_allclose(new, [0.5, -2.5], rtol=1e-15)
    # and in the train step
    train = aj.make_train_step(lambda p, x: jnp.sum(p * x))
    rate[...] = 0.25
    new, _, _ = train(tx, params + 0, tx.init(params), grads)
    np.testing.assert_allclose(new, [0.75, -2.25], rtol=1e-15)


def test_a_per_parameter_dict_changed_after_construction_is_read_at_every_call():
    rates = {"w": 0.1, "b": 0.0}
    tx = aj.sgd(rates)
    params = {"w": jnp.array([1.0]), "b": jnp.array([2.0])}
    grads = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
    new, _ = aj.update_step(tx, copy(params), tx.init(params), grads)
    np.testing.assert_allclose(new["w"], [0.9], rtol=1e-15)
    rates["b"] = 0.5
    expected = aj.apply_updates(params, tx.update(grads, tx.init(params), params)[0])
    new, _ = aj.update_step(tx, copy(params), tx.init(params), grads)
    assert_close(new, expected)
    np.testing.assert_allclose(new["b"], [1.5], rtol=1e-15)
    rates["w"] = lambda count: jnp.asarray(0.25, jnp.float64)  # a value becomes a function
    new, _ = aj.update_step(tx, copy(params), tx.init(params), grads)
    np.testing.assert_allclose(new["w"], [0.75], rtol=1e-15)
    rates["w"] = 0.125  # and back
    new, _ = aj.update_step(tx, copy(params), tx.init(params), grads)
    np.testing.assert_allclose(new["w"], [0.875], rtol=1e-15)


def test_new_values_and_new_function_leaves_do_not_change_the_rule():
    # A new scalar value is a new argument value (no new program); a plain function is
    # static configuration of its instance (a new function, a new program), as in jit.
    step = aj.performance.DonatingStep(aj.performance.apply_step, "update_step")
    params = jnp.ones(3)
    for rate in (0.1, 0.2, 0.3):
        tx = aj.sgd(rate)
        new, _ = step(tx, params + 0, tx.init(params), jnp.ones(3))
        np.testing.assert_allclose(new, 1.0 - rate, rtol=1e-15)
    assert step._jitted._cache_size() == 1
    for rate in (0.1, 0.2):
        tx = aj.sgd(lambda count, rate=rate: rate * jnp.ones((), jnp.float64))
        new, _ = step(tx, params + 0, tx.init(params), jnp.ones(3))
        np.testing.assert_allclose(new, 1.0 - rate, rtol=1e-15)


# --- the same buffer twice: copied, not donated twice


def test_tied_parameters_are_copied_and_give_the_plain_numbers():
    w = jnp.array([1.0, -1.0, 0.5])
    tx = aj.adam(0.1)
    tied = {"a": w, "b": w}
    grads = {"a": jnp.array([1.0, 2.0, 3.0]), "b": jnp.array([-1.0, 0.5, 0.25])}
    updates, expected_state = tx.update(grads, tx.init(tied), tied)
    expected = aj.apply_updates(tied, updates)
    new, state = aj.update_step(tx, tied, tx.init(tied), grads)
    assert_close(new, expected)
    assert_close(state, expected_state)
    assert w.is_deleted()  # the first occurrence was donated; the second was a copy
    # A second array object on the same buffer (device_put to its own sharding).
    v = jnp.array([1.0, -1.0, 0.5])
    same_buffer = {"a": v, "b": jax.device_put(v, v.sharding)}
    assert same_buffer["a"] is not same_buffer["b"]
    new, _ = aj.update_step(tx, same_buffer, tx.init(tied), grads)
    assert_close(new, expected)


def test_the_same_array_as_params_and_grads_is_copied():
    tx = aj.adam(0.1)
    w = jnp.array([1.0, -1.0, 0.5])
    reference = w + 0
    updates, _ = tx.update(reference, tx.init(reference), reference)
    expected = aj.apply_updates(reference, updates)
    new, _ = aj.update_step(tx, w, tx.init(w), w)
    assert_close(new, expected)


def test_tied_parameters_in_the_train_step():
    w = jnp.array([1.0, -1.0, 0.5])
    tx = aj.sgd(0.1)
    tied = {"a": w, "b": w}
    expected = plain_run(tx, tied, steps=1)[0][0]
    new, _, _ = TRAIN(tx, tied, tx.init(tied), jnp.asarray(0.0))
    assert_close(new, expected)


def test_a_state_holding_one_array_twice_is_copied():
    # Such states come from third-party transformations the caller cannot change.
    tx = aj.sgd(0.1, momentum=0.9)
    params = jnp.array([1.0, 2.0])
    state = tx.init(params)
    zero = state.count
    shared = aj.StepState(zero, jax.tree_util.tree_map(lambda x: x, state.inner))
    shared_twice = (shared, zero)  # the same scalar twice in the donated state
    step = aj.performance.DonatingStep(
        lambda tx, p, s, g, native: (
            aj.performance.apply_step(tx, p, s[0], g, native=native),
            s[1],
        ),
        "update_step",
    )
    (new, _), kept = step(tx, params + 0, shared_twice, jnp.ones(2))
    np.testing.assert_allclose(new, [0.9, 1.9], rtol=1e-15)
    assert int(kept) == 0


# --- inputs that were already donated


def test_reusing_donated_params_names_the_helper_argument_and_path():
    tx = aj.adam(0.1)
    params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
    state = tx.init(params)
    grads = {"w": jnp.ones(3), "b": jnp.ones(2)}
    new, new_state = aj.update_step(tx, params, state, grads)
    with pytest.raises(RuntimeError, match=r"update_step: params\['b'\] has been deleted") as info:
        aj.update_step(tx, params, new_state, grads)
    assert "donat" in str(info.value) and "returned" in str(info.value)
    with pytest.raises(RuntimeError, match=r"update_step: opt_state\.count has been deleted"):
        aj.update_step(tx, new, state, grads)
    # A deleted array that is not donated here: named too.
    with pytest.raises(RuntimeError, match=r"update_step: grads\['b'\] has been deleted"):
        aj.update_step(tx, new, new_state, params)


def test_reusing_donated_params_in_the_train_step_names_it():
    tx = aj.sgd(0.1)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    TRAIN(tx, params, state, jnp.asarray(0.0))
    with pytest.raises(
        RuntimeError, match=r"make_train_step.*params\['w'\] has been deleted"
    ) as info:
        TRAIN(tx, params, tx.init({"w": jnp.ones(3)}), jnp.asarray(0.0))
    assert "donat" in str(info.value)
    batch = jnp.ones(3)
    batch.delete()
    with pytest.raises(RuntimeError, match=r"make_train_step.*batch\[0\] has been deleted"):
        TRAIN(tx, {"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)}), batch)


# --- tx that is not a transformation


@pytest.mark.parametrize(
    "bad, hint",
    [(0.1, "float"), (aj.adam, "call it"), ({"w": jnp.ones(2)}, "dict"), (None, "NoneType")],
    ids=["a number", "an uncalled factory", "params in tx's place", "None"],
)
def test_a_non_transformation_tx_raises_type_error_naming_tx(bad, hint):
    params = jnp.ones(2)
    state = aj.sgd(0.1).init(params)
    for helper, name in ((aj.update_step, "update_step"), (TRAIN, "make_train_step")):
        with pytest.raises(
            TypeError, match=rf"{name}.*tx must be a gradient transformation"
        ) as info:
            helper(bad, params, state, jnp.ones(2))
        assert "init" in str(info.value) and "update" in str(info.value)
        assert hint in str(info.value)
        assert not params.is_deleted()  # nothing was donated
    with pytest.raises(TypeError, match=r"apply_step: tx must be a gradient transformation"):
        aj.performance.apply_step(bad, params, state, jnp.ones(2))


def test_make_train_step_rejects_a_loss_that_is_not_callable():
    with pytest.raises(TypeError, match=r"make_train_step: loss_fn must be a function"):
        aj.make_train_step(aj.adam(0.1))  # arguments swapped


# --- the dispatch rule


def test_choose_path_states_the_rule():
    big = jnp.zeros(MIN_SIZE)
    small = jnp.zeros(MIN_SIZE - 1)
    assert choose_path(aj.adam(0.1), big, on_one_cpu_device=True) is StepPath.NATIVE
    assert choose_path(aj.adam(0.1), {"a": small, "b": jnp.zeros(1)}, True) is StepPath.NATIVE
    assert choose_path(aj.adam(0.1), small, on_one_cpu_device=True) is StepPath.XLA
    assert choose_path(aj.adam(0.1), big, on_one_cpu_device=False) is StepPath.XLA
    assert choose_path(optax.adam(0.1), big, on_one_cpu_device=True) is StepPath.XLA


def test_update_step_calls_traced_inside_a_jit_run_inline():
    # Inside a user's own jit nothing is donated (or checked for deletion): the step is
    # traced into the caller's program.
    tx = aj.adam(0.1)
    params = jnp.array([1.0, 2.0])

    @jax.jit
    def outer(params, state, grads):
        return aj.update_step(tx, params, state, grads)

    new, _ = outer(params, tx.init(params), params)
    expected = aj.apply_updates(params, tx.update(params, tx.init(params), params)[0])
    assert_close(new, expected)
    assert not params.is_deleted()
