r"""Layer-wise trust ratio (LARS, LAMB, Fromage): each parameter tensor's step is scaled to its size.

* :class:`scale_by_trust_ratio` — the ratio :math:`\|\theta\|/\|u\|` per tensor;
* :class:`fromage_step` — Fromage's learning-rate step, which also shrinks the
  parameters by :math:`1/\sqrt{1+\eta^2}` so that trust-ratio steps do not inflate
  their norms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    EPSILON,
    LEARNING_RATE,
    NONNEGATIVE,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, safe_sqrt, squared_magnitude, widest_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params


def leaf_norm(x: jax.Array, min_norm: Any = 0.0) -> jax.Array:
    r""":math:`\max(\|x\|_2, n_{\min})` over one leaf, with derivative 0 (not NaN) at :math:`x = 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> from adaptive_jax._src.transforms.trust_ratio import leaf_norm
        >>> float(leaf_norm(jnp.array([3.0, 4.0]))), float(leaf_norm(jnp.zeros(2), 0.5))
        (5.0, 0.5)
    """
    norm = safe_sqrt(jnp.sum(squared_magnitude(x)))
    return jnp.maximum(norm, cast_like(min_norm, norm))


class ScaleByTrustRatio(Transform):
    r"""Scale each leaf's update by its trust ratio :math:`c\,\|\theta\|/(\|u\|+\epsilon)`.

    .. math::
       u \leftarrow u \cdot \frac{c\, \max(\|\theta\|_2, n_{\min})}{\max(\|u\|_2, n_{\min}) + \epsilon},

    per parameter tensor (leaf); the ratio is 1 where either norm is 0 (a parameter at
    the origin, or no update).  After it, every tensor moves by
    :math:`\alpha c\,\|\theta\|` relative to its own size, whatever its gradient scale.
    The numbers of ``optax.scale_by_trust_ratio``.

    Args:
        min_norm: :math:`n_{\min} \ge 0`, a floor for both norms.
        trust_coefficient: :math:`c \ge 0`.
        eps: :math:`\epsilon \ge 0`, added to the update's norm.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_trust_ratio()
        >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(1)}
        >>> grads = {"w": jnp.array([0.1, 0.0]), "b": jnp.array([2.0])}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> [round(u, 4) for u in updates["w"].tolist()]  # times ||theta|| / ||u|| = 5 / 0.1
        [5.0, 0.0]
        >>> updates["b"].tolist()  # theta = 0: ratio 1, unchanged
        [2.0]

    Reference: You et al., "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes" (LAMB), ICLR 2020; You, Gitman & Ginsburg, "Large Batch Training of
    Convolutional Networks" (LARS), 2017.
    """

    min_norm: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    trust_coefficient: Any = hyperparameter(default=1.0, domain=NONNEGATIVE)
    eps: Any = hyperparameter(default=0.0, domain=EPSILON)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_trust_ratio")
        if params is None:
            raise ValueError(
                "scale_by_trust_ratio needs the parameters: update(grads, state, params)"
            )

        def scale(u, p):
            param_norm = leaf_norm(p, self.min_norm)
            update_norm = leaf_norm(u, self.min_norm).astype(param_norm.dtype)
            degenerate = (param_norm == 0) | (update_norm == 0)
            # Guard the denominator too, so the unused branch has no NaN derivative.
            denominator = jnp.where(
                degenerate,
                jnp.ones_like(update_norm),
                update_norm + cast_like(self.eps, update_norm),
            )
            ratio = cast_like(self.trust_coefficient, param_norm) * param_norm / denominator
            ratio = jnp.where(degenerate, jnp.ones_like(ratio), ratio)
            return u * cast_like(ratio, u)

        return map_params(scale, updates, params, names=("params",)), state


class FromageStep(Transform):
    r"""Fromage's step: :math:`\theta_t = (\theta_{t-1} - \eta\, d_t)/\sqrt{1+\eta^2}`, as an update.

    .. math::
       u_t = \frac{\theta_{t-1} - \eta\, d_t}{\sqrt{1+\eta^2}} - \theta_{t-1}
           = -\frac{\eta}{\sqrt{1+\eta^2}}\, d_t + \Big(\frac{1}{\sqrt{1+\eta^2}} - 1\Big)\theta_{t-1} .

    It takes the place of :class:`~adaptive_jax.scale_by_learning_rate` after
    :class:`scale_by_trust_ratio`: there :math:`d_t` has each tensor's norm, and a step
    of relative length :math:`\eta` orthogonal to :math:`\theta` would grow
    :math:`\|\theta\|` by :math:`\sqrt{1+\eta^2}`; the division undoes that growth.
    The numbers of ``optax.fromage`` (which writes it as a learning rate
    :math:`\eta/\sqrt{1+\eta^2}` and a weight decay :math:`1/\sqrt{1+\eta^2} - 1`, two
    uses of one :math:`\eta`); :math:`1/\sqrt{1+\eta^2} - 1` is computed as
    :math:`-\eta^2/(\sqrt{1+\eta^2}(1+\sqrt{1+\eta^2}))`, without cancellation.

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.fromage_step(0.75)  # sqrt(1 + 0.75^2) = 1.25
        >>> params = jnp.array([2.0, 0.0])
        >>> updates, _ = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> [round(x, 6) for x in (params + updates).tolist()]  # (theta - 0.75 d) / 1.25: norm 2
        [1.6, -1.2]

    Reference: Bernstein, Vahdat, Yue & Liu, "On the Distance between Two Neural
    Networks and the Stability of Learning", NeurIPS 2020, Algorithm 1.
    """

    learning_rate: PerParameter = hyperparameter(domain=LEARNING_RATE)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "fromage_step")
        if params is None:
            raise ValueError("fromage_step needs the parameters: update(grads, state, params)")
        rates = per_leaf(self.learning_rate, count - 1, updates, "learning_rate")

        def step(u, p, rate):
            wide = widest_dtype(u.dtype, p.dtype, jnp.float32)
            eta = jnp.asarray(rate).astype(wide)
            root = jnp.sqrt(1 + eta * eta)
            shrink = -(eta * eta) / (root * (1 + root))  # 1 / root - 1
            step = -(eta / root) * u.astype(wide) + shrink * p.astype(wide)
            return step.astype(u.dtype)

        return map_params(step, updates, params, names=("params",), per_leaf=(rates,)), state


scale_by_trust_ratio = ScaleByTrustRatio
fromage_step = FromageStep
