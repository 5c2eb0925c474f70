r"""Truncated backpropagation: a meta-gradient from every :math:`K`-step window of a long run.

Differentiating a whole :math:`T`-step training run updates the hyperparameters once per run.
Truncated backpropagation instead advances the run :math:`K` steps at a time and, after each
window, differentiates only that window's objective :math:`L_j` with respect to the
hyperparameters :math:`\phi`, holding the window's starting point fixed:

.. math::
   (\theta_{(j+1)K}, s_{(j+1)K}) = \mathrm{unroll}_K(\phi;\ \theta_{jK}, s_{jK}), \qquad
   \hat g_j = \frac{\partial L_j}{\partial \phi}\Big|_{\theta_{jK},\, s_{jK}\ \text{fixed}} .

The outer optimizer steps after every window and the inner run continues from where the window
ended (with the new hyperparameters); after :math:`T` steps it restarts from :math:`\theta_0`.
Each estimate costs :math:`K` steps and memory for :math:`K` steps, but it ignores how
:math:`\phi` shaped :math:`\theta_{jK}`, so it is biased: it favours hyperparameters that look
good over :math:`K` steps (short-horizon bias, Wu et al., "Understanding Short-Horizon Bias in
Stochastic Meta-Optimization", ICLR 2018), and on some problems it points the wrong way
(:mod:`adaptive_jax._src.meta.pes` removes the bias).

:class:`InnerRun` describes the run and advances it one window; :class:`TruncatedBackprop` and
:class:`~adaptive_jax.meta.PersistentES` are meta-gradient estimators built on it, used by
:func:`~adaptive_jax.meta.meta_train`.

Reference: Williams & Peng, "An Efficient Gradient-Based Algorithm for On-Line Training of
Recurrent Network Trajectories", Neural Computation 1990 (truncated BPTT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.module import Module, child, static
from adaptive_jax._src.core.numerics import COUNT_DTYPE
from adaptive_jax._src.core.protocol import PyTree
from adaptive_jax._src.meta.estimator import Estimator
from adaptive_jax._src.meta.hypergradient import differentiable_leaves
from adaptive_jax._src.meta.modes import Mode, Reverse, as_mode
from adaptive_jax._src.meta.unroll import Unrolled, unroll


class WindowState(NamedTuple):
    """Where an inner run stands between windows.

    ``step`` counts the steps taken since the run last (re)started.
    """

    params: PyTree
    opt_state: PyTree
    step: jax.Array


def mean_training_loss(result: Unrolled) -> jax.Array:
    """The default window objective: the mean training loss over the window's steps."""
    return jnp.mean(result.losses)


class InnerRun(Module):
    """A ``horizon``-step training run of ``loss_fn`` from ``init_params``, advanced ``window`` steps at a time.

    ``data`` is as for :func:`~adaptive_jax.meta.unroll`: arrays with a leading step axis
    (at least ``horizon`` long; the window starting at step ``t`` uses rows ``t .. t+K-1``), a
    function of the step within the run, or None.  ``objective(result) -> scalar`` scores a
    window from its :class:`~adaptive_jax.meta.Unrolled` result (default: the mean
    training loss over the window; e.g. ``lambda r: val_loss(r.params)`` for a validation
    loss at the window's end).  ``to_transform(meta_params)`` builds the transformation
    from the meta-parameters (default: they are the transformation).  ``horizon=None`` never
    restarts (an online run), and is then the length of ``data`` when it holds arrays.
    """

    loss_fn: Callable[..., jax.Array] = child()
    init_params: PyTree = child()
    data: Any = child(default=None)
    window: int = static(default=1)
    horizon: int | None = static(default=None)
    objective: Callable[[Unrolled], jax.Array] | None = child(default=None)
    to_transform: Callable[[PyTree], Any] | None = child(default=None)

    def __check_init__(self):
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")
        lengths = {jnp.shape(x)[0] for x in _array_leaves(self.data)}
        if len(lengths) > 1:
            raise ValueError(
                f"data leaves must share one leading (step) axis, got {sorted(lengths)}"
            )
        if lengths:
            (length,) = lengths
            if self.horizon is None:
                object.__setattr__(self, "horizon", length)
            elif length < self.horizon:
                raise ValueError(f"data has {length} steps, fewer than horizon={self.horizon}")
        if self.horizon is not None and self.horizon % self.window:
            raise ValueError(
                f"horizon={self.horizon} must be a multiple of window={self.window} "
                "so that every window has the same length"
            )

    def with_decoder(self, decode: Callable[[PyTree], Any]) -> InnerRun:
        """The same run over coordinates ``z`` whose transformation is ``transform(decode(z))``."""
        inner = self.to_transform

        def to_transform(z: PyTree) -> Any:
            meta = decode(z)
            return meta if inner is None else inner(meta)

        return self.replace(to_transform=to_transform)

    def transform(self, meta_params: PyTree) -> Any:
        """The transformation the meta-parameters stand for."""
        return meta_params if self.to_transform is None else self.to_transform(meta_params)

    def start(self, tx: Any) -> WindowState:
        """The run at step 0: ``init_params`` and ``tx.init(init_params)``."""
        return WindowState(self.init_params, tx.init(self.init_params), jnp.zeros([], COUNT_DTYPE))

    def finished(self, step: jax.Array) -> jax.Array:
        """Whether a run at ``step`` has reached the horizon (never, without one)."""
        if self.horizon is None:
            return jnp.zeros([], bool)
        return step >= self.horizon

    def restart_if_finished(self, tx: Any, state: WindowState) -> WindowState:
        """``state``, or a fresh run when ``state`` has reached the horizon."""
        if self.horizon is None:
            return state
        done = self.finished(state.step)
        return jax.tree_util.tree_map(
            lambda fresh, old: jnp.where(done, fresh, old), self.start(tx), state
        )

    def run_window(self, tx: Any, state: WindowState) -> tuple[jax.Array, WindowState]:
        """Advance ``window`` steps with ``tx`` (restarting first if the run is over).

        Returns the window's objective and the state after it.
        """
        state = self.restart_if_finished(tx, state)
        result = unroll(
            tx,
            state.params,
            self.loss_fn,
            self._window_data(state.step),
            num_steps=self.window,
            opt_state=state.opt_state,
        )
        objective = mean_training_loss if self.objective is None else self.objective
        return objective(result), WindowState(
            result.params, result.opt_state, state.step + self.window
        )

    def _window_data(self, step: jax.Array) -> Any:
        if self.data is None or callable(self.data):
            return self.data
        return jax.tree_util.tree_map(
            lambda x: jax.lax.dynamic_slice_in_dim(x, step, self.window), self.data
        )


def _array_leaves(data: Any) -> list[Any]:
    if data is None or callable(data):
        return []
    return jax.tree_util.tree_leaves(data)


class TruncatedBackprop(Estimator):
    r"""Meta-gradient estimator: exact gradient of each window's objective, start held fixed.

    ``init(meta_params, key) -> state`` starts the run; ``estimate(meta_params, state) ->
    (objective, meta_gradient, state)`` advances one window, differentiating it in
    ``mode`` (``Reverse()`` by default; ``Reverse(checkpointing=...)`` for long windows,
    ``Forward()`` for a few hyperparameters).  Build with :func:`truncated_backprop`.
    """

    run: InnerRun = child()
    mode: Mode = child(default=Reverse(), converter=as_mode)

    def with_decoder(self, decode: Callable[[PyTree], Any]) -> TruncatedBackprop:
        return TruncatedBackprop(self.run.with_decoder(decode), self.mode)

    def init(self, meta_params: PyTree, key: jax.Array | None = None) -> WindowState:
        del key  # deterministic
        return self.run.start(self.run.transform(meta_params))

    def estimate(
        self, meta_params: PyTree, state: WindowState
    ) -> tuple[jax.Array, PyTree, WindowState]:
        start = jax.lax.stop_gradient(state)
        leaves, rebuild = differentiable_leaves(meta_params)

        def window_objective(values):
            return self.run.run_window(self.run.transform(rebuild(values)), start)

        (value, state), grads = self.mode.value_and_grad(window_objective, leaves, has_aux=True)
        return value, rebuild(grads, fill=jax.numpy.zeros_like), state


def truncated_backprop(
    loss_fn: Callable[..., jax.Array],
    init_params: PyTree,
    data: Any = None,
    *,
    window: int,
    horizon: int | None = None,
    objective: Callable[[Unrolled], jax.Array] | None = None,
    to_transform: Callable[[PyTree], Any] | None = None,
    mode: Mode | None = None,
) -> TruncatedBackprop:
    r"""K-step truncated backpropagation through a ``horizon``-step run (see the module docstring).

    The arguments describe an :class:`InnerRun`; ``window`` is :math:`K`; ``mode`` (a
    :class:`~adaptive_jax.meta.Mode`, default ``Reverse()``) differentiates each window.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> from adaptive_jax.meta import truncated_backprop
        >>> loss = lambda w: jnp.sum(w**2)
        >>> estimator = truncated_backprop(loss, jnp.ones(2), window=1, horizon=4)
        >>> tx = aj.sgd(0.1)
        >>> state = estimator.init(tx)
        >>> value, grads, state = estimator.estimate(tx, state)
        >>> # window objective = loss before the step = 2; it does not depend on the rate
        >>> float(value), float(aj.get_hyperparameter(grads, "learning_rate")), int(state.step)
        (2.0, 0.0, 1)
    """
    return TruncatedBackprop(
        InnerRun(loss_fn, init_params, data, window, horizon, objective, to_transform),
        Reverse() if mode is None else mode,
    )
