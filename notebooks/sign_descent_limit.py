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
# # The β = 0 limit of Adam is sign descent; Adam is scale invariant, SGD is not
#
# With $\beta_1 = \beta_2 = 0$, Adam's moments are $m_t = g_t$,
# $v_t = g_t^2$ and the bias corrections are 1, so
#
# $$\theta_t = \theta_{t-1} - \alpha\,\frac{g_t}{|g_t| + \epsilon}
# \;\xrightarrow{\epsilon \to 0}\; \theta_{t-1} - \alpha\,\mathrm{sign}(g_t).$$
#
# Per coordinate the difference from sign descent is exactly
# $\alpha\,\epsilon/(|g_t| + \epsilon)$: the largest deviation over a run is
# $\alpha\epsilon/(\min|g| + \epsilon)$, linear in ε.
#
# Scale invariance: multiplying the loss by $c > 0$ multiplies $m$ by $c$ and $\sqrt v$ by
# $c$, so Adam's steps do not change (up to ε), while SGD's steps are $c$ times larger.
# Loss: $L(x, y) = \tfrac12(100x^2 + y^2)$.
#
# Scale invariance is noted with Adam's definition (Kingma & Ba, "Adam: A Method for Stochastic
# Optimization", ICLR 2015, §2.1); the sign-descent limit by Bernstein et al., "signSGD:
# Compressed Optimisation for Non-Convex Problems", ICML 2018, and Balles & Hennig,
# "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic Gradients", ICML 2018.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
RATE, STEPS = 0.01, 50
start = jnp.array([1.0, 1.0])


def loss(params):
    return 0.5 * (100.0 * params[0] ** 2 + params[1] ** 2)


sign_tx = aj.sign_descent(RATE)


@jax.jit
def sign_run():
    """Sign descent's gradients and updates along its own path."""

    def step(carry, _):
        params, state = carry
        gradient = jax.grad(loss)(params)
        updates, state = sign_tx.update(gradient, state, params)
        return (aj.apply_updates(params, updates), state), (gradient, updates)

    _, (gradients, updates) = jax.lax.scan(step, (start, sign_tx.init(start)), length=STEPS)
    return gradients, updates


gradients, sign_updates = sign_run()


@jax.jit
def max_deviation(eps):
    """Largest |Adam(β1=β2=0, ε) update - sign-descent update| on the same gradients."""
    tx = aj.adam(RATE, b1=0.0, b2=0.0, eps=eps)

    def step(state, gradient):
        updates, state = tx.update(gradient, state)
        return state, updates

    _, adam_updates = jax.lax.scan(step, tx.init(start), gradients)
    return jnp.max(jnp.abs(adam_updates - sign_updates))


eps_grid = np.logspace(-12, 0, 25)
deviation = np.asarray(jax.vmap(max_deviation)(jnp.asarray(eps_grid)))
smallest_gradient = float(jnp.min(jnp.abs(gradients)))


# %%
@jax.jit
def final_loss(tx, loss_scale):
    """Unscaled loss after 200 steps of ``tx`` on ``loss_scale * loss``."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(loss_scale * jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (start, tx.init(start)), length=200)
    return loss(path[-1]), path


loss_scales = np.logspace(-3, 3, 13)
initial_loss = float(loss(start))
adam_loss, adam_paths = map(
    np.asarray, jax.vmap(lambda c: final_loss(aj.adam(0.05), c))(jnp.asarray(loss_scales))
)
sgd_loss, _ = map(
    np.asarray, jax.vmap(lambda c: final_loss(aj.sgd(0.015), c))(jnp.asarray(loss_scales))
)
with np.errstate(invalid="ignore"):
    diverged = ~(sgd_loss <= initial_loss)  # NaN counts as diverged

# %%
fig, (ax_dev, ax_scale) = plt.subplots(1, 2, figsize=(12, 4.5))
ax_dev.loglog(eps_grid, deviation, "o", label="library: max |Adam(β=0) − sign|")
ax_dev.loglog(
    eps_grid, RATE * eps_grid / (smallest_gradient + eps_grid), "k:", label="α ε / (min|g| + ε)"
)
ax_dev.set(xlabel="ε", ylabel="max deviation over 50 steps", title="Adam(β₁=β₂=0) → sign descent")
ax_dev.legend()
ax_scale.loglog(loss_scales, adam_loss, "o-", label="Adam, α = 0.05")
ax_scale.loglog(loss_scales[~diverged], sgd_loss[~diverged], "s-", label="SGD, α = 0.015")
ax_scale.plot(
    loss_scales[diverged],
    np.full(diverged.sum(), 10 * initial_loss),
    "rx",
    label="SGD diverged (loss above the start, inf or NaN)",
)
ax_scale.set(xlabel="loss scale c", ylabel="L(θ_200)", title="training c·L for 200 steps")
ax_scale.legend(loc="center right", fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# The measured deviation equals $\alpha\epsilon/(\min|g|+\epsilon)$; Adam's paths for every
# loss scale $c \in [10^{-3}, 10^3]$ agree with $c = 1$ to $10^{-4}$; SGD diverges for large
# $c$ and its final loss spans more than four orders of magnitude over the other runs.

# %%
np.testing.assert_allclose(
    deviation, RATE * eps_grid / (smallest_gradient + eps_grid), rtol=1e-6, atol=1e-15
)
reference = adam_paths[list(loss_scales).index(1.0)]
assert np.max(np.abs(adam_paths - reference)) < 1e-4
assert np.any(~np.isfinite(sgd_loss)) and np.all(diverged[loss_scales >= 10])
converged_sgd = sgd_loss[~diverged]
assert converged_sgd.max() / converged_sgd.min() > 1e4
print(f"Adam final loss over c: {adam_loss.min():.3e} .. {adam_loss.max():.3e}")
