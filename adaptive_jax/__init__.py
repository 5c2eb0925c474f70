"""adaptive_jax: adaptive optimizers as pure, composable, differentiable gradient transformations.

This module only re-exports; each name lives in the module that defines it.
"""

from adaptive_jax import meta, performance, schedules, sharding
from adaptive_jax.core.combine import Chain, OptaxAdapter, aliased_chain, chain
from adaptive_jax.core.hyperparameter import Domain, ScalarOrSchedule
from adaptive_jax.core.inspect import (
    HyperparameterLookupError,
    current_learning_rate,
    get_hyperparameter,
    hyperparameters,
    set_hyperparameter,
    step_count,
)
from adaptive_jax.core.moments import Moments
from adaptive_jax.core.numerics import global_norm
from adaptive_jax.core.protocol import EmptyState, StepState, Transform, apply_updates
from adaptive_jax.core.trees import TreeMismatchError
from adaptive_jax.optimizers.adadelta import adadelta
from adaptive_jax.optimizers.adam_family import (
    adabelief,
    adam,
    adamax,
    adamaxw,
    adamw,
    amsgrad,
    lamb,
    nadam,
    nadamw,
    radam,
    yogi,
)
from adaptive_jax.optimizers.classic import adagrad, rmsprop
from adaptive_jax.optimizers.lion import lion
from adaptive_jax.optimizers.sgd import sgd
from adaptive_jax.optimizers.sign_and_normalized import normalized_gd, sign_descent
from adaptive_jax.performance import (
    FlatLayoutError,
    FlatParams,
    apply_step,
    flatten,
    make_train_step,
    ravel_params,
    update_step,
)
from adaptive_jax.transforms.clipping import clip_by_global_norm
from adaptive_jax.transforms.moments.corrections import amsgrad_max, debias
from adaptive_jax.transforms.moments.first import ema_of_gradients, nesterov_ema_of_gradients
from adaptive_jax.transforms.moments.second import (
    accumulate_squares,
    centered_ema_of_squares,
    ema_of_squares,
)
from adaptive_jax.transforms.moments.second_variants import (
    belief_second_moment,
    infinity_norm_second_moment,
    yogi_moments,
)
from adaptive_jax.transforms.momentum import lion_momentum, trace
from adaptive_jax.transforms.preconditioning import (
    precondition,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_rms,
)
from adaptive_jax.transforms.preconditioning_variants import (
    rectified_precondition,
    scale_by_adadelta,
)
from adaptive_jax.transforms.regularisation import add_decoupled_weight_decay, add_l2_regularization
from adaptive_jax.transforms.robustness import ApplyIfFiniteState, apply_if_finite
from adaptive_jax.transforms.scaling import (
    normalize_by_global_norm,
    scale,
    scale_by_learning_rate,
    scale_by_sign,
)
from adaptive_jax.transforms.trust_ratio import scale_by_trust_ratio

__version__ = "0.1.0"
