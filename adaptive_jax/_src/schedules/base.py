r"""What every schedule shares: the base class, the domains of its numbers, the step as a float.

A schedule is a pytree callable of the 0-based step count :math:`s`.  Its numbers are
declared hyperparameters (leaves), so a schedule inside a transformation is
differentiable and vmappable like any other hyperparameter; its step counts and
boundaries are static ints (they decide the shape of the computation, not its values).
Any plain Python callable ``f(step) -> scalar`` that computes with ``jax.numpy`` is
accepted wherever a schedule is (held as configuration: a new function compiles a new
program).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import Domain
from adaptive_jax._src.core.module import Module
from adaptive_jax._src.core.reparameterization import LOG, SOFTPLUS

# A schedule's values are reparameterised as themselves: a warm-up may start at 0.
VALUE = Domain("a finite number")
RATE = Domain("a positive rate", 0.0, None, low_inclusive=False)
FRACTION = Domain("a fraction", 0.0, 1.0, high_inclusive=True)
# An exponent of a decay curve, and a factor that divides a value.
EXPONENT = Domain("a positive exponent", 0.0, None, low_inclusive=False, reparameterization=LOG)
FACTOR = Domain("a positive factor", 0.0, None, low_inclusive=False, reparameterization=LOG)
# The factors applied at a piecewise schedule's boundaries: one array, one entry each.
SCALES = Domain("non-negative scale factors", 0.0, None, scalar=False, reparameterization=SOFTPLUS)


class Schedule(Module, abstract=True):
    """A pytree callable ``step -> value`` (the step is the 0-based count of updates)."""

    def __call__(self, step: Any) -> jax.Array:
        raise NotImplementedError


def step_as_float(step: Any) -> jax.Array:
    """The step as the default float dtype (float64 under x64), exact for any int32 step."""
    return jnp.asarray(step).astype(jnp.result_type(float))


def ramp_fraction(step: Any, begin: int, steps: int) -> jax.Array:
    r"""How far a transition of ``steps`` steps starting at ``begin`` has come: :math:`\mathrm{clip}((s-b)/T, 0, 1)`.

    ``steps = 0`` (no transition) counts as done from ``begin`` on.
    """
    return jnp.clip((step_as_float(step) - begin) / max(steps, 1), 0.0, 1.0)


def cosine_factor(step: Any, decay_steps: int, exponent: Any) -> jax.Array:
    r""":math:`\big(\tfrac12(1 + \cos(\pi \min(s, T)/T))\big)^p`: 1 at :math:`s=0`, 0 from :math:`s=T` on."""
    progress = jnp.minimum(step_as_float(step), decay_steps) / decay_steps
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * progress))
    return cosine ** jnp.asarray(exponent).astype(cosine.dtype)


def exponential_decay_value(
    init_value: Any,
    decay_rate: Any,
    step: Any,
    transition_steps: int,
    transition_begin: int,
    staircase: bool,
    end_value: Any,
) -> jax.Array:
    r""":math:`\alpha_0 r^{\max(s-b, 0)/k}` (floored exponent if ``staircase``), bounded by ``end_value``.

    ``end_value`` is a lower bound when :math:`r < 1` and an upper bound otherwise (as in
    ``optax.exponential_decay``), chosen with ``jnp.where`` so that a traced rate works.
    """
    rate = jnp.asarray(decay_rate)
    exponent = jnp.maximum(step_as_float(step) - transition_begin, 0.0) / transition_steps
    if staircase:
        exponent = jnp.floor(exponent)
    value = init_value * rate ** exponent.astype(rate.dtype)
    if end_value is None:
        return value
    return jnp.where(rate < 1, jnp.maximum(value, end_value), jnp.minimum(value, end_value))
