"""A vendor over real TLS (certificate from the bench's test PKI): TLS facts are evidence; a server
the bench does not trust is exit 2 with one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import pki
from conformance.simulators.server import BackgroundServer
from conformance.simulators.vendor import create_vendor_app
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def tls_vendor(tmp_path: Path) -> Iterator[tuple[BackgroundServer, Path]]:
    ca = pki.new_ca()
    cert, key = pki.issue(ca, "localhost", "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "server.pem").write_bytes(cert)
    (tmp_path / "server-key.pem").write_bytes(key)
    srv = BackgroundServer(
        create_vendor_app(),
        name="tls-vendor",
        ssl_certfile=str(tmp_path / "server.pem"),
        ssl_keyfile=str(tmp_path / "server-key.pem"),
    ).start()
    yield srv, tmp_path
    srv.stop()


def test_tls_vendor_passes_and_tls_facts_are_recorded(tls_vendor: tuple[BackgroundServer, Path]) -> None:
    srv, d = tls_vendor
    assert srv.url.startswith("https://")
    target = d / "target.toml"
    target.write_text(f'[target]\nbase = "{srv.url}"\n[tls]\nca = "{d / "ca.pem"}"\n', encoding="utf-8")
    proc = run_cli("run", "--target", str(target), "--out", str(d / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((d / "out" / "results.json").read_text(encoding="utf-8"))
    versions = {e["tls"]["version"] for e in results["evidence"] if e.get("tls")}
    assert versions and versions <= {"TLSv1.2", "TLSv1.3"}


def test_untrusted_tls_vendor_is_exit_2(tls_vendor: tuple[BackgroundServer, Path]) -> None:
    srv, d = tls_vendor
    proc = run_cli("run", "--target", srv.url, "--out", str(d / "out"))
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "TLS" in err[0], proc.stderr
    assert "Traceback" not in proc.stderr
