r"""Constraints on the parameters, enforced through the update (projection onto a set)."""

from __future__ import annotations

import jax.numpy as jnp

from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import widest_dtype
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.trees import map_params


class KeepParamsNonnegative(Transform):
    r"""Project onto :math:`\theta \ge 0`: where :math:`\theta_i + u_i < 0`, the update becomes :math:`-\theta_i`.

    .. math::

       u_i \leftarrow \begin{cases} -\theta_i & \theta_i + u_i < 0 \\ u_i & \text{otherwise,} \end{cases}

    so that every parameter after the step is :math:`\max(\theta_i + u_i, 0)` -- a
    parameter that is already negative is moved to 0 unless the update alone makes it
    non-negative.  It acts on the final updates: put it **last** in the chain, after
    the learning rate.  optax's ``keep_params_nonnegative``, with its numbers.  Needs
    the parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.sgd(1.0), aj.keep_params_nonnegative())
        >>> params = jnp.array([0.5, 0.5, -1.0])
        >>> updates, _ = tx.update(jnp.array([1.0, -1.0, 0.0]), tx.init(params), params)
        >>> aj.apply_updates(params, updates).tolist()  # 0.5 - 1 clipped to 0; -1 moved to 0
        [0.0, 1.5, 0.0]

    Reference: the projected gradient method (e.g. Bertsekas, "Nonlinear
    Programming", 1999, §2.3): the step followed by the projection onto the
    non-negative orthant.
    """

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "keep_params_nonnegative")
        if params is None:
            raise ValueError(
                "keep_params_nonnegative needs the parameters: call update(grads, state, params)"
            )

        def project(u, p):
            wide = widest_dtype(u.dtype, p.dtype)
            negative = p.astype(wide) + u.astype(wide) < 0
            return jnp.where(negative, (-p).astype(u.dtype), u)

        return map_params(project, updates, params, names=("params",)), state


keep_params_nonnegative = KeepParamsNonnegative
