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
# # A plateau and a canyon: no fixed step size works, Adagrad does
#
# A landscape with a wide, flat plateau around a sharp basin, the two regions that defeat one
# fixed step size (Goodfellow, Bengio & Courville, *Deep Learning*, 2016, §8.2).  Here
#
# $$f(x) = 1 - e^{-x^2 / (2\sigma^2)}, \qquad \sigma = 0.1, \qquad x_0 = 0.5 .$$
#
# At $x_0$ the slope is $f'(x_0) = x_0 \sigma^{-2} e^{-x_0^2/(2\sigma^2)} \approx 2\cdot 10^{-4}$,
# at the minimum the curvature is $f''(0) = \sigma^{-2} = 100$.  Gradient descent
# $x \leftarrow x - \alpha f'(x)$ is stable at the minimum only if $\alpha < 2\sigma^2 = 0.02$,
# and with such an $\alpha$ it needs thousands of steps to cross the plateau; any larger
# $\alpha$ throws it out of the canyon.  Adagrad's step
# $\eta\, g_t / (\sqrt{\sum_{k\le t} g_k^2} + \epsilon)$ is $\eta$ on the first step whatever
# the slope, and shrinks once the large gradients of the canyon enter the sum (Duchi, Hazan &
# Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization",
# JMLR 2011).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
STEPS = 300
SIGMA = 0.1
start = jnp.array(0.5)


def loss(x):
    return 1 - jnp.exp(-(x**2) / (2 * SIGMA**2))


@jax.jit(static_argnames="steps")
def trajectory(tx, start, steps=STEPS):
    """Iterates theta_0, ..., theta_T of the transformation ``tx`` on ``loss``."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (start, tx.init(start)), length=steps)
    return jnp.concatenate([start[None], path])


runs = {
    "GD, α = 0.019 (stable)": np.asarray(trajectory(aj.sgd(0.019), start)),
    "GD, α = 1000 (fast)": np.asarray(trajectory(aj.sgd(1000.0), start)),
    "Adagrad, η = 0.1": np.asarray(trajectory(aj.adagrad(0.1), start)),
}

# Hyperparameters are pytree leaves, so a sweep over the learning rate is one vmap.
rates = jnp.logspace(-3, 4, 71)
final_gd = np.abs(jax.vmap(lambda rate: trajectory(aj.sgd(rate), start)[-1])(rates))
final_adagrad = np.abs(jax.vmap(lambda rate: trajectory(aj.adagrad(rate), start)[-1])(rates))
rates = np.asarray(rates)

# How long the stable rate takes to cross the plateau into the canyon (|x| < 0.1).
long_gd = np.asarray(trajectory(aj.sgd(0.019), start, steps=10_000))
crossing = int(np.argmax(np.abs(long_gd) < 0.1))
print(f"GD with α = 0.019 enters the canyon |x| < 0.1 after {crossing} steps")

# %%
fig, (ax_land, ax_dist, ax_sweep) = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
grid = np.linspace(-0.8, 0.8, 400)
ax_land.plot(grid, loss(grid), "k", lw=1)
for name, path in runs.items():
    shown = path[:30][np.abs(path[:30]) < 0.8]
    ax_land.plot(shown, loss(shown), "o", ms=4, alpha=0.6, label=name)
ax_land.set(xlabel="x", ylabel="f(x)", title="landscape and the first 30 iterates")
ax_land.legend(fontsize=8)
for name, path in runs.items():
    ax_dist.semilogy(np.maximum(np.abs(path), 1e-30), label=name)
ax_dist.set(xlabel="step", ylabel="|x_t|", title="distance to the minimum", ylim=(1e-30, 1e4))
ax_dist.legend(fontsize=8)
ax_sweep.loglog(rates, np.maximum(final_gd, 1e-30), ".-", label="GD")
ax_sweep.loglog(rates, np.maximum(final_adagrad, 1e-30), ".-", label="Adagrad")
ax_sweep.axvline(2 * SIGMA**2, color="grey", ls=":", label="2σ² (GD stability limit)")
ax_sweep.set(xlabel="learning rate", ylabel=f"|x_{STEPS}|", title=f"after {STEPS} steps")
ax_sweep.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# The stable GD run matches a NumPy loop with the hand-derived gradient, and that loop
# needs thousands of steps to bring the stable rate into the canyon $|x| < 0.1$ (the
# library's 10 000-step run enters it at the same step); no learning rate in
# $[10^{-3}, 10^4]$ brings GD within $0.1$ of the minimum in 300 steps; Adagrad reaches
# $|x| < 10^{-6}$ in 300 steps for every $\eta$ in $[0.016, 0.5]$, one and a half decades.

# %%
x, by_hand = 0.5, [0.5]
for _ in range(STEPS):
    x = x - 0.019 * x / SIGMA**2 * np.exp(-(x**2) / (2 * SIGMA**2))
    by_hand.append(x)
np.testing.assert_allclose(runs["GD, α = 0.019 (stable)"], by_hand, rtol=1e-12)
x, steps_to_canyon = 0.5, 0
while abs(x) >= 0.1:
    x = x - 0.019 * x / SIGMA**2 * np.exp(-(x**2) / (2 * SIGMA**2))
    steps_to_canyon += 1
assert steps_to_canyon >= 1000 and crossing == steps_to_canyon, (steps_to_canyon, crossing)

assert final_gd.min() > 0.1, final_gd.min()
band = (rates >= 0.0158) & (rates <= 0.502)
assert np.log10(rates[band].max() / rates[band].min()) > 1.45  # more than a decade
assert np.all(final_adagrad[band] < 1e-6), final_adagrad[band]
print(f"closest GD gets: {final_gd.min():.3f}; Adagrad converges for η in [0.016, 0.5]")
