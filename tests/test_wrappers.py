r"""Wrappers and combinators give optax's numbers, differentiate, vmap and reject bad trees.

Every wrapper (``masked``, ``freeze``, ``partition``/``multi_transform``,
``selective_transform``, ``named_chain``, ``MultiSteps``, ``apply_every``,
``parameter_ema``, ``lookahead``, ``reduce_on_plateau``) runs Adam or SGD inside it on

.. math::
   L = \mathrm{CE}\big(s\,(X W + b),\ y\big) + \tfrac12 \|A v - c\|^2 ,

four leaves of different shapes, for 30 steps in float64, against optax's transformation
of the same name at ``rtol=1e-9``.  Then: the meta-gradient of an unrolled loss through
``MultiSteps(partition(..., masked(...)))`` against central finite differences (reverse
and forward mode), a ``jax.vmap`` population against optax run member by member, each
wrapper through ``update_step`` and ``make_train_step``, and the errors for bad inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import adaptive_jax as aj

STEPS = 30
RTOL = 1e-9
ATOL = 1e-13

_rng = np.random.default_rng(7)
FEATURES = jnp.asarray(_rng.normal(size=(20, 4)))
CLASSES = jnp.asarray(_rng.integers(0, 3, size=20))
COUPLING = jnp.asarray(_rng.normal(size=(5, 2)))
OFFSETS = jnp.asarray(_rng.normal(size=(5, 3)))
INITIAL = {
    "W": jnp.asarray(0.5 * _rng.normal(size=(4, 3))),
    "b": jnp.asarray([0.3, -0.2, 0.1]),
    "s": jnp.asarray(1.5),
    "v": jnp.asarray(_rng.normal(size=(2, 3))),
}
MATRICES = {"W": True, "b": False, "s": False, "v": True}
LABELS = {"W": "adam", "b": "adam", "s": "sgd", "v": "sgd"}


def loss(p):
    logits = p["s"] * (FEATURES @ p["W"] + p["b"])
    cross_entropy = -jnp.mean(
        jnp.take_along_axis(jax.nn.log_softmax(logits), CLASSES[:, None], axis=1)
    )
    return cross_entropy + 0.5 * jnp.sum((COUPLING @ p["v"] - OFFSETS) ** 2)


def is_matrix(tree):
    return jax.tree_util.tree_map(lambda x: jnp.ndim(x) == 2, tree)


def trajectory(tx, *, value=False, read=None, steps=STEPS):
    """Iterates 1..steps (and ``read(state)`` at each) of any optax-protocol transformation."""

    def step(carry, _):
        params, state = carry
        value_, grads = jax.value_and_grad(loss)(params)
        extra = {"value": value_} if value else {}
        updates, state = tx.update(grads, state, params, **extra)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, None if read is None else read(state))

    with jax.numpy_dtype_promotion("standard"):
        _, history = jax.lax.scan(step, (INITIAL, tx.init(INITIAL)), None, length=steps)
    return history


def run(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    return jax.tree_util.tree_map(np.asarray, compiled(*args))


def assert_trees_close(ours, theirs, rtol=RTOL, atol=ATOL):
    for path, a in jax.tree_util.tree_flatten_with_path(ours)[0]:
        b = theirs
        for key in path:
            b = b[key.key] if isinstance(key, jax.tree_util.DictKey) else b[key.idx]
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def moved_every_leaf(history):
    for leaf in INITIAL:
        assert np.max(np.abs(history[leaf][-1] - np.asarray(INITIAL[leaf]))) > 1e-3, leaf


# --- parity with optax ------------------------------------------------------------------


class Case(NamedTuple):
    ours: Any
    theirs: Any
    value: bool = False  # pass value=loss to update


PLATEAU = dict(factor=0.5, patience=2, rtol=0.02, atol=1e-4, cooldown=1, accumulation_size=2)
PLATEAU_MIN = dict(PLATEAU, min_scale=0.3)
SKIP_SCHEDULE = lambda step: jnp.where(step < 3, 2, 3)  # noqa: E731


def _optax_masked_adam():
    return optax.chain(optax.masked(optax.adam(0.05), MATRICES), optax.sgd(0.1))


CASES = {
    "masked_tree": Case(
        aj.chain(aj.masked(aj.adam(0.05), MATRICES), aj.sgd(0.1)), _optax_masked_adam()
    ),
    "masked_function": Case(
        aj.chain(aj.masked(aj.adamw(0.05, weight_decay=0.1), is_matrix), aj.sgd(0.1)),
        optax.chain(optax.masked(optax.adamw(0.05, weight_decay=0.1), is_matrix), optax.sgd(0.1)),
    ),
    "masked_prefix_of_inner_sgd": Case(
        aj.chain(
            aj.sgd(0.1, momentum=0.9),
            aj.masked(aj.scale(0.5), {"W": True, "b": False, "s": False, "v": False}),
        ),
        optax.chain(
            optax.sgd(0.1, momentum=0.9),
            optax.masked(optax.scale(0.5), {"W": True, "b": False, "s": False, "v": False}),
        ),
    ),
    "freeze": Case(
        aj.chain(aj.adam(0.05), aj.freeze({"W": False, "b": True, "s": False, "v": False})),
        optax.chain(
            optax.adam(0.05), optax.freeze({"W": False, "b": True, "s": False, "v": False})
        ),
    ),
    "partition_tree": Case(
        aj.partition({"adam": aj.adam(0.05), "sgd": aj.sgd(0.1, momentum=0.9)}, LABELS),
        optax.partition({"adam": optax.adam(0.05), "sgd": optax.sgd(0.1, momentum=0.9)}, LABELS),
    ),
    "multi_transform_function": Case(
        aj.multi_transform(
            {"adam": aj.adam(0.05), "sgd": aj.sgd(0.1)},
            lambda p: jax.tree_util.tree_map(lambda x: "adam" if jnp.ndim(x) == 2 else "sgd", p),
        ),
        optax.multi_transform(
            {"adam": optax.adam(0.05), "sgd": optax.sgd(0.1)},
            lambda p: jax.tree_util.tree_map(lambda x: "adam" if jnp.ndim(x) == 2 else "sgd", p),
        ),
    ),
    "selective_transform": Case(
        aj.selective_transform(
            aj.adamw(0.05, weight_decay=0.1),
            freeze_mask={"W": False, "b": True, "s": False, "v": False},
        ),
        optax.selective_transform(
            optax.adamw(0.05, weight_decay=0.1),
            freeze_mask={"W": False, "b": True, "s": False, "v": False},
        ),
    ),
    "named_chain": Case(
        aj.named_chain(("clip", aj.clip_by_global_norm(0.5)), ("adam", aj.adam(0.05))),
        optax.named_chain(("clip", optax.clip_by_global_norm(0.5)), ("adam", optax.adam(0.05))),
    ),
    "multi_steps_adam_mean": Case(
        aj.MultiSteps(aj.adam(0.1), every_k_schedule=3),
        optax.MultiSteps(optax.adam(0.1), every_k_schedule=3, accumulator_dtype=jnp.float64),
    ),
    "multi_steps_sgd_sum_schedule": Case(
        aj.MultiSteps(aj.sgd(0.05, momentum=0.8), SKIP_SCHEDULE, use_grad_mean=False),
        optax.MultiSteps(
            optax.sgd(0.05, momentum=0.8),
            SKIP_SCHEDULE,
            use_grad_mean=False,
            accumulator_dtype=jnp.float64,
        ),
    ),
    "apply_every": Case(
        aj.chain(aj.adam(0.05), aj.apply_every(3)),
        optax.chain(optax.adam(0.05), optax.apply_every(3)),
    ),
    "aj_masked_inside_optax_partition": Case(
        optax.partition({"adam": aj.masked(aj.adam(0.05), is_matrix), "sgd": aj.sgd(0.1)}, LABELS),
        optax.partition(
            {"adam": optax.masked(optax.adam(0.05), is_matrix), "sgd": optax.sgd(0.1)}, LABELS
        ),
    ),
    "optax_masked_inside_aj_partition": Case(
        aj.partition(
            {"adam": optax.masked(optax.adam(0.05), is_matrix), "sgd": aj.sgd(0.1)}, LABELS
        ),
        optax.partition(
            {"adam": optax.masked(optax.adam(0.05), is_matrix), "sgd": optax.sgd(0.1)}, LABELS
        ),
    ),
    "reduce_on_plateau": Case(
        aj.chain(aj.sgd(0.2), aj.reduce_on_plateau(**PLATEAU)),
        optax.chain(optax.sgd(0.2), optax.contrib.reduce_on_plateau(**PLATEAU)),
        value=True,
    ),
    "reduce_on_plateau_min_scale": Case(
        aj.chain(aj.adam(0.05), aj.reduce_on_plateau(**PLATEAU_MIN)),
        optax.chain(optax.adam(0.05), optax.contrib.reduce_on_plateau(**PLATEAU_MIN)),
        value=True,
    ),
}


@pytest.fixture(scope="module")
def trajectories():
    ours = {name: trajectory(case.ours, value=case.value)[0] for name, case in CASES.items()}
    theirs = {name: trajectory(case.theirs, value=case.value)[0] for name, case in CASES.items()}
    return run(lambda: (ours, theirs))


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrapper_matches_optax(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    assert_trees_close(ours, theirs)
    frozen = {"freeze": "b", "selective_transform": "b"}.get(name)
    for leaf in INITIAL:
        change = np.max(np.abs(theirs[leaf][-1] - np.asarray(INITIAL[leaf])))
        assert change == 0.0 if leaf == frozen else change > 1e-3, leaf


def test_reduce_on_plateau_scale_dropped_as_in_optax():
    """The plateau cases are only meaningful if the scale actually changed (and hit min_scale)."""
    read = lambda state: state.inner[-1].scale  # noqa: E731
    read_optax = lambda state: state[-1].scale  # noqa: E731
    for kwargs in (PLATEAU, PLATEAU_MIN):
        tx = aj.chain(aj.sgd(0.2), aj.reduce_on_plateau(**kwargs))
        ref = optax.chain(optax.sgd(0.2), optax.contrib.reduce_on_plateau(**kwargs))
        ours, theirs = run(
            lambda tx=tx, ref=ref: (
                trajectory(tx, value=True, read=read)[1],
                trajectory(ref, value=True, read=read_optax)[1],
            )
        )
        np.testing.assert_allclose(ours, theirs, rtol=RTOL)
        assert len(set(theirs.tolist())) >= 3, theirs  # dropped at least twice
        assert theirs[-1] == pytest.approx(kwargs.get("min_scale", theirs[-1]))


def test_multi_steps_state_matches_optax_with_skipped_updates():
    """NaN gradients are skipped (``skip_not_finite``) with optax's state; has_updated agrees."""
    k = 3
    ours = aj.MultiSteps(aj.adam(0.1), k, should_skip_update_fn=aj.skip_not_finite)
    theirs = optax.MultiSteps(
        optax.adam(0.1),
        k,
        should_skip_update_fn=optax.skip_not_finite,
        accumulator_dtype=jnp.float64,
    )
    poisoned = jnp.asarray([i % 5 == 2 for i in range(STEPS)])

    def trace(tx, inner):
        def step(carry, bad):
            params, state = carry
            grads = jax.grad(loss)(params)
            grads = jax.tree_util.tree_map(lambda g: jnp.where(bad, jnp.nan, g), grads)
            updates, state = tx.update(grads, state, params)
            multi = inner(state)
            return (optax.apply_updates(params, updates), state), (
                params,
                multi.mini_step,
                multi.gradient_step,
                tx.has_updated(state),
                multi.skip_state["num_not_finite"],
            )

        with jax.numpy_dtype_promotion("standard"):
            return jax.lax.scan(step, (INITIAL, tx.init(INITIAL)), poisoned)[1]

    a, b = run(lambda: (trace(ours, lambda s: s.inner), trace(theirs, lambda s: s)))
    assert_trees_close(a[0], b[0])
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x, y)
    assert int(a[2][-1]) == (STEPS - int(poisoned.sum())) // k  # only finite calls count
    assert np.all(np.isfinite(a[0]["W"]))


def test_multi_steps_accumulates_bfloat16_gradients_in_float32_as_optax():
    """bfloat16 gradients: the accumulator is float32 (optax's default), the mean cast back."""
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), INITIAL)
    grads = [
        jax.tree_util.tree_map(lambda x, i=i: (x * (1 + 0.37 * i)).astype(jnp.bfloat16), INITIAL)
        for i in range(6)
    ]
    ours = aj.MultiSteps(aj.sgd(0.5), 3)
    theirs = optax.MultiSteps(optax.sgd(0.5), 3)

    def steps(tx):
        state, out = tx.init(params), []
        for g in grads:
            with jax.numpy_dtype_promotion("standard"):
                updates, state = tx.update(g, state, params)
            out.append(updates)
        return out, state

    (a, state_a), (b, _) = steps(ours), steps(theirs)
    for u, v in zip(a, b):
        for leaf in INITIAL:
            assert u[leaf].dtype == v[leaf].dtype == jnp.bfloat16
            np.testing.assert_array_equal(
                np.asarray(u[leaf], np.float64), np.asarray(v[leaf], np.float64)
            )
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(state_a.inner.acc_grads))
    assert np.max(np.abs(np.asarray(a[2]["W"], np.float64))) > 0.1


def test_parameter_ema_equals_optax_ema_of_the_parameter_sequence():
    decay = 0.8
    tx = aj.chain(aj.adam(0.05), aj.parameter_ema(decay))

    def both():
        params, averaged = trajectory(tx, read=aj.ema_params)
        reference = optax.ema(decay, debias=True, accumulator_dtype=jnp.float64)

        def step(state, p):
            out, state = reference.update(p, state)
            return state, out

        with jax.numpy_dtype_promotion("standard"):
            expected = jax.lax.scan(step, reference.init(INITIAL), params)[1]
        return averaged, expected, params

    ours, theirs, params = run(both)
    assert_trees_close(ours, theirs)
    # and the average differs from the parameters themselves
    assert np.max(np.abs(ours["W"][-1] - params["W"][-1])) > 1e-3


def optax_lookahead(tx, steps):
    """optax's ``LookaheadParams`` after each of ``steps`` steps of ``tx``."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params.fast), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    start = optax.LookaheadParams.init_synced(INITIAL)
    with jax.numpy_dtype_promotion("standard"):
        return jax.lax.scan(step, (start, tx.init(start)), None, length=steps)[1]


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_with_ordinary_params_matches_optax_lookahead_params(reset_state):
    """Our params are optax's fast parameters; ``slow_params(state)`` its slow ones."""
    ours = aj.lookahead(aj.adam(0.1), sync_period=4, slow_step_size=0.5, reset_state=reset_state)
    theirs = optax.lookahead(optax.adam(0.1), 4, 0.5, reset_state=reset_state)

    (fast, slow), reference = run(
        lambda: (trajectory(ours, read=aj.slow_params), optax_lookahead(theirs, STEPS))
    )
    assert_trees_close(fast, reference.fast)
    assert_trees_close(slow, reference.slow)
    assert np.max(np.abs(slow["W"][-1] - np.asarray(INITIAL["W"]))) > 1e-3


# --- meta-gradients, vmap ------------------------------------------------------------------


def wrapped(lr_adam, lr_sgd, decay):
    """MultiSteps around partition: Adam on W and b, masked decay + SGD on s and v."""
    sgd_group = aj.chain(
        aj.masked(aj.add_decoupled_weight_decay(decay), is_matrix), aj.sgd(lr_sgd, momentum=0.9)
    )
    return aj.MultiSteps(aj.partition({"adam": aj.adam(lr_adam), "sgd": sgd_group}, LABELS), 2)


def wrapped_optax(lr_adam, lr_sgd, decay):
    sgd_group = optax.chain(
        optax.masked(optax.add_decayed_weights(decay), is_matrix), optax.sgd(lr_sgd, momentum=0.9)
    )
    return optax.MultiSteps(
        optax.partition({"adam": optax.adam(lr_adam), "sgd": sgd_group}, LABELS),
        2,
        accumulator_dtype=jnp.float64,
    )


def meta_loss(hyper):
    params = trajectory(wrapped(*hyper), steps=12)[0]
    return loss(jax.tree_util.tree_map(lambda x: x[-1], params))


def test_meta_gradient_through_masked_partition_multisteps_equals_finite_differences():
    hyper = jnp.asarray([0.05, 0.1, 0.2])
    reverse, forward, values = run(
        lambda h: (
            jax.grad(meta_loss)(h),
            jax.jacfwd(meta_loss)(h),
            jax.vmap(meta_loss)(h + 1e-6 * jnp.concatenate([jnp.eye(3), -jnp.eye(3)])),
        ),
        hyper,
    )
    finite = (values[:3] - values[3:]) / 2e-6
    assert np.all(np.isfinite(reverse)) and np.all(np.abs(reverse) > 1e-4), reverse
    np.testing.assert_allclose(reverse, forward, rtol=1e-9)
    np.testing.assert_allclose(reverse, finite, rtol=1e-5)


def test_vmap_over_a_population_of_wrapped_optimizers_matches_optax_member_by_member():
    rates = jnp.asarray([0.02, 0.05, 0.1])

    def ours(lr):
        return trajectory(wrapped(lr, 2 * lr, 0.1))[0]

    def theirs(lr):
        return trajectory(wrapped_optax(lr, 2 * lr, 0.1))[0]

    population = run(jax.vmap(ours), rates)
    reference = jax.jit(theirs).lower(rates[0]).compile()
    for i, lr in enumerate(rates):
        member = jax.tree_util.tree_map(np.asarray, reference(lr))
        assert_trees_close(jax.tree_util.tree_map(lambda x, i=i: x[i], population), member)
    assert not np.allclose(population["W"][0, -1], population["W"][2, -1])


# --- the training-step helpers -------------------------------------------------------------
# One composite transformation holds every wrapper, so each helper compiles twice, not once
# per wrapper.  make_train_step passes the loss as value= (read by reduce_on_plateau).

FROZEN_B = {"W": False, "b": True, "s": False, "v": False}


def composite():
    groups = aj.partition({"adam": aj.masked(aj.adam(0.05), is_matrix), "sgd": aj.sgd(0.1)}, LABELS)
    named = aj.named_chain(("groups", groups), ("every", aj.apply_every(2)))
    return aj.chain(
        aj.MultiSteps(named, 2),
        aj.selective_transform(aj.scale(2.0), freeze_mask=FROZEN_B),
        aj.freeze({"W": False, "b": False, "s": True, "v": False}),
        aj.reduce_on_plateau(**PLATEAU),
    )


def composite_optax():
    groups = optax.partition(
        {"adam": optax.masked(optax.adam(0.05), is_matrix), "sgd": optax.sgd(0.1)}, LABELS
    )
    named = optax.named_chain(("groups", groups), ("every", optax.apply_every(2)))
    return optax.chain(
        optax.MultiSteps(named, 2, accumulator_dtype=jnp.float64),
        optax.selective_transform(optax.scale(2.0), freeze_mask=FROZEN_B),
        optax.freeze({"W": False, "b": False, "s": True, "v": False}),
        optax.contrib.reduce_on_plateau(**PLATEAU),
    )


def through_helpers(tx, steps):
    """Parameters after ``steps`` steps of make_train_step, and of update_step."""
    train_step = aj.make_train_step(loss)
    params = jax.tree_util.tree_map(jnp.array, INITIAL)
    state = tx.init(params)
    for _ in range(steps):
        params, state, _ = train_step(tx, params, state)
    by_train_step = params
    params = jax.tree_util.tree_map(jnp.array, INITIAL)
    state = tx.init(params)
    for _ in range(steps):
        value, grads = jax.value_and_grad(loss)(params)
        params, state = aj.update_step(tx, params, state, grads, value=value)
    return by_train_step, params, state


def test_every_wrapper_runs_through_make_train_step_and_update_step():
    steps = 12
    expected = run(lambda: trajectory(composite_optax(), value=True, steps=steps)[0])
    expected = jax.tree_util.tree_map(lambda x: x[-1], expected)
    by_train_step, by_update_step, _ = through_helpers(composite(), steps)
    assert_trees_close(by_train_step, expected)
    assert_trees_close(by_update_step, expected)
    assert np.all(by_update_step["b"] == INITIAL["b"]) and np.all(
        by_update_step["s"] == INITIAL["s"]
    )
    assert np.max(np.abs(by_update_step["W"] - INITIAL["W"])) > 1e-3


def test_lookahead_and_parameter_ema_run_through_the_step_helpers():
    """Lookahead's ordinary params go through the helpers; against optax's fast weights."""
    steps = 7  # a synchronisation at step 4
    tx = aj.chain(aj.lookahead(aj.adam(0.1), 4, 0.5), aj.parameter_ema(0.8))
    history = run(lambda: optax_lookahead(optax.lookahead(optax.adam(0.1), 4, 0.5), steps))
    final = jax.tree_util.tree_map(lambda x: x[-1], history)
    by_train_step, by_update_step, state = through_helpers(tx, steps)
    assert_trees_close(by_train_step, final.fast)
    assert_trees_close(by_update_step, final.fast)
    assert_trees_close(aj.slow_params(state), final.slow)
    # the debiased average of the fast weights: sum_i 0.2 * 0.8^(7-i) theta_i / (1 - 0.8^7)
    weights = [0.2 * 0.8 ** (steps - 1 - i) for i in range(steps)]
    average = jax.tree_util.tree_map(
        lambda x: sum(w * x[i] for i, w in enumerate(weights)) / (1 - 0.8**steps), history.fast
    )
    assert_trees_close(aj.ema_params(state), average)


# --- bad inputs ----------------------------------------------------------------------------


def test_mask_not_matching_params_names_the_path():
    tx = aj.masked(aj.adam(0.1), {"W": True, "b": False, "s": True, "x": True})
    with pytest.raises(aj.TreeMismatchError, match=r"mask does not match params at \['v'\]"):
        tx.init(INITIAL)


def test_mask_leaf_not_a_bool_names_the_path():
    with pytest.raises(TypeError, match=r"mask\['b'\]=0.5 is invalid: expected a bool"):
        aj.masked(aj.adam(0.1), {"W": True, "b": 0.5})


def test_mask_function_returning_a_wrong_tree_names_the_path():
    tx = aj.masked(aj.adam(0.1), lambda p: {"W": True, "b": {"x": True}, "s": True, "v": True})
    with pytest.raises(aj.TreeMismatchError, match=r"mask does not match params at \['b'\]"):
        tx.init(INITIAL)


def test_unknown_label_names_the_label_and_the_path():
    labels = dict(LABELS, v="muon")
    with pytest.raises(
        ValueError, match=r"param_labels gives the parameter at \['v'\] the label 'muon'"
    ):
        aj.partition({"adam": aj.adam(0.1), "sgd": aj.sgd(0.1)}, labels)
    by_function = aj.partition(
        {"adam": aj.adam(0.1)}, lambda p: jax.tree_util.tree_map(lambda _: "sgd", p)
    )
    with pytest.raises(ValueError, match=r"at \['W'\] the label 'sgd'"):
        by_function.init(INITIAL)


def test_labels_not_matching_params_names_the_path():
    tx = aj.partition({"adam": aj.adam(0.1)}, {"W": "adam", "b": "adam", "s": "adam"})
    with pytest.raises(
        aj.TreeMismatchError, match=r"param_labels does not match params at \['v'\]"
    ):
        tx.init(INITIAL)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: aj.MultiSteps(aj.adam(0.1), every_k_schedule=0), "every_k_schedule"),
        (
            lambda: aj.MultiSteps(aj.adam(0.1), every_k_schedule=lambda step: 0),
            r"every_k_schedule\(0\)",
        ),
        (lambda: aj.apply_every(0), "k"),
        (lambda: aj.lookahead(aj.adam(0.1), sync_period=0, slow_step_size=0.5), "sync_period"),
        (lambda: aj.lookahead(aj.adam(0.1), sync_period=2, slow_step_size=1.5), "slow_step_size"),
        (lambda: aj.reduce_on_plateau(patience=0), "patience"),
        (lambda: aj.reduce_on_plateau(cooldown=-1), "cooldown"),
        (lambda: aj.reduce_on_plateau(accumulation_size=0), "accumulation_size"),
        (lambda: aj.reduce_on_plateau(factor=1.5), "factor"),
        (lambda: aj.reduce_on_plateau(rtol=0.0, atol=0.0), "rtol"),
        (lambda: aj.parameter_ema(decay=1.0), "decay"),
        (lambda: aj.named_chain(("a", aj.sgd(0.1)), ("a", aj.adam(0.1))), "unique names"),
        (lambda: aj.partition([aj.adam(0.1)], LABELS), "transforms must be a mapping"),
    ],
)
def test_bad_configuration_raises_naming_the_argument(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_reduce_on_plateau_without_value_says_how_to_pass_it():
    tx = aj.chain(aj.sgd(0.1), aj.reduce_on_plateau())
    with pytest.raises(TypeError, match="value=loss"):
        tx.update(INITIAL, tx.init(INITIAL), INITIAL)


def test_per_parameter_builds_a_tree_from_path_and_leaf():
    decay = aj.per_parameter(lambda path, p: 0.0 if p.ndim < 2 else 1e-2, INITIAL)
    assert decay == {"W": 1e-2, "b": 0.0, "s": 0.0, "v": 1e-2}
    nested = aj.per_parameter(lambda path, p: "/".join(map(str, path)), {"enc": [INITIAL["b"]]})
    assert nested == {"enc": ["enc/0"]}
    # as a per-parameter weight decay it gives the masked decay's numbers
    ours = aj.adamw(0.05, weight_decay=decay)
    theirs = optax.adamw(0.05, weight_decay=1e-2, mask=is_matrix)
    a, b = run(lambda: (trajectory(ours)[0], trajectory(theirs)[0]))
    assert_trees_close(a, b)
