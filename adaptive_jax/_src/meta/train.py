r"""The meta-training loop: gradient descent on hyperparameters with any adaptive_jax optimizer.

Each iteration asks a meta-gradient estimator for :math:`(L(\phi_k), \hat g_k)`, optionally clips
:math:`\hat g_k` to a global norm :math:`c`, and lets the outer optimizer step:

.. math::
   \hat g_k \leftarrow \hat g_k \min\!\Big(1, \frac{c}{\|\hat g_k\|_2}\Big), \qquad
   (u_k, s_k) = \mathrm{outer.update}(\hat g_k, s_{k-1}, \phi_k), \qquad \phi_{k+1} = \phi_k + u_k .

The estimator is either a plain differentiable function ``meta_params -> meta-loss`` (its exact
gradient is taken in the chosen :class:`~adaptive_jax.meta.Mode`, e.g. through a full unroll) or
an :class:`~adaptive_jax.meta.Estimator`: :class:`~adaptive_jax.meta.TruncatedBackprop`,
:class:`~adaptive_jax.meta.PersistentES`, or your own.

Long unrolls at large learning rates make the meta-loss surface chaotic: its gradient norm grows
exponentially with the horizon and gradient descent on it stalls (Metz et al., "Understanding
and correcting pathologies in the training of learned optimizers", ICML 2019).
:func:`meta_train` warns (:class:`MetaGradientExplosionWarning`) when the norm is not finite or
jumps far above its typical value so far; clipping, shorter windows, or
:func:`~adaptive_jax.meta.persistent_es` are the remedies.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.numerics import global_norm
from adaptive_jax._src.core.protocol import PyTree, apply_updates
from adaptive_jax._src.meta.estimator import as_estimator
from adaptive_jax._src.meta.modes import Mode
from adaptive_jax._src.transforms.clipping import clip_by_global_norm


class MetaGradientExplosionWarning(RuntimeWarning):
    """The meta-gradient norm exploded: the meta-loss is likely in its chaotic regime."""


class MetaHistory(NamedTuple):
    """One row per iteration :math:`k`, all evaluated at the same :math:`\\phi_k`.

    ``hyperparameters`` is ``record(phi_k)`` stacked along a leading axis (by default the
    meta-parameters themselves); ``meta_losses`` is the estimator's loss and
    ``meta_grad_norms`` the global norm of its meta-gradient before clipping.
    """

    hyperparameters: PyTree
    meta_losses: np.ndarray
    meta_grad_norms: np.ndarray


class MetaTrainResult(NamedTuple):
    """What :func:`meta_train` returns: the final meta-parameters, states and the history."""

    meta_params: PyTree
    outer_state: PyTree
    estimator_state: PyTree
    history: MetaHistory


def _as_float_arrays(tree: PyTree) -> PyTree:
    """Leaves as arrays of a fixed float dtype, so the jitted step compiles once."""

    def convert(leaf):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.result_type(float)
        return jnp.asarray(leaf, dtype)

    return jax.tree_util.tree_map(convert, tree)


def _meta_step(estimator, outer_optimizer, clip_norm, meta_params, outer_state, estimator_state):
    """One outer iteration: estimate, clip, step.  Returns the new states, loss and norm."""
    loss, grads, estimator_state = estimator.estimate(meta_params, estimator_state)
    norm = global_norm(grads)
    if clip_norm is not None:
        clipper = clip_by_global_norm(clip_norm)
        grads, _ = clipper.update(grads, clipper.init(grads))
    updates, outer_state = outer_optimizer.update(grads, outer_state, meta_params)
    return apply_updates(meta_params, updates), outer_state, estimator_state, loss, norm


def _meta_steps(estimator, outer_optimizer, clip_norm, carry, *, record, length):
    """``length`` outer iterations in one ``lax.scan``; outputs (record(phi_k), loss_k, norm_k)."""

    def body(carry, _):
        meta_params, outer_state, estimator_state = carry
        recorded = record(meta_params)
        *carry, loss, norm = _meta_step(
            estimator, outer_optimizer, clip_norm, meta_params, outer_state, estimator_state
        )
        return tuple(carry), (recorded, loss, norm)

    return jax.lax.scan(body, carry, None, length=length)


_jitted_meta_steps = jax.jit(_meta_steps, static_argnames=("record", "length"))


def _compiled_steps(estimator: Any) -> Callable[..., Any]:
    """The compiled chunk with ``estimator`` bound: a jit argument if it is a pytree (so its
    arrays are not baked into the program), else a constant of a fresh compilation."""
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(estimator)):
        return jax.jit(
            functools.partial(_meta_steps, estimator), static_argnames=("record", "length")
        )
    return functools.partial(_jitted_meta_steps, estimator)


def _identity(tree: PyTree) -> PyTree:
    return tree


class _StderrProgress:
    """A one-line progress report for when tqdm is not installed."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def update(self, steps: int, loss: float) -> None:
        self.done += steps
        print(
            f"\rmeta-train {self.done}/{self.total}  meta-loss {loss:.4g}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        print(file=sys.stderr, flush=True)


class _TqdmProgress:
    def __init__(self, tqdm: Any, total: int):
        self.bar = tqdm(total=total, desc="meta-train")

    def update(self, steps: int, loss: float) -> None:
        self.bar.set_postfix(meta_loss=f"{loss:.4g}", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _StderrProgress(total)
    return _TqdmProgress(tqdm, total)


def _concatenate(chunks: list[PyTree]) -> PyTree:
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)


def meta_train(
    objective: Any,
    meta_params: PyTree,
    outer_optimizer: Any,
    num_iterations: int,
    *,
    mode: Mode | None = None,
    key: jax.Array | None = None,
    estimator_state: PyTree = None,
    clip_norm: float | None = None,
    explosion_factor: float = 100.0,
    record: Callable[[PyTree], PyTree] | None = None,
    progress: bool = True,
    iterations_per_call: int = 1,
) -> MetaTrainResult:
    r"""Meta-train ``meta_params`` for ``num_iterations`` outer steps of ``outer_optimizer``.

    Args:
        objective: a differentiable ``meta_params -> meta-loss`` function, or an estimator
            (``init``/``estimate``, see the module docstring).
        meta_params: the starting point :math:`\phi_0`: a transformation (its numeric
            hyperparameters are meta-learned) or any pytree the objective maps to one
            (e.g. unconstrained values from :mod:`adaptive_jax._src.meta.reparam`).
        outer_optimizer: an adaptive_jax transformation, e.g. ``aj.adam(1e-2)`` (an optax one
            is wrapped).
        num_iterations: number of outer steps.
        mode: how the gradient of a meta-loss function is computed: a
            :class:`~adaptive_jax.meta.Mode` (default ``Reverse()``; ``Forward()`` for a
            few hyperparameters over long unrolls; ``Reverse(checkpointing=SqrtBlocks())``
            to store less).
        key: PRNG key for stochastic estimators (PES); default ``PRNGKey(0)``.
        estimator_state: resume from this estimator state instead of ``init``.
        clip_norm: if given, rescale each meta-gradient to global norm at most ``clip_norm``.
        explosion_factor: warn (once) with :class:`MetaGradientExplosionWarning` when the
            meta-gradient norm is not finite or exceeds ``explosion_factor`` times the median
            of the norms seen so far.
        record: a jax-traceable function of the meta-parameters giving what the history keeps
            for each iteration (default: the meta-parameters), e.g. the constrained
            hyperparameters.
        progress: show a progress bar (tqdm if installed, else a line on stderr).
        iterations_per_call: outer iterations run by one compiled call (a ``lax.scan``).
            Raise it when each iteration is cheap and dispatch dominates; the progress bar
            and the explosion check then advance once per call.

    Returns:
        :class:`MetaTrainResult` ``(meta_params, outer_state, estimator_state, history)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> from adaptive_jax.meta import meta_train
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> def meta_loss(tx):  # loss after 5 SGD steps from 0
        ...     return loss(aj.meta.unroll(tx, jnp.zeros(2), loss, num_steps=5).params)
        >>> result = meta_train(meta_loss, aj.sgd(0.05), aj.adam(0.05), 60, progress=False)
        >>> bool(result.history.meta_losses[-1] < 1e-3 * result.history.meta_losses[0])
        True
    """
    if iterations_per_call < 1:
        raise ValueError(f"iterations_per_call must be at least 1, got {iterations_per_call}")
    estimator = as_estimator(objective, mode)
    meta_params = _as_float_arrays(meta_params)
    key = jax.random.PRNGKey(0) if key is None else key
    if estimator_state is None:
        estimator_state = estimator.init(meta_params, key)
    outer_optimizer = as_transform(outer_optimizer)
    carry = (meta_params, outer_optimizer.init(meta_params), estimator_state)
    run_chunk = _compiled_steps(estimator)
    record = _identity if record is None else record

    rows, losses, norms = [], [], np.zeros([0])
    warned = False
    bar = _progress_bar(num_iterations) if progress else None
    try:
        for first in range(0, num_iterations, iterations_per_call):
            length = min(iterations_per_call, num_iterations - first)
            carry, outputs = run_chunk(
                outer_optimizer, clip_norm, carry, record=record, length=length
            )
            chunk_rows, chunk_losses, chunk_norms = jax.device_get(outputs)
            for offset, norm in enumerate(chunk_norms):
                if not warned and _exploded(norm, norms, explosion_factor):
                    _warn_explosion(first + offset, norm, norms)
                    warned = True
                norms = np.append(norms, norm)
            rows.append(chunk_rows)
            losses.append(chunk_losses)
            if bar is not None:
                bar.update(length, float(chunk_losses[-1]))
    finally:
        if bar is not None:
            bar.close()
    history = MetaHistory(
        _concatenate(rows) if rows else None,
        np.concatenate(losses) if losses else np.zeros([0]),
        norms,
    )
    meta_params, outer_state, estimator_state = carry
    return MetaTrainResult(meta_params, outer_state, estimator_state, history)


def _warn_explosion(iteration: int, norm: float, previous: np.ndarray) -> None:
    typical = np.nanmedian(previous) if previous.size else float("nan")
    warnings.warn(
        f"meta-gradient norm {norm:.3g} at iteration {iteration} (median so far {typical:.3g}): "
        "the meta-loss is likely chaotic (long unroll, large learning rate); consider "
        "clip_norm, a shorter window or persistent_es",
        MetaGradientExplosionWarning,
        stacklevel=3,
    )


def _exploded(norm: float, previous: np.ndarray, factor: float) -> bool:
    """Not finite, or more than ``factor`` times the median of the finite norms so far."""
    if not np.isfinite(norm):
        return True
    finite = previous[np.isfinite(previous)]
    return bool(finite.size) and bool(norm > factor * np.median(finite))
