"""Client side of INSi for the reference vendor: build the SOAP calls, read the answers.

The reference vendor plays a conformant DPI/LGC calling INSi; it builds its requests here so that the
bench's own notion of a conformant call lives in one place next to the double. Flags inject the
defects the bench must detect (SOAP 1.1, no contexts, no or wrong action), one at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from conformance.parsing import InputError, parse_xml
from conformance.simulators.insi import (
    ACTION_CARTE_VITALE,
    ACTION_ID_HEADER,
    ACTION_TRAITS,
    NS_CTXBAM,
    NS_CTXLPS,
    NS_RECSANS,
    NS_RECVIT,
    NS_RESULTAT,
    NS_SOAP11,
    NS_SOAP12,
    NS_WSA,
    SoapVersion,
)

_DEFAULT = object()


def _el(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _contexts(lps: Mapping[str, Any]) -> str:
    """ContexteBAM + ContexteLPS as in the INSi fixtures (XSD CTXBAM 01_02 / CTXLPS 01_00)."""
    emitter = lps.get("emitter")
    temps = _now()
    bam = (
        '<ctxbam:ContexteBAM Version="01_02">'
        f"{_el('ctxbam:Id', uuid.uuid4())}{_el('ctxbam:Temps', temps)}"
        f"{_el('ctxbam:Emetteur', emitter) if emitter else ''}"
        "<ctxbam:COUVERTURE></ctxbam:COUVERTURE></ctxbam:ContexteBAM>"
    )
    soft = ""
    if lps.get("idam") is not None:
        r_attr = quoteattr(str(lps.get("idam_r", "4")))
        soft += f"<ctxlps:IDAM R={r_attr}>{escape(str(lps['idam']))}</ctxlps:IDAM>"
    for key, tag in (("version", "Version"), ("instance", "Instance"), ("name", "Nom")):
        if lps.get(key) is not None:
            soft += _el(f"ctxlps:{tag}", lps[key])
    ctx = (
        '<ctxlps:ContexteLPS Nature="CTXLPS" Version="01_00">'
        f"{_el('ctxlps:Id', uuid.uuid4())}{_el('ctxlps:Temps', temps)}"
        f"{_el('ctxlps:Emetteur', emitter) if emitter else ''}"
        f"<ctxlps:LPS>{soft}</ctxlps:LPS></ctxlps:ContexteLPS>"
    )
    return bam + ctx


def _envelope(
    body: str,
    default_action: str,
    *,
    lps: Mapping[str, Any],
    soap_version: SoapVersion,
    include_contexts: bool,
    action: Any,
    action_id: str | None,
    message_id: str | None,
) -> tuple[bytes, dict[str, str]]:
    act: str | None = default_action if action is _DEFAULT else action
    env_ns = NS_SOAP12 if soap_version == "1.2" else NS_SOAP11
    mid = message_id or f"uuid:{uuid.uuid4()}"
    header = _contexts(lps) if include_contexts else ""
    if act:
        header += f'<wsa:Action xmlns:wsa="{NS_WSA}">{escape(act)}</wsa:Action>'
    header += f'<wsa:MessageID xmlns:wsa="{NS_WSA}">{escape(mid)}</wsa:MessageID>'
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{env_ns}" xmlns:ctxbam="{NS_CTXBAM}" xmlns:ctxlps="{NS_CTXLPS}">'
        f"<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
    headers: dict[str, str] = {}
    if soap_version == "1.2":
        headers["Content-Type"] = "application/soap+xml; charset=utf-8" + (f'; action="{act}"' if act else "")
    else:
        headers["Content-Type"] = "text/xml; charset=utf-8"
        headers["SOAPAction"] = f'"{act}"' if act else '""'
    if action_id:
        headers[ACTION_ID_HEADER] = action_id
    return xml.encode("utf-8"), headers


def build_traits_request(
    traits: Mapping[str, Any],
    *,
    lps: Mapping[str, Any],
    soap_version: SoapVersion = "1.2",
    include_contexts: bool = True,
    action_id: str | None = None,
    action: Any = _DEFAULT,
    message_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """``rechercherInsAvecTraitsIdentite`` call: (body, HTTP headers to send with it).

    ``traits`` uses the driver API keys: ``birth_name``, ``first_given_name`` (else the first of
    ``given_names``), ``sex``, ``birth_date``, optional ``birth_place``. ``lps`` describes the
    software: ``idam`` (+ ``idam_r``, default "4"), ``version``, ``instance``, ``name``, ``emitter``.
    Defect injection: ``soap_version="1.1"``, ``include_contexts=False``, ``action=None`` (no action)
    or ``action="..."`` (wrong action).
    """
    given = traits.get("first_given_name") or (list(traits.get("given_names") or []) or [None])[0]
    parts = [
        ("NomNaissance", traits.get("birth_name")),
        ("Prenom", given),
        ("Sexe", traits.get("sex")),
        ("DateNaissance", traits.get("birth_date")),
        ("LieuNaissance", traits.get("birth_place")),
    ]
    inner = "".join(_el(f"rs:{tag}", v) for tag, v in parts if v)
    body = f'<rs:RECSANSVITALE xmlns:rs="{NS_RECSANS}">{inner}</rs:RECSANSVITALE>'
    return _envelope(
        body,
        ACTION_TRAITS,
        lps=lps,
        soap_version=soap_version,
        include_contexts=include_contexts,
        action=action,
        action_id=action_id,
        message_id=message_id,
    )


def _matricule_xml(tag: str, nir: str | None) -> str:
    if not nir:
        return ""
    nir = nir.strip()
    key = _el("rv:Cle", nir[13:]) if len(nir) > 13 else ""
    return f"<rv:{tag}>{_el('rv:NumIdentifiant', nir[:13])}{key}</rv:{tag}>"


def build_carte_vitale_request(
    carte_vitale: Mapping[str, Any],
    *,
    lps: Mapping[str, Any],
    soap_version: SoapVersion = "1.2",
    include_contexts: bool = True,
    action_id: str | None = None,
    action: Any = _DEFAULT,
    message_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """``rechercherInsAvecCarteVitale`` call from what the card holds: ``nir`` (the individual's, 13
    or 15 characters), ``od_nir`` (ouvrant droit), ``birth_date``, ``rang``, ``birth_name``.
    Same defect flags as ``build_traits_request``."""
    inner = (
        _matricule_xml("MatriculeIndividu", carte_vitale.get("nir"))
        + _matricule_xml("MatriculeOD", carte_vitale.get("od_nir"))
        + "".join(
            _el(f"rv:{tag}", carte_vitale[key])
            for key, tag in (
                ("birth_name", "NomNaissance"),
                ("birth_date", "DateNaissance"),
                ("rang", "RangNaissance"),
            )
            if carte_vitale.get(key) is not None
        )
    )
    body = f'<rv:RECVITALE xmlns:rv="{NS_RECVIT}">{inner}</rv:RECVITALE>'
    return _envelope(
        body,
        ACTION_CARTE_VITALE,
        lps=lps,
        soap_version=soap_version,
        include_contexts=include_contexts,
        action=action,
        action_id=action_id,
        message_id=message_id,
    )


def _find(el: etree._Element | None, local: str) -> etree._Element | None:
    if el is None:
        return None
    return next((c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == local), None)


def _text(el: etree._Element | None, *path: str) -> str | None:
    for local in path:
        el = _find(el, local)
    if el is None:
        return None
    return "".join(el.itertext()).strip() or None


def _ins(el: etree._Element) -> dict[str, Any]:
    out: dict[str, Any] = {
        "matricule": (_text(el, "IdIndividu", "NumIdentifiant") or "") + (_text(el, "IdIndividu", "Cle") or ""),
        "oid": _text(el, "OID"),
    }
    for key, tag in (("start", "DateDeb"), ("end", "DateFin")):
        if (value := _text(el, tag)) is not None:
            out[key] = value
    return out


def parse_response(data: bytes) -> dict[str, Any]:
    """Read an INSi answer: ``{"cr", "label", "identity", "fault"}``.

    ``identity`` (CR 00 only) = ``matricule`` (15 characters), ``oid``, ``birth_name``,
    ``given_names`` (list), ``first_given_name``, ``sex``, ``birth_date``, ``birth_place``,
    ``history`` (list of ``{matricule, oid, start?, end?}``). A SOAP fault gives ``cr: None`` and
    ``fault: {"code", "subcode", "reason", "detail_code", "detail"}``. Raises ``InputError`` when the
    bytes are not XML, or are XML but neither a RESULTAT nor a fault.
    """
    root = parse_xml(data)
    body = _find(root, "Body") if etree.QName(root).localname == "Envelope" else None
    first = next((c for c in (body if body is not None else []) if isinstance(c.tag, str)), None)
    if first is None and etree.QName(root).localname == "RESULTAT":
        first = root
    if first is not None and etree.QName(first).localname == "Fault":
        detail = _find(first, "Detail")
        erreur = _find(detail if detail is not None else _find(first, "detail"), "Erreur")
        return {
            "cr": None,
            "label": None,
            "identity": None,
            "fault": {
                "code": _text(first, "Code", "Value") or _text(first, "faultcode"),
                "subcode": _text(first, "Code", "Subcode", "Value"),
                "reason": _text(first, "Reason", "Text") or _text(first, "faultstring"),
                "detail_code": erreur.get("code") if erreur is not None else None,
                "detail": _text(erreur) if erreur is not None else None,
            },
        }
    if first is None or etree.QName(first).localname != "RESULTAT" or etree.QName(first).namespace != NS_RESULTAT:
        raise InputError("INPUT.SOAP", "neither an INSi RESULTAT nor a SOAP fault")
    cr = _text(first, "CR", "CodeCR")
    identity = None
    individu = _find(first, "INDIVIDU")
    if individu is not None:
        tiq = _find(individu, "TIQ")
        given = (_text(tiq, "ListePrenom") or "").split()
        actif = _find(individu, "INSACTIF")
        identity = {
            **(_ins(actif) if actif is not None else {"matricule": None, "oid": None}),
            "birth_name": _text(tiq, "NomNaissance"),
            "given_names": given,
            "first_given_name": _text(tiq, "Prenom") or (given[0] if given else None),
            "sex": _text(tiq, "Sexe"),
            "birth_date": _text(tiq, "DateNaissance"),
            "birth_place": _text(tiq, "LieuNaissance"),
            "history": [_ins(h) for h in individu if isinstance(h.tag, str) and etree.QName(h).localname == "INSHISTO"],
        }
    return {"cr": cr, "label": _text(first, "CR", "LibelleCR"), "identity": identity, "fault": None}
