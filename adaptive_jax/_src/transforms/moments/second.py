r"""Second moments: the scale an adaptive method divides by.

A second-moment block reads the gradient (bare, or from the
:class:`~adaptive_jax.extend.Moments` record of a first-moment block before it)
and adds :math:`v_t` to the record:

* :class:`ema_of_squares` — :math:`v_t = \rho v_{t-1} + (1-\rho) |g_t|^2`
  (RMSProp, Tieleman & Hinton 2012; Adam's :math:`v_t` with :math:`\rho = \beta_2`);
* :class:`accumulate_squares` — :math:`G_t = G_{t-1} + |g_t|^2` (Adagrad, Duchi et al. 2011);
* :class:`centered_ema_of_squares` — :math:`v_t - \bar g_t^2`, the gradient's variance
  (centered RMSProp, Graves 2013).

Without a first moment before it, the record's first moment is the gradient itself.
For complex parameters :math:`|g|^2 = g\bar g`, which is real.  The variants that
change the recursion itself (AdaBelief, Adamax, Yogi) are in
:mod:`adaptive_jax._src.transforms.moments.second_variants`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import DECAY_RATE, NONNEGATIVE, PerParameter, per_leaf
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import as_moments, per_leaf_tree
from adaptive_jax._src.core.numerics import cast_like, ema, squared_magnitude
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.moments.first import corrections


def real_zeros_like(params: PyTree, dtype: Any = None) -> PyTree:
    """Zeros for a second moment: ``dtype``, else each parameter's real dtype."""
    return jax.tree_util.tree_map(
        lambda p: zeros_like(p, dtype or jnp.finfo(jnp.result_type(p)).dtype), params
    )


def ema_of_squares_step(gradients: PyTree, nu: PyTree, decays: list[Any]) -> PyTree:
    r""":math:`\rho v + (1-\rho)|g|^2` leaf by leaf, stored in ``nu``'s dtypes."""
    return map_params(
        lambda g, v, rho: ema(v, squared_magnitude(g, v.dtype), rho),
        gradients,
        nu,
        names=("nu",),
        per_leaf=(decays,),
    )


class SecondMomentState(NamedTuple):
    """State of a second-moment block: :math:`v_t` (or Adagrad's sum :math:`G_t`)."""

    nu: PyTree


class EmaOfSquares(Transform):
    r"""The EMA of squared gradients: :math:`v_t = \rho v_{t-1} + (1-\rho) |g_t|^2`, :math:`v_0 = 0`.

    RMSProp's second moment, and Adam's with :math:`\rho = \beta_2`.  The record carries
    the denominator :math:`1-\rho^t`, applied only if :class:`~adaptive_jax.debias`
    follows (Adam does that; RMSProp and ``torch.optim.RMSprop`` do not).

    Args:
        decay: :math:`\rho` in :math:`[0, 1)`, or a per-parameter tree of them.
        nu_dtype: dtype to store :math:`v_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_of_squares(decay=0.9)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(moments.nu.item(), 6)  # g and (1 - rho) g^2
        (2.0, 0.4)

    Reference: Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning", 2012.
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return SecondMomentState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        decays = per_leaf(self.decay, count - 1, state.nu, "decay")
        nu = ema_of_squares_step(record.gradient, state.nu, decays)
        correction = per_leaf_tree(corrections(decays, count), nu)
        decay = per_leaf_tree(decays, nu)
        record = record._replace(nu=nu, nu_correction=correction, nu_decay=decay)
        return record, SecondMomentState(nu)


class AccumulateSquares(Transform):
    r"""Adagrad's accumulator :math:`G_t = G_{t-1} + |g_t|^2`, :math:`G_0` = ``initial_accumulator_value``.

    The effective rate :math:`\eta/(\sqrt{G_t}+\epsilon)` can only decrease.

    Args:
        initial_accumulator_value: :math:`G_0 \ge 0`.
        nu_dtype: dtype to store :math:`G_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.accumulate_squares()
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (3.0, 4.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> print(moments.nu)  # 3^2 + 4^2
        [25.]

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", JMLR 2011.
    """

    initial_accumulator_value: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        zeros = real_zeros_like(params, self.nu_dtype)
        return SecondMomentState(
            jax.tree_util.tree_map(
                lambda z: z + cast_like(self.initial_accumulator_value, z), zeros
            )
        )

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        total = map_params(
            lambda g, s: s + squared_magnitude(g, s.dtype),
            record.gradient,
            state.nu,
            names=("sum",),
        )
        return record._replace(nu=total), SecondMomentState(total)


class CenteredEmaOfSquaresState(NamedTuple):
    """State of :class:`centered_ema_of_squares`: EMAs of the gradient and of its square."""

    mean: PyTree
    nu: PyTree


class CenteredEmaOfSquares(Transform):
    r"""Centered RMSProp's second moment: an EMA estimate of the gradient's variance.

    .. math::
       \bar g_t = \rho \bar g_{t-1} + (1-\rho) g_t, \qquad
       v_t = \rho v_{t-1} + (1-\rho) |g_t|^2, \qquad
       \sigma^2_t = v_t - |\bar g_t|^2,

    with :math:`\bar g_0 = v_0 = 0`; the record's second moment is :math:`\sigma^2_t`
    (no bias correction, as ``torch.optim.RMSprop(centered=True)``).  The two averages
    share one decay :math:`\rho`, a single leaf.

    Args:
        decay: :math:`\rho` in :math:`[0, 1)`, or a per-parameter tree of them.
        nu_dtype: dtype to store :math:`v_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.centered_ema_of_squares(decay=0.9)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.nu.item(), 4)  # (1 - rho) g^2 - ((1 - rho) g)^2 = rho (1 - rho) g^2
        0.36

    Reference: Graves, "Generating Sequences With Recurrent Neural Networks", 2013, eq. 38–41.
    """

    decay: PerParameter = hyperparameter(default=0.9, domain=DECAY_RATE)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return CenteredEmaOfSquaresState(zeros_like(params), real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        decays = per_leaf(self.decay, count - 1, state.nu, "decay")
        mean = map_params(
            lambda g, m, rho: ema(m, g, rho),
            record.gradient,
            state.mean,
            names=("mean",),
            per_leaf=(decays,),
        )
        nu = ema_of_squares_step(record.gradient, state.nu, decays)

        def variance(v, m):
            # v >= |m|^2 holds exactly; the maximum only absorbs rounding.
            return jnp.maximum(v - squared_magnitude(m, v.dtype), jnp.zeros_like(v))

        centered = map_params(variance, nu, mean, names=("mean",))
        return record._replace(nu=centered), CenteredEmaOfSquaresState(mean, nu)


ema_of_squares = EmaOfSquares
accumulate_squares = AccumulateSquares
centered_ema_of_squares = CenteredEmaOfSquares
