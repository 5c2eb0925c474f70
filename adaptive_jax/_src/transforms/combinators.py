r"""Combinators: named chains, and a transformation per group of parameters.

* :func:`named_chain` — :func:`~adaptive_jax.chain` whose members have names; its state
  is a dict keyed by them (``optax.named_chain``);
* :func:`partition` (alias :func:`multi_transform`) — each parameter carries a label, and
  each label its own transformation: Muon on matrices and AdamW elsewhere, or one
  learning rate for a generator and another for a discriminator
  (``optax.partition``/``optax.multi_transform``):

  .. math::

     u_i = \mathrm{tx}_{\ell(i)}\big(g|_{\ell = \ell(i)}\big)_i ,

  where :math:`g|_{\ell = c}` are the gradients of the parameters labelled :math:`c`
  (the others are :class:`~adaptive_jax.MaskedNode` for that transformation, which keeps
  no state for them);
* :func:`selective_transform` — an optimizer on the trainable parameters, zeros on the
  frozen ones, with no optimizer state for the frozen ones (``optax.selective_transform``).

Every member shares the wrapper's step counter (members are called through
``init_state``/``apply``, as in :func:`~adaptive_jax.chain`), which is what optax's
members count too: each is updated at every step.  Where the groups differ only in
numbers (two learning rates), a per-parameter hyperparameter does the same in one
optimizer: ``adam({"generator": 1e-4, "discriminator": 4e-4})``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax

from adaptive_jax._src.core.combine import as_transform
from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.moments import expect_gradients
from adaptive_jax._src.core.protocol import PyTree, Transform
from adaptive_jax._src.transforms.masking import SetToZero
from adaptive_jax._src.transforms.selection import (
    StaticTree,
    check_labels_known,
    merge,
    resolve,
    select,
    select_extra_args,
    static_labels,
    static_mask,
)


def _call(tx: Transform, updates, state, params, count, extra_args):
    if tx.takes_extra_args:
        return tx.apply(updates, state, params, count, **extra_args)
    return tx.apply(updates, state, params, count)


def _as_named_transforms(transforms: Any) -> dict[Any, Transform]:
    if not isinstance(transforms, Mapping):
        raise TypeError(
            "transforms must be a mapping from labels to gradient transformations, e.g. "
            f"{{'adam': aj.adam(1e-3), 'sgd': aj.sgd(0.1)}}; got {type(transforms).__name__}"
        )
    return {label: as_transform(tx, f"transforms[{label!r}]") for label, tx in transforms.items()}


class NamedChain(Transform):
    """Apply named transformations in order; the state is a dict keyed by name.

    Build with :func:`named_chain`.  ``order`` keeps the order of application (a dict
    rebuilt by JAX is sorted by key).
    """

    transforms: dict[str, Transform] = child(converter=_as_named_transforms)
    order: tuple[str, ...] = static(converter=tuple)
    takes_extra_args = True

    def __check_init__(self):
        if sorted(self.order) != sorted(self.transforms):
            raise ValueError(f"order {self.order} must name each transform once")

    def init_state(self, params):
        return {name: self.transforms[name].init_state(params) for name in self.order}

    def apply(self, updates, state, params, count, **extra_args):
        new_state = {}
        for name in self.order:
            updates, new_state[name] = _call(
                self.transforms[name], updates, state[name], params, count, extra_args
            )
        return updates, new_state


def named_chain(*transforms: tuple[str, Any]) -> NamedChain:
    """:func:`~adaptive_jax.chain` with a name for each member; the state is keyed by name.

    optax's ``named_chain``: the state of the member named ``"adam"`` is
    ``state.inner["adam"]`` (``state["adam"]`` in optax, whose chains keep no shared
    counter around the dict).  Hyperparameters are found by path too:
    ``transforms['adam'].learning_rate``.

    Args:
        *transforms: ``(name, transformation)`` pairs, names unique strings.

    Raises:
        ValueError: two members share a name.
        TypeError: an argument is not a ``(str, transformation)`` pair.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.named_chain(("clip", aj.clip_by_global_norm(1.0)), ("sgd", aj.sgd(0.5)))
        >>> state = tx.init(jnp.zeros(2))
        >>> updates, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> list(state.inner), updates.tolist()  # clipped to norm 1, times -0.5
        (['clip', 'sgd'], [-0.30000001192092896, -0.4000000059604645])
    """
    names = []
    for index, pair in enumerate(transforms):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(
                f"named_chain argument {index} must be a (name, transformation) pair with a "
                f"string name, got {pair!r}"
            )
        names.append(pair[0])
    if len(names) != len(set(names)):
        raise ValueError(f"named_chain needs unique names, got {names}")
    return NamedChain(dict(transforms), tuple(names))


class PartitionState(NamedTuple):
    """State of :func:`~adaptive_jax.partition`: each label's transformation state, over
    the leaves with that label (the others :class:`~adaptive_jax.MaskedNode`)."""

    inner_states: dict[Any, PyTree]


class Partition(Transform):
    r"""Apply ``transforms[label]`` to the parameters labelled ``label``.

    optax's ``partition`` (and ``multi_transform``), with the same arguments.  Each
    transformation sees only its leaves (the others are
    :class:`~adaptive_jax.MaskedNode` in its updates, parameters and state) and shares
    the wrapper's step counter.

    Args:
        transforms: a mapping from labels to transformations (adaptive_jax or optax).
        param_labels: a pytree of labels with the parameters' structure or a prefix of
            it, or a function of the parameters returning one (called on the
            parameters at ``init``, on the updates at ``update``).  Every label must be
            a key of ``transforms``; a transformation whose label no parameter carries
            is initialised on no leaves.
        mask_compatible_extra_args: also mask extra update arguments that have the
            updates' structure (optax's option).

    Raises:
        ValueError: a label has no transformation (the message names the label and
            the path of a parameter carrying it); at construction for a label tree, at
            ``init`` for a function.
        TreeMismatchError: the labels are not a prefix of the parameters.

    Example:
        Adam on the weights, SGD on the biases:

        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> tx = aj.partition({"adam": aj.adam(0.5), "sgd": aj.sgd(0.5)}, {"w": "adam", "b": "sgd"})
        >>> grads = {"w": jnp.full((2, 2), 4.0), "b": jnp.full(2, 4.0)}
        >>> updates, state = tx.update(grads, tx.init(params), params)
        >>> # adam's first step is -lr sign(g) (up to eps); sgd's is -lr g
        >>> round(float(updates["w"][0, 0]), 6), float(updates["b"][0])
        (-0.5, -2.0)
        >>> sorted(state.inner.inner_states)
        ['adam', 'sgd']
    """

    transforms: dict[Any, Transform] = child(converter=_as_named_transforms)
    param_labels: Any = static(converter=static_labels)
    mask_compatible_extra_args: bool = static(default=False)
    takes_extra_args = True

    def __check_init__(self):
        if isinstance(self.param_labels, StaticTree):
            labels = self.param_labels.tree()
            check_labels_known(
                list(self.param_labels.leaves), self.transforms, labels, "param_labels"
            )

    def _labels(self, tree: PyTree, name: str) -> list[Any]:
        labels = resolve(self.param_labels, tree, "param_labels", name)
        check_labels_known(labels, self.transforms, tree, "param_labels")
        return labels

    def init_state(self, params):
        labels = self._labels(params, "params")
        return PartitionState(
            {
                label: tx.init_state(select(params, [x == label for x in labels]))
                for label, tx in self.transforms.items()
            }
        )

    def apply(self, updates, state, params, count, **extra_args):
        expect_gradients(updates, "partition")
        labels = self._labels(updates, "updates")
        out, new_states = updates, {}
        for label, tx in self.transforms.items():
            chosen = [x == label for x in labels]
            extra = select_extra_args(extra_args, updates, chosen, self.mask_compatible_extra_args)
            group_params = None if params is None else select(params, chosen)
            new, new_states[label] = _call(
                tx, select(updates, chosen), state.inner_states[label], group_params, count, extra
            )
            out = merge(out, new, chosen)
        return out, PartitionState(new_states)


def selective_transform(optimizer: Any, *, freeze_mask: Any) -> Partition:
    """``optimizer`` on the trainable parameters, zeros on the frozen ones (no state for them).

    optax's ``selective_transform``: ``partition({"train": optimizer, "freeze":
    set_to_zero()}, labels)``.  Unlike ``chain(optimizer, freeze(mask))``, the optimizer
    keeps no moments for frozen leaves, and its weight decay cannot move them.

    Args:
        optimizer: the transformation for the trainable parameters.
        freeze_mask: ``True`` freezes: a bool or a pytree of bools (a prefix of the
            parameters).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"encoder": jnp.ones(2), "head": jnp.ones(2)}
        >>> tx = aj.selective_transform(aj.adamw(0.5, weight_decay=0.1), freeze_mask={"encoder": True, "head": False})
        >>> updates, _ = tx.update({"encoder": jnp.ones(2), "head": jnp.zeros(2)}, tx.init(params), params)
        >>> updates["encoder"].tolist(), updates["head"].tolist()  # head: -0.5 * (0 + 0.1 * 1)
        ([0.0, 0.0], [-0.05000000074505806, -0.05000000074505806])
    """
    mask = static_mask(freeze_mask, "freeze_mask")
    if callable(mask):
        raise TypeError("freeze_mask must be a bool or a pytree of bools, as in optax")
    labels = jax.tree_util.tree_map(lambda frozen: "freeze" if frozen else "train", mask.tree())
    return Partition({"train": optimizer, "freeze": SetToZero()}, labels)


partition = Partition
multi_transform = Partition
