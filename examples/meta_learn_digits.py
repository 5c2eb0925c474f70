"""Meta-learn Adam's alpha, beta1 and beta2 for a small MLP on scikit-learn's digits.

    python examples/meta_learn_digits.py

The inner problem trains a 64-32-10 MLP with Adam for ``INNER_STEPS`` minibatch steps; the
meta-objective is the validation cross-entropy after those steps.  Differentiating it through
the whole unrolled run (``aj.meta.unroll`` inside ``aj.meta.meta_train``) gives the
hypergradient with respect to the hyperparameters, which an outer Adam follows.

The hyperparameters are optimised in unconstrained coordinates (``aj.meta.LOG`` for alpha,
``aj.meta.LOG_ONE_MINUS``, i.e. ``log(1 - beta) - log(beta)``, for the betas): every real
value maps to a valid Adam (``alpha > 0``, ``0 < beta < 1``), and the log scale suits
quantities that span decades.

Prints a table (default vs meta-learned hyperparameters, validation loss, and the test loss /
accuracy of a fresh run with a new initialisation and new minibatches) and saves
``examples/out/meta_learn_digits.png``: the meta-loss and the hyperparameters over
meta-training, and the validation loss during the inner run for both settings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from _digits import accuracy, cross_entropy, digits_split, init_mlp, mlp, output_path, print_table

import adaptive_jax as aj

matplotlib.use("Agg")  # write PNG files; no display needed
import matplotlib.pyplot as plt  # noqa: E402

INNER_STEPS = 40
BATCH_SIZE = 128
META_ITERATIONS = 60
OUTER_LEARNING_RATE = 0.1
SIZES = (64, 32, 10)
DEFAULTS = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999}  # Kingma & Ba's defaults


# log alpha and log(1 - beta) - log(beta): see adaptive_jax.meta.reparam
REPARAMETERIZATIONS = {
    "learning_rate": aj.meta.LOG,
    "b1": aj.meta.LOG_ONE_MINUS,
    "b2": aj.meta.LOG_ONE_MINUS,
}


def to_unconstrained(hyperparameters: dict[str, float]) -> dict[str, jax.Array]:
    """(alpha, beta1, beta2) -> unconstrained reals."""
    return {
        name: REPARAMETERIZATIONS[name].unconstrain(jnp.asarray(value))
        for name, value in hyperparameters.items()
    }


def to_hyperparameters(unconstrained: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The inverse map: always a valid (alpha > 0, 0 < beta < 1) setting."""
    return {
        name: REPARAMETERIZATIONS[name].constrain(value) for name, value in unconstrained.items()
    }


def adam_from(unconstrained: dict[str, jax.Array]) -> aj.Transform:
    return aj.adam(**to_hyperparameters(unconstrained))


def minibatch_stream(x, y, rng: np.random.Generator):
    """``INNER_STEPS`` minibatches as arrays with a leading step axis."""
    index = rng.integers(0, len(x), size=(INNER_STEPS, BATCH_SIZE))
    return x[index], y[index]


def main() -> None:
    x_train, y_train, x_test, y_test = digits_split()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x_train))
    n_val = len(x_train) // 5
    x_val, y_val = x_train[order[:n_val]], y_train[order[:n_val]]
    x_fit, y_fit = x_train[order[n_val:]], y_train[order[n_val:]]

    def train_loss(params, batch):
        x, y = batch
        return cross_entropy(mlp(params, x), y)

    def val_loss(params):
        return cross_entropy(mlp(params, x_val), y_val)

    init = init_mlp(0, SIZES)
    batches = minibatch_stream(x_fit, y_fit, rng)

    def meta_loss(unconstrained):
        run = aj.meta.unroll(adam_from(unconstrained), init, train_loss, batches)
        return val_loss(run.params)

    result = aj.meta.meta_train(
        meta_loss,
        to_unconstrained(DEFAULTS),
        aj.adam(OUTER_LEARNING_RATE),
        META_ITERATIONS,
        record=to_hyperparameters,
    )
    learned = {k: float(v) for k, v in to_hyperparameters(result.meta_params).items()}

    @jax.jit
    def validation_curve(tx, params, data):
        """Validation loss before each step and after the last one."""

        def step(carry, batch):
            params, state = carry
            updates, state = tx.update(jax.grad(train_loss)(params, batch), state, params)
            return (aj.apply_updates(params, updates), state), val_loss(params)

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), data)
        return jnp.append(losses, val_loss(params)), params

    # A fresh run (new initialisation, new minibatches) judges the hyperparameters on test data.
    fresh_init = init_mlp(1, SIZES)
    fresh_batches = minibatch_stream(x_fit, y_fit, np.random.default_rng(1))
    rows, curves = [], {}
    for name, setting in [("default", DEFAULTS), ("meta-learned", learned)]:
        tx = aj.adam(**setting)
        curves[name], _ = validation_curve(tx, init, batches)
        _, fresh_params = validation_curve(tx, fresh_init, fresh_batches)
        logits = mlp(fresh_params, x_test)
        rows.append(
            [
                name,
                f"{setting['learning_rate']:.4g}",
                f"{setting['b1']:.4f}",
                f"{setting['b2']:.5f}",
                float(curves[name][-1]),
                float(cross_entropy(logits, y_test)),
                float(accuracy(logits, y_test)),
            ]
        )
    headers = ["adam", "alpha", "beta1", "beta2", "val loss", "test loss", "test accuracy"]
    print_table(headers, rows)
    default_loss, learned_loss = rows[0][4], rows[1][4]
    print(
        f"validation loss after {INNER_STEPS} steps: default {default_loss:.4f}, "
        f"meta-learned {learned_loss:.4f}"
    )
    assert learned_loss < default_loss, "meta-training should lower the validation loss"

    history = result.history
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(history.meta_losses)
    axes[0].set(
        xlabel="meta-iteration", ylabel="validation loss after the unroll", title="meta-loss"
    )
    axes[0].set_yscale("log")
    params = history.hyperparameters
    axes[1].plot(params["learning_rate"], label=r"$\alpha$")
    axes[1].plot(1 - params["b1"], label=r"$1-\beta_1$")
    axes[1].plot(1 - params["b2"], label=r"$1-\beta_2$")
    axes[1].set(xlabel="meta-iteration", title="hyperparameters", yscale="log")
    axes[1].legend()
    for name, curve in curves.items():
        axes[2].plot(curve, label=name)
    axes[2].set(xlabel="inner step", ylabel="validation loss", title="inner run")
    axes[2].legend()
    fig.tight_layout()
    path = output_path("meta_learn_digits.png")
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
