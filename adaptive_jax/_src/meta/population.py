r"""Populations: :math:`N` hyperparameter settings evaluated or meta-trained in one program.

A transformation is a pytree, so :math:`N` settings of the same optimizer stack into
one transformation whose hyperparameter leaves have a leading axis of size :math:`N`
(:func:`stack_population`).  ``jax.vmap`` then runs all :math:`N` unrolls (and their
hypergradients) as one batched, compiled program: one compilation, vectorised
arithmetic, no Python loop over settings (population-based search in the style of
Jaderberg et al., "Population Based Training of Neural Networks", 2017, here with a
gradient step per member instead of exploit/explore).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from adaptive_jax._src.core.protocol import apply_updates
from adaptive_jax._src.meta.hypergradient import differentiable_leaves, value_and_hypergradient
from adaptive_jax._src.meta.modes import Mode
from adaptive_jax._src.meta.reparam import Reparameterization, from_unconstrained, to_unconstrained


def stack_population(transforms: Sequence[Any]) -> Any:
    """One transformation whose every leaf stacks the members' values on a new axis 0.

    All members must be the same optimizer with the same configuration (static
    fields); only their numbers may differ.

    Example:
        >>> import adaptive_jax as aj
        >>> population = aj.meta.stack_population([aj.adam(lr) for lr in (1e-3, 1e-2, 1e-1)])
        >>> aj.get_hyperparameter(population, "learning_rate").shape
        (3,)
    """
    if not transforms:
        raise ValueError("a population needs at least one member")
    structures = [jax.tree_util.tree_structure(tx) for tx in transforms]
    for index, structure in enumerate(structures[1:], start=1):
        if structure != structures[0]:
            raise ValueError(
                "population members must share one structure (same optimizer and static "
                f"configuration); member 0 is {structures[0]} but member {index} is {structure}"
            )
    return jax.tree_util.tree_map(
        lambda *values: jnp.stack([_as_array(v) for v in values]), *transforms
    )


def unstack_population(population: Any) -> list[Any]:
    """The members of a stacked population, as separate transformations."""
    leaves, treedef = jax.tree_util.tree_flatten(population)
    size = population_size(population)
    return [jax.tree_util.tree_unflatten(treedef, [x[i] for x in leaves]) for i in range(size)]


def population_size(population: Any) -> int:
    """:math:`N`, the leading axis shared by every leaf."""
    sizes = {jnp.shape(x)[0] for x in jax.tree_util.tree_leaves(population) if jnp.ndim(x)}
    if len(sizes) != 1:
        raise ValueError(f"population leaves must share one leading axis, got sizes {sizes}")
    return sizes.pop()


def evaluate_population(meta_objective: Callable[[Any], jax.Array], population: Any) -> jax.Array:
    r"""``[meta_objective(member) for member in population]`` as one vmapped computation.

    Wrap the call in ``jax.jit`` to compile the :math:`N` runs as one program.
    """
    return jax.vmap(meta_objective)(population)


class PopulationTraining(NamedTuple):
    """What :func:`meta_train_population` returns.

    ``meta_losses[i, k]`` is member ``i``'s meta-objective before meta-step ``k``.
    """

    population: Any
    meta_losses: jax.Array


def meta_train_population(
    meta_objective: Callable[..., jax.Array],
    population: Any,
    outer_tx: Any,
    num_meta_steps: int,
    *,
    mode: Mode | None = None,
    overrides: Mapping[str, Reparameterization] | None = None,
    reparameterize: bool = True,
) -> PopulationTraining:
    r"""Meta-train every member of ``population`` by ``num_meta_steps`` hypergradient steps.

    Each member independently runs, with ``lax.scan`` over meta-steps,

    .. math:: z \leftarrow z + \mathrm{outer\_tx}\big(\nabla_z F(c(z))\big),

    where :math:`z` are the member's unconstrained hyperparameters
    (:func:`~adaptive_jax.meta.to_unconstrained` with ``overrides``; the identity when
    ``reparameterize=False``) and :math:`F` is ``meta_objective``, differentiated in
    ``mode`` (a :class:`~adaptive_jax.meta.Mode`, default ``Reverse()``).  All members
    run as one vmapped program; wrap the call in ``jax.jit`` to compile it once.
    """

    def decode(z):
        return from_unconstrained(z, overrides) if reparameterize else z

    def train_member(tx):
        z = to_unconstrained(tx, overrides) if reparameterize else tx
        leaves, rebuild = differentiable_leaves(z)

        def objective_of_leaves(values):
            return meta_objective(decode(rebuild(values)))

        def meta_step(carry, _):
            values, outer_state = carry
            loss, grads = value_and_hypergradient(objective_of_leaves, values, mode=mode)
            updates, outer_state = outer_tx.update(grads, outer_state, values)
            return (apply_updates(values, updates), outer_state), loss

        (leaves, _), losses = lax.scan(
            meta_step, (leaves, outer_tx.init(leaves)), None, length=num_meta_steps
        )
        return decode(rebuild(leaves)), losses

    trained, meta_losses = jax.vmap(train_member)(population)
    return PopulationTraining(trained, meta_losses)


def _as_array(value: Any) -> jax.Array:
    if isinstance(value, float):
        return jnp.asarray(value, dtype=jnp.result_type(float))
    return jnp.asarray(value)
