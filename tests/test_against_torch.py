r"""Every named optimizer with a ``torch.optim`` counterpart takes torch's steps, in float64.

Both libraries train the same model from the same start for 100 steps, each with its
own autodiff, and every iterate must agree to ``rtol=1e-9``.  The model has four
parameter leaves of different shapes (a matrix, a vector, another vector and a scalar)
and two coupled terms, least squares and logistic regression:

.. math::
   L = \tfrac{1}{n}\|X W + b - Y\|^2 + \tfrac{1}{n}\sum_i \log\big(1 + e^{-z_i (x_i^\top w + c)}\big).

Hyperparameters are chosen so that every one of them matters (e.g. ``eps=1e-3`` is not
negligible next to :math:`\sqrt{v}`, so a misplaced epsilon fails).  Where torch defines
an optimizer differently, the test uses the setting at which the definitions coincide
and says so (NAdam's momentum schedule, RAdam's epsilon placement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import adaptive_jax as aj

STEPS = 100
RTOL = 1e-9
ATOL = 1e-13

_rng = np.random.default_rng(7)
FEATURES = _rng.normal(size=(24, 5))
TARGETS = _rng.normal(size=(24, 3))
LABELS = np.sign(_rng.normal(size=24))
INITIAL = {
    "W": 0.3 * _rng.normal(size=(5, 3)),
    "b": 0.1 * _rng.normal(size=3),
    "w": 0.3 * _rng.normal(size=5),
    "c": np.asarray(0.2),
}
NAMES = tuple(INITIAL)


def jax_loss(p):
    residual = FEATURES @ p["W"] + p["b"] - TARGETS
    margins = LABELS * (FEATURES @ p["w"] + p["c"])
    return jnp.mean(jnp.sum(residual**2, axis=1)) + jnp.mean(jnp.log1p(jnp.exp(-margins)))


def torch_loss(p):
    features, targets, labels = (torch.from_numpy(a) for a in (FEATURES, TARGETS, LABELS))
    residual = features @ p["W"] + p["b"] - targets
    margins = labels * (features @ p["w"] + p["c"])
    return torch.mean(torch.sum(residual**2, dim=1)) + torch.mean(torch.log1p(torch.exp(-margins)))


@pytest.fixture(autouse=True, scope="module")
def torch_in_float64_on_one_thread():
    """torch keeps scalar state (step counts, NAdam's momentum product) in the default
    dtype, float32 unless changed; one thread avoids oversubscribing small CPUs."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def torch_trajectory(make_optimizer, make_scheduler=None):
    """Iterates ``theta_0 .. theta_STEPS`` of a torch optimizer, one array per leaf."""
    params = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in INITIAL.items()
    }
    optimizer = make_optimizer([params[k] for k in NAMES])
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    history = [{k: v.detach().numpy().copy() for k, v in params.items()}]
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch_loss(params).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.append({k: v.detach().numpy().copy() for k, v in params.items()})
    return {k: np.stack([h[k] for h in history]) for k in NAMES}


def jax_trajectories(transforms):
    """Iterates ``theta_0 .. theta_STEPS`` of each adaptive_jax transformation in a dict.

    One compiled program trains all of them: compiling dominates the cost, and one
    program of many small loops compiles much faster than many programs.
    """
    initial = {k: jnp.asarray(v, jnp.float64) for k, v in INITIAL.items()}

    def train(tx):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(jax.grad(jax_loss)(params), state, params)
            params = aj.apply_updates(params, updates)
            return (params, state), params

        _, history = jax.lax.scan(step, (initial, tx.init(initial)), None, length=STEPS)
        return history

    run = jax.jit(lambda txs: {name: train(tx) for name, tx in txs.items()})
    histories = run.lower(transforms).compile()(transforms)
    return {
        name: {k: np.concatenate([INITIAL[k][None], np.asarray(h[k])]) for k in NAMES}
        for name, h in histories.items()
    }


# NAdam: torch's momentum schedule mu_t = b1 (1 - 0.5 * 0.96**(t * momentum_decay)) is b1
# at every step once 0.96**(t * momentum_decay) underflows to 0, and then torch's NAdam is
# Dozat's (and optax's) definition.
NADAM_CONSTANT_MOMENTUM = 1e6
assert 0.96**NADAM_CONSTANT_MOMENTUM == 0.0


class Case(NamedTuple):
    ours: Any
    torch_optimizer: Callable[[list], torch.optim.Optimizer]
    torch_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None


CASES = {
    "sgd": Case(aj.sgd(0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    "sgd_momentum": Case(
        aj.sgd(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
    "sgd_nesterov": Case(
        aj.sgd(0.05, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ),
    "adagrad": Case(
        aj.adagrad(0.1, eps=1e-3),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-3, initial_accumulator_value=0.0),
    ),
    "rmsprop": Case(
        aj.rmsprop(0.01, decay=0.8, eps=0.05),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.05),
    ),
    "rmsprop_momentum": Case(
        aj.rmsprop(0.01, decay=0.8, eps=0.05, momentum=0.7),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.05, momentum=0.7),
    ),
    "rmsprop_centered": Case(
        aj.rmsprop(0.01, decay=0.8, eps=0.05, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.05, centered=True),
    ),
    "rmsprop_centered_momentum": Case(
        aj.rmsprop(0.01, decay=0.8, eps=0.05, momentum=0.7, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.05, momentum=0.7, centered=True),
    ),
    "adam": Case(
        aj.adam(0.01, b1=0.8, b2=0.95, eps=1e-3),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3),
    ),
    "adamw": Case(
        aj.adamw(0.01, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.3),
        lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3),
    ),
    # torch takes the maximum of the raw second moment: our maximum_of="raw".
    "amsgrad": Case(
        aj.amsgrad(0.01, b1=0.8, b2=0.95, eps=1e-3, maximum_of="raw"),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3, amsgrad=True),
    ),
    "adamax": Case(
        aj.adamax(0.01, b1=0.8, b2=0.95, eps=1e-3),
        lambda p: torch.optim.Adamax(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3),
    ),
    "nadam": Case(
        aj.nadam(0.01, b1=0.8, b2=0.95, eps=0.02),
        lambda p: torch.optim.NAdam(
            p, lr=0.01, betas=(0.8, 0.95), eps=0.02, momentum_decay=NADAM_CONSTANT_MOMENTUM
        ),
    ),
    # torch adds eps to sqrt(v) before bias correction; the definitions coincide at eps=0.
    # With b2 = 0.95, rho_t first reaches 5 at t = 6: both branches are compared.
    "radam": Case(
        aj.radam(0.01, b1=0.8, b2=0.95, eps=0.0),
        lambda p: torch.optim.RAdam(p, lr=0.01, betas=(0.8, 0.95), eps=0.0),
    ),
    "adadelta": Case(
        aj.adadelta(0.5, rho=0.8, eps=1e-4, weight_decay=0.05),
        lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05),
    ),
    # learning_rate lies in [min_step_size, max_step_size]: torch's clip of the initial step
    # size at the first update (where ours keeps it) changes nothing.
    "rprop": Case(
        aj.rprop(0.01, eta_minus=0.4, eta_plus=1.3, min_step_size=1e-3, max_step_size=0.05),
        lambda p: torch.optim.Rprop(p, lr=0.01, etas=(0.4, 1.3), step_sizes=(1e-3, 0.05)),
    ),
    # The schedule sees the 0-based step: torch's ExponentialLR stepped after each update.
    "adam_exponential_decay": Case(
        aj.adam(aj.schedules.exponential_decay(0.02, 0.97), b1=0.8, b2=0.95, eps=1e-3),
        lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.95), eps=1e-3),
        lambda optimizer: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.97),
    ),
}


@pytest.fixture(scope="module")
def ours():
    return jax_trajectories({name: case.ours for name, case in CASES.items()})


@pytest.mark.parametrize("name", sorted(CASES))
def test_named_optimizer_takes_torch_steps(name, ours):
    case = CASES[name]
    theirs = torch_trajectory(case.torch_optimizer, case.torch_scheduler)
    for leaf in NAMES:
        np.testing.assert_allclose(
            ours[name][leaf], theirs[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf
        )
    # The comparison is only meaningful if the optimizer actually moved every leaf.
    for leaf in NAMES:
        assert np.max(np.abs(theirs[leaf][-1] - theirs[leaf][0])) > 1e-3, leaf
