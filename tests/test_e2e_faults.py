"""End to end: the reference vendor passes; each fault fails exactly the requirements it maps to.

New faults added to the registry are picked up automatically by the parametrization; each fault is
run against the profile of its service (its requirement ids are that profile's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.simulators.faults import FAULTS
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

PROFILE_OF_SERVICE = {"ins": "segur-v2-ins", "dmp": "segur-v2-dmp"}


def _run(url: str, out: Path, profile: str = "segur-v2-ins") -> tuple[int, dict[str, Any], str]:
    proc = run_cli("run", "--target", url, "--profile", profile, "--out", str(out), "--await-timeout", "20")
    assert "Traceback" not in proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return proc.returncode, results, proc.stdout + proc.stderr


def test_conformant_reference_vendor_passes(vendor: Any, tmp_path: Path) -> None:
    srv = vendor()
    code, results, output = _run(srv.url, tmp_path)
    statuses = {r["id"]: r["status"] for r in results["requirements"]}
    assert code == 0, output
    assert results["complete"] is True
    assert [r for r, s in statuses.items() if s != "passed"] == []
    for name in ("report.html", "junit.xml", "report.md"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_exactly_its_requirements(fault: str, vendor: Any, tmp_path: Path) -> None:
    srv = vendor(fault)
    code, results, output = _run(srv.url, tmp_path, PROFILE_OF_SERVICE[FAULTS[fault].service])
    failed = {r["id"] for r in results["requirements"] if r["status"] in ("failed", "error")}
    assert failed == set(FAULTS[fault].requirements), output
    assert code == 1
    others = {r["id"]: r["status"] for r in results["requirements"] if r["id"] not in failed}
    assert set(others.values()) <= {"passed"}, others
