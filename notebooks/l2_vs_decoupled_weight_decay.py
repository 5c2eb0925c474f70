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
# Experiment: nine parameters, all starting at $1$, whose gradients are pure noise of
# scale $s_i \in [10^{-3}, 10]$ ($g_{t,i} = \pm s_i$, alternating: no signal, only scale).
# Effective shrinkage after $T$ steps = $\theta_T$ with decay / $\theta_T$ without.
# For L2 with $s_i \gg \lambda\theta$ Adam's shrinkage per step is about
# $\alpha\lambda/s_i$, so $\theta_T/\theta_T^{0} \approx e^{-\alpha\lambda T/s_i}$.  With
# $\alpha\lambda T = 1$ even the loudest parameter ($s = 10$) loses $10\,\%$, which a check
# to $1\,\%$ can tell from no shrinkage at all.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
RATE, DECAY, STEPS = 1e-3, 0.1, 10000
scales = np.logspace(-3, 1, 9)
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
for index, color in zip([0, 6, 8], ["C0", "C1", "C2"]):
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
# SGD with L2 and with decoupled decay take the same steps, and both equal a NumPy loop of
# $\theta \leftarrow \theta - \alpha(g + \lambda\theta)$; Adam + L2 equals a NumPy loop of
# Kingma & Ba's update on the gradient $g + \lambda\theta$; AdamW's shrinkage is the same for
# every parameter and equals $(1-\alpha\lambda)^T$; Adam + L2 shrinks less the larger the
# gradient scale, matching $e^{-\alpha\lambda T/s}$ to $1\,\%$ where $s \ge 1$ (where the
# prediction is at least $10\,\%$ away from "no shrinkage", so the check can tell them
# apart), and shrinks the quietest parameter almost to zero.

# %%
t = np.arange(1, STEPS + 1)
theta, sgd_by_hand = np.ones(len(scales)), [np.ones(len(scales))]
for sign in signs:
    theta = theta - RATE * (sign * scales + DECAY * theta)
    sgd_by_hand.append(theta)
np.testing.assert_allclose(paths["SGD + L2"], sgd_by_hand, rtol=1e-12)
np.testing.assert_allclose(paths["SGD + decoupled"], sgd_by_hand, rtol=1e-12)


def adam_by_hand(l2):
    theta, m, v, path = np.ones(len(scales)), 0.0, 0.0, [np.ones(len(scales))]
    for step, sign in zip(t, signs):
        g = sign * scales + l2 * theta
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        theta = theta - RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        path.append(theta)
    return np.array(path)


np.testing.assert_allclose(paths["Adam + L2"], adam_by_hand(DECAY), rtol=1e-9, atol=1e-12)
np.testing.assert_allclose(paths["Adam"], adam_by_hand(0.0), rtol=1e-9, atol=1e-12)

np.testing.assert_allclose(shrinkage["AdamW"], (1 - RATE * DECAY) ** STEPS, rtol=1e-3)
l2 = shrinkage["Adam + L2"]
assert np.all(np.diff(l2) > -1e-6) and np.all(np.diff(l2[4:]) > 0.03)  # grows with s
large = scales >= 1
predicted = np.exp(-RATE * DECAY * STEPS / scales[large])
assert np.all(1 - predicted > 0.09)  # 1 % can tell each of them from no shrinkage
np.testing.assert_allclose(l2[large], predicted, rtol=0.01)
assert l2[0] < 0.05 and l2[-1] > 0.85 > 0.4 > shrinkage["AdamW"][-1]
print("Adam + L2 shrinkage:", np.round(l2, 3))
print("AdamW shrinkage:    ", np.round(shrinkage["AdamW"], 3))
