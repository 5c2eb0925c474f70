r"""Piecewise schedules: joined schedules, and values scaled at static step boundaries.

The boundaries are static ints (they fix the pieces); the values and the scale factors
are hyperparameters, so a scale applied at step 100 is as differentiable as the initial
value.  ``piecewise_constant_schedule`` and ``piecewise_interpolate_schedule`` take
optax's arguments (``boundaries_and_scales={step: scale}``) and give its numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.hyperparameter import check_count, value_at
from adaptive_jax._src.core.module import child, hyperparameter, static
from adaptive_jax._src.schedules.base import SCALES, VALUE, Schedule, step_as_float


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


def split_boundaries_and_scales(
    boundaries_and_scales: Mapping[int, Any] | None, function: str
) -> tuple[tuple[int, ...], Any]:
    """optax's ``{step: scale}`` as sorted int boundaries and an array of scales, checked.

    Each step must be an int >= 0 and each scale a finite number >= 0 (optax requires
    non-negative scales too); errors name ``boundaries_and_scales`` and the entry.
    """
    if boundaries_and_scales is None:
        boundaries_and_scales = {}
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"{function}: boundaries_and_scales={boundaries_and_scales!r} is invalid: "
            "expected a dict {step: scale}"
        )
    items = sorted(boundaries_and_scales.items(), key=lambda item: item[0])
    for boundary, scale in items:
        check_count(f"boundaries_and_scales key {boundary!r}", boundary, low=0)
        SCALES.check(f"boundaries_and_scales[{boundary!r}]", scale)
    scales = [scale for _, scale in items]
    array = jnp.asarray(scales) if scales else jnp.zeros((0,))
    return tuple(int(b) for b, _ in items), array


class PiecewiseConstantSchedule(Schedule):
    r"""A value multiplied by each scale whose boundary has passed: :math:`\alpha_s = \alpha_0 \prod_{i:\ s \ge b_i} f_i`.

    Build it with :func:`piecewise_constant_schedule` (optax's arguments).

    Args:
        init_value: :math:`\alpha_0`.
        boundaries: the steps :math:`b_i` (static, increasing, >= 0).
        scales: the factors :math:`f_i \ge 0`, one per boundary (an array: each entry is
            a hyperparameter).
    """

    init_value: Any = hyperparameter(domain=VALUE)
    boundaries: tuple[int, ...] = static(converter=_int_tuple)
    scales: Any = hyperparameter(domain=SCALES)

    def __check_init__(self):
        if np.shape(self.scales) != (len(self.boundaries),):
            raise ValueError(
                f"piecewise_constant_schedule needs one scale per boundary, got "
                f"{len(self.boundaries)} boundaries and scales of shape {np.shape(self.scales)}"
            )
        if list(self.boundaries) != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries must be increasing, got {self.boundaries}")

    def __call__(self, step):
        step = step_as_float(step)
        value = jnp.asarray(self.init_value)
        scales = jnp.asarray(self.scales).astype(value.dtype)
        for index, boundary in enumerate(self.boundaries):
            value = jnp.where(step < boundary, value, value * scales[index])
        return value


def piecewise_constant_schedule(
    init_value: Any, boundaries_and_scales: Mapping[int, Any] | None = None
) -> PiecewiseConstantSchedule:
    r"""optax's ``piecewise_constant_schedule``: ``init_value`` times every scale whose step has passed.

    Args:
        init_value: the value before the first boundary.
        boundaries_and_scales: ``{step: scale}``; from ``step`` on, the value is
            multiplied by ``scale`` (a finite number >= 0).

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.1})
        >>> [round(float(schedule(step)), 6) for step in (99, 100, 250)]  # 1, 0.1, 0.1 * 0.1
        [1.0, 0.1, 0.01]
    """
    boundaries, scales = split_boundaries_and_scales(
        boundaries_and_scales, "piecewise_constant_schedule"
    )
    return PiecewiseConstantSchedule(init_value, boundaries, scales)


def _linear(start: Any, end: Any, fraction: Any) -> Any:
    return (end - start) * fraction + start


def _cosine(start: Any, end: Any, fraction: Any) -> Any:
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * fraction) + 1)


INTERPOLATIONS: dict[str, Callable[[Any, Any, Any], Any]] = {"linear": _linear, "cosine": _cosine}


def interpolate_between_knots(
    step: Any, boundaries: tuple[int, ...], knots: list[Any], interpolate_type: str
) -> jax.Array:
    r"""The value at ``step`` of a curve through ``knots[i]`` at ``(0,) + boundaries``, constant after the last.

    Between two knots the value moves linearly, or along half a cosine, as
    ``optax.piecewise_interpolate_schedule`` moves it (an interval of 0 steps counts
    as 1; a step before 0 gives 0, as in optax).
    """
    interpolate = INTERPOLATIONS[interpolate_type]
    step = step_as_float(step)
    bounds = (0, *boundaries)
    value = jnp.where(bounds[-1] <= step, knots[-1], jnp.zeros_like(knots[-1]))
    for i in range(len(boundaries)):
        start, end = bounds[i], bounds[i + 1]
        fraction = (step - start) / max(end - start, 1)
        inside = (start <= step) & (step < end)
        value = value + jnp.where(inside, interpolate(knots[i], knots[i + 1], fraction), 0.0)
    return value


class PiecewiseInterpolateSchedule(Schedule):
    r"""Through the knots :math:`\alpha_0 \prod_{j \le i} f_j` at the boundaries :math:`b_i`, linearly or along half cosines.

    Build it with :func:`piecewise_interpolate_schedule` (optax's arguments).

    Args:
        interpolate_type: ``"linear"`` or ``"cosine"``.
        init_value: :math:`\alpha_0`, the value at step 0.
        boundaries: the steps :math:`b_i` (static, increasing, >= 0).
        scales: the factors :math:`f_i \ge 0` (an array: each entry is a hyperparameter).
    """

    interpolate_type: str = static()
    init_value: Any = hyperparameter(domain=VALUE)
    boundaries: tuple[int, ...] = static(converter=_int_tuple)
    scales: Any = hyperparameter(domain=SCALES)

    def __check_init__(self):
        if self.interpolate_type not in INTERPOLATIONS:
            raise ValueError(
                f"interpolate_type={self.interpolate_type!r} is invalid: expected 'linear' "
                "or 'cosine'"
            )
        if np.shape(self.scales) != (len(self.boundaries),):
            raise ValueError(
                f"piecewise_interpolate_schedule needs one scale per boundary, got "
                f"{len(self.boundaries)} boundaries and scales of shape {np.shape(self.scales)}"
            )
        if list(self.boundaries) != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries must be increasing, got {self.boundaries}")

    def __call__(self, step):
        value = jnp.asarray(self.init_value)
        scales = jnp.asarray(self.scales).astype(value.dtype)
        knots = [value]
        for index in range(len(self.boundaries)):
            knots.append(knots[-1] * scales[index])
        return interpolate_between_knots(step, self.boundaries, knots, self.interpolate_type)


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: Any, boundaries_and_scales: Mapping[int, Any] | None = None
) -> PiecewiseInterpolateSchedule:
    r"""optax's ``piecewise_interpolate_schedule``: interpolate between the accumulated values.

    At each ``step`` of ``boundaries_and_scales`` the value reaches the previous knot
    times ``scale``; in between it moves linearly (``"linear"``) or along half a cosine
    (``"cosine"``).

    Args:
        interpolate_type: ``"linear"`` or ``"cosine"``.
        init_value: the value at step 0.
        boundaries_and_scales: ``{step: scale}`` with scales >= 0.

    Example:
        >>> import adaptive_jax as aj
        >>> schedule = aj.schedules.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1})
        >>> [round(float(schedule(step)), 6) for step in (0, 2, 4, 9)]  # 1 -> 0.1 over 4 steps
        [1.0, 0.55, 0.1, 0.1]
    """
    boundaries, scales = split_boundaries_and_scales(
        boundaries_and_scales, "piecewise_interpolate_schedule"
    )
    return PiecewiseInterpolateSchedule(interpolate_type, init_value, boundaries, scales)


join_schedules = JoinSchedules
