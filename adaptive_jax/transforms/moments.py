r"""Moment estimates: the memory of past gradients that adaptive methods scale by.

The blocks here turn gradients :math:`g_t` into a :class:`Moments` record — a first
moment (direction) and a second moment (scale), plus the bias-correction
denominators — that later blocks in a chain read:

* :func:`ema_moments` (Adam, Kingma & Ba 2015):
  :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
  :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2`, with :math:`m_0 = v_0 = 0`;
* :func:`ema_of_squares` (RMSProp, Tieleman & Hinton 2012): first moment :math:`g_t`,
  second moment :math:`v_t = \rho v_{t-1} + (1-\rho) |g_t|^2`;
* :func:`accumulate_squares` (Adagrad, Duchi et al. 2011): first moment :math:`g_t`,
  second moment :math:`G_t = G_{t-1} + |g_t|^2`;
* :func:`debias` divides by :math:`1-\beta^t` (Adam's initialisation-bias correction);
* :func:`amsgrad_max` replaces the second moment by its running maximum
  (AMSGrad, Reddi et al. 2018) — before :func:`debias` it is torch's variant, after it
  optax's.

:func:`precondition` (in :mod:`adaptive_jax.transforms.preconditioning`) turns a
``Moments`` back into an update.  For complex parameters the second moment is
:math:`|g|^2 = g \bar g`, which is real.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax.core.numerics import bias_correction, cast_like, widest_dtype
from adaptive_jax.core.protocol import PyTree, Transform
from adaptive_jax.core.pytree import pytree_dataclass, static_field
from adaptive_jax.core.trees import map_params, zeros_like
from adaptive_jax.core.validation import check_decay, check_nonnegative


@pytree_dataclass
class Moments:
    """First and second moment estimates flowing between blocks of a chain.

    ``mu_correction`` and ``nu_correction`` are the bias-correction denominators
    :math:`1-\\beta_1^t` and :math:`1-\\beta_2^t` (1 once corrected, or when the
    estimate is unbiased by construction).
    """

    mu: PyTree
    nu: PyTree
    mu_correction: Any = 1.0
    nu_correction: Any = 1.0


def expect_gradients(updates: PyTree, block: str) -> None:
    """Raise if a block that consumes gradients is handed a :class:`Moments`."""
    if isinstance(updates, Moments):
        raise TypeError(
            f"{block} expects gradients (a tree of arrays) but got Moments; place it before "
            "the moment estimate or after `precondition` in the chain"
        )


def expect_moments(updates: PyTree, block: str) -> Moments:
    """Raise unless a block that consumes moment estimates is handed a :class:`Moments`."""
    if not isinstance(updates, Moments):
        raise TypeError(
            f"{block} expects Moments from ema_moments, ema_of_squares or accumulate_squares "
            f"earlier in the chain, got {type(updates).__name__}"
        )
    return updates


def squared_magnitude(g: jax.Array, dtype: Any = None) -> jax.Array:
    """:math:`|g|^2` (real also for complex ``g``), in ``dtype`` if given."""
    g = g if dtype is None else g.astype(widest_dtype(dtype, g.dtype))
    square = jnp.real(g * jnp.conj(g)) if jnp.iscomplexobj(g) else g * g
    return square if dtype is None else square.astype(dtype)


def ema(previous: jax.Array, new: jax.Array, decay: Any) -> jax.Array:
    r""":math:`\beta x_{t-1} + (1-\beta) x_t`, stored in ``previous``'s dtype.

    Computed in at least float32: in bfloat16, :math:`\beta_2 = 0.999` itself rounds
    to 1 and the average would never move.
    """
    wide = widest_dtype(previous.dtype, jnp.float32)
    decay = jnp.asarray(decay).astype(wide)
    average = decay * previous.astype(wide) + (1 - decay) * new.astype(wide)
    return average.astype(previous.dtype)


def _real_dtype(x: Any, dtype: Any) -> Any:
    """The dtype of a second-moment leaf: ``dtype`` or ``x``'s real dtype."""
    if dtype is not None:
        return dtype
    return jnp.finfo(jnp.result_type(x)).dtype


class EmaMomentsState(NamedTuple):
    """State of :func:`ema_moments`: the first and second moment EMAs."""

    mu: PyTree
    nu: PyTree


@pytree_dataclass
class EmaMoments(Transform):
    """See :func:`ema_moments`."""

    b1: Any = 0.9
    b2: Any = 0.999
    mu_dtype: Any = static_field(default=None)
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_decay("b1", self.b1)
        check_decay("b2", self.b2)

    def init_state(self, params):
        mu = zeros_like(params, self.mu_dtype)
        nu = jax.tree_util.tree_map(lambda p: zeros_like(p, _real_dtype(p, self.nu_dtype)), params)
        return EmaMomentsState(mu, nu)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_moments")
        mu = map_params(lambda g, m: ema(m, g, self.b1), updates, state.mu, names=("mu",))
        nu = map_params(
            lambda g, v: ema(v, squared_magnitude(g, v.dtype), self.b2),
            updates,
            state.nu,
            names=("nu",),
        )
        moments = Moments(mu, nu, bias_correction(self.b1, count), bias_correction(self.b2, count))
        return moments, EmaMomentsState(mu, nu)


def ema_moments(
    b1: Any = 0.9, b2: Any = 0.999, mu_dtype: Any = None, nu_dtype: Any = None
) -> EmaMoments:
    r"""Exponential moving averages of the gradient and of its square (Adam's moments).

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \qquad m_0 = v_0 = 0.

    Outputs a :class:`Moments` carrying :math:`1-\beta_1^t` and :math:`1-\beta_2^t`
    for :func:`debias`.  ``mu_dtype``/``nu_dtype`` store the moments in another
    dtype (e.g. float32 moments for bfloat16 parameters).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_moments(b1=0.9, b2=0.99)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(moments.nu.item(), 6)  # (1 - b1) g, (1 - b2) g^2
        (0.2, 0.04)

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return EmaMoments(b1, b2, mu_dtype, nu_dtype)


@pytree_dataclass
class EmaOfSquares(Transform):
    """See :func:`ema_of_squares`."""

    decay: Any = 0.9
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_decay("decay", self.decay)

    def init_state(self, params):
        return jax.tree_util.tree_map(
            lambda p: zeros_like(p, _real_dtype(p, self.nu_dtype)), params
        )

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "ema_of_squares")
        nu = map_params(
            lambda g, v: ema(v, squared_magnitude(g, v.dtype), self.decay),
            updates,
            state,
            names=("nu",),
        )
        return Moments(updates, nu), nu


def ema_of_squares(decay: Any = 0.9, nu_dtype: Any = None) -> EmaOfSquares:
    r"""RMSProp's second moment: :math:`v_t = \rho v_{t-1} + (1-\rho) |g_t|^2`, :math:`v_0 = 0`.

    Outputs ``Moments(mu=g_t, nu=v_t)`` without bias correction (as RMSProp and
    ``torch.optim.RMSprop`` define it).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.ema_of_squares(decay=0.9)
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(moments.nu.item(), 6)  # g and (1 - rho) g^2
        (2.0, 0.4)

    Reference: Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning", 2012.
    """
    return EmaOfSquares(decay, nu_dtype)


@pytree_dataclass
class AccumulateSquares(Transform):
    """See :func:`accumulate_squares`."""

    initial_accumulator_value: Any = 0.0
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_nonnegative("initial_accumulator_value", self.initial_accumulator_value)

    def init_state(self, params):
        def start(p):
            zeros = zeros_like(p, _real_dtype(p, self.nu_dtype))
            return zeros + cast_like(self.initial_accumulator_value, zeros)

        return jax.tree_util.tree_map(start, params)

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "accumulate_squares")
        total = map_params(
            lambda g, s: s + squared_magnitude(g, s.dtype), updates, state, names=("sum",)
        )
        return Moments(updates, total), total


def accumulate_squares(
    initial_accumulator_value: Any = 0.0, nu_dtype: Any = None
) -> AccumulateSquares:
    r"""Adagrad's accumulator :math:`G_t = G_{t-1} + |g_t|^2`, :math:`G_0` = ``initial_accumulator_value``.

    Outputs ``Moments(mu=g_t, nu=G_t)``.  The effective rate
    :math:`\eta/(\sqrt{G_t}+\epsilon)` can only decrease.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.accumulate_squares()
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in (3.0, 4.0):
        ...     moments, state = tx.update(jnp.array([g]), state)
        >>> print(moments.nu)  # 3^2 + 4^2
        [25.]

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", JMLR 2011.
    """
    return AccumulateSquares(initial_accumulator_value, nu_dtype)


@pytree_dataclass
class Debias(Transform):
    """See :func:`debias`."""

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "debias")

        def divide(tree, correction):
            return jax.tree_util.tree_map(lambda x: x / cast_like(correction, x), tree)

        corrected = Moments(
            divide(moments.mu, moments.mu_correction), divide(moments.nu, moments.nu_correction)
        )
        return corrected, state


def debias() -> Debias:
    r"""Adam's bias correction: :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`.

    Moments started at zero are biased towards zero by the factor
    :math:`1-\beta^t` (unroll the EMA and take expectations); dividing by it makes
    the estimates unbiased for stationary gradients.  :math:`t` counts from 1.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.ema_moments(b1=0.9, b2=0.99), aj.debias())
        >>> moments, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> round(moments.mu.item(), 6), round(moments.nu.item(), 6)  # unbiased: g, g^2 at t = 1
        (2.0, 4.0)
    """
    return Debias()


@pytree_dataclass
class AmsgradMax(Transform):
    """See :func:`amsgrad_max`."""

    nu_dtype: Any = static_field(default=None)

    def init_state(self, params):
        return jax.tree_util.tree_map(
            lambda p: zeros_like(p, _real_dtype(p, self.nu_dtype)), params
        )

    def apply(self, updates, state, params, count):
        moments = expect_moments(updates, "amsgrad_max")
        nu_max = map_params(
            lambda v, v_max: jnp.maximum(v_max, v.astype(v_max.dtype)),
            moments.nu,
            state,
            names=("nu_max",),
        )
        return Moments(moments.mu, nu_max, moments.mu_correction, moments.nu_correction), nu_max


def amsgrad_max(nu_dtype: Any = None) -> AmsgradMax:
    r"""AMSGrad's running maximum of the second moment: :math:`\hat v^{\max}_t = \max(\hat v^{\max}_{t-1}, v_t)`.

    The denominator built from it never decreases, so the effective step size never
    grows: the fix for Adam's divergence on Reddi et al.'s online problem.  Where it
    stands in the chain picks the variant:

    * before :func:`debias` — maximum of the raw :math:`v_t`, then bias-corrected:
      ``torch.optim.Adam(amsgrad=True)`` (the default in :func:`adaptive_jax.amsgrad`);
    * after :func:`debias` — maximum of :math:`\hat v_t`: ``optax.amsgrad``.

    Reference: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    ``nu_dtype`` must match the second moment's storage dtype when that is set.
    """
    return AmsgradMax(nu_dtype)
