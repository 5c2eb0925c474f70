r"""Persistent Evolution Strategies: unbiased meta-gradients from truncated windows.

Evolution strategies estimate the gradient of the Gaussian-smoothed objective
:math:`\mathbb{E}_{\epsilon \sim \mathcal N(0, \sigma^2 I)} L(\phi + \epsilon)` from objective
values alone, :math:`\hat g = \frac{1}{N\sigma^2}\sum_i \epsilon_i L(\phi + \epsilon_i)`.  Applied to
one :math:`K`-step window of a long run it is as biased as truncated backpropagation: the window's
start also depends on :math:`\phi`.  PES keeps :math:`N` *persistent* particles, each running its
own copy of the inner problem with its own perturbed hyperparameters, and weights each window's
objective by the **sum of all perturbations the particle has used so far** in the current run:

.. math::
   \xi_i \leftarrow \xi_i + \epsilon_i^{(j)}, \qquad
   (\theta^i, s^i) \leftarrow \mathrm{unroll}_K(\phi + \epsilon_i^{(j)};\ \theta^i, s^i), \qquad
   \hat g_j = \frac{1}{N\sigma^2} \sum_{i=1}^N \xi_i\, L_j(\phi + \epsilon_i^{(j)}) .

Summed over the windows of a run, :math:`\sum_j \hat g_j` is an unbiased estimate of the
gradient of the smoothed total objective :math:`\sum_j L_j` — the perturbations of earlier windows
get credit for their effect on later ones, which truncated backpropagation drops.  Perturbations
come in antithetic pairs :math:`(\epsilon, -\epsilon)` (so :math:`N` is even), which removes the
constant part of the objective from the estimate.  Every particle restarts, and its
:math:`\xi_i` returns to 0, when the run reaches its horizon.

PES needs no derivatives of the inner run, so it also works through discontinuities and in the
chaotic regime of long unrolls, at the price of variance that grows with the number of
perturbed hyperparameters and with the run length.

Reference: Vicol, Metz & Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled Computation
Graphs with Persistent Evolution Strategies", ICML 2021 (Algorithm 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import POSITIVE
from adaptive_jax._src.core.module import child, hyperparameter, static
from adaptive_jax._src.core.protocol import PyTree
from adaptive_jax._src.meta.estimator import Estimator
from adaptive_jax._src.meta.truncated import InnerRun, WindowState
from adaptive_jax._src.meta.unroll import Unrolled


class PESState(NamedTuple):
    """State of :class:`PersistentES`.

    ``particles`` is a :class:`~adaptive_jax._src.meta.truncated.WindowState` whose leaves have a
    leading particle axis :math:`N`; ``perturbation_sums`` holds :math:`\\xi_i`, shaped like the
    meta-parameters with a leading axis :math:`N`; ``key`` draws the next perturbations.
    """

    particles: WindowState
    perturbation_sums: PyTree
    key: jax.Array


def _float_dtype(leaf: Any) -> Any:
    dtype = jnp.result_type(leaf)
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(float)


def antithetic_perturbations(
    key: jax.Array, like: PyTree, num_particles: int, sigma: Any
) -> PyTree:
    r"""Draw :math:`N/2` perturbations :math:`\epsilon \sim \mathcal N(0, \sigma^2 I)` shaped like ``like`` and stack them with their negatives.

    Every leaf of the result has a leading axis of length ``num_particles``; particle
    :math:`i + N/2` carries :math:`-\epsilon_i`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(key, len(leaves))
    half = num_particles // 2

    def draw(leaf_key, leaf):
        dtype = _float_dtype(leaf)
        noise = jax.random.normal(leaf_key, (half,) + jnp.shape(leaf), dtype)
        noise = noise * jnp.asarray(sigma).astype(dtype)
        return jnp.concatenate([noise, -noise])

    return jax.tree_util.tree_unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])


class PersistentES(Estimator):
    r"""Meta-gradient estimator: PES over windows of an :class:`~adaptive_jax.meta.InnerRun`.

    ``init(meta_params, key) -> state`` starts :math:`N` particles; ``estimate(meta_params,
    state) -> (objective, meta_gradient, state)`` advances every particle one window and returns
    the mean of the particles' objectives and the PES estimate.  Build with
    :func:`persistent_es`.
    """

    run: InnerRun = child()
    num_particles: int = static(default=100)
    sigma: Any = hyperparameter(default=0.1, domain=POSITIVE)

    def __check_init__(self):
        if self.num_particles < 2 or self.num_particles % 2:
            raise ValueError(
                f"num_particles must be a positive even number (antithetic pairs), got "
                f"{self.num_particles}"
            )

    def with_decoder(self, decode: Callable[[PyTree], Any]) -> PersistentES:
        return PersistentES(self.run.with_decoder(decode), self.num_particles, self.sigma)

    def init(self, meta_params: PyTree, key: jax.Array) -> PESState:
        one = self.run.start(self.run.transform(meta_params))
        particles = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (self.num_particles,) + jnp.shape(x)), one
        )
        sums = jax.tree_util.tree_map(
            lambda m: jnp.zeros((self.num_particles,) + jnp.shape(m), _float_dtype(m)), meta_params
        )
        return PESState(particles, sums, key)

    def estimate(self, meta_params: PyTree, state: PESState) -> tuple[jax.Array, PyTree, PESState]:
        key, draw_key = jax.random.split(state.key)
        perturbations = antithetic_perturbations(
            draw_key, meta_params, self.num_particles, self.sigma
        )
        # All particles advance in lockstep, so they reach the horizon together.
        restarting = self.run.finished(state.particles.step[0])
        sums = jax.tree_util.tree_map(
            lambda xi, eps: jnp.where(restarting, jnp.zeros_like(xi), xi) + eps,
            state.perturbation_sums,
            perturbations,
        )

        def advance(epsilon, particle):
            perturbed = jax.tree_util.tree_map(lambda m, e: m + e, meta_params, epsilon)
            return self.run.run_window(self.run.transform(perturbed), particle)

        objectives, particles = jax.vmap(advance)(perturbations, state.particles)

        def weigh(xi):
            sigma = jnp.asarray(self.sigma).astype(xi.dtype)
            weighted = jnp.tensordot(objectives.astype(xi.dtype), xi, axes=1)
            return weighted / (self.num_particles * sigma**2)

        grads = jax.tree_util.tree_map(weigh, sums)
        return jnp.mean(objectives), grads, PESState(particles, sums, key)


def persistent_es(
    loss_fn: Callable[..., jax.Array],
    init_params: PyTree,
    data: Any = None,
    *,
    window: int,
    horizon: int | None = None,
    num_particles: int = 100,
    sigma: Any = 0.1,
    objective: Callable[[Unrolled], jax.Array] | None = None,
    to_transform: Callable[[PyTree], Any] | None = None,
) -> PersistentES:
    r"""PES with ``num_particles`` antithetic particles and perturbation scale ``sigma``.

    The other arguments describe the :class:`~adaptive_jax.meta.InnerRun` (as for
    :func:`~adaptive_jax.meta.truncated_backprop`).  Perturbations are added to the
    meta-parameters, so give unconstrained ones (see :mod:`adaptive_jax._src.meta.reparam`) when
    a hyperparameter has a restricted range (:math:`\beta \in [0, 1)`, :math:`\epsilon > 0`).
    The gradient has the meta-parameters' structure.
    """
    run = InnerRun(loss_fn, init_params, data, window, horizon, objective, to_transform)
    return PersistentES(run, num_particles, sigma)
