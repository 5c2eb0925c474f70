"""optax interop, both ways, with the same numbers as the pure versions.

    python examples/optax_interop.py

* an **optax transformation inside an adaptive_jax chain**::

      aj.chain(optax.clip_by_global_norm(0.5), aj.adamw(lr, weight_decay=wd))

  (``aj.chain`` wraps any object with ``init``/``update`` in an ``OptaxAdapter``);
* an **adaptive_jax transformation inside** ``optax.chain``::

      optax.chain(aj.scale_by_adam(), optax.add_decayed_weights(wd), optax.scale_by_learning_rate(lr))

  (adaptive_jax transformations follow optax's protocol, so optax composes them).

Both are compared with the pure adaptive_jax chain
``aj.chain(aj.clip_by_global_norm(0.5), aj.adamw(lr, weight_decay=wd))`` and with pure
optax, on the same full-batch problem (a small MLP on digits) in float64.  The table
shows the largest difference in any weight after training: rounding level (the two
libraries sum a global norm in different orders), not algorithmic.  Saves the loss
curves and the per-step loss differences to ``examples/out/optax_interop.png``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)  # float64, so that differences show rounding only

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _digits import cross_entropy, digits_split, init_mlp, mlp, output_path, print_table  # noqa: E402
from tqdm import tqdm  # noqa: E402

import adaptive_jax as aj  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STEPS = 300
LEARNING_RATE, WEIGHT_DECAY, MAX_NORM = 3e-3, 1e-2, 0.5


def configurations():
    """name -> gradient transformation; the first is the reference."""
    return {
        "adaptive_jax (pure)": aj.chain(
            aj.clip_by_global_norm(MAX_NORM), aj.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        ),
        "optax clip in aj.chain": aj.chain(
            optax.clip_by_global_norm(MAX_NORM),
            aj.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
        ),
        "aj.scale_by_adam in optax.chain": optax.chain(
            optax.clip_by_global_norm(MAX_NORM),
            aj.scale_by_adam(),
            optax.add_decayed_weights(WEIGHT_DECAY),
            optax.scale_by_learning_rate(LEARNING_RATE),
        ),
        "optax (pure)": optax.chain(
            optax.clip_by_global_norm(MAX_NORM),
            optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
        ),
    }


def train(tx, params, x, y):
    """``STEPS`` full-batch steps; returns the final weights and the loss before each step."""

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(lambda p: cross_entropy(mlp(p, x), y))(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=STEPS)
        return params, losses

    return run(params)


def main():
    x_train, y_train, _, _ = digits_split()
    x_train = x_train.astype(jnp.float64)
    initial = init_mlp(seed=0, dtype=jnp.float64)

    results = {}
    for name, tx in tqdm(configurations().items(), desc="configurations"):
        params, losses = train(tx, initial, x_train, y_train)
        results[name] = (params, np.asarray(losses))

    reference_params, reference_losses = results["adaptive_jax (pure)"]
    rows = []
    for name, (params, losses) in results.items():
        gaps = jax.tree_util.tree_map(
            lambda a, b: jnp.max(jnp.abs(a - b)), params, reference_params
        )
        max_gap = float(max(jax.tree_util.tree_leaves(gaps)))
        rows.append([name, float(losses[-1]), f"{max_gap:.1e}"])

    print(f"\nadamw + global-norm clipping, {STEPS} full-batch steps on digits (float64)\n")
    print_table(["configuration", "final loss", "max weight gap to pure aj"], rows)

    figure, (loss_axes, gap_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (_, losses) in results.items():
        loss_axes.semilogy(losses, label=name)
        if name != "adaptive_jax (pure)":
            gap = np.abs(losses - reference_losses)
            gap_axes.semilogy(np.maximum(gap, 1e-20), label=name)
    loss_axes.set(xlabel="step", ylabel="training cross-entropy", title="Same optimizer, 4 ways")
    loss_axes.legend(fontsize=8)
    gap_axes.set(xlabel="step", ylabel="|loss - pure aj loss|", title="Differences: rounding only")
    gap_axes.legend(fontsize=8)
    figure.tight_layout()
    path = output_path("optax_interop.png")
    figure.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
