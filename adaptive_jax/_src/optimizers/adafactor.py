r"""Adafactor: a factored second moment, update clipping and a step relative to each tensor's scale."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.transforms.clipping import clip_by_block_rms
from adaptive_jax._src.transforms.factored import (
    _EmaOfUpdates,
    scale_by_factored_rms,
    scale_by_param_block_rms,
)
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale, scale_by_learning_rate


def _masked(weight_decay_rate: Any, mask: Any) -> Any:
    """The weight decay as a per-parameter tree: ``weight_decay_rate`` where ``mask`` is True, else 0."""
    if mask is None:
        return weight_decay_rate
    if callable(mask):
        raise TypeError(
            "weight_decay_mask must be a pytree of bools (a prefix of the parameters), not a "
            "function: the mask decides which per-parameter weight decays are 0 when the "
            "optimizer is built, before the parameters are seen"
        )
    return jax.tree_util.tree_map(lambda keep: weight_decay_rate if keep else 0.0, mask)


@checks_arguments_by_name
def adafactor(
    learning_rate: PerParameter | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: Any = 0.8,
    decay_offset: Any = 0.0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: Any | None = 1.0,
    momentum: PerParameter | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: PerParameter | None = None,
    eps: Any = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> Chain:
    r"""Adafactor: Adam's scale from :math:`O(n+m)` numbers per :math:`n\times m` matrix.

    .. math::
       \hat V_t &= R_t C_t^\top / \mathrm{mean}(R_t)
          \quad\text{(rows/columns EMAs of } G_t^2+\epsilon\text{, decay }
          \hat\beta_t = 1-(t-t_0)^{-c}\text{)} \\
       U_t &= G_t / \sqrt{\hat V_t}, \qquad
       \hat U_t = U_t / \max\!\big(1, \mathrm{RMS}(U_t)/d\big) \\
       M_t &= \mu M_{t-1} + (1-\mu)\, \alpha_t \max(\mathrm{RMS}(\theta_{t-1}), 10^{-3})\, \hat U_t \\
       \theta_t &= \theta_{t-1} - M_t - \lambda_t \theta_{t-1},

    per parameter tensor (RMS over one tensor); a leaf that is not factored keeps the
    full EMA :math:`V_t` (see :func:`~adaptive_jax.scale_by_factored_rms` for which
    leaves are factored).  The chain is ``scale_by_factored_rms → clip_by_block_rms →
    scale_by_learning_rate(flip_sign=False) → scale_by_param_block_rms →
    ema_of_updates → add_decoupled_weight_decay → scale(-1)``, each present when its
    argument asks for it: optax's chain, under optax's arguments.  The weight decay is
    not multiplied by the learning rate.

    **Where we differ from optax.** optax rounds :math:`\hat\beta_t` to float32 (about
    :math:`10^{-8}` relative in float64 runs); we compute it in the hyperparameters'
    precision. ``decay_offset`` defaults to ``0.0`` (a float, so it is differentiable).
    Where a whole tensor's update is 0 (a parameter whose gradient is exactly 0), optax's
    reverse-mode meta-gradient is NaN (:math:`\partial\sqrt{x}` at :math:`x = 0` in its
    block RMS), and with ``eps=0`` so is its update (:math:`0 \cdot 0^{-1/2}`); ours are
    0 and finite (``tests/test_adafactor.py`` shows both).

    **torch.optim.Adafactor** computes another variant: a relative step
    :math:`\min(\alpha, 1/\sqrt t)`, :math:`\epsilon` as a floor of :math:`\sqrt{\hat V}`
    instead of a term under it, weight decay multiplied by the learning rate, every
    tensor of two or more dimensions factored over its last two, no momentum.  It is not
    compared here.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree;
            ``None`` is 1 (optax: no scaling), and stays a hyperparameter.
        min_dim_size_to_factor: factor a leaf only if its two largest dimensions are at
            least this (a Python int).
        decay_rate: :math:`c \ge 0`, the exponent of the decay schedule.
        decay_offset: :math:`t_0 \ge 0`: the step the schedule restarts from (fine-tuning).
        multiply_by_parameter_scale: scale each tensor's step by its RMS (floored at
            :math:`10^{-3}`): the learning rate becomes relative.
        clipping_threshold: :math:`d > 0`, or ``None`` for no update clipping.
        momentum: :math:`\mu` in :math:`[0, 1)`, or ``None`` for no momentum buffer.
        dtype_momentum: dtype of the momentum buffer (float32, as optax).
        weight_decay_rate: :math:`\lambda \ge 0` (a number, a schedule or a
            per-parameter tree), or ``None``.
        eps: :math:`\epsilon \ge 0`, added to the squared gradient.
        factored: factor the second moments of matrices.
        weight_decay_mask: a pytree of bools, a prefix of the parameters: where False,
            no weight decay (its decay rate is 0 there).

    Returns:
        The chain above.  ``learning_rate``, ``decay_rate``, ``decay_offset``,
        ``clipping_threshold``, ``momentum``, ``weight_decay_rate`` and ``eps`` are found
        by these names (:func:`~adaptive_jax.get_hyperparameter`).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adafactor(learning_rate=0.1)
        >>> params = jnp.array([3.0, -4.0])
        >>> updates, _ = tx.update(jnp.array([0.5, 2.0]), tx.init(params), params)
        >>> # step 1: beta = 0, so U = g/|g|; RMS(U) = 1 is not clipped; RMS(theta) = sqrt(12.5)
        >>> [round(u, 5) for u in updates.tolist()]  # -0.1 * sqrt(12.5) * sign(g)
        [-0.35355, -0.35355]

    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", ICML 2018.
    """
    blocks: list[Transform] = [
        scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)
    ]
    aliases = {
        "decay_rate": "transforms[0].decay_rate",
        "decay_offset": "transforms[0].step_offset",
        "eps": "transforms[0].epsilon",
    }
    if clipping_threshold is not None:
        aliases["clipping_threshold"] = f"transforms[{len(blocks)}].threshold"
        blocks.append(clip_by_block_rms(clipping_threshold))
    aliases["learning_rate"] = f"transforms[{len(blocks)}].learning_rate"
    rate = 1.0 if learning_rate is None else learning_rate
    blocks.append(scale_by_learning_rate(rate, flip_sign=False))
    if multiply_by_parameter_scale:
        blocks.append(scale_by_param_block_rms())
    if momentum is not None:
        aliases["momentum"] = f"transforms[{len(blocks)}].decay"
        blocks.append(_EmaOfUpdates(momentum, dtype_momentum))
    if weight_decay_rate is not None:
        aliases["weight_decay_rate"] = f"transforms[{len(blocks)}].weight_decay"
        blocks.append(add_decoupled_weight_decay(_masked(weight_decay_rate, weight_decay_mask)))
    blocks.append(scale(-1.0))  # descent
    return aliased_chain(*blocks, aliases=aliases)
