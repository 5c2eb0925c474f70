r"""The one-cycle schedules of Smith & Topin: up to a peak and down far below the start, in one cycle.

Both are optax's (``cosine_onecycle_schedule``, ``linear_onecycle_schedule``), with its
arguments and numbers: the knots are ``peak_value / div_factor`` at step 0,
``peak_value`` at ``int(pct_start * transition_steps)``, and the final value at
``transition_steps``; between knots the value moves along half a cosine or linearly
(:func:`~adaptive_jax._src.schedules.piecewise.interpolate_between_knots`).  The
fractions ``pct_start`` and ``pct_final`` fix step boundaries, so they are static;
``peak_value``, ``div_factor`` and ``final_div_factor`` are hyperparameters.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import check_count
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.schedules.base import FACTOR, VALUE, Schedule
from adaptive_jax._src.schedules.piecewise import interpolate_between_knots


def check_percentage(name: str, value: Any) -> None:
    """Raise unless ``value`` is a Python number in ``[0, 1]`` (it fixes a step boundary)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}={value!r} is invalid: expected a Python number in [0, 1] (it fixes a "
            "step boundary, so it cannot be traced)"
        )
    if not 0 <= value <= 1:
        raise ValueError(f"{name}={value!r} is invalid: expected a number in [0, 1]")


def knots(
    transition_steps: int, peak_value: Any, div_factor: Any, phases: list[tuple[float, Any]]
) -> tuple[tuple[int, ...], list[Any]]:
    """Boundaries and knot values of a cycle, built as optax builds its ``{step: scale}`` dict.

    ``phases`` lists ``(fraction of transition_steps, scale)``; a later phase whose step
    coincides with an earlier one replaces its scale, as a repeated dict key does.
    """
    by_step: dict[int, Any] = {}
    for fraction, scale in phases:
        by_step[int(fraction * transition_steps)] = scale
    boundaries = tuple(sorted(by_step))
    values = [jnp.asarray(peak_value) / jnp.asarray(div_factor)]
    for boundary in boundaries:
        values.append(values[-1] * by_step[boundary])
    return boundaries, values


class CosineOnecycleSchedule(Schedule):
    r"""One cycle along half cosines: from :math:`\hat\alpha/d` up to :math:`\hat\alpha`, then down to :math:`\hat\alpha/(d f)`.

    The peak :math:`\hat\alpha` is reached at step :math:`\lfloor p_s T \rfloor` and the
    end at :math:`T`; between them each phase follows
    :math:`v_1 + \tfrac12 (v_0 - v_1)(1 + \cos(\pi x))` over its fraction :math:`x`.

    Args:
        transition_steps: :math:`T \ge 1`, the length of the cycle.
        peak_value: :math:`\hat\alpha`.
        pct_start: :math:`p_s` in :math:`[0, 1]`, the fraction of the cycle spent rising
            (a Python number: it fixes a step).
        div_factor: :math:`d > 0`; the start is :math:`\hat\alpha/d`.
        final_div_factor: :math:`f > 0`; the end is the start divided by :math:`f`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.cosine_onecycle_schedule(100, 1.0, div_factor=10.0)
        >>> [round(float(schedule(step)), 6) for step in (0, 15, 30)]  # 0.1, halfway, peak
        [0.1, 0.55, 1.0]

    Reference: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates", 2017 (arXiv:1708.07120).
    """

    transition_steps: int = static()
    peak_value: Any = hyperparameter(domain=VALUE)
    pct_start: float = static(default=0.3)
    div_factor: Any = hyperparameter(default=25.0, domain=FACTOR)
    final_div_factor: Any = hyperparameter(default=1e4, domain=FACTOR)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)
        check_percentage("pct_start", self.pct_start)

    def __call__(self, step):
        down = 1.0 / (self.div_factor * self.final_div_factor)
        boundaries, values = knots(
            self.transition_steps,
            self.peak_value,
            self.div_factor,
            [(self.pct_start, self.div_factor), (1.0, down)],
        )
        return interpolate_between_knots(step, boundaries, values, "cosine")


class LinearOnecycleSchedule(Schedule):
    r"""One cycle in three linear phases: up to :math:`\hat\alpha`, back to :math:`\hat\alpha/d`, down to :math:`\hat\alpha/(d f)`.

    The knots are :math:`\hat\alpha/d` at step 0, :math:`\hat\alpha` at
    :math:`\lfloor p_s T \rfloor`, :math:`\hat\alpha/d` at :math:`\lfloor p_f T \rfloor` and
    :math:`\hat\alpha/(d f)` at :math:`T`, joined by straight lines.

    Args:
        transition_steps: :math:`T \ge 1`, the length of the cycle.
        peak_value: :math:`\hat\alpha`.
        pct_start: :math:`p_s` in :math:`[0, 1]`, the fraction of the cycle spent rising.
        pct_final: :math:`p_f` in :math:`[p_s, 1]`, where the value is back at the start.
        div_factor: :math:`d > 0`; the start is :math:`\hat\alpha/d`.
        final_div_factor: :math:`f > 0`; the end is the start divided by :math:`f`.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.linear_onecycle_schedule(100, 1.0, div_factor=10.0)
        >>> [round(float(schedule(step)), 6) for step in (0, 15, 30, 85)]
        [0.1, 0.55, 1.0, 0.1]

    Reference: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates", 2017 (arXiv:1708.07120).
    """

    transition_steps: int = static()
    peak_value: Any = hyperparameter(domain=VALUE)
    pct_start: float = static(default=0.3)
    pct_final: float = static(default=0.85)
    div_factor: Any = hyperparameter(default=25.0, domain=FACTOR)
    final_div_factor: Any = hyperparameter(default=1e4, domain=FACTOR)

    def __check_init__(self):
        check_count("transition_steps", self.transition_steps)
        check_percentage("pct_start", self.pct_start)
        check_percentage("pct_final", self.pct_final)
        if self.pct_final < self.pct_start:
            raise ValueError(
                f"pct_final={self.pct_final!r} is invalid: expected a number in "
                f"[pct_start, 1] = [{self.pct_start!r}, 1]"
            )

    def __call__(self, step):
        boundaries, values = knots(
            self.transition_steps,
            self.peak_value,
            self.div_factor,
            [
                (self.pct_start, self.div_factor),
                (self.pct_final, 1.0 / self.div_factor),
                (1.0, 1.0 / self.final_div_factor),
            ],
        )
        return interpolate_between_knots(step, boundaries, values, "linear")


cosine_onecycle_schedule = CosineOnecycleSchedule
linear_onecycle_schedule = LinearOnecycleSchedule
