"""Double of the INSi teleservice (CNAM "Service Identité Certifiée"), for vendors' software to call.

The vendor's software is the client here: it must send SOAP 1.2 calls ``rechercherInsAvecTraitsIdentite``
(body ``RECSANSVITALE``) or ``rechercherInsAvecCarteVitale`` (body ``RECVITALE``) as the INSi WSDL
describes them. The double answers like the qualification service does (``RESULTAT`` with CR 00/01/02
from the bench's test identities) and records every request in a ``TrafficLog``; the bench then judges
the recorded request with the ``insi.request`` check.

The double is deliberately *lenient*: it answers whenever it can find the operation body, even in a
SOAP 1.1 envelope, without contexts or with wrong namespaces, because a strict double would turn one
defect into a cascade of unrelated failures later in the run. Conformance is judged separately.

Pure helpers (``parse_request``, ``match``, ``build_response``, ``build_fault``) carry the logic so
they can be tested without sockets; ``create_insi_app`` only wires them to HTTP.
"""

from __future__ import annotations

import copy
import functools
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

import yaml
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.parsing import InputError, parse_xml
from conformance.simulators.bodies import read_body
from conformance.simulators.traffic import Received, TrafficLog
from conformance.simulators.xmltree import child as _child
from conformance.simulators.xmltree import children as _children
from conformance.simulators.xmltree import local as _local
from conformance.simulators.xmltree import text as _text

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_SIRAM = "urn:siram"

# wsaw:Action / soap12:operation soapAction of the WSDL (DESIR_ICIR_EXP_1.5.0).
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ACTION_CARTE_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"

Operation = Literal["traits", "carte-vitale"]
SoapVersion = Literal["1.2", "1.1"]

# operation -> (body element local name, its namespace, WSDL action)
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "traits": ("RECSANSVITALE", NS_RECSANS, ACTION_TRAITS),
    "carte-vitale": ("RECVITALE", NS_RECVIT, ACTION_CARTE_VITALE),
}
CR_LABELS: dict[str, str] = {
    "00": "OK",
    "01": "Aucune identite trouvee",
    "02": "Plusieurs identites trouvees",
}
OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"

# A traits request is a few kB, 20 kB with an assertion PS: 5 MB is generous and still bounded.
MAX_BODY = 5 * 1024 * 1024
# Beyond the cap the rest of the body is read and dropped so the client can read the 413, up to this.
_DRAIN_LIMIT = 64 * 1024 * 1024
ACTION_ID_HEADER = "X-Segur-Bench-Action"

Identity = dict[str, Any]

_SOAP_CT = {"1.2": "application/soap+xml; charset=utf-8", "1.1": "text/xml; charset=utf-8"}
_ENV_NS = {"1.2": NS_SOAP12, "1.1": NS_SOAP11}


# --------------------------------------------------------------------------------------------------
# Test identities


@functools.lru_cache(maxsize=1)
def _raw_identities() -> tuple[Identity, ...]:
    text = resources.files("conformance").joinpath("data/insi_identities.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, list):
        raise ValueError("insi_identities.yaml must be a list of identities")
    for entry in data:
        _validate_identity(entry)
    return tuple(data)


def _validate_identity(entry: Any) -> None:
    """Fail loudly on a malformed shipped identity: a typo would silently turn a CR 00 into a 01."""
    if not isinstance(entry, dict):
        raise ValueError(f"identity entry is not a mapping: {entry!r}")
    for key in ("key", "birth_name", "given_names", "sex", "birth_date", "cr"):
        if not entry.get(key):
            raise ValueError(f"identity {entry.get('key')!r} lacks {key}")
    matricule = entry.get("matricule")
    if matricule is not None and len(str(matricule)) != 15:
        raise ValueError(f"identity {entry['key']}: matricule must have 15 characters")
    if entry["cr"] not in CR_LABELS:
        raise ValueError(f"identity {entry['key']}: cr must be one of {sorted(CR_LABELS)}")


def load_identities(*, include_known_bad: bool = False) -> list[Identity]:
    """The bench's INSi test identities (a fresh copy: callers may mutate what they get).

    Entries flagged ``known_bad_key`` (published with keys that break the key rule) are left out by
    default so that a conformant vendor never stores an INS the bench itself would call wrong.
    """
    return [copy.deepcopy(e) for e in _raw_identities() if include_known_bad or not e.get("known_bad_key", False)]


def identity_facts(identity: Identity | None) -> dict[str, Any] | None:
    """The identity as recorded in traffic facts: what a vendor must have stored after the call."""
    if identity is None:
        return None
    return {
        "matricule": identity.get("matricule"),
        "oid": identity.get("oid"),
        "birth_name": identity.get("birth_name"),
        "given_names": list(identity.get("given_names") or []),
        "sex": identity.get("sex"),
        "birth_date": identity.get("birth_date"),
        "birth_place": identity.get("birth_place"),
    }


# --------------------------------------------------------------------------------------------------
# Request parsing


@dataclass
class InsiRequest:
    """What the double understood of one request; ``None`` fields were absent or unreadable."""

    soap_version: SoapVersion | None = None
    operation: Operation | None = None
    # wsa:Action header element, else the ``action`` parameter of the content type, else SOAPAction.
    action: str | None = None
    body_element: str | None = None  # Clark name of the first Body child, for diagnostics
    traits: dict[str, Any] = field(default_factory=dict)
    carte_vitale: dict[str, Any] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any] | None] = field(default_factory=lambda: {"lps": None, "bam": None})
    message_id: str | None = None


def content_type_parts(value: str | None) -> tuple[str | None, dict[str, str]]:
    """Media type (lower case) and parameters of a Content-Type header value."""
    if not value:
        return None, {}
    parts = value.split(";")
    media = parts[0].strip().lower() or None
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" in part:
            k, v = part.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"').strip()
    return media, params


def _child_text(el: etree._Element | None, local: str) -> str | None:
    return _text(_child(el, local))


def _matricule(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    num = _child_text(el, "NumIdentifiant") or ""
    cle = _child_text(el, "Cle") or ""
    return (num + cle) or None


def parse_request(body: bytes, content_type: str | None, *, soap_action: str | None = None) -> InsiRequest:
    """Extract the operation, traits, contexts and action of an INSi call, leniently.

    Elements are found by local name whatever their namespace (the check reports namespaces), and a
    bare ``RECSANSVITALE``/``RECVITALE`` document is accepted too. Raises ``InputError`` only when
    the bytes are not safe, well-formed XML.
    """
    root = parse_xml(body, max_bytes=MAX_BODY)
    req = InsiRequest()
    header: etree._Element | None = None
    op_el: etree._Element | None
    if _local(root) == "Envelope":
        ns = etree.QName(root).namespace
        req.soap_version = "1.2" if ns == NS_SOAP12 else "1.1" if ns == NS_SOAP11 else None
        header = _child(root, "Header")
        body_el = _child(root, "Body")
        op_el = next(iter(_children(body_el)), None)
    else:
        op_el = root
    if op_el is not None:
        req.body_element = op_el.tag
        name = _local(op_el)
        if name == "RECSANSVITALE":
            req.operation = "traits"
            prenoms = [t for t in (_text(c) for c in _children(op_el) if _local(c) == "Prenom") if t]
            req.traits = {
                "birth_name": _child_text(op_el, "NomNaissance"),
                "given_name": prenoms[0] if prenoms else None,
                "given_names": prenoms,
                "sex": _child_text(op_el, "Sexe"),
                "birth_date": _child_text(op_el, "DateNaissance"),
                "birth_place": _child_text(op_el, "LieuNaissance"),
            }
        elif name == "RECVITALE":
            req.operation = "carte-vitale"
            req.carte_vitale = {
                "nir": _matricule(_child(op_el, "MatriculeIndividu")),
                "od_nir": _matricule(_child(op_el, "MatriculeOD")),
                "birth_name": _child_text(op_el, "NomNaissance"),
                "birth_date": _child_text(op_el, "DateNaissance"),
                "rang": _child_text(op_el, "RangNaissance"),
            }
    _, params = content_type_parts(content_type)
    header_action = _child_text(header, "Action")
    req.action = header_action or params.get("action") or (soap_action or "").strip().strip('"') or None
    req.message_id = _child_text(header, "MessageID")
    lps = _child(header, "ContexteLPS")
    if lps is not None:
        soft = _child(lps, "LPS")
        idam = _child(soft, "IDAM")
        req.contexts["lps"] = {
            "id": _child_text(lps, "Id"),
            "temps": _child_text(lps, "Temps"),
            "emetteur": _child_text(lps, "Emetteur"),
            "idam": _text(idam),
            "idam_r": idam.get("R") if idam is not None else None,
            "version": _child_text(soft, "Version"),
            "instance": _child_text(soft, "Instance"),
            "nom": _child_text(soft, "Nom"),
            "context_version": lps.get("Version"),
        }
    bam = _child(header, "ContexteBAM")
    if bam is not None:
        req.contexts["bam"] = {
            "id": _child_text(bam, "Id"),
            "temps": _child_text(bam, "Temps"),
            "emetteur": _child_text(bam, "Emetteur"),
            "context_version": bam.get("Version"),
        }
    return req


# --------------------------------------------------------------------------------------------------
# Matching


def normalize_name(value: str | None) -> str:
    """Upper case without diacritics, single spaces: how traits are compared (RNIV writing rules)."""
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.upper().split())


def _same_nir(a: str | None, b: str | None) -> bool:
    """Two NIRs match on their 13 characters (the key is optional in a RECVITALE matricule)."""
    if not a or not b:
        return False
    return a.strip().upper()[:13] == b.strip().upper()[:13]


def _traits_match(traits: dict[str, Any], identity: Identity) -> bool:
    if not traits.get("birth_name") or not traits.get("given_names"):
        return False
    if normalize_name(traits["birth_name"]) != normalize_name(identity.get("birth_name")):
        return False
    given = [normalize_name(g) for g in identity.get("given_names") or []]
    # INSi accepts the first birth given name or the whole list (the README's query forms).
    accepted = {given[0], " ".join(given)} if given else set()
    if not any(normalize_name(p) in accepted for p in traits["given_names"]):
        return False
    if normalize_name(traits.get("sex")) != normalize_name(identity.get("sex")):
        return False
    if (traits.get("birth_date") or "").strip() != identity.get("birth_date"):
        return False
    place = normalize_name(traits.get("birth_place"))
    known = normalize_name(identity.get("birth_place"))
    return not (place and known and place != known)


def _carte_vitale_match(cv: dict[str, Any], identity: Identity) -> bool:
    card = identity.get("carte_vitale") or {}
    nir = card.get("nir")
    if not nir or not (_same_nir(cv.get("nir"), nir) or _same_nir(cv.get("od_nir"), nir)):
        return False
    if cv.get("birth_date") and cv["birth_date"].strip() != identity.get("birth_date"):
        return False
    rang, known = cv.get("rang"), card.get("rang")
    if rang and known is not None:
        try:
            return int(rang) == int(known)
        except ValueError:
            return False
    return True


def match(request: InsiRequest, identities: Iterable[Identity]) -> tuple[str, list[Identity]]:
    """Result code and matching identities, as INSi would answer.

    Traits: birth name + first birth given name (or the whole list) + sex + birth date, and birth
    place when both sides have one; case, accents and spacing are ignored. Carte Vitale: the card's
    individual or ouvrant-droit NIR, then birth date and rank when sent. Entries whose ``cr`` is
    ``02`` stand for homonyms (the answer is 02), ``01`` for people the test base does not know.
    """
    if request.operation == "traits":
        hits = [i for i in identities if _traits_match(request.traits, i)]
    elif request.operation == "carte-vitale":
        hits = [i for i in identities if _carte_vitale_match(request.carte_vitale, i)]
    else:
        return "01", []
    found = [i for i in hits if i.get("cr") == "00"]
    if any(i.get("cr") == "02" for i in hits) or len(found) > 1:
        return "02", found
    if len(found) == 1:
        return "00", found
    return "01", []


# --------------------------------------------------------------------------------------------------
# Answers


def _id_block(matricule: str, oid: str | None) -> str:
    return (
        f"<IdIndividu><NumIdentifiant>{escape(matricule[:13])}</NumIdentifiant>"
        f"<Cle>{escape(matricule[13:])}</Cle></IdIndividu><OID>{escape(oid or OID_INS_NIR)}</OID>"
    )


def _individu(identity: Identity) -> str:
    out = [f"<INDIVIDU><INSACTIF>{_id_block(str(identity['matricule']), identity.get('oid'))}</INSACTIF>"]
    for h in identity.get("history") or []:
        dates = "".join(
            f"<{tag}>{escape(str(h[key]))}</{tag}>"
            for key, tag in (("start", "DateDeb"), ("end", "DateFin"))
            if h.get(key)
        )
        out.append(f"<INSHISTO>{_id_block(str(h['matricule']), h.get('oid'))}{dates}</INSHISTO>")
    tiq = [
        ("NomNaissance", identity.get("birth_name")),
        ("ListePrenom", " ".join(identity.get("given_names") or [])),
        ("Sexe", identity.get("sex")),
        ("DateNaissance", identity.get("birth_date")),
        ("LieuNaissance", identity.get("birth_place")),
    ]
    out.append("<TIQ>" + "".join(f"<{t}>{escape(str(v))}</{t}>" for t, v in tiq if v) + "</TIQ></INDIVIDU>")
    return "".join(out)


def build_response(cr: str, identity: Identity | None = None, *, soap_version: SoapVersion = "1.2") -> bytes:
    """The ``RESULTAT`` envelope, shaped like the qualification service's answers (same prefixes,
    same namespace declarations, TIQ without ``Prenom``), so vendors' parsers meet what they will meet
    in production. ``identity`` is only written for CR 00."""
    env = _ENV_NS[soap_version]
    individu = _individu(identity) if cr == "00" and identity and identity.get("matricule") else ""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{env}"><env:Body xmlns:S="{env}" xmlns:env="{env}">'
        f'<RESULTAT xmlns="{NS_RESULTAT}" xmlns:ns0="{NS_RECVIT}" xmlns:ns1="{NS_RECSANS}">'
        f"<CR><CodeCR>{escape(cr)}</CodeCR><LibelleCR>{escape(CR_LABELS.get(cr, ''))}</LibelleCR></CR>"
        f"{individu}</RESULTAT></env:Body></soap:Envelope>"
    )
    return xml.encode("utf-8")


def build_fault(
    code: str,
    text: str,
    *,
    detail_code: str | None = None,
    detail_text: str | None = None,
    message_id: str | None = None,
    receiver: bool = False,
    soap_version: SoapVersion = "1.2",
) -> bytes:
    """A SOAP fault shaped like INSi's SIRAM faults (subcode ``code``, detail ``siram:Erreur``).

    The bench's own faults use the ``INPUT.*`` / ``INS.INSI.*`` rule id as ``code`` so that a vendor
    reading the fault sees which rule its request broke.
    """
    who = "Receiver" if receiver else "Sender"
    mid = f" messageID={quoteattr(message_id)}" if message_id else ""
    detail = (
        f'<siram:Erreur code={quoteattr(detail_code or code)}{mid} severite="erreur"'
        f' xmlns:siram="{NS_SIRAM}">{escape(detail_text or text)}</siram:Erreur>'
    )
    if soap_version == "1.1":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<soap:Envelope xmlns:soap="{NS_SOAP11}"><soap:Body><soap:Fault>'
            f"<faultcode>soap:{'Server' if receiver else 'Client'}</faultcode>"
            f"<faultstring>{escape(text)}</faultstring><detail>{detail}</detail>"
            "</soap:Fault></soap:Body></soap:Envelope>"
        )
    else:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<soap:Envelope xmlns:soap="{NS_SOAP12}"><env:Body xmlns:env="{NS_SOAP12}"><soap:Fault>'
            f"<soap:Code><soap:Value>soap:{who}</soap:Value>"
            f"<soap:Subcode><soap:Value>soap:{escape(code)}</soap:Value></soap:Subcode></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="fr">{escape(text)}</soap:Text></soap:Reason>'
            f"<soap:Detail>{detail}</soap:Detail></soap:Fault></env:Body></soap:Envelope>"
        )
    return xml.encode("utf-8")


# --------------------------------------------------------------------------------------------------
# HTTP app


def _request_facts(req: InsiRequest | None) -> dict[str, Any]:
    if req is None:
        keys = ("operation", "soap_version", "action", "traits", "carte_vitale", "contexts", "message_id")
        return dict.fromkeys(keys)
    return {
        "operation": req.operation,
        "soap_version": req.soap_version,
        "action": req.action,
        "traits": dict(req.traits) if req.operation == "traits" else None,
        "carte_vitale": dict(req.carte_vitale) if req.operation == "carte-vitale" else None,
        "contexts": copy.deepcopy(req.contexts),
        "message_id": req.message_id,
    }


def _error_facts(rule: str, message: str, req: InsiRequest | None = None) -> dict[str, Any]:
    """Facts of a request the double refused: no CR, no identity, and why."""
    return _request_facts(req) | {"cr": None, "identity": None, "error": {"rule": rule, "message": message}}


_Answer = tuple[int, bytes, str, dict[str, Any]]  # status, body, content type, facts


def _handle(body: bytes, headers: dict[str, str], identities: Sequence[Identity]) -> _Answer:
    """Answer one POSTed body. Never raises on any input (hostile bytes become a fault)."""
    low = {k.lower(): v for k, v in headers.items()}
    try:
        req = parse_request(body, low.get("content-type"), soap_action=low.get("soapaction"))
    except InputError as exc:
        fault = build_fault(exc.rule, f"Requête illisible : {exc.message}")
        return 500, fault, _SOAP_CT["1.2"], _error_facts(exc.rule, exc.message)
    version: SoapVersion = req.soap_version or "1.2"
    if req.operation is None:
        message = "Aucune opération INSi reconnue : le corps SOAP doit contenir RECSANSVITALE ou RECVITALE."
        fault = build_fault("INS.INSI.OPERATION", message, message_id=req.message_id, soap_version=version)
        return 500, fault, _SOAP_CT[version], _error_facts("INS.INSI.OPERATION", message, req)
    cr, found = match(req, identities)
    identity = found[0] if cr == "00" else None
    facts = _request_facts(req) | {"cr": cr, "identity": identity_facts(identity), "error": None}
    return 200, build_response(cr, identity, soap_version=version), _SOAP_CT[version], facts


def _answer_post(
    body: bytes, too_large: bool, headers: dict[str, str], identities: Sequence[Identity], max_body: int
) -> _Answer:
    if too_large:
        message = f"Requête de plus de {max_body} octets refusée."
        return (
            413,
            build_fault("INPUT.TOO-LARGE", message),
            _SOAP_CT["1.2"],
            _error_facts("INPUT.TOO-LARGE", message),
        )
    try:
        return _handle(body, headers, identities)
    except Exception as exc:  # a bug in the double must neither kill the server nor lose the record
        message = f"Erreur interne du simulateur INSi : {type(exc).__name__}"
        fault = build_fault("SIMULATOR", message, receiver=True)
        return 500, fault, _SOAP_CT["1.2"], _error_facts("SIMULATOR", message)


def create_insi_app(
    traffic: TrafficLog, identities: Iterable[Identity] | None = None, *, max_body: int = MAX_BODY
) -> Starlette:
    """ASGI app of the INSi double: POST anywhere (vendors configure the URL; the WSDL's is ``/lps``).

    Every request, GETs and hostile ones included, is recorded in ``traffic`` as ``service="insi"``
    with the answer given and ``facts`` (operation, soap_version, action, traits, carte_vitale,
    contexts, cr, identity, action_id, message_id, error), so a waiting scenario step can correlate
    and judge it.
    """
    known: list[Identity] = load_identities() if identities is None else list(identities)

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        received_at = time.time()
        headers = dict(request.headers)
        body = b""
        extra: dict[str, str] = {}
        if request.method != "POST":
            message = f"INSi double: {request.method} is not supported, POST a SOAP 1.2 request.\n"
            status, content, ctype = 405, message.encode(), "text/plain; charset=utf-8"
            facts = _error_facts("HTTP.METHOD", message.strip())
            extra["Allow"] = "POST"
        else:
            body, too_large, disconnected = await read_body(request, max_body, _DRAIN_LIMIT)
            if disconnected:
                status, content, ctype = 400, b"", "text/plain; charset=utf-8"
                facts = _error_facts("INPUT.TRUNCATED", "the client went away before the end of the body")
            else:
                status, content, ctype, facts = _answer_post(body, too_large, headers, known, max_body)
        facts["action_id"] = request.headers.get(ACTION_ID_HEADER)
        response_headers = {"Content-Type": ctype, **extra}
        traffic.add(
            Received(
                service="insi",
                method=request.method,
                path=request.url.path,
                headers=headers,
                body=body,
                received_at=received_at,
                client=f"{request.client.host}:{request.client.port}" if request.client else None,
                query=request.url.query,
                response_status=status,
                response_headers=dict(response_headers),
                response_body=content,
                duration_ms=(time.monotonic() - started) * 1000,
                facts=facts,
            )
        )
        return Response(content, status_code=status, headers=response_headers)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
