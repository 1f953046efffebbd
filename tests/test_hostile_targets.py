"""Hostile and broken targets: an INPUT.* finding or exit 2 with one clear line; never a traceback
or a hang; every run finishes within its timeouts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.simulators.server import BackgroundServer
from conformance.simulators.vendor import create_vendor_app
from tests.conftest import run_cli
from tests.hostile import HostileFhir, SilentServer, free_port

pytestmark = pytest.mark.e2e


def _toml(tmp_path: Path, base: str, *, http: float = 3, extra: str = "") -> Path:
    p = tmp_path / "target.toml"
    p.write_text(f'[target]\nbase = "{base}"\n{extra}\n[timeouts]\nhttp = {http}\nawait = 10\n', encoding="utf-8")
    return p


def _one_line_error(proc: Any) -> str:
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(err) == 1, proc.stderr
    return err[0]


@pytest.mark.parametrize(
    "mode, rule",
    [
        ("malformed-json", "INPUT.JSON"),
        ("xxe", "INPUT.JSON"),
        ("entity-bomb", "INPUT.JSON"),
        ("not-json-html", "INPUT.JSON"),
        ("invalid-utf8", "INPUT.ENCODING"),
        ("huge", "INPUT.TOO-LARGE"),
        ("hang", "INPUT.TIMEOUT"),
    ],
)
def test_hostile_fhir_answers_become_input_findings(mode: str, rule: str, tmp_path: Path) -> None:
    srv = BackgroundServer(HostileFhir(create_vendor_app(), mode), name="hostile").start()
    try:
        t0 = time.monotonic()
        proc = run_cli("run", "--target", str(_toml(tmp_path, srv.url)), "--out", str(tmp_path / "out"), timeout=180)
        elapsed = time.monotonic() - t0
    finally:
        srv.stop()
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    rules = {f["rule"] for r in results["requirements"] for c in r["checks"] for f in c["findings"]}
    assert rule in rules, rules
    assert results["complete"] is True
    assert elapsed < 120


def test_connection_refused_is_exit_2(tmp_path: Path) -> None:
    proc = run_cli("run", "--target", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unreachable" in _one_line_error(proc)


def test_server_that_never_answers_is_exit_2_within_timeout(tmp_path: Path) -> None:
    silent = SilentServer()
    try:
        t0 = time.monotonic()
        proc = run_cli("run", "--target", silent.url, "--out", str(tmp_path), timeout=60)
    finally:
        silent.stop()
    assert proc.returncode == 2
    assert "no answer" in _one_line_error(proc)
    assert time.monotonic() - t0 < 40


def test_tls_failure_is_exit_2(tmp_path: Path) -> None:
    # An https URL to a plain-HTTP server: the TLS handshake fails.
    srv = BackgroundServer(create_vendor_app(), name="plain").start()
    try:
        proc = run_cli("run", "--target", srv.url.replace("http://", "https://"), "--out", str(tmp_path))
    finally:
        srv.stop()
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "TLS" in line or "SSL" in line, line


def test_bad_target_file_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text("[target\nbase=", encoding="utf-8")
    proc = run_cli("run", "--target", str(bad), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "invalid TOML" in _one_line_error(proc)
