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
from adaptive_jax._src.optimizers.adafactor import adafactor
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
from adaptive_jax._src.optimizers.adan import adan
from adaptive_jax._src.optimizers.ademamix import ademamix
from adaptive_jax._src.optimizers.adopt import adopt
from adaptive_jax._src.optimizers.classic import adagrad, rmsprop
from adaptive_jax._src.optimizers.layerwise import fromage, lars, novograd
from adaptive_jax._src.optimizers.lbfgs import lbfgs
from adaptive_jax._src.optimizers.learning_rate_free import dadapt_adamw, dog, prodigy
from adaptive_jax._src.optimizers.lion import lion
from adaptive_jax._src.optimizers.madgrad import madgrad
from adaptive_jax._src.optimizers.muon import muon
from adaptive_jax._src.optimizers.noisy import noisy_sgd
from adaptive_jax._src.optimizers.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from adaptive_jax._src.optimizers.polyak import polyak_sgd
from adaptive_jax._src.optimizers.rprop import rprop
from adaptive_jax._src.optimizers.schedule_free import schedule_free_adamw, schedule_free_sgd
from adaptive_jax._src.optimizers.sgd import sgd
from adaptive_jax._src.optimizers.sign_and_normalized import (
    normalized_gd,
    sign_descent,
    sign_sgd,
    signum,
)
from adaptive_jax._src.optimizers.sm3 import sm3
from adaptive_jax._src.performance.layout import ravel_params
from adaptive_jax._src.performance.train_step import make_train_step, update_step
from adaptive_jax._src.transforms.accumulation import MultiSteps, apply_every, skip_not_finite
from adaptive_jax._src.transforms.averaging import (
    ema_params,
    lookahead,
    parameter_ema,
    slow_params,
)
from adaptive_jax._src.transforms.clipping import (
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
)
from adaptive_jax._src.transforms.combinators import (
    multi_transform,
    named_chain,
    partition,
    selective_transform,
)
from adaptive_jax._src.transforms.constraints import keep_params_nonnegative
from adaptive_jax._src.transforms.dual_averaging import scale_by_madgrad
from adaptive_jax._src.transforms.factored import scale_by_factored_rms, scale_by_param_block_rms
from adaptive_jax._src.transforms.learning_rate_free import (
    scale_by_dadapt_adam,
    scale_by_dog,
    scale_by_prodigy,
)
from adaptive_jax._src.transforms.linesearch import value_and_grad_from_state
from adaptive_jax._src.transforms.masking import freeze, masked, set_to_zero
from adaptive_jax._src.transforms.moments.corrections import amsgrad_max, debias
from adaptive_jax._src.transforms.moments.first import (
    ema_of_gradient_differences,
    ema_of_gradients,
    nesterov_ema_of_gradients,
)
from adaptive_jax._src.transforms.moments.previous_second_moment import normalize_by_previous_rms
from adaptive_jax._src.transforms.moments.second import (
    accumulate_squares,
    centered_ema_of_squares,
    ema_of_squares,
)
from adaptive_jax._src.transforms.moments.second_reduced import (
    per_layer_second_moment,
    sm3_second_moment,
)
from adaptive_jax._src.transforms.moments.second_variants import (
    belief_second_moment,
    infinity_norm_second_moment,
    yogi_moments,
)
from adaptive_jax._src.transforms.moments.slow_ema import mix_slow_ema
from adaptive_jax._src.transforms.momentum import (
    ema_of_updates,
    lion_momentum,
    scale_by_optimistic_gradient,
    trace,
)
from adaptive_jax._src.transforms.noise import add_noise
from adaptive_jax._src.transforms.orthogonalize import (
    orthogonalize_via_newton_schulz,
    scale_by_muon,
)
from adaptive_jax._src.transforms.per_example import per_example_global_norm_clip
from adaptive_jax._src.transforms.plateau import reduce_on_plateau
from adaptive_jax._src.transforms.preconditioning import (
    precondition,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_rms,
)
from adaptive_jax._src.transforms.preconditioning_variants import (
    infinity_norm_precondition,
    rectified_precondition,
    scale_by_adadelta,
)
from adaptive_jax._src.transforms.quasi_newton import scale_by_lbfgs
from adaptive_jax._src.transforms.regularisation import (
    add_decoupled_weight_decay,
    add_l2_regularization,
)
from adaptive_jax._src.transforms.robustness import (
    apply_if_finite,
    skip_large_updates,
    zero_nans,
)
from adaptive_jax._src.transforms.rprop import scale_by_rprop
from adaptive_jax._src.transforms.scaling import (
    normalize_by_global_norm,
    scale,
    scale_by_learning_rate,
    scale_by_polyak,
    scale_by_sign,
)
from adaptive_jax._src.transforms.schedule_free import schedule_free, schedule_free_eval_params
from adaptive_jax._src.transforms.selection import MaskedNode, per_parameter
from adaptive_jax._src.transforms.trust_ratio import fromage_step, scale_by_trust_ratio
from adaptive_jax._src.transforms.zoom_linesearch import scale_by_zoom_linesearch

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
    "adaptive_grad_clip",
    "add_decoupled_weight_decay",
    "add_l2_regularization",
    "add_noise",
    "amsgrad_max",
    "apply_if_finite",
    "belief_second_moment",
    "centered_ema_of_squares",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "debias",
    "ema_of_gradient_differences",
    "ema_of_gradients",
    "ema_of_squares",
    "ema_of_updates",
    "fromage_step",
    "infinity_norm_precondition",
    "infinity_norm_second_moment",
    "keep_params_nonnegative",
    "lion_momentum",
    "mix_slow_ema",
    "nesterov_ema_of_gradients",
    "normalize_by_global_norm",
    "normalize_by_previous_rms",
    "orthogonalize_via_newton_schulz",
    "per_example_global_norm_clip",
    "per_layer_second_moment",
    "precondition",
    "rectified_precondition",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_dadapt_adam",
    "scale_by_dog",
    "scale_by_factored_rms",
    "scale_by_lbfgs",
    "scale_by_learning_rate",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_prodigy",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_sign",
    "scale_by_trust_ratio",
    "scale_by_zoom_linesearch",
    "schedule_free",
    "schedule_free_eval_params",
    "skip_large_updates",
    "skip_not_finite",
    "sm3_second_moment",
    "trace",
    "yogi_moments",
    "zero_nans",
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
    "slow_params",
    # named optimizers
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "ademamix",
    "adopt",
    "amsgrad",
    "dadapt_adamw",
    "dog",
    "fromage",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "madgrad",
    "muon",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "normalized_gd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "prodigy",
    "radam",
    "rmsprop",
    "rprop",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "sgd",
    "sign_descent",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
    # the training step
    "make_train_step",
    "ravel_params",
    "update_step",
    "value_and_grad_from_state",
    # namespaces
    "extend",
    "meta",
    "performance",
    "schedules",
    "sharding",
]
