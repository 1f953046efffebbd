"""MHD ITI-65 Provide Document Bundle (FHIR R4) as PDSm 3.1.1 profiles it for the DMP.

:func:`parse_bundle` reads the transaction Bundle into the metadata model shared with XDS
(:mod:`conformance.checks.dmp_metadata`) and records what is structurally missing in FHIR terms
(``MHD.*``: Bundle shape, SubmissionSet List, DocumentReference and attachment elements that the
PDSm StructureDefinitions make 1..1).  Value sets, INS, authors, ASS_X04, RPLC and CDA consistency
are the shared rules, emitted under ``MHD.`` (``DMP.PATIENTID`` / ``DMP.RPLC`` keep their ids).

Readings that the PDSm examples themselves use and that are all accepted:

- the patient as ``subject.identifier`` (INS system ``urn:oid:1.2.250.1.213.1.4.x``), as a conditional
  reference ``Patient?identifier=urn:oid:…|matricule``, or as a reference to a Patient (contained or in
  the Bundle) carrying that identifier.  A literal reference the Bundle cannot resolve does not let
  the bench establish that patientId is an INS: ``DMP.PATIENTID`` says so.
- authors as references to contained or Bundle PractitionerRole/Practitioner/Organization/Device/
  Patient; RPPS as ``urn:oid:1.2.250.1.71.4.2.1`` (``8``+RPPS) or ``https://rpps.esante.gouv.fr`` (RPPS).
- ``masterIdentifier`` as ``urn:ietf:rfc:3986`` + ``urn:oid:root[^ext]``/``urn:uuid:…``, or
  ``system urn:oid:root`` + ``value ext``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from conformance.checks.dmp_metadata import (
    RPPS_SYSTEM,
    AuthorRef,
    Coded,
    DmpTerminology,
    DocumentEntry,
    PatientRef,
    Replacement,
    Submission,
    SubmissionSet,
    b64_sha1_to_hex,
    cda_consistency,
    cda_rules,
    fhir_datetime_utc,
    is_oid,
    nos_name,
    semantic_findings,
    semantic_rules,
    shipped_terminology,
    system_oid,
)
from conformance.checks.ins import INS_OIDS
from conformance.checks.registry import check
from conformance.model import Finding
from conformance.parsing import InputError, parse_json, parse_xml

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
BUNDLE_PROFILE = PDSM + "pdsm-comprehensive-provide-document-bundle"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
EXT_DESIGNATION_TYPE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
EXT_SOURCE_ID = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"
EXT_AUTHOR_ORG = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-authorOrg"
RFC3986 = "urn:ietf:rfc:3986"

BUNDLE = "MHD.BUNDLE"
SUBMISSIONSET = "MHD.SUBMISSIONSET"
DOCREF = "MHD.DOCREF"
ATTACHMENT = "MHD.ATTACHMENT"
CONTEXT = "MHD.CONTEXT"

STRUCTURE_RULES: dict[str, str] = {
    BUNDLE: "Bundle transaction (profil PDSm), entrées avec fullUrl et request (method, url)",
    SUBMISSIONSET: "Un List SubmissionSet (code submissionset, status current, mode working, date, source, subject, "
    "designationType, sourceId) référençant les DocumentReference du Bundle",
    DOCREF: "DocumentReference : masterIdentifier, status current, type, category, subject, date, author, "
    "custodian, securityLabel, content unique",
    ATTACHMENT: "content.attachment : contentType, language, url vers un Binary du Bundle, size, hash (SHA-1 base64), "
    "title, creation ; content.format",
    CONTEXT: "context : period.start, facilityType, practiceSetting, sourcePatientInfo",
}
MHD_RULES: dict[str, str] = {**STRUCTURE_RULES, **semantic_rules("MHD")}
MHD_CDA_RULES: dict[str, str] = cda_rules("MHD")


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class _Index:
    """Resolves references inside the Bundle: fullUrl, ``Type/id`` and contained ``#id``."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.by_ref: dict[str, dict[str, Any]] = {}
        for e in entries:
            res = _d(e.get("resource"))
            if _s(e.get("fullUrl")):
                self.by_ref[e["fullUrl"]] = res
            if _s(res.get("resourceType")) and _s(res.get("id")):
                self.by_ref[f"{res['resourceType']}/{res['id']}"] = res

    def resolve(self, ref: Any, container: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = _s(ref)
        if ref is None:
            return None
        if ref.startswith("#"):
            return next(
                (c for c in _l(container.get("contained")) if isinstance(c, dict) and c.get("id") == ref[1:]), None
            )
        if ref in self.by_ref:
            return self.by_ref[ref]
        tail = "/".join(ref.rstrip("/").split("/")[-2:])
        return self.by_ref.get(tail)


def _coding(cc: Any, loc: str) -> Coded | None:
    """First coding of a CodeableConcept (or a Coding); scheme = the system's OID or the system as given."""
    cc = _d(cc)
    coding = _d(_l(cc.get("coding"))[0]) if _l(cc.get("coding")) else (cc if "code" in cc else {})
    if not coding:
        return None
    system = _s(coding.get("system"))
    return Coded(_s(coding.get("code")), system_oid(system) or system, _s(coding.get("display")), loc, nos_name(system))


def _ins_of(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    for ident in _l(resource.get("identifier")):
        ident = _d(ident)
        oid = system_oid(_s(ident.get("system")))
        if oid in INS_OIDS and _s(ident.get("value")):
            return ident["value"], oid
    return None


def _patient(subject: Any, container: Mapping[str, Any], index: _Index, loc: str) -> PatientRef | None:
    subject = _d(subject)
    if not subject:
        return None
    ident = _d(subject.get("identifier"))
    if ident:
        oid = system_oid(_s(ident.get("system")))
        return PatientRef(
            f"{ident.get('system')}|{ident.get('value')}", _s(ident.get("value")), oid, None, f"{loc}.identifier"
        )
    ref = _s(subject.get("reference"))
    if ref is None:
        return PatientRef(None, None, None, None, loc, "subject has neither identifier nor reference")
    if ref.startswith("Patient?"):
        for part in ref[8:].split("&"):
            key, _, val = part.partition("=")
            if key == "identifier" and "|" in val:
                system, _, value = unquote(val).partition("|")
                return PatientRef(ref, value or None, system_oid(system), None, f"{loc}.reference")
        return PatientRef(
            ref, None, None, None, f"{loc}.reference", "conditional reference without identifier=system|value"
        )
    target = index.resolve(ref, container)
    if target is not None and target.get("resourceType") == "Patient":
        ins = _ins_of(target)
        if ins is not None:
            return PatientRef(ref, ins[0], ins[1], None, f"{loc}.reference")
        return PatientRef(ref, None, None, None, f"{loc}.reference", f"Patient {ref} carries no INS identifier")
    return PatientRef(
        ref,
        None,
        None,
        None,
        f"{loc}.reference",
        f"reference {ref!r} cannot be resolved in the Bundle to a Patient with an INS "
        "(give subject.identifier or Patient?identifier=urn:oid:<INS OID>|<matricule>)",
    )


def _author(ref_el: Any, container: Mapping[str, Any], index: _Index, loc: str) -> AuthorRef:
    a = AuthorRef(location=loc)
    ref = _s(_d(ref_el).get("reference"))
    res = index.resolve(ref, container) if ref else None
    if res is None:
        a.problems.append(f"author reference {ref!r} cannot be resolved (contained or Bundle resource expected)")
        return a
    rtype = res.get("resourceType")
    people = [res]
    if rtype == "PractitionerRole":
        prac = index.resolve(_d(res.get("practitioner")).get("reference"), container)
        if prac is not None:
            people.insert(0, prac)
        org = index.resolve(_d(res.get("organization")).get("reference"), container)
        if org is not None:
            a.institutions.append(_s(org.get("name")) or "")
        for n, spec in enumerate(_l(res.get("specialty"))):
            coded = _coding(spec, f"{loc}.specialty[{n}]")
            if coded is not None:
                a.specialties.append(coded)
        a.roles = [c.code for c in (_coding(x, loc) for x in _l(res.get("code"))) if c is not None and c.code]
    if rtype == "Organization":
        a.institutions.append(_s(res.get("name")) or "")
    for person in people:
        for ident in _l(person.get("identifier")):
            ident = _d(ident)
            system, value = _s(ident.get("system")), _s(ident.get("value"))
            if not value:
                continue
            a.person = f"{system}|{value}"
            a.person_id = value
            if system and system.startswith("urn:oid:"):
                a.person_oid = system[8:]
            else:
                a.person_system = system
            break
        if a.person_id:
            break
    if a.person_id is None:
        a.problems.append(f"author {rtype}/{res.get('id')} has no identifier")
    return a


def parse_bundle(bundle: Any) -> Submission:
    """Read an ITI-65 transaction Bundle into the shared model; ``InputError`` if it is no Bundle."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise InputError("INPUT.JSON", f"expected a FHIR Bundle, got {got!r}")
    shape: list[Finding] = []
    if bundle.get("type") != "transaction":
        shape.append(
            Finding(BUNDLE, "error", f"Bundle.type {bundle.get('type')!r} (transaction expected)", "Bundle.type")
        )
    if not _l(_d(bundle.get("meta")).get("profile")):
        shape.append(
            Finding(
                BUNDLE,
                "warning",
                f"Bundle.meta.profile is empty (PDSm requires it, e.g. {BUNDLE_PROFILE})",
                "Bundle.meta",
            )
        )
    entries = [_d(e) for e in _l(bundle.get("entry"))]
    if not entries:
        shape.append(Finding(BUNDLE, "error", "Bundle without entries", "Bundle.entry"))
    index = _Index(entries)
    lists: list[tuple[int, dict[str, Any]]] = []
    docrefs: list[tuple[int, dict[str, Any]]] = []
    for n, e in enumerate(entries):
        loc = f"Bundle.entry[{n}]"
        res = _d(e.get("resource"))
        req = _d(e.get("request"))
        if not _s(e.get("fullUrl")):
            shape.append(Finding(BUNDLE, "error", "entry without fullUrl", loc))
        if not _s(req.get("method")) or not _s(req.get("url")):
            shape.append(Finding(BUNDLE, "error", "entry without request.method and request.url", f"{loc}.request"))
        rtype = res.get("resourceType")
        expected = (
            "PATCH" if rtype == "Parameters" else "POST" if rtype in ("List", "DocumentReference", "Binary") else None
        )
        if (
            expected
            and _s(req.get("method"))
            and req["method"] != expected
            and not (rtype == "List" and req["method"] == "PUT")
        ):
            shape.append(
                Finding(
                    BUNDLE,
                    "error",
                    f"{rtype} entry with request.method {req['method']} ({expected} expected)",
                    f"{loc}.request.method",
                )
            )
        if rtype == "List" and any(_d(c).get("code") == "submissionset" for c in _l(_d(res.get("code")).get("coding"))):
            lists.append((n, res))
        elif rtype == "DocumentReference":
            docrefs.append((n, res))
    ss: SubmissionSet | None = None
    if len(lists) != 1:
        shape.append(
            Finding(
                SUBMISSIONSET,
                "error",
                f"{len(lists)} SubmissionSet List(s) in the Bundle (exactly one expected)",
                "Bundle.entry",
            )
        )
    if lists:
        ss = _submission_set(lists[0][0], lists[0][1], entries, index, shape)
    documents = [_docref(n, res, entries[n], index, shape) for n, res in docrefs]
    if not documents:
        shape.append(Finding(DOCREF, "error", "no DocumentReference in the Bundle", "Bundle.entry"))
    replacements: list[Replacement] = []
    for (n, res), de in zip(docrefs, documents, strict=True):
        for k, rel in enumerate(_l(res.get("relatesTo"))):
            rel = _d(rel)
            if rel.get("code") == "replaces":
                target = _s(_d(rel.get("target")).get("reference")) or ""
                replacements.append(Replacement(de.id, target, f"Bundle.entry[{n}].resource.relatesTo[{k}]"))
    return Submission("mhd", ss, documents, replacements, shape)


def _submission_set(
    n: int, res: dict[str, Any], entries: list[dict[str, Any]], index: _Index, shape: list[Finding]
) -> SubmissionSet:
    loc = f"Bundle.entry[{n}].resource"
    ss = SubmissionSet(id=_s(entries[n].get("fullUrl")) or f"List/{res.get('id')}", location=loc)
    if res.get("status") != "current":
        shape.append(
            Finding(SUBMISSIONSET, "error", f"List.status {res.get('status')!r} (current expected)", f"{loc}.status")
        )
    if res.get("mode") != "working":
        shape.append(
            Finding(SUBMISSIONSET, "error", f"List.mode {res.get('mode')!r} (working expected)", f"{loc}.mode")
        )
    codings = _l(_d(res.get("code")).get("coding"))
    if not any(_d(c).get("system") == MHD_LIST_TYPES and _d(c).get("code") == "submissionset" for c in codings):
        shape.append(
            Finding(SUBMISSIONSET, "error", f"List.code must be {MHD_LIST_TYPES}#submissionset", f"{loc}.code")
        )
    for key in ("date", "source", "subject"):
        if not res.get(key):
            shape.append(Finding(SUBMISSIONSET, "error", f"List.{key} is required by the PDSm SubmissionSet", loc))
    ss.submission_time = fhir_datetime_utc(res.get("date"))
    ss.patient = _patient(res.get("subject"), res, index, f"{loc}.subject")
    if res.get("source"):
        ss.authors.append(_author(res.get("source"), res, index, f"{loc}.source"))
    exts = {_d(x).get("url"): _d(x) for x in _l(res.get("extension"))}
    dt = exts.get(EXT_DESIGNATION_TYPE)
    if dt is None:
        shape.append(
            Finding(
                SUBMISSIONSET, "error", "designationType extension (contentTypeCode) is missing", f"{loc}.extension"
            )
        )
    else:
        ss.content_type = _coding(dt.get("valueCodeableConcept"), f"{loc}.extension('designationType')")
    sid = exts.get(EXT_SOURCE_ID)
    if sid is None:
        shape.append(Finding(SUBMISSIONSET, "error", "sourceId extension is missing", f"{loc}.extension"))
    else:
        value = _s(_d(sid.get("valueIdentifier")).get("value"))
        ss.source_id = value
        if value is None or not is_oid(value.removeprefix("urn:oid:")):
            shape.append(
                Finding(
                    SUBMISSIONSET,
                    "error",
                    f"sourceId {value!r} must be an OID (urn:oid:…)",
                    f"{loc}.extension('sourceId')",
                )
            )
    items = [_s(_d(_d(e).get("item")).get("reference")) for e in _l(res.get("entry"))]
    docref_urls = {
        _s(e.get("fullUrl")) for e in entries if _d(e.get("resource")).get("resourceType") == "DocumentReference"
    }
    for k, item in enumerate(items):
        target = index.resolve(item, res)
        if target is None or target.get("resourceType") not in ("DocumentReference", "List"):
            shape.append(
                Finding(
                    SUBMISSIONSET,
                    "error",
                    f"List.entry item {item!r} is not a DocumentReference of the Bundle",
                    f"{loc}.entry[{k}].item",
                )
            )
    for url in docref_urls:
        if url and url not in items:
            shape.append(
                Finding(
                    SUBMISSIONSET,
                    "error",
                    f"DocumentReference {url} is not listed in the SubmissionSet",
                    f"{loc}.entry",
                )
            )
    return ss


def _docref(n: int, res: dict[str, Any], entry: dict[str, Any], index: _Index, shape: list[Finding]) -> DocumentEntry:
    loc = f"Bundle.entry[{n}].resource"
    de = DocumentEntry(id=_s(entry.get("fullUrl")) or f"DocumentReference/{res.get('id')}", location=loc)

    def need(cond: bool, what: str, rule: str = DOCREF, where: str = loc) -> None:
        if not cond:
            shape.append(Finding(rule, "error", f"{what} is required (PDSm DocumentReference)", where))

    mi = _d(res.get("masterIdentifier"))
    need(bool(_s(mi.get("value"))), "masterIdentifier.value")
    if _s(mi.get("value")):
        system, value = _s(mi.get("system")), mi["value"]
        de.unique_id = f"{system[8:]}^{value}" if system and system.startswith("urn:oid:") else value
        de.locations["uniqueId"] = f"{loc}.masterIdentifier"
    if res.get("status") != "current":
        shape.append(
            Finding(
                DOCREF, "error", f"status {res.get('status')!r} (current expected for a new document)", f"{loc}.status"
            )
        )
    need(bool(res.get("type")), "type")
    de.type_code = _coding(res.get("type"), f"{loc}.type")
    cats = _l(res.get("category"))
    need(len(cats) == 1, "exactly one category")
    de.class_code = _coding(cats[0], f"{loc}.category[0]") if cats else None
    need(bool(res.get("subject")), "subject")
    de.patient = _patient(res.get("subject"), res, index, f"{loc}.subject")
    need(bool(_s(res.get("date"))), "date")
    authors = _l(res.get("author"))
    need(bool(authors), "author")
    de.authors = [_author(a, res, index, f"{loc}.author[{k}]") for k, a in enumerate(authors)]
    need(bool(res.get("custodian")), "custodian")
    labels = _l(res.get("securityLabel"))
    need(bool(labels), "securityLabel (confidentialityCode)")
    de.confidentiality = [c for k, x in enumerate(labels) if (c := _coding(x, f"{loc}.securityLabel[{k}]")) is not None]
    contents = _l(res.get("content"))
    need(len(contents) == 1, "exactly one content")
    if contents:
        _content(_d(contents[0]), f"{loc}.content[0]", de, index, shape)
    ctx = _d(res.get("context"))
    cloc = f"{loc}.context"
    need(bool(ctx), "context", CONTEXT)
    period = _d(ctx.get("period"))
    need(bool(_s(period.get("start"))), "context.period.start", CONTEXT, cloc)
    de.service_start = fhir_datetime_utc(period.get("start"))
    de.service_stop = fhir_datetime_utc(period.get("end"))
    de.locations["serviceStartTime"] = f"{cloc}.period.start"
    de.locations["serviceStopTime"] = f"{cloc}.period.end"
    need(bool(ctx.get("facilityType")), "context.facilityType", CONTEXT, cloc)
    de.facility = _coding(ctx.get("facilityType"), f"{cloc}.facilityType")
    need(bool(ctx.get("practiceSetting")), "context.practiceSetting", CONTEXT, cloc)
    de.practice = _coding(ctx.get("practiceSetting"), f"{cloc}.practiceSetting")
    need(bool(ctx.get("sourcePatientInfo")), "context.sourcePatientInfo", CONTEXT, cloc)
    return de


def _content(content: dict[str, Any], loc: str, de: DocumentEntry, index: _Index, shape: list[Finding]) -> None:
    att = _d(content.get("attachment"))
    aloc = f"{loc}.attachment"
    for key in ("contentType", "language", "url", "title", "creation"):
        if not _s(att.get(key)):
            shape.append(Finding(ATTACHMENT, "error", f"attachment.{key} is required (PDSm)", aloc))
    de.mime_type = _s(att.get("contentType"))
    de.language = _s(att.get("language"))
    de.title = _s(att.get("title"))
    de.creation_time = fhir_datetime_utc(att.get("creation"))
    de.locations.update(
        {
            "languageCode": f"{aloc}.language",
            "creationTime": f"{aloc}.creation",
            "hash": f"{aloc}.hash",
            "size": f"{aloc}.size",
        }
    )
    if "size" not in att:
        shape.append(Finding(ATTACHMENT, "error", "attachment.size is required (PDSm)", aloc))
    elif not isinstance(att["size"], int) or isinstance(att["size"], bool) or att["size"] < 0:
        shape.append(
            Finding(
                "MHD.SIZE", "error", f"attachment.size {att['size']!r} is not a non-negative integer", f"{aloc}.size"
            )
        )
    else:
        de.size = att["size"]
    if not _s(att.get("hash")):
        shape.append(Finding(ATTACHMENT, "error", "attachment.hash is required (PDSm)", aloc))
    else:
        hexa = b64_sha1_to_hex(att["hash"])
        if hexa is None:
            shape.append(
                Finding(
                    "MHD.HASH",
                    "error",
                    f"attachment.hash {att['hash']!r} is not the base64 of a 20-byte SHA-1",
                    f"{aloc}.hash",
                )
            )
        de.hash = hexa
    fmt = content.get("format")
    if not fmt:
        shape.append(Finding(ATTACHMENT, "error", "content.format (formatCode) is required (PDSm)", loc))
    de.format_code = _coding(fmt, f"{loc}.format")
    url = _s(att.get("url"))
    if url:
        binary = index.resolve(url, {})
        if binary is None or binary.get("resourceType") != "Binary":
            shape.append(
                Finding(ATTACHMENT, "error", f"attachment.url {url!r} is not a Binary of the Bundle", f"{aloc}.url")
            )
        else:
            try:
                de.content = base64.b64decode(_s(binary.get("data")) or "", validate=True)
            except (binascii.Error, ValueError):
                shape.append(Finding(ATTACHMENT, "error", f"Binary {url} data is not base64", f"{aloc}.url"))
            if binary.get("contentType") != de.mime_type:
                shape.append(
                    Finding(
                        ATTACHMENT,
                        "error",
                        f"Binary contentType {binary.get('contentType')!r} differs from attachment.contentType "
                        f"{de.mime_type!r}",
                        f"{aloc}.contentType",
                    )
                )


# --- Registered checks ------------------------------------------------------------------------------


def _as_submission(artefact: Any) -> Submission:
    if isinstance(artefact, Submission):
        return artefact
    if isinstance(artefact, bytes | bytearray):
        artefact = parse_json(bytes(artefact))
    return parse_bundle(artefact)


@check("mhd.bundle", kind="mhd", service="DMP", rules=MHD_RULES)
def mhd_bundle(
    artefact: Any,
    *,
    terminology: DmpTerminology | None = None,
    profile: str = "dmp",
    replaces: str | None = None,
) -> Iterator[Finding]:
    """ITI-65 bundle as PDSm/DMP require it: shape, value sets, INS, authors, ASS_X04, replacement, hash/size."""
    try:
        sub = _as_submission(artefact)
    except InputError as exc:
        yield Finding(exc.rule, "error", exc.message, None)
        return
    yield from sub.shape
    yield from semantic_findings(sub, terminology or shipped_terminology(), profile=profile, replaces=replaces)


@check("mhd.cda", kind="mhd", service="DMP", rules=MHD_CDA_RULES)
def mhd_cda(
    artefact: Any,
    *,
    cda_root: Any = None,
    document: bytes | None = None,
    entry: str | None = None,
    terminology: DmpTerminology | None = None,
) -> Iterator[Finding]:
    """DocumentReference metadata against the CDA it describes (the Bundle's Binary when not given)."""
    try:
        sub = _as_submission(artefact)
        if cda_root is None:
            de = (
                next((d for d in sub.documents if d.id == entry), None)
                if entry
                else (sub.documents[0] if sub.documents else None)
            )
            data = document if document is not None else (de.content if de is not None else None)
            if data is None:
                yield Finding("INPUT.CDA", "error", "no CDA document to compare with (none given, no Binary)", None)
                return
            cda_root = parse_xml(data)
    except InputError as exc:
        yield Finding(exc.rule, "error", exc.message, None)
        return
    yield from cda_consistency(sub, cda_root, document, terminology or shipped_terminology(), entry=entry)


__all__ = ["MHD_CDA_RULES", "MHD_RULES", "RPPS_SYSTEM", "mhd_bundle", "mhd_cda", "parse_bundle"]
