r"""The basic schedules: constant, exponential, cosine, linear and polynomial decay, :math:`1/\sqrt{t}`.

Each is a final :class:`~adaptive_jax.schedules.Schedule` whose numbers are declared
hyperparameters and whose step counts are static ints; each also goes by its optax
name (``constant_schedule``, ``cosine_decay_schedule``, ``polynomial_schedule``, ...)
with optax's arguments and numbers.  Where optax turns an invalid count into a constant
schedule (``transition_steps <= 0``, ``decay_rate = 0``) or silently clamps it
(``transition_begin < 0``), these raise an error naming the argument instead.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.schedules.base import (
    EXPONENT,
    FRACTION,
    RATE,
    VALUE,
    Schedule,
    cosine_factor,
    exponential_decay_value,
    ramp_fraction,
    step_as_float,
)


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
    r"""Exponential decay :math:`\alpha_s = \alpha_0 r^{\max(s-b,0)/k}` (``staircase``: the exponent floored).

    With ``end_value`` :math:`e` the value stops at :math:`e`: :math:`\max(\alpha_s, e)`
    for :math:`r < 1`, :math:`\min(\alpha_s, e)` for :math:`r > 1`.  The numbers are
    ``optax.exponential_decay``'s; note the **order of the positional arguments**: ours
    is ``(init_value, decay_rate, transition_steps)``, optax's ``(init_value,
    transition_steps, decay_rate)`` -- pass them by name when migrating (a
    ``transition_steps`` that is not an int is rejected, so a swap cannot go unnoticed).

    Args:
        init_value: :math:`\alpha_0`.
        decay_rate: :math:`r > 0` (optax makes :math:`r = 0` a constant schedule; we
            reject it).
        transition_steps: :math:`k \ge 1`.
        staircase: decay in steps of :math:`k` instead of continuously.
        transition_begin: :math:`b \ge 0`, steps held at :math:`\alpha_0` first.
        end_value: :math:`e`, the bound the decay stops at, or ``None``.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.exponential_decay(1.0, decay_rate=0.5, transition_steps=10)
        >>> round(float(schedule(20)), 6), round(float(schedule(5)), 4)  # 0.5^2 and 0.5^0.5
        (0.25, 0.7071)
        >>> floored = aj.schedules.exponential_decay(1.0, 0.5, 10, end_value=0.3)
        >>> round(float(floored(20)), 6)  # max(0.25, 0.3)
        0.3
    """

    init_value: Any = hyperparameter(domain=VALUE)
    decay_rate: Any = hyperparameter(domain=RATE)
    transition_steps: int = static(default=1)
    staircase: bool = static(default=False)
    transition_begin: int = static(default=0)
    end_value: Any = hyperparameter(default=None, domain=VALUE, optional=True)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)
        check_count("transition_begin", self.transition_begin, low=0)

    def __call__(self, step):
        return exponential_decay_value(
            self.init_value,
            self.decay_rate,
            step,
            self.transition_steps,
            self.transition_begin,
            self.staircase,
            self.end_value,
        )


class CosineDecay(Schedule):
    r"""Cosine decay :math:`\alpha_s = \alpha_0\big((1-a)\,c_s^{\,p} + a\big)`, :math:`c_s = \tfrac{1}{2}(1+\cos(\pi \min(s,T)/T))`.

    From :math:`\alpha_0` to :math:`a\,\alpha_0` over :math:`T` steps; the exponent
    :math:`p` sharpens (:math:`p > 1`) or flattens the curve.  Also available as
    ``cosine_decay_schedule``, optax's name, with optax's arguments and numbers.

    Args:
        init_value: :math:`\alpha_0`.
        decay_steps: :math:`T \ge 1`.
        alpha: :math:`a` in :math:`[0, 1]`, the final fraction of :math:`\alpha_0`.
        exponent: :math:`p > 0`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.cosine_decay(1.0, decay_steps=100)
        >>> [round(float(schedule(step)), 6) for step in (0, 50, 100)]
        [1.0, 0.5, 0.0]
        >>> squared = aj.schedules.cosine_decay_schedule(1.0, 100, exponent=2.0)
        >>> round(float(squared(50)), 6)  # 0.5 ** 2
        0.25

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """

    init_value: Any = hyperparameter(domain=VALUE)
    decay_steps: int = static()
    alpha: Any = hyperparameter(default=0.0, domain=FRACTION)
    exponent: Any = hyperparameter(default=1.0, domain=EXPONENT)

    def __check_init__(self):
        check_count("decay_steps", self.decay_steps)

    def __call__(self, step):
        cosine = cosine_factor(step, self.decay_steps, self.exponent)
        return self.init_value * ((1 - self.alpha) * cosine + self.alpha)


class LinearSchedule(Schedule):
    r"""Linear ramp :math:`\alpha_s = \alpha_0 + (\alpha_1-\alpha_0)\,\mathrm{clip}((s-b)/T, 0, 1)`.

    optax's ``linear_schedule``, with its arguments and numbers (optax holds
    :math:`\alpha_0` for ever when ``transition_steps <= 0``; we reject that).

    Args:
        init_value: :math:`\alpha_0`.
        end_value: :math:`\alpha_1`.
        transition_steps: :math:`T \ge 1`.
        transition_begin: :math:`b \ge 0`, steps held at :math:`\alpha_0` first.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.linear_schedule(1.0, 0.0, transition_steps=10)
        >>> [round(float(schedule(step)), 6) for step in (3, 20)]
        [0.7, 0.0]
    """

    init_value: Any = hyperparameter(domain=VALUE)
    end_value: Any = hyperparameter(domain=VALUE)
    transition_steps: int = static()
    transition_begin: int = static(default=0)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)
        check_count("transition_begin", self.transition_begin, low=0)

    def __call__(self, step):
        fraction = ramp_fraction(step, self.transition_begin, self.transition_steps)
        return self.init_value + (self.end_value - self.init_value) * fraction


class PolynomialSchedule(Schedule):
    r"""Polynomial decay :math:`\alpha_s = (\alpha_0-\alpha_1)\big(1 - \mathrm{clip}(\tfrac{s-b}{T}, 0, 1)\big)^{p} + \alpha_1`.

    Held at :math:`\alpha_0` for the first :math:`b` steps, then from :math:`\alpha_0` to
    :math:`\alpha_1` over :math:`T` steps (:math:`p = 1`: linear; :math:`p = 2`: fast
    first, flat at the end).  optax's ``polynomial_schedule``, with its arguments and
    numbers (optax makes ``transition_steps <= 0`` a constant schedule and clamps a
    negative ``transition_begin`` to 0; we reject both).

    Args:
        init_value: :math:`\alpha_0`.
        end_value: :math:`\alpha_1`.
        power: :math:`p > 0`.
        transition_steps: :math:`T \ge 1`.
        transition_begin: :math:`b \ge 0`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.polynomial_schedule(1.0, 0.0, power=2.0, transition_steps=10)
        >>> [round(float(schedule(step)), 6) for step in (0, 5, 10)]  # (1 - s/10)^2
        [1.0, 0.25, 0.0]
    """

    init_value: Any = hyperparameter(domain=VALUE)
    end_value: Any = hyperparameter(domain=VALUE)
    power: Any = hyperparameter(domain=EXPONENT)
    transition_steps: int = static()
    transition_begin: int = static(default=0)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)
        check_count("transition_begin", self.transition_begin, low=0)

    def __call__(self, step):
        # (b + T - s) / T rather than 1 - (s - b) / T: exactly 0 from the end on, also when
        # XLA turns the division into a multiplication (a root of 1e-17 would show).
        end = self.transition_begin + self.transition_steps
        remaining = jnp.clip((end - step_as_float(step)) / self.transition_steps, 0.0, 1.0)
        power = jnp.asarray(self.power).astype(remaining.dtype)
        return (self.init_value - self.end_value) * remaining**power + self.end_value


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
        return self.init_value / jnp.sqrt(step_as_float(step) + 1)


constant = Constant
exponential_decay = ExponentialDecay
cosine_decay = CosineDecay
linear_schedule = LinearSchedule
inverse_sqrt = InverseSqrt
polynomial_schedule = PolynomialSchedule
# optax's names for the same schedules.
constant_schedule = Constant
cosine_decay_schedule = CosineDecay
