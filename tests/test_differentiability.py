r"""Meta-gradients through unrolled training, for every named optimizer and hyperparameter.

The problem is :math:`L(w) = (w_0-1)^2 + w_0 w_1^2 + \tfrac12 \sum_k a_k (r_k - c_k)^2` from
:math:`w_0 = 0.1,\ w_1 = 0`.  The gradient of :math:`w_1` is :math:`2 w_0 w_1 = 0` at every
step, so its second moment stays exactly 0, yet :math:`w_1` is coupled to the loss through
the Hessian (:math:`\partial^2 L/\partial w_1^2 = 2 w_0`).  There a naive
:math:`\sqrt{v}` has an infinite derivative and the chain rule produces ``0 * inf = NaN``
(optax and torchopt return NaN for Adam here); ours must return the finite derivative.

Each hypergradient is checked against finite differences of the unrolled loss (an
independent computation that never differentiates the code), forward mode against
reverse mode, and the Hessian against finite differences of the gradient.
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from tests.optimizer_catalog import NAMED_OPTIMIZERS

STEPS = 20
REST_CURVATURE = jnp.array([1.0, 2.0, 0.5])
REST_TARGET = jnp.array([0.2, -0.4, 0.3])
INITIAL_PARAMS = jnp.array([0.1, 0.0, 0.5, 0.1, -0.2])  # (w0, w1, three more)
# Relative step of the finite-difference stencils (their truncation error is O(h^4)).
RELATIVE_STEP = 1e-4
FD_RTOL = 1e-5
# A running maximum inside (DoG's distance, D-Adaptation's and Prodigy's estimate): the
# stencil's +-2h straddles a step where the maximum changes branch, so the difference
# quotient is not the derivative.  The gradient is finite and forward = reverse here;
# tests/test_recent_optimizers.py compares it with a central difference at a step that
# stays on one branch.
RUNNING_MAXIMUM = {"dadapt_adamw", "dog", "prodigy"}


def loss(w):
    rest = w[2:]
    return (
        (w[0] - 1) ** 2
        + w[0] * w[1] ** 2
        + 0.5 * jnp.sum(REST_CURVATURE * (rest - REST_TARGET) ** 2)
    )


def unrolled_loss(tx, steps=STEPS):
    """The loss after ``steps`` updates of ``tx``, unrolled with ``lax.scan``."""

    def train_step(carry, _):
        params, state = carry
        # value= is the loss polyak_sgd needs; every other optimizer ignores it.
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return (aj.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(
        train_step, (INITIAL_PARAMS, tx.init(INITIAL_PARAMS)), None, length=steps
    )
    return loss(params)


class Hyperparameters:
    """A transformation's numeric leaves as one float64 vector ``theta`` (with their names)."""

    def __init__(self, tx):
        leaves_with_paths, self.treedef = jax.tree_util.tree_flatten_with_path(tx)
        self.names = [jax.tree_util.keystr(path) for path, _ in leaves_with_paths]
        assert all(jnp.ndim(leaf) == 0 for _, leaf in leaves_with_paths), self.names
        self.theta = np.array([float(leaf) for _, leaf in leaves_with_paths], np.float64)

    def meta_loss(self, theta):
        return unrolled_loss(jax.tree_util.tree_unflatten(self.treedef, list(theta)))


_PROGRAMS = {}


def derivative_program(hyper):
    r"""One compiled program per tree structure (compiling dominates this module's time):
    ``(theta, d) -> ((L, \nabla L), (\nabla L \cdot d, H d))`` -- the meta-loss, its reverse-mode
    gradient, its forward-mode derivative along ``d`` and a Hessian-vector product."""
    if hyper.treedef not in _PROGRAMS:

        def program(theta, direction):
            return jax.jvp(jax.value_and_grad(hyper.meta_loss), (theta,), (direction,))

        example = jnp.zeros(len(hyper.theta), jnp.float64)
        # Compiled with the suite's cheaper settings (tests/conftest.py).
        _PROGRAMS[hyper.treedef] = jax.jit(program).lower(example, example).compile()
    return _PROGRAMS[hyper.treedef]


def step_size(value):
    r"""``RELATIVE_STEP`` times the scale on which the meta-loss varies with ``value``.

    A decay rate near 1 acts through :math:`1-\beta` (the memory :math:`1/(1-\beta)`), so
    its scale is :math:`\min(\beta, 1-\beta)`; a zero value (``eps_root = 0``) gets 0.01.
    Small enough not to straddle AMSGrad's kinks (where the argmax of its running maximum
    switches steps), large enough that rounding stays negligible.
    """
    if value == 0:
        return RELATIVE_STEP * 0.01
    scale = min(abs(value), 1 - value) if 0 < value < 1 else abs(value)
    return RELATIVE_STEP * max(scale, 1e-6)


def finite_difference_stencil(theta):
    """Points and weights of a derivative of order 4 in every coordinate of ``theta``.

    Central ``(f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h`` where the points stay inside
    ``[0, 1)`` if the value is there (decay rates, eps, ...), else the one-sided
    ``(-25 f(0) + 48 f(±h) - 36 f(±2h) + 16 f(±3h) - 3 f(±4h)) / (±12h)``.
    """
    central = ([-2, -1, 1, 2], [1, -8, 8, -1])
    forward = ([0, 1, 2, 3, 4], [-25, 48, -36, 16, -3])
    points, weights, steps = [], [], []
    for i, value in enumerate(theta):
        step = step_size(value)
        offsets, coefficients = central
        if 0 <= value < 2 * step:
            offsets, coefficients = forward
        elif value < 1 <= value + 2 * step:
            offsets, coefficients = [-o for o in forward[0]], [-c for c in forward[1]]
        steps.append(step)
        row = []
        for offset, coefficient in zip(offsets, coefficients):
            point = theta.copy()
            point[i] += offset * step
            points.append(point)
            row.append((len(points) - 1, coefficient / (12 * step)))
        weights.append(row)
    return points, weights, np.array(steps)


def apply_stencil(values, weights):
    return np.stack([sum(c * values[j] for j, c in row) for row in weights])


def rounding_tolerance(values, steps):
    """Absolute error of a difference quotient from rounding ``values`` (float64)."""
    scale = np.max(np.abs(np.asarray(values)))
    return 10 * np.finfo(np.float64).eps * scale / steps


@functools.cache
def derivatives(name, defaults=False):
    """Meta-loss, gradient (reverse and forward mode), Hessian and their FD estimates."""
    hyper = Hyperparameters(build(name, defaults))
    program = derivative_program(hyper)
    theta, n = hyper.theta, len(hyper.theta)
    (value, reverse), _ = program(theta, np.zeros(n))
    forward, hessian_columns = [], []
    for direction in np.eye(n):
        _, (directional, hessian_column) = program(theta, direction)
        forward.append(directional)
        hessian_columns.append(hessian_column)
    points, weights, steps = finite_difference_stencil(theta)
    at_points = [program(point, np.zeros(n))[0] for point in points]
    values_at_points = np.array([v for v, _ in at_points])
    gradients_at_points = np.stack([g for _, g in at_points])
    return dict(
        names=hyper.names,
        value=float(value),
        reverse=np.asarray(reverse),
        forward=np.array(forward),
        hessian=np.stack(hessian_columns, axis=1),
        fd_gradient=apply_stencil(values_at_points, weights),
        fd_gradient_atol=rounding_tolerance(values_at_points, steps),
        fd_hessian=apply_stencil(gradients_at_points, weights),
        fd_hessian_atol=rounding_tolerance(gradients_at_points, steps)[:, None],
    )


# polyak_sgd's default f_min = 0 is the exact minimum of this loss: there the final loss
# has a kink in f_min (above it the iterates settle where the loss is about f_min, below
# it they converge to 0), so finite differences cannot check it; it keeps the catalog's.
KEPT_AT_DEFAULTS = {("polyak_sgd", "f_min")}


def build(name, defaults=False):
    """The catalog's optimizer; with ``defaults`` every numeric hyperparameter that has a
    default takes it (``eps=1e-8``, ``eps_root=0``, ...), the learning rate excepted."""
    factory, kwargs = NAMED_OPTIMIZERS[name]
    if defaults:
        signature = inspect.signature(factory).parameters
        kwargs = {
            key: value
            for key, value in kwargs.items()
            if key == "learning_rate"
            or (name, key) in KEPT_AT_DEFAULTS
            or signature[key].default in (None, inspect.Parameter.empty)
            or isinstance(value, (bool, str, type))  # flags and dtypes: not hyperparameters
        }
    return factory(**kwargs)


def assert_close(names, actual, expected, rtol, atol):
    """``|actual - expected| <= atol + rtol |expected|`` elementwise, naming the culprits."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    bad = ~(np.abs(actual - expected) <= atol + rtol * np.abs(expected))
    report = [
        f"  d/d{names[index[0]]}"
        + (f" d/d{names[index[1]]}" if len(index) > 1 else "")
        + f": {actual[index]!r} vs {expected[index]!r}"
        for index in zip(*np.nonzero(bad))
    ]
    assert not report, "\n".join(report)


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_every_numeric_hyperparameter_is_a_leaf(name):
    _, kwargs = NAMED_OPTIMIZERS[name]
    leaves = Counter(Hyperparameters(build(name)).theta.tolist())
    numeric = Counter(float(v) for v in kwargs.values() if not isinstance(v, (bool, str, type)))
    assert not numeric - leaves, f"not leaves of the pytree: {numeric - leaves}"


# The three tests of one optimizer share its compiled derivatives (``derivatives`` is
# cached per process, and xdist runs a module in one worker).  A module-scoped
# parameter makes pytest run them one after another.
BY_OPTIMIZER = pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS), scope="module")


@pytest.mark.parametrize("defaults", [False, True], ids=["catalog", "defaults"])
@BY_OPTIMIZER
def test_meta_gradient_matches_finite_differences(name, defaults):
    result = derivatives(name, defaults)
    assert np.all(np.isfinite(result["reverse"])), result
    if name in RUNNING_MAXIMUM:
        return
    assert_close(
        result["names"],
        result["reverse"],
        result["fd_gradient"],
        FD_RTOL,
        result["fd_gradient_atol"],
    )


@BY_OPTIMIZER
def test_forward_and_reverse_mode_agree(name):
    result = derivatives(name)
    # An exactly-zero derivative (AMSGrad's maximum kept at its first, b2-free value)
    # comes out as rounding noise in one mode: allow 1e-12 of the gradient's scale.
    scale = np.max(np.abs(result["reverse"]))
    assert_close(result["names"], result["forward"], result["reverse"], 1e-9, 1e-12 * scale)


@BY_OPTIMIZER
def test_second_order_matches_finite_differences_of_the_gradient(name):
    result = derivatives(name)
    hessian = result["hessian"]
    assert np.all(np.isfinite(hessian)), result
    assert_close(result["names"], hessian, hessian.T, 1e-9, 1e-12)  # symmetric
    if name in RUNNING_MAXIMUM:
        return
    assert_close(result["names"], hessian, result["fd_hessian"], FD_RTOL, result["fd_hessian_atol"])


def naive_adam_meta_loss(hyperparameters):
    """Adam written directly with ``jnp.sqrt``: the textbook formulas, nothing else."""
    learning_rate, b1, b2, eps = hyperparameters

    def train_step(carry, t):
        w, m, v = carry
        g = jax.grad(loss)(w)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        w = w - learning_rate * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps)
        return (w, m, v), None

    zeros = jnp.zeros_like(INITIAL_PARAMS)
    steps = jnp.arange(1, STEPS + 1, dtype=jnp.float64)
    (w, _, _), _ = jax.lax.scan(train_step, (INITIAL_PARAMS, zeros, zeros), steps)
    return loss(w)


def test_naive_sqrt_gives_nan_meta_gradient_where_ours_is_finite():
    learning_rate, b1, b2, eps = 0.02, 0.9, 0.999, 1e-8
    ours = aj.adam(learning_rate, b1, b2, eps)  # eps_root = 0: the second moment of w1 is 0
    hyper = Hyperparameters(ours)
    (our_value, our_gradient), _ = derivative_program(hyper)(
        hyper.theta, np.zeros(len(hyper.theta))
    )
    naive = jnp.array([learning_rate, b1, b2, eps])
    naive_value, naive_gradient = jax.jit(jax.value_and_grad(naive_adam_meta_loss))(naive)

    np.testing.assert_allclose(our_value, naive_value, rtol=1e-12)  # the same training run
    assert np.all(np.isnan(naive_gradient))  # d sqrt(v) at v = 0 is inf, times 0: NaN
    assert np.all(np.isfinite(our_gradient))
