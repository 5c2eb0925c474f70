r"""Scaling steps: learning rate, constant factors, sign and normalized directions, Polyak's step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    EPSILON,
    LEARNING_RATE,
    POSITIVE,
    REAL,
    Domain,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    as_dtype,
    cast_like,
    global_norm,
    once,
    squared_global_norm,
    widest_dtype,
)
from adaptive_jax._src.core.protocol import Transform

LOSS_BOUND = Domain("a lower bound on the loss")


def scale_leaves(updates: Any, factors: list[Any]) -> Any:
    """Multiply each leaf of ``updates`` by its factor, in the leaf's dtype.

    The product is formed in at least float32, so a small learning rate is not rounded
    to a float16 subnormal (or to 0) before it multiplies the update.  Each factor is
    cast once per step and dtype (:func:`~adaptive_jax._src.core.numerics.as_dtype`).
    """

    def product(u: jax.Array, factor: Any) -> jax.Array:
        wide = widest_dtype(u.dtype, jnp.float32)
        return (u.astype(wide) * as_dtype(factor, wide)).astype(u.dtype)

    leaves, treedef = jax.tree_util.tree_flatten(updates)
    return jax.tree_util.tree_unflatten(treedef, [product(u, f) for u, f in zip(leaves, factors)])


def _negative(rate: Any) -> jax.Array:
    return -jnp.asarray(rate)


class ScaleByLearningRate(Transform):
    r"""Multiply updates by :math:`-\alpha_t` (descent): :math:`u_t = -\alpha_t\, d_t`.

    With ``flip_sign=False`` it multiplies by :math:`+\alpha_t`, for chains that scale
    by the learning rate before other terms and negate at the end (Adafactor's, as
    ``optax.scale_by_learning_rate(..., flip_sign=False)``).

    Args:
        learning_rate: :math:`\alpha`: a number (negative: ascent), a schedule of the
            0-based step (the first update uses ``schedule(0)``, as in optax), or a
            pytree prefix of the parameters holding per-group rates, e.g.
            ``{"encoder": 1e-4, "head": 1e-3}``.
        flip_sign: multiply by :math:`-\alpha_t` (default) or by :math:`+\alpha_t`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_learning_rate(0.1)
        >>> u, _ = tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))
        >>> u.tolist()
        [-0.10000000149011612, 0.20000000298023224]
    """

    learning_rate: PerParameter = hyperparameter(domain=LEARNING_RATE)
    flip_sign: bool = static(default=True)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_learning_rate")
        rates = per_leaf(self.learning_rate, count - 1, updates, "learning_rate")
        if not self.flip_sign:
            return scale_leaves(updates, rates), state
        return scale_leaves(updates, [once(_negative, rate) for rate in rates]), state


class Scale(Transform):
    r"""Multiply updates by a constant (or scheduled, or per-parameter) ``factor``: :math:`u = c\,g`.

    Args:
        factor: :math:`c`: a finite number, a schedule, or a per-parameter tree.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale(0.5)
        >>> updates, _ = tx.update(jnp.array([2.0, -4.0]), tx.init(jnp.zeros(2)))
        >>> print(updates)
        [ 1. -2.]
    """

    factor: PerParameter = hyperparameter(domain=REAL)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale")
        return scale_leaves(updates, per_leaf(self.factor, count - 1, updates, "factor")), state


class ScaleBySign(Transform):
    r"""Keep only the sign: :math:`u_i = \mathrm{sign}(g_i)`.

    Adam with :math:`\beta_1=\beta_2=0` and :math:`\epsilon \to 0` reduces to this
    (each coordinate's step is :math:`g_i/|g_i|`): the sign-descent limit of Adam.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_sign()
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
        >>> print(updates)
        [ 1. -1.]

    Reference: Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
    Problems", ICML 2018.
    """

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_sign")
        return jax.tree_util.tree_map(jnp.sign, updates), state


class NormalizeByGlobalNorm(Transform):
    r"""Unit-length direction: :math:`u = g / (\|g\|_2 + \epsilon)` (0 when :math:`g = 0`).

    With a fixed learning rate every step has length exactly :math:`\eta`, so
    normalized gradient descent hops back and forth across the minimum instead of converging;
    pair it with a decaying schedule.

    Args:
        eps: :math:`\epsilon \ge 0`, added to the norm.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.normalize_by_global_norm()
        >>> updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(u, 6) for u in updates.tolist()]
        [0.6, 0.8]

    Reference: Nesterov, "Introductory Lectures on Convex Optimization", 2004, §3.2.3.
    """

    eps: Any = hyperparameter(default=0.0, domain=EPSILON)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "normalize_by_global_norm")
        norm = global_norm(updates)
        denominator = norm + cast_like(self.eps, norm)
        # A zero gradient gives a zero step rather than 0/0.
        safe = jnp.where(denominator > 0, denominator, jnp.ones_like(denominator))
        return jax.tree_util.tree_map(lambda u: u / cast_like(safe, u), updates), state


class ScaleByPolyak(Transform):
    r"""Polyak's step size: :math:`u = \min\big(\frac{f - f^\star}{\|d\|^2 + \epsilon}, \gamma_{\max}\big)\, d`.

    :math:`d` is the update reaching it (over all leaves) and :math:`f` the loss at the
    current parameters, passed as ``update(updates, state, params, value=loss)``
    (``optax.GradientTransformationExtraArgs``; :func:`~adaptive_jax.chain` forwards
    it).  With :math:`d = -g` the step moves to where the linearised loss reaches
    :math:`f^\star`, capped at :math:`\gamma_{\max}` (SPS_max).  ``variant="sps+"``
    replaces :math:`f - f^\star` by its positive part.

    Where :math:`\|d\|^2 + \epsilon` is at most the machine epsilon of its dtype (a zero
    gradient) the step is 0 and so are its derivatives; optax's
    ``scale_by_polyak`` divides by that 0 in the branch its ``jnp.where`` discards,
    so its meta-gradients are NaN there.  Otherwise these are its numbers.

    Args:
        f_min: :math:`f^\star`, a lower bound on the loss (a finite number).
        max_learning_rate: :math:`\gamma_{\max} > 0`.
        eps: :math:`\epsilon \ge 0`, added to the squared norm.
        variant: ``"sps"`` or ``"sps+"``.

    Raises:
        TypeError: at ``update``, if ``value=`` is not given.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.scale_by_learning_rate(1.0), aj.scale_by_polyak(max_learning_rate=10.0))
        >>> params = jnp.array([3.0, 4.0])  # f = |x|^2 / 2 = 12.5, g = x
        >>> updates, _ = tx.update(params, tx.init(params), params, value=12.5)
        >>> updates.tolist()  # -(12.5 / 25) x: half way to the minimum 0
        [-1.5, -2.0]

    Reference: Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size
    for SGD: An Adaptive Learning Rate for Fast Convergence", AISTATS 2021; Garrigos,
    Gower & Schaipp, "Function Value Learning: Adaptive Learning Rates Based on the
    Polyak Stepsize and Function Splitting in ERM", 2023 (SPS+).
    """

    f_min: Any = hyperparameter(default=0.0, domain=LOSS_BOUND)
    max_learning_rate: Any = hyperparameter(default=1.0, domain=POSITIVE)
    eps: Any = hyperparameter(default=0.0, domain=EPSILON)
    variant: str = static(default="sps")
    takes_extra_args = True

    def __check_init__(self):
        if self.variant not in ("sps", "sps+"):
            raise ValueError(f"variant={self.variant!r} is invalid: expected 'sps' or 'sps+'")

    def apply(self, updates, state, params, count, value=None, **extra_args):
        expect_gradients(updates, "scale_by_polyak")
        if value is None:
            raise TypeError(
                "scale_by_polyak needs the loss at the current parameters: "
                "update(grads, state, params, value=loss)"
            )
        squared_norm = squared_global_norm(updates)
        gap = jnp.asarray(value).astype(squared_norm.dtype) - cast_like(self.f_min, squared_norm)
        if self.variant == "sps+":
            gap = jnp.maximum(gap, jnp.zeros_like(gap))
        denominator = squared_norm + cast_like(self.eps, squared_norm)
        vanishing = denominator <= jnp.finfo(denominator.dtype).eps
        # Guard the divisor too: the discarded branch must not put NaN into derivatives.
        safe = jnp.where(vanishing, jnp.ones_like(denominator), denominator)
        step = jnp.minimum(gap / safe, cast_like(self.max_learning_rate, gap))
        step = jnp.where(vanishing, jnp.zeros_like(step), step)
        return scale_leaves(updates, [step] * len(jax.tree_util.tree_leaves(updates))), state


scale_by_learning_rate = ScaleByLearningRate
scale = Scale
scale_by_sign = ScaleBySign
normalize_by_global_norm = NormalizeByGlobalNorm
scale_by_polyak = ScaleByPolyak
