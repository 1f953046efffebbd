"""MHD ITI-65 bundle checks: a PDSm bundle derived from a CDA passes, each single defect fails its rule."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conformance.checks.mhd import MHD_CDA_RULES, MHD_RULES
from conformance.checks.registry import RULES, run_check
from conformance.model import Finding
from conformance.parsing import parse_xml
from tests.test_checks_xds import CDA, INS, INS_OID, OTHER_RPPS, RPPS

NOS = "https://mos.esante.gouv.fr/NOS/"
PREVIOUS = "DocumentReference/doc-old"


def nos(name: str) -> str:
    return f"{NOS}{name}/FHIR/{name.replace('_', '-')}"


def make_bundle(document: bytes = CDA) -> dict[str, Any]:
    """A PDSm comprehensive provide bundle for the synthetic CDA (the CI-SIS correspondence, by hand)."""
    ins_ident = {"system": f"urn:oid:{INS_OID}", "value": INS}
    author = {
        "resourceType": "PractitionerRole",
        "id": "author",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": f"8{RPPS}"}],
    }
    patient = {
        "resourceType": "Patient",
        "id": "src-patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.999.2", "value": "IPP123"}],
    }
    org = {
        "resourceType": "Organization",
        "id": "custodian",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "11750803447"}],
    }
    docref = {
        "resourceType": "DocumentReference",
        "contained": [author, patient, org],
        "masterIdentifier": {"system": "urn:oid:1.2.250.1.999.1.2", "value": "DOC42"},
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11490-0"}]},
        "category": [{"coding": [{"system": nos("TRE_A03-ClasseDocument"), "code": "10"}]}],
        "subject": {"identifier": ins_ident},
        "date": "2024-01-15T10:35:00+01:00",
        "author": [{"reference": "#author"}],
        "custodian": {"reference": "#custodian"},
        "securityLabel": [{"coding": [{"system": nos("TRE_A08-HL7Confidentiality"), "code": "N"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/xml",
                    "language": "fr-FR",
                    "url": "urn:uuid:33333333-3333-4333-8333-333333333333",
                    "size": len(document),
                    "hash": base64.b64encode(hashlib.sha1(document).digest()).decode(),
                    "title": "Lettre de liaison de sortie",
                    "creation": "2024-01-15T10:30:00+01:00",
                },
                "format": {"system": nos("TRE_A06-FormatCodeComplementaire"), "code": "urn:asip:ci-sis:ldl-ses:2017"},
            }
        ],
        "context": {
            "period": {"start": "2024-01-10T08:00:00+01:00", "end": "2024-01-15T10:00:00+01:00"},
            "facilityType": {"coding": [{"system": nos("TRE_R02-SecteurActivite"), "code": "SA01"}]},
            "practiceSetting": {"coding": [{"system": nos("TRE_A01-CadreExercice"), "code": "ETABLISSEMENT"}]},
            "sourcePatientInfo": {"reference": "#src-patient"},
        },
    }
    submission = {
        "resourceType": "List",
        "contained": [author],
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
                "valueCodeableConcept": {"coding": [{"system": nos("TRE_R02-SecteurActivite"), "code": "SA05"}]},
            },
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.9"},
            },
        ],
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "code": "submissionset"}]
        },
        "subject": {"reference": f"Patient?identifier=urn:oid:{INS_OID}|{INS}"},
        "date": "2024-01-15T10:40:00+01:00",
        "source": {"reference": "#author"},
        "entry": [{"item": {"reference": "urn:uuid:55555555-5555-4555-8555-555555555555"}}],
    }
    binary = {"resourceType": "Binary", "contentType": "text/xml", "data": base64.b64encode(document).decode()}
    return {
        "resourceType": "Bundle",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-provide-document-bundle"
            ]
        },
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:66666666-6666-4666-8666-666666666666",
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:55555555-5555-4555-8555-555555555555",
                "resource": docref,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity == "error"}


def check_all(bundle: Any, **args: Any) -> list[Finding]:
    data = json.dumps(bundle).encode() if not isinstance(bundle, bytes) else bundle
    return run_check("mhd.bundle", data, **args) + run_check("mhd.cda", data, cda_root=parse_xml(CDA), document=CDA)


def test_conformant_bundle_passes() -> None:
    assert check_all(make_bundle()) == []


def test_rules_are_registered() -> None:
    for rid in (*MHD_RULES, *MHD_CDA_RULES):
        assert rid in RULES


def test_cda_is_read_from_the_binary_when_not_given() -> None:
    assert run_check("mhd.cda", json.dumps(make_bundle()).encode()) == []


def _set(obj: Any, path: str, value: Any) -> None:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        obj = obj[k]
    if value is _DEL:
        del obj[keys[-1]]
    else:
        obj[keys[-1]] = value


_DEL = object()
DR = "entry.1.resource"
SS = "entry.0.resource"
ATT = f"{DR}.content.0.attachment"

DEFECTS: list[tuple[str, str, Any, str]] = [
    ("batch, not transaction", "type", "batch", "MHD.BUNDLE"),
    ("entry without request", "entry.2.request", _DEL, "MHD.BUNDLE"),
    ("entry without fullUrl", "entry.0.fullUrl", _DEL, "MHD.BUNDLE"),
    ("DocumentReference by PUT", "entry.1.request.method", "PUT", "MHD.BUNDLE"),
    ("List not current", f"{SS}.status", "retired", "MHD.SUBMISSIONSET"),
    ("List code not submissionset", f"{SS}.code.coding.0.system", "http://example.org", "MHD.SUBMISSIONSET"),
    ("List without designationType", f"{SS}.extension.0", {"url": "x"}, "MHD.SUBMISSIONSET"),
    ("List sourceId not an OID", f"{SS}.extension.1.valueIdentifier.value", "SRC-01", "MHD.SUBMISSIONSET"),
    (
        "List entry to nothing",
        f"{SS}.entry.0.item.reference",
        "urn:uuid:00000000-0000-4000-8000-000000000000",
        "MHD.SUBMISSIONSET",
    ),
    ("no masterIdentifier", f"{DR}.masterIdentifier", _DEL, "MHD.DOCREF"),
    ("status superseded", f"{DR}.status", "superseded", "MHD.DOCREF"),
    ("no custodian", f"{DR}.custodian", _DEL, "MHD.DOCREF"),
    ("no date", f"{DR}.date", _DEL, "MHD.DOCREF"),
    ("no securityLabel", f"{DR}.securityLabel", [], "MHD.DOCREF"),
    ("no attachment title", f"{ATT}.title", _DEL, "MHD.ATTACHMENT"),
    ("attachment url to nothing", f"{ATT}.url", "urn:uuid:00000000-0000-4000-8000-000000000000", "MHD.ATTACHMENT"),
    ("no format", f"{DR}.content.0.format", _DEL, "MHD.ATTACHMENT"),
    ("Binary contentType differs", "entry.2.resource.contentType", "application/pdf", "MHD.ATTACHMENT"),
    ("no facilityType", f"{DR}.context.facilityType", _DEL, "MHD.CONTEXT"),
    ("no sourcePatientInfo", f"{DR}.context.sourcePatientInfo", _DEL, "MHD.CONTEXT"),
    ("hash of another document", f"{ATT}.hash", base64.b64encode(hashlib.sha1(b"x").digest()).decode(), "MHD.HASH"),
    ("hash hex not base64", f"{ATT}.hash", hashlib.sha1(CDA).hexdigest(), "MHD.HASH"),
    ("wrong size", f"{ATT}.size", 5, "MHD.SIZE"),
    ("class not in J57", f"{DR}.category.0.coding.0.code", "99", "MHD.VS.CLASS"),
    ("type not in J66", f"{DR}.type.coding.0.code", "00000-0", "MHD.VS.TYPE"),
    (
        "N under TRE_A07",
        f"{DR}.securityLabel.0.coding.0.system",
        nos("TRE_A07-StatutVisibiliteDocument"),
        "MHD.VS.CONFIDENTIALITY",
    ),
    ("format not in J60", f"{DR}.content.0.format.code", "urn:ihe:iti:xds:2017:mimeTypeSufficient", "MHD.VS.FORMAT"),
    (
        "SNOMED facility",
        f"{DR}.context.facilityType.coding.0",
        {"system": "http://snomed.info/sct", "code": "22232009"},
        "MHD.VS.FACILITY",
    ),
    ("practice not in J62", f"{DR}.context.practiceSetting.coding.0.code", "HOPITAL", "MHD.VS.PRACTICE"),
    (
        "contentType from TRE_A03",
        f"{SS}.extension.0.valueCodeableConcept.coding.0",
        {"system": nos("TRE_A03-ClasseDocument"), "code": "11"},
        "MHD.VS.CONTENTTYPE",
    ),
    ("class does not follow type", f"{DR}.category.0.coding.0.code", "11", "MHD.CLASS-TYPE"),
    (
        "RPPS with 10 digits",
        f"{DR}.contained.0.identifier.0",
        {"system": "https://rpps.esante.gouv.fr", "value": "1011848351"},
        "MHD.AUTHOR",
    ),
    ("author unresolved", f"{DR}.author.0.reference", "#nobody", "MHD.AUTHOR"),
    ("INS key wrong", f"{DR}.subject.identifier.value", INS[:13] + "00", "DMP.PATIENTID"),
    ("unresolvable subject", f"{DR}.subject", {"reference": "Patient/fr-patient-123"}, "DMP.PATIENTID"),
    (
        "other patient in List",
        f"{SS}.subject.reference",
        f"Patient?identifier=urn:oid:{INS_OID}|277076322082910",
        "MHD.PATIENT-MATCH",
    ),
    (
        "masterIdentifier not an OID",
        f"{DR}.masterIdentifier",
        {"system": "urn:ietf:rfc:3986", "value": "DOC-42"},
        "MHD.UNIQUEID",
    ),
]


@pytest.mark.parametrize(("path", "value", "rule"), [(p, v, r) for _, p, v, r in DEFECTS], ids=[i for i, *_ in DEFECTS])
def test_bundle_defect_fails_its_rule(path: str, value: Any, rule: str) -> None:
    bundle = make_bundle()
    _set(bundle, path, value if value is _DEL else copy.deepcopy(value))
    found = run_check("mhd.bundle", json.dumps(bundle).encode())
    assert errors(found) == {rule}


CDA_DEFECTS: list[tuple[str, str, Any, str]] = [
    ("other type", f"{DR}.type.coding.0.code", "11488-4", "MHD.CDA.TYPE"),
    ("other confidentiality", f"{DR}.securityLabel.0.coding.0.code", "R", "MHD.CDA.CONFIDENTIALITY"),
    (
        "other author",
        f"{DR}.contained.0.identifier.0",
        {"system": "https://rpps.esante.gouv.fr", "value": OTHER_RPPS},
        "MHD.CDA.AUTHOR",
    ),
    ("other creation", f"{ATT}.creation", "2024-01-15T10:30:00+00:00", "MHD.CDA.DATES"),
    ("other period start", f"{DR}.context.period.start", "2024-01-11", "MHD.CDA.DATES"),
    ("other masterIdentifier", f"{DR}.masterIdentifier.value", "DOC43", "MHD.CDA.UNIQUEID"),
    ("other language", f"{ATT}.language", "en-US", "MHD.CDA.LANGUAGE"),
    ("format of another volet", f"{DR}.content.0.format.code", "urn:asip:ci-sis:vsm:2012", "MHD.FORMAT-MODEL"),
]


@pytest.mark.parametrize(
    ("path", "value", "rule"), [(p, v, r) for _, p, v, r in CDA_DEFECTS], ids=[i for i, *_ in CDA_DEFECTS]
)
def test_cda_inconsistency_fails_its_rule(path: str, value: Any, rule: str) -> None:
    bundle = make_bundle()
    _set(bundle, path, value if value is _DEL else copy.deepcopy(value))
    found = run_check("mhd.cda", json.dumps(bundle).encode(), cda_root=parse_xml(CDA), document=CDA)
    assert errors(found) == {rule}


def test_rpps_system_author_matches_the_cda() -> None:
    bundle = make_bundle()
    _set(bundle, f"{DR}.contained.0.identifier.0", {"system": "https://rpps.esante.gouv.fr", "value": RPPS})
    assert check_all(bundle) == []


def test_master_identifier_as_rfc3986_uri_is_accepted() -> None:
    bundle = make_bundle()
    _set(bundle, f"{DR}.masterIdentifier", {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.2^DOC42"})
    assert check_all(bundle) == []


def test_replacement() -> None:
    bundle = make_bundle()
    _set(bundle, f"{DR}.relatesTo", [{"code": "replaces", "target": {"reference": PREVIOUS}}])
    assert run_check("mhd.bundle", json.dumps(bundle).encode(), replaces=PREVIOUS) == []
    assert errors(run_check("mhd.bundle", json.dumps(make_bundle()).encode(), replaces=PREVIOUS)) == {"DMP.RPLC"}


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "INPUT.EMPTY"),
        (b"{not json", "INPUT.JSON"),
        (b"\xff\xfe{}", "INPUT.ENCODING"),
        (b'{"resourceType": "Patient"}', "INPUT.JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "INPUT.JSON"),
    ],
)
def test_hostile_input_is_an_input_finding(data: bytes, rule: str) -> None:
    assert [f.rule for f in run_check("mhd.bundle", data)] == [rule]


def test_binary_that_is_not_xml_is_an_input_finding_for_the_cda_check() -> None:
    bundle = make_bundle(b"%PDF-1.4 not a CDA")
    assert [f.rule for f in run_check("mhd.cda", json.dumps(bundle).encode())] == ["INPUT.XML"]


OFFICIAL = (
    "fhir/examples/pdsm-branch-add-exemples-iti65__Bundle-bundle-exemple-comprehensiveprovidedocument-replace.json"
)


@pytest.mark.shared
def test_official_pdsm_iti65_example(shared_data: Path) -> None:
    """What the official PDSm replace example yields: its own defects are reported, not hidden.

    - sourceId ``SRC-01`` is not an OID; no ``custodian`` (1..1 in the PDSm DocumentReference);
    - subject ``Patient/fr-patient-123`` cannot be resolved to an INS inside the Bundle;
    - SubmissionSet designationType ``SA01`` is not in the DMP's J59;
    - the author's RPPS ``1011848351`` has 10 digits;
    - securityLabel ``N`` under TRE_A07 (and a misspelt system) instead of TRE_A08;
    - category ``10`` while ASS_X04 maps ``34133-9`` to ``11``;
    - the hash is the SHA-1 of ``hello`` while the Binary holds ``Hello``;
    - the Binary is a (fake) PDF, so no CDA can be compared.
    """
    data = (shared_data / OFFICIAL).read_bytes()
    found = run_check("mhd.bundle", data, replaces="DocumentReference/doc-old")
    assert errors(found) == {
        "MHD.SUBMISSIONSET",
        "MHD.DOCREF",
        "DMP.PATIENTID",
        "MHD.VS.CONTENTTYPE",
        "MHD.AUTHOR",
        "MHD.VS.CONFIDENTIALITY",
        "MHD.CLASS-TYPE",
        "MHD.HASH",
    }
    assert not any(f.rule == "DMP.RPLC" for f in found)
    assert [f.rule for f in run_check("mhd.cda", data)] == ["INPUT.XML"]
