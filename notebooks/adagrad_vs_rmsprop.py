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
# # Adagrad's rate only decays; RMSProp's recovers
#
# Adagrad's accumulator $G_t = \sum_{k \le t} g_k^2$ only grows, so its effective
# learning rate $\eta / (\sqrt{G_t} + \epsilon)$ only falls.  RMSProp's
# $v_t = \rho v_{t-1} + (1-\rho) g_t^2$ forgets with memory $1/(1-\rho)$ steps, so after the
# gradients shrink its rate climbs back to $\eta/(|g| + \epsilon)$.  (Adagrad: Duchi, Hazan &
# Singer, JMLR 2011; RMSProp: Tieleman & Hinton, *Neural Networks for Machine Learning*,
# lecture 6.5, 2012; Adagrad's ever-decaying rate is the motivation Zeiler gives for
# ADADELTA, arXiv:1212.5701, 2012.)
#
# We feed both optimizers a gradient whose scale changes: $1$ for 200 steps, $10$ for 200,
# then $0.1$ (the slope of a linear loss that changes between phases) and read $v_t$
# from each optimizer's state.  After the drop, RMSProp's rate reaches half its new steady
# value once $\rho^k (v_{T_1} - b^2) \le (2b-\epsilon)^2 - b^2$, i.e. after
# $k = \lceil \ln\frac{(2b - \epsilon)^2 - b^2}{v_{T_1} - b^2} / \ln\rho \rceil$ steps.
#
# The effective rates below are read twice: from the second moment in the optimizer's state,
# and from the updates it emitted ($-u_t/g_t$), which is what the parameters actually feel.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

# %%
ETA, RHO, EPS = 0.01, 0.9, 1e-8
scale = np.repeat([1.0, 10.0, 0.1], 200)


def run(tx):
    """Second moments (read from the optimizer state) and updates along the gradient stream."""

    def step(carry, gradient):
        params, state = carry
        updates, state = tx.update(gradient, state, params)
        second_moment = state.inner[0].nu  # state of accumulate_squares / ema_of_squares
        return (aj.apply_updates(params, updates), state), (second_moment, updates)

    start = jnp.zeros(())
    _, (second_moment, updates) = jax.lax.scan(step, (start, tx.init(start)), jnp.asarray(scale))
    return np.asarray(second_moment), np.asarray(updates)


v = {}
steps = {}
v["Adagrad"], steps["Adagrad"] = run(aj.adagrad(ETA, eps=EPS))
v["RMSProp"], steps["RMSProp"] = run(aj.rmsprop(ETA, decay=RHO, eps=EPS))
effective_rate = {name: ETA / (np.sqrt(second) + EPS) for name, second in v.items()}
emitted_rate = {name: -update / scale for name, update in steps.items()}  # -u_t / g_t

# %%
fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
axes[0].semilogy(scale, "k")
axes[0].set(ylabel="|g_t|", title="gradient scale")
for name in v:
    axes[1].semilogy(effective_rate[name], label=name)
    axes[2].semilogy(np.abs(steps[name]), label=name)
axes[1].set(ylabel="η / (sqrt(v_t) + ε)", title="effective learning rate (from the state)")
axes[2].set(xlabel="step", ylabel="|θ_t - θ_{t-1}|", title="step taken")
axes[1].legend()
plt.show()

# %% [markdown]
# ## How long RMSProp takes to adapt: $1/(1-\rho)$ steps
#
# When the gradient scale jumps from $b_0 = 1$ to $b_1 = 10$, Adagrad's rate keeps falling,
# only faster (every step now adds $100$ to $G_t$), while RMSProp's second moment moves to the
# new scale as $v_{T+k} = b_1^2 + \rho^k (v_T - b_1^2)$: it closes all but $1/e$ of the gap
# after $k_\rho = \lceil -1/\ln\rho \rceil$ steps, and $-1/\ln\rho$ lies between
# $1/(1-\rho) - 1$ and $1/(1-\rho)$.  The memory $1/(1-\rho)$ is the adaptation time.  We run
# RMSProp for seven values of ρ at once (ρ is a pytree leaf, so this is one `vmap`), each for
# 1500 steps at scale 1 and 1500 at scale 10, and read $v$ back from the emitted updates,
# $v_t = (\eta/r_t - \epsilon)^2$ with $r_t = -u_t/g_t$.

# %%
rhos = np.array([0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995])
jump = np.repeat([1.0, 10.0], 1500)


def emitted_updates(tx):
    def step(state, gradient):
        updates, state = tx.update(gradient, state, jnp.zeros(()))
        return state, updates

    return jax.lax.scan(step, tx.init(jnp.zeros(())), jnp.asarray(jump))[1]


sweep_updates = np.asarray(
    jax.jit(jax.vmap(lambda rho: emitted_updates(aj.rmsprop(ETA, decay=rho, eps=EPS))))(rhos)
)
implied_v = (ETA / (-sweep_updates / jump) - EPS) ** 2
gap = 100.0 - implied_v[:, 1499:]  # b1^2 - v, from the last step at scale 1 onwards
adaptation = np.argmax(gap <= gap[:, :1] / np.e, axis=1)  # steps after the jump
adagrad_jump = -np.asarray(emitted_updates(aj.adagrad(ETA, eps=EPS))) / jump

fig, (ax_v, ax_k) = plt.subplots(1, 2, figsize=(12, 4))
for rho, v_rho in zip(rhos, implied_v):
    ax_v.plot(np.arange(-20, 400), v_rho[1480:1900], label=f"ρ = {rho}")
ax_v.axhline(100 - 99 / np.e, color="k", ls=":", lw=0.8, label="1 - 1/e of the gap")
ax_v.set(xlabel="steps after the jump 1 → 10", ylabel="v_t (from the updates)")
ax_v.legend(fontsize=8)
ax_k.loglog(1 / (1 - rhos), adaptation, "o", label="measured")
ax_k.loglog(1 / (1 - rhos), 1 / (1 - rhos), "k:", label="1/(1-ρ)")
ax_k.set(xlabel="memory 1/(1-ρ)", ylabel="steps to close 1 - 1/e of the gap")
ax_k.legend()
plt.show()

# %% [markdown]
# ## Check
#
# The states equal their closed forms (a cumulative sum; the EMA recursion in NumPy);
# Adagrad's rate *as emitted in its updates* never increases, equals
# $\eta/(\sqrt{\sum g^2} + \epsilon)$, and after the jump to scale 10 falls more than ten
# times faster per step than before it; RMSProp's settles at $\eta/(|g|+\epsilon)$ in every
# phase and recovers after the drop in the predicted number of steps, ending far above
# Adagrad's.  In the ρ sweep the measured adaptation time equals
# $\lceil -1/\ln\rho \rceil$ for every ρ, lies within one step below $1/(1-\rho)$, and grows
# from 2 to 200 steps as the memory does.

# %%
np.testing.assert_allclose(v["Adagrad"], np.cumsum(scale**2), rtol=1e-12)
ema, by_hand = 0.0, []
for g in scale:
    ema = RHO * ema + (1 - RHO) * g**2
    by_hand.append(ema)
np.testing.assert_allclose(v["RMSProp"], by_hand, rtol=1e-12)

adagrad_rate = emitted_rate["Adagrad"]
np.testing.assert_allclose(adagrad_rate, ETA / (np.sqrt(np.cumsum(scale**2)) + EPS), rtol=1e-12)
assert np.all(np.diff(adagrad_rate) <= 0)
for phase_end, g in [(199, 1.0), (399, 10.0), (599, 0.1)]:
    np.testing.assert_allclose(effective_rate["RMSProp"][phase_end], ETA / (g + EPS), rtol=1e-4)
    np.testing.assert_allclose(emitted_rate["RMSProp"][phase_end], ETA / (g + EPS), rtol=1e-4)

b, v_drop = 0.1, v["RMSProp"][399]
predicted = int(np.ceil(np.log(((2 * b - EPS) ** 2 - b**2) / (v_drop - b**2)) / np.log(RHO)))
recovered = int(np.argmax(emitted_rate["RMSProp"][400:] >= ETA / (2 * b))) + 1
assert recovered == predicted, (recovered, predicted)
assert adagrad_rate[-1] < emitted_rate["RMSProp"][-1] / 100

# The adaptation time is the memory 1/(1 - rho).
np.testing.assert_array_equal(adaptation, np.ceil(-1 / np.log(rhos)).astype(int))
memory = np.round(1 / (1 - rhos))  # 2, 5, 10, ..., 200 steps
assert np.all((adaptation >= memory - 1) & (adaptation <= memory)), (adaptation, memory)
log_drop = -np.diff(np.log(adagrad_jump))
assert log_drop[1500:1550].mean() > 10 * log_drop[1450:1500].mean()
print(
    f"RMSProp recovered half its rate {recovered} steps after the drop; final rates: "
    f"Adagrad {adagrad_rate[-1]:.1e}, RMSProp {emitted_rate['RMSProp'][-1]:.1e}; "
    f"adaptation times {dict(zip(rhos.tolist(), adaptation.tolist()))}"
)
