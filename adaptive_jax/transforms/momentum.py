r"""Momentum (heavy ball) and Nesterov momentum."""

from __future__ import annotations

from typing import Any

from adaptive_jax.core.numerics import cast_like
from adaptive_jax.core.protocol import Transform
from adaptive_jax.core.pytree import pytree_dataclass, static_field
from adaptive_jax.core.trees import map_params, zeros_like
from adaptive_jax.core.validation import check_decay
from adaptive_jax.transforms.moments import expect_gradients


@pytree_dataclass
class Trace(Transform):
    """See :func:`trace`."""

    decay: Any = 0.9
    nesterov: bool = static_field(default=False)
    accumulator_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_decay("decay", self.decay)

    def init_state(self, params):
        return zeros_like(params, self.accumulator_dtype)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "trace")
        new_trace = map_params(
            lambda g, b: cast_like(self.decay, b) * b + g.astype(b.dtype),
            updates,
            state,
            names=("trace",),
        )
        if self.nesterov:
            out = map_params(
                lambda g, b: g + (cast_like(self.decay, b) * b).astype(g.dtype),
                updates,
                new_trace,
                names=("trace",),
            )
        else:
            out = map_params(lambda g, b: b.astype(g.dtype), updates, new_trace, names=("trace",))
        return out, new_trace


def trace(decay: Any = 0.9, nesterov: bool = False, accumulator_dtype: Any = None) -> Trace:
    r"""Momentum: :math:`b_t = \mu b_{t-1} + g_t`, update :math:`b_t` (or :math:`g_t + \mu b_t` with Nesterov).

    :math:`b_0 = 0`, so :math:`b_1 = g_1`: the same recursion as
    ``torch.optim.SGD(momentum=mu, dampening=0, nesterov=...)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.trace(decay=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.array([1.0]), state)
        >>> second, state = tx.update(jnp.array([1.0]), state)
        >>> round(first.item(), 6), round(second.item(), 6)  # b_1 = g_1, b_2 = 0.9 b_1 + g_2
        (1.0, 1.9)

    References: Polyak, "Some methods of speeding up the convergence of iteration
    methods", 1964; Sutskever et al., "On the importance of initialization and
    momentum in deep learning", ICML 2013.
    """
    return Trace(decay, nesterov, accumulator_dtype)
