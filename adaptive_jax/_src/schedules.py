r"""Schedules: pytree callables of the 0-based step count :math:`s`.

Their numbers are declared hyperparameters (leaves), so a schedule inside a
transformation is differentiable and vmappable like any other hyperparameter.  Any
plain Python callable ``f(step) -> scalar`` that computes with ``jax.numpy`` is
accepted wherever a schedule is (held as configuration: a new function compiles a
new program).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    Domain,
    check_count,
    value_at,
)
from adaptive_jax._src.core.module import Module, child, hyperparameter, static

# A schedule's values are reparameterised as themselves: a warm-up may start at 0.
VALUE = Domain("a finite number")
RATE = Domain("a positive rate", 0.0, None, low_inclusive=False)
FRACTION = Domain("a fraction", 0.0, 1.0, high_inclusive=True)


class Schedule(Module, abstract=True):
    """A pytree callable ``step -> value`` (the step is the 0-based count of updates)."""

    def __call__(self, step: Any) -> jax.Array:
        raise NotImplementedError


def _float(step: Any) -> jax.Array:
    return jnp.asarray(step).astype(jnp.result_type(float))


class Constant(Schedule):
    r"""Constant schedule :math:`\alpha_s = \alpha`.

    Args:
        value: :math:`\alpha`.

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.constant(0.1)(1000))
        0.1
    """

    value: Any = hyperparameter(domain=VALUE)

    def __call__(self, step):
        del step
        return jnp.asarray(self.value)


class ExponentialDecay(Schedule):
    r"""Exponential decay :math:`\alpha_s = \alpha_0 r^{s/k}` (``staircase``: :math:`r^{\lfloor s/k \rfloor}`).

    Args:
        init_value: :math:`\alpha_0`.
        decay_rate: :math:`r > 0`.
        transition_steps: :math:`k \ge 1`.
        staircase: decay in steps of :math:`k` instead of continuously.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.exponential_decay(1.0, decay_rate=0.5, transition_steps=10)
        >>> round(float(schedule(20)), 6), round(float(schedule(5)), 4)  # 0.5^2 and 0.5^0.5
        (0.25, 0.7071)
    """

    init_value: Any = hyperparameter(domain=VALUE)
    decay_rate: Any = hyperparameter(domain=RATE)
    transition_steps: int = static(default=1)
    staircase: bool = static(default=False)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)

    def __call__(self, step):
        exponent = _float(step) / self.transition_steps
        if self.staircase:
            exponent = jnp.floor(exponent)
        return self.init_value * jnp.asarray(self.decay_rate) ** exponent.astype(
            jnp.result_type(self.decay_rate)
        )


class CosineDecay(Schedule):
    r"""Cosine decay :math:`\alpha_s = \alpha_0\big((1-a)\tfrac{1}{2}(1+\cos(\pi \min(s,T)/T)) + a\big)`.

    From :math:`\alpha_0` to :math:`a\,\alpha_0` over :math:`T` steps.

    Args:
        init_value: :math:`\alpha_0`.
        decay_steps: :math:`T \ge 1`.
        alpha: :math:`a` in :math:`[0, 1]`, the final fraction of :math:`\alpha_0`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.cosine_decay(1.0, decay_steps=100)
        >>> [round(float(schedule(step)), 6) for step in (0, 50, 100)]
        [1.0, 0.5, 0.0]

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """

    init_value: Any = hyperparameter(domain=VALUE)
    decay_steps: int = static()
    alpha: Any = hyperparameter(default=0.0, domain=FRACTION)

    def __check_init__(self):
        check_count("decay_steps", self.decay_steps)

    def __call__(self, step):
        progress = jnp.minimum(_float(step), self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * progress))
        return self.init_value * ((1 - self.alpha) * cosine + self.alpha)


class LinearSchedule(Schedule):
    r"""Linear ramp :math:`\alpha_s = \alpha_0 + (\alpha_1-\alpha_0)\min(s/T, 1)`.

    Args:
        init_value: :math:`\alpha_0`.
        end_value: :math:`\alpha_1`.
        transition_steps: :math:`T \ge 1`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.linear_schedule(1.0, 0.0, transition_steps=10)
        >>> [round(float(schedule(step)), 6) for step in (3, 20)]
        [0.7, 0.0]
    """

    init_value: Any = hyperparameter(domain=VALUE)
    end_value: Any = hyperparameter(domain=VALUE)
    transition_steps: int = static()

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)

    def __call__(self, step):
        fraction = jnp.clip(_float(step) / self.transition_steps, 0.0, 1.0)
        return self.init_value + (self.end_value - self.init_value) * fraction


def linear_warmup(peak_value: Any, warmup_steps: int, init_value: Any = 0.0) -> LinearSchedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant.

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.linear_warmup(1.0, warmup_steps=10)(5))
        0.5

    Reference: Goyal et al., "Accurate, Large Minibatch SGD", 2017.
    """
    return LinearSchedule(init_value, peak_value, warmup_steps)


class InverseSqrt(Schedule):
    r"""The step size :math:`\alpha_t = \alpha/\sqrt{t}` with 1-based :math:`t = s + 1` (AMSGrad's analysis).

    Args:
        init_value: :math:`\alpha`.

    Example:
        >>> import adaptive_jax as aj
        >>> print(aj.schedules.inverse_sqrt(1.0)(3))  # step 3 is update t = 4: 1 / sqrt(4)
        0.5
    """

    init_value: Any = hyperparameter(domain=VALUE)

    def __call__(self, step):
        return self.init_value / jnp.sqrt(_float(step) + 1)


def _int_tuple(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


class JoinSchedules(Schedule):
    r"""Concatenate schedules: after ``boundaries[i]`` steps, switch to ``schedules[i+1]`` (restarted at 0).

    Args:
        schedules: the schedules, one more than ``boundaries``.
        boundaries: increasing steps at which the next schedule starts.

    Example:
        >>> import adaptive_jax as aj
        >>> c = aj.schedules.constant
        >>> schedule = aj.schedules.join_schedules([c(1.0), c(0.1)], boundaries=[10])
        >>> print(schedule(9), schedule(10))
        1.0 0.1
    """

    schedules: tuple[Any, ...] = child(converter=tuple)
    boundaries: tuple[int, ...] = static(converter=_int_tuple)

    def __check_init__(self):
        if len(self.schedules) != len(self.boundaries) + 1:
            raise ValueError(
                f"join_schedules needs one more schedule than boundaries, got "
                f"{len(self.schedules)} schedules and {len(self.boundaries)} boundaries"
            )
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError(f"boundaries must be increasing, got {self.boundaries}")

    def __call__(self, step):
        step = jnp.asarray(step)
        value = value_at(self.schedules[0], step)
        for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
            value = jnp.where(step < boundary, value, value_at(schedule, step - boundary))
        return value


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
    # Written without a Python `if` on the values, which may be traced.
    zero_peak = isinstance(peak_value, (int, float)) and peak_value == 0
    alpha = 0.0 if zero_peak else end_value / peak_value
    return JoinSchedules(
        [
            linear_warmup(peak_value, warmup_steps, init_value),
            CosineDecay(peak_value, decay_steps, alpha),
        ],
        [warmup_steps],
    )


constant = Constant
exponential_decay = ExponentialDecay
cosine_decay = CosineDecay
linear_schedule = LinearSchedule
inverse_sqrt = InverseSqrt
join_schedules = JoinSchedules
