"""A meta-training run stopped and started again ends bit for bit where an uninterrupted run ends.

``meta_train(..., checkpoint_dir=...)`` saves the outer loop's state with orbax; called
again with the same arguments it resumes from the latest complete checkpoint.  The
reference is the same call without checkpoints, run straight through.  Meta-losses are
SGD runs on :math:`f(w) = h (w - c)^2 / 2`, as in ``tests/test_meta_train.py``.
"""

from __future__ import annotations

import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax.meta import MetaGradientExplosionWarning, meta_train, persistent_es, unroll

CURVATURE, CENTRE = 2.0, 3.0


def quadratic(w):
    return 0.5 * CURVATURE * jnp.sum((w - CENTRE) ** 2)


def final_loss(tx, num_steps=40):
    return quadratic(unroll(tx, jnp.zeros(1), quadratic, num_steps=num_steps).params)


def assert_bit_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def run(call, num_iterations, **kwargs):
    """``call(num_iterations, **kwargs)`` and the MetaGradientExplosionWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetaGradientExplosionWarning)
        result = call(num_iterations, **kwargs)
    return result, sum(w.category is MetaGradientExplosionWarning for w in caught)


def exploding(num_iterations, **kwargs):
    # Gradient ascent on the meta-loss drives the rate past the stability limit 2/h, where
    # the meta-gradient explodes: roll-backs, a shrinking step and a best iterate to keep.
    return meta_train(
        final_loss,
        aj.sgd(0.99),
        aj.sgd(-1e-4),
        num_iterations,
        reparameterize=False,
        progress=False,
        iterations_per_call=2,
        **kwargs,
    )


def stochastic(num_iterations, **kwargs):
    # Persistent evolution strategies: particles, perturbation sums and a PRNG key.
    estimator = persistent_es(
        quadratic,
        jnp.zeros(1),
        window=2,
        horizon=6,
        num_particles=4,
        sigma=0.05,
        to_transform=aj.sgd,
    )
    return meta_train(
        estimator,
        jnp.asarray(0.1),
        aj.adam(0.02),
        num_iterations,
        key=jax.random.PRNGKey(3),
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("call", [exploding, stochastic], ids=["roll-backs", "pes"])
def test_a_stopped_meta_training_run_resumes_bit_for_bit(call, tmp_path):
    uninterrupted, warned = run(call, 16)
    first, warned_first = run(call, 6, checkpoint_dir=tmp_path, checkpoint_every=2)
    resumed, warned_after = run(call, 16, checkpoint_dir=tmp_path, checkpoint_every=2)

    assert first.history.meta_losses.shape == (6,)
    assert_bit_identical(resumed, uninterrupted)  # every field, the whole history included
    # The warning about roll-backs is given once per run, interrupted or not.
    assert warned_first + warned_after == warned
    if call is exploding:
        assert uninterrupted.history.rejected[:6].any() and warned == 1


def test_a_half_written_meta_checkpoint_is_never_restored(tmp_path):
    uninterrupted, _ = run(exploding, 12)
    run(exploding, 6, checkpoint_dir=tmp_path, checkpoint_every=2)
    # A later save that never finished: orbax writes under a temporary name, then renames.
    partial = tmp_path / "10.orbax-checkpoint-tmp-1764000000"
    shutil.copytree(tmp_path / "6", partial)
    next(path for path in sorted(partial.rglob("*")) if path.is_file()).unlink()
    resumed, _ = run(exploding, 12, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert_bit_identical(resumed, uninterrupted)


def test_checkpoints_fall_between_compiled_calls():
    with pytest.raises(ValueError, match="checkpoint_every=3 must be a positive multiple"):
        meta_train(
            final_loss,
            aj.sgd(0.1),
            num_iterations=4,
            iterations_per_call=2,
            checkpoint_dir="unused",
            checkpoint_every=3,
            progress=False,
        )
