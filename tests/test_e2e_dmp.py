"""End to end, bench as the DMP: the reference vendor passes segur-v2-dmp; each ``dmp.*`` fault fails
exactly its requirements, and does so through the rule the fault is about (not by a side effect).

Real sockets throughout: the CLI starts the INSi and DMP doubles, the vendor runs as an HTTP server,
its driver calls INSi then the DMP (SOAP 1.2 + MTOM, signed VIHF with the run's test PKI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.simulators.faults import FAULTS
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

DMP_FAULTS = sorted(name for name, fault in FAULTS.items() if fault.service == "dmp")

# The rule through which each fault must be seen (a fault failing its requirement for another reason
# would mean the check it is meant to prove is not the one that caught it).
RULE_OF_FAULT = {
    "dmp.vihf-missing-attribute": "VIHF.ATTRIBUTES",
    "dmp.vihf-unsigned": "VIHF.SIGNATURE",
    "dmp.vihf-expired": "VIHF.VALIDITY",
    "dmp.metadata-type-mismatch": "XDS.CDA.TYPE",
    "dmp.wrong-class-code": "XDS.CLASS-TYPE",
    "dmp.bad-confidentiality": "XDS.VS.CONFIDENTIALITY",
    "dmp.missing-ins": "DMP.PATIENTID",
    "dmp.wrong-hash": "XDS.HASH",
    "dmp.cda-missing-custodian": "CDA.CUSTODIAN",
    "dmp.cda-bad-language": "CDA.LANGUAGE",
    "dmp.replace-without-rplc": "DMP.RPLC",
    "dmp.soap11": "DMP.SOAP.VERSION",
    "dmp.retrieve-wrong-repository": "DMP.RETRIEVE.REPOSITORY",
}


def _run(url: str, out: Path) -> tuple[int, dict[str, Any], str]:
    proc = run_cli("run", "--target", url, "--profile", "segur-v2-dmp", "--out", str(out), "--await-timeout", "20")
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return proc.returncode, results, output


def _error_rules(results: dict[str, Any], requirement: str) -> set[str]:
    req = next(r for r in results["requirements"] if r["id"] == requirement)
    return {f["rule"] for c in req["checks"] for f in c["findings"] if f["severity"] == "error"}


def test_at_least_ten_dmp_faults_each_with_its_rule() -> None:
    assert len(DMP_FAULTS) >= 10
    assert set(RULE_OF_FAULT) == set(DMP_FAULTS)


def test_conformant_vendor_passes_the_dmp_profile(vendor: Any, tmp_path: Path) -> None:
    srv = vendor()
    code, results, output = _run(srv.url, tmp_path)
    assert code == 0, output
    assert results["complete"] is True
    statuses = {r["id"]: r["status"] for r in results["requirements"]}
    assert statuses and set(statuses.values()) == {"passed"}, statuses
    assert {s["id"]: s["status"] for s in results["scenarios"]} == {
        "dmp-publish": "passed",
        "dmp-replace-query": "passed",
        "dmp-mhd-publish": "passed",
    }
    # The run's private key went to the vendor in services.pki, but never into the evidence or reports.
    for name in ("results.json", "report.html", "report.md", "junit.xml"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "PRIVATE KEY-----\\n" not in text and "BEGIN PRIVATE KEY-----\nMII" not in text


@pytest.mark.parametrize("fault", DMP_FAULTS)
def test_each_dmp_fault_fails_exactly_its_requirements(fault: str, vendor: Any, tmp_path: Path) -> None:
    srv = vendor(fault)
    code, results, output = _run(srv.url, tmp_path)
    failed = {r["id"] for r in results["requirements"] if r["status"] in ("failed", "error")}
    assert failed == set(FAULTS[fault].requirements), output
    assert code == 1
    others = {r["id"]: r["status"] for r in results["requirements"] if r["id"] not in failed}
    assert set(others.values()) <= {"passed"}, others
    assert RULE_OF_FAULT[fault] in set().union(*(_error_rules(results, r) for r in failed))
