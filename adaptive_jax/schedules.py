"""Schedules: pytree callables of the 0-based step count, whose numbers are differentiable.

Any plain Python function of the step that computes with ``jax.numpy`` is accepted
wherever a schedule is; these are pytrees, so their numbers are hyperparameters too.
Every schedule of ``optax.schedules`` has its name here, with optax's arguments and
numbers (``constant_schedule``, ``cosine_decay_schedule``, ``polynomial_schedule``,
``piecewise_constant_schedule``, ``warmup_cosine_decay_schedule``, ``sgdr_schedule``,
the one-cycle schedules, ...); ``warmup_stable_decay_schedule`` is new.
"""

from adaptive_jax._src.schedules.base import Schedule
from adaptive_jax._src.schedules.basic import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    InverseSqrt,
    LinearSchedule,
    PolynomialSchedule,
    constant,
    constant_schedule,
    cosine_decay,
    cosine_decay_schedule,
    exponential_decay,
    inverse_sqrt,
    linear_schedule,
    linear_warmup,
    polynomial_schedule,
)
from adaptive_jax._src.schedules.onecycle import (
    CosineOnecycleSchedule,
    LinearOnecycleSchedule,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
)
from adaptive_jax._src.schedules.piecewise import (
    JoinSchedules,
    PiecewiseConstantSchedule,
    PiecewiseInterpolateSchedule,
    join_schedules,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
)
from adaptive_jax._src.schedules.warmup import (
    WarmupCosineDecaySchedule,
    WarmupExponentialDecaySchedule,
    WarmupStableDecaySchedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
    warmup_stable_decay_schedule,
)

__all__ = [
    "Constant",
    "CosineDecay",
    "CosineOnecycleSchedule",
    "ExponentialDecay",
    "InverseSqrt",
    "JoinSchedules",
    "LinearOnecycleSchedule",
    "LinearSchedule",
    "PiecewiseConstantSchedule",
    "PiecewiseInterpolateSchedule",
    "PolynomialSchedule",
    "Schedule",
    "WarmupCosineDecaySchedule",
    "WarmupExponentialDecaySchedule",
    "WarmupStableDecaySchedule",
    "constant",
    "constant_schedule",
    "cosine_decay",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "exponential_decay",
    "inverse_sqrt",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "linear_warmup",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "warmup_stable_decay_schedule",
]
