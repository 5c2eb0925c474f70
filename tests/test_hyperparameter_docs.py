"""``docs/hyperparameters.md`` is generated from the blocks' declarations and kept current.

Every public block declares its hyperparameters once (``hyperparameter(default=...,
domain=...)``); the table shows what those declarations say: the default, the allowed
values, whether a schedule or a per-parameter tree is accepted, and the
reparameterisation meta-learning uses.  Regenerate with
``python -m tests.test_hyperparameter_docs``.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import adaptive_jax as aj
from adaptive_jax import extend

DOC = Path(__file__).resolve().parent.parent / "docs" / "hyperparameters.md"
HEADER = """# Hyperparameters of every block

Generated from the declarations in the code (`python -m tests.test_hyperparameter_docs`);
`tests/test_hyperparameter_docs.py` fails when this page and the code disagree. Every
value is checked against its row when the block is built (a traced value is taken as
given), and meta-learning (`aj.meta.to_unconstrained`) moves it through its
reparameterisation. A named optimizer passes its arguments to these blocks; its own
argument names are in its docstring.

| block | hyperparameter | default | allowed | schedule | per-parameter tree | reparameterisation |
| --- | --- | --- | --- | --- | --- | --- |
"""


def blocks() -> list[tuple[str, type]]:
    """Every public block class of adaptive_jax, by its public (lowercase) name."""
    found = []
    for name in sorted(aj.__all__):
        obj = getattr(aj, name)
        if inspect.isclass(obj) and issubclass(obj, extend.Transform) and name[0].islower():
            found.append((name, obj))
    return found


def rows() -> str:
    lines = []
    for name, cls in blocks():
        for field in dataclasses.fields(cls):
            spec = field.metadata["adaptive_jax"]
            domain = spec.domain
            if domain is None:
                continue
            default = "required" if field.default is dataclasses.MISSING else repr(field.default)
            allowed = f"{domain.description} in {domain.interval}"
            if domain.optional:
                allowed += ", or None"
            lines.append(
                f"| `{name}` | `{field.name}` | `{default}` | {allowed} | "
                f"{'yes' if domain.schedule else 'no'} | {'yes' if domain.per_parameter else 'no'} | "
                f"{domain.reparameterization.name} |"
            )
    return HEADER + "\n".join(lines) + "\n"


def test_every_public_block_is_listed_with_its_declared_hyperparameters():
    names = {name for name, _ in blocks()}
    assert {"ema_of_gradients", "ema_of_squares", "precondition", "trace"} <= names


def test_docs_page_matches_the_declarations():
    assert DOC.read_text() == rows(), "run `python -m tests.test_hyperparameter_docs` to update"


if __name__ == "__main__":
    DOC.write_text(rows())
