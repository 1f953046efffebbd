"""Generic FHIR REST API behaviour seen on one HTTP exchange (``FHIR.*`` rules).

The artefact is any object with ``status: int``, ``headers: Mapping[str, str]`` and ``body: bytes``
(the transports' recorded exchange, a simulator's ``Received`` answer, a test double).  Header
look-ups are case-insensitive even over a plain ``dict`` because recorded headers keep the
server's spelling.

A failed status stops the other rules: a 404's OperationOutcome is not a wrong resource type, and
one defect should map to one rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from conformance.checks.ins import INS_SYSTEMS
from conformance.checks.registry import check
from conformance.model import Finding
from conformance.parsing import InputError, parse_json

STATUS = "FHIR.STATUS"
CONTENT_TYPE = "FHIR.CONTENT-TYPE"
RESOURCE_TYPE = "FHIR.RESOURCE-TYPE"
BUNDLE = "FHIR.BUNDLE"
SEARCH = "FHIR.SEARCH"

FHIR_JSON = "application/fhir+json"
# Tolerated with a warning: the DSTU2-era type and plain JSON are what lenient clients accept.
LEGACY_JSON = frozenset({"application/json+fhir", "application/json"})

_COMMON_RULES = {
    STATUS: "Code HTTP attendu (200)",
    CONTENT_TYPE: "Content-Type application/fhir+json (charset UTF-8)",
}


class Exchange(Protocol):
    """What the FHIR checks read of an HTTP exchange."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def header(headers: Any, name: str) -> str | None:
    """Case-insensitive header value from a plain dict, a case-insensitive mapping or ``None``."""
    if not headers:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    if value is not None:
        return str(value)
    low = name.lower()
    try:
        items = headers.items()
    except AttributeError:
        return None
    for key, val in items:
        if isinstance(key, str) and key.lower() == low:
            return str(val)
    return None


def _status_findings(exchange: Any, location: str) -> Iterator[Finding]:
    status = getattr(exchange, "status", None)
    if status != 200:
        yield Finding(STATUS, "error", f"HTTP status {status} where 200 was expected", location)


def _content_type_findings(exchange: Any, location: str) -> Iterator[Finding]:
    raw = header(getattr(exchange, "headers", None), "Content-Type")
    if raw is None or not raw.strip():
        yield Finding(CONTENT_TYPE, "error", f"no Content-Type header ({FHIR_JSON} expected)", location)
        return
    media, *params = (p.strip() for p in raw.split(";"))
    media = media.lower()
    if media == FHIR_JSON:
        pass
    elif media in LEGACY_JSON:
        yield Finding(CONTENT_TYPE, "warning", f"Content-Type {media} tolerated; {FHIR_JSON} expected", location)
    else:
        yield Finding(CONTENT_TYPE, "error", f"Content-Type {raw!r} is not {FHIR_JSON}", location)
        return
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            yield Finding(CONTENT_TYPE, "error", f"charset {value.strip()!r}: FHIR bodies are UTF-8", location)


def _body(exchange: Any, location: str) -> tuple[Any, Finding | None]:
    body = getattr(exchange, "body", b"")
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        return parse_json(body or b""), None
    except InputError as exc:
        return None, Finding(exc.rule, "error", exc.message, location)


_UNREADABLE = object()


def _read_answer(exchange: Any) -> tuple[list[Finding], Any]:
    """Status, Content-Type and body of a FHIR answer; the body is ``_UNREADABLE`` when judging it
    further would only repeat the problem (not 200, or not JSON)."""
    status = list(_status_findings(exchange, "HTTP status"))
    if status:
        return status, _UNREADABLE
    findings = list(_content_type_findings(exchange, "HTTP header Content-Type"))
    data, problem = _body(exchange, "HTTP body")
    if problem:
        return [*findings, problem], _UNREADABLE
    return findings, data


@check(
    "fhir.read",
    kind="http",
    service="FHIR",
    rules={**_COMMON_RULES, RESOURCE_TYPE: "Corps : une ressource du type demandé"},
)
def fhir_read(exchange: Exchange, *, resource_type: str = "Patient") -> Iterator[Finding]:
    """A FHIR read answers 200, ``application/fhir+json`` and a resource of the requested type."""
    findings, data = _read_answer(exchange)
    yield from findings
    if data is _UNREADABLE:
        return
    if not isinstance(data, dict):
        yield Finding(
            RESOURCE_TYPE,
            "error",
            f"body is not a FHIR resource (JSON object); expected a {resource_type}",
            "HTTP body",
        )
    elif data.get("resourceType") != resource_type:
        yield Finding(
            RESOURCE_TYPE,
            "error",
            f"resourceType {data.get('resourceType')!r} where {resource_type!r} was expected",
            "resourceType",
        )


def _entries(bundle: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [(i, e) for i, e in enumerate(entries) if isinstance(e, dict)]


def patients_in(body_json: Any) -> list[tuple[str, dict[str, Any]]]:
    """The Patient resources of a Patient or a Bundle, with their FHIRPath location.

    The engine runs ``ins.patient`` on each (``location`` is passed through so findings point at
    ``Bundle.entry[i].resource``).
    """
    if not isinstance(body_json, dict):
        return []
    rtype = body_json.get("resourceType")
    if rtype == "Patient":
        return [("Patient", body_json)]
    if rtype != "Bundle":
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for i, entry in _entries(body_json):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            out.append((f"Bundle.entry[{i}].resource", resource))
    return out


def _bundle_findings(data: Any, resource_type: str) -> Iterator[Finding]:
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        got = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        yield Finding(BUNDLE, "error", f"search answered {got!r}, not a Bundle", "resourceType")
        return
    if data.get("type") != "searchset":
        yield Finding(
            BUNDLE, "error", f"Bundle.type {data.get('type')!r} where 'searchset' was expected", "Bundle.type"
        )
    raw_entries = data.get("entry")
    if raw_entries is not None and not isinstance(raw_entries, list):
        yield Finding(BUNDLE, "error", "Bundle.entry must be a list", "Bundle.entry")
        return
    matches = 0
    for i, entry in enumerate(raw_entries or []):
        loc = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            yield Finding(BUNDLE, "error", "entry is not a JSON object", loc)
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield Finding(BUNDLE, "error", "entry without a resource", f"{loc}.resource")
            continue
        mode = entry.get("search", {}).get("mode") if isinstance(entry.get("search"), dict) else None
        if mode not in (None, "match", "include", "outcome"):
            yield Finding(BUNDLE, "error", f"search.mode {mode!r} is not match/include/outcome", f"{loc}.search.mode")
        if mode == "match" or (mode is None and resource.get("resourceType") == resource_type):
            matches += 1
    total = data.get("total")
    if total is not None:
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            yield Finding(BUNDLE, "error", f"Bundle.total {total!r} is not a non-negative integer", "Bundle.total")
        elif total < matches:
            yield Finding(
                BUNDLE,
                "error",
                f"Bundle.total {total} is below the {matches} matches returned",
                "Bundle.total",
            )


def _identifiers(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = resource.get("identifier")
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


def _carries(resource: Mapping[str, Any], system: str | None, value: str) -> bool:
    for idf in _identifiers(resource):
        if not isinstance(idf, dict) or idf.get("value") != value:
            continue
        if system is None or (idf.get("system") or "") == system:
            return True
    return False


def _search_findings(data: Any, resource_type: str, identifier: str) -> Iterator[Finding]:
    system: str | None
    if "|" in identifier:
        system, value = identifier.split("|", 1)
    else:
        system, value = None, identifier
    hits = 0
    for i, entry in _entries(data):
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
            continue
        mode = entry.get("search", {}).get("mode") if isinstance(entry.get("search"), dict) else None
        if mode not in (None, "match"):
            continue
        if _carries(resource, system, value):
            hits += 1
            continue
        others = [
            str(idf.get("value"))
            for idf in _identifiers(resource)
            if isinstance(idf.get("system"), str) and idf["system"] in INS_SYSTEMS
        ]
        what = f"another INS ({', '.join(others)})" if others else "no such identifier"
        yield Finding(
            SEARCH,
            "error",
            f"entry matched identifier={identifier} but carries {what}: the search parameter was ignored",
            f"Bundle.entry[{i}].resource",
        )
    if hits == 0:
        yield Finding(SEARCH, "error", f"no {resource_type} carrying identifier {identifier} in the results", "Bundle")


@check(
    "fhir.search",
    kind="http",
    service="FHIR",
    rules={
        **_COMMON_RULES,
        BUNDLE: "Réponse de recherche : Bundle searchset bien formé",
        SEARCH: "Recherche par identifiant : le résultat porte l'identifiant cherché, et lui seul",
    },
)
def fhir_search(
    exchange: Exchange, *, resource_type: str = "Patient", identifier: str | None = None
) -> Iterator[Finding]:
    """A FHIR search answers a well-formed searchset; by identifier, only resources carrying it."""
    findings, data = _read_answer(exchange)
    yield from findings
    if data is _UNREADABLE:
        return
    yield from _bundle_findings(data, resource_type)
    if identifier and isinstance(data, dict) and data.get("resourceType") == "Bundle":
        yield from _search_findings(data, resource_type, identifier)


__all__ = ["Exchange", "fhir_read", "fhir_search", "header", "patients_in"]
