"""Checkpoints of a meta-training run, so that a long run survives being stopped.

:func:`~adaptive_jax.meta.meta_train` with ``checkpoint_dir=`` saves, every
``checkpoint_every`` outer iterations, all that the next iteration depends on: the
learned coordinates, the outer optimizer's state, the estimator's state (with its PRNG
key: PES draws its next perturbations from it), the step scale, the best iterate and its
meta-loss, the running mean of the gradient norms, and the history so far.  Checkpoint
``k`` holds the state after ``k`` iterations.  Started again with the same arguments, the
run restores the latest complete checkpoint and continues; the result is bit for bit
that of a run never stopped.  Saving is orbax-checkpoint's (``pip install
orbax-checkpoint``): a checkpoint is written under a temporary name and renamed when
complete, so one cut short by a crash is never restored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from adaptive_jax._src.core.protocol import PyTree

_COLUMNS = ("meta_losses", "meta_grad_norms", "rejected", "step_scales")


class Resumed(NamedTuple):
    """What a checkpoint gives back: the iterations done, the loop's carry, the history."""

    iteration: int
    carry: PyTree
    rows: PyTree  # record(...) of each iteration so far, stacked (None if no leaves)
    columns: tuple[np.ndarray, ...]  # meta-losses, gradient norms, rejected, step scales
    warned: bool


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:  # pragma: no cover - orbax is installed with the test extra
        raise ImportError(
            "meta_train(checkpoint_dir=...) saves with orbax-checkpoint: pip install "
            "orbax-checkpoint"
        ) from error
    return ocp


def _abstract(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


class MetaCheckpoints:
    """The checkpoints of one meta-training run in ``directory``, every ``every`` iterations."""

    def __init__(self, directory: str | Path, every: int):
        if every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {every}")
        ocp = _orbax()
        self.every = every
        self.manager = ocp.CheckpointManager(Path(directory).absolute())

    def restore_latest(self, carry_like: PyTree, row_like: PyTree) -> Resumed | None:
        """The latest complete checkpoint, restored into the structures given; None if none."""
        ocp = _orbax()
        step = self.manager.latest_step()
        if step is None:
            return None
        target = {"carry": _abstract(carry_like)}
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), history=ocp.args.StandardRestore()
            ),
        )
        history = restored["history"]
        row_leaves, row_def = jax.tree_util.tree_flatten(row_like)
        rows = jax.tree_util.tree_unflatten(
            row_def, [np.asarray(history[f"row_{i}"]) for i in range(len(row_leaves))]
        )
        columns = tuple(np.asarray(history[name]) for name in _COLUMNS)
        warned = bool(np.asarray(history["warned"]))
        return Resumed(step, restored["state"]["carry"], rows, columns, warned)

    def save(
        self, iteration: int, carry: PyTree, rows: PyTree, columns: tuple, warned: bool, last: bool
    ) -> None:
        """Checkpoint ``iteration`` if it is a multiple of ``every`` or the ``last`` one."""
        if iteration % self.every and not last:
            return
        ocp = _orbax()
        history = {name: np.asarray(column) for name, column in zip(_COLUMNS, columns)}
        history.update(
            {f"row_{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(rows))}
        )
        history["warned"] = np.asarray(warned)
        self.manager.save(
            iteration,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave({"carry": carry}),
                history=ocp.args.StandardSave(history),
            ),
        )

    def close(self) -> None:
        """Wait for the last save to be complete."""
        self.manager.wait_until_finished()
        self.manager.close()
