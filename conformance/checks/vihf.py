"""Check of the VIHF token (DMP SAML 2.0 assertion in WS-Security) a vendor's software sends the DMP.

One defect, one rule: attribute presence and formats belong to ``VIHF.ATTRIBUTES`` except the
version (``VIHF.VERSION``) and the patient match (``VIHF.RESOURCE``, only when the scenario names
the expected INS); the time window is ``VIHF.VALIDITY``; the XML signature math and its resistance to
wrapping are ``VIHF.SIGNATURE``; whether the signing certificate chains to the bench's test PKI is
``VIHF.TRUST``.  So a tampered attribute fails the signature only, an expired token the validity
only, a certificate from another CA the trust only.

Locations are XPath expressions with the prefixes ``soap`` (SOAP 1.1 or 1.2 envelope), ``wsse``,
``saml2``, ``ds``, ``hl7``, computed on the artefact's real tree.  Facts and their sources are
listed in :mod:`conformance.vihf`; where the public material is silent (exact code lists of
``Authentification_mode`` and purpose-of-use modes) an unknown value is a warning, not an error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from lxml import etree

from conformance import vihf as V
from conformance.checks.ins import INS_OIDS, key_is_valid, matricule_problem
from conformance.checks.registry import check
from conformance.model import Finding, Severity
from conformance.parsing import InputError, parse_xml
from conformance.pki import PkiError, chain_problem, load_certificates
from conformance.xmldsig import verify_enveloped

RULES: dict[str, str] = {
    "VIHF.PRESENT": "Jeton VIHF (saml2:Assertion) présent dans l'en-tête WS-Security (wsse:Security)",
    "VIHF.ATTRIBUTES": "Attributs VIHF requis présents et bien formés (sujet, rôle, structure, secteur, INS, "
    "mode d'accès, mode d'authentification, LPS)",
    "VIHF.VERSION": "VIHF_Version 3.0 dans une assertion SAML 2.0",
    "VIHF.VALIDITY": "Fenêtre de validité (Conditions NotBefore/NotOnOrAfter) et IssueInstant cohérents avec l'heure",
    "VIHF.SIGNATURE": "Signature XML-DSig enveloppée de l'assertion valide (c14n exclusive, référence à l'assertion, "
    "sans enveloppement)",
    "VIHF.TRUST": "Certificat de signature émis par l'autorité de confiance (IGC-Santé ; PKI de test du banc)",
    "VIHF.RESOURCE": "resource-id = INS du patient concerné",
}

_PREFIX_OF: dict[str, str] = {
    V.NS_SOAP12: "soap",
    V.NS_SOAP11: "soap",
    V.NS_WSSE: "wsse",
    V.NS_SAML2: "saml2",
    V.NS_DS: "ds",
    V.NS_HL7: "hl7",
}
_SOAP_NS = (V.NS_SOAP12, V.NS_SOAP11)

DEFAULT_SKEW = 120.0
"""Seconds of clock difference tolerated between the vendor's machine and the bench."""

# Code systems of JDV_J65 SubjectRole-DMP (OID 1.2.250.1.213.1.1.5.5), from the NOS file.
J65_CODE_SYSTEMS: frozenset[str] = frozenset(
    {
        "1.2.250.1.213.1.1.4.6",  # TRE_A00 ProducteurDocNonPS (AUTOMATE, DISPOSITIF …)
        "1.2.250.1.213.1.6.1.107",
        "1.2.250.1.213.1.6.1.109",
        "1.2.250.1.213.1.6.1.140",
        "1.2.250.1.213.1.6.1.17",
        "1.2.250.1.213.1.6.1.19",
        "1.2.250.1.213.1.6.1.4",
        "1.2.250.1.71.1.2.7",  # TRE_G15 ProfessionSante
        "1.2.250.1.71.1.2.8",  # TRE_G16 ProfessionFormation
        "1.2.250.1.71.4.2.5",  # TRE_R01 EnsembleSavoirFaire
        "1.2.250.1.71.4.2.6",
    }
)
KNOWN_PURPOSES = frozenset({"normal", "BRIS_DE_GLACE", "CENTRE_15"})
KNOWN_AUTH_MODES = frozenset({"DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE", "AIR", "DELEGUEE"})

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_CX = re.compile(r"^(?P<id>[^^&]*)\^\^\^&(?P<oid>[^&^]*)&ISO(\^NH)?$")
_SECTEUR = re.compile(r"^(?P<code>[A-Za-z0-9_]+)\^(?P<oid>[0-9.]+)$")
_NATIONAL_ID = re.compile(r"^[0-9][0-9A-Za-z/]{5,63}$")
_STRUCTURE = {
    # FINESS: 9 characters; test structures of the ANS (e.g. 10B0156832) carry letters.
    "1": re.compile(r"^1[0-9A-Z]{9}$"),
    "2": re.compile(r"^2[0-9]{9}$"),  # SIREN
    "3": re.compile(r"^3[0-9]{14}$"),  # SIRET
}
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_TEXT = 256


# ---------------------------------------------------------------- helpers
def _f(rule: str, message: str, location: str | None, severity: Severity = "error") -> Finding:
    return Finding(rule, severity, message, location)


def _xpath(el: etree._Element) -> str:
    """XPath of ``el`` in its tree with the module's prefixes and positions where siblings repeat."""
    parts: list[str] = []
    cur: etree._Element | None = el
    while cur is not None:
        q = etree.QName(cur)
        name = (
            f"{_PREFIX_OF[q.namespace]}:{q.localname}"
            if q.namespace in _PREFIX_OF
            else (q.localname if q.namespace is None else f"*[local-name()='{q.localname}']")
        )
        parent = cur.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == cur.tag]
            if len(same) > 1:
                name += f"[{same.index(cur) + 1}]"
        parts.append(name)
        cur = parent
    return "/" + "/".join(reversed(parts))


def _children(el: etree._Element, ns: str, local: str) -> list[etree._Element]:
    tag = f"{{{ns}}}{local}"
    return [c for c in el if c.tag == tag]


def _text(el: etree._Element | None) -> str:
    return "" if el is None else "".join(el.itertext()).strip()


def _parse_time(value: str | None) -> tuple[dt.datetime | None, bool]:
    """xs:dateTime → aware UTC datetime; second item False when the value had no time zone."""
    if not value:
        return None, True
    m = _DATETIME.match(value.strip())
    if not m:
        return None, True
    base, frac, tz = m.groups()
    try:
        parsed = dt.datetime.fromisoformat(base + (frac[:7] if frac else "") + ("+00:00" if tz in (None, "Z") else tz))
    except ValueError:
        return None, True
    return parsed.astimezone(dt.UTC), tz is not None


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- locating the token
def _load(artefact: Any) -> etree._Element:
    if isinstance(artefact, etree._Element):
        return artefact
    if isinstance(artefact, str):
        artefact = artefact.encode("utf-8")
    elif not isinstance(artefact, bytes | bytearray) and hasattr(artefact, "body"):
        artefact = artefact.body
    if not isinstance(artefact, bytes | bytearray):
        raise InputError("INPUT.XML", f"cannot read a VIHF token from a {type(artefact).__name__}")
    return parse_xml(bytes(artefact))


def _locate(root: etree._Element) -> tuple[etree._Element | None, list[Finding]]:
    """Find the assertion to judge; PRESENT findings on the way."""
    out: list[Finding] = []
    q = etree.QName(root)
    security: etree._Element | None = None
    if q.localname == "Envelope" and q.namespace in _SOAP_NS:
        headers = _children(root, q.namespace, "Header")
        blocks = [s for h in headers for s in _children(h, V.NS_WSSE, "Security")]
        if not blocks:
            where = _xpath(headers[0]) if headers else _xpath(root)
            return None, [_f("VIHF.PRESENT", "no wsse:Security header block: the VIHF token is missing", where)]
        if len(blocks) > 1:
            out.append(
                _f(
                    "VIHF.PRESENT",
                    f"{len(blocks)} wsse:Security header blocks: exactly one expected",
                    _xpath(blocks[1]),
                )
            )
        security = blocks[0]
    elif root.tag == f"{{{V.NS_WSSE}}}Security":
        security = root
    elif root.tag == f"{{{V.NS_SAML2}}}Assertion":
        out.append(
            _f(
                "VIHF.PRESENT",
                "bare saml2:Assertion: a VIHF must travel in the SOAP header's wsse:Security",
                _xpath(root),
            )
        )
        return root, out
    else:
        return None, [
            _f("VIHF.PRESENT", f"expected a SOAP envelope or wsse:Security, found {q.localname!r}", _xpath(root))
        ]
    assertions = _children(security, V.NS_SAML2, "Assertion")
    if not assertions:
        out.append(_f("VIHF.PRESENT", "wsse:Security carries no saml2:Assertion (VIHF token)", _xpath(security)))
        return None, out
    return assertions[0], out


# ---------------------------------------------------------------- rules
def _attributes(assertion: etree._Element) -> dict[str, list[etree._Element]]:
    found: dict[str, list[etree._Element]] = {}
    for statement in _children(assertion, V.NS_SAML2, "AttributeStatement"):
        for attr in _children(statement, V.NS_SAML2, "Attribute"):
            name = attr.get("Name") or ""
            if name in V.AUTHENTIFICATION_MODE_ALIASES:
                name = V.AUTHENTIFICATION_MODE
            found.setdefault(name, []).append(attr)
    return found


def _values(attr: etree._Element) -> list[etree._Element]:
    return _children(attr, V.NS_SAML2, "AttributeValue")


def _attr_loc(base: str, name: str) -> str:
    return f"{base}/saml2:AttributeStatement/saml2:Attribute[@Name='{name}']"


def _text_problem(value: str) -> str | None:
    if not value:
        return "empty value"
    if len(value) > MAX_TEXT:
        return f"value longer than {MAX_TEXT} characters"
    if _CONTROL.search(value):
        return "value contains control characters"
    return None


def _coded(attr: etree._Element, local: str) -> Iterator[tuple[etree._Element | None, str, str]]:
    for value in _values(attr):
        el = next((c for c in value if c.tag == f"{{{V.NS_HL7}}}{local}"), None)
        yield (
            el,
            (el.get("code") or "").strip() if el is not None else "",
            ((el.get("codeSystem") or "").strip() if el is not None else ""),
        )


def _check_role(attr: etree._Element, loc: str) -> Iterator[Finding]:
    values = list(_coded(attr, "Role"))
    if not values:
        yield _f("VIHF.ATTRIBUTES", "subject:role has no AttributeValue", loc)
    for i, (el, code, system) in enumerate(values, 1):
        where = f"{loc}/saml2:AttributeValue[{i}]"
        if el is None:
            yield _f(
                "VIHF.ATTRIBUTES", "subject:role value must be an hl7:Role coded element (code, codeSystem)", where
            )
        elif not code or not system:
            yield _f("VIHF.ATTRIBUTES", "hl7:Role lacks its code or codeSystem", f"{where}/hl7:Role")
        elif system not in J65_CODE_SYSTEMS:
            yield _f(
                "VIHF.ATTRIBUTES",
                f"hl7:Role codeSystem {system} is not one of JDV_J65 SubjectRole-DMP's code systems",
                f"{where}/hl7:Role/@codeSystem",
            )


def _check_purpose(attr: etree._Element, loc: str) -> Iterator[Finding]:
    values = list(_coded(attr, "PurposeOfUse"))
    if len(values) != 1:
        yield _f("VIHF.ATTRIBUTES", f"purposeofuse must have exactly one value, found {len(values)}", loc)
        return
    el, code, system = values[0]
    where = f"{loc}/saml2:AttributeValue/hl7:PurposeOfUse"
    if el is None:
        yield _f("VIHF.ATTRIBUTES", "purposeofuse value must be an hl7:PurposeOfUse coded element", loc)
    elif not code or system != V.OID_PURPOSE_OF_USE:
        yield _f(
            "VIHF.ATTRIBUTES",
            f"hl7:PurposeOfUse must carry a code under codeSystem {V.OID_PURPOSE_OF_USE} (found {code!r}, {system!r})",
            where,
        )
    elif code not in KNOWN_PURPOSES:
        yield _f("VIHF.ATTRIBUTES", f"purposeofuse code {code!r} is not a known access mode", where, "warning")


def _check_text(name: str, value: str, loc: str) -> Iterator[Finding]:
    problem = _text_problem(value)
    if problem:
        yield _f("VIHF.ATTRIBUTES", f"{name}: {problem}", loc)
        return
    if name == V.IDENTIFIANT_STRUCTURE:
        pattern = _STRUCTURE.get(value[0])
        if not _NATIONAL_ID.match(value) or (pattern is not None and not pattern.match(value)):
            yield _f(
                "VIHF.ATTRIBUTES",
                f"Identifiant_Structure {value!r} is not a national structure id (1+FINESS, 2+SIREN, 3+SIRET …)",
                loc,
            )
    elif name == V.SECTEUR_ACTIVITE:
        m = _SECTEUR.match(value)
        code, oid = (m.group("code"), m.group("oid")) if m else ("", "")
        ok = (oid == V.OID_SECTEUR_ACTIVITE and re.fullmatch(r"SA[0-9]{2}", code) is not None) or (
            oid == V.OID_PRODUCTEUR_NON_PS and code in ("EXP_PATIENT", "SNR")
        )
        if not ok:
            yield _f(
                "VIHF.ATTRIBUTES",
                f"Secteur_Activite {value!r} is not code^OID from JDV_J61 (e.g. SA07^{V.OID_SECTEUR_ACTIVITE})",
                loc,
            )
    elif name == V.RESOURCE_ID:
        m = _CX.match(value)
        if not m:
            yield _f("VIHF.ATTRIBUTES", f"resource-id {value!r} is not an HL7 CX identifier matricule^^^&OID&ISO", loc)
            return
        ins, oid = m.group("id"), m.group("oid")
        problem = matricule_problem(ins)
        if problem:
            yield _f("VIHF.ATTRIBUTES", f"resource-id INS {ins!r}: {problem}", loc)
        elif not key_is_valid(ins):
            yield _f("VIHF.ATTRIBUTES", f"resource-id INS {ins!r}: wrong check key", loc)
        if oid not in INS_OIDS:
            yield _f("VIHF.ATTRIBUTES", f"resource-id assigning authority {oid!r} is not an INS OID", loc)
    elif name == V.AUTHENTIFICATION_MODE and value not in KNOWN_AUTH_MODES:
        yield _f("VIHF.ATTRIBUTES", f"Authentification_mode {value!r} is not a known mode", loc, "warning")
    elif name == V.RESSOURCE_URN and value != V.RESSOURCE_URN_DMP:
        yield _f("VIHF.ATTRIBUTES", f"Ressource_URN must be {V.RESSOURCE_URN_DMP!r}, found {value!r}", loc)


def _rule_attributes(assertion: etree._Element, base: str, attrs: dict[str, list[etree._Element]]) -> Iterator[Finding]:
    issuer = _children(assertion, V.NS_SAML2, "Issuer")
    if not issuer or not _text(issuer[0]):
        yield _f(
            "VIHF.ATTRIBUTES", "saml2:Issuer (DN of the signing certificate) missing or empty", f"{base}/saml2:Issuer"
        )
    subject = _children(assertion, V.NS_SAML2, "Subject")
    name_ids = _children(subject[0], V.NS_SAML2, "NameID") if subject else []
    where = f"{base}/saml2:Subject/saml2:NameID"
    if not name_ids or not _text(name_ids[0]):
        yield _f("VIHF.ATTRIBUTES", "Subject/NameID (user's national identifier) missing or empty", where)
    elif not _NATIONAL_ID.match(_text(name_ids[0])):
        yield _f(
            "VIHF.ATTRIBUTES",
            f"Subject/NameID {_text(name_ids[0])!r} is not a national identifier (RPPS/ADELI …; SC.DMP/AIRS.06)",
            where,
        )
    authn = _children(assertion, V.NS_SAML2, "AuthnStatement")
    class_ref = [
        r
        for a in authn
        for c in _children(a, V.NS_SAML2, "AuthnContext")
        for r in _children(c, V.NS_SAML2, "AuthnContextClassRef")
    ]
    if not authn or not authn[0].get("AuthnInstant") or not class_ref or not _text(class_ref[0]):
        yield _f(
            "VIHF.ATTRIBUTES",
            "AuthnStatement with AuthnInstant and AuthnContextClassRef (local authentication) missing",
            f"{base}/saml2:AuthnStatement",
        )

    required = [n for n in V.REQUIRED_ATTRIBUTES if n != V.VIHF_VERSION_ATTR]
    optional = [V.RESSOURCE_URN, V.LPS_ID]
    for name in [*required, *optional]:
        loc = _attr_loc(base, name)
        found = attrs.get(name, [])
        if not found:
            if name in required:
                yield _f("VIHF.ATTRIBUTES", f"attribute {name} missing", loc)
            continue
        if len(found) > 1:
            yield _f("VIHF.ATTRIBUTES", f"attribute {name} appears {len(found)} times", loc)
        attr = found[0]
        if name == V.ROLE:
            yield from _check_role(attr, loc)
            continue
        if name == V.PURPOSE_OF_USE:
            yield from _check_purpose(attr, loc)
            continue
        values = _values(attr)
        if len(values) != 1:
            yield _f(
                "VIHF.ATTRIBUTES", f"attribute {name} must have exactly one AttributeValue, found {len(values)}", loc
            )
            continue
        if any(isinstance(c.tag, str) for c in values[0]):
            yield _f("VIHF.ATTRIBUTES", f"attribute {name} must be a text value", loc)
            continue
        yield from _check_text(name, _text(values[0]), loc)


def _rule_version(assertion: etree._Element, base: str, attrs: dict[str, list[etree._Element]]) -> Iterator[Finding]:
    if assertion.get("Version") != "2.0":
        yield _f("VIHF.VERSION", f"SAML Version must be '2.0', found {assertion.get('Version')!r}", f"{base}/@Version")
    loc = _attr_loc(base, V.VIHF_VERSION_ATTR)
    found = attrs.get(V.VIHF_VERSION_ATTR, [])
    if not found:
        yield _f("VIHF.VERSION", "attribute VIHF_Version missing", loc)
        return
    values = [_text(v) for a in found for v in _values(a)]
    if values != [V.VIHF_VERSION]:
        yield _f(
            "VIHF.VERSION",
            f"VIHF_Version must be {V.VIHF_VERSION!r}, found {', '.join(map(repr, values)) or 'nothing'}",
            loc,
        )


def _rule_validity(assertion: etree._Element, base: str, now: dt.datetime, skew: float) -> Iterator[Finding]:
    tolerance = dt.timedelta(seconds=skew)
    raw_issue = assertion.get("IssueInstant")
    issued, has_tz = _parse_time(raw_issue)
    if issued is None:
        yield _f(
            "VIHF.VALIDITY", f"IssueInstant {raw_issue!r} is missing or not an xs:dateTime", f"{base}/@IssueInstant"
        )
    else:
        if not has_tz:
            yield _f(
                "VIHF.VALIDITY",
                "IssueInstant has no time zone (SAML times are UTC, 'Z')",
                f"{base}/@IssueInstant",
                "warning",
            )
        if issued > now + tolerance:
            yield _f(
                "VIHF.VALIDITY",
                f"IssueInstant {_fmt(issued)} is in the future (now {_fmt(now)})",
                f"{base}/@IssueInstant",
            )
    conditions = _children(assertion, V.NS_SAML2, "Conditions")
    where = f"{base}/saml2:Conditions"
    if not conditions:
        yield _f(
            "VIHF.VALIDITY",
            "no Conditions NotBefore/NotOnOrAfter: the token's lifetime is unbounded (optional in the CI-SIS mapping)",
            where,
            "warning",
        )
        return
    cond = conditions[0]
    bounds: dict[str, dt.datetime] = {}
    for attr in ("NotBefore", "NotOnOrAfter"):
        raw = cond.get(attr)
        if raw is None:
            continue
        parsed, _ = _parse_time(raw)
        if parsed is None:
            yield _f("VIHF.VALIDITY", f"{attr} {raw!r} is not an xs:dateTime", f"{where}/@{attr}")
        else:
            bounds[attr] = parsed
    nb, na = bounds.get("NotBefore"), bounds.get("NotOnOrAfter")
    if nb and na and na <= nb:
        yield _f("VIHF.VALIDITY", f"empty validity window: NotOnOrAfter {_fmt(na)} ≤ NotBefore {_fmt(nb)}", where)
        return
    if nb and nb > now + tolerance:
        yield _f(
            "VIHF.VALIDITY",
            f"token not yet valid: NotBefore {_fmt(nb)} is after now {_fmt(now)}",
            f"{where}/@NotBefore",
        )
    if na and na <= now - tolerance:
        yield _f(
            "VIHF.VALIDITY",
            f"token expired: NotOnOrAfter {_fmt(na)} is before now {_fmt(now)}",
            f"{where}/@NotOnOrAfter",
        )
    if issued and na and issued >= na:
        yield _f("VIHF.VALIDITY", "IssueInstant is not before NotOnOrAfter", f"{base}/@IssueInstant")


def _rule_signature(root: etree._Element, assertion: etree._Element, base: str) -> tuple[list[Finding], Any]:
    out: list[Finding] = []
    # Wrapping: whatever element a signature points to, only one assertion may exist in the message.
    others = [a for a in root.getroottree().iter(f"{{{V.NS_SAML2}}}Assertion") if a is not assertion]
    for other in others:
        out.append(
            _f(
                "VIHF.SIGNATURE",
                "another saml2:Assertion in the message (signature wrapping risk): exactly one VIHF expected",
                _xpath(other),
            )
        )
    result = verify_enveloped(assertion)
    for p in result.problems:
        out.append(_f("VIHF.SIGNATURE", p.message, base if p.where == "." else f"{base}/{p.where}"))
    for p in result.warnings:
        out.append(_f("VIHF.SIGNATURE", p.message, f"{base}/{p.where}", "warning"))
    return out, result


def _rule_trust(
    assertion: etree._Element, base: str, result: Any, ca_pem: bytes | str | None, now: dt.datetime
) -> Iterator[Finding]:
    where = f"{base}/ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate"
    certs: list[x509.Certificate] = result.certificates
    leaf = result.signer or (certs[0] if certs else None)
    if leaf is None:
        yield _f("VIHF.TRUST", "no signing certificate to evaluate (see VIHF.SIGNATURE)", where, "info")
        return
    if ca_pem is None:
        yield _f("VIHF.TRUST", "no trust anchor given: the certificate chain was not evaluated", where, "info")
    else:
        try:
            anchors = load_certificates(ca_pem)
        except PkiError as exc:
            yield _f("VIHF.TRUST", f"trust anchor unusable: {exc}", None)
            return
        problem = chain_problem(leaf, anchors, intermediates=[c for c in certs if c is not leaf], at=now)
        if problem:
            yield _f("VIHF.TRUST", problem, where)
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    except ValueError:
        yield _f("VIHF.TRUST", "signing certificate has a malformed KeyUsage extension", where)
        return
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        yield _f(
            "VIHF.TRUST", "signing certificate's KeyUsage allows neither digitalSignature nor nonRepudiation", where
        )
    issuer = _children(assertion, V.NS_SAML2, "Issuer")
    if issuer and _text(issuer[0]) and _text(issuer[0]) != leaf.subject.rfc4514_string():
        yield _f(
            "VIHF.TRUST",
            f"Issuer {_text(issuer[0])!r} does not name the signing certificate ({leaf.subject.rfc4514_string()!r})",
            f"{base}/saml2:Issuer",
            "warning",
        )


def _rule_resource(base: str, attrs: dict[str, list[etree._Element]], expected_ins: str) -> Iterator[Finding]:
    found = attrs.get(V.RESOURCE_ID, [])
    values = _values(found[0]) if found else []
    m = _CX.match(_text(values[0])) if values else None
    if m is None:
        return  # missing or malformed: VIHF.ATTRIBUTES already says so
    want = _CX.match(expected_ins.strip())
    want_id = want.group("id") if want else expected_ins.strip()
    if m.group("id") != want_id:
        yield _f(
            "VIHF.RESOURCE",
            f"resource-id INS {m.group('id')!r} is not the patient's INS {want_id!r}",
            _attr_loc(base, V.RESOURCE_ID),
        )


# ---------------------------------------------------------------- the check
@check("vihf.token", kind="vihf", service="DMP", rules=RULES)
def vihf_token(
    artefact: Any,
    *,
    ca_pem: bytes | str | None = None,
    expected_ins: str | None = None,
    now: dt.datetime | None = None,
    skew: float = DEFAULT_SKEW,
) -> Iterator[Finding]:
    """Judge the VIHF token of a SOAP request to the DMP.

    ``artefact``: the SOAP envelope (bytes, or an lxml element) or its ``wsse:Security`` element (an
    object with a ``body`` attribute, such as a simulator's received request, is read from its body).
    ``ca_pem``: the trust anchor (the run's test CA); without it ``VIHF.TRUST`` is only informative.
    ``expected_ins``: the patient's INS (matricule or CX) the request is about, when the scenario
    knows it.  ``now`` (aware UTC) pins the clock for tests; ``skew`` is the tolerated clock
    difference in seconds.
    """
    try:
        root = _load(artefact)
    except InputError as exc:
        yield _f(exc.rule, f"VIHF token unreadable: {exc.message}", "/")
        return
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    assertion, present = _locate(root)
    yield from present
    if assertion is None:
        return
    base = _xpath(assertion)
    attrs = _attributes(assertion)
    yield from _rule_attributes(assertion, base, attrs)
    yield from _rule_version(assertion, base, attrs)
    yield from _rule_validity(assertion, base, now, skew)
    sig_findings, result = _rule_signature(root, assertion, base)
    yield from sig_findings
    yield from _rule_trust(assertion, base, result, ca_pem, now)
    if expected_ins:
        yield from _rule_resource(base, attrs, expected_ins)
