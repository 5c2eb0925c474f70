"""Clipping, robustness and constraint blocks give optax's numbers, finite meta-gradients, named errors.

Every block is compared with optax's function of the same name in float64 over 30 steps
of a small problem with four leaves of ranks 0, 1, 2 and 4 (so :func:`adaptive_grad_clip`
meets each of its unit conventions), inside the same optimizer on both sides.  The
gradients are poisoned with NaN and Inf at some steps where a block is about repairing or
skipping them.  Then every numeric hyperparameter gets a meta-gradient equal to finite
differences (reverse = forward mode), with a parameter whose gradient is exactly zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj

STEPS = 30
RTOL = 1e-9
ATOL = 1e-13

_rng = np.random.default_rng(11)
FEATURES = jnp.asarray(_rng.normal(size=(8, 4)))
TARGETS = jnp.asarray(_rng.normal(size=(8, 3)))
PATCH = jnp.asarray(_rng.normal(size=(2, 2, 2)))
INITIAL = {
    "W": jnp.asarray(0.5 * _rng.normal(size=(4, 3))),
    "b": jnp.asarray([0.3, -0.2, 0.1]),
    "s": jnp.asarray(1.5),
    "k": jnp.asarray(0.3 * _rng.normal(size=(2, 2, 2, 3))),
    "unused": jnp.asarray([0.4, 0.0]),  # its gradient is exactly zero
}


def example_loss(p, x, y):
    """One example's loss; ``k`` is a 2x2 convolution kernel (HWIO) applied to one patch."""
    prediction = jnp.tanh(p["s"] * (x @ p["W"] + p["b"])) + jnp.einsum(
        "hwi,hwio->o", x[0] * PATCH, p["k"]
    )
    return 0.5 * jnp.sum((prediction - 2.0 * y) ** 2)


def loss(p):
    return jnp.mean(jax.vmap(example_loss, in_axes=(None, 0, 0))(p, FEATURES, TARGETS))


def poisoned(grads, step):
    """NaN in ``b`` at steps 3, 10, 17, ...; Inf in ``W`` at steps 5, 12, 19, ..."""
    nan = jnp.where(step % 7 == 3, jnp.nan, 0.0)
    inf = jnp.where(step % 7 == 5, jnp.inf, 0.0)
    return {**grads, "b": grads["b"].at[1].add(nan), "W": grads["W"].at[2, 0].add(inf)}


def trajectory(tx, poison=False, start=INITIAL):
    """The iterates and states of 30 steps of any optax-protocol transformation."""

    def step(carry, t):
        params, state = carry
        grads = jax.grad(loss)(params)
        grads = poisoned(grads, t) if poison else grads
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, state)

    return jax.lax.scan(step, (start, tx.init(start)), jnp.arange(STEPS))[1]


def dp_sgd_trajectory(clip_fn, l2_norm_clip, learning_rate=0.2):
    """30 steps of DP-SGD without noise: per-example gradients, clipped, summed, averaged."""

    def step(params, _):
        per_example = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(
            params, FEATURES, TARGETS
        )
        total, clipped = clip_fn(per_example, l2_norm_clip)
        params = jax.tree_util.tree_map(
            lambda p, g: p - learning_rate * g / len(FEATURES), params, total
        )
        return params, (params, clipped)

    return jax.lax.scan(step, INITIAL, None, length=STEPS)[1]


NONNEGATIVE_START = {**INITIAL, "b": jnp.asarray([0.3, -0.2, 0.0]), "W": jnp.abs(INITIAL["W"])}

# name -> (ours, optax's, poison the gradients?, start)
CASES = {
    "clip": (
        aj.chain(aj.clip(0.3), aj.sgd(0.1)),
        optax.chain(optax.clip(0.3), optax.sgd(0.1)),
        False,
        INITIAL,
    ),
    "clip_by_block_rms": (
        aj.chain(aj.clip_by_block_rms(0.2), aj.sgd(0.1)),
        optax.chain(optax.clip_by_block_rms(0.2), optax.sgd(0.1)),
        False,
        INITIAL,
    ),
    "adaptive_grad_clip": (
        aj.chain(aj.adaptive_grad_clip(0.05, eps=0.01), aj.sgd(0.3)),
        optax.chain(optax.adaptive_grad_clip(0.05, eps=0.01), optax.sgd(0.3)),
        False,
        INITIAL,
    ),
    # The NaNs become 0; the Infs stay (clip then bounds them), as in optax.
    "zero_nans": (
        aj.chain(aj.zero_nans(), aj.clip(1.0), aj.adam(0.05)),
        optax.chain(optax.zero_nans(), optax.clip(1.0), optax.adam(0.05)),
        True,
        INITIAL,
    ),
    "keep_params_nonnegative": (
        aj.chain(aj.sgd(0.3), aj.keep_params_nonnegative()),
        optax.chain(optax.sgd(0.3), optax.keep_params_nonnegative()),
        False,
        NONNEGATIVE_START,
    ),
}


def multi_steps(should_skip_update_fn):
    """optax's MultiSteps (every 2 steps) with a skip rule: ours or optax's."""
    return optax.MultiSteps(optax.adam(0.05), 2, should_skip_update_fn=should_skip_update_fn)


SKIP_CASES = {
    "skip_not_finite": (aj.skip_not_finite, optax.skip_not_finite),
    # The squared norm of the mean gradient is ~1 to ~40 along the run: some steps skipped.
    "skip_large_updates": (
        functools.partial(aj.skip_large_updates, max_squared_norm=6.0),
        functools.partial(optax.skip_large_updates, max_squared_norm=6.0),
    ),
}


@pytest.fixture(scope="module")
def histories():
    """Every case on both sides, in one compiled program (compiling dominates)."""

    def run():
        ours = {name: trajectory(c[0], c[2], c[3]) for name, c in CASES.items()}
        ours["per_example_global_norm_clip"] = dp_sgd_trajectory(
            aj.per_example_global_norm_clip, 4.0
        )
        with jax.numpy_dtype_promotion("standard"):  # optax's internals (MultiSteps' Adam too)
            ours.update(
                {name: trajectory(multi_steps(c[0]), True) for name, c in SKIP_CASES.items()}
            )
            theirs = {name: trajectory(c[1], c[2], c[3]) for name, c in CASES.items()}
            theirs["per_example_global_norm_clip"] = dp_sgd_trajectory(
                optax.per_example_global_norm_clip, 4.0
            )
            theirs.update(
                {name: trajectory(multi_steps(c[1]), True) for name, c in SKIP_CASES.items()}
            )
        return ours, theirs

    return jax.jit(run).lower().compile()()


@pytest.mark.parametrize("name", [*CASES, "per_example_global_norm_clip", *SKIP_CASES])
def test_matches_optax_in_float64_over_30_steps(histories, name):
    ours, theirs = histories
    params, theirs_params = ours[name][0], theirs[name][0]
    for key in INITIAL:
        np.testing.assert_allclose(
            params[key], theirs_params[key], rtol=RTOL, atol=ATOL, err_msg=key
        )
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params))
    if name == "per_example_global_norm_clip":
        np.testing.assert_array_equal(ours[name][1], theirs[name][1])  # examples clipped
        assert 0 < int(np.sum(ours[name][1])) < STEPS * len(FEATURES)  # some clipped, not all


def test_the_cases_exercise_what_they_compare(histories):
    ours, _ = histories
    # zero_nans saw the NaNs (found_nan of b at the poisoned steps only), not the Infs.
    found_nan = ours["zero_nans"][1].inner[0].found_nan
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(found_nan["b"], steps % 7 == 3)
    assert not np.any(found_nan["W"])
    # keep_params_nonnegative: every parameter is >= 0 after the first step; some hit 0.
    params = ours["keep_params_nonnegative"][0]
    assert all(np.all(params[k] >= 0) for k in params)
    assert np.any(params["b"] == 0) or np.any(params["W"] == 0)
    # the skip rules skipped some mini-steps and let others through.
    for name in SKIP_CASES:
        skipped = np.asarray(ours[name][1].skip_state["should_skip"])
        assert 0 < skipped.sum() < STEPS, name


def test_clipping_bounds_hold_by_hand():
    rng = np.random.default_rng(0)
    grads = {"a": jnp.asarray(rng.normal(size=(5, 3)) * 3), "b": jnp.asarray(rng.normal(size=4))}
    params = {"a": jnp.asarray(rng.normal(size=(5, 3))), "b": jnp.asarray(rng.normal(size=4))}

    clipped = aj.clip(0.5).update(grads, aj.clip(0.5).init(params))[0]
    np.testing.assert_array_equal(clipped["a"], np.clip(grads["a"], -0.5, 0.5))

    block = aj.clip_by_block_rms(0.7)
    clipped = block.update(grads, block.init(params))[0]
    for key in grads:
        rms = np.sqrt(np.mean(np.asarray(grads[key]) ** 2))
        np.testing.assert_allclose(clipped[key], grads[key] / max(1.0, rms / 0.7), rtol=1e-14)

    agc = aj.adaptive_grad_clip(0.1, eps=1e-3)
    clipped = agc.update(grads, agc.init(params), params)[0]
    g, p = np.asarray(grads["a"]), np.asarray(params["a"])
    for column in range(3):  # a matrix (in, out): one unit per column
        g_norm, p_norm = np.linalg.norm(g[:, column]), np.linalg.norm(p[:, column])
        bound = 0.1 * max(p_norm, 1e-3)
        expected = g[:, column] * (bound / g_norm if g_norm >= bound else 1.0)
        np.testing.assert_allclose(clipped["a"][:, column], expected, rtol=1e-14)


def test_skip_rules_report_optax_infos():
    tree = {"w": jnp.array([3.0, 4.0]), "v": jnp.array([[jnp.nan, 1.0], [jnp.inf, -jnp.inf]])}
    for ours, theirs in [
        (aj.skip_not_finite, optax.skip_not_finite),
        (
            functools.partial(aj.skip_large_updates, max_squared_norm=30.0),
            functools.partial(optax.skip_large_updates, max_squared_norm=30.0),
        ),
    ]:
        for updates in (tree, {"w": tree["w"]}):
            skip, info = ours(updates, 0, None)
            with jax.numpy_dtype_promotion("standard"):
                their_skip, their_info = theirs(updates, 0, None)
            assert bool(skip) == bool(their_skip)
            assert info.keys() == their_info.keys()
            for key in info:
                np.testing.assert_array_equal(info[key], their_info[key])
    # by hand: the squared norm of [3, 4] is 25, skipped from a bound of 25 on.
    assert not aj.skip_large_updates({"w": tree["w"]}, 0, None, 25.5)[0]
    assert aj.skip_large_updates({"w": tree["w"]}, 0, None, 25.0)[0]


# -- meta-gradients: every number of every block, with a parameter whose gradient is 0 ----

META_STEPS = 10


def final_loss(tx, start=INITIAL):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(body, (start, tx.init(start)), None, length=META_STEPS)
    return loss(params) + jnp.sum(params["unused"] ** 2)


def dp_final_loss(l2_norm_clip):
    params = dp_sgd_trajectory(aj.per_example_global_norm_clip, l2_norm_clip)[0]
    return loss(jax.tree_util.tree_map(lambda x: x[META_STEPS], params))


# name -> (objective of the hyperparameters, the values: away from any kink)
META = {
    "clip.max_delta": (lambda h: final_loss(aj.chain(aj.clip(h[0]), aj.sgd(0.1))), [0.3]),
    "clip_by_block_rms.threshold": (
        lambda h: final_loss(aj.chain(aj.clip_by_block_rms(h[0]), aj.sgd(0.1))),
        [0.2],
    ),
    "adaptive_grad_clip.clipping_eps": (
        lambda h: final_loss(aj.chain(aj.adaptive_grad_clip(h[0], eps=h[1]), aj.sgd(0.3))),
        [0.05, 0.5],  # eps above the norm of "unused": its bound depends on eps
    ),
    "per_example_global_norm_clip.l2_norm_clip": (lambda h: dp_final_loss(h[0]), [4.0]),
}


@pytest.fixture(scope="module")
def meta_results():
    def run(values):
        out = {}
        for name, (objective, _) in META.items():
            h = values[name]
            steps = 1e-6 * jnp.maximum(jnp.abs(h), 0.1)
            basis = jnp.eye(len(h))
            out[name] = (
                jax.grad(objective)(h),
                jnp.stack([jax.jvp(objective, (h,), (e,))[1] for e in basis]),
                jnp.stack(
                    [
                        (objective(h + s * e) - objective(h - s * e)) / (2 * s)
                        for s, e in zip(steps, basis)
                    ]
                ),
            )
        return out

    values = {name: jnp.asarray(v, jnp.float64) for name, (_, v) in META.items()}
    return jax.jit(run).lower(values).compile()(values)


@pytest.mark.parametrize("name", sorted(META))
def test_every_number_gets_the_finite_difference_meta_gradient(meta_results, name):
    reverse, forward, finite_difference = meta_results[name]
    assert np.all(np.isfinite(reverse)) and np.all(np.abs(reverse) > 0), reverse
    np.testing.assert_allclose(reverse, forward, rtol=1e-10)
    np.testing.assert_allclose(reverse, finite_difference, rtol=1e-5)


def test_a_zero_gradient_leaf_passes_a_finite_derivative_where_optax_passes_nan():
    # A meta-gradient flows through the gradient that enters the block (it depends on the
    # hyperparameters through the parameters).  At a leaf whose gradient is exactly 0 the
    # block is the identity there (nothing to clip), so its derivative is 1; optax's
    # sqrt(0) in the norm makes it NaN.
    params = {"w": jnp.array([1.0, 2.0]), "zero": jnp.array([1.0, -1.0])}

    def total(tx, g):
        grads = {"w": jnp.array([3.0, 4.0]), "zero": g}
        updates = tx.update(grads, tx.init(params), params)[0]
        return sum(jnp.sum(u) for u in jax.tree_util.tree_leaves(updates))

    zero = jnp.zeros(2)
    pairs = [
        (aj.clip_by_block_rms(1.0), optax.clip_by_block_rms(1.0)),
        (aj.adaptive_grad_clip(0.1), optax.adaptive_grad_clip(0.1)),
    ]
    for ours, theirs in pairs:
        with jax.numpy_dtype_promotion("standard"):
            assert np.all(np.isnan(jax.jit(jax.grad(functools.partial(total, theirs)))(zero)))
        np.testing.assert_array_equal(
            jax.jit(jax.grad(functools.partial(total, ours)))(zero), [1.0, 1.0]
        )

    # per-example: example 0 has gradient 0 (multiplier 1); example 1 is (3, 4), clipped to C.
    def clipped_total(clip_fn, g, c):
        batch = [jnp.array([[0.0, 0.0], [3.0, 4.0]]) + g]
        return jnp.sum(clip_fn(batch, c)[0][0])

    zeros = jnp.zeros((2, 2))
    with jax.numpy_dtype_promotion("standard"):
        theirs = optax.per_example_global_norm_clip
        assert np.isnan(jax.jit(jax.grad(lambda c: clipped_total(theirs, zeros, c)))(2.0))
        assert np.all(
            np.isnan(jax.jit(jax.grad(lambda g: clipped_total(theirs, g, 2.0)))(zeros)[0])
        )
    ours = aj.per_example_global_norm_clip
    # d/dC of sum((3, 4) C / 5) = 7 / 5; d/dg_0 = 1 (not clipped).
    np.testing.assert_allclose(
        jax.jit(jax.grad(lambda c: clipped_total(ours, zeros, c)))(2.0), 7.0 / 5.0, rtol=1e-14
    )
    np.testing.assert_array_equal(
        jax.jit(jax.grad(lambda g: clipped_total(ours, g, 2.0)))(zeros)[0], [1.0, 1.0]
    )


# -- bad inputs raise at construction, naming the argument ----------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: aj.clip(-1.0), "max_delta"),
        (lambda: aj.clip(jnp.nan), "max_delta"),
        (lambda: aj.clip_by_block_rms(0.0), "threshold"),
        (lambda: aj.adaptive_grad_clip(-0.1), "clipping"),
        (lambda: aj.adaptive_grad_clip(0.1, eps=-1.0), "eps"),
        (lambda: aj.skip_large_updates({"w": jnp.ones(2)}, 0, None, -1.0), "max_squared_norm"),
        (lambda: aj.skip_large_updates({"w": jnp.ones(2)}, 0, None, jnp.nan), "max_squared_norm"),
        (lambda: aj.per_example_global_norm_clip([jnp.ones((2, 3))], -1.0), "l2_norm_clip"),
        (
            lambda: aj.per_example_global_norm_clip(
                {"a": jnp.ones((2, 3)), "b": jnp.ones((3,))}, 1.0
            ),
            r"\['b'\] has shape \(3,\)",
        ),
        (
            lambda: aj.per_example_global_norm_clip({"a": jnp.ones(())}, 1.0),
            r"\['a'\] has shape \(\)",
        ),
    ],
)
def test_bad_inputs_are_named(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_missing_parameters_and_shapes_without_units_are_named():
    grads = {"w": jnp.ones((2, 3))}
    for tx, name in [
        (aj.adaptive_grad_clip(0.1), "adaptive_grad_clip"),
        (aj.keep_params_nonnegative(), "keep_params_nonnegative"),
    ]:
        with pytest.raises(ValueError, match=f"{name} needs the parameters"):
            tx.update(grads, tx.init(grads))
    six = {"deep": jnp.ones((1, 2, 1, 2, 1, 2))}
    with pytest.raises(ValueError, match=r"\['deep'\] has shape \(1, 2, 1, 2, 1, 2\)"):
        aj.adaptive_grad_clip(0.1).update(six, aj.adaptive_grad_clip(0.1).init(six), six)
    tx = aj.keep_params_nonnegative()
    with pytest.raises(aj.TreeMismatchError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), {"v": jnp.ones(2)})
