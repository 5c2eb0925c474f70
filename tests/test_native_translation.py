"""What the native translator accepts, what it leaves to XLA, and the race it no longer has.

Only primitives that call their sub-jaxpr exactly once (jit, custom_jvp/vjp, checkpoint)
are translated through; a loop or branch (scan — so ``fori_loop`` with static bounds —
while, cond, switch) is never translated as a call.  On vectors it keeps the whole step
on XLA; on scalars only (a schedule) XLA computes it before the kernel runs.  The
oracle is XLA's jitted plain step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import adaptive_jax as aj
from adaptive_jax._src.performance.native import codegen, fused, fused_apply_step
from adaptive_jax._src.performance.native.build import TARGET_NAME
from adaptive_jax._src.performance.native.fused import MIN_SIZE
from adaptive_jax.extend import Transform, static
from tests.xla_defaults import XLA_DEFAULTS

SIZE = MIN_SIZE + 3


@pytest.fixture(autouse=True)
def float32_literals():
    # The transforms below are written for float32 (the conftest turns x64 on).
    with jax.numpy_dtype_promotion("standard"):
        yield


@pytest.fixture(autouse=True)
def native_is_available():
    from adaptive_jax._src.performance import native

    assert native.available() is None, native.available()


@pytest.fixture(autouse=True)
def no_translation_faults(caplog):
    # A fault of the translator falls back with a warning: none may happen here.
    yield
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


class Elementwise(Transform):
    """A user-written elementwise transform: ``u = rule(g, count)`` leaf by leaf."""

    rule: object = static()

    def apply(self, updates, state, params, count):
        return jax.tree_util.tree_map(lambda g: self.rule(g, count), updates), state


def newton_rsqrt(g, count):  # 6 Newton steps towards 1/sqrt(1 + |g|), from 0.5
    a = jnp.abs(g) + 1.0
    y = lax.fori_loop(0, 6, lambda i, y: y * (1.5 - 0.5 * a * y * y), jnp.full_like(g, 0.5))
    return -0.01 * y


def halvings_while(g, count):  # a loop whose trip count depends on the data
    def body(carry):
        k, y = carry
        return k + 1, y * 0.5

    return lax.while_loop(lambda c: c[0] < count + 2, body, (0, g))[1]


def branch_on_count(g, count):  # a branch choosing between two vector functions
    return lax.cond(count % 2 == 0, lambda x: -x, lambda x: 0.5 * x, g)


def switch_on_count(g, count):
    return lax.switch(count % 3, [lambda x: x, lambda x: -x, lambda x: x * x], g)


def scan_over_steps(g, count):
    return lax.scan(lambda y, _: (y * 0.9 + 0.01, None), g, None, length=4)[0]


VECTOR_LOOPS = {
    "fori_loop (scan)": newton_rsqrt,
    "while_loop": halvings_while,
    "cond": branch_on_count,
    "switch": switch_on_count,
    "scan": scan_over_steps,
}


def plain_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), state

    return step


def compare_with_xla(tx, native_expected, steps=3, size=SIZE, dtype=jnp.float32):
    params = jnp.linspace(-1.0, 1.0, size, dtype=dtype)
    state = tx.init(params)
    # Both compiled as XLA compiles by default: a step that stays on XLA is that code.
    step = jax.jit(
        lambda p, s, g: aj.performance.apply_step(tx, p, s, g, native=True),
        donate_argnums=(0, 1),
        compiler_options=XLA_DEFAULTS,
    )
    reference = jax.jit(plain_step(tx), compiler_options=XLA_DEFAULTS)
    grads = jnp.cos(params * 3.0) * 0.1
    assert (TARGET_NAME in step.lower(params, state, grads).as_text()) == native_expected
    expected = got = (params, state)
    for k in range(steps):
        grads = jnp.cos(params * 3.0 + k) * 0.1
        expected = reference(*expected, grads)
        got = step(*jax.tree_util.tree_map(jnp.copy, got), grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)
    return expected


@pytest.mark.parametrize("name", sorted(VECTOR_LOOPS))
def test_a_loop_or_branch_over_vectors_stays_on_xla(name):
    tx = aj.chain(aj.scale_by_adam(), Elementwise(VECTOR_LOOPS[name]))
    params = jnp.zeros(999, jnp.float32)
    assert fused_apply_step(tx, params, tx.init(params), params) is None
    compare_with_xla(tx, native_expected=False)


def test_the_newton_transform_gives_xlas_numbers():
    # The example: translated as a call, the loop body ran once.  (A momentum
    # of decay 0 passes the gradient through and gives the step a second buffer, so
    # apply_step would fuse it; fused_apply_step fuses a single buffer too.)
    params = jnp.zeros(SIZE, jnp.float32)
    alone = aj.chain(Elementwise(newton_rsqrt))
    assert fused_apply_step(alone, params, alone.init(params), params) is None
    tx = aj.chain(aj.trace(0.0), Elementwise(newton_rsqrt))
    params, _ = compare_with_xla(tx, native_expected=False, steps=1)
    expected = -0.01 / np.sqrt(1.0 + np.abs(np.cos(np.linspace(-1, 1, SIZE) * 3.0) * 0.1))
    np.testing.assert_allclose(
        params - np.linspace(-1.0, 1.0, SIZE, dtype=np.float32), expected, rtol=1e-4
    )


SCALAR_SCHEDULES = {
    "fori_loop": lambda c: lax.fori_loop(0, 2, lambda i, v: v * 0.5, 0.05),  # 0.0125
    "while_loop": lambda c: lax.while_loop(lambda v: v > 0.02, lambda v: v * 0.5, 0.05 + 0.0 * c),
    "cond": lambda c: lax.cond(c < 2, lambda: 0.05, lambda: 0.0125),
}


@pytest.mark.parametrize("name", sorted(SCALAR_SCHEDULES))
def test_a_loop_over_scalars_runs_in_xla_before_the_kernel(name):
    tx = aj.sgd(SCALAR_SCHEDULES[name], momentum=0.9)
    compare_with_xla(tx, native_expected=True)


def test_mode_c_refuses_a_scalar_loop():
    # Scalars computed in C (mode "c") may not contain a loop either; mode "xla" binds it.
    def fn(rate, x):
        return (x * lax.fori_loop(0, 2, lambda i, v: v * 0.5, rate),)

    args = [jnp.float32(0.05), jnp.ones(16, jnp.float32)]
    closed = jax.make_jaxpr(fn)(*args)
    with pytest.raises(codegen.Unsupported, match="loop or branch"):
        codegen.translate(closed, args, [(16,)], "c")
    jax.make_jaxpr(lambda *a: codegen.translate(closed, list(a), [(16,)], "xla") and 0)(*args)


def custom_jvp_rule():
    @jax.custom_jvp
    def f(x):
        return x * 2.0

    f.defjvp(lambda primals, tangents: (f(primals[0]), tangents[0] * 2.0))
    return f


def custom_vjp_rule():
    @jax.custom_vjp
    def f(x):
        return x * 4.0

    f.defvjp(lambda x: (f(x), None), lambda _, t: (t * 4.0,))
    return f


# Powers of two inside and outside the calls: XLA folds ``(x * 3) * 0.25`` into
# ``x * 0.75`` and contracts it with the parameter update into one multiply-add, which
# rounds otherwise than the C loop's; a power of two rounds the same either way.
CALLS = {
    "jit": lambda g, c: jax.jit(lambda x: -0.1 * x)(g),
    "custom_jvp": lambda g, c: -0.25 * custom_jvp_rule()(g),
    "custom_vjp": lambda g, c: -0.25 * custom_vjp_rule()(g),
    "checkpoint": lambda g, c: jax.checkpoint(lambda x: -0.1 * x * x)(g),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_are_translated_through(name):
    tx = aj.chain(aj.scale_by_adam(), Elementwise(CALLS[name]))
    compare_with_xla(tx, native_expected=True)


def test_the_step_count_is_not_raced_in_mode_c(monkeypatch):
    # Mode "c" computes the bias corrections from the step count inside the kernel.
    # Written over its input by chunk 0 while other chunks read it, it once gave the
    # second half of 2^20 parameters the next step's bias correction.
    monkeypatch.setattr(fused, "MODES", ("c",))
    tx = aj.adam(1e-3)
    size = 1 << 20
    params = jnp.linspace(-1.0, 1.0, size, dtype=jnp.float32)
    grads = jnp.cos(params * 3.0) * 0.1
    step = jax.jit(lambda p, s, g: fused_apply_step(tx, p, s, g), donate_argnums=(0, 1))
    assert TARGET_NAME in step.lower(params, tx.init(params), grads).as_text()
    reference = jax.jit(plain_step(tx), compiler_options=XLA_DEFAULTS)
    expected = (params, tx.init(params))
    for _ in range(3):
        expected = reference(*expected, grads)
    for _ in range(10):
        got = (jnp.copy(params), tx.init(params))
        for _ in range(3):
            got = step(*got, grads)
        for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
            np.testing.assert_array_equal(x, y)


def test_a_prng_key_in_the_state_stays_on_xla_without_a_fault():
    """noisy_sgd with a typed PRNG key in its state, through the native-sized step.

    No warning (the autouse fixture checks) and the plain numbers (to rounding: the
    helper's step is compiled, the reference runs op by op).
    """
    tx = aj.noisy_sgd(0.05, eta=0.01, gamma=0.55, key=jax.random.key(3))  # a typed key
    params = jnp.linspace(-1.0, 1.0, MIN_SIZE)
    grads = jnp.cos(params)
    state = tx.init(params)
    expected_updates, _ = tx.update(grads, state, params)
    expected = params + expected_updates
    new_params, _ = aj.update_step(tx, jnp.array(params), tx.init(params), grads)
    np.testing.assert_allclose(new_params, expected, rtol=1e-15, atol=1e-15)
