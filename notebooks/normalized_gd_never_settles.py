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
# # Normalized gradient descent never settles: it hops across the minimum forever
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
# the iterates do converge, and at the schedule's pace: once the iterate hops across the
# minimum, $d_{t} \le \eta_t$ (a hop of length $\eta_t$ from a point closer than $\eta_t$
# lands closer than $\eta_t$), while the triangle inequality still gives
# $\max(d_{t-1}, d_t) \ge \eta_t/2$: the distance is pinned between $\eta_t/2$ and $\eta_t$, so it
# shrinks exactly like $1/\sqrt t$.  Loss: $J(x, y) = \tfrac12 (x^2 + 10 y^2)$.  With constant
# $\eta$ the iterates do not circle the minimum: they fall onto the steep $y$ axis and then
# hop back and forth across the minimum along it, between the same two points, for ever.
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
t_axis = np.arange(1, STEPS + 1)
ax_dist.plot(t_axis, ETA / np.sqrt(t_axis), "k--", lw=0.8, label="current step η/sqrt(t)")
ax_dist.plot(t_axis, ETA / np.sqrt(t_axis) / 2, "k-.", lw=0.8, label="half of it")
ax_dist.set(xlabel="step", ylabel="distance to the minimum", title="never settles with constant η")
ax_dist.legend()
plt.show()

# %% [markdown]
# ## Check
#
# Every constant step has length $\eta$ and every scheduled step length $\eta_t = \eta/\sqrt t$;
# $\max(d_t, d_{t+1}) \ge \eta/2$ at every step of the constant run, whose last iterates
# alternate between the same two points on the $y$ axis (a hop, not a circle).  The scheduled
# run converges at the schedule's pace: from step 50 on (once it reached the minimum),
# $\eta_t/2 \le \max(d_{t-1}, d_t)$ and $d_t \le \eta_t$, so the distance goes to zero as
# $1/\sqrt t$, no faster and no slower.

# %%
t = np.arange(1, STEPS + 1)
np.testing.assert_allclose(np.linalg.norm(np.diff(constant, axis=0), axis=1), ETA, rtol=1e-12)
np.testing.assert_allclose(
    np.linalg.norm(np.diff(decaying, axis=0), axis=1), ETA / np.sqrt(t), rtol=1e-12
)
d = distance["constant η"]
assert np.all(np.maximum(d[:-1], d[1:]) >= ETA / 2 - 1e-12)
np.testing.assert_allclose(constant[-4:-2], constant[-2:], atol=1e-12)  # a 2-cycle
assert np.all(np.abs(constant[-2:, 0]) < 1e-12)

scheduled, late = distance["η / sqrt(t)"], t >= 50
step_length = ETA / np.sqrt(t)
assert np.all(scheduled[1:][late] <= step_length[late] * (1 + 1e-9))
assert np.all(np.maximum(scheduled[:-1], scheduled[1:])[late] >= step_length[late] / 2)
print(
    f"last distances, constant η: {d[-2]:.4f}, {d[-1]:.4f};  scheduled: "
    f"{scheduled[-1]:.2e} (η/sqrt(T) = {step_length[-1]:.2e})"
)
