"""``${a.b.c}`` references in scenario values, resolved against the run's variables.

A value that is exactly one reference keeps the referenced object's type (a list of given names stays
a list); a reference inside a longer string is converted to text.  An undefined reference raises
``Undefined`` naming it, so the engine can say which earlier step did not provide it.
"""

from __future__ import annotations

import re
from typing import Any

_REF = re.compile(r"\$\{([^}]+)\}")


class Undefined(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"undefined variable ${{{name}}}")
        self.name = name


def lookup(variables: dict[str, Any], dotted: str) -> Any:
    cur: Any = variables
    for part in dotted.strip().split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif not isinstance(cur, (dict, list)) and cur is not None and hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            raise Undefined(dotted.strip())
        if cur is None:
            raise Undefined(dotted.strip())
    return cur


def render(value: Any, variables: dict[str, Any], *, lenient: bool = False) -> Any:
    """Resolve references in ``value`` (recursively); with ``lenient`` undefined ones become None."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            try:
                return lookup(variables, whole.group(1))
            except Undefined:
                if lenient:
                    return None
                raise

        def sub(m: re.Match[str]) -> str:
            try:
                return str(lookup(variables, m.group(1)))
            except Undefined:
                if lenient:
                    return ""
                raise

        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: render(v, variables, lenient=lenient) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables, lenient=lenient) for v in value]
    return value


def references(value: Any) -> set[str]:
    """Top-level variable names a value refers to (to explain a skip by the step that failed)."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(m.group(1).split(".")[0].strip() for m in _REF.finditer(value))
    elif isinstance(value, dict):
        for v in value.values():
            found |= references(v)
    elif isinstance(value, list):
        for v in value:
            found |= references(v)
    return found
