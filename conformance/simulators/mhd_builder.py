"""Build a PDSm comprehensive provide-document Bundle (MHD ITI-65) from the metadata a CDA gives.

Why here: the reference vendor feeds the DMP either over XDS.b or over MHD, and both must express
the *same* metadata.  :func:`conformance.simulators.xds_builder.derive_metadata` derives it once from
the CDA header (CI-SIS correspondence, NOS ASS_X04/A11/A12); :func:`build_provide_bundle` writes that
flat dict as FHIR R4 the way PDSm 3.1.1 profiles it (List SubmissionSet, DocumentReference, Binary),
so a defect injected in the dict (a fault) shows in both encodings and fails the same requirement.

Encoding choices, taken from the PDSm / PDSm-for-DMP examples:

- code systems as FHIR URLs where one is known (``http://loinc.org``, HL7 v3 Confidentiality, the
  NOS ``https://mos.esante.gouv.fr/NOS/…`` URLs), ``urn:oid:`` otherwise;
- the patient as ``subject.identifier`` (INS OID system, matricule), the local IPP as a contained
  ``Patient`` in ``context.sourcePatientInfo``;
- the author as a contained ``PractitionerRole`` → ``Practitioner`` (national id ``8``+RPPS under
  ``urn:oid:1.2.250.1.71.4.2.1``) and ``Organization`` (``1``+FINESS), the custodian as a contained
  ``Organization``;
- ``masterIdentifier`` = ``urn:oid:<CDA id root>`` + the extension, ``identifier`` (official) = the
  entryUUID, which is also the DocumentReference's ``fullUrl``;
- ``attachment.hash`` = base64 of the 20-byte SHA-1 (FHIR ``base64Binary``), ``size`` in bytes;
- a replacement as ``relatesTo: [{code: replaces, target: DocumentReference/<id>}]``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from conformance.checks.dmp_metadata import FHIR_SYSTEM_OIDS, NOS_SYSTEM_OIDS, RPPS_OID, STRUCTURE_OID

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
BUNDLE_PROFILE = PDSM + "pdsm-comprehensive-provide-document-bundle"
DOCREF_PROFILE = PDSM + "pdsm-comprehensive-document-reference"
SUBMISSIONSET_PROFILE = PDSM + "pdsm-submissionset-comprehensive"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
EXT_DESIGNATION_TYPE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
EXT_SOURCE_ID = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"
RFC3986 = "urn:ietf:rfc:3986"
FHIR_JSON = "application/fhir+json"

# OID → FHIR system: the FHIR URLs first (LOINC, HL7 confidentiality), then the NOS URLs.
_NOS = "https://mos.esante.gouv.fr/NOS/"
_SYSTEM_OF_OID: dict[str, str] = {
    **{oid: f"{_NOS}{name}/FHIR/{name.replace('_', '-')}" for name, oid in NOS_SYSTEM_OIDS.items() if oid[0].isdigit()},
    **{oid: url for url, oid in FHIR_SYSTEM_OIDS.items()},
}


def fhir_system(scheme: str | None) -> str | None:
    """The FHIR ``system`` for an XDS ``codingScheme`` (OID): a known URL, else ``urn:oid:…``."""
    if not scheme:
        return None
    return _SYSTEM_OF_OID.get(scheme, f"urn:oid:{scheme}" if scheme[0].isdigit() else scheme)


def _coding(coded: Any) -> dict[str, str] | None:
    """``(code, scheme[, display])`` of the flat metadata → a FHIR Coding."""
    if not coded:
        return None
    out = {"system": fhir_system(coded[1]) or "", "code": coded[0]}
    if len(coded) > 2 and coded[2]:
        out["display"] = coded[2]
    return {k: v for k, v in out.items() if v}


def _cc(coded: Any) -> dict[str, Any] | None:
    coding = _coding(coded)
    return {"coding": [coding]} if coding else None


def fhir_instant(dtm: str | None) -> str | None:
    """UTC DTM (``YYYYMMDDhhmmss``, possibly truncated) → FHIR dateTime (``…Z`` when it has a time)."""
    if not dtm:
        return None
    d = dtm.strip()
    if len(d) <= 8:
        return "-".join(x for x in (d[:4], d[4:6], d[6:8]) if x)
    d = (d + "0000")[:14]
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}Z"


def _cx(value: str | None) -> tuple[str | None, str | None]:
    """(id, assigning authority OID) of an HL7 CX ``id^^^&OID&ISO^type``."""
    if not value:
        return None, None
    comps = value.split("^")
    oid = comps[3].split("&")[1] if len(comps) > 3 and "&" in comps[3] else None
    return comps[0] or None, oid


def _identifier(value: str | None, oid: str | None) -> dict[str, str]:
    return {k: v for k, v in (("system", f"urn:oid:{oid}" if oid else None), ("value", value)) if v}


def _author_resources(author: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Contained PractitionerRole (``#author``), Practitioner and Organization of the author."""
    person: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": "author-practitioner",
        "identifier": [_identifier(author.get("id"), author.get("oid") or RPPS_OID)],
    }
    name = {
        k: v
        for k, v in (("family", author.get("family")), ("given", [author["given"]] if author.get("given") else None))
        if v
    }
    if name:
        person["name"] = [name]
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": "author",
        "practitioner": {"reference": "#author-practitioner"},
    }
    out = [role, person]
    org = author.get("organization")
    if isinstance(org, dict):
        out.append(
            {
                "resourceType": "Organization",
                "id": "author-organization",
                "identifier": [_identifier(org.get("id"), STRUCTURE_OID)],
                "name": org.get("name"),
            }
        )
        role["organization"] = {"reference": "#author-organization"}
    spec = meta.get("authorSpecialty")
    if isinstance(spec, str) and spec.count("^") >= 2:
        code, display, system = spec.split("^")[:3]
        role["specialty"] = [_cc((code, system, display))]
    return out


def build_provide_bundle(
    meta: dict[str, Any],
    document: bytes,
    *,
    author: dict[str, Any],
    custodian: dict[str, Any] | None = None,
    replaces: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ITI-65 transaction Bundle for ``document`` described by ``meta`` (``derive_metadata``'s keys).

    ``author``: ``id`` (national id), ``oid``, ``family``, ``given``, ``organization``
    (``{"id": "1"+FINESS, "name"}``); ``custodian``: ``{"id", "name"}`` of the structure keeping the
    document (the author's organization when absent); ``replaces``: the reference
    (``DocumentReference/<id>``) of the version this one replaces.
    """
    when = fhir_instant((now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S"))
    entry_uuid = str(meta.get("entryUUID") or f"urn:uuid:{uuid.uuid4()}")
    ss_id = str(meta.get("ss.id") or f"urn:uuid:{uuid.uuid4()}")
    binary_url = f"urn:uuid:{uuid.uuid4()}"
    pid, pid_oid = _cx(meta.get("patientId"))
    subject = {"identifier": _identifier(pid, pid_oid)}
    spid, spid_oid = _cx(meta.get("sourcePatientId"))
    source_patient = {"resourceType": "Patient", "id": "source-patient", "identifier": [_identifier(spid, spid_oid)]}
    authors = _author_resources(author, meta)
    keeper = custodian or author.get("organization") or {}
    custodian_res = {
        "resourceType": "Organization",
        "id": "custodian",
        "identifier": [_identifier(keeper.get("id"), STRUCTURE_OID)],
        "name": keeper.get("name"),
    }

    unique_id = str(meta.get("uniqueId") or "")
    root, _, ext = unique_id.partition("^")
    master = {"system": f"urn:oid:{root}", "value": ext} if ext else {"system": RFC3986, "value": f"urn:oid:{root}"}

    attachment: dict[str, Any] = {
        "contentType": meta.get("mimeType"),
        "language": meta.get("languageCode"),
        "url": binary_url,
        "size": int(meta["size"]) if str(meta.get("size", "")).isdigit() else len(document),
        "hash": base64.b64encode(bytes.fromhex(str(meta["hash"]))).decode("ascii") if meta.get("hash") else None,
        "title": meta.get("title"),
        "creation": fhir_instant(meta.get("creationTime")),
    }
    period = {"start": fhir_instant(meta.get("serviceStartTime")), "end": fhir_instant(meta.get("serviceStopTime"))}
    docref: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCREF_PROFILE]},
        "contained": [*authors, custodian_res, source_patient],
        "masterIdentifier": master,
        "identifier": [{"use": "official", "system": RFC3986, "value": entry_uuid}],
        "status": "current",
        "type": _cc(meta.get("typeCode")),
        "category": [c for c in [_cc(meta.get("classCode"))] if c],
        "subject": subject,
        "date": when,
        "author": [{"reference": "#author"}],
        "custodian": {"reference": "#custodian"},
        "securityLabel": [c for c in (_cc(x) for x in meta.get("confidentialityCode") or []) if c],
        "content": [
            {
                "attachment": {k: v for k, v in attachment.items() if v is not None},
                "format": _coding(meta.get("formatCode")),
            }
        ],
        "context": {
            "period": {k: v for k, v in period.items() if v},
            "facilityType": _cc(meta.get("healthcareFacilityTypeCode")),
            "practiceSetting": _cc(meta.get("practiceSettingCode")),
            "sourcePatientInfo": {"reference": "#source-patient"},
        },
    }
    if replaces:
        docref["relatesTo"] = [{"code": "replaces", "target": {"reference": replaces}}]
    docref = {k: v for k, v in docref.items() if v not in (None, [])}

    ss_unique = meta.get("ss.uniqueId")
    submission: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [SUBMISSIONSET_PROFILE]},
        "contained": authors,
        "extension": [
            {"url": EXT_DESIGNATION_TYPE, "valueCodeableConcept": _cc(meta.get("ss.contentTypeCode"))},
            {
                "url": EXT_SOURCE_ID,
                "valueIdentifier": {"system": RFC3986, "value": f"urn:oid:{meta.get('ss.sourceId')}"},
            },
        ],
        "identifier": [
            {"use": "official", "system": RFC3986, "value": ss_id},
            *([{"use": "usual", "system": RFC3986, "value": f"urn:oid:{ss_unique}"}] if ss_unique else []),
        ],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": subject,
        "date": fhir_instant(meta.get("ss.submissionTime")) or when,
        "source": {"reference": "#author"},
        "entry": [{"item": {"reference": entry_uuid}}],
    }
    binary = {
        "resourceType": "Binary",
        "contentType": meta.get("mimeType"),
        "data": base64.b64encode(document).decode("ascii"),
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [BUNDLE_PROFILE]},
        "type": "transaction",
        "entry": [
            {"fullUrl": ss_id, "resource": submission, "request": {"method": "POST", "url": "List"}},
            {"fullUrl": entry_uuid, "resource": docref, "request": {"method": "POST", "url": "DocumentReference"}},
            {"fullUrl": binary_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
        ],
    }


__all__ = ["BUNDLE_PROFILE", "FHIR_JSON", "build_provide_bundle", "fhir_instant", "fhir_system"]
