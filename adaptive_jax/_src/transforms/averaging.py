r"""Weights for evaluation: an average of the parameters, and Lookahead's slow weights.

Both leave training as it is (or, for Lookahead, change it in a known way) and keep a
second copy of the parameters in the optimizer state, read back for evaluation:

* :func:`parameter_ema` — the exponential moving average of the parameters after each
  update, bias-corrected like Adam's moments (Polyak & Juditsky, "Acceleration of
  Stochastic Approximation by Averaging", SIAM J. Control Optim. 1992; the EMA form of
  Tan & Le's EfficientNet and of most diffusion models).  Read it with
  :func:`ema_params`;
* :func:`lookahead` — every ``sync_period`` steps the slow weights move a fraction
  ``slow_step_size`` towards the fast ones and the fast weights restart from them
  (Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019).
  Unlike ``optax.lookahead``, which trains a ``LookaheadParams(fast, slow)`` pair, this
  one takes and returns ordinary parameters (the fast ones); the slow weights live in
  the state.  Read them with :func:`slow_params`.

Both copies follow the parameters' shardings (they are built from the parameters
themselves) and are updated elementwise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.hyperparameter import DECAY_RATE, FRACTION, check_count
from adaptive_jax._src.core.inspect import find_state
from adaptive_jax._src.core.module import child, hyperparameter, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.numerics import widest_dtype
from adaptive_jax._src.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax._src.core.trees import map_params, zeros_like


def _needs_params(params: Any, block: str) -> None:
    if params is None:
        raise ValueError(f"{block} needs the parameters: call update(grads, state, params)")


def _wide(*leaves: Any) -> Any:
    return widest_dtype(jnp.float32, *(jnp.result_type(x) for x in leaves))


class ParameterEmaState(NamedTuple):
    """State of :func:`parameter_ema`.

    ``ema`` is the bias-corrected average of the parameters after each update (the
    initial parameters before the first one); ``weight`` is :math:`1-\\beta^t`, the
    total weight an average started at zero would hold.
    """

    ema: PyTree
    weight: jax.Array


class ParameterEma(Transform):
    r"""Keep the bias-corrected EMA of the parameters in the state; updates pass unchanged.

    With :math:`\theta_t = \theta_{t-1} + u_t` the parameters after update :math:`t`:

    .. math::

       \bar\theta_t = \frac{\sum_{i=1}^t (1-\beta)\beta^{t-i}\theta_i}{1-\beta^t},
       \quad\text{computed as}\quad
       w_t = \beta w_{t-1} + (1-\beta),\;\;
       \bar\theta_t = \Big(1 - \tfrac{1-\beta}{w_t}\Big)\bar\theta_{t-1}
                      + \tfrac{1-\beta}{w_t}\,\theta_t ,

    the same debiasing as Adam's moments (:math:`w_t = 1-\beta^t`), so
    :math:`\bar\theta_1 = \theta_1` and early averages are not pulled towards zero or
    towards :math:`\theta_0`.  Equal to ``optax.ema(decay, debias=True)`` applied to the
    sequence of parameters.  Read the average with :func:`ema_params`.

    Place it **last** in the chain, after the learning rate: it needs the final updates
    (it computes :math:`\theta_t` from them and the parameters).

    Args:
        decay: :math:`\beta \in [0, 1)`, e.g. 0.999 (an average over about
            :math:`1/(1-\beta)` steps).
        accumulator_dtype: dtype of the average; None: each parameter's dtype, at
            least float32 (a bfloat16 average with :math:`\beta = 0.999` could not
            move).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.sgd(1.0), aj.parameter_ema(0.5))
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (-2.0, -2.0):  # theta_1 = 2, theta_2 = 4
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        ...     params = aj.apply_updates(params, updates)
        >>> # (0.5 * 0.5 * 2 + 0.5 * 4) / (1 - 0.5 ** 2) = 2.5 / 0.75
        >>> round(float(aj.ema_params(state)[0]), 5)
        3.33333
    """

    decay: Any = hyperparameter(default=0.999, domain=DECAY_RATE, per_parameter=False)
    accumulator_dtype: Any = static(default=None)

    def _dtype(self, leaf: Any) -> Any:
        if self.accumulator_dtype is not None:
            return jnp.dtype(self.accumulator_dtype)
        return _wide(leaf)

    def init_state(self, params):
        def copy(p: Any) -> Any:
            if isinstance(p, jax.ShapeDtypeStruct):  # abstract: its value is never read
                return zeros_like(p, self._dtype(p))
            return jnp.array(p, dtype=self._dtype(p), copy=True)

        weight_dtype = _wide(*jax.tree_util.tree_leaves(params))
        return ParameterEmaState(jax.tree_util.tree_map(copy, params), jnp.zeros([], weight_dtype))

    def apply(self, updates, state, params, count):
        expect_gradients(updates, "parameter_ema")
        _needs_params(params, "parameter_ema")
        new_params = apply_updates(params, updates)
        decay = jnp.asarray(self.decay).astype(state.weight.dtype)
        weight = decay * state.weight + (1 - decay)
        rate = (1 - decay) / weight  # 1 at the first update

        def average(u, e, p):
            r = rate.astype(e.dtype)
            return (1 - r) * e + r * p.astype(e.dtype)

        ema = map_params(average, updates, state.ema, new_params, names=("ema", "params"))
        return updates, ParameterEmaState(ema, weight)


def ema_params(state: Any) -> PyTree:
    """The averaged parameters held by the :func:`parameter_ema` in an optimizer state.

    ``state`` is what ``init``/``update`` returned (a chain's state, a
    ``flax.nnx.Optimizer``'s ``opt_state``...); it must hold exactly one
    ``parameter_ema``.  The average is in its accumulator dtype (at least float32).

    Raises:
        ValueError: the state holds no ``parameter_ema`` or several.
    """
    return find_state(state, ParameterEmaState, "parameter_ema state (ParameterEmaState)").ema


class LookaheadState(NamedTuple):
    """State of :func:`lookahead`: the fast optimizer's state and the slow weights.

    (optax's ``steps_since_sync`` is ``(count - 1) % sync_period`` of the shared step
    counter.)
    """

    fast_state: PyTree
    slow: PyTree


class Lookahead(Transform):
    r"""Lookahead: :math:`k` fast steps, then the slow weights move towards the fast ones.

    With :math:`\phi` the slow weights, :math:`\theta` the parameters (the fast
    weights) and :math:`u` the fast optimizer's update, every update is
    :math:`\theta \leftarrow \theta + u`, except every ``sync_period``-th:

    .. math::

       \phi \leftarrow \phi + \alpha(\theta + u - \phi), \qquad \theta \leftarrow \phi ,

    returned as the update :math:`u - (1-\alpha)(\theta + u - \phi)`, so that
    ``apply_updates`` gives :math:`\theta = \phi`.  These are ``optax.lookahead``'s
    numbers (its fast parameters are the parameters here, its slow ones
    :func:`slow_params`).  Do not change the updates after it in a chain.

    Args:
        fast_optimizer: the inner optimizer (adaptive_jax or optax).
        sync_period: :math:`k`, a Python int >= 1.
        slow_step_size: :math:`\alpha \in [0, 1]`.
        reset_state: after each synchronisation, restart the fast optimizer from its
            initial state (and its step count from 0), as optax does.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lookahead(aj.sgd(1.0), sync_period=2, slow_step_size=0.5)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for _ in range(2):  # fast: 0 -> 1 -> 2; sync: phi = 0 + 0.5 * (2 - 0) = 1
        ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
        ...     params = aj.apply_updates(params, updates)
        >>> float(params[0]), float(aj.slow_params(state)[0])
        (1.0, 1.0)

    Reference: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step
    back", NeurIPS 2019.
    """

    fast_optimizer: Transform = child(converter=lambda tx: as_transform(tx, "fast_optimizer"))
    sync_period: int = static()
    slow_step_size: Any = hyperparameter(domain=FRACTION)
    reset_state: bool = static(default=False)
    takes_extra_args = True

    def __check_init__(self):
        check_count("sync_period", self.sync_period)

    def init_state(self, params):
        for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
            if isinstance(p, jax.ShapeDtypeStruct):
                raise TypeError(
                    f"lookahead keeps a copy of the parameters, so init needs their values; "
                    f"params{jax.tree_util.keystr(path)} is a ShapeDtypeStruct (for shapes "
                    "and shardings use jax.eval_shape(tx.init, params))"
                )
        slow = jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params)
        return LookaheadState(self.fast_optimizer.init_state(params), slow)

    def apply(self, updates, state, params, count, **extra_args):
        _needs_params(params, "lookahead")
        position = (count - 1) % self.sync_period
        sync = position == self.sync_period - 1
        fast_count = position + 1 if self.reset_state else count
        fast = self.fast_optimizer
        if fast.takes_extra_args:
            fast_updates, fast_state = fast.apply(
                updates, state.fast_state, params, fast_count, **extra_args
            )
        else:
            fast_updates, fast_state = fast.apply(updates, state.fast_state, params, fast_count)
        if self.reset_state:
            initial = fast.init_state(params)
            fast_state = jax.tree_util.tree_map(
                lambda current, start: jnp.where(sync, start, current), fast_state, initial
            )

        alpha = self.slow_step_size

        def difference(u, p, s):  # theta + u - phi, in at least float32
            wide = _wide(u, p, s)
            return wide, p.astype(wide) + u.astype(wide) - s.astype(wide)

        def fast_update(u, p, s):
            wide, d = difference(u, p, s)
            a = jnp.asarray(alpha).astype(wide)
            return jnp.where(sync, u.astype(wide) - (1 - a) * d, u.astype(wide)).astype(u.dtype)

        def slow_update(u, p, s):
            wide, d = difference(u, p, s)
            a = jnp.asarray(alpha).astype(wide)
            return jnp.where(sync, s.astype(wide) + a * d, s.astype(wide)).astype(s.dtype)

        others, names = (params, state.slow), ("params", "slow")
        new_updates = map_params(fast_update, fast_updates, *others, names=names)
        slow = map_params(slow_update, fast_updates, *others, names=names)
        return new_updates, LookaheadState(fast_state, slow)


def slow_params(state: Any) -> PyTree:
    """The slow weights held by the :func:`lookahead` in an optimizer state (for evaluation).

    ``state`` is what ``init``/``update`` returned; it must hold exactly one
    ``lookahead``.

    Raises:
        ValueError: the state holds no ``lookahead`` or several.
    """
    return find_state(state, LookaheadState, "lookahead state (LookaheadState)").slow


parameter_ema = ParameterEma
lookahead = Lookahead
