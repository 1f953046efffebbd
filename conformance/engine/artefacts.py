"""The part of a received request each check kind judges (VIHF token, CDA document, XDS metadata, MHD Bundle).

A scenario awaits one request on a simulator and asserts several checks on it; each check wants a
different part of it.  The DMP double records those parts in ``Received.facts`` (see
``conformance/simulators/dmp.py``); this module hands each check its part, plus the arguments only
the request can supply (the CDA root and document bytes for the metadata ↔ CDA consistency check).
When the part is absent the assertion fails with an ``INPUT.*`` finding that says which part.
"""

from __future__ import annotations

import base64
import inspect
from typing import Any

from lxml import etree

from conformance.model import Finding
from conformance.parsing import InputError, parse_xml
from conformance.simulators.traffic import Received

PART_KINDS = frozenset({"vihf", "cda", "xds", "mhd"})
NS_XDSB = "urn:ihe:iti:xds-b:2007"


def _first_document(item: Received) -> tuple[str, bytes] | None:
    docs = item.facts.get("documents") or {}
    if not isinstance(docs, dict) or not docs:
        return None
    key = next(iter(docs))
    value = docs[key]
    return (str(key), bytes(value)) if isinstance(value, bytes | bytearray) and value else None


def received_part(kind: str, item: Received) -> tuple[Any, dict[str, Any]] | Finding:
    """(artefact, extra arguments) for a check of ``kind`` on ``item``, or the ``INPUT.*`` finding."""
    facts = item.facts
    if kind == "vihf":
        # The check finds wsse:Security itself (and says VIHF.PRESENT when it is not there).
        envelope = facts.get("envelope_xml") or facts.get("security_xml")
        if not envelope:
            return Finding("INPUT.NO-SOAP", "error", "no readable SOAP envelope in the request", "/")
        return bytes(envelope), {}
    if kind == "cda":
        doc = _first_document(item)
        if doc is None:
            return Finding("INPUT.NO-DOCUMENT", "error", "no document in the request", "//xdsb:Document")
        from conformance.validate import cda_root

        try:
            return cda_root(bytes(doc[1])), {}
        except InputError as exc:
            return Finding(exc.rule, "error", f"document {doc[0]}: {exc.message}", "//xdsb:Document")
    if kind == "xds":
        metadata = facts.get("metadata_xml")
        if not metadata:
            return Finding("INPUT.NO-METADATA", "error", "no lcm:SubmitObjectsRequest in the request", "/")
        try:
            sor = parse_xml(bytes(metadata))
        except InputError as exc:
            return Finding(exc.rule, "error", exc.message, "//lcm:SubmitObjectsRequest")
        # The metadata with its documents inline, as the XDS checks read an ITI-41 (MTOM resolved).
        pnr = etree.Element(f"{{{NS_XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": NS_XDSB})
        pnr.append(sor)
        for doc_id, data in (facts.get("documents") or {}).items():
            el = etree.SubElement(pnr, f"{{{NS_XDSB}}}Document", id=str(doc_id))
            el.text = base64.b64encode(bytes(data)).decode("ascii")
        extra: dict[str, Any] = {}
        doc = _first_document(item)
        if doc is not None:
            extra["document"] = bytes(doc[1])
            from conformance.validate import cda_root

            try:
                extra["cda_root"] = cda_root(bytes(doc[1]))
            except InputError as exc:
                return Finding(exc.rule, "error", f"document {doc[0]}: {exc.message}", "//xdsb:Document")
        return pnr, extra
    if kind == "mhd":
        bundle = facts.get("bundle")
        if bundle is None:
            return Finding("INPUT.NO-BUNDLE", "error", "no FHIR Bundle in the request", "/")
        return bundle, {}
    return item, {}


def check_arguments(func: Any, extra: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` plus the extras ``func`` accepts (scenario arguments win)."""
    try:
        accepted = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return dict(args)
    return {**{k: v for k, v in extra.items() if k in accepted}, **args}


__all__ = ["PART_KINDS", "check_arguments", "received_part"]
