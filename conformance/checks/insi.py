"""Check of the INSi calls a vendor's software sends to the bench's INSi double.

Written from the INSi WSDL (DESIR_ICIR_EXP 1.5.0: SOAP 1.2 binding, operations and actions) and its
XSDs (INSi_RECSANS_INS / INSi_RECVITALE_INS for the bodies, CTXLPS 01_00 / CTXBAM 01_02 for the
header contexts); the CNAM integration guide is not public, so where an element is optional in the
XSD but expected in practice the finding is a warning, never an error.

Locations are XPath expressions over these prefixes, whatever prefixes the request itself used:
``soap`` SOAP 1.2 envelope, ``ctxlps`` urn:siram:lps:ctxlps, ``ctxbam`` urn:siram:bam:ctxbam,
``wsa`` WS-Addressing 1.0, ``recsans`` http://www.cnamts.fr/INSiRecSans, ``recvit``
http://www.cnamts.fr/INSiRecVit.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from lxml import etree

from conformance.checks.registry import check
from conformance.model import Finding, Severity
from conformance.parsing import InputError, parse_xml

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_WSA = "http://www.w3.org/2005/08/addressing"

NAMESPACES: dict[str, str] = {
    "soap": NS_SOAP12,
    "ctxlps": NS_CTXLPS,
    "ctxbam": NS_CTXBAM,
    "wsa": NS_WSA,
    "recsans": NS_RECSANS,
    "recvit": NS_RECVIT,
}

ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ACTION_CARTE_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"

# operation -> (body element, namespace, WSDL action, location prefix)
_OPERATIONS: dict[str, tuple[str, str, str, str]] = {
    "traits": ("RECSANSVITALE", NS_RECSANS, ACTION_TRAITS, "recsans"),
    "carte-vitale": ("RECVITALE", NS_RECVIT, ACTION_CARTE_VITALE, "recvit"),
}
_BY_ELEMENT = {v[0]: k for k, v in _OPERATIONS.items()}

# A traits call is a few kB (about 20 kB with an assertion PS); the INSi double caps bodies at 5 MB.
MAX_REQUEST_BYTES = 5 * 1024 * 1024

RULES: dict[str, str] = {
    "INS.INSI.ENVELOPE": "Appel INSi en SOAP 1.2 : enveloppe, Content-Type application/soap+xml, Body",
    "INS.INSI.OPERATION": "Opération INSi attendue : corps RECSANSVITALE ou RECVITALE et action WSDL",
    "INS.INSI.CONTEXT": "En-têtes ContexteLPS et ContexteBAM conformes aux XSD CTXLPS et CTXBAM",
    "INS.INSI.TRAITS": "Traits d'identité (ou données carte Vitale) présents, bien formés, traits stricts",
}

_ENV = "/soap:Envelope"
_HEADER = f"{_ENV}/soap:Header"
_BODY = f"{_ENV}/soap:Body"
_LPS = f"{_HEADER}/ctxlps:ContexteLPS"
_BAM = f"{_HEADER}/ctxbam:ContexteBAM"

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(r"^-?(\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_COG = re.compile(r"^(\d{2}|2[AB])\d{3}$", re.IGNORECASE)
_NIR13 = re.compile(r"^\d{6}[0-9AB]\d{6}$")


def _f(rule: str, message: str, location: str, severity: Severity = "error") -> Finding:
    return Finding(rule, severity, message, location)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _ns(el: etree._Element) -> str | None:
    return etree.QName(el).namespace


def _elements(el: etree._Element | None) -> list[etree._Element]:
    return [] if el is None else [c for c in el if isinstance(c.tag, str)]


def _text(el: etree._Element | None) -> str:
    return "" if el is None else "".join(el.itertext()).strip()


def _fold(value: str | None) -> str:
    """Case-, accent- and spacing-insensitive form used to compare traits."""
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFKD", value)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).upper().split())


def _media_type(value: str | None) -> tuple[str | None, dict[str, str]]:
    if not value:
        return None, {}
    parts = value.split(";")
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" in part:
            k, v = part.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"').strip()
    return parts[0].strip().lower() or None, params


def _valid_datetime(value: str) -> bool:
    m = _DATETIME.match(value)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime(max(year, 1), month, day, hour, minute, second)
    except ValueError:
        return hour == 24 and minute == 0 and second == 0  # xsd:dateTime allows 24:00:00
    return True


def _lunar_date_problem(value: str) -> str | None:
    """INSi dates are "dates lunaires": YYYY-MM-DD where an unknown month or day is written 00."""
    m = _DATE.match(value)
    if not m:
        return f"{value!r} is not a date YYYY-MM-DD"
    month, day = int(m.group(2)), int(m.group(3))
    if month > 12 or day > 31:
        return f"{value!r} has month {month:02d} / day {day:02d} out of range"
    return None


def _nir_key(nir13: str) -> int:
    return 97 - int(nir13.upper().replace("2A", "19").replace("2B", "18")) % 97


def _sequence(
    parent: etree._Element,
    ns: str | None,
    order: Sequence[str],
    *,
    rule: str,
    path: str,
    prefix: str,
    repeatable: frozenset[str] = frozenset(),
) -> tuple[dict[str, list[etree._Element]], list[Finding]]:
    """Children of ``parent`` by name, with findings for what an XSD sequence forbids: elements
    outside ``ns`` or not in ``order``, order broken, non-repeatable elements repeated."""
    found: dict[str, list[etree._Element]] = {}
    findings: list[Finding] = []
    last = -1
    for child in _elements(parent):
        name = _local(child)
        if name not in order or _ns(child) != ns:
            where = f"namespace {_ns(child)!r}" if name in order else "this schema"
            findings.append(_f(rule, f"unexpected element {name} (in {where}; expected {ns!r})", f"{path}/{name}"))
            continue
        index = order.index(name)
        if index < last:
            findings.append(
                _f(
                    rule,
                    f"{name} is out of order (schema order: {', '.join(order)})",
                    f"{path}/{prefix}:{name}",
                )
            )
        last = max(last, index)
        found.setdefault(name, []).append(child)
    for name, items in found.items():
        if len(items) > 1 and name not in repeatable:
            findings.append(_f(rule, f"{name} appears {len(items)} times (at most once)", f"{path}/{prefix}:{name}"))
    return found, findings


def _one(found: Mapping[str, list[etree._Element]], name: str) -> etree._Element | None:
    items = found.get(name)
    return items[0] if items else None


# --------------------------------------------------------------------------------------------------


def _envelope(root: etree._Element, content_type: str | None, has_headers: bool) -> Iterator[Finding]:
    rule = "INS.INSI.ENVELOPE"
    is_envelope = _local(root) == "Envelope"
    ns = _ns(root)
    if not is_envelope:
        yield _f(rule, f"root element is {_local(root)}, not a SOAP Envelope", "/")
    elif ns == NS_SOAP11:
        yield _f(rule, "SOAP 1.1 envelope (schemas.xmlsoap.org); the INSi WSDL binds SOAP 1.2 only", _ENV)
    elif ns != NS_SOAP12:
        yield _f(rule, f"Envelope in namespace {ns!r}, expected the SOAP 1.2 namespace {NS_SOAP12}", _ENV)
    if has_headers:
        media, _ = _media_type(content_type)
        if media is None:
            yield _f(
                rule,
                "no Content-Type header; SOAP 1.2 over HTTP uses application/soap+xml",
                "http:Content-Type",
            )
        elif media == "text/xml":
            yield _f(
                rule,
                "Content-Type text/xml is SOAP 1.1; SOAP 1.2 uses application/soap+xml",
                "http:Content-Type",
            )
        elif media != "application/soap+xml":
            yield _f(rule, f"Content-Type {media} is not application/soap+xml", "http:Content-Type")
    if not is_envelope:
        return
    children = _elements(root)
    names = [(_local(c), _ns(c)) for c in children]
    bodies = [c for c in children if _local(c) == "Body"]
    headers = [c for c in children if _local(c) == "Header"]
    if not bodies:
        yield _f(rule, "the Envelope has no Body", _BODY)
    if len(bodies) > 1 or len(headers) > 1:
        yield _f(rule, "the Envelope must have at most one Header and exactly one Body", _ENV)
    for name, child_ns in names:
        if name not in ("Header", "Body"):
            yield _f(rule, f"unexpected element {name} in the Envelope", f"{_ENV}/{name}")
        elif child_ns != ns:
            yield _f(rule, f"{name} is not in the Envelope's namespace ({child_ns!r})", f"{_ENV}/soap:{name}")
    if names and names[0][0] == "Body" and headers:
        yield _f(rule, "Header must come before Body", _HEADER)


def _operation(
    header: etree._Element | None,
    op_el: etree._Element | None,
    body_children: list[etree._Element],
    content_type: str | None,
    soap_action: str | None,
    expected: str | None,
) -> Iterator[Finding]:
    rule = "INS.INSI.OPERATION"
    if len(body_children) > 1:
        yield _f(rule, f"the Body has {len(body_children)} elements; an INSi call carries exactly one", _BODY)
    if op_el is None:
        yield _f(rule, "the Body carries no operation element (RECSANSVITALE or RECVITALE)", _BODY)
        return
    name = _local(op_el)
    op = _BY_ELEMENT.get(name)
    if op is None:
        yield _f(
            rule,
            f"body element {name} is neither RECSANSVITALE (traits) nor RECVITALE (carte Vitale)",
            f"{_BODY}/{name}",
        )
        return
    element, ns, action, prefix = _OPERATIONS[op]
    location = f"{_BODY}/{prefix}:{element}"
    if _ns(op_el) != ns:
        yield _f(rule, f"{element} is in namespace {_ns(op_el)!r}, expected {ns}", location)
    if expected is not None and expected != op:
        want = _OPERATIONS[expected][0] if expected in _OPERATIONS else expected
        yield _f(
            rule,
            f"the software called the {op} operation ({element}) where {expected} ({want}) was expected",
            location,
        )
    # The action: wsa:Action header, SOAP 1.2 content-type parameter, SOAP 1.1 SOAPAction.
    actions: list[tuple[str, str]] = []
    for el in _elements(header):
        if _local(el) == "Action":
            if _ns(el) != NS_WSA:
                yield _f(
                    rule,
                    f"Action header in namespace {_ns(el)!r}, expected WS-Addressing {NS_WSA}",
                    f"{_HEADER}/Action",
                )
            actions.append((_text(el), f"{_HEADER}/wsa:Action"))
    if sum(1 for _, where in actions if where.endswith("wsa:Action")) > 1:
        yield _f(rule, "several wsa:Action headers", f"{_HEADER}/wsa:Action")
    _, params = _media_type(content_type)
    if "action" in params:
        actions.append((params["action"], "http:Content-Type;action"))
    if soap_action and soap_action.strip().strip('"'):
        actions.append((soap_action.strip().strip('"'), "http:SOAPAction"))
    if not actions:
        yield _f(
            rule,
            f"no SOAP action (wsa:Action header or Content-Type action); expected {action}",
            f"{_HEADER}/wsa:Action",
        )
    for value, where in actions:
        if value != action:
            yield _f(rule, f"action {value!r} does not name the {element} operation; expected {action}", where)


def _context(header: etree._Element | None) -> Iterator[Finding]:
    rule = "INS.INSI.CONTEXT"
    elements = _elements(header)
    lps = [e for e in elements if _local(e) == "ContexteLPS"]
    bam = [e for e in elements if _local(e) == "ContexteBAM"]
    mids = [e for e in elements if _local(e) == "MessageID"]
    if not lps:
        yield _f(rule, "no ContexteLPS header (urn:siram:lps:ctxlps): the software is not identified", _LPS)
    if not bam:
        yield _f(rule, "no ContexteBAM header (urn:siram:bam:ctxbam)", _BAM)
    for items, what, path in ((lps, "ContexteLPS", _LPS), (bam, "ContexteBAM", _BAM)):
        if len(items) > 1:
            yield _f(rule, f"{len(items)} {what} headers, expected one", path)
    if not mids:
        yield _f(
            rule,
            "no wsa:MessageID header (a header part of every INSi operation in the WSDL)",
            f"{_HEADER}/wsa:MessageID",
            "warning",
        )
    elif len(mids) > 1:
        yield _f(rule, "several wsa:MessageID headers", f"{_HEADER}/wsa:MessageID")
    elif not _text(mids[0]):
        yield _f(rule, "empty wsa:MessageID", f"{_HEADER}/wsa:MessageID")
    if lps:
        yield from _contexte_lps(lps[0])
    if bam:
        yield from _contexte_bam(bam[0])


def _common_context(
    el: etree._Element, ns: str, nature: str, path: str, prefix: str, order: Sequence[str]
) -> tuple[dict[str, list[etree._Element]], list[Finding]]:
    rule = "INS.INSI.CONTEXT"
    findings: list[Finding] = []
    if _ns(el) != ns:
        findings.append(_f(rule, f"{_local(el)} is in namespace {_ns(el)!r}, expected {ns}", path))
    if not (el.get("Version") or "").strip():
        findings.append(_f(rule, f"{_local(el)}/@Version is required by its XSD", f"{path}/@Version"))
    if el.get("Nature") is not None and el.get("Nature") != nature:
        findings.append(_f(rule, f"@Nature must be {nature}, not {el.get('Nature')!r}", f"{path}/@Nature"))
    found, problems = _sequence(el, _ns(el), order, rule=rule, path=path, prefix=prefix)
    findings += problems
    for name in ("Id", "Temps"):
        if not _text(_one(found, name)):
            findings.append(_f(rule, f"{name} is required by the XSD", f"{path}/{prefix}:{name}"))
    temps = _text(_one(found, "Temps"))
    if temps and not _valid_datetime(temps):
        findings.append(_f(rule, f"Temps {temps!r} is not an xsd:dateTime", f"{path}/{prefix}:Temps"))
    if not _text(_one(found, "Emetteur")):
        findings.append(
            _f(
                rule,
                "no Emetteur (optional in the XSD; the INSi examples identify the user with it)",
                f"{path}/{prefix}:Emetteur",
                "warning",
            )
        )
    return found, findings


def _contexte_lps(el: etree._Element) -> Iterator[Finding]:
    rule = "INS.INSI.CONTEXT"
    found, findings = _common_context(el, NS_CTXLPS, "CTXLPS", _LPS, "ctxlps", ("Id", "Temps", "Emetteur", "LPS"))
    yield from findings
    soft = _one(found, "LPS")
    path = f"{_LPS}/ctxlps:LPS"
    if soft is None:
        yield _f(rule, "no LPS block: INSi authorises the software by its IDAM (fault desir_550 otherwise)", path)
        return
    parts, problems = _sequence(
        soft, _ns(el), ("IDAM", "Version", "Instance", "Nom"), rule=rule, path=path, prefix="ctxlps"
    )
    yield from problems
    idam = _one(parts, "IDAM")
    if not _text(idam):
        yield _f(
            rule,
            "no IDAM: INSi authorises the software by its IDAM (fault desir_550 otherwise)",
            f"{path}/ctxlps:IDAM",
        )
    elif idam is not None and not (idam.get("R") or "").strip():
        yield _f(
            rule,
            "IDAM has no R attribute (optional in the XSD; the INSi examples carry R)",
            f"{path}/ctxlps:IDAM/@R",
            "warning",
        )
    for name, what in (
        ("Version", "software version"),
        ("Instance", "installation instance"),
        ("Nom", "software name"),
    ):
        if not _text(_one(parts, name)):
            yield _f(
                rule,
                f"no {name} ({what}; optional in the XSD, expected by INSi to identify the software)",
                f"{path}/ctxlps:{name}",
                "warning",
            )


def _contexte_bam(el: etree._Element) -> Iterator[Finding]:
    rule = "INS.INSI.CONTEXT"
    order = ("Id", "Temps", "Emetteur", "DateRef", "COUVERTURE")
    found, findings = _common_context(el, NS_CTXBAM, "CTXBAM", _BAM, "ctxbam", order)
    yield from findings
    if _one(found, "COUVERTURE") is None:
        yield _f(rule, "COUVERTURE is required by the CTXBAM XSD (it may be empty)", f"{_BAM}/ctxbam:COUVERTURE")
    date_ref = _text(_one(found, "DateRef"))
    if date_ref and not _valid_datetime(date_ref):
        yield _f(rule, f"DateRef {date_ref!r} is not an xsd:dateTime", f"{_BAM}/ctxbam:DateRef")


def _expected(expected: Mapping[str, Any]) -> dict[str, Any]:
    given = list(expected.get("given_names") or [])
    first = expected.get("first_given_name") or (given[0] if given else None)
    return {
        "birth_name": expected.get("birth_name"),
        "used_name": expected.get("used_name"),
        "first_given_name": first,
        "given_names": given,
        "sex": expected.get("sex"),
        "birth_date": expected.get("birth_date"),
        "birth_place": expected.get("birth_place"),
    }


def _traits(op_el: etree._Element, expected_traits: Mapping[str, Any] | None) -> Iterator[Finding]:
    rule = "INS.INSI.TRAITS"
    path = f"{_BODY}/recsans:RECSANSVITALE"
    order = ("NomNaissance", "Prenom", "Sexe", "DateNaissance", "LieuNaissance")
    found, problems = _sequence(
        op_el, _ns(op_el), order, rule=rule, path=path, prefix="recsans", repeatable=frozenset({"Prenom"})
    )
    yield from problems
    loc = {name: f"{path}/recsans:{name}" for name in order}
    name = _text(_one(found, "NomNaissance"))
    prenom = _text(_one(found, "Prenom"))
    sex = _text(_one(found, "Sexe"))
    birth_date = _text(_one(found, "DateNaissance"))
    place_el = _one(found, "LieuNaissance")
    place = _text(place_el)
    if not name:
        yield _f(rule, "NomNaissance (birth name) is missing or empty", loc["NomNaissance"])
    if not prenom:
        yield _f(rule, "Prenom (first birth given name) is missing or empty", loc["Prenom"])
    if not sex:
        yield _f(rule, "Sexe is missing or empty", loc["Sexe"])
    elif sex not in ("M", "F"):
        yield _f(rule, f"Sexe {sex!r} is not M or F", loc["Sexe"])
    if not birth_date:
        yield _f(rule, "DateNaissance is missing or empty", loc["DateNaissance"])
    elif problem := _lunar_date_problem(birth_date):
        yield _f(rule, f"DateNaissance {problem}", loc["DateNaissance"])
    if place_el is not None and not _COG.match(place):
        yield _f(
            rule,
            f"LieuNaissance {place!r} is not an INSEE COG code (5 characters, 2A/2B, 99xxx)",
            loc["LieuNaissance"],
        )
    if expected_traits is None:
        return
    exp = _expected(expected_traits)
    if name and exp["birth_name"] and _fold(name) != _fold(exp["birth_name"]):
        hint = " — the used name was sent instead of the birth name" if _fold(name) == _fold(exp["used_name"]) else ""
        yield _f(
            rule,
            f"NomNaissance {name!r} is not the birth name {exp['birth_name']!r}{hint}",
            loc["NomNaissance"],
        )
    if prenom and exp["first_given_name"]:
        accepted = {_fold(exp["first_given_name"])}
        if exp["given_names"]:
            accepted.add(_fold(" ".join(exp["given_names"])))
        if _fold(prenom) not in accepted:
            yield _f(
                rule,
                f"Prenom {prenom!r} is not the first birth given name {exp['first_given_name']!r}",
                loc["Prenom"],
            )
    if sex and exp["sex"] and sex.upper() != str(exp["sex"]).upper():
        yield _f(rule, f"Sexe {sex!r} differs from the patient's sex {exp['sex']!r}", loc["Sexe"])
    if birth_date and exp["birth_date"] and birth_date != str(exp["birth_date"]):
        yield _f(
            rule,
            f"DateNaissance {birth_date!r} differs from the patient's {exp['birth_date']!r}",
            loc["DateNaissance"],
        )
    if place and exp["birth_place"] and place.upper() != str(exp["birth_place"]).upper():
        yield _f(
            rule,
            f"LieuNaissance {place!r} differs from the patient's {exp['birth_place']!r}",
            loc["LieuNaissance"],
        )


def _matricule(el: etree._Element, path: str) -> Iterator[Finding]:
    rule = "INS.INSI.TRAITS"
    parts, problems = _sequence(
        el, _ns(el), ("NumIdentifiant", "Cle", "TypeMatricule"), rule=rule, path=path, prefix="recvit"
    )
    yield from problems
    num = _text(_one(parts, "NumIdentifiant"))
    cle = _text(_one(parts, "Cle"))
    if not num:
        yield _f(rule, "NumIdentifiant is missing or empty", f"{path}/recvit:NumIdentifiant")
        return
    if not _NIR13.match(num.upper()):
        yield _f(rule, f"NumIdentifiant {num!r} is not a 13-character NIR", f"{path}/recvit:NumIdentifiant")
        return
    if cle:
        if not re.fullmatch(r"\d{2}", cle):
            yield _f(rule, f"Cle {cle!r} is not two digits", f"{path}/recvit:Cle")
        elif int(cle) != _nir_key(num):
            yield _f(
                rule,
                f"Cle {cle} does not match NumIdentifiant {num} (expected {_nir_key(num):02d})",
                f"{path}/recvit:Cle",
            )


def _carte_vitale(op_el: etree._Element, expected_traits: Mapping[str, Any] | None) -> Iterator[Finding]:
    rule = "INS.INSI.TRAITS"
    path = f"{_BODY}/recvit:RECVITALE"
    order = ("MatriculeIndividu", "MatriculeOD", "NomNaissance", "DateNaissance", "RangNaissance")
    found, problems = _sequence(op_el, _ns(op_el), order, rule=rule, path=path, prefix="recvit")
    yield from problems
    matricules = [(n, _one(found, n)) for n in ("MatriculeIndividu", "MatriculeOD")]
    if all(el is None for _, el in matricules):
        yield _f(
            rule,
            "neither MatriculeIndividu nor MatriculeOD: the card's NIR was not sent",
            f"{path}/recvit:MatriculeOD",
        )
    for n, el in matricules:
        if el is not None:
            yield from _matricule(el, f"{path}/recvit:{n}")
    birth_date = _text(_one(found, "DateNaissance"))
    if birth_date and (problem := _lunar_date_problem(birth_date)):
        yield _f(rule, f"DateNaissance {problem}", f"{path}/recvit:DateNaissance")
    rang = _text(_one(found, "RangNaissance"))
    if _one(found, "RangNaissance") is not None and not rang.isdigit():
        yield _f(rule, f"RangNaissance {rang!r} is not a number", f"{path}/recvit:RangNaissance")
    want = (expected_traits or {}).get("birth_date")
    if birth_date and want and birth_date != str(want):
        yield _f(
            rule,
            f"DateNaissance {birth_date!r} differs from the patient's {want!r}",
            f"{path}/recvit:DateNaissance",
        )


@check("insi.request", kind="soap-request", service="INS", rules=RULES)
def insi_request(
    received: Any,
    *,
    operation: str | None = None,
    expected_traits: Mapping[str, Any] | None = None,
) -> Iterator[Finding]:
    """Judge one INSi call received by the double (a ``Received``; raw bytes are judged without the
    HTTP headers). ``operation`` ('traits' | 'carte-vitale') is the call the scenario asked for;
    ``expected_traits`` (driver keys: birth_name, first_given_name or given_names, sex, birth_date,
    birth_place, used_name) are the patient's strict traits the call must carry."""
    if isinstance(received, bytes | bytearray):
        body, content_type, soap_action, has_headers = bytes(received), None, None, False
    else:
        body = received.body
        content_type = received.header("content-type")
        soap_action = received.header("soapaction")
        has_headers = True
    try:
        root = parse_xml(body, max_bytes=MAX_REQUEST_BYTES)
    except InputError as exc:
        yield _f(exc.rule, f"INSi request unreadable: {exc.message}", "/")
        return
    yield from _envelope(root, content_type, has_headers)
    header: etree._Element | None = None
    if _local(root) == "Envelope":
        header = next((c for c in _elements(root) if _local(c) == "Header"), None)
        body_el = next((c for c in _elements(root) if _local(c) == "Body"), None)
        if body_el is None:
            yield from _context(header)
            return
        body_children = _elements(body_el)
    else:
        body_children = [root]
    op_el = body_children[0] if body_children else None
    yield from _operation(header, op_el, body_children, content_type, soap_action, operation)
    yield from _context(header)
    if op_el is None:
        return
    if _local(op_el) == "RECSANSVITALE":
        yield from _traits(op_el, expected_traits)
    elif _local(op_el) == "RECVITALE":
        yield from _carte_vitale(op_el, expected_traits)
