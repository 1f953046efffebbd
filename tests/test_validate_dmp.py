"""`segur-bench validate` on DMP submissions: ITI-41 (XDS.b) requests and ITI-65 (MHD) bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.parsing import parse_xml
from conformance.simulators.xds_builder import build_submit_objects, provide_and_register
from tests.conftest import run_cli
from tests.test_checks_xds import CDA, INS, INS_OID


def _itI41(tmp_path: Path, document: bytes = CDA, **overrides: object) -> Path:
    sor = build_submit_objects(
        document, parse_xml(document), patient_ins=INS, ins_oid=INS_OID, author={}, overrides=dict(overrides)
    )
    f = tmp_path / "iti41.xml"
    f.write_bytes(provide_and_register(sor, document))
    return f


def test_conformant_iti41_with_inline_cda_passes(tmp_path: Path) -> None:
    proc = run_cli("validate", str(_itI41(tmp_path)), "--format", "json")
    entry = json.loads(proc.stdout)["files"][0]
    assert entry["kind"] == "xds"
    assert [f for f in entry["findings"] if f["severity"] == "error"] == []
    assert proc.returncode == 0, proc.stdout


def test_iti41_whose_document_differs_from_its_metadata_fails(tmp_path: Path) -> None:
    f = _itI41(tmp_path)
    # Same metadata, another document inline: hash/size (and more) no longer match.
    other = CDA.replace(
        b"<component><structuredBody/></component>", b"<component><structuredBody></structuredBody></component>"
    )
    text = f.read_bytes()
    import base64

    text = text.replace(base64.b64encode(CDA), base64.b64encode(other))
    f.write_bytes(text)
    proc = run_cli("validate", str(f), "--format", "json")
    rules = {x["rule"] for x in json.loads(proc.stdout)["files"][0]["findings"] if x["severity"] == "error"}
    assert {"XDS.HASH", "XDS.SIZE"} <= rules, rules
    assert proc.returncode == 1


@pytest.mark.shared
def test_official_mhd_example_is_judged_as_mhd(shared_data: Path) -> None:
    f = (
        shared_data
        / "fhir"
        / "examples"
        / "pdsm-branch-add-exemples-iti65__Bundle-bundle-exemple-comprehensiveprovidedocument-replace.json"
    )
    proc = run_cli("validate", str(f), "--format", "json")
    entry = json.loads(proc.stdout)["files"][0]
    assert entry["kind"] == "mhd"
    # The official example carries defects of its own (see tests/test_checks_mhd.py): they are reported.
    assert proc.returncode == 1 and entry["status"] == "failed"
    assert any(x["rule"].startswith("MHD.") for x in entry["findings"])
