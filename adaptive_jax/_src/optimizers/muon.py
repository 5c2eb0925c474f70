r"""Muon: orthogonalised momentum on the weight matrices, AdamW on every other parameter."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import aliased_chain
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.optimizers.adam_family import adamw
from adaptive_jax._src.transforms.combinators import partition
from adaptive_jax._src.transforms.orthogonalize import DEFAULT_NS_COEFFS, scale_by_muon
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


def muon_labels(params: Any) -> Any:
    """``"muon"`` for every matrix (2-D leaf), ``"adam"`` for the rest."""
    return jax.tree_util.tree_map(lambda p: "muon" if jnp.ndim(p) == 2 else "adam", params)


@checks_arguments_by_name
def muon(
    learning_rate: Any,
    ns_coeffs: tuple[float, float, float] = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: Any = 0.95,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adam_b1: Any = 0.9,
    adam_b2: Any = 0.999,
    adam_eps_root: Any = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_learning_rate: Any = None,
) -> Any:
    r"""Muon: :math:`\theta \leftarrow \theta - \eta\big(\sqrt{\max(1, n/m)}\,\mathrm{NS}_5(\hat m_t) + \lambda\theta\big)` for each :math:`m\times n` matrix.

    :func:`~adaptive_jax.partition` of two chains: the matrices (2-D leaves) get
    ``scale_by_muon → add_decoupled_weight_decay → scale_by_learning_rate`` (the
    momentum orthogonalised by Newton–Schulz, see :func:`~adaptive_jax.scale_by_muon`),
    every other leaf gets :func:`~adaptive_jax.adamw` (NAdamW with ``nesterov``) with
    the ``adam_*`` arguments.  The numbers of ``optax.contrib.muon`` with its default
    dimension numbers and Frobenius preconditioning (optax's ``adaptive``,
    ``preconditioning``, ``consistent_rms``, ``weight_decay_mask`` and dimension-number
    options are not offered).  On a sharded matrix the orthogonalisation needs the
    whole matrix (:math:`XX^\top` contracts whole rows): it is all-gathered (a
    ``(16, 32)`` matrix over a ``("data", "model")`` mesh compiles to two all-gathers,
    no all-reduce) and the step resharded to the parameter's layout.

    Args:
        learning_rate: :math:`\eta` for the matrices (a number or a schedule).
        ns_coeffs: the quintic's :math:`(a, b, c)` (configuration).
        ns_steps: the number of Newton–Schulz iterations.
        beta: the momentum :math:`\beta` in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0` (Frobenius normalisation, and AdamW's ``eps``).
        weight_decay: :math:`\lambda \ge 0` on the matrices (decoupled).
        mu_dtype: dtype of both momenta.
        nesterov: look-ahead momentum on both sides.
        adam_b1: AdamW's :math:`\beta_1`.
        adam_b2: AdamW's :math:`\beta_2`.
        adam_eps_root: AdamW's :math:`\epsilon_r`.
        adam_weight_decay: AdamW's decoupled decay.
        adam_learning_rate: AdamW's rate (default: ``learning_rate``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
        >>> tx = aj.muon(0.1)
        >>> grads = {"w": jnp.diag(jnp.array([1.0, 1.0])), "b": jnp.array([3.0, -1.0])}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> [round(u, 4) for u in updates["b"].tolist()]  # NAdamW's first step: -0.1 sign(g) (1 + b1/(1 + b1))
        [-0.1474, 0.1474]

    Reference: Jordan et al., "Muon: An optimizer for hidden layers in neural networks",
    2024.
    """
    matrices = aliased_chain(
        scale_by_muon(beta, eps, ns_steps, tuple(ns_coeffs), nesterov, mu_dtype),
        add_decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
        aliases={"beta": "transforms[0].beta"},
    )
    rest = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        adam_b1,
        adam_b2,
        eps,
        adam_eps_root,
        adam_weight_decay,
        mu_dtype=mu_dtype,
        nesterov=nesterov,
    )
    return partition({"muon": matrices, "adam": rest}, muon_labels)
