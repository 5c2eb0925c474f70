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
# # The geometry of adaptive steps: curvature, preconditioners, metrics and the Fisher
#
# On the quadratic $f(\theta) = \tfrac12\sum_i L_i\theta_i^2$ gradient descent multiplies
# coordinate $i$ by $1 - \eta L_i$ at every step.  One step size must serve every curvature:
# it diverges once $\eta > 2/L_{\max}$, and at $\eta \approx 1/L_{\max}$, the step the steepest
# direction allows, the flattest one shrinks by only $1 - L_{\min}/L_{\max}$ per step
# (Nesterov, *Introductory Lectures on Convex Optimization*, 2004, §2.1; Goodfellow, Bengio &
# Courville, *Deep Learning*, 2016, §8.2).  A preconditioned step
# $\theta \leftarrow \theta - \eta P\nabla f$ changes that: with $P = H^{-1}$ (Newton) the
# quadratic is solved in one step, and the best *diagonal* preconditioner, written as an
# adaptive method's $\theta_i \leftarrow \theta_i - \eta g_i/\sqrt{v_i}$, takes $v_i \propto L_i^2$,
# which gives every coordinate the same rate.  Adaptive methods estimate such a $v$ online from
# squared gradients (Duchi, Hazan & Singer 2011; Kingma & Ba 2015).
#
# Three more views of the same idea, each reproduced below:
#
# * **a metric.**  Dividing by $\gamma_i$ is gradient descent in the metric
#   $ds^2 = \sum_i \gamma_i\,d\theta_i^2$: in the coordinates $z_i = \sqrt{\gamma_i}\,\theta_i$ it is
#   plain gradient descent, and with $\gamma_i = L_i$ the ravine becomes a round bowl
#   (Amari, "Natural Gradient Works Efficiently in Learning", 1998);
# * **not rotation invariant.**  A diagonal metric is tied to the coordinate axes: rotate the
#   problem and gradient descent's path rotates with it, Adam's does not;
# * **the Fisher.**  For a model trained on labels it samples itself, the expected squared
#   gradient is the diagonal of the Fisher information, so Adagrad's accumulator after $T$
#   examples has expectation $T\,\mathrm{diag}(F)$ (Duchi et al. 2011; Martens, "New Insights
#   and Perspectives on the Natural Gradient Method", JMLR 2020).  With labels from anywhere
#   else it estimates the *empirical* Fisher, which is a different matrix (Kunstner, Balles &
#   Hennig, "Limitations of the Empirical Fisher Approximation", NeurIPS 2019).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

CURVATURES = np.array([100.0, 10.0, 1.0, 0.1])
NAMES = tuple(f"L={c:g}" for c in CURVATURES)  # one scalar parameter per curvature


def quadratic(params):
    return 0.5 * sum(c * params[name] ** 2 for c, name in zip(CURVATURES, NAMES))


ones = {name: jnp.asarray(1.0) for name in NAMES}


@jax.jit(static_argnames=("loss", "steps"))
def trajectory(tx, start, loss=quadratic, steps=100):
    """theta_0, ..., theta_T of ``tx`` on ``loss``, as a pytree of stacked iterates."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (start, tx.init(start)), length=steps)
    return jax.tree_util.tree_map(lambda s, p: jnp.concatenate([s[None], p]), start, path)


def as_array(path):
    return np.stack([np.asarray(path[name]) for name in NAMES], axis=-1)


# %% [markdown]
# ## 1. One step size: stable below $2/L_{\max}$, and slow at $1/L_{\max}$
#
# Gradient descent for 100 steps at 61 step sizes (one `vmap`: the learning rate is a pytree
# leaf), against the closed form $\theta_i(t) = (1-\eta L_i)^t$.

# %%
rates = np.logspace(-3, np.log10(0.05), 61)
sweep = as_array(jax.vmap(lambda rate: trajectory(aj.sgd(rate), ones))(rates))
final_loss = 0.5 * (CURVATURES * sweep[:, -1] ** 2).sum(axis=1)
gd_at_inverse = as_array(trajectory(aj.sgd(1 / CURVATURES.max()), ones))
steps_t = np.arange(101)[:, None]

fig, (ax_sweep, ax_coords) = plt.subplots(1, 2, figsize=(13, 4))
ax_sweep.loglog(rates, np.minimum(final_loss, 1e6), ".-")
ax_sweep.axvline(2 / CURVATURES.max(), color="r", ls="--", label="2 / L_max")
ax_sweep.axvline(1 / CURVATURES.max(), color="k", ls=":", label="1 / L_max")
ax_sweep.set(xlabel="step size η", ylabel="loss after 100 steps (capped)", title="one step size")
ax_sweep.legend()
for i, name in enumerate(NAMES):
    ax_coords.semilogy(np.abs(gd_at_inverse[:, i]) + 1e-20, label=name)
ax_coords.set(xlabel="step", ylabel="|θ_i|", title="GD with η = 1/L_max", ylim=(1e-18, 2))
ax_coords.legend()
plt.show()

# %% [markdown]
# ## 2. Preconditioners: Newton, the ideal diagonal one, and Adam
#
# Per-parameter learning rates are pytrees shaped like the parameters, so a fixed diagonal
# preconditioner is `aj.sgd` with one rate per coordinate: $\eta/\sqrt{v_i}$ with
# $\sqrt{v_i} = c L_i$ ($\eta/c = 0.5$: every coordinate halves at every step), and Newton's
# $1/L_i$.  Adam estimates $v$ from squared gradients: started from $\theta_0 = (1, 1, 1, 1)$ its
# first $v_i$ is exactly $(1-\beta_2)L_i^2$, proportional to $L_i^2$, so its first steps are the
# ideal preconditioner's direction; we count, for each coordinate, the steps until
# $|\theta_i| < 10^{-2}$ (Adam with $\alpha = 0.05$).  Adam's later $v$ follows
# $L_i^2\theta_i^2$, not $L_i^2$: here the coordinates stay equally far from the minimum because
# each moves about $\alpha$ per step, so the proportion holds; from unequal starts it would
# not, and Adam's per-coordinate times would follow the distances $|\theta_i(0)|/\alpha$.

# %%
ideal = as_array(trajectory(aj.sgd({n: 0.5 / c for n, c in zip(NAMES, CURVATURES)}), ones))
newton = as_array(trajectory(aj.sgd({n: 1 / c for n, c in zip(NAMES, CURVATURES)}), ones))
adam_tx = aj.adam(0.05)
adam_path = as_array(trajectory(adam_tx, ones, steps=400))
_, first_state = adam_tx.update(jax.grad(quadratic)(ones), adam_tx.init(ones), ones)
first_v = np.array([float(first_state.inner[1].nu[n]) for n in NAMES])


def steps_to(path, tolerance=1e-2):
    """For each coordinate, the first step from which |theta_i| stays below ``tolerance``."""
    above = np.abs(path) >= tolerance
    return np.array([len(col) - np.argmax(col[::-1]) if col.any() else 0 for col in above.T])


reach = {
    "GD, η = 1/L_max": steps_to(as_array(trajectory(aj.sgd(0.01), ones, steps=6000))),
    "ideal diagonal (v ∝ L²)": steps_to(ideal),
    "Adam, α = 0.05": steps_to(adam_path),
}

fig, (ax_ideal, ax_reach) = plt.subplots(1, 2, figsize=(13, 4))
for i, name in enumerate(NAMES):
    ax_ideal.semilogy(np.abs(adam_path[:100, i]), label=f"Adam, {name}")
ax_ideal.semilogy(np.abs(ideal[:, 0]), "k--", lw=2, label="ideal diagonal, every coordinate")
ax_ideal.set(xlabel="step", ylabel="|θ_i|", title="equalised rates", ylim=(1e-8, 2))
ax_ideal.legend(fontsize=8)
width = 0.25
for k, (name, counts) in enumerate(reach.items()):
    ax_reach.bar(np.arange(4) + k * width, counts, width, label=name)
ax_reach.set(xticks=np.arange(4) + width, xticklabels=NAMES, yscale="log")
ax_reach.set(ylabel="steps until |θ_i| < 0.01", title="per-coordinate convergence")
ax_reach.legend(fontsize=8)
plt.show()
print(reach)

# %% [markdown]
# ## 3. A metric that turns the ravine into a round bowl
#
# On $L(x, y) = \tfrac12(100x^2 + y^2)$, gradient descent in the metric $\gamma = (100, 1)$
# (per-parameter rates $\eta/\gamma_i$) against plain gradient descent on
# $\tilde L(z) = L(z_1/\sqrt{\gamma_1}, z_2/\sqrt{\gamma_2})$, whose Hessian is the identity.

# %%
GAMMA = {"x": 100.0, "y": 1.0}


def ravine(p):
    return 0.5 * (100.0 * p["x"] ** 2 + p["y"] ** 2)


def bowl(z):
    return ravine({k: z[k] / np.sqrt(GAMMA[k]) for k in z})


theta0 = {"x": jnp.asarray(0.8), "y": jnp.asarray(-0.9)}
z0 = {k: theta0[k] * np.sqrt(GAMMA[k]) for k in theta0}
ETA = 0.2
in_metric = trajectory(aj.sgd({k: ETA / GAMMA[k] for k in GAMMA}), theta0, loss=ravine, steps=30)
in_z = trajectory(aj.sgd(ETA), z0, loss=bowl, steps=30)
mapped_back = {k: np.asarray(in_z[k]) / np.sqrt(GAMMA[k]) for k in in_z}
plain_gd = trajectory(aj.sgd(0.0195), theta0, loss=ravine, steps=30)
bowl_hessian = jax.hessian(lambda v: bowl({"x": v[0], "y": v[1]}))(jnp.zeros(2))

fig, (ax_theta, ax_z) = plt.subplots(1, 2, figsize=(12, 4.5))
xs, ys = np.meshgrid(np.linspace(-1, 1, 200), np.linspace(-1, 1, 200))
ax_theta.contour(xs, ys, 0.5 * (100 * xs**2 + ys**2), levels=12, cmap="Greys")
ax_theta.plot(plain_gd["x"], plain_gd["y"], ".-", label="GD, η = 0.0195")
ax_theta.plot(in_metric["x"], in_metric["y"], "o-", label="GD in the metric γ = (100, 1)")
ax_theta.set(xlabel="x", ylabel="y", title="θ coordinates: a ravine", aspect="equal")
ax_theta.legend(fontsize=8)
zs = np.linspace(-10, 10, 200)
zx, zy = np.meshgrid(zs, zs)
ax_z.contour(zx, zy, 0.5 * (zx**2 + zy**2), levels=12, cmap="Greys")
ax_z.plot(in_z["x"], in_z["y"], "o-", color="C1", label="plain GD on L̃(z)")
ax_z.set(xlabel="z₁ = 10 x", ylabel="z₂ = y", title="z coordinates: a round bowl", aspect="equal")
ax_z.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 4. Not rotation invariant
#
# The same ravine rotated by 45°: $L_R(\theta) = L(R^\top\theta)$, started from $R\theta_0$.  Each
# path is rotated back by $R^\top$ before it is drawn, so a rotation-invariant method draws the
# same path twice.  Adam's first step is $-\alpha\,\mathrm{sign}(\nabla L)$ in whatever basis the
# parameters are written, so it cannot be.

# %%
angle = np.pi / 4
R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def ravine_vec(v):
    return 0.5 * (100.0 * v[0] ** 2 + v[1] ** 2)


def rotated(v):
    return ravine_vec(jnp.asarray(R.T) @ v)


start_vec = jnp.array([0.8, -0.9])
rotation_runs = {}
for name, tx in [("GD, η = 0.0195", aj.sgd(0.0195)), ("Adam, α = 0.05", aj.adam(0.05))]:
    plain = np.asarray(trajectory(tx, start_vec, loss=ravine_vec, steps=60))
    turned = np.asarray(trajectory(tx, jnp.asarray(R) @ start_vec, loss=rotated, steps=60))
    rotation_runs[name] = (plain, turned @ R)  # rows rotated back by R^T

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, (name, (plain, back)) in zip(axes, rotation_runs.items()):
    ax.contour(xs, ys, 0.5 * (100 * xs**2 + ys**2), levels=12, cmap="Greys")
    ax.plot(plain[:, 0], plain[:, 1], "o-", ms=3, label="original problem")
    ax.plot(back[:, 0], back[:, 1], "s--", ms=3, label="rotated problem, rotated back")
    ax.set(xlabel="x", ylabel="y", title=name, aspect="equal")
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Adagrad's accumulator and the Fisher information
#
# Logistic regression $p(y = 1 \mid x) = \sigma(\theta\cdot x)$ with $\theta = (1.5, -2, 0.5)$ and
# inputs drawn from a pool of 300 vectors with features on different scales.  Each example's
# gradient is $g = (\sigma(\theta\cdot x) - y)\,x$.  When $y$ is sampled from the model itself,
# $\mathbb E[g_k^2] = \mathbb E_x[\sigma(1-\sigma)x_k^2] = F_{kk}$, the Fisher information's
# diagonal, computed exactly over the pool.  We feed Adagrad $T = 50$ such gradients (at fixed
# $\theta$) in 3000 independent replications and read its accumulator $G(T)$ from the state.  The
# same with labels from a different model ($\theta_{\text{data}} = (-1, 1, 2)$) estimates the
# empirical Fisher $\mathbb E_x[((\sigma - p_{\text{data}})^2 + p_{\text{data}}(1-p_{\text{data}}))x_k^2]$
# instead.

# %%
pool_rng = np.random.default_rng(0)
pool = pool_rng.normal(size=(300, 3)) * np.array([2.0, 1.0, 0.3])
theta_model = np.array([1.5, -2.0, 0.5])
theta_data = np.array([-1.0, 1.0, 2.0])
p_model = 1 / (1 + np.exp(-pool @ theta_model))
p_data = 1 / (1 + np.exp(-pool @ theta_data))
fisher = (p_model * (1 - p_model)) @ pool**2 / len(pool)
empirical_fisher = ((p_model - p_data) ** 2 + p_data * (1 - p_data)) @ pool**2 / len(pool)

T_FISHER, REPLICATIONS = 50, 3000
index = pool_rng.integers(len(pool), size=(REPLICATIONS, T_FISHER))
uniform = pool_rng.uniform(size=(REPLICATIONS, T_FISHER))
x = pool[index]
y_model = (uniform < p_model[index]).astype(float)
y_data = (uniform < p_data[index]).astype(float)


@jax.jit
def accumulator(gradients):
    """Adagrad's G(T) after the per-example gradients of each replication."""
    tx = aj.adagrad(0.1)
    theta = jnp.asarray(theta_model)

    def one(rows):
        def step(state, g):
            return tx.update(g, state, theta)[1], None

        state = jax.lax.scan(step, tx.init(theta), rows)[0]
        return state.inner[0].nu

    return jax.vmap(one)(gradients)


def per_example_gradients(labels):
    return jnp.asarray((1 / (1 + np.exp(-x @ theta_model)) - labels)[..., None] * x)


G_model = np.asarray(accumulator(per_example_gradients(y_model)))
G_data = np.asarray(accumulator(per_example_gradients(y_data)))
se_model = G_model.std(axis=0) / np.sqrt(REPLICATIONS)

fig, ax = plt.subplots(figsize=(7, 4))
k = np.arange(3)
ax.bar(k - 0.3, T_FISHER * fisher, 0.2, label="T · diag(F) (exact)")
ax.bar(k - 0.1, G_model.mean(axis=0), 0.2, yerr=3 * se_model, label="mean G(T), model's labels")
ax.bar(k + 0.1, T_FISHER * empirical_fisher, 0.2, label="T · diag(empirical F)")
ax.bar(k + 0.3, G_data.mean(axis=0), 0.2, label="mean G(T), other labels")
ax.set(xticks=k, xticklabels=["θ₁", "θ₂", "θ₃"], yscale="log", title="Adagrad's accumulator")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# 1. Every run of the sweep equals the closed form $(1-\eta L_i)^t$; it converges for every
#    $\eta < 2/L_{\max}$ (every coordinate shrank) and diverges for every $\eta > 2/L_{\max}$
#    (the steepest one grew); the best step size of the
#    sweep lies between $1/L_{\max}$ and $2/L_{\max}$; at $\eta = 1/L_{\max}$ the steepest
#    coordinate is solved in one step while the flattest still holds $(1 - 10^{-3})^{100}$ of its
#    start.
# 2. The ideal diagonal preconditioner gives every coordinate the path $0.5^t$ exactly, Newton
#    reaches the minimum in one step; Adam's first $v$ is $(1-\beta_2)L_i^2$ (proportional to
#    $L_i^2$); the slowest coordinate needs more than a thousand times as many steps as the
#    fastest under gradient descent, the same number under the ideal preconditioner, and less
#    than twice as many under Adam.
# 3. Gradient descent in the metric equals plain gradient descent on $\tilde L$ mapped back (to
#    $10^{-12}$), and $\tilde L$'s Hessian is the identity.
# 4. Gradient descent's path on the rotated problem, rotated back, is its path on the original
#    (to $10^{-12}$); Adam's first steps on the two problems are $-\alpha\,\mathrm{sign}$ of the
#    respective gradients and its rotated-back path departs from the original by more than
#    $0.1$.
# 5. With the model's own labels the mean accumulator equals $T\,\mathrm{diag}(F)$ within four
#    standard errors in every coordinate; with other labels it equals $T$ times the empirical
#    Fisher, and differs from $T\,\mathrm{diag}(F)$ by more than 20 standard errors.

# %%
# 1. one step size
closed = (1 - rates[:, None, None] * CURVATURES) ** steps_t
np.testing.assert_allclose(sweep, closed, rtol=1e-9, atol=1e-12)
stable = rates < 2 / CURVATURES.max()
largest = np.abs(sweep[:, -1]).max(axis=1)  # the largest |theta_i| after 100 steps
assert stable.any() and (~stable).any()
assert np.all(largest[stable] < 1) and np.all(largest[~stable] > 1)  # shrank / grew
best = rates[np.argmin(final_loss)]
assert 1 / CURVATURES.max() <= best < 2 / CURVATURES.max(), best
assert np.abs(gd_at_inverse[1:, 0]).max() < 1e-15  # solved in one step
np.testing.assert_allclose(gd_at_inverse[-1, -1], (1 - 1e-3) ** 100, rtol=1e-12)

# 2. preconditioners
np.testing.assert_allclose(ideal, np.broadcast_to(0.5**steps_t, ideal.shape), rtol=1e-12)
np.testing.assert_allclose(newton[1:], 0.0, atol=1e-15)
np.testing.assert_allclose(first_v, (1 - 0.999) * CURVATURES**2, rtol=1e-12)
spread = {name: counts.max() / counts.min() for name, counts in reach.items()}
assert spread["GD, η = 1/L_max"] > 1e3
assert spread["ideal diagonal (v ∝ L²)"] == 1
assert spread["Adam, α = 0.05"] < 2

# 3. the metric
for key in GAMMA:
    np.testing.assert_allclose(in_metric[key], mapped_back[key], rtol=1e-12, atol=1e-14)
np.testing.assert_allclose(bowl_hessian, np.eye(2), atol=1e-12)

# 4. rotations
gd_plain, gd_back = rotation_runs["GD, η = 0.0195"]
np.testing.assert_allclose(gd_back, gd_plain, atol=1e-12)
adam_plain, adam_back = rotation_runs["Adam, α = 0.05"]
gradient = np.array([100 * 0.8, -0.9])
np.testing.assert_allclose(adam_plain[1], adam_plain[0] - 0.05 * np.sign(gradient), rtol=1e-6)
turned_first = R @ np.asarray(start_vec) - 0.05 * np.sign(R @ gradient)
np.testing.assert_allclose(adam_back[1], R.T @ turned_first, rtol=1e-6)
assert np.linalg.norm(adam_back - adam_plain, axis=1).max() > 0.1

# 5. the Fisher
assert np.all(np.abs(G_model.mean(axis=0) - T_FISHER * fisher) < 4 * se_model)
se_data = G_data.std(axis=0) / np.sqrt(REPLICATIONS)
assert np.all(np.abs(G_data.mean(axis=0) - T_FISHER * empirical_fisher) < 4 * se_data)
assert np.all(np.abs(G_data.mean(axis=0) - T_FISHER * fisher) > 20 * se_data)
print(
    f"best fixed step {best:.4f} (1/L_max = {1 / CURVATURES.max()}); steps to 0.01: {reach}; "
    f"G/T {G_model.mean(axis=0) / T_FISHER} vs diag F {fisher}"
)
