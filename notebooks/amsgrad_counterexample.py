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
# # Reddi et al.'s counterexample: Adam drifts to the worst point, AMSGrad does not
#
# The online problem of Reddi, Kale & Kumar ("On the Convergence of Adam and Beyond",
# ICLR 2018, §3): on $x \in [-1, 1]$,
#
# $$f_t(x) = \begin{cases} C x & t \bmod 3 = 1 \\ -x & \text{otherwise}\end{cases}, \qquad C = 3 .$$
#
# Each cycle of three losses sums to $(C - 2)\,x$, so the best fixed point is $x^* = -1$.
# With $\beta_1 = 0$, $\beta_2 = 1/(1+C^2)$ and $\alpha_t = \alpha/\sqrt t$, Adam's
# second moment forgets the rare large gradient $C$ within a step: the two $-1$ gradients
# get large steps up, the single $C$ gradient a step of about the same size down, and $x$
# drifts to $+1$, the worst point, with average regret $R_T / T \to 2/3$.  AMSGrad divides
# by the running maximum of $v_t$, which remembers $C^2$, and converges to $-1$.
# Iterates are projected back onto $[-1, 1]$ after every step.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
C, ALPHA, STEPS = 3.0, 0.5, 3000
B2 = 1 / (1 + C**2)
t = np.arange(1, STEPS + 1)
gradients = np.where(t % 3 == 1, C, -1.0)
rate = aj.schedules.inverse_sqrt(ALPHA)  # alpha / sqrt(t), t counted from 1


@jax.jit
def projected_trajectory(tx):
    def step(carry, gradient):
        x, state = carry
        updates, state = tx.update(gradient, state, x)
        x = jnp.clip(aj.apply_updates(x, updates), -1.0, 1.0)
        return (x, state), x

    start = jnp.zeros(())
    _, xs = jax.lax.scan(step, (start, tx.init(start)), jnp.asarray(gradients))
    return jnp.concatenate([start[None], xs])


optimizers = {
    "Adam": aj.adam(rate, b1=0.0, b2=B2),
    "AMSGrad (torch: max of v_t)": aj.amsgrad(rate, b1=0.0, b2=B2, maximum_of="raw"),
    "AMSGrad (default: max of v̂_t)": aj.amsgrad(rate, b1=0.0, b2=B2),
}
paths = {name: np.asarray(projected_trajectory(tx)) for name, tx in optimizers.items()}

# Regret against the best fixed point: min over x in [-1, 1] of sum_t g_t x is -|sum_t g_t|.
best_total = -np.abs(np.cumsum(gradients))
average_regret = {
    name: (np.cumsum(gradients * path[:-1]) - best_total) / t for name, path in paths.items()
}

# %%
fig, (ax_x, ax_regret) = plt.subplots(1, 2, figsize=(12, 4))
for name, path in paths.items():
    ax_x.plot(path, label=name, lw=1)
    ax_regret.semilogx(t, average_regret[name], label=name)
ax_x.set(xlabel="step", ylabel="x_t", title="iterate (best fixed point: x* = -1)")
ax_regret.axhline(2 / 3, color="k", ls=":", label="2/3")
ax_regret.semilogx(t, 1.5 / np.sqrt(t), "k--", lw=0.8, label="1.5/sqrt(T)")
ax_regret.set(xlabel="T", ylabel="R_T / T", title="average regret")
ax_x.legend()
ax_regret.legend()
plt.show()

# %% [markdown]
# ## Check
#
# The library's Adam path equals a NumPy loop of Kingma & Ba's update (bias-corrected $v$,
# $\beta_1 = 0$, step $\alpha/\sqrt t$); Adam ends at $+1$ and its average regret stays within
# $0.03$ of $2/3$ at $T = 300, 1000, 3000$; both AMSGrad variants end at $-1$ and their
# average regret *vanishes*: it decreases at every $T$ of $30, 100, 300, 1000, 3000$, and the
# regret itself stays below $1.5\sqrt T$ (the $O(\sqrt T)$ rate of Reddi et al.'s bound), so
# $R_T/T \to 0$.

# %%
x, v_state, by_hand = 0.0, 0.0, [0.0]
for step, g in zip(t, gradients):
    v_state = B2 * v_state + (1 - B2) * g**2
    v_hat = v_state / (1 - B2**step)
    x = float(np.clip(x - ALPHA / np.sqrt(step) * g / (np.sqrt(v_hat) + 1e-8), -1, 1))
    by_hand.append(x)
np.testing.assert_allclose(paths["Adam"], by_hand, rtol=1e-10, atol=1e-12)

horizons = np.array([30, 100, 300, 1000, 3000])
assert paths["Adam"][-300:].mean() > 0.98
assert np.all(np.abs(average_regret["Adam"][horizons[2:] - 1] - 2 / 3) < 0.03)
for name in optimizers:
    if name.startswith("AMSGrad"):
        at_horizons = average_regret[name][horizons - 1]
        assert paths[name][-300:].mean() < -0.98, name
        assert np.all(np.diff(at_horizons) < 0), (name, at_horizons)
        assert np.all(at_horizons * horizons < 1.5 * np.sqrt(horizons)), (name, at_horizons)
        assert average_regret[name][-1] < 0.02, name
print({name: round(float(r[-1]), 4) for name, r in average_regret.items()})
