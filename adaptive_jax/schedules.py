r"""Schedules: pytree callables of the 0-based step count :math:`s`.

Their numbers are pytree leaves, so a schedule inside a transformation is
differentiable and vmappable like any other hyperparameter.  Any plain Python
callable ``f(step) -> scalar`` is accepted wherever a schedule is.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax.core.hyperparams import value_at
from adaptive_jax.core.pytree import pytree_dataclass, static_field
from adaptive_jax.core.validation import check_finite, check_range


def _float(step: Any) -> jax.Array:
    return jnp.asarray(step).astype(jnp.result_type(float))


@pytree_dataclass
class Constant:
    r""":math:`\alpha_s = \alpha`."""

    value: Any

    def __call__(self, step):
        del step
        return jnp.asarray(self.value)


def constant(value: Any) -> Constant:
    r"""Constant schedule :math:`\alpha_s = \alpha`.

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.constant(0.1)(1000))
        0.1
    """
    check_finite("value", value)
    return Constant(value)


@pytree_dataclass
class ExponentialDecay:
    r""":math:`\alpha_s = \alpha_0\, r^{s / k}` (``staircase``: :math:`r^{\lfloor s/k \rfloor}`)."""

    init_value: Any
    decay_rate: Any
    transition_steps: int = static_field(default=1)
    staircase: bool = static_field(default=False)

    def __call__(self, step):
        exponent = _float(step) / self.transition_steps
        if self.staircase:
            exponent = jnp.floor(exponent)
        return self.init_value * jnp.asarray(self.decay_rate) ** exponent.astype(
            jnp.result_type(self.decay_rate)
        )


def exponential_decay(
    init_value: Any, decay_rate: Any, transition_steps: int = 1, staircase: bool = False
) -> ExponentialDecay:
    r"""Exponential decay :math:`\alpha_s = \alpha_0 r^{s/k}`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.exponential_decay(1.0, decay_rate=0.5, transition_steps=10)
        >>> round(float(schedule(20)), 6), round(float(schedule(5)), 4)  # 0.5^2 and 0.5^0.5
        (0.25, 0.7071)
    """
    check_finite("init_value", init_value)
    check_range("decay_rate", decay_rate, 0.0, None, low_inclusive=False)
    check_range("transition_steps", transition_steps, 0, None, low_inclusive=False)
    return ExponentialDecay(init_value, decay_rate, transition_steps, staircase)


@pytree_dataclass
class CosineDecay:
    r""":math:`\alpha_s = \alpha_0\big((1-a)\tfrac{1}{2}(1+\cos(\pi \min(s,T)/T)) + a\big)`."""

    init_value: Any
    decay_steps: int = static_field()
    alpha: Any = 0.0

    def __call__(self, step):
        progress = jnp.minimum(_float(step), self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * progress))
        return self.init_value * ((1 - self.alpha) * cosine + self.alpha)


def cosine_decay(init_value: Any, decay_steps: int, alpha: Any = 0.0) -> CosineDecay:
    r"""Cosine decay from :math:`\alpha_0` to :math:`a\,\alpha_0` over ``decay_steps`` steps.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.cosine_decay(1.0, decay_steps=100)
        >>> [round(float(schedule(step)), 6) for step in (0, 50, 100)]
        [1.0, 0.5, 0.0]

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """
    check_finite("init_value", init_value)
    check_range("decay_steps", decay_steps, 0, None, low_inclusive=False)
    check_range("alpha", alpha, 0.0, 1.0, high_inclusive=True)
    return CosineDecay(init_value, decay_steps, alpha)


@pytree_dataclass
class LinearSchedule:
    r"""Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``, then constant."""

    init_value: Any
    end_value: Any
    transition_steps: int = static_field()

    def __call__(self, step):
        fraction = jnp.clip(_float(step) / self.transition_steps, 0.0, 1.0)
        return self.init_value + (self.end_value - self.init_value) * fraction


def linear_schedule(init_value: Any, end_value: Any, transition_steps: int) -> LinearSchedule:
    r"""Linear ramp :math:`\alpha_s = \alpha_0 + (\alpha_1-\alpha_0)\min(s/T, 1)`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.linear_schedule(1.0, 0.0, transition_steps=10)
        >>> [round(float(schedule(step)), 6) for step in (3, 20)]
        [0.7, 0.0]
    """
    check_finite("init_value", init_value)
    check_finite("end_value", end_value)
    check_range("transition_steps", transition_steps, 0, None, low_inclusive=False)
    return LinearSchedule(init_value, end_value, transition_steps)


def linear_warmup(peak_value: Any, warmup_steps: int, init_value: Any = 0.0) -> LinearSchedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant.

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.linear_warmup(1.0, warmup_steps=10)(5))
        0.5

    Reference: Goyal et al., "Accurate, Large Minibatch SGD", 2017.
    """
    return linear_schedule(init_value, peak_value, warmup_steps)


@pytree_dataclass
class InverseSqrt:
    r""":math:`\alpha_s = \alpha / \sqrt{s + 1}` (the :math:`\alpha/\sqrt{t}` of online convex optimisation, :math:`t = s+1`)."""

    init_value: Any

    def __call__(self, step):
        return self.init_value / jnp.sqrt(_float(step) + 1)


def inverse_sqrt(init_value: Any) -> InverseSqrt:
    r"""The step size :math:`\alpha_t = \alpha/\sqrt{t}` with 1-based :math:`t` (used by AMSGrad's analysis).

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.inverse_sqrt(1.0)(3))  # step 3 is update t = 4: 1 / sqrt(4)
        0.5
    """
    check_finite("init_value", init_value)
    return InverseSqrt(init_value)


@pytree_dataclass
class JoinSchedules:
    r"""Schedule ``i`` runs on ``[boundaries[i-1], boundaries[i])``, restarted at step 0."""

    schedules: tuple
    boundaries: tuple = static_field()

    def __call__(self, step):
        step = jnp.asarray(step)
        value = value_at(self.schedules[0], step)
        for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
            value = jnp.where(step < boundary, value, value_at(schedule, step - boundary))
        return value


def join_schedules(schedules: Any, boundaries: Any) -> JoinSchedules:
    r"""Concatenate schedules: after ``boundaries[i]`` steps, switch to ``schedules[i+1]`` (restarted at 0).

    Example:
        >>> import adaptive_jax as aj
        >>> c = aj.schedules.constant
        >>> schedule = aj.schedules.join_schedules([c(1.0), c(0.1)], boundaries=[10])
        >>> print(schedule(9), schedule(10))
        1.0 0.1
    """
    schedules, boundaries = tuple(schedules), tuple(int(b) for b in boundaries)
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"join_schedules needs one more schedule than boundaries, got {len(schedules)} "
            f"schedules and {len(boundaries)} boundaries"
        )
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"boundaries must be increasing, got {boundaries}")
    return JoinSchedules(schedules, boundaries)


def warmup_cosine_decay(
    peak_value: Any,
    warmup_steps: int,
    decay_steps: int,
    init_value: Any = 0.0,
    end_value: Any = 0.0,
) -> JoinSchedules:
    r"""Linear warm-up to ``peak_value``, then cosine decay to ``end_value`` over ``decay_steps``.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.warmup_cosine_decay(1.0, warmup_steps=10, decay_steps=100)
        >>> [round(float(schedule(step)), 4) for step in (0, 5, 10, 60, 110)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    alpha = end_value / peak_value if peak_value else 0.0
    return join_schedules(
        [
            linear_warmup(peak_value, warmup_steps, init_value),
            cosine_decay(peak_value, decay_steps, alpha),
        ],
        [warmup_steps],
    )
