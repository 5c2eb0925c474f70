"""Schedules: pytree callables of the 0-based step count, whose numbers are differentiable.

Any plain Python function of the step that computes with ``jax.numpy`` is accepted
wherever a schedule is; these are pytrees, so their numbers are hyperparameters too.
"""

from adaptive_jax._src.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    InverseSqrt,
    JoinSchedules,
    LinearSchedule,
    Schedule,
    constant,
    cosine_decay,
    exponential_decay,
    inverse_sqrt,
    join_schedules,
    linear_schedule,
    linear_warmup,
    warmup_cosine_decay,
)

__all__ = [
    "Constant",
    "CosineDecay",
    "ExponentialDecay",
    "InverseSqrt",
    "JoinSchedules",
    "LinearSchedule",
    "Schedule",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "inverse_sqrt",
    "join_schedules",
    "linear_schedule",
    "linear_warmup",
    "warmup_cosine_decay",
]
