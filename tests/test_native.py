"""The native fused step (``adaptive_jax.performance.native``) against XLA's plain step.

The reference is always the plain step jitted by XLA on the same inputs.  The fused
loop performs the jaxpr's IEEE operations in the jaxpr's order (and XLA's rewrite of
``x / s`` into ``x * (1/s)``), so for most optimizers the two agree bit for bit; where
a C library function or another XLA rewrite rounds differently they agree to a few
units in the last place.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax._src.performance import native
from adaptive_jax._src.performance.native import fused_apply_step, fused_elementwise
from adaptive_jax._src.performance.native.build import TARGET_NAME
from adaptive_jax._src.performance.native.fused import MIN_SIZE
from tests.optimizer_catalog import NAMED_OPTIMIZERS
from tests.xla_defaults import XLA_DEFAULTS

# Steps that reduce over all parameters (a global norm, a trust ratio): not elementwise.
NOT_ELEMENTWISE = {"normalized_gd", "lamb"}
# Norms per tensor (lars, fromage, novograd); a global norm and the loss (polyak_sgd);
# random draws from a key in the state (noisy_sgd).
NOT_ELEMENTWISE |= {"fromage", "lars", "noisy_sgd", "novograd", "polyak_sgd"}
# SM3 is Adagrad (elementwise) on a vector, but reduces rows and columns of a matrix.
ELEMENTWISE_ON_VECTORS_ONLY = {"sm3"}
# Adafactor's block RMS (update clipping, parameter scale) reduces over each leaf.
NOT_ELEMENTWISE |= {"adafactor"}
# Equal to rounding only (another XLA rewrite or rounding order in the plain step).
TO_ROUNDING = {"nadam", "adamax", "adadelta"}
TO_ROUNDING |= {"adan", "nadamw", "optimistic_adam", "optimistic_adam_v2"}
# Learning-rate-free methods: inner products and norms over all parameters.
NOT_ELEMENTWISE |= {"dadapt_adamw", "dog", "prodigy"}
# Elementwise, but the native code generator has no cube root (lax.cbrt): XLA's step.
NOT_ELEMENTWISE |= {"madgrad"}
TO_ROUNDING |= {"ademamix"}
# Schedule-Free's interpolation is reassociated by the fused loop (a few ulps).
TO_ROUNDING |= {"schedule_free_adamw", "schedule_free_sgd"}
SIZE = 999  # not a multiple of the vector width: the loop's remainder runs too


def gradient(step, dtype, size=SIZE):
    return jnp.sin(jnp.arange(size, dtype=dtype) * (step + 1.0)) * 0.1


def plain_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), state

    return step


def xla_step(tx):
    """The plain step, jit-compiled as XLA compiles it by default (tests/xla_defaults.py)."""
    return jax.jit(plain_step(tx), compiler_options=XLA_DEFAULTS)


def run(step, tx, dtype, steps=20, size=SIZE):
    params = jnp.linspace(-1.0, 1.0, size, dtype=dtype)
    carry = (params, tx.init(params))
    for k in range(steps):
        carry = step(*carry, gradient(k, dtype, size))
    return carry


def test_native_kernels_are_available_here():
    # CI and the development machines have a C compiler: the fast path must be live.
    assert native.available() is None, native.available()


# float32 on a flat array is the leaf "long" of the tree test below: each optimizer's
# reference step is compiled once per dtype.
@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_fused_step_equals_plain_step_in_float64(name):
    dtype = jnp.float64
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    params = jnp.zeros(SIZE, dtype)
    fused = fused_apply_step(tx, params, tx.init(params), params)
    if name in NOT_ELEMENTWISE:
        assert fused is None
        return
    assert fused is not None, f"{name} should compile to one native loop"
    expected = run(xla_step(tx), tx, dtype)
    got = run(jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g)), tx, dtype)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        assert x.dtype == y.dtype and x.shape == y.shape
        if name in TO_ROUNDING:
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=10 * float(jnp.finfo(dtype).eps))
        else:
            np.testing.assert_array_equal(x, y)


def mixed_tree(dtype, scale=1):
    """Leaves of several shapes (two of them equal), as a real model's parameters."""
    shapes = {"w1": (20 * scale, 30), "b1": (30,), "w2": (30, 7), "b2": (7,), "e": (5,)}
    return {
        name: jnp.sin(jnp.arange(np.prod(shape), dtype=dtype) + i).reshape(shape)
        for i, (name, shape) in enumerate(sorted(shapes.items()))
    }


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_fused_step_on_a_tree_equals_plain_step(name):
    # One kernel with a loop per distinct leaf shape, in float32; the leaf "long" is
    # the flat case (SIZE elements: the vector loop's remainder runs too).
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    params = {**mixed_tree(jnp.float32), "long": jnp.linspace(-1.0, 1.0, SIZE, dtype=jnp.float32)}

    def grads_at(k):
        return jax.tree_util.tree_map(lambda p: jnp.cos(3.0 * p + k) * 0.1, params)

    fused_step = jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g))
    if name in NOT_ELEMENTWISE | ELEMENTWISE_ON_VECTORS_ONLY:
        assert fused_apply_step(tx, params, tx.init(params), params) is None
        return
    reference_step = xla_step(tx)
    expected = got = (params, tx.init(params))
    for k in range(20):
        expected = reference_step(*expected, grads_at(k))
        got = fused_step(*got, grads_at(k))
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        assert x.dtype == y.dtype and x.shape == y.shape
        if name in TO_ROUNDING:
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


def test_each_leaf_gets_its_own_loop_and_equal_leaves_share_its_code():
    # 30 leaves of three shapes: 30 loops, one compiled loop body for all of them.
    from adaptive_jax._src.performance.native import codegen

    tx = aj.adam(0.1)
    params = {f"x{k:02d}": jnp.linspace(-1.0, 1.0, 8 + k % 3) + k for k in range(30)}
    grads = jax.tree_util.tree_map(jnp.cos, params)
    state = tx.init(params)
    expected = xla_step(tx)(params, state, grads)
    got = jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g))(params, state, grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        # Equal to rounding (float64): on loops shorter than a vector the C compiler may
        # contract a multiply-add that XLA leaves apart.
        np.testing.assert_allclose(x, y, rtol=4 * float(jnp.finfo(jnp.float64).eps), atol=0)
    flat = [*jax.tree_util.tree_leaves(tx), *jax.tree_util.tree_leaves(grads)]
    flat += [*jax.tree_util.tree_leaves(params), *jax.tree_util.tree_leaves(state)]

    def step(*flat):
        return tuple(jax.tree_util.tree_leaves(plain_step(tx)(*_split(flat))))

    def _split(flat):
        n_tx, n = len(jax.tree_util.tree_leaves(tx)), len(params)
        g = dict(zip(sorted(params), flat[n_tx : n_tx + n]))
        p = dict(zip(sorted(params), flat[n_tx + n : n_tx + 2 * n]))
        s = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state), flat[n_tx + 2 * n :])
        return p, s, g

    closed = jax.make_jaxpr(step)(*flat)
    shapes = [(8,), (9,), (10,)]
    source = codegen.translate(closed, flat, shapes, "c").source
    assert source.count("static __attribute__((noinline)) void aj_loop") == 1
    assert source.count("aj_loop0(") == 1 + 30  # the definition and one call per leaf


def test_per_leaf_hyperparameters_on_a_tree():
    params = mixed_tree(jnp.float32)
    rates = {"b1": 0.1, "b2": 0.2, "e": 0.3, "w1": 0.01, "w2": 0.02}  # one per leaf
    tx = aj.adamw(rates, weight_decay={"b1": 0.0, "b2": 0.0, "e": 0.0, "w1": 0.1, "w2": 0.2})
    grads = jax.tree_util.tree_map(lambda p: jnp.cos(p) * 0.1, params)
    state = tx.init(params)
    expected = xla_step(tx)(params, state, grads)
    got = jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g))(params, state, grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)


def test_update_step_on_a_tree_runs_one_native_kernel():
    tx = aj.adam(1e-3)
    params = mixed_tree(jnp.float32, scale=120)  # 72,000 + 487 parameters
    grads = jax.tree_util.tree_map(lambda p: jnp.cos(p) * 0.1, params)
    state = tx.init(params)
    expected = xla_step(tx)(params, state, grads)
    text = (
        jax.jit(lambda p, s, g: aj.performance.apply_step(tx, p, s, g, native=True))
        .lower(params, state, grads)
        .as_text()
    )
    assert text.count(TARGET_NAME) == 1
    got = aj.update_step(tx, params, state, grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)


def test_special_values_propagate_as_in_the_plain_step():
    # NaN, infinities and signed zeros in the gradient: the same outputs, bit for bit.
    tx = aj.adam(0.1)
    special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0, 1e-30, -1e30, 3.0], jnp.float32)
    grads = jnp.tile(special, 64)
    params = jnp.linspace(-1.0, 1.0, grads.size, dtype=jnp.float32)
    state = tx.init(params)
    expected = xla_step(tx)(params, state, grads)
    got = jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g))(params, state, grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)


ELEMENTWISE_FUNCTIONS = {
    "max_min": lambda x, y: (jnp.maximum(x, y), jnp.minimum(x, y)),
    "sign_abs": lambda x, y: (jnp.sign(x), jnp.abs(y)),
    "where_clip": lambda x, y: (jnp.where(x > y, x, -y), jnp.clip(x, -0.5, 0.5)),
    "powers": lambda x, y: (x**2, x**3, x**-2),
    "sqrt_rsqrt": lambda x, y: (jnp.sqrt(jnp.abs(x)), jax.lax.rsqrt(jnp.abs(y) + 1.0)),
    "exp_log": lambda x, y: (jnp.exp(x), jnp.log(jnp.abs(y)), jnp.log1p(jnp.abs(x))),
    "tanh_sigmoid": lambda x, y: (jnp.tanh(x), jax.nn.sigmoid(y)),
    "pow": lambda x, y: (jnp.power(jnp.abs(x), y),),
    "finite_compare": lambda x, y: (jnp.isfinite(x), x >= y, (x < 0) & (y > 0)),
    "convert": lambda x, y: (x.astype(jnp.float64) * 2.0, (x > 0).astype(jnp.float32)),
    "scalar_division": lambda x, y: (x / 3.0, y / jnp.float32(7.0)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_FUNCTIONS))
def test_translated_operations_match_xla(name):
    fn = ELEMENTWISE_FUNCTIONS[name]
    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key1, (257,), jnp.float32) * 3.0
    y = jax.random.normal(key2, (257,), jnp.float32)
    special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0, 1.0, -1.0], jnp.float32)
    x, y = x.at[:7].set(special), y.at[7:14].set(special)
    expected = jax.jit(fn)(x, y)
    got = jax.jit(lambda x, y: fused_elementwise(fn, [x, y]))(x, y)
    assert got is not None
    transcendental = name in {"exp_log", "tanh_sigmoid", "pow", "sqrt_rsqrt"}
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        if transcendental:  # the C library's functions: a few units in the last place
            np.testing.assert_allclose(a, b, rtol=4 * float(jnp.finfo(b.dtype).eps), atol=0)
        else:
            np.testing.assert_array_equal(a, b)


def test_reductions_and_other_shapes_are_refused():
    x = jnp.ones(16)
    assert fused_elementwise(lambda x: (x / jnp.sum(x),), [x]) is None
    assert fused_elementwise(lambda x: (x[::-1],), [x]) is None
    assert fused_elementwise(lambda x, y: (x + y[0],), [x, jnp.ones(3)]) is None
    assert fused_elementwise(lambda x: (x.reshape(4, 4) * 2.0,), [x]) is None
    # One loop reading 16 arrays and writing 1: more than MAX_STREAMS = 16 arrays.
    wide = [jnp.ones(3) + k for k in range(16)]
    assert fused_elementwise(lambda *xs: (sum(xs),), wide) is None
    assert fused_elementwise(lambda *xs: (sum(xs),), wide[:15]) is not None
    many = [jnp.ones(3) + k for k in range(65)]  # 65 loops: more than MAX_LOOPS
    assert fused_elementwise(lambda *xs: tuple(2.0 * x for x in xs), many) is None
    assert fused_elementwise(lambda *xs: tuple(2.0 * x for x in xs), many[:64]) is not None


def test_hyperparameters_are_inputs_not_constants():
    # A new learning rate gives new numbers from the same kernel (one compilation).
    params = jnp.linspace(-1.0, 1.0, SIZE, dtype=jnp.float32)
    grads = gradient(0, jnp.float32)
    step = jax.jit(lambda tx, p, s, g: fused_apply_step(tx, p, s, g))
    for lr in (0.1, 0.01, 0.003):
        tx = aj.adam(lr)
        state = tx.init(params)
        got, _ = step(tx, params, state, grads)
        expected, _ = xla_step(tx)(params, state, grads)
        np.testing.assert_array_equal(got, expected)
    assert step._cache_size() == 1


def test_derivatives_through_the_fused_step_are_the_plain_steps():
    # custom_jvp: forward and reverse mode differentiate the plain step.
    params = jnp.linspace(-1.0, 1.0, SIZE)
    grads = gradient(0, jnp.float64)

    def loss(lr, step_fn):
        tx = aj.adam(lr)
        p, s = params, tx.init(params)
        for _ in range(3):
            p, s = step_fn(tx, p, s, grads)
        return jnp.sum(p**2)

    def fused(tx, p, s, g):
        return fused_apply_step(tx, p, s, g)

    def plain(tx, p, s, g):
        return plain_step(tx)(p, s, g)

    np.testing.assert_allclose(jax.grad(loss)(0.05, fused), jax.grad(loss)(0.05, plain), rtol=1e-13)
    np.testing.assert_allclose(
        jax.jvp(lambda lr: loss(lr, fused), (0.05,), (1.0,))[1],
        jax.jvp(lambda lr: loss(lr, plain), (0.05,), (1.0,))[1],
        rtol=1e-13,
    )


def test_vmap_over_learning_rates():
    params = jnp.linspace(-1.0, 1.0, SIZE)
    grads = gradient(0, jnp.float64)

    def one(lr):
        tx = aj.adam(lr)
        return fused_apply_step(tx, params, tx.init(params), grads)[0]

    rates = jnp.array([0.1, 0.01, 0.001])
    expected = [plain_step(aj.adam(lr))(params, aj.adam(lr).init(params), grads)[0] for lr in rates]
    # The reference runs op by op (no fused multiply-add): equal to rounding.
    np.testing.assert_allclose(jax.vmap(one)(rates), jnp.stack(expected), rtol=1e-12)


def test_update_step_runs_the_native_kernel_in_place():
    # Large enough for the native path: the compiled step is one custom call, and the
    # donated buffers are updated where they lie (same addresses before and after).
    size = MIN_SIZE + 3
    tx = aj.adamw(1e-3)
    params = jnp.linspace(-1.0, 1.0, size, dtype=jnp.float32)
    state = tx.init(params)
    grads = gradient(0, jnp.float32, size)
    expected = xla_step(tx)(params, state, grads)
    addresses = [params.unsafe_buffer_pointer(), state.inner[0].mu.unsafe_buffer_pointer()]
    params, state = aj.update_step(tx, params, state, grads)
    assert [params.unsafe_buffer_pointer(), state.inner[0].mu.unsafe_buffer_pointer()] == addresses
    for x, y in zip(
        jax.tree_util.tree_leaves((params, state)), jax.tree_util.tree_leaves(expected)
    ):
        np.testing.assert_array_equal(x, y)
    text = (
        jax.jit(lambda p, s, g: aj.performance.apply_step(tx, p, s, g, native=True))
        .lower(params, state, grads)
        .as_text()
    )
    assert TARGET_NAME in text


def test_flat_params_take_the_native_path():
    tree = {"w": jnp.ones((300, 300)), "b": jnp.zeros(300)}
    flat = aj.ravel_params(tree)
    tx = aj.adam(1e-2)
    state = tx.init(flat)
    grads = jax.tree_util.tree_map(lambda b: jnp.full_like(b, 0.5), flat)
    text = (
        jax.jit(lambda p, s, g: aj.performance.apply_step(tx, p, s, g, native=True))
        .lower(flat, state, grads)
        .as_text()
    )
    assert TARGET_NAME in text
    expected = xla_step(tx)(flat, state, grads)
    got = aj.update_step(tx, flat, state, grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)
