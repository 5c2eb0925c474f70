"""Meta-learning: hypergradients through unrolled training.

This package only re-exports; each name lives in the module that defines it.
"""

from adaptive_jax.meta.checkpointing import (
    Bisection,
    Checkpointing,
    EveryStep,
    SqrtBlocks,
    StoreAll,
    checkpointed_scan,
)
from adaptive_jax.meta.estimator import Estimator, ExactMetaGradient
from adaptive_jax.meta.hypergradient import (
    differentiable_leaves,
    hypergradient,
    unrolled_objective,
    value_and_hypergradient,
)
from adaptive_jax.meta.modes import Forward, Mode, Reverse
from adaptive_jax.meta.online import HypergradientDescent, adam_hd, sgd_hd
from adaptive_jax.meta.pes import PersistentES, persistent_es
from adaptive_jax.meta.population import (
    PopulationTraining,
    evaluate_population,
    meta_train_population,
    population_size,
    stack_population,
    unstack_population,
)
from adaptive_jax.meta.reparam import (
    IDENTITY,
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    Reparameterization,
    from_unconstrained,
    reparameterizations,
    to_unconstrained,
)
from adaptive_jax.meta.train import (
    MetaGradientExplosionWarning,
    MetaHistory,
    MetaTrainResult,
    meta_train,
)
from adaptive_jax.meta.truncated import InnerRun, TruncatedBackprop, truncated_backprop
from adaptive_jax.meta.unroll import Unrolled, unroll
