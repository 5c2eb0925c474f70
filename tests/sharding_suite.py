"""Sharding checks on 8 simulated CPU devices; run by tests/test_sharding.py in a subprocess.

XLA's device count must be fixed before JAX starts, so this module is not collected
directly (its name does not start with ``test_``).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS, VALUE

assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"

COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")
# Optimizers whose update needs a global quantity (a norm over all or one parameter leaf).
NEEDS_REDUCTION = {"normalized_gd", "lamb"}
# Norms per tensor (lars, fromage, novograd) and a global norm (polyak_sgd).
NEEDS_REDUCTION |= {"fromage", "lars", "novograd", "polyak_sgd"}
# SM3's accumulators are a matrix's row and column maxima: vectors cross devices.
NEEDS_VECTOR_REDUCTION = {"sm3"}
# Adafactor: the block RMS of each leaf (its matrices here are below the factoring size).
NEEDS_REDUCTION |= {"adafactor"}
# Learning-rate-free methods: inner products and norms over all parameters (scalars).
NEEDS_REDUCTION |= {"dadapt_adamw", "dog", "prodigy"}


def mesh_2d():
    return jax.make_mesh((2, 4), ("data", "model"))


def sharded_params(mesh):
    key1, key2 = jax.random.split(jax.random.key(0))
    return {
        "w": jax.device_put(
            jax.random.normal(key1, (16, 32)), NamedSharding(mesh, P("data", "model"))
        ),
        "b": jax.device_put(jax.random.normal(key2, (32,)), NamedSharding(mesh, P("model"))),
    }


def per_parameter_leaves(state, params):
    """(path, leaf, parameter) for every state leaf that mirrors a parameter."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        last = path[-1]
        if isinstance(last, jax.tree_util.DictKey) and last.key in params and jnp.ndim(leaf) > 0:
            out.append((jax.tree_util.keystr(path), leaf, params[last.key]))
    return out


def collective_counts(hlo_text):
    return {name: len(re.findall(rf"\b{name}(?:-start)?\(", hlo_text)) for name in COLLECTIVES}


# Wrappers whose state holds per-parameter trees (masked ones, accumulators, copies of the
# parameters); k = 1 and sync_period = 1 so that the first update is not zero.
WRAPPERS = {
    "wrapper_masked": lambda: aj.masked(aj.adam(0.1), {"w": True, "b": False}),
    "wrapper_partition": lambda: aj.partition(
        {"a": aj.adam(0.1), "s": aj.sgd(0.1, momentum=0.9)}, {"w": "a", "b": "s"}
    ),
    "wrapper_MultiSteps": lambda: aj.MultiSteps(aj.adam(0.1), 1),
    "wrapper_parameter_ema": lambda: aj.chain(aj.adam(0.1), aj.parameter_ema(0.9)),
    "wrapper_lookahead": lambda: aj.lookahead(aj.adam(0.1), 1, 0.5),
}


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS) + sorted(WRAPPERS))
def test_state_and_updates_keep_parameter_shardings(name):
    if name in WRAPPERS:
        tx = WRAPPERS[name]()
    else:
        factory, kwargs = NAMED_OPTIMIZERS[name]
        tx = factory(**kwargs)
    mesh = mesh_2d()
    params = sharded_params(mesh)
    grads = jax.tree_util.tree_map(lambda p: 0.1 * p, params)

    state = tx.init(params)
    mirrored = per_parameter_leaves(state, params)
    for path, leaf, param in mirrored:
        assert leaf.sharding.is_equivalent_to(param.sharding, param.ndim), path

    abstract = jax.tree_util.tree_map(
        lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding), params
    )
    abstract_state = jax.eval_shape(tx.init, abstract)
    for path, leaf, param in per_parameter_leaves(abstract_state, params):
        assert leaf.sharding.spec == param.sharding.spec, path

    # value= is the loss polyak_sgd needs (a stand-in); the others ignore it.
    updates, new_state = jax.jit(tx.update)(grads, state, params, value=VALUE)
    for key in params:
        assert updates[key].sharding.is_equivalent_to(params[key].sharding, params[key].ndim)
    for path, leaf, param in per_parameter_leaves(new_state, params):
        assert leaf.sharding.is_equivalent_to(param.sharding, param.ndim), path

    # The numbers are those of the same update on one device.
    local = jax.tree_util.tree_map(np.asarray, (grads, params))
    ref_updates, _ = jax.jit(tx.update)(local[0], tx.init(local[1]), local[1], value=VALUE)
    for key in params:
        np.testing.assert_allclose(
            np.asarray(updates[key]), ref_updates[key], rtol=1e-12, atol=1e-15
        )


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_update_adds_only_the_reductions_it_needs(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    params = sharded_params(mesh_2d())
    state = tx.init(params)
    hlo = jax.jit(tx.update).lower(params, state, params, value=VALUE).compile().as_text()
    counts = collective_counts(hlo)
    others = {k: v for k, v in counts.items() if k != "all-reduce"}
    assert sum(others.values()) == 0, counts
    if name in NEEDS_REDUCTION:
        # Only scalar partial sums (squared norms) cross devices: at least one all-reduce,
        # none of them carrying a tensor.
        assert counts["all-reduce"] >= 1, counts
        reduce_lines = [
            line for line in hlo.splitlines() if re.search(r"\ball-reduce(-start)?\(", line)
        ]
        for line in reduce_lines:
            result_type = line.split("=", 1)[1].strip().split(" ", 1)[0]
            assert re.fullmatch(r"\(?(f(32|64)\[\](,\s*)?)+\)?", result_type), line
    elif name in NEEDS_VECTOR_REDUCTION:
        assert counts["all-reduce"] >= 1, counts
    else:
        assert counts["all-reduce"] == 0, counts


def test_clip_by_global_norm_reduces_scalars_only():
    tx = aj.chain(aj.clip_by_global_norm(1.0), aj.adam(1e-2))
    params = sharded_params(mesh_2d())
    hlo = jax.jit(tx.update).lower(params, tx.init(params), params).compile().as_text()
    counts = collective_counts(hlo)
    assert (
        counts["all-reduce"] >= 1
        and counts["all-gather"] == 0
        and counts["collective-permute"] == 0
    )


def test_zero1_state_is_split_over_data_axis_and_update_matches():
    mesh = jax.make_mesh((8,), ("data",))
    replicated = NamedSharding(mesh, P())
    params = {
        "w": jax.device_put(
            jnp.arange(64 * 24, dtype=jnp.float64).reshape(64, 24) / 100, replicated
        ),
        "b": jax.device_put(jnp.linspace(-1, 1, 40), replicated),
    }
    grads = jax.tree_util.tree_map(lambda p: jnp.sin(p), params)
    tx = aj.adam(1e-2)
    state_specs = aj.sharding.zero1_state_shardings(tx, params, mesh)
    init = jax.jit(tx.init, out_shardings=state_specs)
    update = jax.jit(
        tx.update,
        in_shardings=(replicated, state_specs, replicated),
        out_shardings=(replicated, state_specs),
    )
    state = init(params)
    updates, state = update(grads, state, params)
    updates, state = update(grads, state, params)

    def bytes_on_device0(tree):
        return sum(
            leaf.addressable_shards[0].data.nbytes for leaf in jax.tree_util.tree_leaves(tree)
        )

    def total_bytes(tree):
        return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(tree))

    moments = (state.inner[0], state.inner[1])
    assert total_bytes(moments) / bytes_on_device0(moments) == pytest.approx(8.0)

    ref_state = tx.init(params)
    ref_updates, ref_state = tx.update(grads, ref_state, params)
    ref_updates, ref_state = tx.update(grads, ref_state, params)
    for key in params:
        np.testing.assert_allclose(
            np.asarray(updates[key]), np.asarray(ref_updates[key]), rtol=1e-14
        )


def test_population_sharded_one_group_per_device():
    mesh = jax.make_mesh((8,), ("data",))
    rates = jnp.logspace(-3, -1, 16)

    def loss(w):
        return jnp.sum((w - 1.0) ** 2 * jnp.arange(1.0, 5.0))

    def final_loss(rate):
        tx = aj.adam(rate)
        w = jnp.zeros(4)

        def body(carry, _):
            w, s = carry
            u, s = tx.update(jax.grad(loss)(w), s, w)
            return (aj.apply_updates(w, u), s), None

        (w, _), _ = jax.lax.scan(body, (w, tx.init(w)), None, length=30)
        return loss(w)

    batched = jax.jit(jax.vmap(final_loss), in_shardings=NamedSharding(mesh, P("data")))
    sharded_rates = jax.device_put(rates, NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        result = batched(sharded_rates)
    assert result.sharding.spec == P("data")
    assert {shard.data.shape for shard in result.addressable_shards} == {(2,)}
    expected = np.array([final_loss(r) for r in np.asarray(rates)])
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-12)


def test_update_step_keeps_a_sharded_flat_buffer_sharded():
    # One large buffer, as the native CPU kernel would take it on one device: sharded,
    # update_step must keep XLA's partitioned loops (a custom call would gather it).
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    size = 8 * 16384
    tx = aj.adam(1e-2)
    params = jax.device_put(jnp.linspace(-1.0, 1.0, size), sharding)
    grads = jax.device_put(jnp.sin(jnp.arange(size, dtype=jnp.float64)), sharding)
    local = np.array(params)  # a copy: params is donated below
    expected, _ = tx.update(jnp.asarray(np.asarray(grads)), tx.init(jnp.asarray(local)), local)
    new_params, new_state = aj.update_step(tx, params, tx.init(params), grads)
    assert new_params.sharding.is_equivalent_to(sharding, 1)
    assert new_state.inner[0].mu.sharding.is_equivalent_to(sharding, 1)
    # Eager reference (no fused multiply-add): equal to rounding.
    np.testing.assert_allclose(
        np.asarray(new_params), local + np.asarray(expected), rtol=1e-12, atol=1e-15
    )
