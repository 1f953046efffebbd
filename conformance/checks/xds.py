"""XDS.b ITI-41 submission metadata (ebRIM 3.0 ``SubmitObjectsRequest``) as the DMP requires it.

:func:`parse_submission` reads a ``ProvideAndRegisterDocumentSetRequest`` (or a bare
``lcm:SubmitObjectsRequest``, or any element containing one, e.g. a SOAP envelope) into the shared
model of :mod:`conformance.checks.dmp_metadata`, and records what is *structurally* wrong in ebRIM
terms (missing slot, classification, external identifier, association) under ``XDS.*`` rules.  The
semantic rules (value sets, INS, authors, ASS_X04, RPLC, CDA consistency) are shared with MHD.

Every conformant spelling is accepted: symbolic ids (``Document01``) or ``urn:uuid:`` ids in any
case, slots and classifications in any order, any namespace prefixes, the submission set classified
by a top-level or nested ``Classification``; the classification/identification scheme UUIDs are
those of IHE ITI TF-3 §4.2.5 (checked against several public XDS implementations).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from conformance.checks.dmp_metadata import (
    AuthorRef,
    Coded,
    DmpTerminology,
    DocumentEntry,
    Replacement,
    Submission,
    SubmissionSet,
    cda_consistency,
    cda_rules,
    components,
    dtm_problem,
    is_oid,
    parse_cx,
    semantic_findings,
    semantic_rules,
    shipped_terminology,
)
from conformance.checks.registry import check
from conformance.model import Finding
from conformance.parsing import InputError, parse_xml

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"

# IHE ITI TF-3 §4.2.5 — object types, classification and identification schemes.
DOCUMENT_ENTRY_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DOCUMENT_ENTRY_ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"

DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC_TYPE = "urn:ihe:iti:2007:AssociationType:RPLC"

# --- Rule ids (structure, in ebRIM terms) ---------------------------------------------------------------

STRUCTURE = "XDS.STRUCTURE"
SLOT_MISSING = "XDS.SLOT.MISSING"
SLOT_FORMAT = "XDS.SLOT.FORMAT"
CLASSIFICATION = "XDS.CLASSIFICATION"
EXTID = "XDS.EXTID"
ASSOCIATION = "XDS.ASSOCIATION"
MIMETYPE = "XDS.MIMETYPE"
TITLE = "XDS.TITLE"
DOCUMENT = "XDS.DOCUMENT"

STRUCTURE_RULES: dict[str, str] = {
    STRUCTURE: "SubmitObjectsRequest : un lot de soumission (RegistryPackage classé SubmissionSet) "
    "et au moins une fiche",
    SLOT_MISSING: "Slots requis : creationTime, languageCode, sourcePatientId, sourcePatientInfo, serviceStartTime, "
    "submissionTime",
    SLOT_FORMAT: "Slots bien formés (DTM UTC, langue, hash SHA-1 hex, size entier, valeur unique)",
    CLASSIFICATION: "Classifications requises, une seule, avec nodeRepresentation et codingScheme",
    EXTID: "ExternalIdentifier requis : patientId, uniqueId (fiche) ; patientId, uniqueId, sourceId (lot)",
    ASSOCIATION: "Association HasMember du lot vers chaque fiche (SubmissionSetStatus Original)",
    MIMETYPE: "mimeType de la fiche présent (text/xml pour un CDA)",
    TITLE: "Titre (rim:Name) de la fiche présent",
    DOCUMENT: "Chaque fiche a son xdsb:Document dans ProvideAndRegisterDocumentSetRequest, et réciproquement",
}
XDS_RULES: dict[str, str] = {**STRUCTURE_RULES, **semantic_rules("XDS")}
XDS_CDA_RULES: dict[str, str] = cda_rules("XDS")

DE_CODED: dict[str, tuple[str, str]] = {
    # scheme → (attribute of DocumentEntry, human name); cardinality 1..1 except confidentiality 1..*
    DE_CLASS: ("class_code", "classCode"),
    DE_TYPE: ("type_code", "typeCode"),
    DE_FORMAT: ("format_code", "formatCode"),
    DE_FACILITY: ("facility", "healthcareFacilityTypeCode"),
    DE_PRACTICE: ("practice", "practiceSettingCode"),
}
DE_REQUIRED_SLOTS = ("creationTime", "languageCode", "sourcePatientId", "sourcePatientInfo", "serviceStartTime")
DE_SINGLE_SLOTS = (
    "creationTime",
    "languageCode",
    "sourcePatientId",
    "serviceStartTime",
    "serviceStopTime",
    "hash",
    "size",
    "legalAuthenticator",
)
TIME_SLOTS = ("creationTime", "serviceStartTime", "serviceStopTime")


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _norm_id(value: str | None) -> str:
    """Ids compare exactly, except ``urn:uuid:`` ones which are case-insensitive."""
    if value is None:
        return ""
    return value.lower() if value.lower().startswith("urn:uuid:") else value


@dataclass(slots=True)
class _Obj:
    """A registry object's slots, classifications and external identifiers, as read."""

    el: Any
    id: str
    location: str
    slots: dict[str, list[str]] = field(default_factory=dict)
    classifications: list[Any] = field(default_factory=list)
    ext_ids: list[Any] = field(default_factory=list)


def _slots(el: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall(_q(RIM, "Slot")):
        name = slot.get("name") or ""
        values = [(v.text or "").strip() for v in slot.iterfind(f"{{{RIM}}}ValueList/{{{RIM}}}Value")]
        out.setdefault(name, []).extend(values)
    return out


def _name(el: Any) -> str | None:
    ls = el.find(f"{{{RIM}}}Name/{{{RIM}}}LocalizedString")
    return ls.get("value") if ls is not None else None


def _coded(cl: Any, loc: str, shape: list[Finding], what: str) -> Coded:
    code = cl.get("nodeRepresentation")
    scheme_vals = _slots(cl).get("codingScheme") or []
    if not code:
        shape.append(Finding(CLASSIFICATION, "error", f"{what}: nodeRepresentation (the code) is empty", loc))
    if len(scheme_vals) != 1 or not scheme_vals[0]:
        shape.append(Finding(CLASSIFICATION, "error", f"{what}: exactly one codingScheme slot value required", loc))
    return Coded(code or None, scheme_vals[0] if scheme_vals else None, _name(cl), loc)


def _author(cl: Any, loc: str) -> AuthorRef:
    slots = _slots(cl)
    a = AuthorRef(location=loc)
    persons = slots.get("authorPerson") or []
    if len(persons) > 1:
        a.problems.append("authorPerson must have a single value")
    if persons:
        a.person = persons[0]
        comps = components(persons[0])
        a.person_id = comps[0] or None
        if len(comps) > 8 and comps[8]:
            sub = comps[8].split("&")
            if len(sub) == 3 and not sub[0] and sub[2] == "ISO" and is_oid(sub[1]):
                a.person_oid = sub[1]
            else:
                a.problems.append(f"authorPerson XCN.9 {comps[8]!r} must be '&<OID>&ISO'")
        elif a.person_id:
            a.problems.append(f"authorPerson {persons[0]!r} has no assigning authority (XCN.9 &OID&ISO)")
    else:
        a.problems.append("author without authorPerson")
    for inst in slots.get("authorInstitution") or []:
        a.institutions.append(inst)
        comps = components(inst)
        if not comps[0]:
            a.problems.append(f"authorInstitution {inst!r}: XON.1 (organisation name) is empty")
        if len(comps) > 9 and comps[9]:
            sub = comps[5].split("&") if len(comps) > 5 else []
            if len(sub) != 3 or not is_oid(sub[1]):
                a.problems.append(f"authorInstitution {inst!r}: XON.6 must be '&<OID>&ISO' when XON.10 carries an id")
    a.roles = list(slots.get("authorRole") or [])
    for n, spec in enumerate(slots.get("authorSpecialty") or [], 1):
        comps = components(spec)
        if len(comps) < 3 or not comps[0] or not comps[2]:
            a.problems.append(f"authorSpecialty {spec!r} must be code^display^codeSystemOID")
        else:
            a.specialties.append(
                Coded(
                    comps[0],
                    comps[2],
                    comps[1] or None,
                    f"{loc}/rim:Slot[@name='authorSpecialty']/rim:ValueList/rim:Value[{n}]",
                )
            )
    return a


def _one(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _time(value: list[str] | None, name: str, loc: str, shape: list[Finding]) -> str | None:
    if not value:
        return None
    problem = dtm_problem(value[0])
    if problem:
        shape.append(Finding(SLOT_FORMAT, "error", f"{name}: {problem}", loc))
        return None
    return value[0]


def parse_submission(root: Any) -> Submission:
    """Read an ITI-41 request (or a bare SubmitObjectsRequest) into the shared metadata model.

    Raises :class:`InputError` (``INPUT.XDS``) when there is no ``SubmitObjectsRequest`` at all:
    that is not a submission with defects but something else.
    """
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    sor_tag = _q(LCM, "SubmitObjectsRequest")
    sor = root if root.tag == sor_tag else next(root.iter(sor_tag), None)
    if sor is None:
        raise InputError("INPUT.XDS", "no lcm:SubmitObjectsRequest (ebRIM 3.0) in this XML document")
    shape: list[Finding] = []
    rol = sor.find(_q(RIM, "RegistryObjectList"))
    base = "//lcm:SubmitObjectsRequest/rim:RegistryObjectList"
    if rol is None:
        shape.append(
            Finding(
                STRUCTURE, "error", "SubmitObjectsRequest without rim:RegistryObjectList", "//lcm:SubmitObjectsRequest"
            )
        )
        return Submission("xds", None, [], shape=shape)

    objs: dict[str, _Obj] = {}
    extrinsic: list[_Obj] = []
    packages: list[_Obj] = []
    associations: list[Any] = []
    loose_cls: list[Any] = []
    for el in rol:
        if not isinstance(el.tag, str):
            continue
        tag = etree.QName(el).localname
        oid = el.get("id") or ""
        if tag in ("ExtrinsicObject", "RegistryPackage"):
            o = _Obj(el, oid, f"{base}/rim:{tag}[@id='{oid}']", _slots(el))
            o.classifications = el.findall(_q(RIM, "Classification"))
            o.ext_ids = el.findall(_q(RIM, "ExternalIdentifier"))
            objs[_norm_id(oid)] = o
            (extrinsic if tag == "ExtrinsicObject" else packages).append(o)
        elif tag == "Association":
            associations.append(el)
        elif tag == "Classification":
            loose_cls.append(el)
    # Top-level classifications (submission set node, or codes written outside their object).
    ss_ids: set[str] = set()
    folder_ids: set[str] = set()
    for cl in loose_cls:
        target = _norm_id(cl.get("classifiedObject"))
        node = cl.get("classificationNode")
        if node == SUBMISSION_SET_NODE:
            ss_ids.add(target)
        elif node == FOLDER_NODE:
            folder_ids.add(target)
        elif target in objs:
            objs[target].classifications.append(cl)
    for pkg in packages:
        for cl in pkg.classifications:
            if cl.get("classificationNode") == SUBMISSION_SET_NODE:
                ss_ids.add(_norm_id(pkg.id))
            elif cl.get("classificationNode") == FOLDER_NODE:
                folder_ids.add(_norm_id(pkg.id))

    ss_objs = [p for p in packages if _norm_id(p.id) in ss_ids]
    if not ss_objs:
        unclassified = [p for p in packages if _norm_id(p.id) not in folder_ids]
        shape.append(
            Finding(
                STRUCTURE,
                "error",
                "no RegistryPackage classified as SubmissionSet (classificationNode " + SUBMISSION_SET_NODE + ")",
                unclassified[0].location if unclassified else base,
            )
        )
    elif len(ss_objs) > 1:
        shape.append(
            Finding(
                STRUCTURE,
                "error",
                f"{len(ss_objs)} submission sets in one request (exactly one expected)",
                ss_objs[1].location,
            )
        )

    documents: list[DocumentEntry] = []
    for o in extrinsic:
        ot = o.el.get("objectType")
        if ot != DOCUMENT_ENTRY_STABLE:
            what = (
                "on-demand entries cannot be provided by ITI-41"
                if ot == DOCUMENT_ENTRY_ON_DEMAND
                else f"objectType {ot!r}"
            )
            shape.append(
                Finding(
                    STRUCTURE,
                    "error",
                    f"ExtrinsicObject {o.id!r}: {what} (stable DocumentEntry {DOCUMENT_ENTRY_STABLE} expected)",
                    o.location,
                )
            )
            continue
        documents.append(_document_entry(o, shape))
    if not documents and not any(f.rule == STRUCTURE and "ExtrinsicObject" in f.message for f in shape):
        shape.append(Finding(STRUCTURE, "error", "no DocumentEntry (ExtrinsicObject) in the submission", base))

    ss = _submission_set(ss_objs[0], shape) if ss_objs else None
    replacements = _associations(associations, ss, documents, objs, base, shape)
    _attach_documents(root, documents, shape)
    return Submission("xds", ss, documents, replacements, shape)


def _document_entry(o: _Obj, shape: list[Finding]) -> DocumentEntry:
    de = DocumentEntry(id=o.id, location=o.location)
    slot_loc = lambda n: f"{o.location}/rim:Slot[@name='{n}']"  # noqa: E731
    for name in DE_REQUIRED_SLOTS:
        if not any(v for v in o.slots.get(name, [])):
            shape.append(
                Finding(
                    SLOT_MISSING,
                    "error",
                    f"DocumentEntry {o.id!r}: required slot {name} is missing or empty",
                    o.location,
                )
            )
    for name in DE_SINGLE_SLOTS:
        if len(o.slots.get(name, [])) > 1:
            shape.append(Finding(SLOT_FORMAT, "error", f"slot {name} must have a single value", slot_loc(name)))
    for name in (*TIME_SLOTS, "languageCode", "hash", "size", "sourcePatientId"):
        de.locations[name] = slot_loc(name)
    de.creation_time = _time(o.slots.get("creationTime"), "creationTime", slot_loc("creationTime"), shape)
    de.service_start = _time(o.slots.get("serviceStartTime"), "serviceStartTime", slot_loc("serviceStartTime"), shape)
    de.service_stop = _time(o.slots.get("serviceStopTime"), "serviceStopTime", slot_loc("serviceStopTime"), shape)
    lang = _one(o.slots.get("languageCode"))
    if lang:
        de.language = lang
        if lang.lower() != "fr-fr" and "-" not in lang:
            shape.append(
                Finding(
                    SLOT_FORMAT,
                    "error",
                    f"languageCode {lang!r} is not an RFC 5646 tag such as fr-FR",
                    slot_loc("languageCode"),
                )
            )
    spid = _one(o.slots.get("sourcePatientId"))
    if spid:
        comps = components(spid)
        if not comps[0] or len(comps) < 4 or not comps[3]:
            shape.append(
                Finding(
                    SLOT_FORMAT,
                    "error",
                    f"sourcePatientId {spid!r} must be a CX id^^^&OID&ISO",
                    slot_loc("sourcePatientId"),
                )
            )
    h = _one(o.slots.get("hash"))
    if h is not None:
        if len(h) == 40 and all(c in "0123456789abcdefABCDEF" for c in h):
            de.hash = h.lower()
        else:
            shape.append(
                Finding("XDS.HASH", "error", f"hash {h!r} is not a 40-digit hexadecimal SHA-1", slot_loc("hash"))
            )
    size = _one(o.slots.get("size"))
    if size is not None:
        if size.isdigit():
            de.size = int(size)
        else:
            shape.append(Finding("XDS.SIZE", "error", f"size {size!r} is not a non-negative integer", slot_loc("size")))
    de.mime_type = o.el.get("mimeType")
    if not de.mime_type:
        shape.append(Finding(MIMETYPE, "error", f"DocumentEntry {o.id!r} without mimeType", o.location))
    de.title = _name(o.el)
    if not de.title or not de.title.strip():
        shape.append(Finding(TITLE, "error", f"DocumentEntry {o.id!r} without a title (rim:Name)", o.location))

    seen: dict[str, int] = {}
    for cl in o.classifications:
        scheme = cl.get("classificationScheme")
        if scheme is None:
            continue
        seen[scheme] = seen.get(scheme, 0) + 1
        loc = f"{o.location}/rim:Classification[@classificationScheme='{scheme}']"
        if scheme in DE_CODED:
            attr, what = DE_CODED[scheme]
            coded = _coded(cl, loc, shape, what)
            if seen[scheme] > 1:
                shape.append(
                    Finding(CLASSIFICATION, "error", f"{what} given {seen[scheme]} times (exactly one expected)", loc)
                )
            else:
                setattr(de, attr, coded)
        elif scheme == DE_CONFIDENTIALITY:
            de.confidentiality.append(_coded(cl, loc, shape, "confidentialityCode"))
        elif scheme == DE_AUTHOR:
            de.authors.append(_author(cl, f"{loc}[{seen[scheme]}]" if seen[scheme] > 1 else loc))
    for scheme, (_attr, what) in DE_CODED.items():
        if scheme not in seen:
            shape.append(
                Finding(
                    CLASSIFICATION, "error", f"DocumentEntry {o.id!r}: {what} classification is missing", o.location
                )
            )
    if DE_CONFIDENTIALITY not in seen:
        shape.append(
            Finding(
                CLASSIFICATION,
                "error",
                f"DocumentEntry {o.id!r}: confidentialityCode classification is missing",
                o.location,
            )
        )
    if DE_AUTHOR not in seen:
        shape.append(Finding("XDS.AUTHOR", "error", f"DocumentEntry {o.id!r}: no author classification", o.location))

    for scheme, label, attr in (
        (DE_PATIENT_ID, "XDSDocumentEntry.patientId", "patient"),
        (DE_UNIQUE_ID, "XDSDocumentEntry.uniqueId", "unique_id"),
    ):
        found = [e for e in o.ext_ids if e.get("identificationScheme") == scheme]
        loc = f"{o.location}/rim:ExternalIdentifier[@identificationScheme='{scheme}']"
        de.locations["uniqueId" if attr == "unique_id" else "patientId"] = loc
        if len(found) != 1 or not found[0].get("value"):
            shape.append(
                Finding(
                    EXTID,
                    "error",
                    f"DocumentEntry {o.id!r}: exactly one {label} ExternalIdentifier with a value required "
                    f"(found {len(found)})",
                    o.location,
                )
            )
            if not found or not found[0].get("value"):
                continue
        value = found[0].get("value")
        if attr == "patient":
            de.patient = parse_cx(value, loc)
        else:
            de.unique_id = value
    return de


def _submission_set(o: _Obj, shape: list[Finding]) -> SubmissionSet:
    ss = SubmissionSet(id=o.id, location=o.location)
    st = o.slots.get("submissionTime") or []
    ss.locations["submissionTime"] = f"{o.location}/rim:Slot[@name='submissionTime']"
    if not st or not st[0]:
        shape.append(
            Finding(SLOT_MISSING, "error", "submission set: required slot submissionTime is missing", o.location)
        )
    else:
        ss.submission_time = _time(st, "submissionTime", ss.locations["submissionTime"], shape)
    count: dict[str, int] = {}
    for cl in o.classifications:
        scheme = cl.get("classificationScheme")
        if scheme is None:
            continue
        count[scheme] = count.get(scheme, 0) + 1
        loc = f"{o.location}/rim:Classification[@classificationScheme='{scheme}']"
        if scheme == SS_CONTENT_TYPE:
            if count[scheme] > 1:
                shape.append(Finding(CLASSIFICATION, "error", "contentTypeCode given more than once", loc))
            else:
                ss.content_type = _coded(cl, loc, shape, "contentTypeCode")
        elif scheme == SS_AUTHOR:
            ss.authors.append(_author(cl, loc))
        elif scheme == DE_AUTHOR:
            shape.append(
                Finding(
                    CLASSIFICATION,
                    "error",
                    f"submission set author uses the DocumentEntry scheme {DE_AUTHOR} (expected {SS_AUTHOR})",
                    loc,
                )
            )
    if SS_CONTENT_TYPE not in count:
        shape.append(
            Finding(CLASSIFICATION, "error", "submission set: contentTypeCode classification is missing", o.location)
        )
    if SS_AUTHOR not in count:
        shape.append(Finding("XDS.AUTHOR", "error", "submission set: no author classification", o.location))
    for scheme, label in ((SS_PATIENT_ID, "patientId"), (SS_UNIQUE_ID, "uniqueId"), (SS_SOURCE_ID, "sourceId")):
        found = [e for e in o.ext_ids if e.get("identificationScheme") == scheme]
        loc = f"{o.location}/rim:ExternalIdentifier[@identificationScheme='{scheme}']"
        ss.locations[label] = loc
        if len(found) != 1 or not found[0].get("value"):
            shape.append(
                Finding(
                    EXTID,
                    "error",
                    f"submission set: exactly one XDSSubmissionSet.{label} ExternalIdentifier with a value "
                    f"required (found {len(found)})",
                    o.location,
                )
            )
            continue
        value = found[0].get("value")
        if label == "patientId":
            ss.patient = parse_cx(value, loc)
        elif label == "uniqueId":
            ss.unique_id = value
            if not is_oid(value.removeprefix("urn:oid:")):
                shape.append(
                    Finding(
                        EXTID, "error", f"XDSSubmissionSet.uniqueId {value!r} must be an OID (≤ 64 characters)", loc
                    )
                )
        else:
            ss.source_id = value
            if not is_oid(value.removeprefix("urn:oid:")):
                shape.append(Finding(EXTID, "error", f"XDSSubmissionSet.sourceId {value!r} must be an OID", loc))
    return ss


def _associations(
    associations: list[Any],
    ss: SubmissionSet | None,
    documents: list[DocumentEntry],
    objs: dict[str, _Obj],
    base: str,
    shape: list[Finding],
) -> list[Replacement]:
    members: set[str] = set()
    replacements: list[Replacement] = []
    for n, a in enumerate(associations, 1):
        atype = a.get("associationType")
        src, tgt = a.get("sourceObject") or "", a.get("targetObject") or ""
        loc = f"{base}/rim:Association[@id='{a.get('id')}']" if a.get("id") else f"{base}/rim:Association[{n}]"
        if atype == HAS_MEMBER and ss is not None and _norm_id(src) == _norm_id(ss.id):
            status = _slots(a).get("SubmissionSetStatus") or []
            if _norm_id(tgt) in {_norm_id(d.id) for d in documents} and status != ["Original"]:
                shape.append(
                    Finding(ASSOCIATION, "error", f"HasMember to {tgt!r}: SubmissionSetStatus must be 'Original'", loc)
                )
            members.add(_norm_id(tgt))
        elif atype == RPLC_TYPE:
            replacements.append(Replacement(src, tgt, loc))
        elif atype and atype.endswith("RPLC") and atype != RPLC_TYPE:
            shape.append(Finding("DMP.RPLC", "error", f"association type {atype!r} is not {RPLC_TYPE}", loc))
    for d in documents:
        if ss is not None and _norm_id(d.id) not in members:
            shape.append(
                Finding(
                    ASSOCIATION, "error", f"no HasMember association from the submission set to {d.id!r}", d.location
                )
            )
    return replacements


def _attach_documents(root: Any, documents: list[DocumentEntry], shape: list[Finding]) -> None:
    """In a ProvideAndRegisterDocumentSetRequest, pair entries with their inline ``xdsb:Document``."""
    if root.tag != _q(XDSB, "ProvideAndRegisterDocumentSetRequest"):
        pnr = next(root.iter(_q(XDSB, "ProvideAndRegisterDocumentSetRequest")), None)
        if pnr is None:
            return
        root = pnr
    docs = {_norm_id(d.get("id")): d for d in root.findall(_q(XDSB, "Document"))}
    for de in documents:
        el = docs.pop(_norm_id(de.id), None)
        loc = f"//xdsb:Document[@id='{de.id}']"
        if el is None:
            shape.append(Finding(DOCUMENT, "error", f"no xdsb:Document for DocumentEntry {de.id!r}", de.location))
            continue
        if el.find(_q(XOP, "Include")) is not None:
            continue  # MTOM part: the transport resolves it and passes the bytes to the CDA check
        try:
            de.content = base64.b64decode("".join(el.itertext()), validate=False)
        except (binascii.Error, ValueError):
            shape.append(Finding(DOCUMENT, "error", "xdsb:Document content is not base64", loc))
    for did in docs:
        shape.append(
            Finding(
                DOCUMENT, "error", f"xdsb:Document {did!r} matches no DocumentEntry", f"//xdsb:Document[@id='{did}']"
            )
        )


# --- Registered checks ------------------------------------------------------------------------------


def _as_submission(artefact: Any) -> Submission:
    if isinstance(artefact, Submission):
        return artefact
    if isinstance(artefact, bytes | bytearray):
        artefact = parse_xml(bytes(artefact))
    return parse_submission(artefact)


@check("xds.metadata", kind="xds", service="DMP", rules=XDS_RULES)
def xds_metadata(
    artefact: Any,
    *,
    terminology: DmpTerminology | None = None,
    profile: str = "dmp",
    replaces: str | None = None,
) -> Iterator[Finding]:
    """ITI-41 metadata as the DMP requires it: structure, value sets, INS, authors, ASS_X04, RPLC.

    ``artefact`` is the request bytes, its parsed root or a :class:`Submission`; ``replaces`` is the
    entryUUID the submission must replace (scenario "new version"); ``profile`` picks the DMP value
    sets (``dmp``) or the CI-SIS ones (``cisis``).
    """
    try:
        sub = _as_submission(artefact)
    except InputError as exc:
        yield Finding(exc.rule, "error", exc.message, None)
        return
    yield from sub.shape
    yield from semantic_findings(sub, terminology or shipped_terminology(), profile=profile, replaces=replaces)


@check("xds.cda", kind="xds", service="DMP", rules=XDS_CDA_RULES)
def xds_cda(
    artefact: Any,
    *,
    cda_root: Any,
    document: bytes | None = None,
    entry: str | None = None,
    terminology: DmpTerminology | None = None,
) -> Iterator[Finding]:
    """ITI-41 metadata against the CDA it describes: patient, type, confidentiality, author, dates, ids, hash/size.

    ``document`` is the exact bytes sent (hash and size are computed on them); without it the inline
    ``xdsb:Document`` is used.  ``entry`` selects the DocumentEntry (default: the first).
    """
    try:
        sub = _as_submission(artefact)
    except InputError as exc:
        yield Finding(exc.rule, "error", exc.message, None)
        return
    yield from cda_consistency(sub, cda_root, document, terminology or shipped_terminology(), entry=entry)


__all__ = [
    "DE_AUTHOR",
    "DE_CLASS",
    "DE_CONFIDENTIALITY",
    "DE_FACILITY",
    "DE_FORMAT",
    "DE_PATIENT_ID",
    "DE_PRACTICE",
    "DE_TYPE",
    "DE_UNIQUE_ID",
    "DOCUMENT_ENTRY_STABLE",
    "HAS_MEMBER",
    "RPLC_TYPE",
    "SS_AUTHOR",
    "SS_CONTENT_TYPE",
    "SS_PATIENT_ID",
    "SS_SOURCE_ID",
    "SS_UNIQUE_ID",
    "SUBMISSION_SET_NODE",
    "XDS_CDA_RULES",
    "XDS_RULES",
    "parse_submission",
    "xds_cda",
    "xds_metadata",
]
