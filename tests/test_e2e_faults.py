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


def test_service_filter_and_discovery_fallback(tmp_path: Path) -> None:
    """A vendor without /.well-known/segur-bench: the bench assumes {URL}/fhir and {URL}/driver."""
    from starlette.responses import PlainTextResponse

    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    inner = create_vendor_app()

    async def no_well_known(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/.well-known/"):
            await PlainTextResponse("not found", status_code=404)(scope, receive, send)
        else:
            await inner(scope, receive, send)

    srv = BackgroundServer(no_well_known, name="no-well-known").start()
    try:
        proc = run_cli("run", "--target", srv.url, "--service", "ins", "--out", str(tmp_path))
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["target"]["endpoints"]["fhir"] == f"{srv.url}/fhir"
    assert results["requirements"] and {r["service"] for r in results["requirements"]} == {"INS"}
    assert {s["service"] for s in results["scenarios"]} == {"INS"}
