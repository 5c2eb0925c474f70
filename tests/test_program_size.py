r"""The size of a jitted step: StableHLO operations per parameter leaf, against optax.

XLA compiles every operation JAX emits, and JAX does not merge repeated scalar work
across leaves: a cast of :math:`\beta_1` or a bias correction written inside the leaf
function is traced, lowered and compiled once per leaf.  The op count of the lowered
module is the stable measure of that (compile time on a loaded machine is not).

How we count: ``jax.jit(lambda tx, g, s, p: tx.update(g, s, p)).lower(tx, g, s, p)``
(the transformation an argument, so its hyperparameters are inputs, as in
meta-learning), optax's transformation closed over (as optax users jit it: its
hyperparameters are constants), float32 leaves of shape (8, 8), x64 off, standard
promotion; every ``stablehlo.*`` operation of the module's text, in every function
(JAX lowers ``jnp.where`` to a private function shared by its call sites of one
signature; its body counts once).

Every member of the Adam family and the other named optimizers below are compared.
Where we do not reach optax (computed below, not asserted): RMSProp, whose formula
differs -- optax's ``rsqrt(nu + eps)``, ours torch's ``g / (sqrt(v + eps_root) + eps)``
with the guard that keeps :math:`v = 0` finite and differentiable -- and, in total at
10 leaves, Adagrad (optax's keeps no step counter), AdaBelief (an extra ``eps_root``
leaf in ``precondition``) and Adamax (the guard against :math:`u_t = 0` with
``eps = 0``, where optax's step is 0/0), whose per-leaf slopes are no larger than
optax's: what they add is scalar work done once per step.
"""

from __future__ import annotations

import re
from collections import Counter

import jax
import jax.numpy as jnp
import optax
import pytest

import adaptive_jax as aj
from adaptive_jax import extend

SHAPE = (8, 8)
LEAVES = 10

# name -> (ours, optax's), the same hyperparameters.  Every member of the Adam family
# (adaptive_jax._src.optimizers.adam_family), then the others.
PAIRS = {
    "adam": (lambda: aj.adam(1e-3), lambda: optax.adam(1e-3)),
    "nadam": (lambda: aj.nadam(1e-3), lambda: optax.nadam(1e-3)),
    "adamw": (
        lambda: aj.adamw(1e-3, weight_decay=1e-4),
        lambda: optax.adamw(1e-3, weight_decay=1e-4),
    ),
    "nadamw": (
        lambda: aj.nadamw(1e-3, weight_decay=1e-4),
        lambda: optax.nadamw(1e-3, weight_decay=1e-4),
    ),
    "amsgrad": (lambda: aj.amsgrad(1e-3), lambda: optax.amsgrad(1e-3)),
    "adabelief": (lambda: aj.adabelief(1e-3), lambda: optax.adabelief(1e-3)),
    "yogi": (lambda: aj.yogi(1e-2), lambda: optax.yogi(1e-2)),
    "adamax": (lambda: aj.adamax(2e-3), lambda: optax.adamax(2e-3)),
    "adamaxw": (lambda: aj.adamaxw(2e-3), lambda: optax.adamaxw(2e-3)),
    "radam": (lambda: aj.radam(1e-3), lambda: optax.radam(1e-3)),
    "lamb": (lambda: aj.lamb(1e-3), lambda: optax.lamb(1e-3)),
    "sgd_momentum": (lambda: aj.sgd(1e-2, momentum=0.9), lambda: optax.sgd(1e-2, momentum=0.9)),
    "rmsprop": (lambda: aj.rmsprop(1e-2), lambda: optax.rmsprop(1e-2)),
    "adagrad": (lambda: aj.adagrad(1e-2), lambda: optax.adagrad(1e-2)),
    "lion": (lambda: aj.lion(1e-4), lambda: optax.lion(1e-4)),
}
NOT_IN_TOTAL = {"rmsprop", "adagrad", "adabelief", "adamax"}
TOTAL_AT_MOST_OPTAX = [name for name in PAIRS if name not in NOT_IN_TOTAL]
SLOPE_AT_MOST_OPTAX = [name for name in PAIRS if name != "rmsprop"]

_OPERATION = re.compile(r'^\s*(?:%[^=]*=\s*)?"?stablehlo\.([a-z_0-9]+)', re.MULTILINE)


def operations(text: str) -> Counter:
    """Every StableHLO operation in a lowered module's text, by name."""
    return Counter(_OPERATION.findall(text))


def lowered_text(tx, leaves: int, closed_over: bool) -> str:
    params = {f"p{i:02d}": jnp.ones(SHAPE, jnp.float32) for i in range(leaves)}
    grads = {k: jnp.full(SHAPE, 0.5, jnp.float32) for k in params}
    state = tx.init(params)
    if closed_over:
        return jax.jit(lambda g, s, p: tx.update(g, s, p)).lower(grads, state, params).as_text()
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    return step.lower(tx, grads, state, params).as_text()


def op_count(name: str, library: str, leaves: int) -> int:
    ours, theirs = PAIRS[name]
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        if library == "ours":
            text = lowered_text(ours(), leaves, closed_over=False)
        else:
            text = lowered_text(theirs(), leaves, closed_over=True)
    return sum(operations(text).values())


def slope(name: str, library: str) -> int:
    """Operations added by each leaf, after checking that the count is linear in the leaves."""
    counts = {n: op_count(name, library, n) for n in (1, 2, 5)}
    per_leaf = counts[2] - counts[1]
    assert counts[5] - counts[1] == 4 * per_leaf, (name, library, counts)
    return per_leaf


def test_the_counter_counts_every_operation_in_every_function():
    text = """
    func.func public @main(%arg0: tensor<f32>) -> tensor<f32> {
      %c = stablehlo.constant dense<1.0> : tensor<f32>
      %0:2 = "stablehlo.while"(%arg0, %c) ({
        stablehlo.return %arg0 : tensor<f32>
      })
      %1 = call @f(%0) : (tensor<f32>) -> tensor<f32>
      return %1 : tensor<f32>
    }
    func.func private @f(%arg0: tensor<f32>) -> tensor<f32> {
      %0 = stablehlo.sqrt %arg0 : tensor<f32>
      return %0 : tensor<f32>
    }
    """
    assert operations(text) == Counter({"constant": 1, "while": 1, "return": 1, "sqrt": 1})


@pytest.mark.parametrize("name", TOTAL_AT_MOST_OPTAX)
def test_a_step_on_ten_leaves_is_no_larger_than_optax(name):
    ours, theirs = op_count(name, "ours", LEAVES), op_count(name, "optax", LEAVES)
    assert ours <= theirs, f"{name}: {ours} StableHLO operations, optax {theirs}"


@pytest.mark.parametrize("name", SLOPE_AT_MOST_OPTAX)
def test_each_leaf_adds_no_more_operations_than_in_optax(name):
    ours, theirs = slope(name, "ours"), slope(name, "optax")
    assert ours <= theirs, f"{name}: {ours} operations per leaf, optax {theirs}"


def test_scalar_work_is_not_repeated_per_leaf():
    # Adam's per-step scalars (casts, 1 - b, bias corrections, the step count) appear
    # once, whatever the number of leaves: one power per bias correction.
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        text = lowered_text(aj.adam(1e-3), LEAVES, closed_over=False)
    counts = operations(text)
    assert counts["power"] == 2
    assert counts["negate"] == 1  # the learning rate's sign
    # Casts: one per hyperparameter made strongly typed, one of the step count.
    assert counts["convert"] <= len(jax.tree_util.tree_leaves(aj.adam(1e-3))) + 1


# -- what the savings must not cost --------------------------------------------------


class ScaleInsideACond(extend.Transform):
    """Casts one hyperparameter inside a ``lax.cond`` branch and again outside it."""

    factor: float = extend.hyperparameter(0.5, domain=extend.REAL)

    def apply(self, updates, state, params, count):
        def scaled(u):
            return jax.tree_util.tree_map(lambda x: x * extend.cast_like(self.factor, x), u)

        inside = jax.lax.cond(count > 1, scaled, lambda u: u, updates)
        return scaled(inside), state


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_scalars_computed_in_a_nested_trace_are_not_reused_outside_it(jit):
    # The cast inside the branch belongs to the branch's trace: reusing it outside would
    # leak a tracer.
    tx = ScaleInsideACond(0.5)
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    first, state = update(params, state)
    second, _ = update(params, state)
    assert jax.tree_util.tree_map(float, jax.tree_util.tree_map(jnp.max, first)) == {
        "a": 0.5,
        "b": 0.5,
    }
    assert float(jnp.max(second["a"])) == 0.25


def test_safe_sqrt_values_and_the_derivatives_of_its_primal():
    from adaptive_jax.extend import safe_sqrt

    x = jnp.array([0.0, -0.0, 4.0, jnp.inf, -1.0, jnp.nan])
    values = safe_sqrt(x)
    assert values[:4].tolist() == [0.0, 0.0, 2.0, float("inf")]
    assert bool(jnp.all(jnp.isnan(values[4:])))
    # The custom rule, and JAX's own rules on the primal (which forward-over-reverse
    # through lax.scan uses): 0 at 0, finite second derivative.
    for f in (safe_sqrt, safe_sqrt.fun):
        assert float(jax.grad(f)(0.0)) == 0.0
        assert float(jax.jacfwd(f)(0.0)) == 0.0
        assert float(jax.grad(jax.grad(f))(0.0)) == 0.0
        assert float(jax.grad(f)(4.0)) == 0.25


def test_adamax_divides_by_the_infinity_norm_as_the_squared_record_and_precondition_did():
    # infinity_norm_precondition against the chain it replaced in adamax: sqrt(u^2) = u
    # exactly, so every step is the same to the bit.
    squared_record = aj.chain(
        aj.ema_of_gradients(0.8),
        aj.infinity_norm_second_moment(0.95, 1e-3),
        aj.debias(),
        aj.precondition(0.0),
        aj.scale_by_learning_rate(0.01),
    )
    tx = aj.adamax(0.01, b1=0.8, b2=0.95, eps=1e-3)
    params = {"a": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones((2, 3))}
    state, old_state = tx.init(params), squared_record.init(params)
    for step in range(8):
        grads = jax.tree_util.tree_map(lambda p, k=step: jnp.sin((k + 1.0) * p) + 0.25 * k, params)
        updates, state = tx.update(grads, state, params)
        expected, old_state = squared_record.update(grads, old_state, params)
        assert jax.tree_util.tree_all(
            jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), updates, expected)
        )


def test_adamax_step_where_the_infinity_norm_is_zero():
    # eps = 0 and a parameter that never received a gradient: u = 0, so optax's step is
    # 0/0 = NaN; ours is m_hat = 0, with a finite derivative in every hyperparameter.
    params = jnp.zeros(2)
    grads = jnp.array([0.0, 0.5])

    def first_step(hyper):
        b1, b2, eps = hyper
        tx = aj.adamax(0.1, b1=b1, b2=b2, eps=eps)
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    hyper = (jnp.asarray(0.9), jnp.asarray(0.99), jnp.asarray(0.0))
    assert first_step(hyper).tolist() == [0.0, -0.1]  # -alpha g / |g| where g != 0
    jacobian = jax.jacrev(first_step)(hyper)
    assert all(bool(jnp.all(jnp.isfinite(j))) for j in jacobian)
    # d/d eps of -alpha m_hat / (|g| + eps) at g = 0.5: alpha m_hat / |g|^2 = 0.1 * 0.5 / 0.25
    assert float(jacobian[2][1]) == pytest.approx(0.2, rel=1e-12)
    assert float(jacobian[2][0]) == 0.0


@pytest.mark.parametrize("eps", [1e-3, 0.0])
def test_preconditioned_step_where_the_second_moment_is_zero(eps):
    from adaptive_jax._src.transforms.preconditioning import preconditioned

    m, v = jnp.array([0.5, 0.0, 0.5]), jnp.array([0.0, 0.0, 4.0])
    step = preconditioned(m, v, eps, 0.0)
    denominator = eps if eps else 1.0
    assert step.tolist() == [0.5 / denominator, 0.0, 0.5 / (2.0 + eps)]
    # Derivatives in v: 0 at v = 0 (not NaN), in both modes and to second order.
    for vector in (jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0])):
        _, tangent = jax.jvp(lambda v: preconditioned(m, v, eps, 0.0), (v,), (vector,))
        assert bool(jnp.all(jnp.isfinite(tangent)))
    gradient = jax.grad(lambda v: jnp.sum(preconditioned(m, v, eps, 0.0)))(v)
    assert gradient[:2].tolist() == [0.0, 0.0]
    hessian = jax.hessian(lambda v: jnp.sum(preconditioned(m, v, eps, 0.0)))(v)
    assert bool(jnp.all(jnp.isfinite(hessian)))
    assert bool(jnp.isnan(preconditioned(m, jnp.array([jnp.nan, 0.0, 4.0]), eps, 0.0)[0]))
