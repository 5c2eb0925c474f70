r"""Meta-learning: hypergradients through unrolled training, and the loops that use them.

* :func:`unroll` — :math:`T` optimizer steps as one differentiable function;
* :func:`hypergradient` — :math:`\partial F/\partial\lambda` in a :class:`Mode`
  (:class:`Reverse` with a :class:`Checkpointing` policy, or :class:`Forward`);
* estimators — :class:`ExactMetaGradient`, :class:`TruncatedBackprop`,
  :class:`PersistentES` — and :func:`meta_train`, the outer loop;
* online hypergradient descent (:func:`sgd_hd`, :func:`adam_hd`), reparameterisations
  (:func:`to_unconstrained`), populations (:func:`stack_population`);
* implicit hypergradients of a converged solution (:func:`implicit_hypergradient`,
  :func:`implicit_solution`) with matrix-free solvers (:class:`ConjugateGradient`,
  :class:`Neumann`).
"""

from adaptive_jax._src.meta.checkpointing import (
    Bisection,
    Checkpointing,
    EveryStep,
    SqrtBlocks,
    StoreAll,
    checkpointed_scan,
)
from adaptive_jax._src.meta.estimator import Estimator, ExactMetaGradient
from adaptive_jax._src.meta.hypergradient import (
    differentiable_leaves,
    hypergradient,
    unrolled_objective,
    value_and_hypergradient,
)
from adaptive_jax._src.meta.implicit import (
    ConjugateGradient,
    LinearSolver,
    Neumann,
    implicit_hypergradient,
    implicit_solution,
)
from adaptive_jax._src.meta.learned import Learned
from adaptive_jax._src.meta.modes import Forward, Mode, Reverse
from adaptive_jax._src.meta.online import HypergradientDescent, adam_hd, sgd_hd
from adaptive_jax._src.meta.pes import PersistentES, persistent_es
from adaptive_jax._src.meta.population import (
    PopulationTraining,
    evaluate_population,
    meta_train_population,
    population_size,
    stack_population,
    unstack_population,
)
from adaptive_jax._src.meta.reparam import (
    IDENTITY,
    LOG,
    LOG_ONE_MINUS,
    SOFTPLUS,
    Reparameterization,
    from_unconstrained,
    reparameterizations,
    to_unconstrained,
)
from adaptive_jax._src.meta.train import (
    MetaGradientExplosionWarning,
    MetaHistory,
    MetaTrainResult,
    meta_train,
)
from adaptive_jax._src.meta.truncated import InnerRun, TruncatedBackprop, truncated_backprop
from adaptive_jax._src.meta.unroll import Unrolled, unroll

__all__ = [
    "Bisection",
    "Checkpointing",
    "ConjugateGradient",
    "Estimator",
    "EveryStep",
    "ExactMetaGradient",
    "Forward",
    "HypergradientDescent",
    "IDENTITY",
    "InnerRun",
    "Learned",
    "LinearSolver",
    "LOG",
    "LOG_ONE_MINUS",
    "MetaGradientExplosionWarning",
    "MetaHistory",
    "MetaTrainResult",
    "Mode",
    "Neumann",
    "PersistentES",
    "PopulationTraining",
    "Reparameterization",
    "Reverse",
    "SOFTPLUS",
    "SqrtBlocks",
    "StoreAll",
    "TruncatedBackprop",
    "Unrolled",
    "adam_hd",
    "checkpointed_scan",
    "differentiable_leaves",
    "evaluate_population",
    "from_unconstrained",
    "hypergradient",
    "implicit_hypergradient",
    "implicit_solution",
    "meta_train",
    "meta_train_population",
    "persistent_es",
    "population_size",
    "reparameterizations",
    "sgd_hd",
    "stack_population",
    "to_unconstrained",
    "truncated_backprop",
    "unroll",
    "unrolled_objective",
    "unstack_population",
    "value_and_hypergradient",
]
