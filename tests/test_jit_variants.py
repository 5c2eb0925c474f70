"""Every named optimizer gives the same numbers eagerly and under ``jax.jit``.

The same three updates run once compiled and once op by op (``chex.fake_jit``): XLA's
fusion may reorder floating-point work, so the two agree to a few ulps of float64, not
bit for bit; a transform that behaves differently when traced (a Python branch on a
value, a cache keyed on a tracer) fails here.
"""

import chex
import jax
import jax.numpy as jnp
import pytest

from tests.optimizer_catalog import NAMED_OPTIMIZERS, VALUE

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, 0.0])}
GRADIENTS = [
    {"w": jnp.array([[0.3, -0.2], [0.1, 0.4]]), "b": jnp.array([-0.5, 0.0])},
    {"w": jnp.array([[-0.1, 0.2], [0.3, 0.0]]), "b": jnp.array([0.25, 0.0])},
    {"w": jnp.array([[0.2, 0.1], [-0.4, 0.2]]), "b": jnp.array([0.5, 0.0])},
]


def trajectory(tx):
    """Three updates through ``jax.jit`` (made a no-op inside ``chex.fake_jit``)."""
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=VALUE))
    params, state, visited = PARAMS, tx.init(PARAMS), []
    for grads in GRADIENTS:
        updates, state = update(grads, state, params)
        params = jax.tree_util.tree_map(jnp.add, params, updates)
        visited.append(params)
    return visited


@pytest.mark.parametrize("name", sorted(NAMED_OPTIMIZERS))
def test_eager_and_jitted_updates_agree(name):
    factory, kwargs = NAMED_OPTIMIZERS[name]
    tx = factory(**kwargs)
    compiled = trajectory(tx)
    with chex.fake_jit():
        eager = trajectory(tx)
    for params_compiled, params_eager in zip(compiled, eager):
        chex.assert_trees_all_close(params_compiled, params_eager, rtol=1e-12, atol=1e-14)
