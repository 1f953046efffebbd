"""Build conformant ITI-41 metadata (ebRIM ``SubmitObjectsRequest``) for a CI-SIS CDA document.

Why here: the reference vendor's DMP client and the tests need *valid* metadata derived from a CDA
header by the CI-SIS correspondence (the same one :mod:`conformance.checks.xds` verifies), and a
way to break exactly one field (``overrides``) to prove each rule.  Every value comes from the CDA
header and the NOS correspondences (ASS_X04 for classCode, ASS_A11/A12 for formatCode); nothing is
invented except identifiers of the submission itself (deterministic, derived from the document).

``overrides`` keys (value ``None`` removes the element):

- document entry: ``entryUUID``, ``mimeType``, ``title``, ``creationTime``, ``serviceStartTime``,
  ``serviceStopTime``, ``languageCode``, ``sourcePatientId``, ``sourcePatientInfo`` (list),
  ``legalAuthenticator``, ``hash``, ``size``, ``patientId``, ``uniqueId``;
  coded values ``classCode``, ``typeCode``, ``formatCode``, ``healthcareFacilityTypeCode``,
  ``practiceSettingCode`` as ``(code, scheme[, display])``, ``confidentialityCode`` as a list of those;
  author slots ``authorPerson``, ``authorInstitution``, ``authorRole``, ``authorSpecialty``;
- submission set: ``ss.id``, ``ss.submissionTime``, ``ss.patientId``, ``ss.uniqueId``, ``ss.sourceId``,
  ``ss.contentTypeCode``, ``ss.authorPerson``;
- associations: ``hasMember`` (``None`` drops it), ``submissionSetStatus``, ``rplcType``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from conformance.checks.dmp_metadata import (
    CONFIDENTIALITY_OID,
    RPPS_OID,
    STRUCTURE_OID,
    V3,
    DmpTerminology,
    cda_facts,
    cda_ts_utc,
    expected_formats,
    find_clinical_document,
    sha1_hex,
    shipped_terminology,
)
from conformance.checks.ins import INS_OIDS
from conformance.checks.xds import (
    DE_AUTHOR,
    DE_CLASS,
    DE_CONFIDENTIALITY,
    DE_FACILITY,
    DE_FORMAT,
    DE_PATIENT_ID,
    DE_PRACTICE,
    DE_TYPE,
    DE_UNIQUE_ID,
    DOCUMENT_ENTRY_STABLE,
    HAS_MEMBER,
    LCM,
    RIM,
    RPLC_TYPE,
    SS_AUTHOR,
    SS_CONTENT_TYPE,
    SS_PATIENT_ID,
    SS_SOURCE_ID,
    SS_UNIQUE_ID,
    SUBMISSION_SET_NODE,
    XDSB,
)

_MISSING = object()
CLASS_OID = "1.2.250.1.213.1.1.4.1"
R02_OID = "1.2.250.1.71.4.2.4"
_NS = uuid.UUID("6f1c7a52-3f0e-4f7c-9d7e-5e9b1d0b7a11")  # segur-bench namespace for derived ids


def _oid_from(seed: str) -> str:
    """A stable OID under the UUID arc 2.25 (ITU-T X.667) for ids the submission itself needs."""
    return f"2.25.{uuid.uuid5(_NS, seed).int}"


def _text(el: Any) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _cda_patient(doc: Any) -> tuple[str | None, list[str]]:
    """(local sourcePatientId CX, sourcePatientInfo PID lines) from recordTarget."""
    ns = {"v": V3}
    role = doc.find("v:recordTarget/v:patientRole", ns)
    if role is None:
        return None, []
    local = next((i for i in role.findall("v:id", ns) if i.get("root") not in INS_OIDS and i.get("extension")), None)
    spid = f"{local.get('extension')}^^^&{local.get('root')}&ISO^PI" if local is not None else None
    info: list[str] = []
    family = doc.find("v:recordTarget/v:patientRole/v:patient/v:name/v:family", ns)
    given = doc.find("v:recordTarget/v:patientRole/v:patient/v:name/v:given", ns)
    if family is not None:
        info.append(f"PID-5|{_text(family)}^{_text(given)}^^^^^L")
    birth = doc.find("v:recordTarget/v:patientRole/v:patient/v:birthTime", ns)
    if birth is not None and birth.get("value"):
        info.append(f"PID-7|{birth.get('value')[:8]}")
    sex = doc.find("v:recordTarget/v:patientRole/v:patient/v:administrativeGenderCode", ns)
    if sex is not None and sex.get("code"):
        info.append(f"PID-8|{sex.get('code')}")
    return spid, info


def _person_xcn(doc: Any, path: str, pid: str | None, oid: str | None) -> str | None:
    ns = {"v": V3}
    if not pid:
        return None
    family = _text(doc.find(f"{path}/v:assignedPerson/v:name/v:family", ns))
    given = _text(doc.find(f"{path}/v:assignedPerson/v:name/v:given", ns))
    kind = "IDNPS" if pid.startswith("8") else "RI"
    return f"{pid}^{family}^{given}^^^^^^&{oid or RPPS_OID}&ISO^D^^^{kind}"


def _format_scheme(code: str, term: DmpTerminology) -> str:
    for vid in ("J60", "J10"):
        oids = sorted(o for o in term.valuesets[vid].codes.get(code, ()) if o and not o.startswith("nos:"))
        if oids:
            return oids[0]
    return "1.3.6.1.4.1.19376.1.2.3" if code.startswith("urn:ihe") else "1.2.250.1.213.1.1.4.2.282"


def derive_metadata(
    document: bytes,
    cda_root: Any,
    *,
    patient_ins: str,
    ins_oid: str,
    author: dict[str, Any],
    term: DmpTerminology | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The flat metadata (keys as in the module docstring) the CI-SIS derives from this CDA."""
    term = term or shipped_terminology()
    facts = cda_facts(cda_root)
    doc = find_clinical_document(cda_root)
    if facts is None or doc is None:
        raise ValueError("no ClinicalDocument in cda_root")
    digest = sha1_hex(document)
    meta: dict[str, Any] = {}
    meta["entryUUID"] = f"urn:uuid:{uuid.uuid5(_NS, 'de:' + digest)}"
    meta["mimeType"] = "text/xml"
    meta["title"] = facts.title or "Document"
    meta["creationTime"] = cda_ts_utc(facts.effective_time)
    if facts.services:
        meta["serviceStartTime"], meta["serviceStopTime"] = facts.services[0]
    meta["languageCode"] = facts.language or "fr-FR"
    spid, info = _cda_patient(doc)
    meta["patientId"] = f"{patient_ins}^^^&{ins_oid}&ISO^NH"
    meta["sourcePatientId"] = spid or meta["patientId"]
    meta["sourcePatientInfo"] = [f"PID-3|{meta['patientId']}", *info]
    if facts.legal_authenticator:
        root, ext = facts.legal_authenticator
        meta["legalAuthenticator"] = _person_xcn(doc, "v:legalAuthenticator/v:assignedEntity", ext, root)
    meta["hash"] = digest
    meta["size"] = str(len(document))
    meta["uniqueId"] = facts.unique_id
    meta["typeCode"] = (facts.code, facts.code_system)
    classes = sorted(term.type_to_class.get(facts.code or "", ()))
    meta["classCode"] = (classes[0], CLASS_OID) if classes else None
    meta["confidentialityCode"] = [(facts.confidentiality or "N", CONFIDENTIALITY_OID)]
    formats = _preferred_format(facts, term)
    meta["formatCode"] = (formats, _format_scheme(formats, term)) if formats else None
    if facts.facility:
        meta["healthcareFacilityTypeCode"] = facts.facility
    if facts.practice:
        meta["practiceSettingCode"] = facts.practice[0]

    # Author: the dict wins, the CDA's first author fills the gaps.
    first = facts.authors[0] if facts.authors else (None, None)
    pid = author.get("id") or first[1]
    poid = author.get("oid") or first[0] or RPPS_OID
    person = author.get("person") or _person_xcn(doc, "v:author/v:assignedAuthor", pid, poid)
    if author.get("family") and pid:
        person = f"{pid}^{author['family']}^{author.get('given', '')}^^^^^^&{poid}&ISO^D^^^IDNPS"
    meta["authorPerson"] = person
    inst = author.get("institution")
    if inst is None and facts.author_institution and facts.author_institution[1]:
        name, ext, _root = facts.author_institution
        inst = f"{name or 'Structure'}^^^^^&{STRUCTURE_OID}&ISO^IDNST^^^{ext}"
    meta["authorInstitution"] = inst
    spec = author.get("specialty")
    if spec is None and facts.author_specialty and facts.author_specialty[0]:
        code, display, system = facts.author_specialty
        spec = f"{code}^{display or ''}^{system}"
    meta["authorSpecialty"] = spec
    meta["authorRole"] = author.get("role")

    ts = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    meta["ss.id"] = f"urn:uuid:{uuid.uuid5(_NS, 'ss:' + digest)}"
    meta["ss.submissionTime"] = ts
    meta["ss.patientId"] = meta["patientId"]
    meta["ss.uniqueId"] = _oid_from("ss:" + digest + ts)
    meta["ss.sourceId"] = author.get("source_id") or _oid_from("source:segur-bench")
    meta["ss.contentTypeCode"] = _content_type(facts, term)
    meta["ss.authorPerson"] = person
    meta["hasMember"] = True
    meta["submissionSetStatus"] = "Original"
    meta["rplcType"] = RPLC_TYPE
    return meta


def _preferred_format(facts: Any, term: DmpTerminology) -> str | None:
    """The formatCode of the most specific model: the last templateId (volet) with a correspondence."""
    allowed = expected_formats(facts, term)
    if not allowed:
        return None
    for tid in reversed(facts.template_ids):
        if tid in term.template_to_format or (tid == "1.3.6.1.4.1.19376.1.2.20"):
            cands = sorted(set(term.template_to_format.get(tid, ())) & allowed) or sorted(allowed)
            dmp = [c for c in cands if c in term.valuesets["J60"].codes]
            return (dmp or cands)[0]
    return sorted(allowed)[0]


def _content_type(facts: Any, term: DmpTerminology) -> tuple[str, str]:
    j59 = term.valuesets["J59"].codes
    if facts.facility and facts.facility[0] in j59:
        return facts.facility[0], R02_OID
    sa = sorted(c for c, oids in j59.items() if R02_OID in oids)
    return (sa[0], R02_OID) if sa else ("EXP_PATIENT", "1.2.250.1.213.1.1.4.6")


# --- Serialisation -------------------------------------------------------------------------------------


def _el(parent: Any, tag: str, **attrs: str | None) -> Any:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", {k: v for k, v in attrs.items() if v is not None})


def _slot(parent: Any, name: str, values: Any) -> None:
    if values is None:
        return
    if isinstance(values, str):
        values = [values]
    slot = _el(parent, "Slot", name=name)
    vl = _el(slot, "ValueList")
    for v in values:
        _el(vl, "Value").text = v


def _name(parent: Any, text: str | None) -> None:
    if text is None:
        return
    _el(_el(parent, "Name"), "LocalizedString", value=text)


def _classification(parent: Any, scheme: str, obj: str, coded: Any, cid: str) -> None:
    if coded is None:
        return
    code, cscheme = coded[0], coded[1]
    display = coded[2] if len(coded) > 2 else code
    cl = _el(
        parent, "Classification", id=cid, classificationScheme=scheme, classifiedObject=obj, nodeRepresentation=code
    )
    _name(cl, display)
    _slot(cl, "codingScheme", cscheme)


def _ext(parent: Any, scheme: str, obj: str, value: str | None, name: str, eid: str) -> None:
    if value is None:
        return
    e = _el(parent, "ExternalIdentifier", id=eid, identificationScheme=scheme, registryObject=obj, value=value)
    _name(e, name)


def _author(parent: Any, scheme: str, obj: str, person: str | None, meta: dict[str, Any], cid: str) -> None:
    if person is None and meta.get("authorInstitution") is None:
        return
    cl = _el(parent, "Classification", id=cid, classificationScheme=scheme, classifiedObject=obj, nodeRepresentation="")
    _slot(cl, "authorPerson", person)
    _slot(cl, "authorInstitution", meta.get("authorInstitution"))
    _slot(cl, "authorRole", meta.get("authorRole"))
    _slot(cl, "authorSpecialty", meta.get("authorSpecialty"))


def render(meta: dict[str, Any], *, replaces: str | None = None) -> bytes:
    """Serialise flat metadata as an ``lcm:SubmitObjectsRequest``."""
    root = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    rol = _el(root, "RegistryObjectList")
    de_id = meta["entryUUID"] or "Document01"
    eo = _el(rol, "ExtrinsicObject", id=de_id, mimeType=meta.get("mimeType"), objectType=DOCUMENT_ENTRY_STABLE)
    for name in (
        "creationTime",
        "hash",
        "languageCode",
        "legalAuthenticator",
        "serviceStartTime",
        "serviceStopTime",
        "size",
        "sourcePatientId",
        "sourcePatientInfo",
    ):
        _slot(eo, name, meta.get(name))
    _name(eo, meta.get("title"))
    _author(eo, DE_AUTHOR, de_id, meta.get("authorPerson"), meta, "cl-de-author")
    _classification(eo, DE_CLASS, de_id, meta.get("classCode"), "cl-de-class")
    for n, conf in enumerate(meta.get("confidentialityCode") or [], 1):
        _classification(eo, DE_CONFIDENTIALITY, de_id, conf, f"cl-de-conf-{n}")
    _classification(eo, DE_FORMAT, de_id, meta.get("formatCode"), "cl-de-format")
    _classification(eo, DE_FACILITY, de_id, meta.get("healthcareFacilityTypeCode"), "cl-de-facility")
    _classification(eo, DE_PRACTICE, de_id, meta.get("practiceSettingCode"), "cl-de-practice")
    _classification(eo, DE_TYPE, de_id, meta.get("typeCode"), "cl-de-type")
    _ext(eo, DE_PATIENT_ID, de_id, meta.get("patientId"), "XDSDocumentEntry.patientId", "ei-de-patient")
    _ext(eo, DE_UNIQUE_ID, de_id, meta.get("uniqueId"), "XDSDocumentEntry.uniqueId", "ei-de-unique")

    ss_id = meta["ss.id"]
    rp = _el(rol, "RegistryPackage", id=ss_id)
    _slot(rp, "submissionTime", meta.get("ss.submissionTime"))
    _author(rp, SS_AUTHOR, ss_id, meta.get("ss.authorPerson"), meta, "cl-ss-author")
    _classification(rp, SS_CONTENT_TYPE, ss_id, meta.get("ss.contentTypeCode"), "cl-ss-content")
    _ext(rp, SS_UNIQUE_ID, ss_id, meta.get("ss.uniqueId"), "XDSSubmissionSet.uniqueId", "ei-ss-unique")
    _ext(rp, SS_SOURCE_ID, ss_id, meta.get("ss.sourceId"), "XDSSubmissionSet.sourceId", "ei-ss-source")
    _ext(rp, SS_PATIENT_ID, ss_id, meta.get("ss.patientId"), "XDSSubmissionSet.patientId", "ei-ss-patient")
    _el(rol, "Classification", id="cl-ss-node", classifiedObject=ss_id, classificationNode=SUBMISSION_SET_NODE)
    if meta.get("hasMember"):
        a = _el(rol, "Association", id="as-member", associationType=HAS_MEMBER, sourceObject=ss_id, targetObject=de_id)
        _slot(a, "SubmissionSetStatus", meta.get("submissionSetStatus"))
    if replaces:
        _el(
            rol,
            "Association",
            id="as-rplc",
            associationType=meta.get("rplcType") or RPLC_TYPE,
            sourceObject=de_id,
            targetObject=replaces,
        )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def build_submit_objects(
    document: bytes,
    cda_root: Any,
    *,
    patient_ins: str,
    ins_oid: str,
    author: dict[str, Any],
    replaces: str | None = None,
    overrides: dict[str, Any] | None = None,
    terminology: DmpTerminology | None = None,
    now: datetime | None = None,
) -> bytes:
    """A conformant ITI-41 ``SubmitObjectsRequest`` for ``document`` (whose parsed root is ``cda_root``).

    ``author`` may give ``id``/``oid``/``family``/``given``/``person`` (a full XCN), ``institution``
    (XON), ``specialty`` (``code^display^OID``), ``role`` and ``source_id``; missing parts come from the
    CDA's first author.  ``replaces`` is the entryUUID (``urn:uuid:…``) of the version replaced (RPLC).
    Raises ``ValueError`` when the CDA gives no formatCode correspondence and none is overridden.
    """
    meta = derive_metadata(
        document, cda_root, patient_ins=patient_ins, ins_oid=ins_oid, author=author, term=terminology, now=now
    )
    for key, value in (overrides or {}).items():
        meta[key] = value
    if meta.get("formatCode", _MISSING) is None and "formatCode" not in (overrides or {}):
        raise ValueError("no ASS_A11/A12 formatCode for this CDA model: pass overrides={'formatCode': (code, scheme)}")
    return render(meta, replaces=replaces)


def provide_and_register(submit_objects: bytes, document: bytes) -> bytes:
    """Wrap a SubmitObjectsRequest and the document (inline base64) in an ITI-41 request body."""
    sor = etree.fromstring(submit_objects)
    de = sor.find(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")
    root = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    root.append(sor)
    d = etree.SubElement(root, f"{{{XDSB}}}Document", id=de.get("id") if de is not None else "Document01")
    d.text = base64.b64encode(document).decode("ascii")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


__all__ = ["build_submit_objects", "derive_metadata", "provide_and_register", "render"]
