"""Differential fuzzing: the native step against XLA's plain step, on random elementwise chains.

Hypothesis draws a chain of one to three blocks — the library's elementwise blocks
(Adam's, RMSProp's, Adagrad's, RAdam's and Adadelta's directions, momentum, Lion's
momentum, sign, scaling, weight decay, the learning rate) and small user-written
transforms (``where``, clipping, integer state and integer scalar arithmetic,
transcendental functions, a loop or a branch over vectors, a ``fori_loop``
schedule) — parameters and gradients of an odd size in float32 or float64, sprinkled
with special values (NaN, ±inf, ±0, subnormals, huge and tiny numbers), and runs two
steps both ways.

Every chain the translator accepts must give XLA's numbers within the bound stated in
:mod:`adaptive_jax._src.performance.native.codegen`: non-finite values identical; finite
values within :data:`MAX_ULPS` units in the last place (:data:`MAX_ULPS_TRANSCENDENTAL`
for a chain calling exp, log, tanh, ...) at the scale of the largest finite input or
output of that element — the room where XLA and the C compiler may round differently:
a multiply-add contracted by one and not the other, a product of constants folded by
XLA, a C library function.  Chains with a loop or branch over vectors must be refused
(and so run on XLA).  Each transcendental function is checked on its own against
:data:`MAX_ULPS_PER_FUNCTION`.

The examples are derandomized (the same every run, so the suite is not flaky);
``ADAPTIVE_JAX_FUZZ_EXAMPLES=500`` runs more, drawn afresh.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax import lax

import adaptive_jax as aj
from adaptive_jax._src.performance.native import fused_apply_step, fused_elementwise
from adaptive_jax.extend import Transform, static

# The bounds stated in adaptive_jax/_src/performance/native/codegen.py.
MAX_ULPS = 4  # a chain of exactly rounded operations
MAX_ULPS_TRANSCENDENTAL = 32  # a chain calling exp, log, tanh, ... (each within 8)
MAX_ULPS_PER_FUNCTION = 8
EXAMPLES = int(os.environ.get("ADAPTIVE_JAX_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=EXAMPLES or 40,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
SIZES = (1, 7, 999)
SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-310, 1e30, -1e-30, 3.0)


class Elementwise(Transform):
    """A user-written stateless transform: ``u = rule(g, count)``."""

    rule: object = static()

    def apply(self, updates, state, params, count):
        return jax.tree_util.tree_map(lambda g: self.rule(g, count), updates), state


class FlipCounter(Transform):
    """A user-written transform with integer state: halve updates whose sign flipped twice."""

    def init_state(self, params):
        return (jnp.zeros(jnp.shape(params), jnp.int32), jnp.zeros_like(params))

    def apply(self, updates, state, params, count):
        flips, last = state
        flips = flips + (jnp.sign(updates) * jnp.sign(last) < 0).astype(jnp.int32)
        return jnp.where(flips >= 2, updates * 0.5, updates), (flips, updates)


def newton_rsqrt(g, count):
    a = jnp.abs(g) + 1.0
    return lax.fori_loop(0, 6, lambda i, y: y * (1.5 - 0.5 * a * y * y), jnp.full_like(g, 0.5))


def where_clip(g, count):
    return jnp.where(jnp.abs(g) > 0.5, jnp.sign(g) * 0.5, g)


def finite_or_zero(g, count):
    return jnp.where(jnp.isfinite(g), g, 0.0)


def clip(g, count):
    return jnp.minimum(jnp.maximum(g, -1.0), 1.0)


def powers(g, count):
    return g**3 * 0.1 + g * g


def count_parity(g, count):  # integer scalar arithmetic on the step count
    return jnp.where(count % 2 == 0, g, -g)


def squash(g, count):
    return jnp.tanh(g) * 0.5


def log_compress(g, count):
    return jnp.sign(g) * jnp.log1p(jnp.abs(g))


def exp_decay(g, count):
    return g * jnp.exp(-jnp.abs(g))


def swish(g, count):
    return g * jax.nn.sigmoid(g)


def power_of_two(g, count):
    return jnp.exp2(jnp.clip(g, -20.0, 20.0))


def vector_cond(g, count):
    return lax.cond(count > 1, lambda x: -x, lambda x: x, g)


def fori_schedule():
    return aj.scale_by_learning_rate(lambda c: lax.fori_loop(0, 3, lambda i, v: v * 0.5, 0.4))


EXACT, TRANSCENDENTAL, REFUSED = "exact", "transcendental", "refused"
# name -> (block, what it is): exactly rounded arithmetic, a C library function, or a
# loop or branch over vectors (which keeps the whole step on XLA)
USER_BLOCKS = {
    **{f.__name__: (lambda f=f: Elementwise(f), EXACT)
       for f in (where_clip, finite_or_zero, clip, powers, count_parity)},
    **{f.__name__: (lambda f=f: Elementwise(f), TRANSCENDENTAL)
       for f in (squash, log_compress, exp_decay, swish, power_of_two)},
    "flip_counter": (FlipCounter, EXACT),
    "fori_schedule": (fori_schedule, EXACT),
    "newton_rsqrt": (lambda: Elementwise(newton_rsqrt), REFUSED),
    "vector_cond": (lambda: Elementwise(vector_cond), REFUSED),
}  # fmt: skip


@st.composite
def library_block(draw):
    decay = st.sampled_from([0.0, 0.5, 0.9, 0.999])
    eps = st.sampled_from([0.0, 1e-8, 1e-3])
    name = draw(st.sampled_from(["adam", "rms", "adagrad", "trace", "scale", "sign", "decay",
                                 "rate", "lion", "radam", "adadelta"]))  # fmt: skip
    if name == "adam":
        return aj.scale_by_adam(b1=draw(decay), b2=draw(decay), eps=draw(eps))
    if name == "rms":
        return aj.scale_by_rms(decay=draw(decay), eps=draw(eps))
    if name == "adagrad":
        return aj.scale_by_adagrad(eps=draw(eps))
    if name == "trace":
        return aj.trace(decay=draw(decay), nesterov=draw(st.booleans()))
    if name == "scale":
        return aj.scale(draw(st.sampled_from([-1.5, 0.5, 3.0, 1e-3])))
    if name == "sign":
        return aj.scale_by_sign()
    if name == "decay":
        return aj.add_decoupled_weight_decay(draw(st.sampled_from([0.0, 0.01, 0.1])))
    if name == "rate":
        return aj.scale_by_learning_rate(draw(st.sampled_from([0.1, 1e-3])))
    if name == "lion":
        return aj.lion_momentum(b1=draw(decay), b2=draw(decay))
    if name == "radam":
        return aj.chain(  # RAdam's direction
            aj.ema_of_gradients(draw(decay)),
            aj.ema_of_squares(draw(st.sampled_from([0.9, 0.999]))),
            aj.debias(),
            aj.rectified_precondition(),
        )
    return aj.scale_by_adadelta(rho=draw(decay), eps=draw(st.sampled_from([1e-6, 1e-3])))


@st.composite
def chains(draw):
    """A chain of 1 to 3 blocks, and the kinds of user blocks in it."""
    blocks, kinds = [], set()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            blocks.append(draw(library_block()))
        else:
            make, kind = USER_BLOCKS[draw(st.sampled_from(sorted(USER_BLOCKS)))]
            blocks.append(make())
            kinds.add(kind)
    return aj.chain(*blocks), kinds


@st.composite
def arrays(draw, size, dtype):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3]))
    values = rng.standard_normal(size) * scale
    for index, value in draw(
        st.lists(st.tuples(st.integers(0, size - 1), st.sampled_from(SPECIALS)), max_size=6)
    ):
        values[index] = value
    return jnp.asarray(values.astype(dtype))


def plain_step(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state


def native_step(tx, params, state, grads):
    return fused_apply_step(tx, params, state, grads)


PLAIN, NATIVE = jax.jit(plain_step), jax.jit(native_step)


def assert_within_bound(got, expected, related, bound):
    """Non-finite values identical; finite ones within ``bound`` ulp of the element's scale.

    The scale of element ``i`` is the largest finite magnitude at ``i`` among ``related``
    arrays (the step's inputs and outputs): a difference of nearly cancelling terms
    is measured against the terms, not against their small difference.
    """
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        if not np.issubdtype(b.dtype, np.floating):
            np.testing.assert_array_equal(a, b)
            continue
        finite = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_array_equal(a[~finite], b[~finite])
        scale = np.maximum(np.abs(np.where(finite, a, 0)), np.abs(np.where(finite, b, 0)))
        for x in related:
            x = np.asarray(x)
            if x.shape == b.shape and np.issubdtype(x.dtype, np.floating):
                scale = np.maximum(scale, np.abs(np.where(np.isfinite(x), x, 0)).astype(b.dtype))
        difference = np.abs(np.subtract(a, b, where=finite, out=np.zeros_like(b)))
        # Below the smallest normal number a value may be flushed to zero on one side
        # only (XLA flushes subnormals; its log1p passes a tiny input through unchanged).
        difference[difference < np.finfo(b.dtype).tiny] = 0
        error = difference / np.spacing(scale.astype(b.dtype))
        worst = int(np.argmax(error))
        assert error[worst] <= bound, (
            f"{error[worst]:.1f} ulp at {worst}: native {a[worst]!r}, XLA {b[worst]!r}"
        )


@SETTINGS
@given(
    chain=chains(),
    size=st.sampled_from(SIZES),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_native_steps_agree_with_xla(chain, size, dtype, data):
    tx, kinds = chain
    params = data.draw(arrays(size, dtype), label="params")
    grads = [data.draw(arrays(size, dtype), label=f"gradient {k}") for k in range(2)]
    state = tx.init(params)
    refused = fused_apply_step(tx, params, state, grads[0]) is None
    assert refused == (REFUSED in kinds), f"{tx}: refused={refused}"
    if refused:
        return
    related = [params, *grads, *jax.tree_util.tree_leaves(state)]
    expected = got = (params, state)
    for g in grads:
        expected = PLAIN(tx, *expected, g)
        got = NATIVE(tx, *got, g)
        related += jax.tree_util.tree_leaves(expected)
    bound = MAX_ULPS_TRANSCENDENTAL if TRANSCENDENTAL in kinds else MAX_ULPS
    assert_within_bound(got, expected, related, bound)


TRANSCENDENTAL_FUNCTIONS = {
    "exp": jnp.exp,
    "exp2": jnp.exp2,
    "expm1": jnp.expm1,
    "log": lambda x: jnp.log(jnp.abs(x)),
    "log1p": lambda x: jnp.log1p(jnp.abs(x)),
    "tanh": jnp.tanh,
    "logistic": jax.nn.sigmoid,
    "pow": lambda x: jnp.power(jnp.abs(x), x),
    "rsqrt": lambda x: lax.rsqrt(jnp.abs(x)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_each_transcendental_function_is_within_its_bound(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(1 << 13) * s for s in (1e-3, 1.0, 10.0, 80.0)])
    # Not subnormal inputs: XLA treats them as zero (log(1e-40) is -inf there), the C
    # library as numbers (-92.1); XLA's own arithmetic never produces them.
    normal = [v for v in SPECIALS if not 0 < abs(v) < np.finfo(dtype).tiny]
    x = jnp.asarray(np.concatenate([x, normal]).astype(dtype))
    for name, fn in TRANSCENDENTAL_FUNCTIONS.items():
        got = fused_elementwise(lambda x, fn=fn: (fn(x),), [x])
        assert got is not None, name
        assert_within_bound(got, (fn(x),), [], MAX_ULPS_PER_FUNCTION)
