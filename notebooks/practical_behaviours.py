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
# # Adaptive methods in practice: bumps, cliffs, flat basins, feature scales, data order
#
# Five behaviours practitioners attribute to momentum and adaptive scaling, each on a small
# problem where it can be seen and checked:
#
# 1. **a washboard**: a slope covered with small bumps, each a local minimum.  Momentum
#    (Polyak's heavy ball, 1964; Adam's first moment, Kingma & Ba 2015) averages the bumps' rapidly
#    alternating gradients and rolls over them; plain steps stop in the first dip;
# 2. **a cliff**: a drop whose gradient is thousands of times the slope around it.  Gradient
#    descent's step is proportional to the gradient and throws the iterate far away (the
#    "exploding gradient" cliffs of Pascanu, Mikolov & Bengio, ICML 2013); Adam's step is
#    bounded by a function of $\beta_1, \beta_2$ alone, and its second moment spikes, braking the
#    steps that follow;
# 3. **a flat basin after a steep wall**: Adagrad's accumulated squares keep the memory of the
#    wall, and its steps on the flat floor become too small to cross it (Duchi, Hazan & Singer
#    2011; Zeiler 2012); RMSProp's moving average forgets the wall (Tieleman & Hinton 2012);
# 4. **feature standardisation**: Adam copes with badly scaled features far better than gradient
#    descent, but it is not invariant to them; standardising still helps (LeCun, Bottou, Orr &
#    Müller, "Efficient BackProp", 1998);
# 5. **data order**: Adam's state is a function of the whole gradient history, so the order in
#    which the same examples arrive changes where it ends up, not only how it gets there.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight


@jax.jit(static_argnames=("loss", "steps"))
def trajectory(tx, start, loss, steps):
    """theta_0, ..., theta_T of ``tx`` on ``loss``."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = aj.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (start, tx.init(start)), length=steps)
    return jnp.concatenate([start[None], path])


# %% [markdown]
# ## 1. A washboard
#
# $f(x) = s\sqrt{x^2 + 0.01} + A\,(1 - \cos(2\pi x/\lambda))$ with slope $s = 0.5$, period
# $\lambda = 0.5$ and $A = 1.2\,s\lambda/(2\pi)$: each bump's steepest slope is $1.2$ times the
# tilt, so there is a local minimum in every period, and the global one is at $0$.  41 starting
# points in $[2, 4]$, 3000 steps each (one `vmap`), with and without momentum:
# SGD ($\alpha = 0.05$) against SGD with momentum $0.9$, Adam ($\alpha = 0.05$) with
# $\beta_1 = 0$ against $\beta_1 = 0.9$.

# %%
TILT, PERIOD = 0.5, 0.5
BUMP = 1.2 * TILT * PERIOD / (2 * np.pi)


def washboard(x):
    return TILT * jnp.sqrt(x**2 + 0.01) + BUMP * (1 - jnp.cos(2 * jnp.pi * x / PERIOD))


washboard_starts = jnp.linspace(2.0, 4.0, 41)
washboard_runs = {
    "SGD": aj.sgd(0.05),
    "SGD + momentum 0.9": aj.sgd(0.05, momentum=0.9),
    "Adam, β1 = 0": aj.adam(0.05, b1=0.0),
    "Adam, β1 = 0.9": aj.adam(0.05),
}
washboard_paths = {
    name: np.asarray(
        jax.vmap(lambda x0, tx=tx: trajectory(tx, x0, washboard, 3000))(washboard_starts)
    )
    for name, tx in washboard_runs.items()
}
ends = {name: paths[:, -1] for name, paths in washboard_paths.items()}
reached = {name: float(np.mean(np.abs(x) < PERIOD / 2)) for name, x in ends.items()}

fig, (ax_land, ax_frac) = plt.subplots(1, 2, figsize=(13, 4))
grid = np.linspace(-0.5, 4.2, 1000)
ax_land.plot(grid, washboard(grid), "k", lw=1)
example = int(np.argmin(np.abs(washboard_starts - 3.0)))
for name, paths in washboard_paths.items():
    path = paths[example]
    ax_land.plot(path, washboard(path), ".-", ms=3, lw=0.6, label=name)
ax_land.set(xlabel="x", ylabel="f(x)", title="paths from x₀ = 3")
ax_land.legend(fontsize=8)
ax_frac.bar(list(reached), list(reached.values()), color=["C0", "C1", "C2", "C3"])
ax_frac.set(ylabel="fraction of 41 starts", title="runs ending in the global basin |x| < λ/2")
ax_frac.tick_params(axis="x", labelsize=8)
plt.show()
print(reached)

# %% [markdown]
# ## 2. A cliff
#
# $f(x) = \tfrac12(x-2)^2 + H w\,\mathrm{softplus}((x-1)/w)$ with $H = 1000$, $w = 0.01$: a gentle
# bowl whose own minimum ($x = 2$) lies behind a cliff at $x = 1$, beyond which the loss rises
# with slope $H = 1000$.  The minimum of $f$ is just before the edge.  From $x_0 = 0$, gradient
# descent and Adam with the same rate $\alpha = 0.1$ head for it.  For Adam, Cauchy–Schwarz
# bounds $|\hat m_t|/\sqrt{\hat v_t}$ by
#
# $$B_t = \frac{1-\beta_1}{\sqrt{1-\beta_2}}\sqrt{\frac{1-(\beta_1^2/\beta_2)^t}{1-\beta_1^2/\beta_2}}\;
# \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t},$$
#
# whatever the gradients (Kingma & Ba 2015, §2.1, bound the step the same way), so no step
# exceeds $\alpha B_t$.

# %%
HEIGHT, WIDTH, RATE, CLIFF_STEPS = 1000.0, 0.01, 0.1, 300


def cliff(x):
    return 0.5 * (x - 2) ** 2 + HEIGHT * WIDTH * jax.nn.softplus((x - 1) / WIDTH)


cliff_runs = {"GD": aj.sgd(RATE), "Adam": aj.adam(RATE)}
cliff_paths = {
    name: np.asarray(trajectory(tx, jnp.asarray(0.0), cliff, CLIFF_STEPS))
    for name, tx in cliff_runs.items()
}
adam = aj.adam(RATE)


def adam_states(start, steps):
    def step(carry, _):
        x, state = carry
        updates, state = adam.update(jax.grad(cliff)(x), state, x)
        return (aj.apply_updates(x, updates), state), state

    return jax.lax.scan(step, (start, adam.init(start)), length=steps)[1]


cliff_states = adam_states(jnp.asarray(0.0), CLIFF_STEPS)
t = np.arange(1, CLIFF_STEPS + 1)
v_hat = np.asarray(cliff_states.inner[1].nu) / (1 - 0.999**t)
effective = RATE / (np.sqrt(v_hat) + 1e-8)
r = 0.9**2 / 0.999
bound = (
    (0.1 / np.sqrt(0.001)) * np.sqrt((1 - r**t) / (1 - r)) * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
)
cliff_gradient = np.asarray(jax.vmap(jax.grad(cliff))(cliff_paths["Adam"][:-1]))
edge = int(np.argmax(cliff_gradient > 10))  # the first step on which Adam feels the cliff

fig, (ax_path, ax_rate) = plt.subplots(1, 2, figsize=(13, 4))
for name, path in cliff_paths.items():
    ax_path.plot(path, label=name)
ax_path.axhline(1.0, color="grey", lw=0.8, label="the edge")
ax_path.set(xlabel="step", ylabel="x", yscale="symlog", title="running into a cliff")
ax_path.legend()
ax_rate.semilogy(t, effective, label="Adam: α / (sqrt(v̂) + ε)")
ax_rate.semilogy(t, np.abs(np.diff(cliff_paths["Adam"])) + 1e-12, label="Adam: |step|")
ax_rate.semilogy(t, RATE * bound, "k:", label="α B_t")
ax_rate.axvline(edge + 1, color="grey", lw=0.8)
ax_rate.set(xlabel="step", title="the second moment spikes at the edge: a brake")
ax_rate.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. A flat basin after a steep wall
#
# $f(x) = 0.01\,x + 5\max(x-5, 0)^2 + \tfrac12\max(-x, 0)^2$: a steep wall above $x = 5$, a floor
# of slope $0.01$ from $5$ down to $0$, and the minimum at $x^\star = -0.01$.  From $x_0 = 6$,
# 3000 steps of Adagrad, RMSProp ($\rho = 0.9$) and Adam, all with rate $0.1$, and gradient
# descent with the same rate (stable on the wall, whose curvature is $10$).  On the floor a step
# of RMSProp is $\eta\,g/\sqrt{v} \to \eta$ once $v$ has forgotten the wall, so it crosses the
# 5 units in about 50 steps; Adagrad's $G_t$ still holds the wall's squared gradients.


# %%
def basin(x):
    return 0.01 * x + 5 * jnp.maximum(x - 5, 0) ** 2 + 0.5 * jnp.maximum(-x, 0) ** 2


basin_runs = {
    "Adagrad": aj.adagrad(0.1),
    "RMSProp": aj.rmsprop(0.1, decay=0.9),
    "Adam": aj.adam(0.1),
    "GD": aj.sgd(0.1),
}
basin_paths = {
    name: np.asarray(trajectory(tx, jnp.asarray(6.0), basin, 3000))
    for name, tx in basin_runs.items()
}


def first_below(path, level):
    return int(np.argmax(path < level)) if np.any(path < level) else None


on_floor = {name: first_below(path, 4.99) for name, path in basin_paths.items()}
crossed = {name: first_below(path, 0.0) for name, path in basin_paths.items()}

fig, (ax_land, ax_path) = plt.subplots(1, 2, figsize=(13, 4))
grid = np.linspace(-1, 6.2, 500)
ax_land.plot(grid, basin(grid), "k")
ax_land.set(xlabel="x", ylabel="f(x)", title="the landscape", yscale="symlog", ylim=(-0.1, 10))
for name, path in basin_paths.items():
    ax_path.plot(
        np.arange(1, len(path) + 1), path, label=f"{name}: crosses at step {crossed[name]}"
    )
ax_path.axhline(0, color="k", lw=0.5)
ax_path.set(xlabel="step + 1", ylabel="x", title="crossing the floor", xscale="log")
ax_path.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 4. Feature standardisation
#
# Least squares with an intercept on five features of scales $10^{-2}, \dots, 10^{2}$ and
# means three times their scales (200 examples); the same problem with standardised features
# $(x - \bar x)/\mathrm{sd}(x)$.  Standardising is an affine change of the parameters, so both
# have the same optimal loss (NumPy's `lstsq`).  2000 full-batch steps of gradient descent (five
# rates up to $1.9/\lambda_{\max}$ of each problem's Hessian) and of Adam (nine rates in
# $[10^{-4}, 1]$), the best rate of each reported as the excess loss over the optimum.

# %%
data = np.random.default_rng(0)
EXAMPLES, FEATURES = 200, 5
feature_scales = np.logspace(-2, 2, FEATURES)
raw = data.normal(size=(EXAMPLES, FEATURES)) * feature_scales + 3 * feature_scales
targets = (
    raw @ (data.normal(size=FEATURES) / feature_scales) + 1.0 + 0.1 * data.normal(size=EXAMPLES)
)
standardised = (raw - raw.mean(axis=0)) / raw.std(axis=0)
designs = {
    "raw": np.hstack([raw, np.ones((EXAMPLES, 1))]),
    "standardised": np.hstack([standardised, np.ones((EXAMPLES, 1))]),
}


def least_squares_losses(design, tx, steps=2000):
    x, y = jnp.asarray(design), jnp.asarray(targets)

    def loss(w):
        return 0.5 * jnp.mean((x @ w - y) ** 2)

    def step(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        w = aj.apply_updates(w, updates)
        return (w, state), loss(w)

    w0 = jnp.zeros(design.shape[1])
    return jax.lax.scan(step, (w0, tx.init(w0)), length=steps)[1]


adam_rates = jnp.logspace(-4, 0, 9)
optimum, condition, excess = {}, {}, {}
for name, design in designs.items():
    w_star = np.linalg.lstsq(design, targets, rcond=None)[0]
    optimum[name] = 0.5 * np.mean((design @ w_star - targets) ** 2)
    eigenvalues = np.linalg.eigvalsh(design.T @ design / EXAMPLES)
    condition[name] = eigenvalues.max() / eigenvalues.min()
    gd_rates = jnp.asarray(1.9 / eigenvalues.max() * np.logspace(-2, 0, 5))
    for method, rates_, make in [("GD", gd_rates, aj.sgd), ("Adam", adam_rates, aj.adam)]:
        curves = np.asarray(
            jax.jit(jax.vmap(lambda r, d=design, m=make: least_squares_losses(d, m(r))))(rates_)
        )
        curves = np.where(np.isfinite(curves), curves, np.inf) - optimum[name]
        excess[(method, name)] = curves[np.argmin(curves[:, -1])]

fig, ax = plt.subplots(figsize=(8, 4))
for (method, name), curve in excess.items():
    ax.loglog(np.arange(1, 2001), np.maximum(curve, 1e-16), label=f"{method}, {name} features")
ax.set(xlabel="step", ylabel="loss − optimal loss", title="best rate of each; same optimum")
ax.legend(fontsize=8)
plt.show()
print({name: f"{c:.1e}" for name, c in condition.items()})

# %% [markdown]
# ## 5. The order of the data
#
# An under-determined least-squares problem (8 examples, 20 parameters: infinitely many
# interpolating solutions), one example per step for 400 epochs, in two orders: a random
# shuffle and a curriculum (examples sorted by $|y|$).  SGD on least squares from $w_0 = 0$ stays
# in the span of the examples, so whatever the order it ends at the minimum-norm solution
# $X^+ y$.  Adam (cosine-decayed from $\alpha = 0.05$) rescales each coordinate by its own
# history, leaves that span, and ends at an interpolating solution that depends on the order.

# %%
ORDER_EXAMPLES, ORDER_PARAMS, EPOCHS = 8, 20, 400
order_x = data.normal(size=(ORDER_EXAMPLES, ORDER_PARAMS))
order_y = data.normal(size=ORDER_EXAMPLES)
orders = {"shuffled": data.permutation(ORDER_EXAMPLES), "curriculum": np.argsort(np.abs(order_y))}


def one_example_at_a_time(tx, order):
    x, y = jnp.asarray(order_x), jnp.asarray(order_y)

    def step(carry, i):
        w, state = carry
        updates, state = tx.update((x[i] @ w - y[i]) * x[i], state, w)
        w = aj.apply_updates(w, updates)
        return (w, state), w

    w0 = jnp.zeros(ORDER_PARAMS)
    return np.asarray(jax.lax.scan(step, (w0, tx.init(w0)), jnp.tile(order, EPOCHS))[1])


order_runs = {
    "SGD": aj.sgd(0.02),
    "Adam": aj.adam(aj.schedules.cosine_decay(0.05, EPOCHS * ORDER_EXAMPLES)),
}
order_paths = {
    (method, name): one_example_at_a_time(tx, order)
    for method, tx in order_runs.items()
    for name, order in orders.items()
}
min_norm = np.linalg.pinv(order_x) @ order_y


def training_loss(w):
    return 0.5 * np.mean((order_x @ w - order_y) ** 2)


fig, ax = plt.subplots(figsize=(8, 4))
for method in order_runs:
    gap = order_paths[(method, "shuffled")] - order_paths[(method, "curriculum")]
    ax.semilogy(np.linalg.norm(gap, axis=1), label=f"{method}: distance between the two orders")
    for name in orders:
        to_min_norm = np.linalg.norm(order_paths[(method, name)] - min_norm, axis=1)
        ax.semilogy(to_min_norm, ls=":", label=f"{method}, {name}: distance to X⁺y")
ax.set(xlabel="step", title="same examples, two orders")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Check
#
# 1. Every SGD run stops in a local minimum that is not the global one ($f' = 0$ to $10^{-6}$ and
#    $f'' > 0$ there, by hand-derived derivatives), and no run of Adam with $\beta_1 = 0$ (which
#    hops around a dip rather than settling) reaches the global basin; with momentum, more than
#    half of the runs reach it, for SGD and for Adam.
# 2. Gradient descent's path equals a NumPy loop (for 50 steps, through the first launch:
#    later the bouncing amplifies rounding differences); its largest step is more than 100 times
#    $\alpha$, throws it more than 50 away, and after 300 steps it is still more than 1 from the
#    minimum (found by bisection on the hand-derived slope); every Adam step is at most
#    $\alpha B_t$; on the step where it first meets the cliff Adam's effective rate drops more
#    than tenfold; Adam ends within $0.01$ of the minimum.
# 3. RMSProp crosses the floor within 150 steps of reaching it (about a hundred to forget the
#    wall's squared gradients, $\ln(10^2/10^{-4})/(1-\rho)$, then 50 steps of $0.1$); after 3000
#    steps Adagrad has covered less than $2\,\%$ of the floor; GD (steps of $0.1 \times 0.01$)
#    has not crossed either; Adam, whose $\beta_2 = 0.999$ remembers the wall for thousands of
#    steps, crosses, but more than five times later than RMSProp.
# 4. The raw problem is ill-conditioned (condition number above $10^8$), the standardised one
#    is not (below 10), with the same optimum; on raw features gradient descent's best excess
#    loss is above 1, Adam's is less than a third of it; with standardised features Adam's is
#    below $10^{-8}$, more than $10^6$ times smaller than on raw features.
# 5. Every run interpolates (training loss below $10^{-20}$); SGD ends at $X^+ y$ for both orders
#    (to $10^{-10}$); Adam's two solutions differ by more than a tenth of $\lVert X^+y\rVert$ (a
#    million times more than SGD's two) and each is further than that from $X^+ y$.

# %%
# 1. washboard
k = 2 * np.pi / PERIOD


def slope(x):
    return TILT * x / np.sqrt(x**2 + 0.01) + BUMP * k * np.sin(k * x)


def curvature(x):
    return TILT * 0.01 / (x**2 + 0.01) ** 1.5 + BUMP * k**2 * np.cos(k * x)


assert reached["SGD"] == 0.0 and reached["Adam, β1 = 0"] == 0.0
stuck = ends["SGD"]  # every SGD run settled in a dip that is not the global one
assert np.all(np.abs(slope(stuck)) < 1e-6) and np.all(curvature(stuck) > 0)
assert np.all(np.abs(stuck) > PERIOD / 2)
for name in ["SGD + momentum 0.9", "Adam, β1 = 0.9"]:
    assert reached[name] > 0.5, (name, reached[name])


# 2. cliff
def cliff_slope(x):
    return (x - 2) + HEIGHT * np.exp(-np.logaddexp(0.0, -(x - 1) / WIDTH))  # H sigmoid


x, by_hand = 0.0, [0.0]
for _ in range(CLIFF_STEPS):
    x = x - RATE * cliff_slope(x)
    by_hand.append(x)
# the bouncing amplifies rounding (1e-16 grows ~1e9-fold by step 110): compare the first 50
np.testing.assert_allclose(cliff_paths["GD"][:50], by_hand[:50], rtol=1e-9, atol=1e-9)
low, high = 0.0, 1.0  # the minimum of f, by bisection on the hand-derived slope
for _ in range(100):
    low, high = (
        (low, (low + high) / 2) if cliff_slope((low + high) / 2) > 0 else ((low + high) / 2, high)
    )
gd_jumps = np.abs(np.diff(cliff_paths["GD"]))
assert gd_jumps.max() > 100 * RATE and np.abs(cliff_paths["GD"]).max() > 50
assert abs(cliff_paths["GD"][-1] - low) > 1  # still thrown about after 300 steps
adam_steps = np.abs(np.diff(cliff_paths["Adam"]))
assert np.all(adam_steps <= RATE * bound * (1 + 1e-12))
assert effective[edge - 1] > 10 * effective[edge]
assert abs(cliff_paths["Adam"][-1] - low) < 0.01

# 3. flat basin
assert crossed["RMSProp"] - on_floor["RMSProp"] <= 150
assert crossed["Adagrad"] is None and basin_paths["Adagrad"][-1] > 4.9  # < 2 % of the floor
assert crossed["GD"] is None
assert crossed["Adam"] > 5 * crossed["RMSProp"]

# 4. standardisation
np.testing.assert_allclose(optimum["raw"], optimum["standardised"], rtol=1e-9)
assert condition["raw"] > 1e8 and condition["standardised"] < 10
gd_raw, adam_raw = excess[("GD", "raw")][-1], excess[("Adam", "raw")][-1]
assert gd_raw > 1 and adam_raw < gd_raw / 3
adam_standardised = excess[("Adam", "standardised")][-1]
assert adam_standardised < 1e-8 and adam_standardised < 1e-6 * adam_raw

# 5. data order
for key, path in order_paths.items():
    assert training_loss(path[-1]) < 1e-20, key
for name in orders:
    np.testing.assert_allclose(order_paths[("SGD", name)][-1], min_norm, atol=1e-10)
adam_ends = [order_paths[("Adam", name)][-1] for name in orders]
scale = np.linalg.norm(min_norm) / 10
adam_gap = np.linalg.norm(adam_ends[0] - adam_ends[1])
sgd_gap = np.linalg.norm(
    order_paths[("SGD", "shuffled")][-1] - order_paths[("SGD", "curriculum")][-1]
)
assert adam_gap > scale and adam_gap > 1e6 * sgd_gap
assert all(np.linalg.norm(w - min_norm) > scale for w in adam_ends)
print(
    f"washboard: {reached}; cliff: GD's largest jump {gd_jumps.max():.0f}, Adam's "
    f"{adam_steps.max():.3f}; floor crossed at {crossed}; excess losses GD raw {gd_raw:.2f}, "
    f"Adam raw {adam_raw:.2f}, Adam standardised {adam_standardised:.1e}"
)
