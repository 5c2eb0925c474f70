"""What you need to write your own block: the base classes, field declarations and helpers.

A new transformation is a final subclass of :class:`Transform` whose fields are
declared once each::

    import adaptive_jax as aj
    from adaptive_jax import extend

    class ScaleByCube(extend.Transform):
        '''Multiply updates by ``factor``: u = c g (a made-up example).'''

        factor: float = extend.hyperparameter(1.0, domain=extend.REAL)

        def apply(self, updates, state, params, count):
            rates = extend.per_leaf(self.factor, count - 1, updates, "factor")
            return extend.map_params(lambda u, c: c * u, updates, per_leaf=(rates,)), state

``count`` is the 1-based number of the update being computed; ``init_state(params)``
returns the block's own state (default: none).  See ``CONTRIBUTING.md`` for the pattern
of every kind of addition.
"""

from adaptive_jax._src.core.combine import Chain, OptaxAdapter, aliased_chain, as_transform
from adaptive_jax._src.core.hyperparameter import (
    DECAY_RATE,
    EPSILON,
    LEARNING_RATE,
    NONNEGATIVE,
    POSITIVE,
    REAL,
    WEIGHT_DECAY,
    Domain,
    per_leaf,
    value_at,
)
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.core.module import Module, StaticFunction, child, hyperparameter, static
from adaptive_jax._src.core.moments import Moments, as_moments, expect_gradients, expect_moments
from adaptive_jax._src.core.numerics import (
    bias_correction,
    cast_like,
    ema,
    safe_sqrt,
    squared_magnitude,
)
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import (
    IDENTITY,
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    Reparameterization,
)
from adaptive_jax._src.core.trees import map_params, zeros_like

__all__ = [
    "DECAY_RATE",
    "EPSILON",
    "IDENTITY",
    "LEARNING_RATE",
    "LOG",
    "LOG_ONE_MINUS",
    "NONNEGATIVE",
    "POSITIVE",
    "REAL",
    "SOFTPLUS",
    "WEIGHT_DECAY",
    "Chain",
    "Domain",
    "Module",
    "Moments",
    "OptaxAdapter",
    "Reparameterization",
    "StaticFunction",
    "Transform",
    "aliased_chain",
    "as_moments",
    "as_transform",
    "bias_correction",
    "cast_like",
    "checks_arguments_by_name",
    "child",
    "ema",
    "expect_gradients",
    "expect_moments",
    "hyperparameter",
    "map_params",
    "per_leaf",
    "safe_sqrt",
    "squared_magnitude",
    "static",
    "value_at",
    "zeros_like",
]
