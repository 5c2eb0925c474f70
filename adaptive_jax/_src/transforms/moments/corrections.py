r"""Corrections applied to moment estimates: Adam's bias correction and AMSGrad's maximum.

* :class:`debias` divides by :math:`1-\beta^t` (Kingma & Ba 2015);
* :class:`amsgrad_max` replaces the second moment by its running maximum
  (Reddi, Kale & Kumar 2018).  After ``debias`` (the default in
  :func:`~adaptive_jax.amsgrad`, and ``optax.amsgrad``) the maximum is over
  :math:`\hat v_t`, so the effective denominator :math:`\sqrt{\hat v^{\max}_t}+\epsilon`
  never decreases; before ``debias`` it is ``torch.optim.Adam(amsgrad=True)``'s
  maximum of the raw :math:`v_t`, whose denominator shrinks with the correction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.module import static
from adaptive_jax._src.core.moments import Moments, expect_moments, leaf_values
from adaptive_jax._src.core.numerics import as_dtype, once
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params
from adaptive_jax._src.transforms.moments.second import real_zeros_like


def _reciprocal(correction: Any, dtype: np.dtype) -> jax.Array:
    return 1 / as_dtype(correction, dtype)


def _divide(tree: Any, correction: Any) -> Any:
    """Each leaf divided by its correction: times ``1/correction``, computed once per step.

    XLA turns a division by a broadcast scalar into this product anyway, but only when
    no other rewrite comes first (``(m / c) / d`` may become ``m / (c * d)``, which
    rounds differently): written out, the step's rounding does not depend on the order
    of XLA's rewrites, and the native fused step computes the same product.
    """
    if isinstance(correction, float) and correction == 1.0:
        return tree
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    divided = [
        x * once(_reciprocal, c, jnp.dtype(jnp.result_type(x)))
        for x, c in zip(leaves, leaf_values(correction, tree))
    ]
    return jax.tree_util.tree_unflatten(treedef, divided)


class Debias(Transform):
    r"""Adam's bias correction: :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`.

    Moments started at zero are biased towards zero by the factor :math:`1-\beta^t`
    (unroll the EMA and take expectations); dividing by it makes the estimates
    unbiased for stationary gradients.  :math:`t` counts from 1.  The denominators come
    from the moment blocks before it, one per leaf when their decays are per-parameter.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_of_gradients(0.9), aj.ema_of_squares(0.99), aj.debias())
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(moments.nu.item(), 6)  # unbiased: g, g^2 at t = 1
        (2.0, 4.0)
    """

    def apply(self, updates, state, params, count):
        if not isinstance(updates, Moments):
            raise TypeError(
                "debias expects moment estimates (ema_of_gradients, ema_of_squares, ...) "
                "earlier in the chain, got gradients"
            )
        moments = updates
        corrected = moments._replace(
            mu=_divide(moments.mu, moments.mu_correction),
            nu=None if moments.nu is None else _divide(moments.nu, moments.nu_correction),
            mu_correction=1.0,
            nu_correction=1.0,
        )
        return corrected, state


class AmsgradMaxState(NamedTuple):
    """State of :class:`amsgrad_max`: the running maximum of the second moment."""

    nu_max: Any


class AmsgradMax(Transform):
    r"""AMSGrad's running maximum of the second moment: :math:`v^{\max}_t = \max(v^{\max}_{t-1}, v_t)`.

    The denominator built from it never decreases, so the effective step size never
    grows: the fix for Adam's divergence on Reddi et al.'s online problem.  Where it
    stands in the chain picks the variant (see the module docstring): after
    :class:`debias` the maximum of :math:`\hat v_t` (``optax.amsgrad``, and the default
    of :func:`~adaptive_jax.amsgrad`); before it, the maximum of the raw :math:`v_t`
    (``torch.optim.Adam(amsgrad=True)``).

    Args:
        nu_dtype: dtype of the stored maximum; must match the second moment's storage
            dtype when that is set.

    Reference: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """

    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return AmsgradMaxState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "amsgrad_max")
        nu_max = map_params(
            lambda v, v_max: jnp.maximum(v_max, v.astype(v_max.dtype)),
            moments.nu,
            state.nu_max,
            names=("nu_max",),
        )
        return moments._replace(nu=nu_max), AmsgradMaxState(nu_max)


debias = Debias
amsgrad_max = AmsgradMax
