r"""The meta-training loop: gradient descent on hyperparameters, with a budget you can trust.

Each iteration asks a meta-gradient estimator for :math:`(L(z_k), \hat g_k)` at the learned
coordinates :math:`z_k`, optionally clips :math:`\hat g_k` to a global norm :math:`c`, and
lets the outer optimizer step, scaled by :math:`s_k`:

.. math::
   (u_k, o_k) = \mathrm{outer.update}(\mathrm{clip}_c(\hat g_k), o_{k-1}, z_k), \qquad
   z_{k+1} = z_k + s_k u_k .

What makes a run trustworthy:

* **which hyperparameters are learned** is named (``learn=["learning_rate", "b1"]``);
  the others stay frozen at their values.  They are learned in unconstrained
  coordinates by default (:class:`~adaptive_jax.meta.Learned`), so every optimizer built
  from :math:`z` is valid;
* **the best meta-parameters seen** are kept and returned (``best_meta_params``), with
  their meta-loss;
* **explosions are rolled back**: when the meta-loss or meta-gradient is not finite, the
  gradient norm jumps above ``explosion_factor`` times its typical size so far, or a step
  would leave a hyperparameter's range, the iterate returns to the best meta-parameters,
  the outer optimizer restarts there and the step scale :math:`s` is multiplied by
  ``shrink``.  Long unrolls at large learning rates make the meta-loss chaotic, with
  gradients that grow exponentially with the horizon (Metz et al., "Understanding and
  correcting pathologies in the training of learned optimizers", ICML 2019): rolling back
  and shrinking the step keeps such runs finite.  A :class:`MetaGradientExplosionWarning`
  says so the first time.

The estimator is a differentiable function ``transformation -> meta-loss`` (its exact
gradient is taken in the chosen :class:`~adaptive_jax.meta.Mode`) or an
:class:`~adaptive_jax.meta.Estimator` (:class:`~adaptive_jax.meta.TruncatedBackprop`,
:class:`~adaptive_jax.meta.PersistentES`, or your own).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.inspect import in_domains
from adaptive_jax._src.core.numerics import global_norm
from adaptive_jax._src.core.protocol import PyTree, Transform, apply_updates
from adaptive_jax._src.meta.estimator import as_estimator
from adaptive_jax._src.meta.learned import Learned
from adaptive_jax._src.meta.modes import Mode
from adaptive_jax._src.meta.progress import progress_bar
from adaptive_jax._src.meta.resume import MetaCheckpoints
from adaptive_jax._src.transforms.clipping import clip_by_global_norm


class MetaGradientExplosionWarning(RuntimeWarning):
    """A meta-training step was rolled back: the meta-loss is likely in its chaotic regime."""


class MetaHistory(NamedTuple):
    """One row per iteration :math:`k`, all evaluated at the same iterate :math:`z_k`.

    ``hyperparameters`` is ``record(tx_k)`` stacked along a leading axis (by default the
    transformation :math:`\\mathrm{tx}(z_k)`, or the meta-parameters themselves when they
    are not a transformation); ``meta_losses`` is the estimator's loss,
    ``meta_grad_norms`` the global norm of its gradient before clipping, ``rejected``
    whether iteration :math:`k` was rolled back, ``step_scales`` the scale :math:`s_k`.
    """

    hyperparameters: PyTree
    meta_losses: np.ndarray
    meta_grad_norms: np.ndarray
    rejected: np.ndarray
    step_scales: np.ndarray


class MetaTrainResult(NamedTuple):
    """What :func:`meta_train` returns.

    ``meta_params`` and ``best_meta_params`` are the last and the best iterates (as
    transformations when a transformation was given), ``best_meta_loss`` the meta-loss
    of the best one; ``coordinates`` are the learned coordinates :math:`z` of the last
    iterate, from which a run can resume.
    """

    meta_params: PyTree
    best_meta_params: PyTree
    best_meta_loss: float
    coordinates: PyTree
    outer_state: PyTree
    estimator_state: PyTree
    history: MetaHistory


class _Carry(NamedTuple):
    z: PyTree
    outer_state: PyTree
    estimator_state: PyTree
    scale: jax.Array
    best_z: PyTree
    best_loss: jax.Array
    log_norm_mean: jax.Array  # mean log gradient norm over accepted iterations
    accepted: jax.Array  # how many


def _as_float_arrays(tree: PyTree) -> PyTree:
    """Leaves as arrays of a fixed float dtype, so the jitted step compiles once."""

    def convert(leaf):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.result_type(float)
        return jnp.asarray(leaf, dtype)

    return jax.tree_util.tree_map(convert, tree)


def _select(condition: jax.Array, when_true: PyTree, when_false: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), when_true, when_false)


def _finite(tree: PyTree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves] or [True]))


class _Settings(NamedTuple):
    """The configuration of the compiled loop (hashable: a static argument of ``jax.jit``)."""

    decode: Callable[[PyTree], Any]
    checks_range: bool
    clip_norm: float | None
    explosion_factor: float
    shrink: float


def _meta_step(estimator, outer, settings: _Settings, carry: _Carry):
    """One outer iteration: estimate, check, clip, step (or roll back and shrink)."""
    decode, checks_range, clip_norm, explosion_factor, shrink = settings
    loss, grads, estimator_state = estimator.estimate(carry.z, carry.estimator_state)
    norm = global_norm(grads)
    log_norm = jnp.log(jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))
    exploded = ~jnp.isfinite(loss) | ~_finite(grads)
    exploded |= (carry.accepted > 0) & (log_norm > carry.log_norm_mean + np.log(explosion_factor))
    if clip_norm is not None:
        clipper = clip_by_global_norm(clip_norm)
        grads, _ = clipper.update(grads, clipper.init(grads))
    updates, outer_state = outer.update(grads, carry.outer_state, carry.z)
    updates = jax.tree_util.tree_map(lambda u: u * carry.scale.astype(u.dtype), updates)
    proposal = apply_updates(carry.z, updates)
    valid = in_domains(decode(proposal)) if checks_range else jnp.asarray(True)
    rejected = exploded | ~valid
    # The best iterate so far: this one, if its loss is finite, lowest and not exploded.
    better = ~exploded & (loss < carry.best_loss)
    best_z = _select(better, carry.z, carry.best_z)
    best_loss = jnp.where(better, loss, carry.best_loss)
    # Rejected: back to the best iterate, a fresh outer state, a smaller step.
    z = _select(rejected, best_z, proposal)
    outer_state = _select(rejected, outer.init(best_z), outer_state)
    scale = jnp.where(rejected, carry.scale * shrink, carry.scale)
    accepted = carry.accepted + jnp.where(exploded, 0, 1)
    count = jnp.maximum(accepted, 1).astype(log_norm.dtype)
    mean = carry.log_norm_mean + (log_norm - carry.log_norm_mean) / count
    log_norm_mean = jnp.where(exploded, carry.log_norm_mean, mean)
    new = _Carry(z, outer_state, estimator_state, scale, best_z, best_loss, log_norm_mean, accepted)
    return new, (loss, norm, rejected, carry.scale)


def _meta_steps(estimator, outer, carry, *, settings, record, length):
    """``length`` outer iterations in one ``lax.scan``."""

    def body(carry, _):
        recorded = record(settings.decode(carry.z))
        carry, outputs = _meta_step(estimator, outer, settings, carry)
        return carry, (recorded, *outputs)

    return jax.lax.scan(body, carry, None, length=length)


_STATIC = ("settings", "record", "length")
_jitted_meta_steps = jax.jit(_meta_steps, static_argnames=_STATIC)


def _compiled_steps(estimator: Any) -> Callable[..., Any]:
    """The compiled chunk with ``estimator`` bound: a jit argument if it is a pytree (so its
    arrays are not baked into the program), else a constant of a fresh compilation."""
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(estimator)):
        return jax.jit(functools.partial(_meta_steps, estimator), static_argnames=_STATIC)
    return functools.partial(_jitted_meta_steps, estimator)


def _identity(tree: PyTree) -> PyTree:
    return tree


def _concatenate(chunks: list[PyTree]) -> PyTree:
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)


def meta_train(
    objective: Any,
    meta_params: PyTree,
    outer_optimizer: Any = None,
    num_iterations: int = 100,
    *,
    learn: Sequence[str] | None = None,
    reparameterize: bool | None = None,
    mode: Mode | None = None,
    key: jax.Array | None = None,
    estimator_state: PyTree = None,
    clip_norm: float | None = None,
    explosion_factor: float = 100.0,
    shrink: float = 0.5,
    record: Callable[[PyTree], PyTree] | None = None,
    progress: bool = True,
    iterations_per_call: int = 1,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
) -> MetaTrainResult:
    r"""Meta-train the hyperparameters of ``meta_params`` for ``num_iterations`` outer steps.

    Args:
        objective: a differentiable ``transformation -> meta-loss`` function (e.g. the loss
            after an :func:`~adaptive_jax.meta.unroll`), or an
            :class:`~adaptive_jax.meta.Estimator`.
        meta_params: the starting transformation (or, with ``reparameterize=False``, any
            pytree the objective takes).
        outer_optimizer: the optimizer of the learned coordinates; default
            ``aj.adam(0.1)`` (steps of about 10 % in a learning rate's log).
        num_iterations: number of outer steps.
        learn: names or paths of the hyperparameters to learn (``["learning_rate",
            "b1"]``); the others stay frozen.  Default: all of them.
        reparameterize: learn unconstrained coordinates (the default for a
            transformation) or the raw values (then a step that leaves a range is
            rolled back).
        mode: how the gradient of a meta-loss function is computed: a
            :class:`~adaptive_jax.meta.Mode` (default ``Reverse()``).
        key: PRNG key for stochastic estimators (PES); default ``PRNGKey(0)``.
        estimator_state: resume from this estimator state instead of ``init``.
        clip_norm: if given, rescale each meta-gradient to global norm at most ``clip_norm``.
        explosion_factor: roll back when the gradient norm exceeds this factor times the
            geometric mean of the accepted ones so far (or is not finite).
        shrink: the factor applied to the outer step after each roll-back.
        record: a traceable function of the transformation (or meta-parameters) giving what
            the history keeps for each iteration (default: all of it).
        progress: show a progress bar (tqdm if installed, else a line on stderr).
        iterations_per_call: outer iterations run by one compiled call (a ``lax.scan``).
        checkpoint_dir: save the run's state there (with orbax-checkpoint) and, if it holds
            a checkpoint already, resume from the latest complete one: the result is bit
            for bit that of an uninterrupted run (call again with the same arguments).
        checkpoint_every: iterations between checkpoints (a multiple of
            ``iterations_per_call``; default ``iterations_per_call``); the last
            iteration is always saved.

    Returns:
        :class:`MetaTrainResult`: the last and the best iterate, and the history.

    Raises:
        ValueError: ``checkpoint_every`` is not a multiple of ``iterations_per_call``.
        HyperparameterLookupError: a name in ``learn`` is not a hyperparameter.
        TypeError: ``learn`` or ``reparameterize`` with meta-parameters that are not a
            transformation, or with an estimator that cannot be re-coordinated.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> def meta_loss(tx):  # loss after 5 SGD steps from 0
        ...     return loss(aj.meta.unroll(tx, jnp.zeros(2), loss, num_steps=5).params)
        >>> result = aj.meta.meta_train(meta_loss, aj.sgd(0.05), num_iterations=60, progress=False)
        >>> bool(result.best_meta_loss < 1e-3 * result.history.meta_losses[0])
        True
    """
    if iterations_per_call < 1:
        raise ValueError(f"iterations_per_call must be at least 1, got {iterations_per_call}")
    checkpoint_every = iterations_per_call if checkpoint_every is None else checkpoint_every
    if checkpoint_every < 1 or checkpoint_every % iterations_per_call:
        raise ValueError(  # a checkpoint between the iterations of one compiled call
            f"checkpoint_every={checkpoint_every} must be a positive multiple of "
            f"iterations_per_call={iterations_per_call}"
        )
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"shrink={shrink!r} is invalid: expected a number in (0, 1)")
    is_transform = isinstance(meta_params, Transform)
    if (learn is not None or reparameterize) and not is_transform:
        raise TypeError(
            "learn= and reparameterize= need meta_params to be a transformation, got "
            f"{type(meta_params).__name__}"
        )
    reparameterize = is_transform if reparameterize is None else reparameterize
    estimator = as_estimator(objective, mode)
    if is_transform and (learn is not None or reparameterize):
        learned = Learned(meta_params, learn, reparameterize)
        decode, z = learned.decode, learned.encode(meta_params)
        estimator = estimator.with_decoder(decode)
    else:
        decode, z = _identity, meta_params
    z = _as_float_arrays(z)
    key = jax.random.PRNGKey(0) if key is None else key
    if estimator_state is None:
        estimator_state = estimator.init(z, key)
    outer = as_transform(default_outer_optimizer() if outer_optimizer is None else outer_optimizer)
    dtype = jnp.result_type(float)
    carry = _Carry(
        z=z,
        outer_state=outer.init(z),
        estimator_state=estimator_state,
        scale=jnp.ones([], dtype),
        best_z=z,
        best_loss=jnp.asarray(jnp.inf, dtype),
        log_norm_mean=jnp.zeros([], dtype),
        accepted=jnp.zeros([], jnp.int32),
    )
    settings = _Settings(
        decode, is_transform and not reparameterize, clip_norm, explosion_factor, shrink
    )
    run_chunk = _compiled_steps(estimator)
    record = _identity if record is None else record

    rows, columns, warned, start = [], [], False, 0
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = MetaCheckpoints(checkpoint_dir, checkpoint_every)
        resumed = checkpoints.restore_latest(carry, jax.eval_shape(record, decode(z)))
        if resumed is not None:
            start, carry, warned = resumed.iteration, resumed.carry, resumed.warned
            rows, columns = [resumed.rows], [resumed.columns]
    bar = progress_bar(num_iterations, start) if progress else None
    try:
        for first in range(start, num_iterations, iterations_per_call):
            length = min(iterations_per_call, num_iterations - first)
            carry, (chunk_rows, *outputs) = run_chunk(
                outer, carry, settings=settings, record=record, length=length
            )
            losses, norms, rejected, scales = jax.device_get(outputs)
            if not warned and np.any(rejected):
                _warn_rollback(first, losses, norms, rejected)
                warned = True
            rows.append(jax.device_get(chunk_rows))
            columns.append((losses, norms, rejected, scales))
            if checkpoints is not None:
                rows, columns = [_concatenate(rows)], [_concatenate(columns)]
                done = first + length
                checkpoints.save(done, carry, rows[0], columns[0], warned, done == num_iterations)
            if bar is not None:
                bar.update(length, float(losses[-1]))
    finally:
        if bar is not None:
            bar.close()
        if checkpoints is not None:
            checkpoints.close()
    losses, norms, rejected, scales = (
        np.concatenate([column[i] for column in columns]) if columns else np.zeros([0])
        for i in range(4)
    )
    history = MetaHistory(_concatenate(rows) if rows else None, losses, norms, rejected, scales)
    found = bool(np.isfinite(float(carry.best_loss)))
    return MetaTrainResult(
        meta_params=decode(carry.z),
        best_meta_params=decode(carry.best_z if found else carry.z),
        best_meta_loss=float(carry.best_loss),
        coordinates=carry.z,
        outer_state=carry.outer_state,
        estimator_state=carry.estimator_state,
        history=history,
    )


def default_outer_optimizer() -> Transform:
    """The default outer optimizer: Adam at 0.1 on the learned coordinates."""
    from adaptive_jax._src.optimizers.adam_family import adam  # (optimizers import meta)

    return adam(0.1)


def _warn_rollback(first: int, losses: Any, norms: Any, rejected: Any) -> None:
    index = int(np.argmax(rejected))
    warnings.warn(
        f"meta-training rolled back at iteration {first + index} (meta-loss "
        f"{float(losses[index]):.3g}, meta-gradient norm {float(norms[index]):.3g}): back to "
        "the best meta-parameters, with a smaller outer step. The meta-loss is likely "
        "chaotic (long unroll, large learning rate); a shorter window or persistent_es can "
        "help",
        MetaGradientExplosionWarning,
        stacklevel=3,
    )
