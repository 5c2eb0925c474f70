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

import jax

from adaptive_jax.core.hyperparams import per_leaf
from adaptive_jax.core.numerics import cast_like
from adaptive_jax.core.protocol import Transform
from adaptive_jax.core.pytree import pytree_dataclass
from adaptive_jax.core.trees import check_same_structure
from adaptive_jax.core.validation import check_nonnegative
from adaptive_jax.transforms.moments import expect_gradients


@pytree_dataclass
class AddWeightDecay(Transform):
    """:math:`u \\leftarrow u + \\lambda\\theta`; build with one of the two functions below."""

    weight_decay: Any = 1e-4

    def __post_init__(self):
        check_nonnegative("weight_decay", self.weight_decay)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, type(self).__name__)
        if params is None:
            raise ValueError(
                f"{type(self).__name__} needs the parameters: call update(grads, state, params)"
            )
        check_same_structure(params, updates, "params", "updates")
        decays = per_leaf(self.weight_decay, count - 1, updates)
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        param_leaves = jax.tree_util.tree_leaves(params)
        new = [
            u + (cast_like(d, p) * p).astype(u.dtype)
            for u, p, d in zip(leaves, param_leaves, decays)
        ]
        return jax.tree_util.tree_unflatten(treedef, new), state


@pytree_dataclass
class AddL2Regularization(AddWeightDecay):
    """See :func:`add_l2_regularization`."""


@pytree_dataclass
class AddDecoupledWeightDecay(AddWeightDecay):
    """See :func:`add_decoupled_weight_decay`."""


def add_l2_regularization(weight_decay: Any = 1e-4) -> AddL2Regularization:
    r"""Coupled L2: add :math:`\lambda\theta` to the gradient, before the preconditioner.

    Equivalent to adding :math:`\tfrac{\lambda}{2}\|\theta\|^2` to the loss.  Place it
    first in the chain (``torch.optim.Adam(weight_decay=...)`` does this).
    ``weight_decay`` may be a schedule or a per-parameter pytree (e.g. 0 for biases).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.add_l2_regularization(0.5)
        >>> params = jnp.array([2.0, -4.0])
        >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
        >>> print(updates)  # g + lambda * theta
        [ 2. -1.]
    """
    return AddL2Regularization(weight_decay)


def add_decoupled_weight_decay(weight_decay: Any = 1e-4) -> AddDecoupledWeightDecay:
    r"""Decoupled decay: add :math:`\lambda\theta` after the preconditioner, before the learning rate.

    With ``scale_by_learning_rate(eta)`` after it the step is
    :math:`\theta \leftarrow \theta - \eta(d_t + \lambda\theta)`, as
    ``torch.optim.AdamW``.  ``weight_decay`` may be a schedule or a per-parameter pytree.

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
    return AddDecoupledWeightDecay(weight_decay)
