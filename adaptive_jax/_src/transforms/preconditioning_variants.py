r"""Preconditioners that do more than divide by :math:`\sqrt{v_t}`: RAdam, Adamax, Adadelta.

* :class:`rectified_precondition` — RAdam's preconditioner: Adam's step scaled by
  the variance rectification :math:`r_t`, or the un-adapted first moment while the
  second moment has seen too few gradients to trust (Liu et al. 2020).  It reads
  :math:`\beta_2` from the second-moment block before it, so :math:`\beta_2` stays one
  leaf;
* :class:`infinity_norm_precondition` — Adamax's preconditioner (Kingma & Ba 2015,
  §7.1): the first moment divided by the exponentially weighted infinity norm it keeps,
  with no square root to take;
* :class:`scale_by_adadelta` — Adadelta's step (Zeiler 2012): one block, because its
  second running average (of squared *steps*) shares :math:`\rho` and :math:`\epsilon`
  with the first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    DECAY_RATE,
    EPSILON,
    Domain,
    PerParameter,
    per_leaf,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import (
    as_moments,
    expect_gradients,
    expect_moments,
    leaf_values,
)
from adaptive_jax._src.core.numerics import (
    bias_correction,
    cast_like,
    ema,
    once,
    safe_sqrt,
    squared_magnitude,
    widest_dtype,
)
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import map_params, zeros_like
from adaptive_jax._src.transforms.moments.second import (
    SecondMomentState,
    ema_of_squares_step,
    real_zeros_like,
)
from adaptive_jax._src.transforms.moments.second_variants import infinity_norm_step
from adaptive_jax._src.transforms.preconditioning import preconditioned

# Below 4 the rectification's radicand can be negative.
THRESHOLD = Domain("a rectification threshold", 4.0, None)


def variance_rectification(b2: Any, count: Any, threshold: Any) -> tuple[Any, Any]:
    r"""RAdam's :math:`(r_t, \rho_t \ge \text{threshold})` at 1-based step ``count``.

    .. math::
       \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
       \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \qquad
       r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\,\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\,\rho_t}} .

    :math:`r_t` is only evaluated where it is used (:math:`\rho_t \ge` threshold
    :math:`\ge 4`, where its radicand is finite and non-negative), so neither it nor its
    derivative is NaN on the other branch.

    Example:
        >>> import jax.numpy as jnp
        >>> from adaptive_jax._src.transforms.preconditioning_variants import variance_rectification
        >>> bool(variance_rectification(0.9, jnp.asarray(1), 5.0)[1])  # rho_1 = 1 for every b2
        False
        >>> r, rectify = variance_rectification(0.9, jnp.asarray(6), 5.0)
        >>> bool(rectify), round(float(r), 4)  # rho_6 = 19 - 12 * 0.9^6 / (1 - 0.9^6) = 5.39
        (True, 0.2552)
    """
    correction = bias_correction(b2, count)  # 1 - b2^t
    b2 = cast_like(b2, correction)
    t = count.astype(correction.dtype)
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * (1 - correction) / correction
    rectify = rho >= cast_like(threshold, rho)
    one = jnp.ones_like(rho)
    numerator = jnp.where(rectify, (rho - 4) * (rho - 2) * rho_inf, one)
    denominator = jnp.where(rectify, (rho_inf - 4) * (rho_inf - 2) * rho, one)
    return safe_sqrt(numerator / denominator), rectify


class RectifiedPrecondition(Transform):
    r"""RAdam's preconditioner: Adam's step rectified by :math:`r_t`, or :math:`\hat m_t` early on.

    .. math::
       d_t = \begin{cases}
         r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon) & \rho_t \ge \text{threshold},\\
         \hat m_t & \text{otherwise,}
       \end{cases}

    with :math:`\rho_t, r_t` from :func:`variance_rectification` and :math:`\beta_2` read
    from the record of the second-moment block before it (:class:`~adaptive_jax.ema_of_squares`).
    :math:`\rho_t` approximates the number of gradients the second moment effectively
    averages; while it is small, the variance of :math:`1/\sqrt{\hat v_t}` is too large
    to trust, so the step skips the adaptive scaling (a warm-up derived from the EMA
    instead of tuned).

    This is ``optax.scale_by_radam`` exactly.  ``torch.optim.RAdam`` differs in two
    details: it rectifies when :math:`\rho_t > 5` (strict) and it adds ``eps`` to
    :math:`\sqrt{v_t}` *before* the bias correction, i.e. its denominator is
    :math:`\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta_2^t}`; the two agree when
    ``eps = 0`` (and no :math:`\rho_t` equals 5 exactly).

    Args:
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        threshold: rectify once :math:`\rho_t \ge` ``threshold`` (at least 4).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_of_gradients(), aj.ema_of_squares(0.999), aj.debias(),
        ...               aj.rectified_precondition())
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
        >>> [round(u, 4) for u in updates.tolist()]  # rho_1 = 1 < 5: the un-adapted m_hat_1 = g
        [3.0, -0.5]

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """

    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    eps_root: Any = hyperparameter(default=0.0, domain=EPSILON)
    threshold: Any = hyperparameter(default=5.0, domain=THRESHOLD)

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "rectified_precondition")
        if moments.nu_decay is None:
            raise TypeError(
                "rectified_precondition needs the second moment's decay: place "
                "ema_of_squares before it"
            )
        decays = leaf_values(moments.nu_decay, moments.mu)

        def select(m, v, decay):
            rectification, rectify = once(variance_rectification, decay, count, self.threshold)
            adaptive = preconditioned(m, v, self.eps, self.eps_root)
            return jnp.where(rectify, cast_like(rectification, adaptive) * adaptive, m)

        step = map_params(select, moments.mu, moments.nu, names=("nu",), per_leaf=(decays,))
        return step, state


def divided_by_scale(m: jax.Array, u: jax.Array) -> jax.Array:
    """``m / u`` for one leaf, in at least float32; ``m`` where the scale ``u`` is 0."""
    wide = widest_dtype(m.dtype, u.dtype, jnp.float32)
    u = u.astype(jnp.finfo(wide).dtype)
    # u + 1 where u = 0, else u: no 0/0 (nor a NaN derivative), one comparison and no select.
    safe = u + (u == 0).astype(u.dtype)
    return (m.astype(wide) / safe.astype(wide)).astype(m.dtype)


class InfinityNormPrecondition(Transform):
    r"""Adamax's preconditioner: :math:`\hat m_t / u_t`, :math:`u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon)`.

    :math:`u_0 = 0`; :math:`u_t`, the exponentially weighted infinity norm of the
    gradients (the :math:`p\to\infty` limit of Adam's :math:`v_t^{1/p}`), is kept in this
    block's state and divides the first moment of the record before it (the gradient
    itself if there is none) directly: the numbers of
    :class:`~adaptive_jax.infinity_norm_second_moment` followed by ``precondition(0.0)``,
    without squaring :math:`u_t` and taking the root again.  :math:`u_t` is not biased
    towards zero, so only the first moment needs ``debias`` (before this block).  ``eps``
    sits inside the maximum, as in ``torch.optim.Adamax`` and ``optax.scale_by_adamax``.
    Where :math:`u_t = 0` (``eps = 0`` and only zero gradients so far) the step is
    :math:`\hat m_t` (0 there), not 0/0 (optax gives NaN).

    Args:
        decay: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree of them.
        eps: :math:`\epsilon \ge 0`, added to :math:`|g_t|`.
        nu_dtype: dtype to store :math:`u_t` in (default: the parameters' real dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.infinity_norm_precondition(decay=0.5, eps=0.0)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (4.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state)
        >>> round(state.inner.nu.item(), 4)  # u_2 = max(0.5 * 4, |1|)
        2.0
        >>> round(updates.item(), 4)  # g_2 / u_2
        0.5

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """

    decay: PerParameter = hyperparameter(default=0.999, domain=DECAY_RATE)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    nu_dtype: Any = static(default=None)

    def init_state(self, params):
        return SecondMomentState(real_zeros_like(params, self.nu_dtype))

    def apply(self, updates, state, params, count):
        record = as_moments(updates)
        if record.nu is not None:
            raise TypeError(
                "infinity_norm_precondition keeps its own scale u_t and would ignore the second "
                "moment before it: remove that block, or use infinity_norm_second_moment "
                "followed by precondition"
            )
        decays = per_leaf(self.decay, count - 1, state.nu, "decay")
        u = map_params(
            lambda g, u, decay: infinity_norm_step(g, u, decay, self.eps),
            record.gradient,
            state.nu,
            names=("nu",),
            per_leaf=(decays,),
        )
        return map_params(divided_by_scale, record.mu, u, names=("nu",)), SecondMomentState(u)


class ScaleByAdadeltaState(NamedTuple):
    """State of :class:`scale_by_adadelta`: EMAs of squared gradients and of squared steps."""

    squared_gradients: PyTree
    squared_steps: PyTree


class ScaleByAdadelta(Transform):
    r"""Adadelta's step: the gradient rescaled by the ratio of two running RMS values.

    .. math::
       E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \qquad
       \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t,
       \qquad E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho) \Delta_t^2,

    both averages starting at 0.  The numerator gives the step the units of the
    parameters (Zeiler's "unit correction"), so no global learning rate is needed
    (use ``scale_by_learning_rate(1.0)``).  The numbers of ``torch.optim.Adadelta`` and
    ``optax.scale_by_adadelta``.

    Args:
        rho: :math:`\rho` in :math:`[0, 1)`, shared by both averages.
        eps: :math:`\epsilon > 0`, under both roots (with 0 every step would be 0).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_adadelta(rho=0.5, eps=1.0)
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
        >>> round(updates.item(), 4)  # sqrt(0 + 1) / sqrt(0.5 * 4^2 + 1) * 4 = 4 / 3
        1.3333

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """

    rho: Any = hyperparameter(default=0.9, domain=DECAY_RATE, per_parameter=False)
    eps: Any = hyperparameter(default=1e-6, domain=EPSILON, low_inclusive=False)

    def init_state(self, params):
        squared_gradients = real_zeros_like(params)
        return ScaleByAdadeltaState(squared_gradients, zeros_like(squared_gradients))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_adadelta")
        rhos = [self.rho] * len(leaf_values(0.0, updates))
        squared_gradients = ema_of_squares_step(updates, state.squared_gradients, rhos)

        def step(g, v, x):
            # g / sqrt(E[g^2] + eps) * sqrt(E[dx^2] + eps)
            direction = preconditioned(g, v, 0.0, self.eps)
            return direction * safe_sqrt(x + cast_like(self.eps, x)).astype(direction.dtype)

        steps = map_params(
            step,
            updates,
            squared_gradients,
            state.squared_steps,
            names=("squared_gradients", "squared_steps"),
        )
        squared_steps = map_params(
            lambda s, x: ema(x, squared_magnitude(s, x.dtype), self.rho),
            steps,
            state.squared_steps,
            names=("squared_steps",),
        )
        return steps, ScaleByAdadeltaState(squared_gradients, squared_steps)


rectified_precondition = RectifiedPrecondition
infinity_norm_precondition = InfinityNormPrecondition
scale_by_adadelta = ScaleByAdadelta
