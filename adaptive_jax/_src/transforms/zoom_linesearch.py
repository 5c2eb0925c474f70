r"""The zoom line search: a step satisfying the strong Wolfe conditions.

Along :math:`\phi(\eta) = f(w + \eta u)` it looks for :math:`\eta` with

.. math::
   \phi(\eta) \le \phi(0) + c_1 \eta \phi'(0) + \epsilon \quad\text{(sufficient decrease)},
   \qquad |\phi'(\eta)| \le c_2 |\phi'(0)| + \epsilon \quad\text{(small curvature)},

in two phases (Nocedal & Wright, Algorithms 3.5 and 3.6): grow :math:`\eta` by a
factor until an interval is known to contain such a step, then shrink that interval
with cubic, quadratic or bisection steps.  Near a minimum, where :math:`\phi` is flat to
rounding, the decrease condition may be replaced by Hager and Zhang's approximate one,
:math:`\phi'(\eta) \le (2c_1 - 1)\phi'(0)`, while :math:`\phi(\eta) \le \phi(0) + c_3|\phi(0)|`.

The arithmetic, the branches and the defaults are those of
``optax.scale_by_zoom_linesearch``; the loop is a fixed-length masked ``lax.scan``
(:func:`~adaptive_jax._src.transforms.linesearch.bounded_loop`) instead of a
``while_loop``, so it is reverse-differentiable, and the interpolations are guarded so
that a rejected candidate (a division by 0, a negative radicand: NaN in optax, where a
``jnp.where`` drops the value but not its NaN derivative) contributes a zero derivative.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import NONNEGATIVE, POSITIVE, check_count
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import COUNT_DTYPE, cast_like
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.core.trees import zeros_like
from adaptive_jax._src.transforms.linesearch import (
    INCREASE_FACTOR,
    SLOPE_RTOL,
    along,
    bounded_loop,
    check_value_and_grad,
    non_negative,
    slope,
    value_dtype,
    value_fn_arguments,
)


def _where(condition: Any, new: list[Any], old: list[Any]) -> list[Any]:
    return [
        jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), x, y)
        for x, y in zip(new, old)
    ]


def _nonzero(x: jax.Array) -> jax.Array:
    """``x`` where it is not 0, else 1: a divisor whose quotient is then discarded."""
    return jnp.where(x != 0, x, jnp.ones_like(x))


def cubic_minimizer(a, fa, fpa, b, fb, c, fc) -> tuple[jax.Array, jax.Array]:
    """The critical point of the cubic through ``(a, fa)``, ``(b, fb)``, ``(c, fc)`` with slope ``fpa`` at ``a``.

    Returns ``(x, valid)``; ``valid`` is False where optax's formula is NaN or infinite
    (coincident points, no real critical point).  From ``scipy.optimize``'s line search.
    """
    db, dc = b - a, c - a
    denominator = (db * dc) ** 2 * (db - dc)
    matrix = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    vector = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])
    big_a, big_b = jnp.dot(matrix, vector, precision=jax.lax.Precision.HIGHEST) / _nonzero(
        denominator
    )
    radical = big_b * big_b - 3.0 * big_a * fpa
    root = jnp.where(radical > 0, jnp.sqrt(jnp.where(radical > 0, radical, 1.0)), 0.0)
    x = a + (-big_b + root) / (3.0 * _nonzero(big_a))
    valid = (denominator != 0) & (radical >= 0) & (big_a != 0) & jnp.isfinite(x)
    return jnp.where(valid, x, a), valid


def quadratic_minimizer(a, fa, fpa, b, fb) -> tuple[jax.Array, jax.Array]:
    """The critical point of the parabola through ``(a, fa)``, ``(b, fb)`` with slope ``fpa`` at ``a``."""
    db = b - a
    curvature = (fb - fa - fpa * db) / _nonzero(db**2)
    x = a - fpa / (2.0 * _nonzero(curvature))
    valid = (db != 0) & (curvature != 0) & jnp.isfinite(x)
    return jnp.where(valid, x, a), valid


class _Zoom(NamedTuple):
    """The search's running state (optax's ``ZoomLinesearchState`` less its constants)."""

    count: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: PyTree
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: PyTree


class ZoomLinesearchInfo(NamedTuple):
    """What the last search did: trials, and the two errors left (0: satisfied)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of :class:`scale_by_zoom_linesearch` (optax's fields).

    ``learning_rate``: the accepted step (the next search's first guess under
    ``initial_guess_strategy="keep"``); ``value``/``grad``: the objective and its
    gradient at the accepted point, for :func:`~adaptive_jax.value_and_grad_from_state`.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: PyTree
    info: ZoomLinesearchInfo


_NUMBERS = ("tol", "increase_factor", "slope_rtol", "curv_rtol", "stepsize_precision")


class ScaleByZoomLinesearch(Transform):
    r"""Scale the direction by a step satisfying the strong Wolfe conditions (zoom line search).

    See the module docstring for the conditions and the algorithm, and
    :mod:`adaptive_jax._src.transforms.linesearch` for the update's extra arguments
    (``value``, ``grad``, ``value_fn``) and for differentiation.  If no step satisfies
    both conditions within ``max_linesearch_steps`` trials, the best step with sufficient
    decrease is taken, or the last one tried if there is none (0 if the objective was
    not finite anywhere).

    Args:
        max_linesearch_steps: the most trials (a Python int).
        max_learning_rate: :math:`\eta_{\max} > 0`, or ``None`` for no bound.
        tol: :math:`\epsilon \ge 0`, slack in both conditions.
        increase_factor: :math:`\ge 1`, the growth of :math:`\eta` while searching for an interval.
        slope_rtol: :math:`c_1 \in [0, 1)`.
        curv_rtol: :math:`c_2 \ge 0` (a large value such as ``1e30`` drops the
            curvature condition; optax's ``inf`` is not a finite hyperparameter).
        approx_dec_rtol: :math:`c_3 \ge 0`, or ``None`` for the plain Armijo condition.
        stepsize_precision: stop zooming once the interval is shorter than this and a
            step with sufficient decrease is known.
        initial_guess_strategy: ``"keep"`` starts from the previous step, ``"one"`` from 1.
        verbose: print a message when the search fails.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> def f(x): return jnp.sum((x - 3.0) ** 2)
        >>> tx = aj.chain(aj.sgd(1.0), aj.scale_by_zoom_linesearch(max_linesearch_steps=15))
        >>> params = jnp.zeros(2)
        >>> grad = 2 * (params - 3.0)
        >>> updates, state = tx.update(grad, tx.init(params), params, value=f(params), grad=grad, value_fn=f)
        >>> # phi(eta) = 18 (1 - 2 eta)^2: eta = 1 has phi' = 72 > 0.9 |phi'(0)|; the zoom's
        >>> # quadratic interpolation between 0 and 1 is exact: eta = 1/2, the minimum
        >>> (params + updates).tolist()
        [3.0, 3.0]

    References: Nocedal & Wright, "Numerical Optimization", 2006, Algorithms 3.5 and 3.6;
    Hager & Zhang, "Algorithm 851: CG_DESCENT", ACM TOMS 2006.
    """

    max_linesearch_steps: int = static()
    max_learning_rate: Any = hyperparameter(default=None, domain=POSITIVE, optional=True)
    tol: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    increase_factor: Any = hyperparameter(default=2.0, domain=INCREASE_FACTOR)
    slope_rtol: Any = hyperparameter(default=1e-4, domain=SLOPE_RTOL)
    curv_rtol: Any = hyperparameter(default=0.9, domain=NONNEGATIVE)
    approx_dec_rtol: Any = hyperparameter(default=1e-6, domain=NONNEGATIVE, optional=True)
    stepsize_precision: Any = hyperparameter(default=1e-5, domain=NONNEGATIVE)
    initial_guess_strategy: str = static(default="keep")
    verbose: bool = static(default=False)
    takes_extra_args = True

    def __check_init__(self):
        check_count("max_linesearch_steps", self.max_linesearch_steps, low=1)
        if self.initial_guess_strategy not in ("keep", "one"):
            raise ValueError(
                f"initial_guess_strategy={self.initial_guess_strategy!r} is invalid: "
                "expected 'keep' or 'one'"
            )

    def init_state(self, params):
        dtype = value_dtype(params)
        infinite = jnp.full([], jnp.inf, dtype)
        return ScaleByZoomLinesearchState(
            jnp.ones([], dtype),
            infinite,
            zeros_like(params),
            ZoomLinesearchInfo(jnp.zeros([], COUNT_DTYPE), infinite, infinite),
        )

    def apply(
        self, updates, state, params, count, *, value=None, grad=None, value_fn=None, **extra
    ):
        name = "scale_by_zoom_linesearch"
        expect_gradients(updates, name)
        check_value_and_grad(value, grad, name)
        fn_kwargs = value_fn_arguments(value_fn, extra, name)
        dtype = state.learning_rate.dtype
        h = {k: jnp.asarray(getattr(self, k)).astype(dtype) for k in _NUMBERS}
        value0 = jnp.asarray(value).astype(dtype)
        slope0 = slope(grad, updates).astype(dtype)
        guess = (
            state.learning_rate if self.initial_guess_strategy == "keep" else jnp.ones([], dtype)
        )

        def evaluate(stepsize):
            value, grad = jax.value_and_grad(value_fn)(  # pyright: ignore[reportArgumentType]
                along(params, stepsize, updates), **fn_kwargs
            )
            return jnp.asarray(value).astype(dtype), grad, slope(grad, updates).astype(dtype)

        def decrease_error(stepsize, value, slope_step):
            # Armijo (N&W 3.7a), or Hager & Zhang's approximate condition (their 23) where
            # the value is within c3 |phi(0)| of phi(0) (their 26-27, one iterate).
            error = value - value0 - h["slope_rtol"] * stepsize * slope0
            if self.approx_dec_rtol is not None:
                c3 = cast_like(self.approx_dec_rtol, value0)
                approx = slope_step - (2 * h["slope_rtol"] - 1.0) * slope0
                approx = jnp.maximum(approx, value - value0 - c3 * jnp.abs(value0))
                error = jnp.minimum(approx, error)
            return non_negative(error)

        def errors(stepsize, value, slope_step):
            decrease = decrease_error(stepsize, value, slope_step)
            curvature = non_negative(jnp.abs(slope_step) - h["curv_rtol"] * jnp.abs(slope0))
            return decrease, curvature, jnp.maximum(decrease, curvature)

        def search_interval(s: _Zoom) -> _Zoom:  # Algorithm 3.5
            stepsize = jnp.where(s.count == 0, guess, h["increase_factor"] * s.stepsize)
            reached = jnp.zeros([], bool)
            if self.max_learning_rate is not None:
                largest = cast_like(self.max_learning_rate, stepsize)
                reached = stepsize >= largest
                stepsize = jnp.minimum(stepsize, largest)
            value, grad, slope_step = evaluate(stepsize)
            decrease, curvature, error = errors(stepsize, value, slope_step)
            safe = _where(
                decrease <= h["tol"],
                [stepsize, value, grad],
                [s.safe_stepsize, s.safe_value, s.safe_grad],
            )
            set_high = (decrease > 0.0) | ((value >= s.value) & (s.count > 0))
            set_low = (slope_step >= 0.0) & ~set_high
            previous, new = [s.stepsize, s.value, s.slope], [stepsize, value, slope_step]
            low_high = _where(set_low, new + previous, previous + new)
            found = set_high | set_low | (error <= h["tol"])
            done = (error <= h["tol"]) | (reached & ~found)
            return _Zoom._make([
                s.count + 1, stepsize, value, grad, slope_step, decrease, curvature, found, done,
                (s.count + 1 >= self.max_linesearch_steps) & ~done,
                *low_high, low_high[0], low_high[1], *safe,
            ])  # fmt: skip

        def zoom(s: _Zoom) -> _Zoom:  # Algorithm 3.6
            delta = jnp.abs(s.high - s.low)
            left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
            cubic, cubic_ok = cubic_minimizer(
                s.low,
                s.value_low,
                s.slope_low,
                s.high,
                s.value_high,
                s.cubic_ref,
                s.value_cubic_ref,
            )
            quad, quad_ok = quadratic_minimizer(
                s.low, s.value_low, s.slope_low, s.high, s.value_high
            )
            use_cubic = cubic_ok & (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
            use_quad = (
                ~use_cubic & quad_ok & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
            )
            middle = jnp.where(use_cubic, cubic, s.cubic_ref)
            middle = jnp.where(use_quad, quad, middle)
            middle = jnp.where(~use_cubic & ~use_quad, (s.low + s.high) / 2.0, middle)
            value, grad, slope_step = evaluate(middle)
            decrease, curvature, error = errors(middle, value, slope_step)
            safe = _where(
                (decrease <= h["tol"]) & (value < s.safe_value),
                [middle, value, grad],
                [s.safe_stepsize, s.safe_value, s.safe_grad],
            )
            done = error <= h["tol"]
            high_to_middle = (decrease > 0.0) | (value >= s.value_low)
            high_to_low = (slope_step * (s.high - s.low) >= 0.0) & ~high_to_middle
            bracket_low, bracket_high = (
                [s.low, s.value_low, s.slope_low],
                [s.high, s.value_high, s.slope_high],
            )
            new_high = _where(high_to_middle, [middle, value, slope_step], bracket_high)
            new_high = _where(high_to_low, bracket_low, new_high)
            new_low = _where(~high_to_middle, [middle, value, slope_step], bracket_low)
            cubic_ref = _where(
                high_to_middle | high_to_low, [s.high, s.value_high], [s.low, s.value_low]
            )
            too_small = delta <= h["stepsize_precision"]
            failed = (
                (s.count + 1 >= self.max_linesearch_steps) | (too_small & (safe[0] > 0.0))
            ) & ~done
            return _Zoom(
                s.count + 1, middle, value, grad, slope_step, decrease, curvature,
                s.interval_found, done, failed, *new_low, *new_high, *cubic_ref, *safe,
            )  # fmt: skip

        def settle(s: _Zoom) -> _Zoom:
            # Out of trials: the best step with sufficient decrease, else the last one
            # (or no step if the objective was never finite).
            use_safe = (s.safe_stepsize > 0.0) | jnp.isinf(s.decrease_error)
            stepsize, value, grad = _where(
                use_safe,
                [s.safe_stepsize, s.safe_value, s.safe_grad],
                [s.stepsize, s.value, s.grad],
            )
            return s._replace(stepsize=stepsize, value=value, grad=grad)

        def trial(s: _Zoom) -> _Zoom:
            s = jax.lax.cond(s.interval_found, zoom, search_interval, s)
            return jax.lax.cond(s.failed, settle, lambda x: x, s)

        zero, infinite = jnp.zeros([], dtype), jnp.full([], jnp.inf, dtype)
        start = _Zoom(
            jnp.zeros([], COUNT_DTYPE), zero, value0, grad, slope0, infinite, infinite,
            jnp.zeros([], bool), jnp.zeros([], bool), jnp.zeros([], bool),
            zero, value0, slope0, zero, value0, slope0, zero, value0, zero, value0, grad,
        )  # fmt: skip
        end = bounded_loop(trial, start, self.max_linesearch_steps, lambda s: s.done | s.failed)
        if self.verbose:
            jax.lax.cond(
                end.failed,
                lambda: jax.debug.print(
                    "scale_by_zoom_linesearch: no step satisfying both conditions in "
                    "{n} trials (decrease error {d}, curvature error {c}); step {s}",
                    n=end.count,
                    d=end.decrease_error,
                    c=end.curvature_error,
                    s=end.stepsize,
                ),
                lambda: None,
            )
        new_updates = jax.tree_util.tree_map(lambda u: cast_like(end.stepsize, u) * u, updates)
        info = ZoomLinesearchInfo(end.count, end.decrease_error, end.curvature_error)
        return new_updates, ScaleByZoomLinesearchState(end.stepsize, end.value, end.grad, info)


scale_by_zoom_linesearch = ScaleByZoomLinesearch
