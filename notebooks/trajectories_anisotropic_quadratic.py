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
# # GD, Adagrad, RMSProp and Adam on an anisotropic quadratic
#
# A model ravine, steep across and nearly flat along:
#
# $$L(x, y) = \tfrac12\,(100\,x^2 + y^2), \qquad \nabla L = (100\,x,\; y).$$
#
# Gradient descent with one learning rate $\alpha$ is stable only for $\alpha < 2/100$.
# Its iterates are known in closed form,
# $x_t = (1 - 100\alpha)^t x_0$ and $y_t = (1-\alpha)^t y_0$: with $\alpha = 0.018$ the
# $x$-coordinate flips sign every step (bouncing between the walls) while $y$ shrinks by
# only $1.8\,\%$ per step along the valley floor.
#
# Adagrad, RMSProp and Adam divide each coordinate by the root of its own second moment,
# $\theta_{t,i} \leftarrow \theta_{t-1,i} - \eta\, m_{t,i} / (\sqrt{v_{t,i}} + \epsilon)$.
# On the first step $v = c\, g^2$, so every coordinate moves by the same amount: the
# adaptive methods leave the start diagonally, then walk down the valley floor.
#
# Adagrad: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
# Stochastic Optimization", JMLR 2011.  RMSProp: Tieleman & Hinton, *Neural Networks for
# Machine Learning*, lecture 6.5, 2012.  Adam: Kingma & Ba, "Adam: A Method for Stochastic
# Optimization", ICLR 2015.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
STEPS = 200
GD_RATE = 0.018  # just below the stability limit 2/100
start = jnp.array([0.6, 2.0])


def loss(params):
    return 0.5 * (100.0 * params[0] ** 2 + params[1] ** 2)


@jax.jit
def trajectory(tx, start):
    """Iterates theta_0, ..., theta_T of the transformation ``tx`` on ``loss``."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (start, tx.init(start)), length=STEPS)
    return jnp.concatenate([start[None], path])


optimizers = {
    "GD": aj.sgd(GD_RATE),
    "Adagrad": aj.adagrad(0.5),
    "RMSProp": aj.rmsprop(0.05),
    "Adam": aj.adam(0.1),
}
paths = {name: np.asarray(trajectory(tx, start)) for name, tx in optimizers.items()}
losses = {name: np.asarray(jax.vmap(loss)(path)) for name, path in paths.items()}

# %%
fig, (ax_path, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
xs, ys = np.meshgrid(np.linspace(-0.8, 0.8, 200), np.linspace(-0.4, 2.2, 200))
levels = np.geomspace(0.05, 50, 10)
ax_path.contour(xs, ys, 0.5 * (100 * xs**2 + ys**2), levels=levels, colors="lightgrey")
for name, path in paths.items():
    ax_path.plot(path[:60, 0], path[:60, 1], ".-", lw=1, ms=3, label=name)
ax_path.plot(0, 0, "k*", ms=12)
ax_path.set(xlabel="x", ylabel="y", title="first 60 steps on L = (100 x² + y²)/2")
ax_path.legend()
for name, curve in losses.items():
    ax_loss.semilogy(curve, label=name)
ax_loss.set(xlabel="step", ylabel="L(x, y)", title="loss", ylim=(1e-10, 100))
ax_loss.legend()
plt.show()

# %% [markdown]
# ## Check
#
# GD's plotted path equals its closed form; it bounces in $x$; every adaptive method's
# first step moves $x$ and $y$ by the same amount; each reaches $L < 10^{-2}$ in fewer
# steps than GD.

# %%
t = np.arange(STEPS + 1)
closed_form = np.stack([(1 - 100 * GD_RATE) ** t * 0.6, (1 - GD_RATE) ** t * 2.0], axis=1)
np.testing.assert_allclose(paths["GD"], closed_form, rtol=1e-9)
assert np.all(np.sign(paths["GD"][1:, 0]) == -np.sign(paths["GD"][:-1, 0]))


def steps_to_reach(curve, level):
    return int(np.argmax(curve < level)) if np.any(curve < level) else np.inf


for name in ["Adagrad", "RMSProp", "Adam"]:
    first_step = paths[name][1] - paths[name][0]
    np.testing.assert_allclose(abs(first_step[0]), abs(first_step[1]), rtol=1e-6)
    assert steps_to_reach(losses[name], 1e-2) < steps_to_reach(losses["GD"], 1e-2), name
print({name: steps_to_reach(curve, 1e-2) for name, curve in losses.items()})
