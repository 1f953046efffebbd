"""Namespace-agnostic navigation of parsed SOAP/XML messages, shared by the national-service doubles.

Vendors choose their own prefixes and sometimes default namespaces: the doubles read elements by
local name so that every conformant spelling is understood.
"""

from __future__ import annotations

from lxml import etree


def local(el: etree._Element) -> str:
    """Local name of an element ("" for comments and processing instructions)."""
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def children(el: etree._Element | None) -> list[etree._Element]:
    if el is None:
        return []
    return [c for c in el if isinstance(c.tag, str)]


def child(el: etree._Element | None, name: str) -> etree._Element | None:
    return next((c for c in children(el) if local(c) == name), None)


def text(el: etree._Element | None) -> str | None:
    """Stripped text content, None when absent or empty."""
    if el is None:
        return None
    value = "".join(t for t in el.itertext() if isinstance(t, str)).strip()
    return value or None
