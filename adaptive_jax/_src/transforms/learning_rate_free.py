r"""Learning-rate-free step sizes: estimate the distance to the solution while training.

Gradient descent's best constant step on a convex Lipschitz problem is
:math:`D/(G\sqrt T)`, with :math:`D = \|x_0 - x_*\|` unknown.  These blocks estimate
:math:`D` from the iterates and gradients seen so far, as a running maximum so that it
only grows:

* :class:`scale_by_dog` — DoG (Ivgi et al. 2023): :math:`\eta_t = \max_{k\le t}\|x_k - x_0\| /
  \sqrt{\sum_{k\le t}\|g_k\|^2}`;
* :class:`scale_by_dadapt_adam` — D-Adaptation for Adam (Defazio & Mishchenko 2023);
* :class:`scale_by_prodigy` — Prodigy (Mishchenko & Defazio 2024), D-Adaptation with the
  estimate also weighting the gradients.

Each needs inner products over *all* parameters (a reduction across devices when they
are sharded).  The estimates are a maximum: their meta-gradient follows the branch
taken.  Norms and roots use :func:`~adaptive_jax.extend.safe_sqrt`, whose derivative at
0 is 0: where a parameter's gradient is always 0, optax's Prodigy and D-Adaptation have
NaN meta-gradients (:math:`\sqrt{v}` at :math:`v = 0`) and ours are finite.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.hyperparameter import (
    EPSILON,
    NONNEGATIVE,
    POSITIVE,
    Domain,
    value_at,
)
from adaptive_jax._src.core.module import hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import (
    bias_correction,
    ema,
    global_norm,
    safe_sqrt,
    squared_magnitude,
)
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.core.reparameterization import LOG, LOG_ONE_MINUS
from adaptive_jax._src.core.trees import check_same_structure, map_params, zeros_like
from adaptive_jax._src.transforms.schedule_free import scalar_dtype

# The estimates are global: one value for every parameter (a schedule allowed for the rate).
GLOBAL_LEARNING_RATE = Domain("a learning rate", schedule=True, reparameterization=LOG)
GLOBAL_DECAY = Domain("a decay rate", 0.0, 1.0, reparameterization=LOG_ONE_MINUS)
OPTIONAL_DECAY = Domain("a decay rate", 0.0, 1.0, optional=True, reparameterization=LOG_ONE_MINUS)


def _needs_params(params: Any, block: str) -> None:
    if params is None:
        raise ValueError(f"{block} needs the parameters: call update(grads, state, params)")


def _inner(a: Any, b: Any, dtype: Any) -> jax.Array:
    """:math:`\\sum_{\\text{leaves}} \\langle a, b\\rangle` in ``dtype``."""
    # A sum of products rather than vdot: on sharded arrays it lowers to a scalar all-reduce.
    products = jax.tree_util.tree_map(lambda x, y: jnp.sum(x.astype(dtype) * y.astype(dtype)), a, b)
    return sum(jax.tree_util.tree_leaves(products), jnp.zeros([], dtype))


def _l1(tree: Any, dtype: Any) -> jax.Array:
    sums = jax.tree_util.tree_map(lambda x: jnp.sum(jnp.abs(x.astype(dtype))), tree)
    return sum(jax.tree_util.tree_leaves(sums), jnp.zeros([], dtype))


def _sum_of_squares(tree: Any, dtype: Any) -> jax.Array:
    sums = jax.tree_util.tree_map(lambda x: jnp.sum(squared_magnitude(x, dtype)), tree)
    return sum(jax.tree_util.tree_leaves(sums), jnp.zeros([], dtype))


def _scalar(value: Any, dtype: Any) -> jax.Array:
    return jnp.asarray(value).astype(dtype)


def _ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, 0 where the denominator is 0 (optax: NaN)."""
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0)


class ProdigyState(NamedTuple):
    """State of :class:`scale_by_prodigy` (the fields of ``optax.contrib.ProdigyState``)."""

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array


class ScaleByProdigy(Transform):
    r"""Prodigy's whole step (the estimate :math:`d_t` weights the gradients it is estimated from).

    With :math:`\gamma_t` the learning rate and :math:`\hat\gamma_t = d_t\gamma_t
    \sqrt{1-\beta_2^t}/(1-\beta_1^t)`:

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) d_t g_t, \quad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t^2 g_t^2,

    .. math::
       s_t = \beta_3 s_{t-1} + \hat\gamma_t d_t g_t / d_0, \quad
       r_t = \beta_3 r_{t-1} + \hat\gamma_t (d_t/d_0) \langle g_t, x_0 - x_t\rangle, \quad
       d_{t+1} = \max\big(d_t,\ c\, r_t/\|s_t\|_1\big),

    .. math::
       u_t = -\hat\gamma_t\Big(\frac{m_t}{\sqrt{v_t} + d_{t+1}\epsilon} + \lambda x_t\Big)

    (with ``safeguard_warmup`` :math:`s_t` uses :math:`d_t` in place of
    :math:`\hat\gamma_t`).  One block: :math:`d_t` scales the gradient before the
    moments and the step after them.  The numbers of ``optax.contrib.prodigy``; where
    :math:`\|s_t\|_1 = 0` (every gradient 0) the estimate is kept instead of optax's NaN.

    Args:
        learning_rate: :math:`\gamma`, a number or a schedule (1 is the method's intent).
        b1: :math:`\beta_1` in :math:`[0, 1)`.
        b2: :math:`\beta_2` in :math:`[0, 1)`.
        beta3: :math:`\beta_3` in :math:`[0, 1)`, or ``None`` for :math:`\sqrt{\beta_2}`.
        eps: :math:`\epsilon \ge 0`.
        estim_lr0: :math:`d_0 > 0`, the initial estimate.
        estim_lr_coef: :math:`c > 0`, a multiplier of the estimate.
        weight_decay: :math:`\lambda \ge 0`.
        safeguard_warmup: leave :math:`\gamma_t` out of :math:`s_t` (for warm-ups).

    Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner", ICML 2024.
    """

    learning_rate: Any = hyperparameter(default=1.0, domain=GLOBAL_LEARNING_RATE)
    b1: Any = hyperparameter(default=0.9, domain=GLOBAL_DECAY)
    b2: Any = hyperparameter(default=0.999, domain=GLOBAL_DECAY)
    beta3: Any = hyperparameter(default=None, domain=OPTIONAL_DECAY)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    estim_lr0: Any = hyperparameter(default=1e-6, domain=POSITIVE)
    estim_lr_coef: Any = hyperparameter(default=1.0, domain=POSITIVE)
    weight_decay: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)
    safeguard_warmup: bool = static(default=False)

    def init_state(self, params):
        dtype = scalar_dtype(params)
        copy = jax.tree_util.tree_map(jnp.array, params)
        return ProdigyState(
            zeros_like(params),
            zeros_like(params),
            zeros_like(params),
            copy,
            _scalar(self.estim_lr0, dtype),
            jnp.zeros([], dtype),
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_prodigy")
        _needs_params(params, "scale_by_prodigy")
        check_same_structure(state.params0, params, "params0", "params")
        dtype = state.estim_lr.dtype
        b1, b2 = _scalar(self.b1, dtype), _scalar(self.b2, dtype)
        b3 = safe_sqrt(b2) if self.beta3 is None else _scalar(self.beta3, dtype)
        d0 = _scalar(self.estim_lr0, dtype)
        d = state.estim_lr
        rate = _scalar(value_at(self.learning_rate, count - 1, "learning_rate"), dtype)
        correction = bias_correction(b2, count) ** 0.5 / bias_correction(b1, count)
        dlr = d * rate * correction.astype(dtype)
        scaled = jax.tree_util.tree_map(lambda g: d.astype(g.dtype) * g, updates)
        distance = _inner(
            updates, jax.tree_util.tree_map(jnp.subtract, state.params0, params), dtype
        )
        mu = map_params(lambda dg, m: ema(m, dg, b1), scaled, state.exp_avg, names=("exp_avg",))
        nu = map_params(
            lambda dg, v: ema(v, dg * dg, b2), scaled, state.exp_avg_sq, names=("exp_avg_sq",)
        )
        weight = d if self.safeguard_warmup else dlr
        grad_sum = map_params(
            lambda dg, s: (b3 * s.astype(dtype) + weight * dg.astype(dtype) / d0).astype(s.dtype),
            scaled,
            state.grad_sum,
            names=("grad_sum",),
        )
        numerator = b3 * state.numerator_weighted + (d / d0) * dlr * distance
        estimate = _scalar(self.estim_lr_coef, dtype) * _ratio(numerator, _l1(grad_sum, dtype))
        new_d = jnp.maximum(d, estimate)
        decay = _scalar(self.weight_decay, dtype)

        def step(m, v, p):
            m, v, wide_p = m.astype(dtype), v.astype(dtype), p.astype(dtype)
            denominator = safe_sqrt(v) + new_d * _scalar(self.eps, dtype)
            return (-decay * dlr * wide_p - dlr * m / denominator).astype(p.dtype)

        out = map_params(step, mu, nu, params, names=("exp_avg_sq", "params"))
        new_state = ProdigyState(mu, nu, grad_sum, state.params0, new_d, numerator)
        return out, new_state


scale_by_prodigy = ScaleByProdigy


class DAdaptAdamState(NamedTuple):
    """State of :class:`scale_by_dadapt_adam` (the fields of ``optax.contrib.DAdaptAdamWState``)."""

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array


class ScaleByDadaptAdam(Transform):
    r"""D-Adaptation for AdamW: Adam whose step :math:`\hat\gamma_t = d_t\gamma_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)` enters the first moment.

    With :math:`\rho = \sqrt{\beta_2}`:

    .. math::
       r_t = \rho r_{t-1} + (1-\rho)\hat\gamma_t
             \Big\langle g_t, \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon}\Big\rangle, \quad
       s_t = \rho s_{t-1} + (1-\rho)\hat\gamma_t g_t, \quad
       d_{t+1} = \max\Big(d_t, \frac{r_t}{(1-\rho)\|s_t\|_1}\Big),

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1)\hat\gamma_t g_t, \quad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
       u_t = -\frac{m_t}{\sqrt{v_t} + \epsilon} - \lambda\hat\gamma_t x_t .

    One block, for the same reason as :class:`scale_by_prodigy`.  The numbers of
    ``optax.contrib.dadapt_adamw``; where :math:`\|s_t\|_1 = 0` the estimate is kept
    instead of optax's NaN.

    Args:
        learning_rate: :math:`\gamma`, a number or a schedule (1 is the method's intent).
        b1: :math:`\beta_1` in :math:`[0, 1)`.
        b2: :math:`\beta_2` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        estim_lr0: :math:`d_0 > 0`, the initial estimate.
        weight_decay: :math:`\lambda \ge 0`.

    Reference: Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
    ICML 2023.
    """

    learning_rate: Any = hyperparameter(default=1.0, domain=GLOBAL_LEARNING_RATE)
    b1: Any = hyperparameter(default=0.9, domain=GLOBAL_DECAY)
    b2: Any = hyperparameter(default=0.999, domain=GLOBAL_DECAY)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)
    estim_lr0: Any = hyperparameter(default=1e-6, domain=POSITIVE)
    weight_decay: Any = hyperparameter(default=0.0, domain=NONNEGATIVE)

    def init_state(self, params):
        dtype = scalar_dtype(params)
        return DAdaptAdamState(
            zeros_like(params),
            zeros_like(params),
            zeros_like(params),
            _scalar(self.estim_lr0, dtype),
            jnp.zeros([], dtype),
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_dadapt_adam")
        _needs_params(params, "scale_by_dadapt_adam")
        dtype = state.estim_lr.dtype
        b1, b2 = _scalar(self.b1, dtype), _scalar(self.b2, dtype)
        rho = safe_sqrt(b2)
        eps = _scalar(self.eps, dtype)
        rate = _scalar(value_at(self.learning_rate, count - 1, "learning_rate"), dtype)
        correction = bias_correction(b2, count) ** 0.5 / bias_correction(b1, count)
        dlr = state.estim_lr * rate * correction.astype(dtype)
        weighted = map_params(
            lambda s, v: s.astype(dtype) / (safe_sqrt(v.astype(dtype)) + eps),
            state.grad_sum,
            state.exp_avg_sq,
            names=("exp_avg_sq",),
        )
        alignment = _inner(updates, weighted, dtype)
        mu = map_params(
            lambda g, m: ema(m, dlr.astype(g.dtype) * g, b1),
            updates,
            state.exp_avg,
            names=("exp_avg",),
        )
        nu = map_params(lambda g, v: ema(v, g * g, b2), updates, state.exp_avg_sq, names=("nu",))
        grad_sum = map_params(
            lambda g, s: ema(s, dlr.astype(g.dtype) * g, rho),
            updates,
            state.grad_sum,
            names=("grad_sum",),
        )
        numerator = rho * state.numerator_weighted + (1 - rho) * dlr * alignment
        estimate = _ratio(numerator, (1 - rho) * _l1(grad_sum, dtype))
        new_d = jnp.maximum(state.estim_lr, estimate)
        decay = _scalar(self.weight_decay, dtype)

        def step(m, v, p):
            m, v, wide_p = m.astype(dtype), v.astype(dtype), p.astype(dtype)
            return (-decay * dlr * wide_p - m / (safe_sqrt(v) + eps)).astype(p.dtype)

        out = map_params(step, mu, nu, params, names=("exp_avg_sq", "params"))
        return out, DAdaptAdamState(mu, nu, grad_sum, new_d, numerator)


scale_by_dadapt_adam = ScaleByDadaptAdam


class DogState(NamedTuple):
    """State of :class:`scale_by_dog`: :math:`x_0`, :math:`\\bar r_t` and :math:`\\sum\\|g\\|^2`."""

    init_params: Any
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


INIT_STEP_TYPES = ("distance", "learning_rate", "heuristic")


class ScaleByDog(Transform):
    r"""DoG's step size: :math:`u_t = \eta_t g_t`, :math:`\eta_t = \bar r_t / \sqrt{\sum_{k\le t}\|g_k\|^2 + \epsilon}`.

    :math:`\bar r_t = \max(\bar r_{t-1}, \|x_t - x_0\|)` starts at
    :math:`r_\epsilon`: ``init_step_value`` (``"distance"``), ``init_step_value``
    :math:`\cdot(1 + \|x_0\|)` (``"heuristic"``), or 0 with a first step of
    ``init_step_value`` itself (``"learning_rate"``).  Norms over all parameters.
    The numbers of ``optax.contrib.scale_by_dog``; the distance's derivative at
    :math:`x_t = x_0` is taken as 0.

    Args:
        init_step_type: ``"distance"``, ``"learning_rate"`` or ``"heuristic"``.
        init_step_value: :math:`r_\epsilon > 0` (or the first learning rate).
        eps: :math:`\epsilon \ge 0`, under the root.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.scale_by_dog("distance", 0.5, eps=0.0)
        >>> params = jnp.array([1.0])
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(params), params)
        >>> updates.item()  # r_eps / |g| * g
        0.5

    Reference: Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule", ICML 2023.
    """

    init_step_type: str = static(default="heuristic")
    init_step_value: Any = hyperparameter(default=1e-6, domain=POSITIVE)
    eps: Any = hyperparameter(default=1e-8, domain=EPSILON)

    def __check_init__(self):
        if self.init_step_type not in INIT_STEP_TYPES:
            raise ValueError(
                f"init_step_type={self.init_step_type!r} is invalid: expected one of "
                f"{INIT_STEP_TYPES}"
            )

    def init_state(self, params):
        dtype = scalar_dtype(params)
        value = _scalar(self.init_step_value, dtype)
        if self.init_step_type == "distance":
            r_eps = value
        elif self.init_step_type == "heuristic":
            r_eps = value * (1 + global_norm(params).astype(dtype))
        else:
            r_eps = jnp.zeros([], dtype)
        copy = jax.tree_util.tree_map(jnp.array, params)
        return DogState(copy, r_eps, jnp.zeros([], dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "scale_by_dog")
        _needs_params(params, "scale_by_dog")
        check_same_structure(state.init_params, params, "init_params", "params")
        dtype = state.max_dist.dtype
        distance = global_norm(jax.tree_util.tree_map(jnp.subtract, state.init_params, params))
        max_dist = jnp.maximum(state.max_dist, distance.astype(dtype))
        total = state.sum_sq_norm_grads + _sum_of_squares(updates, dtype)
        rate = max_dist / safe_sqrt(total + _scalar(self.eps, dtype))
        if self.init_step_type == "learning_rate":
            rate = jnp.where(count == 1, _scalar(self.init_step_value, dtype), rate)
        out = jax.tree_util.tree_map(lambda g: rate.astype(g.dtype) * g, updates)
        return out, DogState(state.init_params, max_dist, total)


scale_by_dog = ScaleByDog
