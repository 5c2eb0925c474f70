r"""optax's core optimizers (adan, lars, novograd, rprop, sm3, fromage, noisy_sgd, polyak_sgd,
optimistic_gradient_descent, optimistic_adam, signum, sign_sgd) against optax and torch.

Parity: each runs :func:`tests.test_against_optax.loss` (a softmax regression with a
temperature and a least-squares block: four leaves of different shapes) from the same
start for ``STEPS`` steps in float64 next to ``optax``'s optimizer of the same name and
arguments, and every iterate must agree to ``rtol=1e-9``.  ``optax.sm3`` rejects a
scalar parameter, so SM3 runs on the three other leaves (the temperature held fixed).
``polyak_sgd`` gets the loss as ``value=`` on both sides.

Meta-gradients: where optax's own derivative is NaN (a norm or a square root at 0, a
division in a discarded ``jnp.where`` branch), ours is finite and equals finite
differences; where a hyperparameter acts only through a sign its derivative is 0, as
finite differences say.  (Every numeric hyperparameter of each optimizer is also checked
against finite differences by ``tests/test_differentiability.py`` via the catalog.)
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from tests.test_against_optax import ATOL, INITIAL, RTOL, loss

STEPS = 30
LR = 0.01


def without_temperature(p):
    return loss({**p, "s": INITIAL["s"]})


def optax_optimistic_adam(*args, **kwargs):
    """``optax.optimistic_adam``, without its deprecation warning (in favour of ``_v2``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.optimistic_adam(*args, **kwargs)


class Case(NamedTuple):
    ours: Any
    theirs: Any  # an optax GradientTransformation
    objective: Any = loss
    with_value: bool = False  # pass the loss as value= (polyak_sgd)


def trajectory(tx, objective, with_value):
    """Iterates 1..STEPS of an optax-protocol transformation on ``objective``."""
    initial = {k: v for k, v in INITIAL.items() if objective is loss or k != "s"}

    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(objective)(params)
        extra = {"value": value} if with_value else {}
        updates, state = tx.update(grads, state, params, **extra)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, history = jax.lax.scan(step, (initial, tx.init(initial)), None, length=STEPS)
    return history


CASES = {
    "adan": Case(
        aj.adan(LR, b1=0.8, b2=0.9, b3=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
        optax.adan(LR, b1=0.8, b2=0.9, b3=0.95, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "fromage": Case(aj.fromage(0.05, min_norm=1e-3), optax.fromage(0.05, min_norm=1e-3)),
    "lars": Case(
        aj.lars(0.5, weight_decay=0.1, trust_coefficient=0.02, eps=1e-3, momentum=0.8),
        optax.lars(0.5, weight_decay=0.1, trust_coefficient=0.02, eps=1e-3, momentum=0.8),
    ),
    "lars_nesterov": Case(
        aj.lars(0.5, weight_decay=0.1, trust_coefficient=0.02, momentum=0.8, nesterov=True),
        optax.lars(0.5, weight_decay=0.1, trust_coefficient=0.02, momentum=0.8, nesterov=True),
    ),
    "noisy_sgd": Case(
        aj.noisy_sgd(0.05, eta=0.01, gamma=0.55, key=7),
        optax.noisy_sgd(0.05, eta=0.01, gamma=0.55, key=7),
    ),
    "novograd": Case(
        aj.novograd(LR, b1=0.8, b2=0.5, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
        optax.novograd(LR, b1=0.8, b2=0.5, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "optimistic_adam": Case(
        aj.optimistic_adam(LR, optimism=0.005, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax_optimistic_adam(LR, optimism=0.005, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    "optimistic_adam_plain": Case(
        aj.optimistic_adam(LR, b1=0.8, b2=0.95, eps=1e-3, nesterov=False),
        optax_optimistic_adam(LR, b1=0.8, b2=0.95, eps=1e-3, nesterov=False),
    ),
    "optimistic_adam_v2": Case(
        aj.optimistic_adam_v2(LR, alpha=0.7, beta=1.3, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        optax.optimistic_adam_v2(LR, alpha=0.7, beta=1.3, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    "optimistic_adam_v2_plain": Case(
        aj.optimistic_adam_v2(LR, b1=0.8, b2=0.95, eps=1e-3, nesterov=False),
        optax.optimistic_adam_v2(LR, b1=0.8, b2=0.95, eps=1e-3, nesterov=False),
    ),
    "optimistic_gradient_descent": Case(
        aj.optimistic_gradient_descent(0.05, alpha=0.8, beta=0.6),
        optax.optimistic_gradient_descent(0.05, alpha=0.8, beta=0.6),
    ),
    # f_min = 3 a little below the minimum (3.36): steps shrink as the loss nears it.
    "polyak_sgd": Case(
        aj.polyak_sgd(max_learning_rate=0.5, scaling=0.3, f_min=3.0, eps=1e-3),
        optax.polyak_sgd(max_learning_rate=0.5, scaling=0.3, f_min=3.0, eps=1e-3),
        with_value=True,
    ),
    # f_min = 3.6 above the minimum: once the loss is below it, sps+ clips the gap at 0.
    "polyak_sgd_plus": Case(
        aj.polyak_sgd(max_learning_rate=0.5, f_min=3.6, variant="sps+"),
        optax.polyak_sgd(max_learning_rate=0.5, f_min=3.6, variant="sps+"),
        with_value=True,
    ),
    "sign_sgd": Case(aj.sign_sgd(0.003), optax.sign_sgd(0.003)),
    "signum": Case(aj.signum(0.003, beta=0.8), optax.signum(0.003, beta=0.8)),
    "sm3": Case(aj.sm3(0.05, momentum=0.8), optax.sm3(0.05, momentum=0.8), without_temperature),
}


@pytest.fixture(scope="module")
def trajectories():
    """Both sides of every case, in one compiled program (compiling dominates)."""

    def run(ours):
        ours_history = {
            name: trajectory(tx, CASES[name].objective, CASES[name].with_value)
            for name, tx in ours.items()
        }
        # optax relies on standard dtype promotion; adaptive_jax is traced under strict.
        with jax.numpy_dtype_promotion("standard"):
            optax_history = {
                name: trajectory(case.theirs, case.objective, case.with_value)
                for name, case in CASES.items()
            }
        return ours_history, optax_history

    ours = {name: case.ours for name, case in CASES.items()}
    compiled = jax.jit(run).lower(ours).compile()
    return jax.tree_util.tree_map(np.asarray, compiled(ours))


@pytest.mark.parametrize("name", sorted(CASES))
def test_named_optimizer_matches_optax(name, trajectories):
    ours, theirs = trajectories[0][name], trajectories[1][name]
    assert set(ours) == set(theirs)
    for leaf in ours:
        np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
    # The comparison is only meaningful if the optimizer actually moved every leaf.
    for leaf in ours:
        assert np.max(np.abs(theirs[leaf][-1] - INITIAL[leaf])) > 1e-3, leaf


def test_rprop_steps_are_optax_steps_one_step_earlier():
    r"""optax 0.2.8's ``scale_by_rprop`` emits the step it computed at the previous update
    (0 at the first, google-deepmind/optax#1725); its step sizes are Rprop's.  On one
    sequence of gradients, optax's :math:`u_t` is ours :math:`u_{t-1}`, zeroed where the
    sign flips at :math:`t` (torch.optim.Rprop takes our steps:
    ``tests/test_against_torch.py``)."""
    kwargs = dict(eta_minus=0.4, eta_plus=1.3, min_step_size=1e-3, max_step_size=0.05)
    grads = jnp.asarray(np.random.default_rng(0).normal(size=(STEPS, 7)))
    ours_tx, theirs_tx = aj.rprop(0.01, **kwargs), optax.rprop(0.01, **kwargs)
    ours_state, theirs_state = ours_tx.init(grads[0]), theirs_tx.init(grads[0])
    previous = jnp.zeros(7)  # our previous step
    for g in grads:
        ours, ours_state = ours_tx.update(g, ours_state)
        with jax.numpy_dtype_promotion("standard"):
            theirs, theirs_state = theirs_tx.update(g, theirs_state)
        flipped = jnp.sign(g) * jnp.sign(-previous) < 0
        np.testing.assert_allclose(theirs, jnp.where(flipped, 0.0, previous), rtol=RTOL, atol=0)
        previous = ours
    assert np.count_nonzero(np.asarray(previous)) > 0


STEP_PROBLEM = 12


def two_tensor_loss(p):
    r""":math:`(a_0 - 1)^2 + a_0\|b\|^2 + \tfrac12\|a - c\|^2` from :math:`b = 0`: the
    gradient of the tensor :math:`b` is :math:`2 a_0 b = 0` at every step, yet :math:`b`
    is coupled to the loss through the Hessian."""
    a, b = p["a"], p["b"]
    return (a[0] - 1) ** 2 + a[0] * jnp.sum(b**2) + 0.5 * jnp.sum((a - jnp.array([0.3, -0.2])) ** 2)


TWO_TENSORS = {"a": jnp.array([0.1, 0.5]), "b": jnp.zeros(3)}


def unrolled(tx, objective=two_tensor_loss, params=TWO_TENSORS):
    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(objective)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=STEP_PROBLEM)
    return objective(params)


def central_difference(f, x, h):
    return (f(x - 2 * h) - 8 * f(x - h) + 8 * f(x + h) - f(x + 2 * h)) / (12 * h)


# A tensor with an exactly zero gradient: optax differentiates a norm (novograd's
# ``jnp.linalg.norm(g) ** 2``) or a square root (adan's and optimistic_adam's
# ``sqrt(nu + eps_root)`` with eps_root = 0) at 0 and gets NaN; ours has derivative 0 there.
ZERO_GRADIENT_CASES = {
    "novograd": lambda lr, lib: lib.novograd(lr, b1=0.8, b2=0.5, eps=1e-3, weight_decay=0.1),
    "adan": lambda lr, lib: lib.adan(lr, eps=1e-3, eps_root=0.0),
    "optimistic_adam": lambda lr, lib: lib.optimistic_adam(lr, eps=1e-3),
}


@pytest.mark.filterwarnings("ignore:`optimistic_adam` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(ZERO_GRADIENT_CASES))
def test_meta_gradient_is_finite_where_optax_is_nan(name):
    make = ZERO_GRADIENT_CASES[name]
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.grad(lambda lr: unrolled(make(lr, optax)))(0.05)
    assert np.isnan(theirs)

    def ours(lr):
        return unrolled(make(lr, aj))

    fd = central_difference(ours, 0.05, 1e-5)
    np.testing.assert_allclose(jax.grad(ours)(0.05), fd, rtol=1e-6)
    np.testing.assert_allclose(jax.jvp(ours, (0.05,), (1.0,))[1], fd, rtol=1e-6)
    assert abs(fd) > 1e-3


def test_polyak_meta_gradient_is_zero_where_optax_is_nan_at_a_zero_gradient():
    """At a stationary point the step is 0 whatever the hyperparameters: the meta-gradient
    is 0 (a constant function); optax differentiates its discarded ``0/0`` branch."""
    target = jnp.array([0.3, -0.2])

    def objective(p):  # stationary at a = target, b = 0: every gradient is exactly 0
        return jnp.sum((p["a"] - target) ** 2) + p["a"][0] * jnp.sum(p["b"] ** 2)

    start = {"a": target, "b": jnp.zeros(3)}

    def meta_loss(make):
        return lambda s: unrolled(make(max_learning_rate=0.5, scaling=s), objective, start)

    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.grad(meta_loss(optax.polyak_sgd))(0.8)
    assert np.isnan(theirs)
    ours = jax.grad(meta_loss(aj.polyak_sgd))(0.8)
    assert ours == 0.0 == central_difference(meta_loss(aj.polyak_sgd), 0.8, 1e-5)


def test_noisy_sgd_gamma_has_zero_meta_gradient_without_noise_where_optax_is_nan():
    """At ``eta = 0`` the noise is gone for every ``gamma``: derivative 0.  optax computes
    ``sqrt(eta / t**gamma)``, whose derivative at 0 is NaN."""

    def meta_loss(make):
        return lambda gamma: unrolled(make(0.05, eta=0.0, gamma=gamma, key=1))

    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.grad(meta_loss(optax.noisy_sgd))(0.55)
    assert np.isnan(theirs)
    assert jax.grad(meta_loss(aj.noisy_sgd))(0.55) == 0.0


def test_signum_beta_acts_only_through_a_sign():
    """signum's ``beta`` changes only the sign of the momentum: away from a sign change its
    meta-gradient is 0, and finite differences agree; the learning rate's is not."""

    def meta_loss(lr, beta):
        return unrolled(aj.signum(lr, beta=beta))

    d_lr, d_beta = jax.grad(meta_loss, argnums=(0, 1))(0.01, 0.9)
    assert d_beta == 0.0
    # (the difference quotient of a constant: rounding only)
    assert abs(central_difference(lambda b: meta_loss(0.01, b), 0.9, 1e-4)) < 1e-10
    np.testing.assert_allclose(
        d_lr, central_difference(lambda lr: meta_loss(lr, 0.9), 0.01, 1e-6), rtol=1e-6
    )
    assert abs(d_lr) > 1e-3
