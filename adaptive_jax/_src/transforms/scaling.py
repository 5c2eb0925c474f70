r"""Scaling steps: learning rate, constant factors, sign and normalized directions."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    EPSILON,
    LEARNING_RATE,
    REAL,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import cast_like, global_norm, widest_dtype
from adaptive_jax._src.core.protocol import Transform


def scale_leaves(updates: Any, factors: list[Any]) -> Any:
    """Multiply each leaf of ``updates`` by its factor, in the leaf's dtype.

    The product is formed in at least float32, so a small learning rate is not rounded
    to a float16 subnormal (or to 0) before it multiplies the update.
    """

    def product(u: jax.Array, factor: Any) -> jax.Array:
        wide = widest_dtype(u.dtype, jnp.float32)
        return (u.astype(wide) * jnp.asarray(factor).astype(wide)).astype(u.dtype)

    leaves, treedef = jax.tree_util.tree_flatten(updates)
    return jax.tree_util.tree_unflatten(treedef, [product(u, f) for u, f in zip(leaves, factors)])


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
        negated: dict[int, Any] = {}
        for rate in rates:
            negated.setdefault(id(rate), -jnp.asarray(rate))
        return scale_leaves(updates, [negated[id(r)] for r in rates]), state


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
    normalized gradient descent circles the minimum forever instead of converging;
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


scale_by_learning_rate = ScaleByLearningRate
scale = Scale
scale_by_sign = ScaleBySign
normalize_by_global_norm = NormalizeByGlobalNorm
