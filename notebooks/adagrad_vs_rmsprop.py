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
# ## Check
#
# The states equal their closed forms (a cumulative sum; the EMA recursion in NumPy);
# Adagrad's rate never increases; RMSProp's settles at $\eta/(|g|+\epsilon)$ in every phase
# and recovers after the drop in the predicted number of steps, ending far above Adagrad's.

# %%
np.testing.assert_allclose(v["Adagrad"], np.cumsum(scale**2), rtol=1e-12)
ema, by_hand = 0.0, []
for g in scale:
    ema = RHO * ema + (1 - RHO) * g**2
    by_hand.append(ema)
np.testing.assert_allclose(v["RMSProp"], by_hand, rtol=1e-12)

assert np.all(np.diff(effective_rate["Adagrad"]) <= 0)
for phase_end, g in [(199, 1.0), (399, 10.0), (599, 0.1)]:
    np.testing.assert_allclose(effective_rate["RMSProp"][phase_end], ETA / (g + EPS), rtol=1e-4)

b, v_drop = 0.1, v["RMSProp"][399]
predicted = int(np.ceil(np.log(((2 * b - EPS) ** 2 - b**2) / (v_drop - b**2)) / np.log(RHO)))
recovered = int(np.argmax(effective_rate["RMSProp"][400:] >= ETA / (2 * b))) + 1
assert recovered == predicted, (recovered, predicted)
assert effective_rate["Adagrad"][-1] < effective_rate["RMSProp"][-1] / 100
print(
    f"RMSProp recovered half its rate {recovered} steps after the drop; final rates: "
    f"Adagrad {effective_rate['Adagrad'][-1]:.1e}, RMSProp {effective_rate['RMSProp'][-1]:.1e}"
)
