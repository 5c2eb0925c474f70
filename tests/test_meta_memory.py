"""How the temporary memory of each hypergradient mode grows with the horizon T.

Measured by XLA itself: ``jax.jit(f).lower(tx).compile().memory_analysis()`` reports
the temporary buffer bytes of the compiled program (nothing is run).  The model is
4096 float64 parameters trained by SGD with momentum (cheap to compile), so a *carry*
(parameters plus momentum) is 2 x 32 KiB, and the data are a function of the step (no
array grows with T).  ``benchmarks/bench_meta.py`` shows the same growth for Adam on a
100k-parameter MLP.
"""

import functools

import jax
import jax.numpy as jnp
import pytest

import adaptive_jax as aj

MODES = {
    "forward": aj.meta.Forward(),
    "reverse": aj.meta.Reverse(),
    "reverse_step": aj.meta.Reverse(aj.meta.EveryStep()),
    "reverse_sqrt": aj.meta.Reverse(aj.meta.SqrtBlocks()),
    "reverse_recursive": aj.meta.Reverse(aj.meta.Bisection()),
}
NUM_PARAMS = 4096
CARRY_BYTES = 2 * NUM_PARAMS * 8  # params and momentum in float64


def loss(w, step):
    target = jnp.sin(0.1 * step.astype(w.dtype) + jnp.arange(NUM_PARAMS, dtype=w.dtype))
    return jnp.sum(jnp.log(jnp.cosh(w - target)))


@functools.cache
def temp_bytes(mode, num_steps):
    objective = aj.meta.unrolled_objective(
        jnp.zeros(NUM_PARAMS),
        loss,
        lambda run: jnp.sum(run.params**2),
        lambda step: step,
        num_steps=num_steps,
    )
    compiled = (
        jax.jit(lambda tx: aj.meta.hypergradient(objective, tx, mode=MODES[mode]))
        .lower(aj.sgd(0.01, momentum=0.9))
        .compile()
    )
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.fail("this backend reports no memory analysis")
    return analysis.temp_size_in_bytes


def test_forward_mode_memory_does_not_grow_with_the_horizon():
    assert temp_bytes("forward", 1024) <= 1.1 * temp_bytes("forward", 16)


def test_plain_reverse_mode_memory_grows_linearly():
    # 64x the steps: at least 3/4 of 64x the memory (every step's residuals are kept).
    assert temp_bytes("reverse", 1024) >= 0.75 * 64 * temp_bytes("reverse", 16)


def test_sqrt_nested_checkpointing_grows_at_most_like_sqrt_t():
    # 64x the steps: at most 1.1 x sqrt(64) = 8.8x the memory ...
    assert temp_bytes("reverse_sqrt", 1024) <= 1.1 * 8 * temp_bytes("reverse_sqrt", 16)
    # ... and far below plain reverse mode at the same horizon.
    assert temp_bytes("reverse_sqrt", 1024) <= temp_bytes("reverse", 1024) / 10


def test_recursive_checkpointing_adds_two_carries_per_doubling_of_t():
    # Bisection keeps the two block-start carries of each of log2(T) levels.
    doublings = 3  # 16 -> 128
    growth = temp_bytes("reverse_recursive", 128) - temp_bytes("reverse_recursive", 16)
    assert growth <= 1.1 * 2 * doublings * CARRY_BYTES
