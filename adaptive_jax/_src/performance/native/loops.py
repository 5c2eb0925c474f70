"""Arrange the translated statements of a step into loops: one loop per parameter leaf.

:mod:`.codegen` produces, for each shape, the statements computing one element
(loads, arithmetic, stores).  The statements of different leaves of one shape are
independent: they are split into *components* (connected through the values they
use), and each component becomes its own loop, so a loop streams only its leaf's
arrays (7 for Adam) however many leaves share the shape.

Components that differ only in names (every Adam leaf does the same arithmetic) share
one C function: its body is written once with placeholder names, and each leaf calls
it with its own pointers and scalars.  The generated code then grows with the number
of *distinct* bodies (usually one or two), not with the number of leaves, and so does
the C compiler's time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DEFINED = re.compile(r"^const (\S+) (\w+) = ")
_NAME = re.compile(r"\b(?:in|t|p|q)\d+\b")


@dataclass
class Component:
    """The statements of one independent loop, in order, and its length."""

    lines: list[str]
    size: int


def components(lines: list[str], size: int) -> list[Component]:
    """Split one shape's statements into independent loops (those that store something)."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    defined = {m.group(2) for line in lines if (m := _DEFINED.match(line))}
    keys = []
    for line in lines:
        own = [n for n in _NAME.findall(line) if n in defined or n[0] in "pq"]
        key = own[0] if own else line
        for name in own[1:]:
            parent[find(name)] = find(key)
        keys.append(key)
    groups: dict[str, list[str]] = {}
    for line, key in zip(lines, keys):
        groups.setdefault(find(key), []).append(line)
    return [
        Component(group, size)
        for group in groups.values()
        if any(not line.startswith("const ") for line in group)  # it stores a result
    ]


def emit(
    parts: list[Component], pointer_types: dict[str, str], scalar_types: dict[str, str]
) -> tuple[str, str]:
    """C functions for the distinct loop bodies, and the calls that run ``parts`` in order.

    The kernel's index range is the concatenation of the parts' ranges; the calls clip
    ``[lo, hi)`` to each part.
    """
    bodies: dict[str, str] = {}
    calls, offset = [], 0
    for part in parts:
        text, pointers, scalars = _canonical(part.lines, pointer_types, scalar_types)
        if text not in bodies:
            name = f"aj_loop{len(bodies)}"
            params = [f"{pointer_types[p]} P{k}" for k, p in enumerate(pointers)]
            params += [f"const {scalar_types[s]} S{k}" for k, s in enumerate(scalars)]
            body = "\n        ".join(text.split("\n"))
            bodies[text] = (
                f"static __attribute__((noinline)) void {name}(int64_t a, int64_t b"
                + "".join(f", {p}" for p in params)
                + ") {\n#pragma GCC ivdep\n    for (int64_t i = a; i < b; ++i) {\n        "
                + body
                + "\n    }\n}\n"
            )
        name = bodies[text].split("void ", 1)[1].split("(", 1)[0]
        end = offset + part.size
        args = "".join(f", {x}" for x in pointers + scalars)
        calls.append(
            f"    if (lo < {end} && hi > {offset}) "
            f"{name}((lo > {offset} ? lo : {offset}) - {offset}, "
            f"(hi < {end} ? hi : {end}) - {offset}{args});\n"
        )
        offset = end
    return "".join(bodies.values()), "".join(calls)


def _canonical(
    lines: list[str], pointer_types: dict[str, str], scalar_types: dict[str, str]
) -> tuple[str, list[str], list[str]]:
    """The lines with placeholder names, and the pointers and scalars they stand for."""
    local: dict[str, str] = {}
    pointers: list[str] = []
    scalars: list[str] = []
    for line in lines:
        if m := _DEFINED.match(line):
            local.setdefault(m.group(2), f"v{len(local)}")

    def rename(match: re.Match) -> str:
        name = match.group(0)
        if name in local:
            return local[name]
        if name in pointer_types:
            if name not in pointers:
                pointers.append(name)
            return f"P{pointers.index(name)}"
        if name not in scalar_types:
            raise KeyError(name)
        if name not in scalars:
            scalars.append(name)
        return f"S{scalars.index(name)}"

    text = "\n".join(_NAME.sub(rename, line) for line in lines)
    return text, pointers, scalars
