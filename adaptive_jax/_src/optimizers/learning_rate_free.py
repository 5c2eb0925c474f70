r"""Learning-rate-free optimizers: Prodigy, D-Adaptation AdamW and DoG (``optax.contrib``'s names)."""

from __future__ import annotations

from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.learning_rate_free import (
    INIT_STEP_TYPES,
    scale_by_dadapt_adam,
    scale_by_dog,
    scale_by_prodigy,
)
from adaptive_jax._src.transforms.regularisation import add_l2_regularization
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate


def _pair(betas: Any) -> tuple[Any, Any]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas={betas!r} is invalid: expected a pair (b1, b2)")
    return betas[0], betas[1]


@checks_arguments_by_name
def prodigy(
    learning_rate: Any = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    beta3: Any = None,
    eps: Any = 1e-8,
    estim_lr0: Any = 1e-6,
    estim_lr_coef: Any = 1.0,
    weight_decay: Any = 0.0,
    safeguard_warmup: bool = False,
) -> Chain:
    r"""Prodigy: Adam whose learning rate :math:`d_t\gamma` is estimated from the distance travelled.

    :func:`~adaptive_jax.scale_by_prodigy` (see it for the update rule) as a chain.
    ``betas`` is stored as ``b1`` and ``b2``.  The numbers of ``optax.contrib.prodigy``.

    Args:
        learning_rate: :math:`\gamma`, a multiplier of the estimate (or a schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
        beta3: :math:`\beta_3` in :math:`[0, 1)`, or ``None`` for :math:`\sqrt{\beta_2}`.
        eps: :math:`\epsilon \ge 0`.
        estim_lr0: :math:`d_0 > 0`.
        estim_lr_coef: :math:`c > 0`.
        weight_decay: :math:`\lambda \ge 0`, scaled by the step :math:`\hat\gamma_t`.
        safeguard_warmup: leave :math:`\gamma_t` out of the denominator's sum.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.prodigy(eps=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 9) for u in updates.tolist()]  # first step: -d_0 sign(g)
        [-1e-06, 1e-06]

    Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner", ICML 2024.
    """
    b1, b2 = _pair(betas)
    return chain(
        scale_by_prodigy(
            learning_rate,
            b1,
            b2,
            beta3,
            eps,
            estim_lr0,
            estim_lr_coef,
            weight_decay,
            safeguard_warmup,
        )
    )


@checks_arguments_by_name
def dadapt_adamw(
    learning_rate: Any = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    eps: Any = 1e-8,
    estim_lr0: Any = 1e-6,
    weight_decay: Any = 0.0,
) -> Chain:
    r"""D-Adaptation AdamW: AdamW with its learning rate :math:`d_t\gamma` estimated while training.

    :func:`~adaptive_jax.scale_by_dadapt_adam` (see it for the update rule) as a chain.
    ``betas`` is stored as ``b1`` and ``b2``.  The numbers of
    ``optax.contrib.dadapt_adamw``.

    Args:
        learning_rate: :math:`\gamma`, a multiplier of the estimate (or a schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        estim_lr0: :math:`d_0 > 0`.
        weight_decay: :math:`\lambda \ge 0`, scaled by the step :math:`\hat\gamma_t`.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.dadapt_adamw(eps=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 9) for u in updates.tolist()]  # -(1-b1) d_0 g / (sqrt(1-b2) |g|) * sqrt(1-b2)/(1-b1)
        [-1e-06, 1e-06]

    Reference: Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
    ICML 2023.
    """
    b1, b2 = _pair(betas)
    return chain(scale_by_dadapt_adam(learning_rate, b1, b2, eps, estim_lr0, weight_decay))


@checks_arguments_by_name
def dog(
    learning_rate: Any = 1.0,
    init_step: tuple[str, Any] = ("heuristic", 1e-6),
    eps: Any = 1e-8,
    weight_decay: Any = None,
) -> Chain:
    r"""DoG, "Distance over Gradients": SGD with :math:`\eta_t = \gamma\,\max_{k\le t}\|x_k - x_0\| / \sqrt{\sum_{k\le t}\|g_k\|^2}`.

    The chain ``[add_l2_regularization →] scale_by_dog → scale_by_learning_rate``
    (see :func:`~adaptive_jax.scale_by_dog`); the weight decay is added to the
    gradient, as in optax, whose numbers (``optax.contrib.dog``) these are.  optax's
    ``mask`` is a per-parameter ``weight_decay`` here.  ``init_step`` is stored as
    ``init_step_type`` (configuration) and ``init_step_value`` (a hyperparameter).

    Args:
        learning_rate: :math:`\gamma`, a multiplier (1 is the method's intent).
        init_step: ``("distance" | "heuristic" | "learning_rate", value)``: how
            :math:`\bar r_0` is set (see :func:`~adaptive_jax.scale_by_dog`).
        eps: :math:`\epsilon \ge 0`, under the root.
        weight_decay: :math:`\lambda \ge 0` (coupled L2), or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.dog(init_step=("distance", 0.5), eps=0.0)
        >>> params = jnp.array([1.0])
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(params), params)
        >>> updates.item()  # -r_eps g / |g|
        -0.5

    Reference: Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule", ICML 2023.
    """
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise ValueError(
            f"init_step={init_step!r} is invalid: expected (type, value) with type in "
            f"{INIT_STEP_TYPES}"
        )
    kind, value = init_step
    decay = [] if weight_decay is None else [add_l2_regularization(weight_decay)]
    return aliased_chain(
        *decay,
        scale_by_dog(kind, value, eps),
        scale_by_learning_rate(learning_rate),
        aliases={"init_step": f"transforms[{len(decay)}].init_step_value"},
    )
