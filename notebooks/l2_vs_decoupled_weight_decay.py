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
# # L2 regularisation against decoupled weight decay
#
# Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019): adding
# $\tfrac\lambda2\lVert\theta\rVert^2$ to the loss (L2) puts $\lambda\theta$ into the
# gradient, so Adam divides the shrinkage by $\sqrt{\hat v_t}+\epsilon$: a parameter with
# large gradients is barely shrunk, a quiet one is shrunk hard.  Decoupled weight decay (AdamW,
# $\theta \leftarrow \theta - \alpha(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta)$)
# shrinks every parameter by the same factor $(1-\alpha\lambda)$ per step.  For plain SGD
# the two are the same update.
#
# In the library the two are one block placed differently in the chain:
# `add_l2_regularization` before the preconditioner, `add_decoupled_weight_decay` after.
#
# Experiment: eleven parameters, all starting at $1$, whose gradients are pure noise of
# scale $s_i \in [10^{-3}, 10^2]$ ($g_{t,i} = \pm s_i$, alternating: no signal, only scale).
# Effective shrinkage after $T$ steps = $\theta_T$ with decay / $\theta_T$ without.
# For L2 with $s_i \gg \lambda\theta$ Adam's shrinkage per step is about
# $\alpha\lambda/s_i$, so $\theta_T/\theta_T^{0} \approx e^{-\alpha\lambda T/s_i}$.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
RATE, DECAY, STEPS = 1e-3, 0.1, 2000
scales = np.logspace(-3, 2, 11)
signs = np.where(np.arange(STEPS) % 2 == 0, 1.0, -1.0)


@jax.jit
def parameter_path(tx):
    def step(carry, sign):
        params, state = carry
        updates, state = tx.update(sign * jnp.asarray(scales), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    start = jnp.ones(len(scales))
    _, path = jax.lax.scan(step, (start, tx.init(start)), jnp.asarray(signs))
    return jnp.concatenate([start[None], path])


optimizers = {
    "Adam": aj.adam(RATE),
    "Adam + L2": aj.chain(
        aj.add_l2_regularization(DECAY), aj.scale_by_adam(), aj.scale_by_learning_rate(RATE)
    ),
    "AdamW": aj.adamw(RATE, weight_decay=DECAY),
    "SGD": aj.sgd(RATE),
    "SGD + L2": aj.chain(aj.add_l2_regularization(DECAY), aj.scale_by_learning_rate(RATE)),
    "SGD + decoupled": aj.chain(
        aj.add_decoupled_weight_decay(DECAY), aj.scale_by_learning_rate(RATE)
    ),
}
paths = {name: np.asarray(parameter_path(tx)) for name, tx in optimizers.items()}
shrinkage = {
    "Adam + L2": paths["Adam + L2"][-1] / paths["Adam"][-1],
    "AdamW": paths["AdamW"][-1] / paths["Adam"][-1],
    "SGD + L2": paths["SGD + L2"][-1] / paths["SGD"][-1],
    "SGD + decoupled": paths["SGD + decoupled"][-1] / paths["SGD"][-1],
}

# %%
fig, (ax_shrink, ax_path) = plt.subplots(1, 2, figsize=(13, 4.5))
for (name, ratio), style in zip(shrinkage.items(), ["o-", "s-", "^--", "x:"]):
    ax_shrink.semilogx(scales, ratio, style, label=name)
ax_shrink.semilogx(scales, np.exp(-RATE * DECAY * STEPS / scales), "k:", lw=1, label="exp(-αλT/s)")
ax_shrink.set(
    xlabel="gradient scale s_i",
    ylabel="θ_T with decay / θ_T without",
    title=f"effective shrinkage after {STEPS} steps",
    ylim=(-0.05, 1.05),
)
ax_shrink.legend()
for index, color in zip([0, 5, 10], ["C0", "C1", "C2"]):
    ax_path.plot(
        paths["Adam + L2"][:, index], color=color, label=f"Adam + L2, s = {scales[index]:.3g}"
    )
    ax_path.plot(
        paths["AdamW"][:, index], color=color, ls="--", label=f"AdamW, s = {scales[index]:.3g}"
    )
ax_path.set(xlabel="step", ylabel="θ_t", title="parameters under decay")
ax_path.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# SGD with L2 and with decoupled decay take identical steps; AdamW's shrinkage is the
# same for every parameter and equals $(1-\alpha\lambda)^T$; Adam + L2 shrinks less the
# larger the gradient scale, matching $e^{-\alpha\lambda T/s}$ where $s \ge 1$, and shrinks
# the quietest parameter almost to zero.

# %%
assert np.array_equal(paths["SGD + L2"], paths["SGD + decoupled"])
np.testing.assert_allclose(shrinkage["AdamW"], (1 - RATE * DECAY) ** STEPS, rtol=1e-3)
l2 = shrinkage["Adam + L2"]
assert np.all(np.diff(l2) > 0)
large = scales >= 1
np.testing.assert_allclose(l2[large], np.exp(-RATE * DECAY * STEPS / scales[large]), rtol=0.01)
assert l2[0] < 0.05 and l2[-1] > 0.99
print("Adam + L2 shrinkage:", np.round(l2, 3))
print("AdamW shrinkage:    ", np.round(shrinkage["AdamW"], 3))
