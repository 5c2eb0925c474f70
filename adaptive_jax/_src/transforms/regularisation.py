r"""Weight decay, coupled (L2) and decoupled (AdamW).

Both add :math:`\lambda\theta` to the update stream; what differs is *where* in the
chain they stand, and so what the penalty passes through:

* :func:`add_l2_regularization` goes **before** the preconditioner: the gradient of
  :math:`\tfrac{\lambda}{2}\|\theta\|^2` joins :math:`g_t` and is divided by
  :math:`\sqrt{\hat v_t}+\epsilon`, so active parameters are shrunk less;
* :func:`add_decoupled_weight_decay` goes **after** it and before the learning
  rate: :math:`\theta \leftarrow \theta - \eta(\text{direction} + \lambda\theta)`,
  uniform shrinkage (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
  ICLR 2019).

For plain SGD the two coincide.
"""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.hyperparameter import WEIGHT_DECAY, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params


def add_weight_decay(updates: Any, params: Any, weight_decay: Any, count: Any, block: str) -> Any:
    """:math:`u + \\lambda\\theta` leaf by leaf (``weight_decay`` a scalar, schedule or tree)."""
    expect_gradients(updates, block)
    if params is None:
        raise ValueError(f"{block} needs the parameters: call update(grads, state, params)")
    decays = per_leaf(weight_decay, count - 1, updates, "weight_decay")
    return map_params(
        lambda u, p, d: u + (cast_like(d, p) * p).astype(u.dtype),
        updates,
        params,
        names=("params",),
        per_leaf=(decays,),
    )


class AddL2Regularization(Transform):
    r"""Coupled L2: add :math:`\lambda\theta` to the gradient, before the preconditioner.

    Equivalent to adding :math:`\tfrac{\lambda}{2}\|\theta\|^2` to the loss.  Place it
    first in the chain (``torch.optim.Adam(weight_decay=...)`` does this).
    ``weight_decay`` may be a schedule or a per-parameter pytree (e.g. 0 for biases).

    Args:
        weight_decay: :math:`\lambda \ge 0`, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.add_l2_regularization(0.5)
        >>> params = jnp.array([2.0, -4.0])
        >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
        >>> print(updates)  # g + lambda * theta
        [ 2. -1.]
    """

    weight_decay: PerParameter = hyperparameter(default=1e-4, domain=WEIGHT_DECAY)

    def apply(self, updates, state, params, count):
        return add_weight_decay(
            updates, params, self.weight_decay, count, "add_l2_regularization"
        ), state


class AddDecoupledWeightDecay(Transform):
    r"""Decoupled decay: add :math:`\lambda\theta` after the preconditioner, before the learning rate.

    With ``scale_by_learning_rate(eta)`` after it the step is
    :math:`\theta \leftarrow \theta - \eta(d_t + \lambda\theta)`, as
    ``torch.optim.AdamW``.  ``weight_decay`` may be a schedule or a per-parameter pytree.

    Args:
        weight_decay: :math:`\lambda \ge 0`, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.add_decoupled_weight_decay(0.5)
        >>> params = jnp.array([2.0, -4.0])
        >>> updates, _ = tx.update(jnp.zeros(2), tx.init(params), params)
        >>> print(updates)  # direction + lambda * theta
        [ 1. -2.]

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    weight_decay: PerParameter = hyperparameter(default=1e-4, domain=WEIGHT_DECAY)

    def apply(self, updates, state, params, count):
        decayed = add_weight_decay(
            updates, params, self.weight_decay, count, "add_decoupled_weight_decay"
        )
        return decayed, state


add_l2_regularization = AddL2Regularization
add_decoupled_weight_decay = AddDecoupledWeightDecay
