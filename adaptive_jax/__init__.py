"""adaptive_jax: adaptive optimizers as pure, composable, differentiable gradient transformations.

This module only re-exports; each name lives in the module of ``adaptive_jax._src`` that
defines it.  The public namespaces are this one, :mod:`adaptive_jax.meta`,
:mod:`adaptive_jax.schedules`, :mod:`adaptive_jax.performance`,
:mod:`adaptive_jax.sharding` and :mod:`adaptive_jax.extend` (for writing blocks).
"""

from adaptive_jax import extend, meta, performance, schedules, sharding
from adaptive_jax._src.core.combine import chain
from adaptive_jax._src.core.hyperparameter import ScalarOrSchedule
from adaptive_jax._src.core.inspect import (
    HyperparameterLookupError,
    current_learning_rate,
    get_hyperparameter,
    hyperparameters,
    set_hyperparameter,
    step_count,
)
from adaptive_jax._src.core.numerics import global_norm
from adaptive_jax._src.core.protocol import StepState, Transform, apply_updates
from adaptive_jax._src.core.trees import TreeMismatchError
from adaptive_jax._src.optimizers.adadelta import adadelta
from adaptive_jax._src.optimizers.adam_family import (
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
from adaptive_jax._src.optimizers.ademamix import ademamix
from adaptive_jax._src.optimizers.adopt import adopt
from adaptive_jax._src.optimizers.classic import adagrad, rmsprop
from adaptive_jax._src.optimizers.learning_rate_free import dadapt_adamw, dog, prodigy
from adaptive_jax._src.optimizers.lion import lion
from adaptive_jax._src.optimizers.madgrad import madgrad
from adaptive_jax._src.optimizers.muon import muon
from adaptive_jax._src.optimizers.schedule_free import schedule_free_adamw, schedule_free_sgd
from adaptive_jax._src.optimizers.sgd import sgd
from adaptive_jax._src.optimizers.sign_and_normalized import normalized_gd, sign_descent
from adaptive_jax._src.performance.layout import ravel_params
from adaptive_jax._src.performance.train_step import make_train_step, update_step
from adaptive_jax._src.transforms.accumulation import MultiSteps, apply_every, skip_not_finite
from adaptive_jax._src.transforms.averaging import (
    ema_params,
    lookahead,
    parameter_ema,
    slow_params,
)
from adaptive_jax._src.transforms.clipping import clip, clip_by_global_norm
from adaptive_jax._src.transforms.combinators import (
    multi_transform,
    named_chain,
    partition,
    selective_transform,
)
from adaptive_jax._src.transforms.dual_averaging import scale_by_madgrad
from adaptive_jax._src.transforms.learning_rate_free import (
    scale_by_dadapt_adam,
    scale_by_dog,
    scale_by_prodigy,
)
from adaptive_jax._src.transforms.masking import freeze, masked, set_to_zero
from adaptive_jax._src.transforms.moments.corrections import amsgrad_max, debias
from adaptive_jax._src.transforms.moments.first import (
    ema_of_gradients,
    nesterov_ema_of_gradients,
)
from adaptive_jax._src.transforms.moments.previous_second_moment import normalize_by_previous_rms
from adaptive_jax._src.transforms.moments.second import (
    accumulate_squares,
    centered_ema_of_squares,
    ema_of_squares,
)
from adaptive_jax._src.transforms.moments.second_variants import (
    belief_second_moment,
    infinity_norm_second_moment,
    yogi_moments,
)
from adaptive_jax._src.transforms.moments.slow_ema import mix_slow_ema
from adaptive_jax._src.transforms.momentum import ema_momentum, lion_momentum, trace
from adaptive_jax._src.transforms.orthogonalize import (
    orthogonalize_via_newton_schulz,
    scale_by_muon,
)
from adaptive_jax._src.transforms.plateau import reduce_on_plateau
from adaptive_jax._src.transforms.preconditioning import (
    precondition,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_rms,
)
from adaptive_jax._src.transforms.preconditioning_variants import (
    rectified_precondition,
    scale_by_adadelta,
)
from adaptive_jax._src.transforms.regularisation import (
    add_decoupled_weight_decay,
    add_l2_regularization,
)
from adaptive_jax._src.transforms.robustness import apply_if_finite
from adaptive_jax._src.transforms.scaling import (
    normalize_by_global_norm,
    scale,
    scale_by_learning_rate,
    scale_by_sign,
)
from adaptive_jax._src.transforms.schedule_free import schedule_free, schedule_free_eval_params
from adaptive_jax._src.transforms.selection import MaskedNode, per_parameter
from adaptive_jax._src.transforms.trust_ratio import scale_by_trust_ratio

__version__ = "0.2.0"

__all__ = [
    # the protocol and composition
    "HyperparameterLookupError",
    "ScalarOrSchedule",
    "StepState",
    "Transform",
    "TreeMismatchError",
    "apply_updates",
    "chain",
    # inspection
    "current_learning_rate",
    "get_hyperparameter",
    "global_norm",
    "hyperparameters",
    "set_hyperparameter",
    "step_count",
    # building blocks
    "accumulate_squares",
    "add_decoupled_weight_decay",
    "add_l2_regularization",
    "amsgrad_max",
    "apply_if_finite",
    "belief_second_moment",
    "centered_ema_of_squares",
    "clip",
    "clip_by_global_norm",
    "debias",
    "ema_momentum",
    "ema_of_gradients",
    "ema_of_squares",
    "infinity_norm_second_moment",
    "lion_momentum",
    "mix_slow_ema",
    "nesterov_ema_of_gradients",
    "normalize_by_global_norm",
    "normalize_by_previous_rms",
    "orthogonalize_via_newton_schulz",
    "precondition",
    "rectified_precondition",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_dadapt_adam",
    "scale_by_dog",
    "scale_by_learning_rate",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_prodigy",
    "scale_by_rms",
    "scale_by_sign",
    "scale_by_trust_ratio",
    "schedule_free",
    "schedule_free_eval_params",
    "trace",
    "yogi_moments",
    # wrappers and combinators: masks, groups, accumulation, averaging, plateaus
    "MaskedNode",
    "MultiSteps",
    "apply_every",
    "ema_params",
    "freeze",
    "lookahead",
    "masked",
    "multi_transform",
    "named_chain",
    "parameter_ema",
    "partition",
    "per_parameter",
    "reduce_on_plateau",
    "selective_transform",
    "set_to_zero",
    "skip_not_finite",
    "slow_params",
    # named optimizers
    "adabelief",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "ademamix",
    "adopt",
    "amsgrad",
    "dadapt_adamw",
    "dog",
    "lamb",
    "lion",
    "madgrad",
    "muon",
    "nadam",
    "nadamw",
    "normalized_gd",
    "prodigy",
    "radam",
    "rmsprop",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "sgd",
    "sign_descent",
    "yogi",
    # the training step
    "make_train_step",
    "ravel_params",
    "update_step",
    # namespaces
    "extend",
    "meta",
    "performance",
    "schedules",
    "sharding",
]
