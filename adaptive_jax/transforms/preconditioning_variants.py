r"""Preconditioners that do more than divide by :math:`\sqrt{v_t}`: RAdam and Adadelta.

Both are single blocks because their extra factor needs a hyperparameter of the moment
estimate (RAdam's :math:`\beta_2`, Adadelta's :math:`\rho` and :math:`\epsilon`); keeping
moment and preconditioner in one block keeps each hyperparameter a single leaf.  Inside,
they reuse the moment, bias-correction and preconditioning blocks unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptive_jax.core.numerics import bias_correction, cast_like, safe_sqrt
from adaptive_jax.core.protocol import PyTree, Transform
from adaptive_jax.core.pytree import pytree_dataclass
from adaptive_jax.core.trees import map_params, zeros_like
from adaptive_jax.core.validation import check_decay, check_nonnegative, check_range
from adaptive_jax.transforms.moments import (
    Debias,
    EmaMoments,
    EmaOfSquares,
    ema,
    expect_gradients,
    squared_magnitude,
)
from adaptive_jax.transforms.preconditioning import Precondition


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
        >>> from adaptive_jax.transforms.preconditioning_variants import variance_rectification
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


@pytree_dataclass
class ScaleByRadam(Transform):
    """See :func:`scale_by_radam`."""

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    eps_root: Any = 0.0
    threshold: Any = 5.0

    def __post_init__(self):
        check_decay("b1", self.b1)
        check_decay("b2", self.b2)
        check_nonnegative("eps", self.eps)
        check_nonnegative("eps_root", self.eps_root)
        # Below 4 the rectification's radicand can be negative.
        check_range("threshold", self.threshold, 4.0, None)

    def init_state(self, params):
        return EmaMoments(self.b1, self.b2).init_state(params)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_radam")
        moments, state = EmaMoments(self.b1, self.b2).apply(updates, state, params, count)
        corrected, _ = Debias().apply(moments, None, params, count)
        adaptive, _ = Precondition(self.eps, self.eps_root).apply(corrected, None, params, count)
        rectification, rectify = variance_rectification(self.b2, count, self.threshold)

        def select(a, m):
            return jnp.where(rectify, cast_like(rectification, a) * a, m.astype(a.dtype))

        return map_params(select, adaptive, corrected.mu, names=("mu",)), state


def scale_by_radam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
) -> ScaleByRadam:
    r"""Rectified Adam's direction: Adam's step scaled by :math:`r_t`, or momentum SGD early on.

    .. math::
       d_t = \begin{cases}
         r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon) & \rho_t \ge \text{threshold},\\
         \hat m_t & \text{otherwise,}
       \end{cases}

    with Adam's bias-corrected moments :math:`\hat m_t, \hat v_t` and :math:`\rho_t, r_t`
    from :func:`variance_rectification`.  :math:`\rho_t` approximates the number of
    gradients the second moment effectively averages; while it is small, the variance
    of :math:`1/\sqrt{\hat v_t}` is too large to trust, so the step skips the adaptive
    scaling (a warm-up derived from the EMA instead of tuned).

    This is ``optax.scale_by_radam`` exactly.  ``torch.optim.RAdam`` differs in two
    details: it rectifies when :math:`\rho_t > 5` (strict) and it adds ``eps`` to
    :math:`\sqrt{v_t}` *before* the bias correction, i.e. its denominator is
    :math:`\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta_2^t}`; the two agree when
    ``eps = 0`` (and no :math:`\rho_t` equals 5 exactly).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_radam()
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
        >>> [round(u, 4) for u in updates.tolist()]  # rho_1 = 1 < 5: the un-adapted m_hat_1 = g
        [3.0, -0.5]

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """
    return ScaleByRadam(b1, b2, eps, eps_root, threshold)


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`: EMAs of squared gradients and of squared steps."""

    squared_gradients: PyTree
    squared_steps: PyTree


@pytree_dataclass
class ScaleByAdadelta(Transform):
    """See :func:`scale_by_adadelta`."""

    rho: Any = 0.9
    eps: Any = 1e-6

    def __post_init__(self):
        check_decay("rho", self.rho)
        # With eps = 0 the step history starts at 0 and every step would be 0 (or 0/0).
        check_range("eps", self.eps, 0.0, None, low_inclusive=False)

    def init_state(self, params):
        squared_gradients = EmaOfSquares(self.rho).init_state(params)
        return ScaleByAdadeltaState(squared_gradients, zeros_like(squared_gradients))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_adadelta")
        moments, squared_gradients = EmaOfSquares(self.rho).apply(
            updates, state.squared_gradients, params, count
        )
        # g_t / sqrt(E[g^2]_t + eps): eps under the root, nothing outside.
        direction, _ = Precondition(0.0, self.eps).apply(moments, None, params, count)

        def restore_units(d, x):
            return d * safe_sqrt(x + cast_like(self.eps, x)).astype(d.dtype)

        steps = map_params(restore_units, direction, state.squared_steps, names=("squared_steps",))
        squared_steps = map_params(
            lambda s, x: ema(x, squared_magnitude(s, x.dtype), self.rho),
            steps,
            state.squared_steps,
            names=("squared_steps",),
        )
        return steps, ScaleByAdadeltaState(squared_gradients, squared_steps)


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> ScaleByAdadelta:
    r"""Adadelta's step: the gradient rescaled by the ratio of two running RMS values.

    .. math::
       E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \qquad
       \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t,
       \qquad E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho) \Delta_t^2,

    both averages starting at 0.  The numerator gives the step the units of the
    parameters (Zeiler's "unit correction"), so no global learning rate is needed
    (use ``scale_by_learning_rate(1.0)``).  The numbers of ``torch.optim.Adadelta`` and
    ``optax.scale_by_adadelta``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_adadelta(rho=0.5, eps=1.0)
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
        >>> round(updates.item(), 4)  # sqrt(0 + 1) / sqrt(0.5 * 4^2 + 1) * 4 = 4 / 3
        1.3333

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """
    return ScaleByAdadelta(rho, eps)
