"""One signature for a family of optimizers, declared once; members declared by their chains.

Every member of the Adam family takes the same common arguments (``learning_rate, b1,
b2, eps, eps_root`` and the keyword-only ``mu_dtype, nu_dtype``), with the same
meaning; members differ in their chain and in some defaults.  Writing each member's
signature by hand let them drift apart (some lost ``mu_dtype``), so a member is
declared as

.. code-block:: python

    @ADAM_FAMILY.member(eps=1e-16, eps_root=1e-16)
    def adabelief(learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype):
        \"\"\"AdaBelief: ...\"\"\"
        return chain(...)

:meth:`Family.member` checks that the function takes exactly the family's parameters
(plus any ``extra`` ones it declares), and returns a function with the family's
signature and the member's defaults, which is what ``help()``, ``inspect.signature``
and the documentation show.  :meth:`Family.variant` derives a member from another by
changing defaults (``nadam`` is ``adam`` with ``nesterov=True``, as in optax).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adaptive_jax._src.core.inspect import checks_arguments_by_name

Parameter = inspect.Parameter


class Family:
    """The common parameters of a family of optimizer constructors, in order, with defaults."""

    def __init__(self, parameters: Sequence[Parameter]):
        self.parameters = tuple(parameters)

    def _signature(
        self,
        defaults: Mapping[str, Any],
        extra: Mapping[str, Any],
        options: Mapping[str, Any],
        without: Sequence[str],
        return_annotation: Any,
    ) -> inspect.Signature:
        positional = [p for p in self.parameters if p.kind is Parameter.POSITIONAL_OR_KEYWORD]
        keyword = [p for p in self.parameters if p.kind is Parameter.KEYWORD_ONLY]
        positional += [Parameter(n, Parameter.POSITIONAL_OR_KEYWORD) for n in extra]
        keyword += [Parameter(n, Parameter.KEYWORD_ONLY) for n in options]
        values = {**{p.name: p.default for p in self.parameters}, **extra, **options}
        unknown = set(defaults) - set(values)
        if unknown:
            raise TypeError(f"defaults for parameters the family does not have: {sorted(unknown)}")
        values.update(defaults)
        return inspect.Signature(
            [
                p.replace(default=values[p.name])
                for p in positional + keyword
                if p.name not in without
            ],
            return_annotation=return_annotation,
        )

    def member(
        self,
        *,
        extra: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        without: Sequence[str] = (),
        **defaults: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a member: the decorated function builds its chain from the arguments.

        Args:
            extra: further positional-or-keyword parameters (after the common ones)
                with their defaults, e.g. ``{"weight_decay": 1e-2}``.
            options: further keyword-only parameters with their defaults.
            without: common parameters this member does not take.
            **defaults: the member's defaults for common parameters.
        """

        def declare(build: Callable[..., Any]) -> Callable[..., Any]:
            signature = self._signature(
                defaults,
                extra or {},
                options or {},
                without,
                inspect.signature(build).return_annotation,
            )
            taken = list(inspect.signature(build).parameters)
            expected = sorted(signature.parameters)
            if sorted(taken) != expected:
                raise TypeError(
                    f"{build.__name__} must take exactly the family's parameters {expected}, "
                    f"takes {sorted(taken)}"
                )
            return _with_signature(build, signature, build.__name__, build.__doc__)

        return declare

    def variant(
        self, base: Callable[..., Any], **defaults: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a member that is ``base`` with other defaults; the decorated stub gives name and docs."""
        signature: inspect.Signature = base.__signature__  # type: ignore[attr-defined]
        unknown = set(defaults) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{base.__name__} has no parameters {sorted(unknown)}")
        changed = signature.replace(
            parameters=[
                p.replace(default=defaults.get(p.name, p.default))
                for p in signature.parameters.values()
            ]
        )

        def declare(stub: Callable[..., Any]) -> Callable[..., Any]:
            build = base.__wrapped__  # type: ignore[attr-defined]
            return _with_signature(build, changed, stub.__name__, stub.__doc__)

        return declare


def _with_signature(
    build: Callable[..., Any], signature: inspect.Signature, name: str, doc: str | None
) -> Callable[..., Any]:
    checked_build = checks_arguments_by_name(build)

    @functools.wraps(build)
    def member(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{name}(): {error}") from None
        bound.apply_defaults()
        return checked_build(**bound.arguments)

    member.__signature__ = signature  # type: ignore[attr-defined]
    member.__name__ = member.__qualname__ = name
    member.__doc__ = doc
    return member
