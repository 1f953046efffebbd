"""YAML loading that remembers where each value came from, so errors read ``file:line: message``.

Profiles and scenarios are written by people; pointing at the exact line of a mistake is what makes
the data-driven design bearable.  jsonschema reports a path of keys and indexes: we keep the line of
every node under that path.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

PathKey = tuple[str | int, ...]


class DataError(Exception):
    """A data file that does not load or validate; ``str()`` is ``file:line: message``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line if line is not None else 1}: {message}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the start line of every node by its key path."""


def _compose_lines(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, (*path, i), lines)


def load_yaml(path: Path) -> tuple[Any, dict[PathKey, int]]:
    """Load one YAML document with a map from key paths to line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DataError(str(path), line, f"YAML syntax: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise DataError(str(path), None, f"YAML: {exc}") from None
    lines: dict[PathKey, int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    return data, lines


def line_of(lines: dict[PathKey, int], path: PathKey) -> int | None:
    """Line of the deepest known prefix of ``path``."""
    p = tuple(path)
    while True:
        if p in lines:
            return lines[p]
        if not p:
            return None
        p = p[:-1]


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("conformance.schemas").joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(data: Any, schema_name: str, file: str, lines: dict[PathKey, int]) -> list[DataError]:
    """All schema violations of ``data``, each located on its line, first line first."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = []
    for err in validator.iter_errors(data):
        where = "/".join(str(p) for p in err.absolute_path)
        msg = f"{where}: {err.message}" if where else err.message
        errors.append(DataError(file, line_of(lines, tuple(err.absolute_path)), msg))
    errors.sort(key=lambda e: (e.line or 0, e.message))
    return errors
