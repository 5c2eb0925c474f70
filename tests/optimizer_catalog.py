"""Every named optimizer, with test-friendly hyperparameters (shared by several test modules).

Each entry: name -> (factory, kwargs).  kwargs hold every numeric hyperparameter the
optimizer takes (so differentiability tests cover all of them) at values away from the
edges of their valid ranges.

Two entries need more than gradients (the tests that iterate over the catalog handle
them, each saying how):

* ``polyak_sgd`` needs the loss, ``update(grads, state, params, value=loss)``: tests that
  call ``update`` themselves pass ``value=`` (``VALUE`` where the loss is made up) to
  every optimizer (the others ignore it); those that go through a helper taking
  gradients only (``update_step``, the native step, ``flatten``, ``apply_if_finite``'s
  test runner, the benchmarks) leave it out (``NEEDS_VALUE``);
* ``noisy_sgd`` draws noise from a key in its state: its steps are reproducible, but
  not elementwise functions of the gradient the native step could translate.
"""

import jax.numpy as jnp

import adaptive_jax as aj

NAMED_OPTIMIZERS = {
    "sgd": (aj.sgd, dict(learning_rate=0.05)),
    "sgd_momentum": (aj.sgd, dict(learning_rate=0.05, momentum=0.9)),
    "sgd_nesterov": (aj.sgd, dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (aj.adagrad, dict(learning_rate=0.1, eps=1e-3)),
    "rmsprop": (aj.rmsprop, dict(learning_rate=0.01, decay=0.9, eps=1e-3)),
    "adam": (aj.adam, dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4)),
    "adamw": (
        aj.adamw,
        dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "amsgrad": (aj.amsgrad, dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4)),
    "amsgrad_raw": (
        aj.amsgrad,
        dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4, maximum_of="raw"),
    ),
    "sign_descent": (aj.sign_descent, dict(learning_rate=0.01)),
    "normalized_gd": (aj.normalized_gd, dict(learning_rate=0.01)),
    "rmsprop_centered": (
        aj.rmsprop,
        dict(learning_rate=0.01, decay=0.9, eps=1e-3, centered=True),
    ),
    "nadam": (aj.nadam, dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4)),
    "adamax": (aj.adamax, dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3)),
    # b2 = 0.9 for the next three: their meta-loss has terms in 1/(1 - b2), so a finite
    # difference in b2 needs a step well below 1 - b2.
    "adabelief": (
        aj.adabelief,
        dict(learning_rate=0.02, b1=0.8, b2=0.9, eps=1e-3, eps_root=1e-4),
    ),
    # With b2 = 0.9, rho_t is 4.58 at t = 5 and 5.39 at t = 6: no step sits near 5.
    "radam": (
        aj.radam,
        dict(learning_rate=0.02, b1=0.8, b2=0.9, eps=1e-3, eps_root=1e-4, threshold=5.0),
    ),
    "yogi": (
        aj.yogi,
        dict(
            learning_rate=0.01,
            b1=0.8,
            b2=0.9,
            eps=1e-3,
            eps_root=1e-4,
            initial_accumulator_value=1e-3,
        ),
    ),
    "lion": (aj.lion, dict(learning_rate=0.01, b1=0.9, b2=0.99, weight_decay=0.1)),
    "adadelta": (aj.adadelta, dict(learning_rate=1.0, rho=0.9, eps=1e-3, weight_decay=0.01)),
    "lamb": (
        aj.lamb,
        dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    # optax's core optimizers (tests/test_optimizers_core.py has their parity cases;
    # adamaxw and nadamw were already in adaptive_jax and tests/test_against_optax.py).
    "adamaxw": (aj.adamaxw, dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, weight_decay=0.1)),
    "adan": (
        aj.adan,
        dict(learning_rate=0.02, b1=0.8, b2=0.9, b3=0.9, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "fromage": (aj.fromage, dict(learning_rate=0.05, min_norm=1e-3)),
    "lars": (
        aj.lars,
        dict(learning_rate=0.5, weight_decay=0.1, trust_coefficient=0.02, eps=1e-3, momentum=0.9),
    ),
    "nadamw": (
        aj.nadamw,
        dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "noisy_sgd": (aj.noisy_sgd, dict(learning_rate=0.05, eta=0.01, gamma=0.55)),
    "novograd": (
        aj.novograd,
        dict(learning_rate=0.02, b1=0.9, b2=0.5, eps=1e-3, eps_root=1e-4, weight_decay=0.1),
    ),
    "optimistic_adam": (
        aj.optimistic_adam,
        dict(learning_rate=0.02, optimism=0.01, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4),
    ),
    "optimistic_adam_v2": (
        aj.optimistic_adam_v2,
        dict(learning_rate=0.02, alpha=0.9, beta=0.5, b1=0.9, b2=0.99, eps=1e-3, eps_root=1e-4),
    ),
    "optimistic_gradient_descent": (
        aj.optimistic_gradient_descent,
        dict(learning_rate=0.05, alpha=0.8, beta=0.6),
    ),
    "polyak_sgd": (aj.polyak_sgd, dict(max_learning_rate=0.5, scaling=0.8, f_min=-0.05, eps=1e-3)),
    "rprop": (
        aj.rprop,
        dict(
            learning_rate=0.01, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-3, max_step_size=0.05
        ),
    ),
    "sign_sgd": (aj.sign_sgd, dict(learning_rate=0.01)),
    "signum": (aj.signum, dict(learning_rate=0.01, beta=0.9)),
    "sm3": (aj.sm3, dict(learning_rate=0.05, momentum=0.9)),
    # A float64 momentum buffer (optax's default is float32, which rounds what finite
    # differences compare); decay_offset = 0.5 keeps t - t_0 > 0 from the first step.
    "adafactor": (
        aj.adafactor,
        dict(
            learning_rate=0.05,
            decay_rate=0.7,
            decay_offset=0.5,
            clipping_threshold=0.5,
            momentum=0.6,
            weight_decay_rate=0.02,
            eps=1e-3,
            dtype_momentum=jnp.float64,
        ),
    ),  # Not listed: lbfgs.  Its update needs value= , grad= and value_fn= (the line search),
    # which the generic suites do not pass, and its step is not elementwise (inner
    # products over all parameters), so the native step does not apply.  Its meta-
    # gradients hold only away from the line search's branch changes (accepted trial,
    # interpolation): tests/test_lbfgs.py checks them there against finite differences.
    "ademamix": (
        aj.ademamix,
        dict(
            learning_rate=0.02,
            b1=0.9,
            b2=0.99,
            b3=0.95,
            alpha=2.0,
            eps=1e-3,
            eps_root=1e-4,
            weight_decay=0.1,
        ),
    ),
    "adopt": (aj.adopt, dict(learning_rate=0.01, b1=0.9, b2=0.9, eps=1e-3)),
    # A constant learning rate: the averaging weights are then 1/t whatever weight_lr_power
    # is (its meta-gradient is 0); tests/test_recent_optimizers.py checks it with a warm-up.
    "schedule_free_adamw": (
        aj.schedule_free_adamw,
        dict(learning_rate=0.02, b1=0.9, b2=0.99, eps=1e-3, weight_decay=0.1, weight_lr_power=1.5),
    ),
    "schedule_free_sgd": (
        aj.schedule_free_sgd,
        dict(learning_rate=0.05, b1=0.9, weight_decay=0.01, weight_lr_power=1.5),
    ),
    # betas (a pair) and dog's init_step (a tuple) are left at their defaults: the
    # meta-gradient suites still differentiate every leaf, b1, b2 and init_step_value too.
    "dadapt_adamw": (
        aj.dadapt_adamw,
        dict(learning_rate=1.0, eps=1e-3, estim_lr0=1e-2, weight_decay=0.01),
    ),
    "dog": (aj.dog, dict(learning_rate=1.0, eps=1e-3, weight_decay=0.01)),
    "prodigy": (
        aj.prodigy,
        dict(
            learning_rate=1.0,
            beta3=0.9,
            eps=1e-3,
            estim_lr0=1e-2,
            estim_lr_coef=1.0,
            weight_decay=0.01,
        ),
    ),
    "madgrad": (aj.madgrad, dict(learning_rate=0.05, momentum=0.9, weight_decay=0.01, eps=1e-3)),
}

# Optimizers whose update needs the loss as ``value=`` (see the module docstring).
NEEDS_VALUE = {"polyak_sgd"}
# What tests that call ``update`` with made-up gradients pass as the loss.
VALUE = 1.0
