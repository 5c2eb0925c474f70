# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ε under float16 underflow
#
# In float16 a small gradient can be representable while its square is not.
# With $g = 10^{-4}$ (float16's smallest positive number is $2^{-24} \approx 6\cdot10^{-8}$),
# $g^2 = 10^{-8}$ rounds to $0$, so Adam's second moment is exactly $v_t = 0$ and the
# denominator $\sqrt{\hat v_t} + \epsilon$ is just $\epsilon$: **ε floors the denominator**.
# The first step is then $\alpha\,\hat m_1/\epsilon = \alpha g/\epsilon$ instead of
# float32's $\alpha g/(|g| + \epsilon) \approx \alpha$, and it grows as ε shrinks: with
# Adam's default $\epsilon = 10^{-8}$ it is $10^4$ times too large, and once $g/\epsilon$
# exceeds float16's largest number ($65504$) it is infinite.  Without any ε the quotient
# is $g/0 = \infty$, or $0/0 =$ NaN for a gradient that itself underflows.
#
# The fix is either an ε suited to float16 or a float32 second moment
# (`nu_dtype=jnp.float32`), which keeps $g^2$ and gives float32's step.  Adam and its default
# ε: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.  Small values lost
# to float16 underflow, and optimizer arithmetic kept in float32 against it: Micikevicius et
# al., "Mixed Precision Training", ICLR 2018.
#
# This notebook keeps JAX's default float32 and asks for float16 explicitly.  It runs the
# float16 steps op by op (not under `jit`), so that every intermediate is rounded to float16.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

RATE, GRADIENT = 1e-3, 1e-4
eps_grid = np.logspace(-10, -1, 28)


def first_step(eps, param_dtype, nu_dtype=None):
    """Adam's first update and second moment for one parameter with gradient 1e-4."""
    tx = aj.adam(RATE, eps=eps, nu_dtype=nu_dtype)
    params = jnp.ones(1, param_dtype)
    updates, state = tx.update(jnp.full(1, GRADIENT, param_dtype), tx.init(params), params)
    return updates[0], state.inner[1].nu[0]


def sweep(param_dtype, nu_dtype=None):
    """ε is a pytree leaf of the optimizer, so one vmap covers the whole grid."""
    eps = jnp.asarray(eps_grid, jnp.float32)
    step, nu = jax.vmap(lambda e: first_step(e, param_dtype, nu_dtype))(eps)
    return np.asarray(step, np.float64), np.asarray(nu, np.float64)


step16, nu16 = sweep(jnp.float16)
step32, _ = sweep(jnp.float32)
step_mixed, nu_mixed = sweep(jnp.float16, jnp.float32)


# %% [markdown]
# Without ε, by hand: Adam's first direction $\hat m_1/\sqrt{\hat v_1}$ in float16 NumPy,
# for a gradient that is fine in float16, one whose square underflows, and one that
# underflows itself.  (The first gives 0.92 rather than 1: $(1-\beta_2) g^2 = 10^{-7}$ is a
# float16 subnormal and keeps only a few bits.)


# %%
def adam_direction_without_eps(g):
    g = np.float16(g)
    m_hat = np.float16(0.1) * g / np.float16(0.1)  # (1 - b1) g / (1 - b1)
    v_hat = np.float16(0.001) * (g * g) / np.float16(0.001)  # (1 - b2) g² / (1 - b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m_hat / np.sqrt(v_hat)


by_hand = {g: adam_direction_without_eps(g) for g in [1e-2, 1e-4, 1e-8]}
for g, direction in by_hand.items():
    print(f"g = {g:.0e}: float16 g² = {np.float16(g) ** 2}, m̂/sqrt(v̂) = {direction}")

# %%
fig, ax = plt.subplots(figsize=(8, 5))
finite = np.isfinite(step16)
ax.loglog(eps_grid[finite], np.abs(step16[finite]), "o", label="float16 (library)")
ax.loglog(eps_grid, RATE * GRADIENT / eps_grid, "k:", label="α g / ε  (ε floors the denominator)")
ax.loglog(eps_grid, np.abs(step32), "-", label="float32 (library)")
ax.loglog(eps_grid, np.abs(step_mixed), "--", label="float16 params, float32 v (library)")
if not finite.all():  # shade where the float16 step overflowed, if anywhere
    ax.axvspan(
        eps_grid[0], eps_grid[~finite].max(), color="red", alpha=0.1, label="float16 step = inf"
    )
ax.axvline(1e-8, color="grey", lw=0.8)
ax.text(1.1e-8, 1e-5, "Adam's default ε", rotation=90, color="grey")
ax.set(xlabel="ε", ylabel="|first step|", title=f"Adam, α = {RATE}, g = {GRADIENT}")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# In float16 the second moment is exactly 0, so at **every** ε the first step is
# $-\alpha\,\hat m_1/\epsilon = -\alpha g/\epsilon$ (to float16's rounding: $m_1 = (1-\beta_1)g$
# is a subnormal, good to $0.3\,\%$, and a step below $6\cdot10^{-5}$ is itself a subnormal,
# spaced $2^{-24}$ apart).  The quotient $\hat m_1/\epsilon$ is stored in float16 before it is
# multiplied by α, so the step is $-\infty$ exactly where $g/\epsilon$ exceeds float16's
# largest number $65504$, and finite (never NaN) everywhere else.  At the default ε it is
# therefore $10$, about $10^4$ times float32's $\alpha g/(g+\epsilon) \approx \alpha$.  With a
# float32 second moment the step matches float32; the hand computation without ε gives inf
# and NaN.

# %%
assert np.all(nu16 == 0) and np.all(nu_mixed > 0)
g16 = float(np.float16(GRADIENT))  # the gradient float16 actually holds
floored = -RATE * g16 / eps_grid
overflows = g16 / eps_grid > 65504
assert overflows.any() and not overflows.all()
np.testing.assert_array_equal(np.isfinite(step16), ~overflows)
assert np.all(step16[overflows] == -np.inf)  # -inf, not NaN
np.testing.assert_allclose(step16[~overflows], floored[~overflows], rtol=3e-3, atol=2**-24)
default = np.argmin(np.abs(eps_grid - 1e-8))
np.testing.assert_allclose(step16[default], -10.0, rtol=3e-3)
np.testing.assert_allclose(step32, -RATE * GRADIENT / (GRADIENT + eps_grid), rtol=1e-3)
assert step16[default] / step32[default] > 9e3
# float16 stores steps near 1e-6 as subnormals, spaced 2**-24 apart
np.testing.assert_allclose(step_mixed, step32, rtol=2e-3, atol=2**-24)
assert np.isinf(by_hand[1e-4]) and np.isnan(by_hand[1e-8]) and np.isfinite(by_hand[1e-2])
print(
    f"at ε = {eps_grid[default]:.1e}: float16 step {step16[default]:.4g}, "
    f"float32 step {step32[default]:.3g}; inf for ε <= {eps_grid[overflows].max():.2e}"
)
