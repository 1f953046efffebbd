"""Safe parsing of untrusted bytes (vendor responses, files, simulator traffic).

Every parser here refuses entity expansion, DTD loading and network access, and caps sizes, so that
hostile input becomes an ``InputError`` carrying an ``INPUT.*`` rule instead of a hang, a local file
read or a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

MAX_BYTES = 20 * 1024 * 1024


class InputError(Exception):
    """Input that cannot be read as what it should be; ``rule`` is its ``INPUT.*`` rule id."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse_xml(data: bytes, *, max_bytes: int = MAX_BYTES) -> etree._Element:
    """Parse XML, rejecting DOCTYPE declarations outright (XXE and entity bombs need one)."""
    if not data or not data.strip():
        raise InputError("INPUT.EMPTY", "empty document")
    if len(data) > max_bytes:
        raise InputError("INPUT.TOO-LARGE", f"document of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    head = data[:4096]
    probe = head.decode("utf-16") if head.startswith((b"\xff\xfe", b"\xfe\xff")) else head.decode("latin-1")
    if "<!DOCTYPE" in probe.upper() or "<!ENTITY" in probe.upper():
        raise InputError("INPUT.DTD", "DOCTYPE/ENTITY declarations are refused (XXE and entity-expansion risk)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise InputError("INPUT.XML", f"not well-formed XML: {exc}") from None
    except ValueError as exc:
        raise InputError("INPUT.XML", f"unreadable XML: {exc}") from None
    if root is None:
        raise InputError("INPUT.XML", "no root element")
    if root.getroottree().docinfo.internalDTD is not None:
        raise InputError("INPUT.DTD", "DOCTYPE declarations are refused")
    return root


def parse_json(data: bytes, *, max_bytes: int = MAX_BYTES) -> Any:
    if not data or not data.strip():
        raise InputError("INPUT.EMPTY", "empty body")
    if len(data) > max_bytes:
        raise InputError("INPUT.TOO-LARGE", f"body of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("INPUT.ENCODING", f"body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("INPUT.JSON", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError("INPUT.JSON", "JSON nested too deeply") from None
