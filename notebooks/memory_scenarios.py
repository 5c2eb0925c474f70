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
# # What the second moment remembers: four scenarios
#
# Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015) divides each
# coordinate's step by $\sqrt{\hat v_t} + \epsilon$, where
# $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$ is an exponential moving average with a memory of
# about $1/(1-\beta_2)$ steps and $\hat v_t = v_t/(1-\beta_2^t)$.  What that memory holds decides
# how large the next step is.  This notebook feeds hand-made gradient streams to the library's
# optimizers and reads the denominators from their states:
#
# 1. **a dormant parameter wakes up**: after a long run of zero gradients its $v$ is $0$, so
#    its first steps are large whatever the size of its gradient; how large is fixed by
#    $\beta_1$, $\beta_2$ and $\alpha$;
# 2. **a large gradient followed by small ones**: Adam forgets the large gradient and its
#    effective rate grows back; AMSGrad (Reddi, Kale & Kumar, "On the Convergence of Adam and
#    Beyond", ICLR 2018) divides by the running maximum of $\hat v$, which never decreases;
# 3. **a rare large gradient under class imbalance**: one minority-class example inflates $v$
#    and suppresses the rate of the frequent small gradients for about $1/(1-\beta_2)$ steps;
#    with $\beta_2 = 0.999$ that outlasts the gap between rare examples, with $0.99$ it does not;
# 4. **a feature that becomes relevant**: Adagrad's sum of squares (Duchi, Hazan & Singer,
#    JMLR 2011) keeps the history of a feature that was noise, and learns its new weight
#    slowly; RMSProp (Tieleman & Hinton, 2012) forgets it.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adaptive_jax as aj

jax.config.update("jax_enable_x64", True)  # float64, so that the checks below can be tight

ALPHA, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8  # Kingma & Ba's defaults


def stream(tx, gradients):
    """Feed ``gradients`` (one row per step) to ``tx``; return the updates and the states."""
    params = jnp.zeros(gradients.shape[1:])

    def step(state, g):
        updates, state = tx.update(g, state, params)
        return state, (updates, state)

    _, (updates, states) = jax.lax.scan(step, tx.init(params), jnp.asarray(gradients))
    return updates, states


def field(states, name):
    """The one state field called ``name`` in a chain's per-block states."""
    (found,) = [getattr(s, name) for s in states.inner if hasattr(s, name)]
    return np.asarray(found)


# %% [markdown]
# ## 1. A dormant parameter wakes up
#
# Four coordinates: one receives $g = 1$ at every step (an active parameter, for reference);
# three receive $0$ for $D = 1000$ steps and then a constant gradient $w \in \{10^{-4},
# 10^{-2}, 1\}$.  For a dormant coordinate $m$ and $v$ are exactly $0$ when it wakes, so $k$
# steps later, at step $t = D + k$ of the run,
#
# $$m_t = (1-\beta_1^k)\,w, \qquad v_t = (1-\beta_2^k)\,w^2, \qquad
# |u_t| = \alpha\,\frac{(1-\beta_1^k)/(1-\beta_1^t)}{\sqrt{(1-\beta_2^k)/(1-\beta_2^t)} + \epsilon/|w|} .$$
#
# The bias correction uses the run's step $t$, not the coordinate's own $k$, so it does not undo
# the coordinate's zero start: the first step is
# $\alpha (1-\beta_1)\sqrt{1-\beta_2^t}/\sqrt{1-\beta_2} \approx 2.5\,\alpha$, the following
# ones grow to about $5\alpha$ before settling at $\alpha$.  Large, and the same for every $w$:
# the newly active parameter gets full attention however small its gradient (SGD's step
# would be $\alpha w$).  But bounded: it can never exceed
# $\alpha \max_k (1-\beta_1^k)/\sqrt{1-\beta_2^k}$, about $6.6\,\alpha$.

# %%
DORMANT, AWAKE = 1000, 300
wake = np.array([1e-4, 1e-2, 1.0])
gradients = np.zeros((DORMANT + AWAKE, 4))
gradients[:, 0] = 1.0
gradients[DORMANT:, 1:] = wake
adam_steps = np.asarray(stream(aj.adam(ALPHA), gradients)[0])
sgd_steps = np.asarray(stream(aj.sgd(ALPHA), gradients)[0])

k = np.arange(1, AWAKE + 1)[:, None]
t = DORMANT + k
predicted = ALPHA * ((1 - B1**k) / (1 - B1**t)) / (np.sqrt((1 - B2**k) / (1 - B2**t)) + EPS / wake)
ceiling = ALPHA * max((1 - B1**j) / np.sqrt(1 - B2**j) for j in range(1, 10_000))

fig, (ax_steps, ax_first) = plt.subplots(1, 2, figsize=(13, 4))
for i, w in enumerate(wake, start=1):
    ax_steps.plot(k, -adam_steps[DORMANT:, i] / ALPHA, label=f"Adam, woken with w = {w:g}")
ax_steps.plot(k, -adam_steps[DORMANT:, 0] / ALPHA, "grey", label="Adam, always active")
ax_steps.plot(k, predicted[:, 1] / ALPHA, "k:", lw=1.5, label="closed form")
ax_steps.axhline(ceiling / ALPHA, color="r", ls="--", lw=1, label="bound max (1-β1^k)/sqrt(1-β2^k)")
ax_steps.set(xlabel="steps since waking", ylabel="|step| / α", title="a dormant parameter wakes up")
ax_steps.legend(fontsize=8)
ax_first.loglog(wake, -adam_steps[DORMANT, 1:], "o-", label="Adam: first step after waking")
ax_first.loglog(wake, -sgd_steps[DORMANT, 1:], "s-", label="SGD: α w")
ax_first.axhline(ALPHA, color="k", ls=":", lw=1, label="α")
ax_first.set(xlabel="gradient on waking, w", ylabel="|first step|", title="the first step")
ax_first.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. A large gradient followed by small ones: Adam against AMSGrad
#
# One gradient $g_1 = 100$, then $g = 0.01$ for 12 000 steps, then $100$ again.  Adam's
# denominator $\sqrt{\hat v_t} + \epsilon$ forgets the first gradient within about ten thousand steps,
# so its effective rate $\alpha/(\sqrt{\hat v_t}+\epsilon)$ grows ten-thousandfold, and the
# returning large gradient meets a denominator built for $0.01$: that step is $3\alpha$, thirty
# times AMSGrad's.  AMSGrad divides by $\sqrt{\max_{s \le t} \hat v_s} + \epsilon$ (the
# library's default, as in optax), which stays at $100$ for ever; PyTorch's variant keeps the
# maximum of the raw $v_t$ and bias-corrects it afterwards, so its denominator shrinks from
# $100$ to $100\sqrt{1-\beta_2} \approx 3.2$ as $1-\beta_2^t \to 1$, and never below.  Here that
# floor is exactly what the returning spike brings to Adam's $v$ ($(1-\beta_2)\,100^2 = 10$), so
# the torch variant's step on the spike is as large as Adam's: only the maximum of the
# bias-corrected $\hat v$ remembers the first gradient at full size.  The flip side is visible
# too: while the gradients are small the default AMSGrad's steps are $10^{-4}$ of Adam's.

# %%
QUIET = 12_000
spike = np.full((QUIET + 51, 1), 0.01)
spike[0] = spike[QUIET] = 100.0
runs = {
    "Adam": aj.adam(ALPHA),
    "AMSGrad (max of v̂, default)": aj.amsgrad(ALPHA),
    "AMSGrad (max of v, torch)": aj.amsgrad(ALPHA, maximum_of="raw"),
}
spike_steps, denominators = {}, {}
t_spike = np.arange(1, len(spike) + 1)[:, None]
for name, tx in runs.items():
    updates, states = stream(tx, spike)
    spike_steps[name] = np.asarray(updates)
    if name == "Adam":
        v_hat = field(states, "nu") / (1 - B2**t_spike)
    elif "v̂" in name:
        v_hat = field(states, "nu_max")
    else:
        v_hat = field(states, "nu_max") / (1 - B2**t_spike)
    denominators[name] = np.sqrt(v_hat) + EPS

fig, (ax_den, ax_step) = plt.subplots(1, 2, figsize=(13, 4))
for name in runs:
    ax_den.semilogy(t_spike, denominators[name], label=name)
    ax_step.semilogy(t_spike, np.abs(spike_steps[name]) / ALPHA, label=name)
ax_den.set(xlabel="step", ylabel="sqrt(v̂) + ε (from the state)", title="denominators")
ax_step.set(xlabel="step", ylabel="|step| / α", title="steps (gradient 100 at steps 1 and 12001)")
ax_den.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. Class imbalance: a rare large gradient and β₂
#
# The gradient one weight sees when one class is rare: every step a majority-class example
# contributes a small gradient ($0.01$), and one step in 1000 a minority-class example
# contributes a large one ($1$).  The spike adds $(1-\beta_2)\cdot 1$ to $v$, and it takes about
# $\ln(\ldots)/(1-\beta_2)$ steps to decay: with $\beta_2 = 0.999$ it has not decayed when
# the next rare example arrives, so the effective rate on the frequent small gradients stays
# below half of its spike-free value $\alpha/0.01$ all the time; with $\beta_2 = 0.99$ the
# spike is ten times more severe at first, but the rate recovers within a few hundred steps.
# Both β₂ run at once: it is a pytree leaf, so a `vmap` over it is one compiled loop.

# %%
PERIOD = 1000
rare = np.full(8 * PERIOD, 0.01)
rare[PERIOD // 2 :: PERIOD] = 1.0
betas2 = jnp.array([0.999, 0.99])
rare_states = jax.vmap(lambda b2: stream(aj.adam(ALPHA, b2=b2), rare[:, None])[1])(betas2)
t_rare = np.arange(1, len(rare) + 1)
v_rare = field(rare_states, "nu")[..., 0]  # (beta2, step)
rate = ALPHA / (np.sqrt(v_rare / (1 - np.asarray(betas2)[:, None] ** t_rare)) + EPS)
spike_free = ALPHA / (0.01 + EPS)
settled = t_rare > 3 * PERIOD  # after the first few rare examples
suppressed = (rate[:, settled] < spike_free / 2).mean(axis=1)

fig, ax = plt.subplots(figsize=(10, 3.8))
for b2, r, frac in zip(np.asarray(betas2), rate, suppressed):
    ax.semilogy(t_rare, r / spike_free, label=f"β2 = {b2}: below half {frac:.0%} of the time")
ax.axhline(0.5, color="k", ls=":", lw=1)
ax.set(xlabel="step", ylabel="effective rate / spike-free rate", title="rare large gradients")
ax.legend()
plt.show()

# %% [markdown]
# ## 4. A feature that becomes relevant: Adagrad against RMSProp
#
# Online linear regression, one example per step: $y = w^\star \cdot x + 0.5\,\xi$ with
# $x, \xi \sim \mathcal N(0, 1)$.  The second feature is present from the start but irrelevant
# ($w_2^\star = 0$) for 2000 steps, then becomes relevant ($w_2^\star = 1$).  During the first
# phase its weight receives noise gradients, which Adagrad adds to $G_2$ for ever and RMSProp
# forgets within $1/(1-\rho)$ steps.  Both use $\eta = 0.02$ ($\rho = 0.99$).  As a control, the
# same run where the feature is *absent* ($x_2 = 0$) in the first phase: its gradients are then
# exactly 0 and $G_2$ stays 0 until the shift (per-coordinate accumulators only remember a
# coordinate's own gradients).  Adagrad is slow in both cases (its rate decays even from a
# fresh start), but the history of noise makes it more than twice as slow again; RMSProp
# learns the new weight within its memory of 100 steps either way.

# %%
SHIFT, AFTER = 2000, 3000
data = np.random.default_rng(0)
features = data.normal(size=(SHIFT + AFTER, 2))
noise = 0.5 * data.normal(size=SHIFT + AFTER)
relevant = np.where(np.arange(SHIFT + AFTER) < SHIFT, 0.0, 1.0)
absent = features.copy()
absent[:SHIFT, 1] = 0.0


def online_regression(tx, x):
    y = x[:, 0] + relevant * x[:, 1] + noise

    def step(carry, example):
        w, state = carry
        xi, yi = example
        g = (w @ xi - yi) * xi
        updates, state = tx.update(g, state, w)
        w = aj.apply_updates(w, updates)
        return (w, state), w[1]

    w0 = jnp.zeros(2)
    return np.asarray(jax.lax.scan(step, (w0, tx.init(w0)), (jnp.asarray(x), jnp.asarray(y)))[1])


optimizers = {"Adagrad": aj.adagrad(0.02), "RMSProp": aj.rmsprop(0.02, decay=0.99)}
second_weight = {
    (name, case): online_regression(tx, x)
    for name, tx in optimizers.items()
    for case, x in [("present", features), ("absent", absent)]
}


def steps_to_learn(path, level=0.5):
    """Steps after the shift until the weight first reaches ``level``."""
    return int(np.argmax(path[SHIFT:] >= level)) + 1 if np.any(path[SHIFT:] >= level) else np.inf


learned_after = {key: steps_to_learn(path) for key, path in second_weight.items()}

fig, ax = plt.subplots(figsize=(10, 3.8))
for (name, case), path in second_weight.items():
    ax.plot(path, ls="-" if case == "present" else ":", label=f"{name}, noise feature {case}")
ax.axvline(SHIFT, color="k", lw=0.8)
ax.axhline(1.0, color="grey", lw=0.8)
ax.set(xlabel="step", ylabel="w₂", title="the second weight (relevant from step 2000)")
ax.legend(fontsize=8)
plt.show()
print(learned_after)

# %% [markdown]
# ## Check
#
# 1. After waking, every dormant coordinate's steps equal the closed form above (to
#    $10^{-9}$); the first step is larger than $2\alpha$ and the same for all three $w$ (to
#    $1\,\%$, the share of $\epsilon/|w|$), while SGD's is $\alpha w$; the largest step is
#    more than $5\alpha$ (five times an active parameter's) but no step exceeds the bound
#    $\alpha\max_k(1-\beta_1^k)/\sqrt{1-\beta_2^k}$.
# 2. Adam's and AMSGrad's denominators equal NumPy loops of their definitions; Adam's falls by
#    more than $10^3$ during the quiet stretch, the default AMSGrad's never decreases and stays
#    $100$, torch's never drops below $100\sqrt{1-\beta_2}$; on the returning spike Adam's step
#    is more than 20 times AMSGrad's.
# 3. The effective rates equal a NumPy EMA; with $\beta_2 = 0.999$ the rate stays below half
#    its spike-free value at every step once the rare examples have started, with
#    $\beta_2 = 0.99$ less than half of the time.
# 4. With the noise feature present, Adagrad needs more than twice as many steps to bring the
#    new weight to $0.5$ as without it (zero gradients before the shift), and more than 20
#    times as many as RMSProp, which gets there within its memory $1/(1-\rho) = 100$ steps.

# %%
# 1. the dormant parameter
np.testing.assert_allclose(-adam_steps[DORMANT:, 1:], predicted, rtol=1e-9)
np.testing.assert_array_equal(adam_steps[:DORMANT, 1:], 0.0)
first = -adam_steps[DORMANT, 1:]
assert np.all(first > 2 * ALPHA) and np.ptp(first) < 1e-2 * first.max()
np.testing.assert_allclose(-sgd_steps[DORMANT, 1:], ALPHA * wake, rtol=1e-12)
assert np.abs(adam_steps).max() <= ceiling and -adam_steps[:, 1:].min() > 5 * ALPHA

# 2. a large gradient, then small ones
v, v_hat_max, v_max = 0.0, 0.0, 0.0
by_hand = {name: [] for name in runs}
for step, g in enumerate(spike[:, 0], start=1):
    v = B2 * v + (1 - B2) * g**2
    v_hat_max, v_max = max(v_hat_max, v / (1 - B2**step)), max(v_max, v)
    by_hand["Adam"].append(np.sqrt(v / (1 - B2**step)) + EPS)
    by_hand["AMSGrad (max of v̂, default)"].append(np.sqrt(v_hat_max) + EPS)
    by_hand["AMSGrad (max of v, torch)"].append(np.sqrt(v_max / (1 - B2**step)) + EPS)
for name in runs:
    np.testing.assert_allclose(denominators[name][:, 0], by_hand[name], rtol=1e-10)
adam_den = denominators["Adam"][:, 0]
assert adam_den[0] / adam_den[QUIET - 1] > 1e3
default_den = denominators["AMSGrad (max of v̂, default)"][:, 0]
assert np.all(np.diff(default_den) >= 0)
np.testing.assert_allclose(default_den, 100.0, rtol=1e-10)
assert denominators["AMSGrad (max of v, torch)"].min() >= 100 * np.sqrt(1 - B2)
assert abs(spike_steps["Adam"][QUIET, 0]) > 20 * abs(
    spike_steps["AMSGrad (max of v̂, default)"][QUIET, 0]
)

# 3. class imbalance
for b2, v_b2 in zip(np.asarray(betas2), v_rare):
    ema, ema_by_hand = 0.0, []
    for g in rare:
        ema = b2 * ema + (1 - b2) * g**2
        ema_by_hand.append(ema)
    np.testing.assert_allclose(v_b2, ema_by_hand, rtol=1e-10)
assert suppressed[0] == 1.0 and suppressed[1] < 0.5, suppressed

# 4. a feature that becomes relevant
assert learned_after[("Adagrad", "present")] > 2 * learned_after[("Adagrad", "absent")]
assert learned_after[("Adagrad", "present")] > 20 * learned_after[("RMSProp", "present")]
assert learned_after[("RMSProp", "present")] <= 100
print(
    f"wake-up step {first[0] / ALPHA:.3f} α (bound {ceiling / ALPHA:.2f} α); Adam's spike step "
    f"{abs(spike_steps['Adam'][QUIET, 0]) / ALPHA:.2f} α; suppressed fractions {suppressed}; "
    f"steps to learn the new weight {learned_after}"
)
