r"""Online hypergradient descent: learn the learning rate during training (Baydin et al. 2018).

A step :math:`\theta_{t-1} = \theta_{t-2} - \alpha\, d_{t-1}` along a direction :math:`d_{t-1}`
(the gradient for SGD, Adam's :math:`\hat m/(\sqrt{\hat v}+\epsilon)` for Adam) makes the next
loss a function of the rate, with the one-step hypergradient

.. math::
   h_t = \frac{\partial f(\theta_{t-1})}{\partial \alpha}
       = \nabla f(\theta_{t-1}) \cdot \frac{\partial \theta_{t-1}}{\partial \alpha}
       = -\, g_t \cdot d_{t-1}.

Hypergradient descent takes a gradient step of size :math:`\beta` on :math:`\alpha` before each
parameter step, reusing the gradient the parameter step needs anyway:

.. math::
   \alpha_t = \alpha_{t-1} - \beta h_t = \alpha_{t-1} + \beta\, g_t \cdot d_{t-1}, \qquad
   \theta_t = \theta_{t-1} - \alpha_t d_t ,

with :math:`d_0 = 0` (so :math:`\alpha_1 = \alpha_0`).  SGD-HD is
:math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot g_{t-1}`; Adam-HD uses the previous Adam
direction :math:`u_{t-1}`.  The rate grows while successive steps agree and shrinks when they
oscillate.  The current :math:`\alpha_t` lives in the state; the transformation's
``learning_rate`` is :math:`\alpha_0`, and both it and :math:`\beta` stay differentiable leaves.

Reference: Baydin, Cornish, Martínez Rubio, Schmidt & Wood, "Online Learning Rate Adaptation
with Hypergradient Descent", ICLR 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import chain
from adaptive_jax._src.core.hyperparameter import LEARNING_RATE, NONNEGATIVE
from adaptive_jax._src.core.module import child, hyperparameter
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, compute_dtype
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.preconditioning import scale_by_adam


class HypergradientDescentState(NamedTuple):
    """State of :class:`HypergradientDescent`.

    ``learning_rate`` is the rate :math:`\\alpha_{t-1}` of the last step (:math:`\\alpha_0` before
    the first), ``previous_direction`` is :math:`d_{t-1}` (zeros before the first step) and
    ``inner`` is the direction transform's state.
    """

    learning_rate: jax.Array
    previous_direction: PyTree
    inner: PyTree


def inner_product(a: PyTree, b: PyTree, dtype: Any) -> jax.Array:
    r""":math:`\mathrm{Re}\sum_i \bar a_i b_i` over all leaves, computed in the real ``dtype``."""

    def real_and_imaginary(x):
        if jnp.iscomplexobj(x):
            return jnp.real(x).astype(dtype), jnp.imag(x).astype(dtype)
        return x.astype(dtype), jnp.zeros_like(x, dtype)

    def leaf_product(x, y):
        (x_re, x_im), (y_re, y_im) = real_and_imaginary(x), real_and_imaginary(y)
        return jnp.sum(x_re * y_re) + jnp.sum(x_im * y_im)

    products = jax.tree_util.tree_leaves(map_params(leaf_product, a, b, names=("direction",)))
    return sum(products, jnp.zeros([], dtype))


class HypergradientDescent(Transform):
    """Step along ``direction``'s output with a learning rate adapted by hypergradient descent.

    Build with :func:`sgd_hd` or :func:`adam_hd`, or give any direction transform (a chain that
    outputs a descent direction, without the learning rate).
    """

    direction: Transform = child()
    learning_rate: Any = hyperparameter(
        default=1e-3, domain=LEARNING_RATE, schedule=False, per_parameter=False
    )
    hypergrad_lr: Any = hyperparameter(default=1e-3, domain=NONNEGATIVE)

    def init_state(self, params):
        alpha = jnp.asarray(self.learning_rate)
        alpha = alpha.astype(compute_dtype(alpha))
        return HypergradientDescentState(
            alpha, zeros_like(params), self.direction.init_state(params)
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "hypergradient descent")
        alpha = state.learning_rate
        # h_t = -g_t . d_{t-1};  alpha_t = alpha_{t-1} - beta h_t
        hypergradient = -inner_product(updates, state.previous_direction, alpha.dtype)
        alpha = alpha - cast_like(self.hypergrad_lr, alpha) * hypergradient
        direction, inner = self.direction.apply(updates, state.inner, params, count)
        steps = jax.tree_util.tree_map(lambda d: -cast_like(alpha, d) * d, direction)
        # Store d_t in the carried dtype so the state's type is the same at every step.
        stored = jax.tree_util.tree_map(
            lambda d, previous: d.astype(previous.dtype), direction, state.previous_direction
        )
        return steps, HypergradientDescentState(alpha, stored, inner)


def sgd_hd(learning_rate: Any, hypergrad_lr: Any = 1e-3) -> HypergradientDescent:
    r"""SGD-HD: :math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot g_{t-1}`, :math:`\theta_t = \theta_{t-1} - \alpha_t g_t`.

    ``learning_rate`` is :math:`\alpha_0`, ``hypergrad_lr`` is :math:`\beta` (the paper's
    default is :math:`10^{-3}`).  With :math:`\beta = 0` this is plain SGD.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> from adaptive_jax.meta import sgd_hd
        >>> tx = sgd_hd(0.1, hypergrad_lr=0.01)
        >>> params = jnp.array([1.0, 2.0])
        >>> state = tx.init(params)
        >>> _, state = tx.update(jnp.array([1.0, 2.0]), state, params)
        >>> _, state = tx.update(jnp.array([1.0, 1.0]), state, params)
        >>> round(float(state.inner.learning_rate), 6)  # 0.1 + 0.01 * (1*1 + 1*2)
        0.13

    Reference: Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent",
    ICLR 2018, Algorithm "SGD-HD".
    """
    return HypergradientDescent(chain(), learning_rate, hypergrad_lr)


def adam_hd(
    learning_rate: Any = 1e-3,
    hypergrad_lr: Any = 1e-7,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
) -> HypergradientDescent:
    r"""Adam-HD: :math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot u_{t-1}`, :math:`\theta_t = \theta_{t-1} - \alpha_t u_t`.

    :math:`u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)` is Adam's direction
    (:func:`~adaptive_jax.scale_by_adam`); :math:`u_0 = 0`.  The
    paper's default :math:`\beta` is :math:`10^{-7}` (Adam's direction is of order one, so
    :math:`g \cdot u` is much larger than :math:`g \cdot g` late in training).

    Reference: Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent",
    ICLR 2018, Algorithm "Adam-HD".
    """
    return HypergradientDescent(scale_by_adam(b1, b2, eps, eps_root), learning_rate, hypergrad_lr)
