"""Invalid configuration is rejected up front; traced hyperparameters are left alone.

Every public constructor of adaptive_jax (blocks, named optimizers, schedules, the meta
optimizers) is audited by introspection: for each hyperparameter it takes, concrete
invalid values must raise a ``ValueError`` that names the argument, the value and the
allowed range.  New constructors with one of the known argument names are picked up
automatically.

(Longer than our usual module: its second half is the catalogue of bad inputs that
``docs/bad_inputs.md`` shows, kept next to the checks so the table is always observed.)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from adaptive_jax import schedules
from tests.optimizer_catalog import NAMED_OPTIMIZERS

# argument name -> (allowed ranges as printed by the checks, invalid values).  A block may
# narrow a range (adadelta needs eps > 0), so each rule lists the ranges it accepts.
DECAY = (("[0.0, 1.0)",), [1.0, -0.1, 1.5, math.nan])
NONNEGATIVE = (("[0.0, inf)", "(0.0, inf)"), [-1e-3, math.inf, math.nan])
FINITE = (("[-inf, inf)",), [math.nan, math.inf, -math.inf])
RULES = {
    "b1": DECAY,
    "b2": DECAY,
    "b3": DECAY,
    "beta3": DECAY,
    "decay": DECAY,
    "momentum": DECAY,
    "rho": DECAY,
    "eps": NONNEGATIVE,
    "eps_root": NONNEGATIVE,
    "weight_decay": NONNEGATIVE,
    "initial_accumulator_value": NONNEGATIVE,
    "decay_rate": NONNEGATIVE,
    "decay_offset": NONNEGATIVE,
    "weight_decay_rate": NONNEGATIVE,
    "min_norm": NONNEGATIVE,
    "trust_coefficient": NONNEGATIVE,
    "hypergrad_lr": NONNEGATIVE,
    # ademamix's alpha is non-negative, optimistic_gradient_descent's any finite number.
    "alpha": (("[0.0, inf)", "[-inf, inf)"), [math.nan, math.inf]),
    "weight_lr_power": NONNEGATIVE,
    "learning_rate": FINITE,
    # scale's factor is any finite number; reduce_on_plateau's a fraction in (0, 1).
    "factor": (("[-inf, inf)", "(0.0, 1.0)"), [math.nan, math.inf, -math.inf]),
    "max_norm": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
    "estim_lr0": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
    "estim_lr_coef": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
    # A range particular to one constructor (radam): only non-finite values are shared.
    "threshold": (None, [math.nan, math.inf]),
    # optax's core optimizers (adan, noisy_sgd, optimistic_*, polyak_sgd, rprop); b3 above.
    # signum's beta is a decay rate, optimistic_gradient_descent's any finite number.
    "beta": (("[0.0, 1.0)", "[-inf, inf)"), [math.nan, math.inf]),
    "eta": NONNEGATIVE,
    "gamma": NONNEGATIVE,
    "optimism": FINITE,
    "eta_minus": (("(0.0, 1.0)",), [0.0, 1.0, -0.5, math.nan]),
    "eta_plus": (("(1.0, inf)",), [1.0, 0.5, math.inf, math.nan]),
    "min_step_size": NONNEGATIVE,
    "max_step_size": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
    "max_learning_rate": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
    "scaling": FINITE,
    "f_min": FINITE,
    "clipping_threshold": (("(0.0, inf)",), [0.0, -1.0, math.inf, math.nan]),
}
# Valid values for required arguments, so that the other arguments can be tested.
REQUIRED = {"learning_rate": 0.1, "factor": 2.0}


def public_constructors():
    """Every public function of adaptive_jax (and adaptive_jax.meta) taking a known argument."""
    modules = [aj] + ([aj.meta] if hasattr(aj, "meta") else [])
    found = {}
    for module in modules:
        for name in sorted(dir(module)):
            function = getattr(module, name)
            is_block = inspect.isclass(function) and issubclass(function, aj.Transform)
            if not (inspect.isfunction(function) or is_block) or name[0].isupper():
                continue
            parameters = inspect.signature(function).parameters
            required = [
                p
                for p, spec in parameters.items()
                if spec.default is inspect.Parameter.empty
                and spec.kind is not inspect.Parameter.VAR_POSITIONAL
            ]
            if any(p not in REQUIRED for p in required):
                continue  # needs arguments we cannot invent (loss functions, ...)
            if any(p in RULES for p in parameters):
                found[f"{module.__name__}.{name}"] = function
    return found


CONSTRUCTORS = public_constructors()


def call_with(function, **overrides):
    parameters = inspect.signature(function).parameters
    kwargs = {
        p: REQUIRED[p]
        for p, spec in parameters.items()
        if spec.default is inspect.Parameter.empty and p in REQUIRED
    }
    kwargs.update(overrides)
    return function(**kwargs)


CASES = [
    pytest.param(qualname, argument, bad, id=f"{qualname.split('.')[-1]}-{argument}={bad}")
    for qualname, function in CONSTRUCTORS.items()
    for argument in inspect.signature(function).parameters
    if argument in RULES
    for bad in RULES[argument][1]
]


def test_the_audit_sees_every_named_optimizer_and_block():
    names = {q.split(".")[-1] for q in CONSTRUCTORS}
    catalog = {factory.__name__ for factory, _ in NAMED_OPTIMIZERS.values()}
    assert catalog <= names, catalog - names
    assert {"ema_of_squares", "precondition", "trace", "scale_by_learning_rate"} <= names


def test_every_numeric_catalog_hyperparameter_has_a_rule():
    for name, (_, kwargs) in NAMED_OPTIMIZERS.items():
        for argument, value in kwargs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert argument in RULES, f"{name}: no validation rule for {argument!r}"


@pytest.mark.parametrize("qualname, argument, bad", CASES)
def test_constructor_rejects_invalid_hyperparameter(qualname, argument, bad):
    allowed, _ = RULES[argument]
    with pytest.raises(ValueError) as error:
        call_with(CONSTRUCTORS[qualname], **{argument: bad})
    message = str(error.value)
    assert f"{argument}={float(bad)!r}" in message
    if allowed is not None:
        assert any(f"expected a finite number in {r}" in message for r in allowed), message


@pytest.mark.parametrize("qualname", sorted(CONSTRUCTORS))
def test_constructor_accepts_the_edges_of_the_ranges(qualname):
    # b = 0, eps = 0 and a negative learning rate (ascent) are valid; a constructor that
    # narrows eps to (0, inf) must say so, and then accepts a tiny positive eps.
    function = CONSTRUCTORS[qualname]
    overrides = {}
    for argument in inspect.signature(function).parameters:
        rule = RULES.get(argument)
        if rule is DECAY or rule is NONNEGATIVE:
            overrides[argument] = 0.0
        elif rule is FINITE:
            overrides[argument] = -0.5
    for _ in range(len(overrides) + 1):
        try:
            call_with(function, **overrides)
            return
        except ValueError as error:
            narrowed = [a for a in overrides if f"{a}=0.0 is invalid" in str(error)]
            assert narrowed and "(0.0, inf)" in str(error), str(error)
            overrides[narrowed[0]] = 1e-30


def test_per_parameter_hyperparameter_tree_is_checked_leaf_by_leaf():
    with pytest.raises(ValueError, match=r"weight_decay\['b'\]=-1\.0 is invalid"):
        aj.adamw(weight_decay={"w": 0.1, "b": -1.0})
    with pytest.raises(ValueError, match=r"learning_rate\['b'\]=nan"):
        aj.sgd({"w": 0.1, "b": float("nan")})


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: aj.adam(b1=jnp.array([0.5, 0.9])), "b1"),
        (lambda: aj.sgd(jnp.array([0.1, 0.2])), "learning_rate"),
        (lambda: aj.clip_by_global_norm(jnp.array([1.0, 2.0])), "max_norm"),
    ],
)
def test_array_hyperparameters_are_rejected_naming_the_argument(build, name):
    # An array would be applied entry by entry and could change the update's shape;
    # per-parameter values are a pytree, and a population is built inside vmap.
    with pytest.raises(ValueError, match=rf"{name} has shape \(2,\): expected a scalar"):
        build()


def test_a_population_is_built_inside_vmap_not_from_arrays():
    population = jax.vmap(lambda b1: aj.adam(b1=b1))(jnp.array([0.0, 0.5, 0.999]))
    np.testing.assert_array_equal(aj.get_hyperparameter(population, "b1"), [0.0, 0.5, 0.999])


def test_bool_learning_rate_is_rejected():
    with pytest.raises(TypeError, match="learning_rate=True is invalid.*got a bool"):
        aj.sgd(True)


def test_eps_that_rounds_to_zero_in_float32_is_rejected():
    assert float(np.float32(1e-50)) == 0.0
    with pytest.raises(ValueError, match=r"eps=1e-50 is invalid: it rounds to 0 in float32"):
        aj.adam(eps=1e-50)
    aj.adam(eps=1e-40)  # a float32 subnormal: representable, accepted
    aj.adam(eps=0.0)  # 0 on purpose is fine


def test_decay_rates_are_not_schedules():
    with pytest.raises(TypeError, match="b1 cannot be a schedule here"):
        aj.adam(b1=lambda step: 0.9)


def test_hyperparameter_rounding_to_one_in_its_dtype_is_rejected():
    # 0.999 has no bfloat16 neighbour below 1: the EMA would never forget.
    assert float(jnp.bfloat16(0.999)) == 1.0
    with pytest.raises(ValueError, match=r"b2=1\.0 is invalid"):
        aj.adam(b2=jnp.bfloat16(0.999))


@pytest.mark.parametrize(
    "bad, error, excerpt",
    [
        (None, TypeError, "learning_rate=None is invalid"),
        ("0.1", TypeError, "learning_rate='0.1' is invalid: expected a number"),
        (0.1 + 0.5j, TypeError, "expected a real number"),
    ],
    ids=["none", "string", "complex"],
)
def test_learning_rate_of_the_wrong_type_is_rejected(bad, error, excerpt):
    with pytest.raises(error, match=excerpt.replace("(", r"\(").replace(".", r"\.")):
        aj.adam(learning_rate=bad)


def test_schedule_returning_a_non_scalar_is_rejected_at_construction():
    with pytest.raises(ValueError, match="learning_rate: a schedule must return a scalar"):
        aj.sgd(lambda step: jnp.ones(3) * 0.1)
    with pytest.raises(ValueError, match=r"weight_decay\['w'\]: a schedule must return a scalar"):
        aj.adamw(weight_decay={"w": lambda step: jnp.zeros(2)})


def test_schedule_returning_a_complex_number_is_rejected():
    with pytest.raises(TypeError, match="learning_rate: a schedule must return a real number"):
        aj.sgd(lambda step: jnp.asarray(0.1, jnp.complex64))


def stepwise(step):  # Python `if` on the step: not traceable, fine when eager
    return 0.1 if int(step) < 10 else 0.01


def test_schedule_with_python_control_flow_works_eagerly():
    tx = aj.sgd(stepwise)  # accepted: eager updates call it with a concrete step
    updates, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    np.testing.assert_array_equal(updates, [-0.1, -0.1])


def test_schedule_with_python_control_flow_names_itself_when_traced():
    tx = aj.sgd(stepwise)
    with pytest.raises(
        TypeError,
        match=r"learning_rate: the schedule <function stepwise.*not traceable.*jnp\.where",
    ):
        jax.jit(tx.update)(jnp.ones(2), tx.init(jnp.zeros(2)))


@pytest.mark.parametrize(
    "build, excerpt",
    [
        (lambda: schedules.constant(math.inf), "value=inf is invalid"),
        (lambda: schedules.exponential_decay(1.0, 0.0), "decay_rate=0.0 is invalid"),
        (lambda: schedules.exponential_decay(1.0, 0.5, 0), "transition_steps=0 is invalid"),
        (lambda: schedules.cosine_decay(1.0, 0), "decay_steps=0 is invalid"),
        (lambda: schedules.cosine_decay(1.0, 10, alpha=1.5), "alpha=1.5 is invalid"),
        (lambda: schedules.linear_schedule(math.nan, 0.0, 10), "init_value=nan is invalid"),
        (lambda: schedules.linear_warmup(1.0, 0), "transition_steps=0 is invalid"),
        (lambda: schedules.inverse_sqrt(math.nan), "init_value=nan is invalid"),
        (lambda: schedules.warmup_cosine_decay(math.inf, 5, 10), "is invalid"),
        (
            lambda: schedules.join_schedules([schedules.constant(1.0)], [5]),
            "needs one more schedule than boundaries",
        ),
        (
            lambda: schedules.join_schedules([schedules.constant(1.0)] * 3, [5, 2]),
            "boundaries must be increasing",
        ),
    ],
)
def test_schedule_constructor_rejects_invalid_arguments(build, excerpt):
    with pytest.raises(ValueError, match=excerpt.replace("(", r"\(")):
        build()


def test_apply_if_finite_rejects_a_negative_or_non_integer_limit():
    with pytest.raises(ValueError, match=r"max_consecutive_errors=-1 is invalid"):
        aj.apply_if_finite(aj.sgd(0.1), max_consecutive_errors=-1)
    with pytest.raises(TypeError, match=r"max_consecutive_errors=2\.5 is invalid"):
        aj.apply_if_finite(aj.sgd(0.1), max_consecutive_errors=2.5)


# -- traced values are not checked and do not break tracing --------------------------------


def adam_first_update(b1, b2, learning_rate):
    tx = aj.adam(learning_rate, b1=b1, b2=b2, eps=1e-3)
    params = jnp.array([1.0, -2.0])
    grads = jnp.array([0.5, 3.0])
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates


def adam_first_update_by_hand(b1, b2, learning_rate):
    g = np.array([0.5, 3.0])
    m_hat = (1 - b1) * g / (1 - b1)
    v_hat = (1 - b2) * g**2 / (1 - b2)
    return -learning_rate * m_hat / (np.sqrt(v_hat) + 1e-3)


def test_constructing_inside_jit_uses_the_traced_values():
    out = jax.jit(adam_first_update)(0.8, 0.9, 0.1)
    np.testing.assert_allclose(out, adam_first_update_by_hand(0.8, 0.9, 0.1), rtol=1e-12)


def test_constructing_inside_vmap_maps_over_the_values():
    rates = jnp.array([0.1, 0.2, 0.3])
    out = jax.jit(jax.vmap(adam_first_update, in_axes=(None, None, 0)))(0.8, 0.9, rates)
    expected = np.stack([adam_first_update_by_hand(0.8, 0.9, r) for r in [0.1, 0.2, 0.3]])
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_constructing_inside_grad_differentiates_through_the_values():
    # d/d lr of sum(update) = sum(update) / lr for the first step.
    grad = jax.jit(jax.grad(lambda lr: jnp.sum(adam_first_update(0.8, 0.9, lr))))(0.1)
    expected = np.sum(adam_first_update_by_hand(0.8, 0.9, 0.1)) / 0.1
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_invalid_traced_values_are_not_checked():
    # Documented behaviour: a traced b1 = 1.0 cannot be inspected, so it is accepted.
    tx = jax.jit(lambda b1: aj.adam(b1=b1))(1.0)
    assert float(aj.get_hyperparameter(tx, "b1")) == 1.0


def test_unflattening_a_transform_skips_validation():
    # jax rebuilds transforms with placeholder leaves; that must not trip the checks.
    leaves, treedef = jax.tree_util.tree_flatten(aj.adam())
    rebuilt = jax.tree_util.tree_unflatten(treedef, [object()] * len(leaves))
    assert type(rebuilt) is type(aj.adam())


# -- the table of bad inputs in docs/bad_inputs.md -----------------------------------------
#
# Each row is run here and its observed result checked: an exception of the given type
# whose message contains the excerpt, or a documented behaviour that ``holds`` verifies.
# ``python -m tests.test_validation`` rewrites the table in docs/bad_inputs.md.

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad_inputs.md"
BEGIN, END = "<!-- begin generated table -->", "<!-- end generated table -->"
PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.asarray(0.25)}
GRADS = {"w": jnp.array([0.5, 1.0, -1.5]), "b": jnp.asarray(0.1)}


class BadInput(NamedTuple):
    area: str
    tried: str  # Markdown: what was passed
    run: Callable[[], Any]
    error: type[Exception] | None  # the exception raised, or None: it runs
    outcome: str  # the message excerpt, or the documented behaviour
    holds: Callable[[Any], bool] | None = None  # checks that behaviour on run()'s result


def step(tx, grads=GRADS, params=PARAMS):
    return tx.update(grads, tx.init(params), params)


def two_steps(tx, first_grads):
    """Updates and states of a step with ``first_grads`` and a step with ordinary gradients."""
    params = jnp.ones_like(first_grads)
    state = tx.init(params)
    first, state_1 = tx.update(first_grads, state, params)
    second, state_2 = tx.update(jnp.ones_like(first_grads), state_1, params)
    return [(first, state_1), (second, state_2)]


def with_grad(**changes):
    return {**GRADS, **changes}


def finite(tree):
    return all(
        np.all(np.isfinite(np.asarray(x, np.float64))) for x in jax.tree_util.tree_leaves(tree)
    )


BAD_INPUTS = [
    # hyperparameters
    BadInput(
        "hyperparameter",
        "β = 1: `adam(b1=1.0)`",
        lambda: aj.adam(b1=1.0),
        ValueError,
        "b1=1.0 is invalid: expected a finite number in [0.0, 1.0)",
    ),
    BadInput(
        "hyperparameter",
        "negative β₂: `adam(b2=-0.1)`",
        lambda: aj.adam(b2=-0.1),
        ValueError,
        "b2=-0.1 is invalid: expected a finite number in [0.0, 1.0)",
    ),
    BadInput(
        "hyperparameter",
        "β₂ that rounds to 1 in its dtype: `adam(b2=jnp.bfloat16(0.999))`",
        lambda: aj.adam(b2=jnp.bfloat16(0.999)),
        ValueError,
        "b2=1.0 is invalid",
    ),
    BadInput(
        "hyperparameter",
        "momentum = 1: `sgd(0.1, momentum=1.0)`",
        lambda: aj.sgd(0.1, momentum=1.0),
        ValueError,
        "momentum=1.0 is invalid",
    ),
    BadInput(
        "hyperparameter",
        "`rmsprop(decay=1.0)`",
        lambda: aj.rmsprop(decay=1.0),
        ValueError,
        "decay=1.0 is invalid: expected a finite number in [0.0, 1.0)",
    ),
    BadInput(
        "hyperparameter",
        "negative ε: `adam(eps=-1e-8)`",
        lambda: aj.adam(eps=-1e-8),
        ValueError,
        "eps=-1e-08 is invalid: expected a finite number in [0.0, inf)",
    ),
    BadInput(
        "hyperparameter",
        "negative ε_root: `adam(eps_root=-1.0)`",
        lambda: aj.adam(eps_root=-1.0),
        ValueError,
        "eps_root=-1.0 is invalid",
    ),
    BadInput(
        "hyperparameter",
        "negative weight decay: `adamw(weight_decay=-0.01)`",
        lambda: aj.adamw(weight_decay=-0.01),
        ValueError,
        "weight_decay=-0.01 is invalid: expected a finite number in [0.0, inf)",
    ),
    BadInput(
        "hyperparameter",
        "one bad leaf of a per-parameter tree: `adamw(weight_decay={'w': 0.1, 'b': -1.0})`",
        lambda: aj.adamw(weight_decay={"w": 0.1, "b": -1.0}),
        ValueError,
        "weight_decay['b']=-1.0 is invalid",
    ),
    BadInput(
        "hyperparameter",
        "NaN learning rate: `adam(float('nan'))`",
        lambda: aj.adam(float("nan")),
        ValueError,
        "learning_rate=nan is invalid: expected a finite number in [-inf, inf)",
    ),
    BadInput(
        "hyperparameter",
        "infinite learning rate: `sgd(float('inf'))`",
        lambda: aj.sgd(float("inf")),
        ValueError,
        "learning_rate=inf is invalid",
    ),
    BadInput(
        "hyperparameter",
        "`adam(learning_rate=None)`",
        lambda: aj.adam(None),
        TypeError,
        "learning_rate=None is invalid: expected a number, a schedule or a per-parameter pytree",
    ),
    BadInput(
        "hyperparameter",
        "a string: `adam('1e-3')`",
        lambda: aj.adam("1e-3"),
        TypeError,
        "learning_rate='1e-3' is invalid: expected a number, a schedule or a per-parameter",
    ),
    BadInput(
        "hyperparameter",
        "complex β₁: `adam(b1=0.5 + 1j)`",
        lambda: aj.adam(b1=0.5 + 1j),
        TypeError,
        "b1=(0.5+1j) is invalid: expected a real number",
    ),
    BadInput(
        "hyperparameter",
        "an array: `adam(b1=jnp.array([0.9, 0.95]))`",
        lambda: aj.adam(b1=jnp.array([0.9, 0.95])),
        ValueError,
        "b1 has shape (2,): expected a scalar",
    ),
    BadInput(
        "hyperparameter",
        "a vector learning rate: `sgd(jnp.array([0.1, 0.2]))`",
        lambda: aj.sgd(jnp.array([0.1, 0.2])),
        ValueError,
        "learning_rate has shape (2,): expected a scalar (a number, a schedule or a "
        "per-parameter pytree of them); per-parameter values are a pytree shaped like the "
        "parameters",
    ),
    BadInput(
        "hyperparameter",
        "a list of decay rates for dict parameters: `adam(b1=[0.9, 0.95])`",
        lambda: step(aj.adam(b1=[0.9, 0.95]))[0],
        aj.TreeMismatchError,
        "b1 is a per-parameter tree that is not a prefix of the parameters",
    ),
    BadInput(
        "hyperparameter",
        "a bool: `sgd(True)`",
        lambda: aj.sgd(True),
        TypeError,
        "learning_rate=True is invalid: expected a number, a schedule or a per-parameter "
        "pytree of them, got a bool",
    ),
    BadInput(
        "hyperparameter",
        "an ε that rounds to 0 in float32: `adam(eps=1e-50)`",
        lambda: aj.adam(eps=1e-50),
        ValueError,
        "eps=1e-50 is invalid: it rounds to 0 in float32",
    ),
    BadInput(
        "hyperparameter",
        "an array `max_norm`: `clip_by_global_norm(jnp.array([1.0, 2.0]))`",
        lambda: aj.clip_by_global_norm(jnp.array([1.0, 2.0])),
        ValueError,
        "max_norm has shape (2,): expected a scalar (a number)",
    ),
    BadInput(
        "hyperparameter",
        "a decay rate given as a schedule: `adam(b1=lambda step: 0.9)`",
        lambda: aj.adam(b1=lambda step: 0.9),
        TypeError,
        "b1 cannot be a schedule here",
    ),
    BadInput(
        "hyperparameter",
        "a schedule returning a complex number: `sgd(lambda step: jnp.asarray(0.1, jnp.complex64))`",
        lambda: aj.sgd(lambda step: jnp.asarray(0.1, jnp.complex64)),
        TypeError,
        "learning_rate: a schedule must return a real number, got dtype complex",
    ),
    BadInput(
        "hyperparameter",
        "a schedule with a Python `if` on the step, under `jit`",
        lambda: jax.jit(lambda: step(aj.sgd(lambda s: 0.1 if s < 10 else 0.01))[0])(),
        TypeError,
        "learning_rate: the schedule <function <lambda>",
    ),
    BadInput(
        "hyperparameter",
        "a schedule returning a vector: `sgd(lambda step: jnp.ones(3))`",
        lambda: aj.sgd(lambda step: jnp.ones(3)),
        ValueError,
        "learning_rate: a schedule must return a scalar, got shape (3,)",
    ),
    BadInput(
        "hyperparameter",
        "`clip_by_global_norm(0.0)`",
        lambda: aj.clip_by_global_norm(0.0),
        ValueError,
        "max_norm=0.0 is invalid: expected a finite number in (0.0, inf)",
    ),
    BadInput(
        "hyperparameter",
        "`scale(float('nan'))`",
        lambda: aj.scale(float("nan")),
        ValueError,
        "factor=nan is invalid",
    ),
    BadInput(
        "hyperparameter",
        "`apply_if_finite(adam(), max_consecutive_errors=-1)`",
        lambda: aj.apply_if_finite(aj.adam(), -1),
        ValueError,
        "max_consecutive_errors=-1 is invalid: expected an int >= 0",
    ),
    BadInput(
        "hyperparameter",
        "`schedules.cosine_decay(1.0, decay_steps=0)`",
        lambda: schedules.cosine_decay(1.0, 0),
        ValueError,
        "decay_steps=0 is invalid: expected an int >= 1",
    ),
    BadInput(
        "hyperparameter",
        "`schedules.exponential_decay(1.0, decay_rate=0.0)`",
        lambda: schedules.exponential_decay(1.0, 0.0),
        ValueError,
        "decay_rate=0.0 is invalid: expected a finite number in (0.0, inf)",
    ),
    BadInput(
        "hyperparameter",
        "`schedules.join_schedules([constant(1.0)], [5])`",
        lambda: schedules.join_schedules([schedules.constant(1.0)], [5]),
        ValueError,
        "join_schedules needs one more schedule than boundaries",
    ),
    BadInput(
        "hyperparameter",
        "not a transformation: `chain(3)`",
        lambda: aj.chain(3),
        TypeError,
        "chain member 0 must be a gradient transformation (an object with init and update",
    ),
    BadInput(
        "hyperparameter",
        "an invalid value that is traced: `jax.jit(lambda b1: adam(b1=b1))(1.0)`",
        lambda: jax.jit(lambda b1: aj.adam(b1=b1))(1.0),
        None,
        "not checked (a traced value cannot be inspected); accepted as given",
        lambda tx: float(aj.get_hyperparameter(tx, "b1")) == 1.0,
    ),
    BadInput(
        "hyperparameter",
        "negative learning rate: `sgd(-0.1)`",
        lambda: step(aj.sgd(-0.1))[0],
        None,
        "accepted: gradient ascent, u = +0.1 g",
        lambda u: np.allclose(u["w"], 0.1 * GRADS["w"], rtol=1e-15),
    ),
    BadInput(
        "hyperparameter",
        "the edges β₁ = β₂ = ε = 0: `adam(0.1, 0.0, 0.0, 0.0)`, gradient `[0, 2, -3]`",
        lambda: step(aj.adam(0.1, 0.0, 0.0, 0.0), jnp.array([0.0, 2.0, -3.0]), jnp.ones(3))[0],
        None,
        "accepted: sign descent, u = -0.1 sign(g); a zero gradient gives 0, not 0/0",
        lambda u: np.array_equal(u, [0.0, -0.1, 0.1]),
    ),
    # trees
    BadInput(
        "tree",
        "a gradient missing (`'b'` left out)",
        lambda: step(aj.adam(), {"w": GRADS["w"]}),
        aj.TreeMismatchError,
        "updates and params have different structures at ['b']: "
        "updates has nothing, params has float64[]",
    ),
    BadInput(
        "tree",
        "an extra gradient `'c'`",
        lambda: step(aj.adam(), with_grad(c=jnp.ones(2))),
        aj.TreeMismatchError,
        "different structures at ['c']: updates has float64[2], params has nothing",
    ),
    BadInput(
        "tree",
        "`None` gradient for an array parameter",
        lambda: step(aj.adam(), with_grad(b=None)),
        aj.TreeMismatchError,
        "different structures at ['b']: updates has None, params has float64[]",
    ),
    BadInput(
        "tree",
        "a list of gradients for a dict of parameters",
        lambda: step(aj.adam(), [GRADS["b"], GRADS["w"]]),
        aj.TreeMismatchError,
        "different structures at <root>: updates has a list node",
    ),
    BadInput(
        "tree",
        "a gradient of the wrong shape",
        lambda: step(aj.adam(), with_grad(w=jnp.ones(4))),
        aj.TreeMismatchError,
        "updates and params differ at ['w']: updates has float64[4], params has float64[3]",
    ),
    BadInput(
        "tree",
        "a gradient of the wrong dtype (float32 for float64 parameters)",
        lambda: step(aj.adam(), with_grad(w=jnp.ones(3, jnp.float32))),
        aj.TreeMismatchError,
        "updates and params differ at ['w']: updates has float32[3], params has float64[3]",
    ),
    BadInput(
        "tree",
        "`update(grads, state)` without params, state built for other shapes",
        lambda: aj.adam().update(with_grad(w=jnp.ones(4)), aj.adam().init(PARAMS)),
        aj.TreeMismatchError,
        "mu and updates differ at ['w']: mu has float64[3], updates has float64[4]",
    ),
    BadInput(
        "tree",
        "a stateless optimizer, no params, gradients of another shape",
        lambda: aj.sgd(0.1).update(jnp.ones(4), aj.sgd(0.1).init(jnp.ones(3)))[0],
        None,
        "accepted: there is nothing to compare against",
        lambda u: u.shape == (4,),
    ),
    BadInput(
        "tree",
        "the state of another optimizer (sgd's for adam)",
        lambda: aj.adam().update(GRADS, aj.sgd(0.1).init(PARAMS), PARAMS),
        ValueError,
        "chain of 5 transforms got a state with 1 entries",
    ),
    BadInput(
        "tree",
        "an optax state",
        lambda: aj.adam().update(GRADS, optax.adam(0.1).init(PARAMS), PARAMS),
        TypeError,
        "Chain.update expects the state returned by its init (a StepState), got tuple",
    ),
    BadInput(
        "tree",
        "`adamw().update(grads, state)` without params",
        lambda: aj.adamw().update(GRADS, aj.adamw().init(PARAMS)),
        ValueError,
        "add_decoupled_weight_decay needs the parameters",
    ),
    BadInput(
        "tree",
        "integer parameters: `adam().init(jnp.array([1, 2]))`",
        lambda: aj.adam().init(jnp.array([1, 2])),
        TypeError,
        "params at <root> has dtype int64: optimizers need floating-point or complex",
    ),
    BadInput(
        "tree",
        "integer gradients: `sgd(0.1).update(jnp.array([1, 2]), state)`",
        lambda: aj.sgd(0.1).update(jnp.array([1, 2]), aj.sgd(0.1).init(jnp.ones(2))),
        TypeError,
        "updates at <root> has dtype int64",
    ),
    BadInput(
        "tree",
        "a string as gradient",
        lambda: aj.sgd(0.1).update("abc", aj.sgd(0.1).init(jnp.ones(2))),
        TypeError,
        "updates at <root> is 'abc', which is not an array",
    ),
    BadInput(
        "tree",
        "an empty tree `{}`",
        lambda: step(aj.adam(), {}, {}),
        None,
        "accepted: no updates, the step counter advances",
        lambda out: out[0] == {} and int(out[1].count) == 1,
    ),
    BadInput(
        "tree",
        "a 0-d parameter",
        lambda: step(aj.adam(0.1), jnp.asarray(2.0), jnp.asarray(1.0))[0],
        None,
        "accepted",
        lambda u: np.isclose(u, -0.1),
    ),
    BadInput(
        "tree",
        "Python floats as parameter and gradient",
        lambda: aj.adam(0.1).update(2.0, aj.adam(0.1).init(1.0), 1.0)[0],
        None,
        "accepted (converted to arrays)",
        lambda u: np.isclose(u, -0.1),
    ),
    BadInput(
        "tree",
        "`None` in both parameters and gradients",
        lambda: step(aj.adam(0.1), with_grad(b=None), {**PARAMS, "b": None}),
        None,
        "accepted: the leaf is skipped (None update, None state)",
        lambda out: out[0]["b"] is None and out[1].inner[0].mu["b"] is None,
    ),
    # numerics
    BadInput(
        "numerics",
        "a NaN gradient entry (adam)",
        lambda: step(aj.adam(0.1), with_grad(w=jnp.array([jnp.nan, 1.0, 1.0]))),
        None,
        "NaN update and NaN moments for that entry, others unaffected; wrap in `apply_if_finite`",
        lambda out: (
            np.isnan(out[0]["w"][0])
            and np.isnan(out[1].inner[0].mu["w"][0])
            and finite(out[0]["w"][1:])
        ),
    ),
    BadInput(
        "numerics",
        "a NaN gradient entry with ε = 0: `adam(0.1, eps=0.0)`",
        lambda: step(aj.adam(0.1, eps=0.0), with_grad(w=jnp.array([jnp.nan, 1.0, 1.0])))[0],
        None,
        "NaN update for that entry: the 0/0 → 0 rule applies to exact zeros only",
        lambda u: np.isnan(u["w"][0]) and finite(u["w"][1:]),
    ),
    BadInput(
        "numerics",
        "an infinite gradient entry (adam)",
        lambda: step(aj.adam(0.1), with_grad(w=jnp.array([jnp.inf, 1.0, 1.0])))[0],
        None,
        "NaN update for that entry (inf/inf); wrap in `apply_if_finite`",
        lambda u: np.isnan(u["w"][0]) and finite(u["w"][1:]),
    ),
    BadInput(
        "numerics",
        "a NaN gradient with `apply_if_finite(adam(0.1))`",
        lambda: step(aj.apply_if_finite(aj.adam(0.1)), with_grad(b=jnp.asarray(jnp.nan))),
        None,
        "zero updates, inner state unchanged, `total_notfinite` = 1",
        lambda out: (
            not any(np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(out[0]))
            and int(out[1].inner.total_notfinite) == 1
            and int(out[1].inner.inner_state.count) == 0
        ),
    ),
    BadInput(
        "numerics",
        "a schedule that returns NaN at run time",
        lambda: step(aj.sgd(lambda s: jnp.nan * s.astype(jnp.float64)))[0],
        None,
        "not checked (values are only known during training): NaN updates",
        lambda u: np.isnan(u["w"]).all(),
    ),
    BadInput(
        "numerics",
        "a huge gradient whose square overflows (float32 `1e30`), then a normal one",
        lambda: two_steps(aj.adam(0.1), jnp.array([1e30, 1.0], jnp.float32)),
        None,
        "v = inf: the update of that entry is 0, and stays 0 afterwards (v never recovers); "
        "clip first with `clip_by_global_norm`",
        lambda outs: (
            all(u[0] == 0 and np.isinf(s.inner[1].nu[0]) for u, s in outs)
            and finite([u for u, _ in outs])
        ),
    ),
    BadInput(
        "numerics",
        "a tiny gradient whose square underflows (float64 `1e-300`)",
        lambda: step(aj.adam(0.1), jnp.array([1e-300, 1.0]), jnp.ones(2))[0],
        None,
        "v = 0: the step is -lr m̂/ε = -1e-293, finite",
        lambda u: np.isclose(u[0], -1e-293),
    ),
    BadInput(
        "numerics",
        "float16 parameters, default ε = 1e-8, (1-β₂)g² underflows (g = 1e-5; g = 3e-3)",
        lambda: step(
            aj.adam(1e-3), jnp.array([1e-5, 3e-3, 0.0], jnp.float16), jnp.ones(3, jnp.float16)
        )[0],
        None,
        "ε is applied in float32, so the step is lr·m̂/ε: finite (-1.0) while m̂/ε fits "
        "float16, -inf beyond (g = 3e-3); zero gradient: 0. Use `nu_dtype=jnp.float32` "
        "or ε ≥ 1e-4 with float16 moments",
        lambda u: np.isclose(u[0], -1.0, rtol=2e-2) and np.isinf(u[1]) and u[2] == 0,
    ),
    BadInput(
        "numerics",
        "bfloat16 parameters with float32 updates in `apply_updates`",
        lambda: aj.apply_updates(jnp.ones(2, jnp.bfloat16), jnp.full(2, 0.5, jnp.float32)),
        None,
        "accepted: the sum is formed in float32 and cast back to bfloat16",
        lambda p: p.dtype == jnp.bfloat16 and np.all(np.asarray(p, np.float64) == 1.5),
    ),
    BadInput(
        "numerics",
        "complex parameters",
        lambda: step(aj.adam(0.1), jnp.array([3.0 + 4.0j]), jnp.array([1.0 + 0.0j])),
        None,
        "accepted: the second moment is the real |g|²; pass `jnp.conj(jax.grad(f)(z))`",
        lambda out: (
            out[1].inner[1].nu.dtype == jnp.float64 and np.isclose(out[0][0], -0.1 * (0.6 + 0.8j))
        ),
    ),
    BadInput(
        "numerics",
        "a step counter at the int32 maximum",
        lambda: (
            aj.adam(0.1)
            .update(
                GRADS,
                aj.adam(0.1)
                .init(PARAMS)
                ._replace(count=jnp.asarray(np.iinfo(np.int32).max, jnp.int32)),
                PARAMS,
            )[1]
            .count
        ),
        None,
        "saturates at 2³¹-1 instead of wrapping to a negative step",
        lambda count: int(count) == np.iinfo(np.int32).max,
    ),
    # the donating step helpers
    BadInput(
        "step helper",
        "parameters used again after `update_step` consumed them",
        lambda: reuse_after_update_step(),
        RuntimeError,
        "update_step: params['w'] has been deleted; update_step donates (consumes) params",
    ),
    BadInput(
        "step helper",
        "not a transformation: `update_step(0.1, params, state, grads)`",
        lambda: aj.update_step(0.1, *fresh_step_arguments()),
        TypeError,
        "update_step: tx must be a gradient transformation",
    ),
    BadInput(
        "step helper",
        "an uncalled factory: `update_step(aj.adam, ...)`",
        lambda: aj.update_step(aj.adam, *fresh_step_arguments()),
        TypeError,
        "call it to build the transformation, e.g. aj.adam(1e-3)",
    ),
    BadInput(
        "step helper",
        "tied weights (one array twice in the parameters)",
        lambda: tied_weights_step(),
        None,
        "the repeated array is copied for the call: the numbers of `tx.update`",
        lambda out: bool(np.allclose(out[0], out[1])),
    ),
    BadInput(
        "step helper",
        "`apply_if_finite(adam())` through `update_step` from a fresh `init`",
        lambda: step_from_fresh_init(aj.apply_if_finite(aj.adam(0.1))),
        None,
        "runs (its state holds no array twice)",
        lambda out: finite(out[0]),
    ),
    BadInput(
        "step helper",
        "a NumPy hyperparameter changed in place between calls",
        lambda: numpy_hyperparameter_changed_in_place(),
        None,
        "read at every call, as `tx.update` reads it",
        lambda out: bool(np.allclose(out, [-0.1, -0.2])),
    ),
]


def fresh_step_arguments():
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    tx = aj.sgd(0.1)
    return params, tx.init(params), {"w": jnp.array([0.5, 1.0, -1.5])}


def step_from_fresh_init(tx):
    params, _, grads = fresh_step_arguments()
    return aj.update_step(tx, params, tx.init(params), grads)


def reuse_after_update_step():
    params, state, grads = fresh_step_arguments()
    aj.update_step(aj.sgd(0.1), params, state, grads)
    return aj.update_step(aj.sgd(0.1), params, state, grads)  # params were consumed


def tied_weights_step():
    shared = jnp.array([1.0, -2.0, 0.5])
    params = {"encoder": shared, "decoder": shared}
    tx = aj.adam(0.1)
    grads = {"encoder": jnp.ones(3), "decoder": jnp.ones(3)}
    new, _ = aj.update_step(tx, params, tx.init(params), grads)
    return new["encoder"], new["decoder"]


def numpy_hyperparameter_changed_in_place():
    rate = np.array(0.1)
    tx = aj.sgd(rate)
    params = jnp.zeros(2)
    before, state = aj.update_step(tx, params, tx.init(params), jnp.ones(2))
    rate[...] = 0.2
    after, _ = aj.update_step(tx, jnp.zeros(2), state, jnp.ones(2))
    return [float(before[0]), float(after[0])]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.tried for c in BAD_INPUTS])
def test_bad_input_gets_the_documented_result(case):
    if case.error is not None:
        with pytest.raises(case.error) as error:
            case.run()
        assert case.outcome in str(error.value)
    else:
        assert case.holds(case.run())


def markdown_table() -> str:
    lines = []
    for area in dict.fromkeys(case.area for case in BAD_INPUTS):
        lines += [f"### {area.capitalize()}s" if area != "numerics" else "### Numerics", ""]
        lines += ["| Input tried | What it gets |", "| --- | --- |"]
        for case in (c for c in BAD_INPUTS if c.area == area):
            if case.error is None:
                outcome = case.outcome
            else:
                outcome = f"`{case.error.__name__}`: `{case.outcome}`"
            lines.append(f"| {case.tried} | {outcome.replace('|', '&#124;')} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def test_docs_table_lists_every_bad_input_with_its_observed_result():
    text = DOC.read_text()
    generated = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n") + "\n"
    assert generated == markdown_table(), "run `python -m tests.test_validation` to update"


if __name__ == "__main__":
    text = DOC.read_text()
    head, tail = text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END) :]
    DOC.write_text(f"{head}\n{markdown_table()}{tail}")
