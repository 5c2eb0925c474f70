"""Low precision and complex parameters, all under ``jax_numpy_dtype_promotion="strict"``.

conftest turns strict promotion on, so any implicit promotion inside the library fails
these tests.  References are float64 NumPy computations of the seeds' formulas.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax._src.core.numerics import bias_correction
from tests.optimizer_catalog import NAMED_OPTIMIZERS, VALUE

LOW = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}
TARGET = np.array([0.5, -1.0, 2.0, 0.25])


def quadratic_grad(params):
    return (params.astype(jnp.float32) - jnp.asarray(TARGET, jnp.float32)).astype(params.dtype)


def accepts(factory, argument):
    return argument in inspect.signature(factory).parameters


MOMENT_DTYPE_OPTIMIZERS = sorted(
    name
    for name, (factory, _) in NAMED_OPTIMIZERS.items()
    if accepts(factory, "mu_dtype") or accepts(factory, "nu_dtype")
)


def run(tx, params, steps):
    @jax.jit
    def train(params):
        def step(carry, _):
            params, state, _ = carry
            updates, state = tx.update(quadratic_grad(params), state, params)
            return (aj.apply_updates(params, updates), state, updates), None

        state = tx.init(params)
        update_type = jax.eval_shape(tx.update, params, state, params)[0]
        carry = (params, state, jnp.zeros_like(params, update_type.dtype))
        return jax.lax.scan(step, carry, None, length=steps)[0]

    return train(params)


@pytest.mark.parametrize("dtype", sorted(LOW))
@pytest.mark.parametrize("name", MOMENT_DTYPE_OPTIMIZERS)
def test_low_precision_params_with_float32_moments(name, dtype):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    moment_dtypes = {k: jnp.float32 for k in ("mu_dtype", "nu_dtype") if accepts(factory, k)}
    tx = factory(**kwargs, **moment_dtypes)
    params = jnp.zeros(4, LOW[dtype])
    low, state, _ = run(tx, params, steps=10)
    reference, _, _ = run(factory(**kwargs), jnp.zeros(4, jnp.float64), steps=10)
    assert low.dtype == LOW[dtype]
    moments = [x for x in jax.tree_util.tree_leaves(state.inner) if jnp.ndim(x) == 1]
    assert moments and all(x.dtype == jnp.float32 for x in moments)
    # Ten steps of size ~lr, each rounded to the parameter's precision (2^-8 or 2^-11).
    np.testing.assert_allclose(np.asarray(low, np.float64), reference, atol=0.02)


@pytest.mark.parametrize("dtype", sorted(LOW))
@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_every_named_optimizer_keeps_low_precision_params_finite(name, dtype):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    params = jnp.zeros(4, LOW[dtype])
    state = tx.init(params)
    for _ in range(3):  # eagerly: the operations compile once for all optimizers
        # value= is the loss polyak_sgd needs (a stand-in); the others ignore it.
        updates, state = tx.update(quadratic_grad(params), state, params, value=VALUE)
        params = aj.apply_updates(params, updates)
    assert params.dtype == LOW[dtype]
    for leaf in jax.tree_util.tree_leaves((params, state, updates)):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


@pytest.mark.parametrize(
    "param_dtype, update_dtype",
    [
        (jnp.bfloat16, jnp.float32),
        (jnp.float16, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
        (jnp.float32, jnp.float64),
        (jnp.float64, jnp.float16),
        (jnp.complex64, jnp.complex128),
    ],
)
def test_apply_updates_keeps_parameter_dtypes(param_dtype, update_dtype):
    params = {"p": jnp.array([1.0, -3.5, 1000.0], param_dtype)}
    updates = {"p": jnp.array([1e-3, 0.25, 7.0], update_dtype)}
    new = aj.apply_updates(params, updates)
    assert new["p"].dtype == param_dtype
    # the sum taken in the wider dtype, rounded once to the parameter's dtype
    wide = np.promote_types(np.dtype(param_dtype), np.dtype(update_dtype))
    if np.dtype(param_dtype) == np.dtype(jnp.bfloat16):
        wide = np.dtype(update_dtype)
    expected = (
        np.asarray(params["p"]).astype(wide) + np.asarray(updates["p"]).astype(wide)
    ).astype(param_dtype)
    np.testing.assert_array_equal(np.asarray(new["p"]), expected)


def float16_adam_step(eps, moment_dtype=None):
    lr, b1, b2 = 1e-3, 0.9, 0.999
    params = jnp.ones(5, jnp.float16)
    # (1 - b2) g^2 underflows to 0 in float16 for all but the last entry
    grads = jnp.array([1e-5, 0.0, -4e-4, 3e-3, 1.0], jnp.float16)
    tx = aj.adam(lr, b1, b2, eps, mu_dtype=moment_dtype, nu_dtype=moment_dtype)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    mu, nu = (np.asarray(x, np.float64) for x in (state.inner[0].mu, state.inner[1].nu))
    # the stored moments put through Adam's formula in float64
    expected = -lr * (mu / (1 - b1)) / (np.sqrt(nu / (1 - b2)) + eps)
    return np.asarray(grads, np.float64), nu, np.asarray(updates, np.float64), expected


def test_eps_keeps_float16_finite_when_the_squared_gradient_underflows():
    # With float16 second moments the step where g^2 underflowed is m_hat / eps, so eps
    # bounds it: eps = 1e-4 (the usual float16 choice) keeps every step finite.
    grads, nu, updates, expected = float16_adam_step(eps=1e-4)
    assert np.all(nu[:4] == 0) and np.all(grads[[0, 2, 3]] ** 2 > 0)
    assert np.all(np.isfinite(updates))
    np.testing.assert_allclose(updates, expected, rtol=2e-3)
    assert updates[1] == 0.0  # a zero gradient does not move (no 0/0)


def test_default_eps_is_not_rounded_away_in_float16():
    # eps = 1e-8 is 0 in float16; the denominator is formed in float32, so a zero gradient
    # gives 0 (not 0/0 = NaN) and small gradients give the finite m_hat / eps ...
    grads, nu, updates, expected = float16_adam_step(eps=1e-8)
    assert updates[1] == 0.0
    np.testing.assert_allclose(updates[[0, 2, 4]], expected[[0, 2, 4]], rtol=2e-3)
    # ... while a direction m_hat / eps beyond the float16 range overflows to inf
    # (docs/bad_inputs.md): with float16 moments, pick eps >= 1e-4 or float32 moments.
    direction = expected / -1e-3
    assert abs(direction[3]) > np.finfo(np.float16).max and np.isinf(updates[3])


def test_float32_moments_keep_the_float16_step_exact():
    grads, nu, updates, _ = float16_adam_step(eps=1e-8, moment_dtype=jnp.float32)
    assert np.all(nu[[0, 2, 3, 4]] > 0)
    # the first step is -lr g / (|g| + eps)
    np.testing.assert_allclose(updates, -1e-3 * grads / (np.abs(grads) + 1e-8), rtol=2e-3)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.995])
@pytest.mark.parametrize("count", [1, 2, 10, 1000])
def test_bias_correction_of_bfloat16_hyperparameters_is_positive_and_exact(beta, count):
    beta16 = jnp.bfloat16(beta)
    correction = bias_correction(beta16, jnp.asarray(count, jnp.int32))
    assert correction.dtype == jnp.float32
    expected = 1.0 - float(beta16) ** count  # closed form at the bfloat16 value, float64
    assert float(correction) > 0
    np.testing.assert_allclose(float(correction), expected, rtol=1e-5)


def test_adam_with_bfloat16_params_and_hyperparameters_takes_a_learning_rate_sized_step():
    bf = jnp.bfloat16
    tx = aj.adam(bf(0.01), b1=bf(0.9), b2=bf(0.99), eps=bf(1e-8))
    params = jnp.ones(3, bf)
    grads = jnp.array([1e-6, -2.0, 300.0], bf)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    assert updates.dtype == bf
    # first step: -lr * m_hat / sqrt(v_hat) = -lr * sign(g) (the eps is negligible here)
    np.testing.assert_allclose(
        np.asarray(updates, np.float64), -0.01 * np.sign([1, -1, 1]), rtol=2**-7
    )


# -- complex parameters: second moments are |g|^2 ----------------------------------------

rng = np.random.default_rng(0)
A = rng.normal(size=(8, 3)) + 1j * rng.normal(size=(8, 3))
B = rng.normal(size=8) + 1j * rng.normal(size=8)


def least_squares(z):
    return jnp.sum(jnp.abs(jnp.asarray(A) @ z - jnp.asarray(B)) ** 2)


def descent_direction(z):
    # JAX returns the conjugate of df/dx + i df/dy for real f of complex z; optimizers
    # take the direction itself, as optax documents for complex parameters.
    return jnp.conj(jax.grad(least_squares)(z))


def test_adam_on_complex_least_squares_matches_a_hand_computation():
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    z = jnp.zeros(3, jnp.complex128)
    tx = aj.adam(lr, b1, b2, eps)
    state = tx.init(z)
    assert state.inner[1].nu.dtype == jnp.float64  # |g|^2 is real
    step = jax.jit(lambda z, state: tx.update(descent_direction(z), state, z))
    m = np.zeros(3, complex)
    v = np.zeros(3)
    z_ref = np.zeros(3, complex)
    for t in range(1, 4):
        g = 2 * A.conj().T @ (A @ z_ref - B)  # d/dx + i d/dy of |Az - b|^2
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * np.abs(g) ** 2
        z_ref = z_ref - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        updates, state = step(z, state)
        z = aj.apply_updates(z, updates)
    np.testing.assert_allclose(np.asarray(z), z_ref, rtol=1e-12)


def test_adam_converges_on_complex_least_squares():
    tx = aj.adam(aj.schedules.exponential_decay(0.05, 0.5, transition_steps=500))

    @jax.jit
    def train(z):
        def body(carry, _):
            z, state = carry
            updates, state = tx.update(descent_direction(z), state, z)
            return (aj.apply_updates(z, updates), state), None

        (z, _), _ = jax.lax.scan(body, (z, tx.init(z)), None, length=3000)
        return z

    z = train(jnp.zeros(3, jnp.complex128))
    solution = np.linalg.lstsq(A, B, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(z), solution, atol=1e-6)
