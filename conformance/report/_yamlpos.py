"""Map JSON-Schema error paths back to YAML line numbers.

Users edit YAML, not JSON: an error must say ``file:line: message`` so an editor can jump to it. The
schema validator only knows the path inside the loaded data, so we compose the YAML a second time into
nodes (which carry their start marks) and walk the same path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


def compose(text: str) -> yaml.Node | None:
    """Compose ``text`` into a node tree (safe loader: no Python tags are constructed)."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def line_of(root: yaml.Node | None, path: Iterable[Any]) -> int | None:
    """1-based line of the deepest node reachable along ``path`` (keys and list indexes)."""
    if root is None:
        return None
    node: yaml.Node = root
    for part in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def pointer(path: Iterable[Any]) -> str:
    """JSON pointer of ``path`` (RFC 6901), shown next to the message for unambiguous reference."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""
