"""DMP client side of the reference vendor: CDA R2 production, XDS.b/MHD metadata, VIHF, ITI-41/18/43/65.

What a conformant DPI does when it feeds the DMP, written as plainly as a vendor would:

1. it produces a CI-SIS CDA R2 document for a **qualified** identity (RNIV: only a qualified identity
   carries the INS): niveau 1 (``nonXMLBody`` with a PDF), header modelled on ANS's official examples
   (realmCode FR, typeId, CI-SIS templateIds + XDS-SD, id, LOINC code, title, effectiveTime,
   confidentialityCode, ``fr-FR``, setId/versionNumber, recordTarget with the INS and the strict
   traits, author and legalAuthenticator identified by RPPS, custodian by FINESS,
   documentationOf/serviceEvent, componentOf/encompassingEncounter);
2. it derives the document's metadata once (``xds_builder.derive_metadata``: the CI-SIS CDA → metadata
   correspondence) and writes it either as XDS.b ebRIM (``xds_builder.render``, RPLC association when
   it replaces a previous version: same setId, versionNumber + 1) or, with
   ``params.document.transport = "mhd"``, as a PDSm comprehensive provide-document Bundle
   (``mhd_builder``, ``relatesTo replaces`` for a replacement);
3. over XDS.b it signs a VIHF token (``conformance.vihf``) with the credentials the bench gave for the
   run (``services.pki``), or an ephemeral self-signed key when none were given, and sends ITI-41 in
   SOAP 1.2 with MTOM/XOP to ``services.dmp``; over MHD it POSTs the Bundle (ITI-65,
   ``application/fhir+json``) to ``services.mhd``;
4. ``dmp.query`` sends ITI-18 FindDocuments and retrieves each current document with ITI-43.

Faults (``dmp.*`` in :mod:`conformance.simulators.faults`) are applied where a real product gets them
wrong: the token (omitted attribute, no signature, expired), the metadata (type, class,
confidentiality, patientId, hash), the CDA header (custodian, language), the replacement (no RPLC),
the envelope (SOAP 1.1) and the retrieve request (wrong repository).  Metadata, CDA and replacement
faults act on the shared model, so both transports carry them; VIHF and SOAP faults concern XDS.b
only (PDSm does not carry a VIHF: the DMP's FHIR access is secured otherwise).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

import requests
from lxml import etree

from conformance.checks.luhn import luhn_digit
from conformance.parsing import InputError, parse_json, parse_xml
from conformance.simulators.dmp import (
    ACTION_ITI18,
    ACTION_ITI41,
    ACTION_ITI43,
    NS_RIM,
    NS_SOAP11,
    NS_SOAP12,
    NS_WSA,
    QUERY_FIND_DOCUMENTS,
    STATUS_APPROVED,
    build_multipart,
    parse_multipart,
)
from conformance.simulators.insi import ACTION_ID_HEADER

if TYPE_CHECKING:  # the vendor imports this module: no import cycle at run time
    from conformance.simulators.vendor import ReferenceVendor, StoredPatient

DMP_TIMEOUT = 15.0
HL7 = "urn:hl7-org:v3"
NS_XDSB = "urn:ihe:iti:xds-b:2007"
NS_QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
NS_XOP = "http://www.w3.org/2004/08/xop/include"

# XDS DocumentEntry.uniqueId external identifier scheme (IHE ITI TF-3 4.2.5), read back from ITI-18.
SCHEME_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
TRANSPORTS = ("xds", "mhd")
OID_RPPS = "1.2.250.1.71.4.2.1"
OID_STRUCTURE = "1.2.250.1.71.4.2.2"
OID_LOINC = "2.16.840.1.113883.6.1"
OID_CONFIDENTIALITY = "2.16.840.1.113883.5.25"
OID_CLASS = "1.2.250.1.213.1.1.4.1"  # TRE_A03 ClasseDocument
OID_VISIBILITY = "1.2.250.1.213.1.1.4.13"  # TRE_A07 StatutVisibiliteDocument
OID_LOCAL_IPP = "1.2.250.1.999.1.1.1"  # the reference vendor's (fictitious) IPP arc

# The vendor's own document ids live under a fictitious arc of the bench: root + "." + counter.
DOC_ROOT = "1.2.250.1.999.1.2"


# The reference practitioner and structure: fictitious but well-formed (valid Luhn check digits).
RPPS = "1000001000" + luhn_digit("1000001000")  # 11 digits
FINESS = "99000001" + luhn_digit("99000001")  # 9 characters
AUTHOR: dict[str, Any] = {
    "rpps": RPPS,
    "national_id": f"8{RPPS}",
    "id_root": OID_RPPS,
    "family": "REFERENCE",
    "given": "PAUL",
    "prefix": "DR",
    "profession": "10",
    "specialty": "G15_10/SM26",
    "specialty_system": "1.2.250.1.213.1.1.4.5",
    "specialty_display": "Médecin - Qualifié en Médecine Générale (SM)",
    "role": "10",
    "role_system": "1.2.250.1.71.1.2.7",
    "institution": {"name": "Hôpital de référence segur-bench", "finess": FINESS, "national_id": f"1{FINESS}"},
    "facility_code": "SA01",
    "facility_display": "Etablissement public de santé",
    "facility_system": "1.2.250.1.71.4.2.4",
    "practice_code": "ETABLISSEMENT",
    "practice_display": "Etablissement de santé",
    "practice_system": "1.2.250.1.213.1.1.4.9",
}


def builder_author() -> dict[str, Any]:
    """The author as ``xds_builder`` reads it (national id, names, XCN-style specialty)."""
    a = AUTHOR
    return {
        "id": a["national_id"],
        "oid": OID_RPPS,
        "family": a["family"],
        "given": a["given"],
        "specialty": f"{a['specialty']}^{a['specialty_display']}^{a['specialty_system']}",
    }


# Document kinds the reference produces (all CDA R2 niveau 1 with a PDF body): volet → LOINC code.
KINDS: dict[str, dict[str, str]] = {
    "CR-CONS": {"code": "11488-4", "display": "Compte rendu de consultation", "title": "Compte rendu de consultation"},
    "CR-BIO": {"code": "11502-2", "display": "CR d'examens biologiques", "title": "Compte rendu d'examens biologiques"},
    "VSM": {"code": "60591-5", "display": "Synthèse médicale", "title": "Synthèse médicale"},
}
DEFAULT_KIND = "CR-CONS"
CONFIDENTIALITY = {"N": "Normal", "R": "Restreint", "V": "Très restreint"}
TEMPLATE_XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
TEMPLATES = ("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1", TEMPLATE_XDS_SD)

# A minimal, valid PDF (one empty page): the N1 body.
_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

# Faults of this module: whatever the reference does differently under each.
FAULT_TYPE_INSTEAD = "11506-3"  # "Progress note": class 10 like 11488-4, so only the CDA consistency breaks
FAULT_CLASS_INSTEAD = "11"  # "Synthèse": in J57, but not what ASS_X04 gives for a consultation note
FAULT_VISIBILITY = "MASQUE"  # not a code of J58 (the DMP's is MASQUE_PS)


class DmpActionFailed(Exception):
    """The DMP action ran but failed; the vendor maps it to its ``ActionFailed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Published:
    """What the vendor remembers of one document it sent to the DMP."""

    unique_id: str
    entry_uuid: str
    set_id: str
    version: int
    kind: str
    confidentiality: str
    patient_id: str
    fhir_id: str | None = None
    """Logical id the DMP gave the DocumentReference (MHD), the target of a later ``relatesTo``."""

    def as_result(self) -> dict[str, Any]:
        return {
            "unique_id": self.unique_id,
            "entry_uuid": self.entry_uuid,
            "set_id": self.set_id,
            "version": self.version,
        }


# ------------------------------------------------------------------------------------------ CDA
def _ts(when: dt.datetime) -> str:
    """CDA TS with seconds and offset, as in the official examples (``20200312111700+0100``)."""
    return when.strftime("%Y%m%d%H%M%S%z")


def _cda_date(iso: str) -> str:
    return iso.replace("-", "")


def build_cda(
    patient: StoredPatient,
    *,
    kind: str,
    confidentiality: str,
    doc_id: str,
    set_id: str,
    version: int,
    when: dt.datetime,
    with_ins: bool = True,
    custodian: bool = True,
    language: str = "fr-FR",
) -> bytes:
    """A CI-SIS CDA R2 niveau 1 document (header modelled on ANS's examples, PDF body)."""
    spec = KINDS[kind]
    a = AUTHOR
    org = a["institution"]
    ts = _ts(when)
    ids = ""
    if with_ins and patient.matricule and patient.oid:
        ids += f"<id root={quoteattr(patient.oid)} extension={quoteattr(patient.matricule)}/>"
    ids += f"<id root={quoteattr(OID_LOCAL_IPP)} extension={quoteattr(patient.ipp)}/>"
    given_list = " ".join(patient.given_names)
    names = f'<family qualifier="BR">{escape(patient.birth_name)}</family><given>{escape(given_list)}</given>'
    names += f'<given qualifier="BR">{escape(patient.first_given_name)}</given>'
    if patient.used_name:
        names += f'<family qualifier="CL">{escape(patient.used_name)}</family>'
    birthplace = (
        f"<birthplace><place><addr><county>{escape(patient.birth_place)}</county></addr></place></birthplace>"
        if patient.birth_place
        else ""
    )
    sex_display = {"M": "Masculin", "F": "Féminin"}.get(patient.sex, "Inconnu")
    person = (
        f"<assignedPerson><name><prefix>{escape(a['prefix'])}</prefix><given>{escape(a['given'])}</given>"
        f"<family>{escape(a['family'])}</family></name></assignedPerson>"
    )
    organization = (
        f'<representedOrganization><id root="{OID_STRUCTURE}" extension="1{org["finess"]}"/>'
        f"<name>{escape(org['name'])}</name></representedOrganization>"
    )
    specialty = (
        f"<code code={quoteattr(a['specialty'])} codeSystem={quoteattr(a['specialty_system'])}"
        f" displayName={quoteattr(a['specialty_display'])}/>"
    )
    rpps_id = f'<id root="{OID_RPPS}" extension="8{a["rpps"]}"/>'
    custodian_xml = (
        "<custodian><assignedCustodian><representedCustodianOrganization>"
        f'<id root="{OID_STRUCTURE}" extension="1{org["finess"]}"/><name>{escape(org["name"])}</name>'
        "</representedCustodianOrganization></assignedCustodian></custodian>"
        if custodian
        else ""
    )
    templates = "".join(f'<templateId root="{t}"/>' for t in TEMPLATES)
    conf_display = quoteattr(CONFIDENTIALITY.get(confidentiality, confidentiality))
    practice = (
        f"<standardIndustryClassCode code={quoteattr(a['practice_code'])}"
        f" codeSystem={quoteattr(a['practice_system'])} displayName={quoteattr(a['practice_display'])}/>"
    )
    facility = (
        f"<code code={quoteattr(a['facility_code'])} codeSystem={quoteattr(a['facility_system'])}"
        f" displayName={quoteattr(a['facility_display'])}/>"
    )
    pdf = base64.b64encode(_PDF).decode("ascii")
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="{HL7}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<realmCode code="FR"/>
<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
{templates}
<id root="{DOC_ROOT}" extension={quoteattr(doc_id)}/>
<code code="{spec["code"]}" codeSystem="{OID_LOINC}" codeSystemName="LOINC" displayName={quoteattr(spec["display"])}/>
<title>{escape(spec["title"])}</title>
<effectiveTime value="{ts}"/>
<confidentialityCode code={quoteattr(confidentiality)} codeSystem="{OID_CONFIDENTIALITY}" displayName={conf_display}/>
<languageCode code={quoteattr(language)}/>
<setId root="{DOC_ROOT}" extension={quoteattr(set_id)}/>
<versionNumber value="{version}"/>
<recordTarget><patientRole>{ids}<patient classCode="PSN"><name>{names}</name>
<administrativeGenderCode code={quoteattr(patient.sex)} codeSystem="2.16.840.1.113883.5.1" displayName="{sex_display}"/>
<birthTime value="{_cda_date(patient.birth_date)}"/>{birthplace}</patient></patientRole></recordTarget>
<author><time value="{ts}"/><assignedAuthor>{rpps_id}{specialty}{person}{organization}</assignedAuthor></author>
{custodian_xml}
<legalAuthenticator><time value="{ts}"/><signatureCode code="S"/>
<assignedEntity>{rpps_id}{person}{organization}</assignedEntity></legalAuthenticator>
<documentationOf><serviceEvent>
<code code="{spec["code"]}" codeSystem="{OID_LOINC}" displayName={quoteattr(spec["display"])}/>
<effectiveTime><low value="{ts}"/><high value="{ts}"/></effectiveTime>
<performer typeCode="PRF"><assignedEntity>{rpps_id}{specialty}{person}
<representedOrganization><id root="{OID_STRUCTURE}" extension="1{org["finess"]}"/><name>{escape(org["name"])}</name>
{practice}</representedOrganization></assignedEntity></performer>
</serviceEvent></documentationOf>
<componentOf><encompassingEncounter><effectiveTime><low value="{ts}"/><high value="{ts}"/></effectiveTime>
<location><healthCareFacility>{facility}</healthCareFacility></location>
</encompassingEncounter></componentOf>
<component><nonXMLBody><text mediaType="application/pdf" representation="B64">{pdf}</text></nonXMLBody></component>
</ClinicalDocument>
"""
    return xml.encode("utf-8")


# ------------------------------------------------------------------------------------------ metadata
def derive_document_metadata(
    document: bytes, cda_root: Any, *, patient_id: str, patient_oid: str, faults: frozenset[str]
) -> dict[str, Any]:
    """The document's metadata (one flat model for XDS and MHD), with the metadata faults applied.

    Why one place: a fault such as a wrong classCode is a defect of the *metadata*, whatever the
    transport; applying it here makes the XDS ``SubmitObjectsRequest`` and the MHD Bundle carry the
    same defect, so it fails the same requirement through either path.
    """
    from conformance.simulators.xds_builder import derive_metadata

    meta = derive_metadata(document, cda_root, patient_ins=patient_id, ins_oid=patient_oid, author=builder_author())
    if "dmp.metadata-type-mismatch" in faults:
        meta["typeCode"] = (FAULT_TYPE_INSTEAD, OID_LOINC)
    if "dmp.wrong-class-code" in faults:
        meta["classCode"] = (FAULT_CLASS_INSTEAD, OID_CLASS)
    if "dmp.bad-confidentiality" in faults:
        meta["confidentialityCode"] = [*meta["confidentialityCode"], (FAULT_VISIBILITY, OID_VISIBILITY)]
    if "dmp.wrong-hash" in faults:
        meta["hash"] = hashlib.sha1(document + b" ", usedforsecurity=False).hexdigest()
    return meta


def mhd_author() -> dict[str, Any]:
    """The author as ``mhd_builder`` reads it: the XDS author plus the organization (FINESS)."""
    org = AUTHOR["institution"]
    return {**builder_author(), "organization": {"id": org["national_id"], "name": org["name"]}}


def _external_id(el: etree._Element, scheme: str) -> str | None:
    for ext in el.iter(f"{{{NS_RIM}}}ExternalIdentifier"):
        if ext.get("identificationScheme") == scheme:
            return ext.get("value")
    return None


# ------------------------------------------------------------------------------------------ VIHF
_EPHEMERAL: dict[str, bytes] = {}
_EPHEMERAL_LOCK = threading.Lock()


def _ephemeral_credentials() -> tuple[bytes, bytes]:
    """A self-signed signing pair, made once per process, for runs that give no ``services.pki``."""
    with _EPHEMERAL_LOCK:
        if not _EPHEMERAL:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            from cryptography.x509.oid import NameOID

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segur-bench reference vendor (self-signed)")])
            now = dt.datetime.now(dt.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=30))
                .sign(key, hashes.SHA256())
            )
            _EPHEMERAL["cert"] = cert.public_bytes(serialization.Encoding.PEM)
            _EPHEMERAL["key"] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        return _EPHEMERAL["cert"], _EPHEMERAL["key"]


def _credentials(services: Mapping[str, Any]) -> tuple[bytes, bytes]:
    pki = services.get("pki")
    if isinstance(pki, dict) and isinstance(pki.get("cert_pem"), str) and isinstance(pki.get("key_pem"), str):
        return pki["cert_pem"].encode("ascii"), pki["key_pem"].encode("ascii")
    return _ephemeral_credentials()


def build_security(
    *, ins_cx: str, lps: Mapping[str, str], services: Mapping[str, Any], faults: frozenset[str]
) -> bytes:
    """The ``wsse:Security`` header with a signed VIHF for the patient ``ins_cx``."""
    from conformance import vihf

    cert_pem, key_pem = _credentials(services)
    omit: set[str] = set()
    kwargs: dict[str, Any] = {}
    if "dmp.vihf-missing-attribute" in faults:
        omit.add(vihf.LPS_ID_HOMOLOGATION_DMP)
    if "dmp.vihf-unsigned" in faults:
        omit.add("Signature")
    if "dmp.vihf-expired" in faults:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        kwargs.update(
            issue_instant=now - dt.timedelta(hours=3),
            not_before=now - dt.timedelta(hours=3),
            not_on_or_after=now - dt.timedelta(hours=2),
        )
    assertion = vihf.build_vihf(
        subject_id=AUTHOR["national_id"],
        subject_name=f"{AUTHOR['family']} {AUTHOR['given']}",
        role=[f"{AUTHOR['role']}^{AUTHOR['role_system']}", "SM26^1.2.250.1.71.4.2.5"],
        structure_id=AUTHOR["institution"]["national_id"],
        secteur_activite=AUTHOR["facility_code"],
        ins=ins_cx,
        lps_nom=lps.get("name", "segur-bench reference vendor"),
        lps_version=lps.get("version", "1"),
        lps_homologation=lps.get("homologation_dmp", "SEGURBENCH-DMP-0001"),
        lps_id=lps.get("instance"),
        signing_cert_pem=cert_pem,
        signing_key_pem=key_pem,
        omit=omit,
        **kwargs,
    )
    # No XML declaration: the block goes inside the envelope's header as is (the signature covers
    # the assertion only, in exclusive canonical form, so its new ancestors do not matter).
    return etree.tostring(vihf.wrap_in_security(assertion))


# ------------------------------------------------------------------------------------------ SOAP
def _envelope(action: str, to: str, security: bytes, body: str, *, soap11: bool) -> bytes:
    env = NS_SOAP11 if soap11 else NS_SOAP12
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{env}" xmlns:wsa="{NS_WSA}"><soap:Header>'
        f'<wsa:Action soap:mustUnderstand="{"1" if soap11 else "true"}">{action}</wsa:Action>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        "<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>"
        f"<wsa:To>{escape(to)}</wsa:To>"
    ).encode()
    return xml + security + f"</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>".encode()


def _post(
    url: str,
    body: bytes,
    content_type: str,
    action_id: str,
    services: Mapping[str, Any],
    soap_action: str,
    *,
    accept: str | None = None,
) -> requests.Response:
    from conformance.simulators.vendor import _tls_options

    headers = {"Content-Type": content_type, ACTION_ID_HEADER: action_id}
    if accept:
        headers["Accept"] = accept
    if content_type.startswith("text/xml") or 'start-info="text/xml"' in content_type:
        headers["SOAPAction"] = f'"{soap_action}"'
    try:
        with _tls_options(services) as tls:
            return requests.post(url, data=body, headers=headers, timeout=DMP_TIMEOUT, **tls)
    except requests.Timeout:
        raise DmpActionFailed("dmp-timeout", f"the DMP did not answer within {DMP_TIMEOUT:g} s") from None
    except requests.RequestException as exc:
        raise DmpActionFailed("dmp-unreachable", f"the DMP could not be reached: {type(exc).__name__}") from None


def _response_root(resp: requests.Response) -> etree._Element:
    """The SOAP envelope of an answer (plain or MTOM), refusing unreadable bytes."""
    ctype = resp.headers.get("content-type", "")
    try:
        if ctype.lower().startswith("multipart/"):
            root_part, _parts, _ = parse_multipart(resp.content, ctype)
            return parse_xml(root_part.content)
        return parse_xml(resp.content)
    except InputError as exc:
        raise DmpActionFailed(
            "dmp-error", f"the DMP answered HTTP {resp.status_code}, unreadable: {exc.message}"
        ) from None


def _registry_status(root: etree._Element) -> tuple[str | None, list[str]]:
    status = None
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname in ("RegistryResponse", "AdhocQueryResponse"):
            status = el.get("status")
            break
    errors = [
        f"{e.get('errorCode')}: {e.get('codeContext')}"
        for e in root.iter()
        if isinstance(e.tag, str) and etree.QName(e).localname == "RegistryError"
    ]
    fault = next((e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "Fault"), None)
    if fault is not None:
        errors.append("SOAP fault: " + " ".join(t.strip() for t in fault.itertext() if t.strip())[:200])
    return status, errors


# ------------------------------------------------------------------------------------------ client side
class DmpSide:
    """The DMP actions of the reference vendor (``dmp.publish``, ``dmp.replace``, ``dmp.query``)."""

    ACTIONS = ("dmp.publish", "dmp.replace", "dmp.query")

    def __init__(self, vendor: ReferenceVendor) -> None:
        self.vendor = vendor
        self._lock = threading.Lock()
        self._published: dict[str, Published] = {}  # by unique id and by entry UUID
        self._seq = 0

    def handlers(self) -> dict[str, Callable[[dict[str, Any], dict[str, Any], str, str], dict[str, Any]]]:
        """The vendor's action handlers; a DMP failure becomes the vendor's ``ActionFailed``."""

        def wrap(
            func: Callable[[dict[str, Any], dict[str, Any], str, str], dict[str, Any]],
        ) -> Callable[[dict[str, Any], dict[str, Any], str, str], dict[str, Any]]:
            def run(params: dict[str, Any], services: dict[str, Any], action_id: str, base: str) -> dict[str, Any]:
                from conformance.simulators.vendor import ActionFailed

                try:
                    return func(params, services, action_id, base)
                except DmpActionFailed as exc:
                    raise ActionFailed(exc.code, exc.message) from None

            return run

        return {"dmp.publish": wrap(self.publish), "dmp.replace": wrap(self.replace), "dmp.query": wrap(self.query)}

    # -- parameters ------------------------------------------------------------------------------

    @staticmethod
    def validate(action: str, params: Mapping[str, Any], services: Mapping[str, Any]) -> str | None:
        """A reason to refuse the request (HTTP 400), or None."""
        dmp = services.get("dmp")
        if not isinstance(dmp, str) or not dmp.startswith(("http://", "https://")):
            return "services.dmp must be the http(s) URL of the DMP (XDS.b) service"
        patient = params.get("patient")
        if not isinstance(patient, dict) or not any(
            isinstance(patient.get(k), str) and patient[k] for k in ("ins", "patient_id")
        ):
            return "params.patient must be an object with an ins or a patient_id"
        if action in ("dmp.publish", "dmp.replace"):
            doc = params.get("document", {})
            if not isinstance(doc, dict):
                return "params.document must be an object"
            kind = doc.get("kind", DEFAULT_KIND)
            if kind not in KINDS:
                return f"params.document.kind must be one of {', '.join(KINDS)}"
            conf = doc.get("confidentiality", "N")
            if conf not in CONFIDENTIALITY:
                return "params.document.confidentiality must be N, R or V"
            transport = doc.get("transport", "xds")
            if transport not in TRANSPORTS:
                return "params.document.transport must be xds or mhd"
            mhd = services.get("mhd")
            if transport == "mhd" and not (isinstance(mhd, str) and mhd.startswith(("http://", "https://"))):
                return "services.mhd must be the http(s) base URL of the DMP's MHD (FHIR) service"
        if action == "dmp.replace" and not (isinstance(params.get("replaces"), str) and params["replaces"]):
            return "params.replaces must be the unique_id or entry_uuid returned by dmp.publish"
        return None

    def _patient(self, params: Mapping[str, Any]) -> StoredPatient:
        ref = params["patient"]
        patient = None
        if isinstance(ref.get("patient_id"), str):
            patient = self.vendor.patients.get(ref["patient_id"])
        elif isinstance(ref.get("ins"), str):
            patient = next((p for p in self.vendor.patients.all() if p.matricule == ref["ins"]), None)
        if patient is None:
            raise DmpActionFailed("unknown-patient", "no such patient in the DPI")
        # RNIV rule: only a qualified identity carries the INS, and the DMP is keyed by the INS.
        if patient.status != "QUAL" or not patient.matricule or not patient.oid:
            raise DmpActionFailed("identity-not-qualified", "the patient's identity is not qualified: no INS to send")
        return patient

    def has(self, fault: str) -> bool:
        return self.vendor.has(fault)

    def _dmp_patient_id(self, patient: StoredPatient) -> tuple[str, str]:
        """(id, OID) the DMP is keyed by: the INS; under the fault, the local IPP (in every transaction)."""
        if self.has("dmp.missing-ins"):
            return patient.ipp, OID_LOCAL_IPP
        assert patient.matricule is not None and patient.oid is not None  # guaranteed by _patient
        return patient.matricule, patient.oid

    # -- actions -----------------------------------------------------------------------------------

    def publish(self, params: dict[str, Any], services: dict[str, Any], action_id: str, base: str) -> dict[str, Any]:
        patient = self._patient(params)
        doc = params.get("document") or {}
        with self._lock:
            self._seq += 1
            seq = self._seq
        # DMP uniqueIds are OID^extension with an extension of at most 16 characters.
        set_id = f"{uuid.uuid4().int % 10**8:08d}{seq % 100:02d}"
        published = self._send(
            patient,
            kind=doc.get("kind", DEFAULT_KIND),
            confidentiality=doc.get("confidentiality", "N"),
            set_id=set_id,
            version=1,
            replaces=None,
            transport=doc.get("transport", "xds"),
            services=services,
            action_id=action_id,
        )
        return {"document": published.as_result()}

    def replace(self, params: dict[str, Any], services: dict[str, Any], action_id: str, base: str) -> dict[str, Any]:
        patient = self._patient(params)
        with self._lock:
            previous = self._published.get(params["replaces"])
        if previous is None:
            raise DmpActionFailed("unknown-document", f"no document {params['replaces']} was published by this DPI")
        doc = params.get("document") or {}
        published = self._send(
            patient,
            kind=doc.get("kind", previous.kind),
            confidentiality=doc.get("confidentiality", previous.confidentiality),
            set_id=previous.set_id,
            version=previous.version + 1,
            replaces=None if self.has("dmp.replace-without-rplc") else previous,
            transport=doc.get("transport", "xds"),
            services=services,
            action_id=action_id,
        )
        return {"document": published.as_result(), "replaced": previous.as_result()}

    def _send(
        self,
        patient: StoredPatient,
        *,
        kind: str,
        confidentiality: str,
        set_id: str,
        version: int,
        replaces: Published | None,
        transport: str,
        services: Mapping[str, Any],
        action_id: str,
    ) -> Published:
        """Produce the CDA and its metadata, send them over ``transport`` and remember the document."""
        doc_id = f"{set_id}V{version}"
        when = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=1))).replace(microsecond=0)
        cda = build_cda(
            patient,
            kind=kind,
            confidentiality=confidentiality,
            doc_id=doc_id,
            set_id=set_id,
            version=version,
            when=when,
            custodian=not self.has("dmp.cda-missing-custodian"),
            language="en-US" if self.has("dmp.cda-bad-language") else "fr-FR",
        )
        pid, pid_oid = self._dmp_patient_id(patient)
        try:
            meta = derive_document_metadata(
                cda, parse_xml(cda), patient_id=pid, patient_oid=pid_oid, faults=self.vendor.faults
            )
        except (InputError, ValueError) as exc:
            raise DmpActionFailed("metadata-error", f"no metadata for the document: {exc}") from None
        entry_uuid, unique_id = str(meta["entryUUID"]), str(meta["uniqueId"] or "")
        if transport == "mhd":
            fhir_id = self._send_mhd(cda, meta, replaces, services, action_id)
        else:
            self._send_xds(cda, meta, patient, replaces, services, action_id)
            fhir_id = None
        published = Published(
            unique_id, entry_uuid, set_id, version, kind, confidentiality, patient.id, fhir_id=fhir_id
        )
        with self._lock:
            self._published[unique_id] = published
            self._published[entry_uuid] = published
        return published

    def _send_xds(
        self,
        cda: bytes,
        meta: dict[str, Any],
        patient: StoredPatient,
        replaces: Published | None,
        services: Mapping[str, Any],
        action_id: str,
    ) -> None:
        """ITI-41 ProvideAndRegisterDocumentSet-b: SOAP 1.2, MTOM/XOP, signed VIHF."""
        from conformance.simulators.xds_builder import render

        assert patient.matricule is not None and patient.oid is not None  # guaranteed by _patient
        metadata = parse_xml(render(meta, replaces=replaces.entry_uuid if replaces else None))
        ins_cx = f"{patient.matricule}^^^&{patient.oid}&ISO^NH"
        security = build_security(ins_cx=ins_cx, lps=self.vendor.lps, services=services, faults=self.vendor.faults)
        soap11 = self.has("dmp.soap11")
        cid = f"doc1.{uuid.uuid4().hex[:12]}@segur-bench-vendor"
        body = (
            f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{NS_XDSB}">'
            + etree.tostring(metadata).decode("utf-8")
            + f"<xdsb:Document id={quoteattr(str(meta['entryUUID']))}>"
            + f'<xop:Include xmlns:xop="{NS_XOP}" href="cid:{cid}"/></xdsb:Document>'
            "</xdsb:ProvideAndRegisterDocumentSetRequest>"
        )
        url = str(services["dmp"])
        envelope = _envelope(ACTION_ITI41, url, security, body, soap11=soap11)
        payload, ctype = build_multipart(envelope, [(cid, "text/xml", cda)], soap_version="1.1" if soap11 else "1.2")
        if not soap11:
            ctype += f'; action="{ACTION_ITI41}"'
        resp = _post(url, payload, ctype, action_id, services, ACTION_ITI41)
        status, errors = _registry_status(_response_root(resp))
        if resp.status_code != 200 or status is None or not status.endswith(":Success"):
            detail = "; ".join(errors) or f"HTTP {resp.status_code}"
            raise DmpActionFailed("dmp-failure", f"the DMP refused the document: {detail}"[:300])

    def _send_mhd(
        self,
        cda: bytes,
        meta: dict[str, Any],
        replaces: Published | None,
        services: Mapping[str, Any],
        action_id: str,
    ) -> str | None:
        """ITI-65 Provide Document Bundle (PDSm comprehensive); returns the DocumentReference's logical id.

        No VIHF here: PDSm does not carry the SOAP security header (the DMP's FHIR access relies on
        other mechanisms), so the VIHF/SOAP faults of this module do not apply to this path.
        """
        from conformance.simulators.mhd_builder import FHIR_JSON, build_provide_bundle

        target = None
        if replaces is not None:
            # The replaced version as the DMP named it; else its entryUUID (an XDS-backed DMP's id).
            target = f"DocumentReference/{replaces.fhir_id or replaces.entry_uuid.removeprefix('urn:uuid:')}"
        bundle = build_provide_bundle(meta, cda, author=mhd_author(), replaces=target)
        url = str(services["mhd"]).rstrip("/")
        body = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
        resp = _post(url, body, FHIR_JSON + "; charset=utf-8", action_id, services, "", accept=FHIR_JSON)
        try:
            answer = parse_json(resp.content)
        except InputError as exc:
            raise DmpActionFailed(
                "dmp-error", f"the DMP answered HTTP {resp.status_code}, unreadable: {exc.message}"
            ) from None
        if (
            resp.status_code not in (200, 201)
            or not isinstance(answer, dict)
            or answer.get("type") != "transaction-response"
        ):
            issues = answer.get("issue") if isinstance(answer, dict) else None
            detail = (
                "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues or [] if isinstance(i, dict))
                or f"HTTP {resp.status_code}"
            )
            raise DmpActionFailed("dmp-failure", f"the DMP refused the bundle: {detail}"[:300])
        # Responses come in the order of the request's entries (FHIR transaction): the DocumentReference's.
        for sent, got in zip(bundle["entry"], answer.get("entry") or [], strict=False):
            if sent["resource"]["resourceType"] == "DocumentReference" and isinstance(got, dict):
                location = str((got.get("response") or {}).get("location") or "")
                parts = location.split("/")
                if len(parts) >= 2 and parts[0] == "DocumentReference":
                    return parts[1]
        return None

    def query(self, params: dict[str, Any], services: dict[str, Any], action_id: str, base: str) -> dict[str, Any]:
        """ITI-18 FindDocuments (Approved) for the patient's INS, then ITI-43 for each document found."""
        patient = self._patient(params)
        assert patient.matricule is not None and patient.oid is not None
        url = str(services["dmp"])
        ins_cx = f"{patient.matricule}^^^&{patient.oid}&ISO^NH"
        pid, pid_oid = self._dmp_patient_id(patient)
        cx = f"{pid}^^^&{pid_oid}&ISO^NH"
        security = build_security(ins_cx=ins_cx, lps=self.vendor.lps, services=services, faults=self.vendor.faults)
        soap11 = self.has("dmp.soap11")
        body = (
            f'<query:AdhocQueryRequest xmlns:query="{NS_QUERY}" xmlns:rim="{NS_RIM}">'
            '<query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>'
            f'<rim:AdhocQuery id="{QUERY_FIND_DOCUMENTS}">'
            f"{_query_slot('$XDSDocumentEntryPatientId', repr(cx))}"
            f"{_query_slot('$XDSDocumentEntryStatus', f'({STATUS_APPROVED!r})')}"
            "</rim:AdhocQuery></query:AdhocQueryRequest>"
        )
        ctype = _SOAP11_CT if soap11 else f'application/soap+xml; charset=utf-8; action="{ACTION_ITI18}"'
        resp = _post(
            url, _envelope(ACTION_ITI18, url, security, body, soap11=soap11), ctype, action_id, services, ACTION_ITI18
        )
        root = _response_root(resp)
        status, errors = _registry_status(root)
        if resp.status_code != 200 or status is None or not status.endswith(":Success"):
            raise DmpActionFailed("dmp-failure", f"the DMP query failed: {'; '.join(errors) or resp.status_code}"[:300])
        documents: list[dict[str, Any]] = []
        for eo in root.iter(f"{{{NS_RIM}}}ExtrinsicObject"):
            uid = _external_id(eo, SCHEME_UNIQUE_ID) or ""
            repo = next(
                (
                    v.text
                    for s in eo.findall(f"{{{NS_RIM}}}Slot")
                    if s.get("name") == "repositoryUniqueId"
                    for v in s.iter(f"{{{NS_RIM}}}Value")
                ),
                None,
            )
            known = self._published.get(uid)
            documents.append(
                {
                    "unique_id": uid,
                    "entry_uuid": eo.get("id"),
                    "status": eo.get("status"),
                    "repository_unique_id": repo,
                    "set_id": known.set_id if known else None,
                    "version": known.version if known else None,
                }
            )
        retrieved = (
            self._retrieve(documents, url, ins_cx, services, action_id)
            if documents and params.get("retrieve", True)
            else []
        )
        return {"documents": documents, "retrieved": retrieved}

    def _retrieve(
        self, documents: list[dict[str, Any]], url: str, cx: str, services: Mapping[str, Any], action_id: str
    ) -> list[dict[str, Any]]:
        """ITI-43 for the documents found, in one request; returns each document's unique id and size."""
        requests_xml = "".join(
            "<xdsb:DocumentRequest>"
            f"<xdsb:RepositoryUniqueId>{escape(self._repository(d))}</xdsb:RepositoryUniqueId>"
            f"<xdsb:DocumentUniqueId>{escape(d['unique_id'])}</xdsb:DocumentUniqueId>"
            "</xdsb:DocumentRequest>"
            for d in documents
        )
        body = (
            f'<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{NS_XDSB}">{requests_xml}</xdsb:RetrieveDocumentSetRequest>'
        )
        security = build_security(ins_cx=cx, lps=self.vendor.lps, services=services, faults=self.vendor.faults)
        soap11 = self.has("dmp.soap11")
        envelope = _envelope(ACTION_ITI43, url, security, body, soap11=soap11)
        # ITI-43 requests are sent as MTOM too (IHE requires the responder to accept both).
        payload, ctype = build_multipart(envelope, [], soap_version="1.1" if soap11 else "1.2")
        resp = _post(url, payload, ctype, action_id, services, ACTION_ITI43)
        ctype_in = resp.headers.get("content-type", "")
        if not ctype_in.lower().startswith("multipart/"):
            _status, errors = _registry_status(_response_root(resp))
            raise DmpActionFailed(
                "dmp-failure", f"the DMP retrieve failed: {'; '.join(errors) or resp.status_code}"[:300]
            )
        try:
            root_part, parts, _ = parse_multipart(resp.content, ctype_in)
            root = parse_xml(root_part.content)
        except InputError as exc:
            raise DmpActionFailed("dmp-error", f"unreadable retrieve answer: {exc.message}") from None
        out: list[dict[str, Any]] = []
        for dr in root.iter(f"{{{NS_XDSB}}}DocumentResponse"):
            uid = dr.findtext(f"{{{NS_XDSB}}}DocumentUniqueId") or ""
            inc = next(dr.iter(f"{{{NS_XOP}}}Include"), None)
            href = (inc.get("href") or "") if inc is not None else ""
            part = parts.get(unquote(href[4:])) if href.startswith("cid:") else None
            out.append({"unique_id": uid, "size": len(part.content) if part else None})
        return out

    def _repository(self, document: Mapping[str, Any]) -> str:
        repo = str(document.get("repository_unique_id") or "")
        if self.has("dmp.retrieve-wrong-repository"):
            return "1.2.250.1.999.9.9.9"
        return repo


_SOAP11_CT = "text/xml; charset=utf-8"


def _query_slot(name: str, value: str) -> str:
    """A stored-query parameter slot (values keep their ebXML quoting: ``'…'`` or ``('…')``)."""
    values = f"<rim:ValueList><rim:Value>{escape(value)}</rim:Value></rim:ValueList>"
    return f"<rim:Slot name={quoteattr(name)}>{values}</rim:Slot>"


__all__ = ["AUTHOR", "FINESS", "KINDS", "RPPS", "DmpActionFailed", "DmpSide", "Published", "build_cda", "luhn_digit"]
