"""`segur-bench validate`: JSON contract, hostile files as `error` (exit 1), usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.hostile import BOMB

GOOD = {
    "resourceType": "Patient",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {
                "extension": [
                    {
                        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                        "valueCoding": {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                            "code": "2A020",
                        },
                    }
                ]
            },
        },
        {
            "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
            "extension": [
                {
                    "url": "identityStatus",
                    "valueCoding": {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                        "code": "VALI",
                    },
                }
            ],
        },
    ],
    "identifier": [
        {
            "use": "official",
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "297022A02077878",
            "type": {
                "coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]
            },
        }
    ],
    "name": [
        {
            "use": "official",
            "family": "ADRTROIS",
            "given": ["DOMINIQUE"],
            "extension": [
                {
                    "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name",
                    "valueString": "DOMINIQUE",
                }
            ],
        }
    ],
    "gender": "female",
    "birthDate": "1997-02-26",
}


def _json(proc: object) -> dict:
    return json.loads(proc.stdout)  # type: ignore[attr-defined]


def test_conformant_patient_passes_with_contract(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    proc = run_cli("validate", str(f), "--format", "json")
    assert proc.returncode == 0, proc.stdout
    out = _json(proc)
    assert out["schema"] == "segur-bench/validation/v1"
    entry = out["files"][0]
    assert set(entry) >= {"path", "kind", "status", "findings"}
    assert entry["kind"] == "fhir" and entry["status"] == "passed"
    assert out["summary"]["passed"] == 1


def test_wrong_key_fails_with_located_finding(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["identifier"][0]["value"] = "297022A02077877"
    f = tmp_path / "p.json"
    f.write_text(json.dumps(bad), encoding="utf-8")
    proc = run_cli("validate", str(f), "--format", "json")
    assert proc.returncode == 1
    findings = _json(proc)["files"][0]["findings"]
    key = [x for x in findings if x["rule"] == "INS.MATRICULE.KEY"]
    assert key and key[0]["severity"] == "error" and "identifier" in key[0]["location"]


HOSTILE = {
    "xxe.xml": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>',
    "xxe-url.xml": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>',
    "bomb.xml": BOMB,
    "truncated.xml": b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2',
    "empty.json": b"",
    "garbage.json": b"\x00\x01\x02 not json",
    "truncated.json": b'{"resourceType": "Patient", "name": [',
    "latin1.json": b'{"resourceType": "Patient", "name": [{"family": "M\xe9lanie"}]}',
}


def test_hostile_files_are_errors_and_others_keep_verdicts(tmp_path: Path) -> None:
    for name, data in HOSTILE.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "good.json").write_text(json.dumps(GOOD), encoding="utf-8")
    proc = run_cli("validate", str(tmp_path), "--format", "json", timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1
    by_name = {Path(e["path"]).name: e for e in _json(proc)["files"]}
    assert by_name["good.json"]["status"] == "passed"
    for name in HOSTILE:
        entry = by_name[name]
        assert entry["status"] == "error", (name, entry)
        assert any(f["rule"].startswith("INPUT.") for f in entry["findings"]), (name, entry)
    assert "root:" not in proc.stdout  # /etc/passwd never read


def test_missing_path_is_usage_error(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nope.json"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_junit_and_table_formats(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    proc = run_cli("validate", str(f), "--format", "junit")
    assert proc.returncode == 0 and "<testsuite" in proc.stdout
    proc = run_cli("validate", str(f))
    assert proc.returncode == 0 and "passed" in proc.stdout


@pytest.mark.shared
def test_official_fhir_patient_examples(shared_data: Path) -> None:
    files = sorted((shared_data / "fhir" / "examples").glob("*Patient*.json"))
    assert files
    proc = run_cli("validate", *map(str, files), "--format", "json")
    out = _json(proc)
    for entry in out["files"]:
        rules = {f["rule"] for f in entry["findings"] if f["severity"] == "error"}
        # FR Core's example INS 123456789012244 has a wrong key by design: flagged, nothing else is.
        if "123456789012244" in Path(entry["path"]).read_text(encoding="utf-8"):
            assert "INS.MATRICULE.KEY" in rules, entry
        assert entry["status"] != "error", entry
