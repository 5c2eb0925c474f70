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
# # Normalized gradient descent circles the minimum forever
#
# Normalize the gradient and step a fixed distance,
#
# $$\theta_{t+1} = \theta_t - \eta\, \frac{\nabla J(\theta_t)}{\lVert \nabla J(\theta_t) \rVert}, \qquad
# \lVert \theta_{t+1} - \theta_t \rVert = \eta .$$
#
# Because consecutive iterates are exactly $\eta$ apart, the triangle inequality gives
# $\lVert\theta_t\rVert + \lVert\theta_{t+1}\rVert \ge \eta$ around the minimum $\theta^*=0$:
# at least one of any two consecutive iterates is at distance $\ge \eta/2$, forever.
# With a decaying step $\eta_t = \eta/\sqrt{t}$ (steps shrink, but their sum diverges)
# the iterates do converge.  Loss: $J(x, y) = \tfrac12 (x^2 + 10 y^2)$; with constant
# $\eta$ the iterates end up hopping back and forth across the minimum for ever.
#
# This is the subgradient method with normalized steps, whose classical analysis asks for
# steps that shrink to zero with a divergent sum (Nesterov, *Introductory Lectures on Convex
# Optimization*, 2004, ch. 3); normalized gradient descent is studied by Hazan, Levy &
# Shalev-Shwartz, "Beyond Convexity: Stochastic Quasi-Convex Optimization", NeurIPS 2015.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
STEPS = 400
ETA = 0.3
start = jnp.array([2.0, 1.0])


def loss(params):
    return 0.5 * (params[0] ** 2 + 10.0 * params[1] ** 2)


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


constant = np.asarray(trajectory(aj.normalized_gd(ETA), start))
decaying = np.asarray(trajectory(aj.normalized_gd(aj.schedules.inverse_sqrt(ETA)), start))
distance = {
    "constant η": np.linalg.norm(constant, axis=1),
    "η / sqrt(t)": np.linalg.norm(decaying, axis=1),
}

# %%
fig, (ax_path, ax_dist) = plt.subplots(1, 2, figsize=(12, 4.5))
xs, ys = np.meshgrid(np.linspace(-0.5, 2.2, 200), np.linspace(-0.6, 1.2, 200))
ax_path.contour(xs, ys, 0.5 * (xs**2 + 10 * ys**2), levels=15, cmap="Greys")
ax_path.plot(constant[:, 0], constant[:, 1], ".-", lw=1, label="constant η")
ax_path.plot(decaying[:, 0], decaying[:, 1], ".-", lw=1, label="η / sqrt(t)")
angle = np.linspace(0, 2 * np.pi, 200)
ax_path.plot(ETA / 2 * np.cos(angle), ETA / 2 * np.sin(angle), "k:", label="radius η/2")
ax_path.set(xlabel="x", ylabel="y", title="iterates", aspect="equal")
ax_path.legend()
for name, d in distance.items():
    ax_dist.semilogy(d, label=name)
ax_dist.axhline(ETA / 2, color="k", ls=":", label="η/2")
ax_dist.plot(ETA / np.sqrt(np.arange(1, STEPS + 1)), "k--", lw=0.8, label="current step η/sqrt(t)")
ax_dist.set(xlabel="step", ylabel="distance to the minimum", title="never settles with constant η")
ax_dist.legend()
plt.show()

# %% [markdown]
# ## Check
#
# Every constant step has length $\eta$ and every scheduled step length $\eta/\sqrt t$;
# $\max(d_t, d_{t+1}) \ge \eta/2$ at every step of the constant run; the scheduled run ends
# closer to the minimum than its current step length.

# %%
t = np.arange(1, STEPS + 1)
np.testing.assert_allclose(np.linalg.norm(np.diff(constant, axis=0), axis=1), ETA, rtol=1e-12)
np.testing.assert_allclose(
    np.linalg.norm(np.diff(decaying, axis=0), axis=1), ETA / np.sqrt(t), rtol=1e-12
)
d = distance["constant η"]
assert np.all(np.maximum(d[:-1], d[1:]) >= ETA / 2 - 1e-12)
tail = distance["η / sqrt(t)"][-50:]
assert tail.max() < ETA / np.sqrt(STEPS - 50), tail.max()
print(f"last distances, constant η: {d[-2]:.4f}, {d[-1]:.4f};  scheduled: {tail[-1]:.2e}")
