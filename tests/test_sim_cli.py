"""`segur-bench sim` starts real servers that a vendor (or a person) can use."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import EXE

pytestmark = pytest.mark.e2e


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [EXE, "sim", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("simulator did not announce its URL")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=15)
    finally:
        proc.kill()


def test_sim_vendor_with_fault_serves_the_driver_api() -> None:
    proc, url = _start("vendor", "--fault", "ins.no-status")
    try:
        doc = requests.get(f"{url}/.well-known/segur-bench", timeout=5).json()
        assert doc["fhir"].endswith("/fhir") and doc["driver"].endswith("/driver")
        caps = requests.get(f"{url}/driver/capabilities", timeout=5).json()
        assert "ins.fetch" in caps["actions"]
    finally:
        code = _stop(proc)
    assert code == 0


def test_sim_services_answers_insi_soap() -> None:
    proc, url = _start("services")
    try:
        for path in ("/insi/lps", "/dmp"):
            r = requests.post(
                f"{url}{path}", data=b"not soap", headers={"Content-Type": "application/soap+xml"}, timeout=5
            )
            assert r.status_code >= 400 and b"Fault" in r.content, path
    finally:
        _stop(proc)
