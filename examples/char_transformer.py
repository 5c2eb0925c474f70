"""A character-level transformer trained with a real-world recipe, in adaptive_jax and in optax.

    python examples/char_transformer.py            # about 1-2 minutes on 2 CPU cores
    python examples/char_transformer.py --quick    # a few seconds (the test runs this)

The model is a small GPT (token embeddings + learned positions, pre-norm blocks of
causal self-attention and a GELU MLP, a final layer norm) in plain JAX, trained on the
source code of a fixed selection of the Python standard library's own modules (read
from the running interpreter, so every machine has it; the last 10% of the characters
are the validation split).

The recipe is the one most transformer codebases use:

* AdamW on the weight matrices with a **weight-decay mask** (no decay on biases, layer
  norms or embeddings), warm-up then cosine decay;
* **partitioned optimizers**: the embeddings get their own Adam with a larger constant
  learning rate;
* global-norm clipping of the gradient, and **gradient accumulation** (``MultiSteps``:
  one optimizer step every ``--accumulate`` micro-batches);
* an **EMA of the parameters** (bias-corrected, updated at every optimizer step) used
  for evaluation.

It is written twice from the same seed, once with adaptive_jax's blocks and wrappers
(``aj.partition``, ``aj.masked``, ``aj.MultiSteps``, ``aj.parameter_ema``) and once
with optax's (``optax.multi_transform``, ``optax.adamw(mask=...)``,
``optax.MultiSteps``, ``optax.ema`` on the parameters); both run in float32 and must
give the same losses up to rounding.  Prints a table and saves the validation curves
to ``examples/out/char_transformer.png``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from _digits import output_path, print_table
from tqdm import tqdm

import adaptive_jax as aj

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# A fixed selection of pure-Python standard-library modules (their source ships with
# every CPython installation); the text is their concatenation, ASCII only.
MODULES = (
    "textwrap",
    "heapq",
    "bisect",
    "fractions",
    "statistics",
    "colorsys",
    "calendar",
    "difflib",
)
VOCAB = 128  # ASCII


class Config(NamedTuple):
    width: int = 64
    layers: int = 2
    heads: int = 4
    context: int = 64
    micro_batch: int = 16
    accumulate: int = 2  # micro-batches per optimizer step
    steps: int = 150  # optimizer steps
    evals: int = 6  # evaluations along the run
    learning_rate: float = 3e-3
    embedding_learning_rate: float = 1e-2
    weight_decay: float = 0.1
    ema_decay: float = 0.95
    eval_batches: int = 8


QUICK = Config(
    width=32, layers=1, heads=2, context=32, micro_batch=8, steps=24, evals=2, eval_batches=2
)


# -- data ---------------------------------------------------------------------------------


def load_text() -> tuple[np.ndarray, np.ndarray]:
    """The selected modules' source as ASCII codes: (train, validation), 90% / 10%."""
    sources = []
    for name in MODULES:
        path = inspect.getsourcefile(importlib.import_module(name))
        assert path is not None, name
        with open(path, encoding="utf-8") as file:
            sources.append(file.read())
    codes = np.frombuffer("\n".join(sources).encode("ascii", "ignore"), np.uint8)
    split = int(0.9 * len(codes))
    return codes[:split].astype(np.int32), codes[split:].astype(np.int32)


def random_windows(codes: np.ndarray, shape: Any, context: int, rng: np.random.Generator):
    """Windows of ``context + 1`` characters at random offsets (inputs and next-character targets)."""
    starts = rng.integers(0, len(codes) - context - 1, size=shape)
    return jnp.asarray(codes[starts[..., None] + np.arange(context + 1)])


# -- model --------------------------------------------------------------------------------


def init_params(config: Config, key: jax.Array) -> dict[str, Any]:
    d = config.width
    keys = iter(jax.random.split(key, 4 + 4 * config.layers))

    def dense(n_in, n_out, scale=0.02):
        return {
            "kernel": scale * jax.random.normal(next(keys), (n_in, n_out)),
            "bias": jnp.zeros(n_out),
        }

    def norm():
        return {"scale": jnp.ones(d), "bias": jnp.zeros(d)}

    residual_scale = 0.02 / np.sqrt(2 * config.layers)  # GPT-2's scaled residual projections
    blocks = [
        {
            "norm1": norm(),
            "qkv": dense(d, 3 * d),
            "proj": dense(d, d, residual_scale),
            "norm2": norm(),
            "up": dense(d, 4 * d),
            "down": dense(4 * d, d, residual_scale),
        }
        for _ in range(config.layers)
    ]
    return {
        "embed": {
            "tokens": 0.02 * jax.random.normal(next(keys), (VOCAB, d)),
            "positions": 0.02 * jax.random.normal(next(keys), (config.context, d)),
        },
        "blocks": blocks,
        "norm": norm(),
        "head": dense(d, VOCAB),
    }


def layer_norm(x, p):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + 1e-5) * p["scale"] + p["bias"]


def linear(x, p):
    return x @ p["kernel"] + p["bias"]


def attention(x, block, heads):
    batch, length, width = x.shape
    q, k, v = jnp.split(linear(x, block["qkv"]), 3, axis=-1)
    q, k, v = (t.reshape(batch, length, heads, width // heads) for t in (q, k, v))
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(width // heads)
    causal = jnp.tril(jnp.ones((length, length), bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
    out = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(batch, length, width)
    return linear(out, block["proj"])


def logits_of(params, tokens, heads):
    x = params["embed"]["tokens"][tokens] + params["embed"]["positions"][: tokens.shape[1]]
    for block in params["blocks"]:
        x = x + attention(layer_norm(x, block["norm1"]), block, heads)
        x = x + linear(
            jax.nn.gelu(linear(layer_norm(x, block["norm2"]), block["up"])), block["down"]
        )
    return linear(layer_norm(x, params["norm"]), params["head"])


def loss_fn(params, window, heads):
    """Mean next-character cross-entropy (nats) of a batch of windows."""
    logits = logits_of(params, window[:, :-1], heads)
    targets = window[:, 1:]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1))


# -- which parameters get what --------------------------------------------------------------


def decay_mask(params):
    """Weight decay on the weight matrices only: not on biases, norms or embeddings."""
    return aj.per_parameter(lambda path, p: path[-1] == "kernel", params)


def group_labels(params):
    """The embeddings form their own group ("embed"); everything else is "body"."""
    return aj.per_parameter(lambda path, p: "embed" if path[0] == "embed" else "body", params)


def warmup_steps(config: Config) -> int:
    return max(config.steps // 10, 1)


# -- the two recipes -------------------------------------------------------------------------


def adaptive_jax_recipe(config: Config, params):
    schedule = aj.schedules.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        warmup_steps(config),
        config.steps,
        end_value=0.1 * config.learning_rate,
    )
    body = aj.chain(
        aj.scale_by_adam(b1=0.9, b2=0.95, eps=1e-8),
        aj.masked(aj.add_decoupled_weight_decay(config.weight_decay), decay_mask(params)),
        aj.scale_by_learning_rate(schedule),
    )
    embed = aj.adam(config.embedding_learning_rate, b1=0.9, b2=0.95, eps=1e-8)
    optimizer = aj.chain(
        aj.clip_by_global_norm(1.0),
        aj.partition({"embed": embed, "body": body}, group_labels(params)),
        aj.parameter_ema(config.ema_decay),  # last: it reads the final updates
    )
    return aj.MultiSteps(optimizer, every_k_schedule=config.accumulate)


def optax_recipe(config: Config, params):
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        warmup_steps(config),
        config.steps,
        end_value=0.1 * config.learning_rate,
    )
    body = optax.adamw(
        schedule,
        b1=0.9,
        b2=0.95,
        eps=1e-8,
        weight_decay=config.weight_decay,
        mask=decay_mask(params),
    )
    embed = optax.adam(config.embedding_learning_rate, b1=0.9, b2=0.95, eps=1e-8)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.multi_transform({"embed": embed, "body": body}, group_labels(params)),
    )
    return optax.MultiSteps(optimizer, every_k_schedule=config.accumulate)


class Trainer(NamedTuple):
    """How one recipe advances and where its averaged parameters are."""

    init: Any  # params -> carry
    step: Any  # (carry, window) -> (carry, loss)
    params: Any  # carry -> params
    ema: Any  # carry -> the EMA of the parameters


def adaptive_jax_trainer(config: Config, params) -> Trainer:
    tx = adaptive_jax_recipe(config, params)

    def step(carry, window):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, window, config.heads)
        updates, state = tx.update(grads, state, params)
        return (aj.apply_updates(params, updates), state), loss

    return Trainer(lambda p: (p, tx.init(p)), step, lambda c: c[0], lambda c: aj.ema_params(c[1]))


def optax_trainer(config: Config, params) -> Trainer:
    tx = optax_recipe(config, params)
    average = optax.ema(config.ema_decay, debias=True)  # applied to the parameters

    def init(params):
        return params, tx.init(params), average.init(params), params

    def step(carry, window):
        params, state, ema_state, ema = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, window, config.heads)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        # The EMA moves at optimizer steps only, like parameter_ema inside MultiSteps.
        new_ema, new_ema_state = average.update(params, ema_state)
        stepped = tx.has_updated(state)
        keep = lambda new, old: jnp.where(stepped, new, old)  # noqa: E731
        ema_state = jax.tree_util.tree_map(keep, new_ema_state, ema_state)
        ema = jax.tree_util.tree_map(keep, new_ema, ema)
        return (params, state, ema_state, ema), loss

    return Trainer(init, step, lambda c: c[0], lambda c: c[3])


RECIPES = {"adaptive_jax": adaptive_jax_trainer, "optax": optax_trainer}


# -- training and evaluation ----------------------------------------------------------------


def run(config: Config, seed: int = 0, compiler_options: dict[str, Any] | None = None):
    """Both recipes from the same start on the same batches: evaluations, timings, curves."""
    train, validation = load_text()
    rng = np.random.default_rng(seed)
    micro_steps = config.steps * config.accumulate
    batches = random_windows(train, (micro_steps, config.micro_batch), config.context, rng)
    eval_size = config.eval_batches * config.micro_batch
    train_eval = random_windows(train, eval_size, config.context, rng)
    val_eval = random_windows(validation, eval_size, config.context, rng)
    initial = init_params(config, jax.random.key(seed))

    evaluate = jax.jit(lambda p, w: loss_fn(p, w, config.heads))
    evaluate = evaluate.lower(initial, val_eval).compile(compiler_options)
    results, curves = {}, {}
    for name, make in RECIPES.items():
        trainer = make(config, initial)
        carry = trainer.init(initial)
        per_chunk = micro_steps // config.evals
        start = time.perf_counter()
        chunk = jax.jit(functools.partial(jax.lax.scan, trainer.step))
        chunk = chunk.lower(carry, batches[:per_chunk]).compile(compiler_options)
        compile_seconds = time.perf_counter() - start
        rows, losses, train_seconds = [], [], 0.0
        for index in tqdm(range(config.evals), desc=name, unit="eval"):
            start = time.perf_counter()
            carry, chunk_losses = chunk(carry, batches[index * per_chunk : (index + 1) * per_chunk])
            jax.block_until_ready(carry)
            train_seconds += time.perf_counter() - start
            losses.append(np.asarray(chunk_losses))
            steps = (index + 1) * per_chunk // config.accumulate
            rows.append(
                (
                    steps,
                    float(evaluate(trainer.params(carry), train_eval)),
                    float(evaluate(trainer.params(carry), val_eval)),
                    float(evaluate(trainer.ema(carry), val_eval)),
                )
            )
        results[name] = (rows, compile_seconds, train_seconds)
        curves[name] = np.concatenate(losses)
    return results, curves


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = QUICK if args.quick else Config()
    # --quick: the programs run for a second; skip XLA's costly passes (both recipes).
    options = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    results, curves = run(config, args.seed, options if args.quick else None)

    print(
        f"\nCharacter transformer ({config.layers} layers, width {config.width}, context "
        f"{config.context}) on {len(MODULES)} stdlib modules; {config.steps} optimizer steps of "
        f"{config.accumulate} x {config.micro_batch} windows; float32\n"
    )
    rows = []
    for name, (history, compile_seconds, seconds) in results.items():
        steps, train_loss, val_loss, ema_val_loss = history[-1]
        losses = [f"{x:.6f}" for x in (train_loss, val_loss, ema_val_loss)]
        rows.append([name, steps, *losses, f"{compile_seconds:.1f}", f"{seconds:.1f}"])
    headers = [
        "recipe",
        "steps",
        "train loss",
        "val loss",
        "EMA val loss",
        "compile (s)",
        "train (s)",
    ]
    print_table(headers, rows)
    gap = max(
        abs(a - b) / abs(b)
        for ours, theirs in zip(results["adaptive_jax"][0], results["optax"][0])
        for a, b in zip(ours[1:], theirs[1:])
    )
    print(f"\nlargest relative gap between the recipes' evaluated losses: {gap:.2e}")

    figure, (train_axes, val_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("adaptive_jax", "-"), ("optax", "--")):
        train_axes.plot(curves[name], style, linewidth=0.8, label=name)
        history = np.asarray(results[name][0])
        val_axes.plot(history[:, 0], history[:, 2], style + "o", label=f"{name}: parameters")
        val_axes.plot(history[:, 0], history[:, 3], style + "s", label=f"{name}: EMA of parameters")
    train_axes.set(xlabel="micro-batch", ylabel="cross-entropy (nats)", title="training loss")
    val_axes.set(xlabel="optimizer step", ylabel="cross-entropy (nats)", title="validation loss")
    train_axes.legend()
    val_axes.legend()
    figure.tight_layout()
    path = output_path("char_transformer.png")
    figure.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
