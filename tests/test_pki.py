"""The test PKI standing in for IGC-Santé: usages, chains, files 0600, CLI, and a real mutual-TLS handshake."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance import pki
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def ca() -> pki.Ca:
    return pki.new_ca()


@pytest.fixture(scope="module")
def other_ca() -> pki.Ca:
    return pki.new_ca(key_type="ec")


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def test_ca_is_a_ca_and_says_it_is_not_igc_sante(ca: pki.Ca) -> None:
    cn = ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "segur-bench test CA (not IGC-Santé)"
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign


def test_server_certificate(ca: pki.Ca) -> None:
    cert_pem, key_pem = pki.issue(ca, "vendor.test", "server", sans=["10.1.2.3"])
    cert = _cert(cert_pem)
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "vendor.test"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pki.chain_problem(cert, [ca.cert]) is None
    assert serialization.load_pem_private_key(key_pem, None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_client_certificate_looks_like_an_org_certificate(ca: pki.Ca) -> None:
    cert = _cert(pki.issue(ca, "Cabinet Dupont", "client", org="Cabinet Dupont SCM")[0])
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Cabinet Dupont SCM"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "ORG"
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert pki.chain_problem(cert, [ca.cert]) is None


def test_signing_certificate(ca: pki.Ca) -> None:
    cert = _cert(pki.issue(ca, "Signature VIHF", "signing")[0])
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_encipherment
    assert _eku(cert) == []  # no TLS usage
    assert pki.chain_problem(cert, [ca.cert]) is None


def test_ec_ca_issues_ec_keys(other_ca: pki.Ca) -> None:
    cert_pem, _ = pki.issue(other_ca, "ec leaf", "client")
    cert = _cert(cert_pem)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_agreement and not ku.key_encipherment
    assert pki.chain_problem(cert, [other_ca.cert]) is None


def test_chain_problems(ca: pki.Ca, other_ca: pki.Ca) -> None:
    cert = _cert(pki.issue(ca, "x", "signing")[0])
    assert "not issued by the trusted CA" in (pki.chain_problem(cert, [other_ca.cert]) or "")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=5000)
    assert "not valid at" in (pki.chain_problem(cert, [ca.cert], at=later) or "")
    # A leaf cannot act as an issuer even if names line up.
    leaf_pem, leaf_key = pki.issue(ca, "fake CA", "signing")
    fake = pki.Ca(_cert(leaf_pem), serialization.load_pem_private_key(leaf_key, None))  # type: ignore[arg-type]
    child = _cert(pki.issue(fake, "child", "signing")[0])
    assert "is not a CA certificate" in (pki.chain_problem(child, [ca.cert], intermediates=[fake.cert]) or "")


def test_bad_arguments(ca: pki.Ca) -> None:
    with pytest.raises(pki.PkiError):
        pki.issue(ca, "  ", "server")
    with pytest.raises(pki.PkiError):
        pki.issue(ca, "x", "bogus")
    with pytest.raises(pki.PkiError):
        pki.issue(ca, "x", "server", sans=["bad name!"])
    with pytest.raises(pki.PkiError):
        pki.load_certificates(b"not a pem")


def test_ephemeral_run_pki_carries_what_the_driver_call_needs() -> None:
    run = pki.ephemeral_run_pki(key_type="ec")
    services = run.services()
    assert set(services) == {"ca_pem", "cert_pem", "key_pem"}
    cert = _cert(services["cert_pem"].encode())
    assert pki.chain_problem(cert, pki.load_certificates(services["ca_pem"])) is None
    assert ExtendedKeyUsageOID.CLIENT_AUTH in _eku(cert)
    assert pki.chain_problem(_cert(run.signing_cert_pem), [run.ca.cert]) is None
    assert "PRIVATE KEY" not in repr(run) and "PRIVATE KEY" not in repr(run.ca)


def test_files_are_private_and_ca_is_not_overwritten(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ca = pki.init_ca(d, key_type="ec")
    assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
    with pytest.raises(pki.PkiError, match="already exists"):
        pki.init_ca(d)
    loaded = pki.load_ca(d)
    assert loaded.cert == ca.cert
    cert_path, key_path, cert = pki.issue_to_files(d, "Cabinet Dupont", "client")
    assert cert_path.name == "cabinet-dupont.pem" and key_path.name == "cabinet-dupont-key.pem"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Cabinet Dupont"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # An existing, world-readable file is tightened when a key is written over it.
    loose = tmp_path / "loose-key.pem"
    loose.write_text("x")
    loose.chmod(0o644)
    pki.write_private(loose, b"k")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    with pytest.raises(pki.PkiError, match="overwrite the CA"):
        pki.issue_to_files(d, "x", "server", out=d / "ca")
    # A key that does not match the certificate is refused.
    (d / "ca-key.pem").write_bytes(pki.new_ca(key_type="ec").key_pem())
    with pytest.raises(pki.PkiError, match="does not match"):
        pki.load_ca(d)


def test_mutual_tls_handshake_with_issued_certificates(tmp_path: Path) -> None:
    ca = pki.new_ca(key_type="ec")
    files: dict[str, Path] = {}
    for name, data in {
        "ca.pem": ca.cert_pem,
        **dict(zip(("srv.pem", "srv-key.pem"), pki.issue(ca, "localhost", "server"), strict=True)),
        **dict(zip(("cli.pem", "cli-key.pem"), pki.issue(ca, "Cabinet", "client"), strict=True)),
    }.items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files["ca.pem"]))
    server_ctx.load_cert_chain(files["srv.pem"], files["srv-key.pem"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(files["ca.pem"]))
    client_ctx.load_cert_chain(files["cli.pem"], files["cli-key.pem"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            tls.sendall(b"ok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(2) == b"ok"
    t.join(5)
    listener.close()
    assert seen["peer"]


# ---------------------------------------------------------------- CLI
def test_cli_pki_init_and_issue(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    r = run_cli("pki", "init", "--dir", str(d), "--key-type", "ec")
    assert r.returncode == 0, r.stderr
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
    r = run_cli("pki", "init", "--dir", str(d))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "already exists" in r.stderr

    r = run_cli(
        "pki", "issue", "--dir", str(d), "--cn", "localhost", "--usage", "server", "--out", str(tmp_path / "srv")
    )
    assert r.returncode == 0, r.stderr
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert stat.S_IMODE((tmp_path / "srv-key.pem").stat().st_mode) == 0o600
    cert = _cert((tmp_path / "srv.pem").read_bytes())
    assert pki.chain_problem(cert, [_cert((d / "ca.pem").read_bytes())]) is None

    for usage in ("client", "signing"):
        r = run_cli("pki", "issue", "--dir", str(d), "--cn", f"Vendor {usage}", "--usage", usage)
        assert r.returncode == 0, r.stderr
        assert (d / f"vendor-{usage}-key.pem").exists()


def test_cli_pki_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    r = run_cli("pki", "issue", "--dir", str(tmp_path / "none"), "--cn", "x", "--usage", "server")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no CA there" in r.stderr
    r = run_cli("pki", "issue", "--dir", str(tmp_path), "--cn", "x", "--usage", "bogus")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
