"""Builder of VIHF tokens: the DMP's SAML 2.0 assertion carried in the SOAP header's ``wsse:Security``.

The reference vendor builds its token here (and its faults derive from it through ``omit`` and
``overrides``); the check :mod:`conformance.checks.vihf` judges what vendors send.  Both share the
constants below so that the builder and the judge cannot drift apart.

Where the facts come from (all public; no official DMP sample token exists, see ../shared/data/vihf):
- attribute names: the enumeration of ``Attribute/@Name`` in the XSDs the Pro Santé Connect team
  generated from a sample VIHF (``generateVIHF.xsd``, ``assertion.xsd``) — note the spelling
  ``Authentification_mode`` there; ANS's later HL7v2→VIHF mapping writes ``Authentification_Mode``,
  so the check accepts both and the builder uses the schema's;
- value formats: ``hl7:Role`` / ``hl7:PurposeOfUse`` coded values (``xsi:type="CE"``, code,
  codeSystem, displayName) from ``generateVIHF1.xsd``; ``Secteur_Activite`` as ``code^OID`` and the
  role value set JDV_J65 (OID 1.2.250.1.213.1.1.5.5) as in PSC UserInfo and NOS; ``resource-id`` as
  an HL7 CX ``matricule^^^&OID&ISO``; ``VIHF_Version`` ``3.0`` (DESIGN.md; PSC's builder uses 3.0,
  ANS's newest mapping already says 4.0);
- ``Subject/NameID`` carries the user's national identifier (SC.DMP/AIRS.06: RPPS/ADELI, not generic)
  and the ``subject-id`` attribute the user's name, as the CI-SIS mapping states;
- ``Issuer`` is the DN of the signing certificate, format X509SubjectName.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from cryptography import x509
from lxml import etree

from conformance.xmldsig import NS_DS, sign_enveloped

NS_SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_HL7 = "urn:hl7-org:v3"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"

NAMESPACES: dict[str, str] = {
    "soap": NS_SOAP12,
    "wsse": NS_WSSE,
    "saml2": NS_SAML2,
    "ds": NS_DS,
    "hl7": NS_HL7,
    "xsi": NS_XSI,
}

VIHF_VERSION = "3.0"
ISSUER_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
NAMEID_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
AUTHN_CONTEXT_DEFAULT = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"

# Attribute names.
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
IDENTIFIANT_STRUCTURE = "Identifiant_Structure"
SECTEUR_ACTIVITE = "Secteur_Activite"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
VIHF_VERSION_ATTR = "VIHF_Version"
AUTHENTIFICATION_MODE = "Authentification_mode"
AUTHENTIFICATION_MODE_ALIASES = ("Authentification_mode", "Authentification_Mode")
LPS_NOM = "LPS_Nom"
LPS_VERSION = "LPS_Version"
LPS_ID_HOMOLOGATION_DMP = "LPS_ID_HOMOLOGATION_DMP"
LPS_ID = "LPS_ID"
RESSOURCE_URN = "Ressource_URN"
RESSOURCE_URN_DMP = "urn:dmp"

REQUIRED_ATTRIBUTES: tuple[str, ...] = (
    SUBJECT_ID,
    ROLE,
    IDENTIFIANT_STRUCTURE,
    SECTEUR_ACTIVITE,
    RESOURCE_ID,
    PURPOSE_OF_USE,
    VIHF_VERSION_ATTR,
    AUTHENTIFICATION_MODE,
    LPS_NOM,
    LPS_VERSION,
    LPS_ID_HOMOLOGATION_DMP,
)
"""Attributes a DMP VIHF must carry (``Ressource_URN`` and ``LPS_ID`` are optional)."""

# Short keys accepted by ``omit`` / ``overrides`` besides the full attribute names.
KEYS: dict[str, str] = {
    "subject-id": SUBJECT_ID,
    "role": ROLE,
    "structure": IDENTIFIANT_STRUCTURE,
    "secteur": SECTEUR_ACTIVITE,
    "resource-id": RESOURCE_ID,
    "ins": RESOURCE_ID,
    "purposeofuse": PURPOSE_OF_USE,
    "version": VIHF_VERSION_ATTR,
    "authentification-mode": AUTHENTIFICATION_MODE,
    "Authentification_Mode": AUTHENTIFICATION_MODE,
    "lps-nom": LPS_NOM,
    "lps-version": LPS_VERSION,
    "lps-homologation": LPS_ID_HOMOLOGATION_DMP,
    "ressource-urn": RESSOURCE_URN,
}
STRUCTURAL = frozenset({"Issuer", "Signature", "Subject", "NameID", "Conditions", "AuthnStatement", "ID"})

# Code systems.
OID_PURPOSE_OF_USE = "1.2.250.1.213.1.1.4.248"
"""'mode acces VIHF' code system of PurposeOfUse."""
OID_SECTEUR_ACTIVITE = "1.2.250.1.71.4.2.4"
"""TRE_R02 SecteurActivite (codes SA01…)."""
OID_PRODUCTEUR_NON_PS = "1.2.250.1.213.1.1.4.6"
"""TRE_A00 ProducteurDocNonPS (also roles AUTOMATE, DISPOSITIF … in JDV_J65)."""
OID_PROFESSION = "1.2.250.1.71.1.2.7"
"""TRE_G15 ProfessionSante (role code 10 = Médecin)."""
OID_INS_NIR = "1.2.250.1.213.1.4.8"

PURPOSE_DISPLAY: dict[str, str] = {"normal": "Accès normal"}


def _s(tag: str) -> str:
    return f"{{{NS_SAML2}}}{tag}"


def _key(name: str) -> str:
    return KEYS.get(name, name)


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Code = tuple[str, str] | tuple[str, str, str]


def _code(value: str | Sequence[str], default_system: str | None = None) -> tuple[str, str, str | None]:
    """``"10^1.2.250.1.71.1.2.7"`` / ``("10", "1.2.250.1.71.1.2.7"[, "Médecin"])`` → (code, system, display)."""
    if isinstance(value, str):
        code, _, system = value.partition("^")
        return code, system or (default_system or ""), None
    items = list(value)
    return items[0], items[1] if len(items) > 1 else (default_system or ""), items[2] if len(items) > 2 else None


def ins_cx(ins: str, oid: str = OID_INS_NIR) -> str:
    """An INS matricule in HL7 CX form (``matricule^^^&OID&ISO``); values already in CX form pass through."""
    return ins if "^" in ins else f"{ins}^^^&{oid}&ISO"


def _coded_value(
    parent: etree._Element, local: str, code: str, system: str, display: str | None, system_name: str | None
) -> None:
    value = etree.SubElement(parent, _s("AttributeValue"))
    el = etree.SubElement(value, f"{{{NS_HL7}}}{local}", nsmap={None: NS_HL7, "xsi": NS_XSI})
    el.set(f"{{{NS_XSI}}}type", "CE")
    el.set("code", code)
    el.set("codeSystem", system)
    if system_name:
        el.set("codeSystemName", system_name)
    if display:
        el.set("displayName", display)


def build_vihf(
    *,
    subject_id: str,
    role: str | Code | Sequence[str | Code],
    structure_id: str,
    secteur_activite: str,
    ins: str,
    purposeofuse: str | Code = "normal",
    lps_nom: str,
    lps_version: str,
    lps_homologation: str,
    signing_cert_pem: bytes | str,
    signing_key_pem: bytes | str,
    issuer: str | None = None,
    not_before: dt.datetime | None = None,
    not_on_or_after: dt.datetime | None = None,
    subject_name: str | None = None,
    authentification_mode: str = "INDIRECTE",
    authn_context: str = AUTHN_CONTEXT_DEFAULT,
    lps_id: str | None = None,
    ressource_urn: str | None = RESSOURCE_URN_DMP,
    issue_instant: dt.datetime | None = None,
    assertion_id: str | None = None,
    omit: Collection[str] = frozenset(),
    overrides: Mapping[str, Any] | None = None,
) -> etree._Element:
    """Build and sign a VIHF ``saml2:Assertion`` (SAML 2.0, VIHF 3.0); returns the element.

    ``subject_id`` is the user's national identifier (``Subject/NameID``, e.g. ``8`` + RPPS);
    ``subject_name`` the ``subject-id`` attribute (user's name; defaults to ``subject_id``).
    ``role``: one code or a list (1st: profession, 2nd: specialty for doctors/pharmacists), each as
    ``"code^OID"`` or a tuple.  ``ins``: matricule (wrapped as CX under the INS-NIR OID) or CX.
    ``issuer`` defaults to the signing certificate's DN; ``not_before``/``not_on_or_after`` to
    now − 1 min / now + 1 h (the Conditions element).

    Fault injection for the reference vendor and tests: ``omit`` drops attributes (full name or short
    key such as ``"role"``, ``"version"``) or parts (``Issuer``, ``Subject``, ``Conditions``,
    ``AuthnStatement``, ``Signature``); ``overrides`` replaces attribute text values (a string) or,
    for ``Version``/``IssueInstant``/``ID``, assertion attributes — all *before* signing, so the token
    stays validly signed and only the overridden rule breaks.
    """
    omit = {_key(o) for o in omit}
    over = {_key(k): v for k, v in (overrides or {}).items()}
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issue_instant = issue_instant or now
    cert_data = signing_cert_pem.encode("ascii") if isinstance(signing_cert_pem, str) else signing_cert_pem
    cert = x509.load_pem_x509_certificate(cert_data)

    assertion = etree.Element(_s("Assertion"), nsmap={"saml2": NS_SAML2})
    assertion.set("ID", str(over.get("ID", assertion_id or f"_{uuid.uuid4()}")))
    assertion.set("IssueInstant", str(over.get("IssueInstant", _utc(issue_instant))))
    assertion.set("Version", str(over.get("Version", "2.0")))

    if "Issuer" not in omit:
        iss = etree.SubElement(assertion, _s("Issuer"), Format=ISSUER_FORMAT)
        iss.text = issuer if issuer is not None else cert.subject.rfc4514_string()
    if "Subject" not in omit and "NameID" not in omit:
        subject = etree.SubElement(assertion, _s("Subject"))
        etree.SubElement(subject, _s("NameID"), Format=NAMEID_FORMAT).text = str(over.get("NameID", subject_id))
    if "Conditions" not in omit:
        etree.SubElement(
            assertion,
            _s("Conditions"),
            NotBefore=_utc(not_before or now - dt.timedelta(minutes=1)),
            NotOnOrAfter=_utc(not_on_or_after or now + dt.timedelta(hours=1)),
        )
    if "AuthnStatement" not in omit:
        authn = etree.SubElement(assertion, _s("AuthnStatement"), AuthnInstant=_utc(issue_instant))
        ctx = etree.SubElement(authn, _s("AuthnContext"))
        etree.SubElement(ctx, _s("AuthnContextClassRef")).text = authn_context

    statement = etree.SubElement(assertion, _s("AttributeStatement"))

    def text_attr(name: str, value: str | None) -> None:
        if name in omit or (value is None and name not in over):
            return
        attr = etree.SubElement(statement, _s("Attribute"), Name=name)
        etree.SubElement(attr, _s("AttributeValue")).text = str(over.get(name, value))

    def coded_attr(name: str, local: str, values: list[tuple[str, str, str | None]], system_name: str | None) -> None:
        if name in omit:
            return
        attr = etree.SubElement(statement, _s("Attribute"), Name=name)
        if name in over:
            values = [_code(v) for v in (over[name] if isinstance(over[name], list) else [over[name]])]
        for code, system, display in values:
            _coded_value(attr, local, code, system, display, system_name)

    roles_in: list[str | Code]
    if isinstance(role, str) or (isinstance(role, tuple) and role and isinstance(role[0], str)):
        roles_in = [role]
    else:
        roles_in = list(role)
    purpose = _code(purposeofuse, OID_PURPOSE_OF_USE)
    secteur = secteur_activite if "^" in secteur_activite else f"{secteur_activite}^{OID_SECTEUR_ACTIVITE}"

    text_attr(SUBJECT_ID, subject_name or subject_id)
    coded_attr(ROLE, "Role", [_code(r) for r in roles_in], None)
    text_attr(IDENTIFIANT_STRUCTURE, structure_id)
    text_attr(SECTEUR_ACTIVITE, secteur)
    text_attr(RESOURCE_ID, ins_cx(ins))
    text_attr(RESSOURCE_URN, ressource_urn)
    coded_attr(
        PURPOSE_OF_USE,
        "PurposeOfUse",
        [(purpose[0], purpose[1], purpose[2] or PURPOSE_DISPLAY.get(purpose[0]))],
        "mode acces VIHF 2.0",
    )
    text_attr(VIHF_VERSION_ATTR, VIHF_VERSION)
    text_attr(AUTHENTIFICATION_MODE, authentification_mode)
    text_attr(LPS_ID, lps_id)
    text_attr(LPS_NOM, lps_nom)
    text_attr(LPS_VERSION, lps_version)
    text_attr(LPS_ID_HOMOLOGATION_DMP, lps_homologation)

    if "Signature" not in omit:
        # SAML schema order: Issuer, then ds:Signature.
        sign_enveloped(
            assertion,
            key_pem=signing_key_pem,
            cert_pem=cert_data,
            position=1 if "Issuer" not in omit else 0,
        )
    return assertion


def wrap_in_security(assertion: etree._Element) -> etree._Element:
    """A ``wsse:Security`` header block carrying ``assertion`` (moved into it, signature intact:
    exclusive c14n does not depend on the new ancestors)."""
    security = etree.Element(f"{{{NS_WSSE}}}Security", nsmap={"wsse": NS_WSSE})
    security.append(assertion)
    return security


def soap_envelope(
    security: etree._Element, body: etree._Element | None = None, *, soap12: bool = True
) -> etree._Element:
    """A SOAP envelope with ``security`` in its header (tests, simulators)."""
    ns = NS_SOAP12 if soap12 else NS_SOAP11
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns})
    header = etree.SubElement(env, f"{{{ns}}}Header")
    header.append(security)
    body_el = etree.SubElement(env, f"{{{ns}}}Body")
    if body is not None:
        body_el.append(body)
    return env


def to_bytes(el: etree._Element) -> bytes:
    """Serialise as sent on the wire (UTF-8, XML declaration, no pretty-printing: whitespace is signed)."""
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8")
