r"""Muon's direction: the momentum of a weight matrix, orthogonalised by Newton–Schulz.

For a matrix update :math:`M = U\Sigma V^\top` the orthogonalised step :math:`UV^\top`
moves every singular direction by the same amount (steepest descent in the spectral
norm).  Five quintic Newton–Schulz iterations approximate it without an SVD:
:math:`X \leftarrow aX + (bA + cA^2)X`, :math:`A = XX^\top`, from
:math:`X_0 = M/(\|M\|_F + \epsilon)` (Jordan et al. 2024; Bernstein & Newhouse 2024).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, EPSILON, check_count
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    bias_correction,
    cast_like,
    ema,
    increment,
    safe_sqrt,
    squared_magnitude,
)
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params, zeros_like

DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def _replicated(x: jax.Array) -> jax.Array:
    """``x`` gathered onto every device if it is sharded over an explicit mesh axis.

    The iteration's :math:`XX^\top` contracts whole rows: it needs the whole matrix.
    """
    sharding: Any = getattr(jax.typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if spec is None or all(axis is None for axis in spec):
        return x
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return jax.sharding.reshard(x, replicated)


def orthogonalize_via_newton_schulz(
    x: jax.Array, ns_coeffs: Any = DEFAULT_NS_COEFFS, ns_steps: int = 5, eps: Any = 1e-8
) -> jax.Array:
    r"""Approximate :math:`UV^\top` of a matrix :math:`x = U\Sigma V^\top` by ``ns_steps`` Newton–Schulz steps.

    The Frobenius norm's derivative at :math:`x = 0` is taken as 0 (a zero gradient
    gives a zero step with finite meta-gradients).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> x = jnp.diag(jnp.array([3.0, 0.5]))  # singular values 3 and 0.5
        >>> q = aj.orthogonalize_via_newton_schulz(x)
        >>> print(q.round(2))  # both pushed into the band [0.7, 1.2] the quintic targets
        [[0.71 0.  ]
         [0.   1.04]]
    """
    if x.ndim != 2:
        raise ValueError(f"orthogonalize_via_newton_schulz needs a matrix, got shape {x.shape}")
    sharding: Any = getattr(jax.typeof(x), "sharding", None)
    x = _replicated(x)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    norm = safe_sqrt(jnp.sum(squared_magnitude(x)))
    x = x / (norm + cast_like(eps, norm)).astype(x.dtype)
    a, b, c = (jnp.asarray(k).astype(x.dtype) for k in ns_coeffs)
    for _ in range(ns_steps):
        gram = x @ x.T.conj()
        x = a * x + (b * gram + c * gram @ gram) @ x
    x = x.T if transposed else x
    if getattr(sharding, "spec", None) is not None and any(a is not None for a in sharding.spec):
        x = jax.sharding.reshard(x, sharding)  # back to the parameter's layout
    return x


class ScaleByMuonState(NamedTuple):
    """State of :class:`scale_by_muon`: the momentum :math:`m_t`."""

    mu: Any


class ScaleByMuon(Transform):
    r"""Muon's direction for matrices: :math:`u_t = \sqrt{\max(1, n/m)}\ \mathrm{NS}(\hat m_t)` for an :math:`m\times n` leaf.

    :math:`m_t = \beta m_{t-1} + (1-\beta) g_t`; :math:`\hat m_t` is its bias-corrected
    value, or with ``nesterov`` the look-ahead
    :math:`\beta m_t/(1-\beta^{t+1}) + (1-\beta) g_t/(1-\beta^t)`; NS is
    :func:`orthogonalize_via_newton_schulz`.  Every leaf must be a matrix (route the
    others elsewhere, as :func:`~adaptive_jax.muon` does).  The numbers of
    ``optax.contrib.scale_by_muon`` followed by its ``scale_by_shape`` (Frobenius
    preconditioning, the default dimension numbers).  ``ns_coeffs`` is configuration.

    Args:
        beta: :math:`\beta` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to the Frobenius norm.
        ns_steps: the number of Newton–Schulz iterations.
        ns_coeffs: the quintic's :math:`(a, b, c)`.
        nesterov: use the look-ahead momentum.
        mu_dtype: dtype to store :math:`m_t` in.

    Reference: Jordan et al., "Muon: An optimizer for hidden layers in neural networks",
    2024; Bernstein & Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
    """

    beta: Any = hyperparameter(default=0.95, domain=DECAY_RATE)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    ns_steps: int = static(default=5)
    ns_coeffs: tuple = static(default=DEFAULT_NS_COEFFS)
    nesterov: bool = static(default=True)
    mu_dtype: Any = static(default=None)

    def __check_init__(self):
        check_count("ns_steps", self.ns_steps)
        if len(self.ns_coeffs) != 3:
            raise ValueError(f"ns_coeffs={self.ns_coeffs!r} is invalid: expected (a, b, c)")

    def init_state(self, params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            if jnp.ndim(leaf) != 2:
                raise ValueError(
                    f"scale_by_muon orthogonalises matrices; the parameter at "
                    f"{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}"
                )
        return ScaleByMuonState(zeros_like(params, self.mu_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_muon")
        mu = map_params(lambda g, m: ema(m, g, self.beta), updates, state.mu, names=("mu",))
        now = bias_correction(self.beta, count)

        def direction(g, m):
            beta = cast_like(self.beta, g)
            if self.nesterov:
                ahead = bias_correction(self.beta, increment(count))
                m_hat = beta * (m.astype(g.dtype) / cast_like(ahead, g)) + (1 - beta) * (
                    g / cast_like(now, g)
                )
            else:
                m_hat = m.astype(g.dtype) / cast_like(now, g)
            q = orthogonalize_via_newton_schulz(m_hat, self.ns_coeffs, self.ns_steps, self.eps)
            fan_in, fan_out = g.shape
            return q * jnp.sqrt(jnp.maximum(1.0, fan_out / fan_in)).astype(g.dtype)

        return map_params(direction, updates, mu, names=("mu",)), ScaleByMuonState(mu)


scale_by_muon = ScaleByMuon
