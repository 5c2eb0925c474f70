r"""Schedules that start with a linear warm-up: cosine, exponential and warmup-stable-decay, SGDR.

The optax-named ones (``warmup_cosine_decay_schedule``, ``warmup_exponential_decay_schedule``,
``warmup_constant_schedule``, ``sgdr_schedule``) take optax's arguments and give its
numbers; each is one schedule whose ``peak_value`` is one hyperparameter (not two
copies in two joined pieces), so a meta-gradient with respect to the peak is one number.
``warmup_steps = 0`` means no warm-up, as in optax.

Two conventions for the length of a cosine decay coexist, on purpose:
:func:`warmup_cosine_decay` (ours) counts ``decay_steps`` after the warm-up;
:func:`warmup_cosine_decay_schedule` (optax's) counts the warm-up in ``decay_steps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.schedules.base import (
    EXPONENT,
    RATE,
    VALUE,
    Schedule,
    cosine_factor,
    exponential_decay_value,
    ramp_fraction,
    step_as_float,
)
from adaptive_jax._src.schedules.basic import CosineDecay, LinearSchedule, linear_warmup
from adaptive_jax._src.schedules.piecewise import JoinSchedules


def warmup_cosine_decay(
    peak_value: Any,
    warmup_steps: int,
    decay_steps: int,
    init_value: Any = 0.0,
    end_value: Any = 0.0,
) -> JoinSchedules:
    r"""Linear warm-up to ``peak_value``, then cosine decay to ``end_value`` over ``decay_steps``.

    ``decay_steps`` is the length of the decay alone; optax's
    :func:`warmup_cosine_decay_schedule` counts the warm-up in it.

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


def warmup_value(schedule: Any, step: Any, after_warmup: jax.Array) -> jax.Array:
    """The linear warm-up from ``schedule.init_value`` to ``schedule.peak_value``, then ``after_warmup``."""
    fraction = ramp_fraction(step, 0, schedule.warmup_steps)
    ramp = schedule.init_value + (schedule.peak_value - schedule.init_value) * fraction
    return jnp.where(step_as_float(step) < schedule.warmup_steps, ramp, after_warmup)


class WarmupCosineDecaySchedule(Schedule):
    r"""optax's warm-up and cosine decay: linear from :math:`\alpha_0` to :math:`\hat\alpha` over :math:`W` steps, then a cosine to :math:`\alpha_e` at step :math:`T`.

    .. math::

       \alpha_s = \begin{cases}
         \alpha_0 + (\hat\alpha - \alpha_0)\, s/W & s < W \\
         \alpha_e + (\hat\alpha - \alpha_e)\, c_{s-W}^{\,p} & s \ge W
       \end{cases}
       \qquad c_k = \tfrac12\big(1 + \cos(\pi \min(k, T-W)/(T-W))\big).

    ``decay_steps`` :math:`T` is the **total** length, warm-up included, as in optax
    (the library's own :func:`warmup_cosine_decay` counts the decay alone).  One
    difference from optax: with ``peak_value = 0`` optax returns 0 after the warm-up
    whatever ``end_value`` is (its decay is a multiple of the peak); this returns the
    formula above.

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`, reached at step :math:`W`.
        warmup_steps: :math:`W \ge 0` (0: no warm-up).
        decay_steps: :math:`T > W`, the step at which :math:`\alpha_e` is reached.
        end_value: :math:`\alpha_e`.
        exponent: :math:`p > 0` of the cosine factor.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110)
        >>> [round(float(schedule(step)), 4) for step in (0, 5, 10, 60, 110)]
        [0.0, 0.5, 1.0, 0.5, 0.0]

    Reference: Goyal et al., "Accurate, Large Minibatch SGD", 2017 (the warm-up);
    Loshchilov & Hutter, "SGDR", ICLR 2017 (the cosine).
    """

    init_value: Any = hyperparameter(domain=VALUE)
    peak_value: Any = hyperparameter(domain=VALUE)
    warmup_steps: int = static()
    decay_steps: int = static()
    end_value: Any = hyperparameter(default=0.0, domain=VALUE)
    exponent: Any = hyperparameter(default=1.0, domain=EXPONENT)

    def __check_init__(self):
        check_count("warmup_steps", self.warmup_steps, low=0)
        check_count("decay_steps", self.decay_steps, low=self.warmup_steps + 1)

    def __call__(self, step):
        since = jnp.asarray(step) - self.warmup_steps
        cosine = cosine_factor(since, self.decay_steps - self.warmup_steps, self.exponent)
        decay = self.end_value + (self.peak_value - self.end_value) * cosine
        return warmup_value(self, step, decay)


def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: int) -> LinearSchedule:
    r"""optax's ``warmup_constant_schedule``: linear from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant.

    optax holds ``init_value`` for ever when ``warmup_steps <= 0``; we reject it.

    Args:
        init_value: the value at step 0.
        peak_value: the value from step ``warmup_steps`` on.
        warmup_steps: the length of the warm-up (an int >= 1).

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
        >>> [float(schedule(step)) for step in (0, 2, 4, 100)]
        [0.0, 0.5, 1.0, 1.0]
    """
    check_count("warmup_steps", warmup_steps)
    return LinearSchedule(init_value, peak_value, warmup_steps)


class WarmupExponentialDecaySchedule(Schedule):
    r"""optax's warm-up and exponential decay: linear to :math:`\hat\alpha` over :math:`W` steps, then :func:`exponential_decay` from :math:`\hat\alpha`.

    After the warm-up, at :math:`k = s - W` steps: :math:`\hat\alpha\, r^{\max(k-b, 0)/K}`
    (the exponent floored if ``staircase``), bounded by ``end_value`` (below when
    :math:`r < 1`, above when :math:`r > 1`).

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`.
        warmup_steps: :math:`W \ge 0` (0: no warm-up).
        transition_steps: :math:`K \ge 1`.
        decay_rate: :math:`r > 0`.
        transition_begin: :math:`b \ge 0`, steps held at the peak after the warm-up.
        staircase: decay in steps of :math:`K`.
        end_value: the bound the decay stops at, or ``None``.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.warmup_exponential_decay_schedule(0.0, 1.0, 10, 10, 0.5)
        >>> [round(float(schedule(step)), 4) for step in (5, 10, 20, 30)]  # 0.5, 1, 1/2, 1/4
        [0.5, 1.0, 0.5, 0.25]
    """

    init_value: Any = hyperparameter(domain=VALUE)
    peak_value: Any = hyperparameter(domain=VALUE)
    warmup_steps: int = static()
    transition_steps: int = static()
    decay_rate: Any = hyperparameter(domain=RATE)
    transition_begin: int = static(default=0)
    staircase: bool = static(default=False)
    end_value: Any = hyperparameter(default=None, domain=VALUE, optional=True)

    def __check_init__(self):
        check_count("warmup_steps", self.warmup_steps, low=0)
        check_count("transition_steps", self.transition_steps)
        check_count("transition_begin", self.transition_begin, low=0)

    def __call__(self, step):
        decay = exponential_decay_value(
            self.peak_value,
            self.decay_rate,
            jnp.asarray(step) - self.warmup_steps,
            self.transition_steps,
            self.transition_begin,
            self.staircase,
            self.end_value,
        )
        return warmup_value(self, step, decay)


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> JoinSchedules:
    r"""optax's SGDR: warm-up-and-cosine cycles one after another, each restarting at its own start.

    Each entry of ``cosine_kwargs`` holds the arguments of one
    :func:`warmup_cosine_decay_schedule` (``init_value``, ``peak_value``,
    ``warmup_steps``, ``decay_steps``, optionally ``end_value`` and ``exponent``); a
    cycle lasts its ``decay_steps``.

    Example:
        >>> import adaptive_jax as aj
        >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
        >>> schedule = aj.schedules.sgdr_schedule([cycle, cycle])
        >>> [round(float(schedule(step)), 4) for step in (0, 5, 9, 10)]  # restarts at 10
        [1.0, 0.5, 0.0245, 1.0]

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.
    """
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(WarmupCosineDecaySchedule(**kwargs))
        step += schedules[-1].decay_steps
        boundaries.append(step)
    if not schedules:
        raise ValueError("sgdr_schedule needs at least one cycle in cosine_kwargs")
    return JoinSchedules(schedules, boundaries[:-1])


def _linear_cooldown(fraction: jax.Array) -> jax.Array:
    return 1 - fraction


def _cosine_cooldown(fraction: jax.Array) -> jax.Array:
    return 0.5 * (1 + jnp.cos(jnp.pi * fraction))


def _one_minus_sqrt_cooldown(fraction: jax.Array) -> jax.Array:
    return 1 - jnp.sqrt(fraction)


COOLDOWNS = {
    "linear": _linear_cooldown,
    "cosine": _cosine_cooldown,
    "1-sqrt": _one_minus_sqrt_cooldown,
}


class WarmupStableDecaySchedule(Schedule):
    r"""Warmup-stable-decay (the trapezoid of recent LLM training): warm up, hold the peak, cool down.

    .. math::

       \alpha_s = \begin{cases}
         \alpha_0 + (\hat\alpha - \alpha_0)\, s/W & s < W \\
         \hat\alpha & W \le s < W + S \\
         \alpha_e + (\hat\alpha - \alpha_e)\, \phi\big(\min(\tfrac{s - W - S}{D}, 1)\big) & s \ge W + S
       \end{cases}

    with the cooldown shape :math:`\phi` falling from 1 to 0: ``"linear"``
    :math:`1 - x`, ``"cosine"`` :math:`\tfrac12(1 + \cos\pi x)`, or ``"1-sqrt"``
    :math:`1 - \sqrt{x}` (the best of the shapes compared by Hägele et al.).  A run can
    be continued from any checkpoint of the stable phase and cooled down later, which
    a cosine schedule (fixed to one length) cannot.  optax 0.2.8 has no such schedule:
    the name and arguments follow its ``warmup_*`` schedules; ``decay_steps`` is the
    length of the cooldown alone.

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`, held during the stable phase.
        warmup_steps: :math:`W \ge 0`.
        stable_steps: :math:`S \ge 0`.
        decay_steps: :math:`D \ge 1`, the length of the cooldown.
        end_value: :math:`\alpha_e`, reached at step :math:`W + S + D` and held after.
        decay_shape: :math:`\phi`: ``"linear"`` (default), ``"cosine"`` or ``"1-sqrt"``.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.warmup_stable_decay_schedule(0.0, 1.0, 10, 80, 10)
        >>> [round(float(schedule(step)), 4) for step in (5, 10, 89, 95, 100)]
        [0.5, 1.0, 1.0, 0.5, 0.0]

    Reference: Hu et al., "MiniCPM: Unveiling the Potential of Small Language Models
    with Scalable Training Strategies", 2024 (arXiv:2404.06395); Hägele et al.,
    "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations",
    NeurIPS 2024 (arXiv:2405.18392).
    """

    init_value: Any = hyperparameter(domain=VALUE)
    peak_value: Any = hyperparameter(domain=VALUE)
    warmup_steps: int = static()
    stable_steps: int = static()
    decay_steps: int = static()
    end_value: Any = hyperparameter(default=0.0, domain=VALUE)
    decay_shape: str = static(default="linear")

    def __check_init__(self):
        check_count("warmup_steps", self.warmup_steps, low=0)
        check_count("stable_steps", self.stable_steps, low=0)
        check_count("decay_steps", self.decay_steps)
        if self.decay_shape not in COOLDOWNS:
            raise ValueError(
                f"decay_shape={self.decay_shape!r} is invalid: expected one of "
                f"{', '.join(repr(name) for name in COOLDOWNS)}"
            )

    def __call__(self, step):
        begin = self.warmup_steps + self.stable_steps
        shape = COOLDOWNS[self.decay_shape](ramp_fraction(step, begin, self.decay_steps))
        cooldown = self.end_value + (self.peak_value - self.end_value) * shape
        return warmup_value(self, step, cooldown)


warmup_cosine_decay_schedule = WarmupCosineDecaySchedule
warmup_exponential_decay_schedule = WarmupExponentialDecaySchedule
warmup_stable_decay_schedule = WarmupStableDecaySchedule
