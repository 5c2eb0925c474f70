r"""Gradient noise: annealed Gaussian noise added to the updates, from a key in the state."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.hyperparameter import NONNEGATIVE
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import compute_dtype, safe_sqrt, widest_dtype
from adaptive_jax._src.core.protocol import Transform


def as_seed(key: Any) -> int | tuple[int, ...]:
    """An ``int`` seed as given, or a concrete PRNG key's raw data as a tuple of ints.

    Either is hashable, so it travels in the transformation's tree definition: the noise
    is configuration, not a hyperparameter (it has no derivative).
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, tuple) and all(isinstance(k, int) for k in key):
        return key
    given: Any = key
    try:
        if jnp.issubdtype(given.dtype, jax.dtypes.prng_key):
            given = jax.random.key_data(given)
        data = np.asarray(given)
    except Exception as error:
        raise TypeError(
            f"key={key!r} is invalid: expected an int seed or a concrete PRNG key "
            "(jax.random.key(0) or jax.random.PRNGKey(0))"
        ) from error
    if data.dtype != np.uint32 or data.ndim != 1:
        raise TypeError(
            f"key={key!r} is invalid: expected an int seed or a single PRNG key, got an "
            f"array of dtype {data.dtype} and shape {data.shape}"
        )
    return tuple(int(k) for k in data)


class AddNoiseState(NamedTuple):
    """State of :class:`add_noise`: the raw PRNG key of the next step (uint32)."""

    rng_key: jax.Array


class AddNoise(Transform):
    r"""Add annealed Gaussian noise: :math:`u_t = g_t + \sigma_t \xi_t`, :math:`\sigma_t^2 = \eta / t^{\gamma}`.

    :math:`\xi_t \sim \mathcal N(0, I)` is drawn from a key kept in the state: each step
    splits it into the next step's key and one key per parameter leaf, exactly as
    ``optax.add_noise`` does, so the same ``key`` gives optax's noise, bit for bit, and
    a run is reproducible.  :math:`t` is the 1-based step.

    Meta-gradients are pathwise: for the fixed key the noise sample :math:`\xi_t` is a
    constant and :math:`u_t` is differentiable in :math:`\eta` and :math:`\gamma`
    (:math:`\partial \sigma_t / \partial\gamma = -\tfrac12 \log t\ \sigma_t`).  They are
    the derivative of this run, not of the expected loss over keys (average them over
    keys for that).  :math:`\sigma_t` is computed as :math:`\sqrt\eta\, t^{-\gamma/2}`:
    at :math:`\eta = 0` the derivative in :math:`\gamma` is 0 (the noise is gone), where
    optax's :math:`\sqrt{\eta / t^\gamma}` gives NaN; the derivative in :math:`\eta`
    there is infinite in exact arithmetic (:math:`\sigma \propto \sqrt\eta`) and is
    reported as 0 (:func:`~adaptive_jax.extend.safe_sqrt`), so meta-learn :math:`\eta`
    from a positive value (its reparameterisation keeps it positive).

    The noise is drawn in at least float32 and added in the update's dtype.

    Args:
        eta: :math:`\eta \ge 0`, the variance at the first step.
        gamma: :math:`\gamma \ge 0`, the decay exponent of the variance.
        key: an int seed or a concrete PRNG key (``jax.random.key(0)``), as ``optax.add_noise``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.add_noise(eta=0.01, gamma=0.55, key=0)
        >>> updates, _ = tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)))
        >>> # the first step's noise: sigma_1 = sqrt(0.01) times N(0, 1) from optax's keys
        >>> _, sample = jax.random.split(jax.random.PRNGKey(0))
        >>> xi = jax.random.normal(jax.random.split(sample, 1)[0], (3,))
        >>> bool(jnp.allclose(updates, 0.1 * xi))
        True

    Reference: Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
    Networks", arXiv:1511.06807, 2015.
    """

    eta: Any = hyperparameter(default=0.01, domain=NONNEGATIVE)
    gamma: Any = hyperparameter(default=0.55, domain=NONNEGATIVE)
    key: Any = static(default=0, converter=as_seed)

    def init_state(self, params):
        if isinstance(self.key, int):
            return AddNoiseState(jax.random.PRNGKey(self.key))
        return AddNoiseState(jnp.asarray(self.key, jnp.uint32))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "add_noise")
        rng_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))
        eta = jnp.asarray(self.eta)
        dtype = compute_dtype(eta)
        t = count.astype(dtype)
        scale = safe_sqrt(eta.astype(dtype)) * t ** (-jnp.asarray(self.gamma).astype(dtype) / 2)

        def noisy(u, key):
            wide = widest_dtype(u.dtype, jnp.float32)
            xi = jax.random.normal(key, u.shape, wide)
            return (u.astype(wide) + scale.astype(wide) * xi).astype(u.dtype)

        out = [noisy(u, k) for u, k in zip(leaves, keys)]
        return jax.tree_util.tree_unflatten(treedef, out), AddNoiseState(rng_key)


add_noise = AddNoise
