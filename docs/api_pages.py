"""Write the API reference's pages from the public modules' ``__all__`` (run by conf.py).

One page per public module (its docstring and a table of its names, grouped as the
``__all__`` of ``adaptive_jax/__init__.py`` groups them) and one page per public name (its
docstring through autodoc and napoleon). A name exported by several modules
(``make_train_step`` is in ``adaptive_jax`` and ``adaptive_jax.performance``) is documented
once, under the first module of ``MODULES`` that exports it, and listed with a link in the
others. A public name without a docstring stops the build: the reference documents every
name of every ``__all__`` (``docs/check_site.py`` checks the built pages for each of them).
"""

import importlib
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

MODULES = [
    "adaptive_jax",
    "adaptive_jax.meta",
    "adaptive_jax.schedules",
    "adaptive_jax.performance",
    "adaptive_jax.sharding",
    "adaptive_jax.extend",
]


class UndocumentedName(Exception):
    """A public name whose object carries no docstring of its own."""


def public_names(module: ModuleType) -> list[str]:
    """The module's ``__all__`` without the submodules (each has its own page)."""
    return [n for n in module.__all__ if not inspect.ismodule(getattr(module, n))]


def canonical_homes() -> dict[int, str]:
    """``id(object) -> "module.name"`` where each public object is documented."""
    homes: dict[int, str] = {}
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in public_names(module):
            homes.setdefault(id(getattr(module, name)), f"{modname}.{name}")
    return homes


def groups(module: ModuleType) -> list[tuple[str, list[str]]]:
    """The names of ``__all__`` in the groups its source comments name, else by kind."""
    source = inspect.getsource(module)
    block = re.search(r"__all__ = \[(.*?)\n\]", source, re.S)
    found: list[tuple[str, list[str]]] = []
    if block and "#" in block.group(1):
        for line in block.group(1).splitlines():
            line = line.strip()
            if line.startswith("#"):
                found.append((line.lstrip("# ").capitalize(), []))
            elif line.startswith('"') and found:
                found[-1][1].append(line.strip('",'))
        found = [(title, [n for n in names if n in public_names(module)]) for title, names in found]
        return [(title, names) for title, names in found if names]
    kinds: dict[str, list[str]] = {"Classes": [], "Functions": [], "Constants": []}
    for name in public_names(module):
        obj = getattr(module, name)
        kind = "Classes" if inspect.isclass(obj) else "Functions" if callable(obj) else "Constants"
        kinds[kind].append(name)
    return [(kind, names) for kind, names in kinds.items() if names]


def attribute_doc(obj: object, name: str) -> list[str]:
    """The ``#:`` comment above ``name = ...`` in the private module that defines it."""
    from sphinx.pycode import ModuleAnalyzer

    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith("adaptive_jax._src") or getattr(module, name, None) is not obj:
            continue
        docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        if ("", name) in docs:
            return [line for line in docs[("", name)] if line is not None]
    return []


def summary(obj: object, name: str) -> str:
    """The first paragraph of the object's own docstring, on one line."""
    if inspect.isclass(obj) or inspect.isroutine(obj) or (callable(obj) and obj.__doc__):
        doc = inspect.getdoc(obj) or ""
    else:
        doc = "\n".join(attribute_doc(obj, name))
    return " ".join(doc.strip().split("\n\n")[0].split())


def object_page(modname: str, name: str, obj: object) -> str:
    """The reStructuredText of one public name's page."""
    title = f"{name}\n{'=' * len(name)}\n\n.. currentmodule:: {modname}\n\n"
    if inspect.isclass(obj):
        from adaptive_jax._src.core.protocol import Transform

        # A block's docstring is its reference (math, Args, example); its init_state/apply
        # are the protocol's. Other classes (Transform, Mode, Schedule, ...) list the
        # members that carry a docstring.
        members = "" if issubclass(obj, Transform) and obj is not Transform else "   :members:\n"
        if not (obj.__doc__ or "").strip():
            raise UndocumentedName(f"{modname}.{name} has no docstring")
        return title + f".. autoclass:: {name}\n{members}"
    if inspect.isfunction(obj) or (callable(obj) and (obj.__doc__ or "").strip()):
        doc = inspect.getdoc(obj) or ""
        if not doc.strip() or doc == inspect.getdoc(type(obj)) and inspect.isfunction(obj):
            raise UndocumentedName(f"{modname}.{name} has no docstring")
        return title + f".. autofunction:: {name}\n"
    lines = attribute_doc(obj, name)
    if not lines:
        raise UndocumentedName(
            f"{modname}.{name} has no docstring: write a `#:` comment above its assignment"
        )
    value = " ".join(repr(obj).split())
    body = "\n".join(f"   {line}" if line else "" for line in lines)
    return title + f".. py:data:: {name}\n   :value: {value}\n\n{body}\n"


def module_page(modname: str, homes: dict[int, str]) -> tuple[str, list[str]]:
    """The module's page, and the names documented on their own pages under it."""
    module = importlib.import_module(modname)
    out = [f"{modname}\n{'=' * len(modname)}\n", f".. automodule:: {modname}\n"]
    own: list[str] = []
    for title, names in groups(module):
        out.append(f"{title}\n{'-' * len(title)}\n")
        here = [n for n in names if homes[id(getattr(module, n))] == f"{modname}.{n}"]
        elsewhere = [n for n in names if n not in here]
        if here:
            rows = "".join(
                f"   * - :py:obj:`{n} <{modname}.{n}>`\n     - {summary(getattr(module, n), n)}\n"
                for n in here
            )
            out.append(f".. list-table::\n   :widths: 30 70\n\n{rows}")
        if elsewhere:
            links = ", ".join(f":py:obj:`{homes[id(getattr(module, n))]}`" for n in elsewhere)
            out.append(f"Also exported here, documented where they are first exported: {links}.\n")
        own.extend(here)
    out.append(".. toctree::\n   :hidden:\n\n" + "".join(f"   {modname}.{n}\n" for n in own))
    return "\n".join(out), own


def write_pages(folder: Path) -> None:
    """Write every API page into ``folder`` (generated at each build; not in git)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()

    def write(path: Path, text: str) -> None:
        # Unchanged pages keep their time stamp, so Sphinx does not read them again.
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.add(path)

    homes = canonical_homes()
    undocumented: list[str] = []
    index = ["API reference\n=============\n", ".. toctree::\n   :maxdepth: 1\n"]
    for modname in MODULES:
        text, own = module_page(modname, homes)
        write(folder / f"{modname}.rst", text)
        index.append(f"   {modname}")
        module = importlib.import_module(modname)
        for name in own:
            try:
                page = object_page(modname, name, getattr(module, name))
            except UndocumentedName as error:
                undocumented.append(str(error))
                continue
            write(folder / f"{modname}.{name}.rst", page)
    write(folder / "index.rst", "\n".join(index) + "\n")
    for stale in set(folder.glob("*.rst")) - written:
        stale.unlink()
    if undocumented:
        raise UndocumentedName("undocumented public names:\n" + "\n".join(undocumented))


def _lookup(dotted: str) -> object | None:
    """The object ``dotted`` names (a module, or attributes below one), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            if not hasattr(obj, part):
                return None
            obj = getattr(obj, part)
        return obj
    return None


def public_target(target: str, module: str | None, cls: str | None) -> str | None:
    """The documented public name for a reference ``target`` written in a docstring.

    ``"module.name"`` of the page documenting the same object; ``""`` when the target is a
    private object of the package (rendered as code, no link); None when nothing of that
    name exists (the build reports it).
    """
    homes = canonical_homes()
    by_name: dict[str, set[str]] = {}
    for home in homes.values():
        by_name.setdefault(home.rsplit(".", 1)[1], set()).add(home)
    scopes = [f"{module}.{cls}" if module and cls else None, module, "adaptive_jax"]
    candidates = [f"{scope}.{target}" for scope in scopes if scope] + [target]
    for candidate in candidates:
        obj = _lookup(candidate)
        if obj is None:
            continue
        if inspect.ismodule(obj):
            name = obj.__name__
            if name.startswith("adaptive_jax._src."):
                # A private module: the public namespace that re-exports from it.
                public = "adaptive_jax." + name.split(".")[2]
                return public if public in MODULES else "adaptive_jax"
            return name if name in MODULES else None
        if id(obj) in homes:
            return homes[id(obj)]
        head, _, attr = candidate.rpartition(".")
        owner = _lookup(head)
        if owner is not None and id(owner) in homes:
            return homes[id(owner)]  # an undocumented member: its class's page
        if candidate.startswith("adaptive_jax"):
            return ""  # private to the package
    first, _, rest = target.partition(".")
    if first in by_name and len(by_name[first]) == 1:
        return next(iter(by_name[first]))
    for _, mod in sorted(sys.modules.items()):
        if (
            mod
            and mod.__name__.startswith("adaptive_jax._src")
            and _lookup(f"{mod.__name__}.{target}")
        ):
            return ""
    return None
