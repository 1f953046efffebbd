"""The bench's test PKI, standing in for IGC-Santé (the national health PKI).

Why a PKI of our own: the DMP (and the other services socles) only trust IGC-Santé certificates, which
a vendor's test environment cannot use against the bench, and the bench cannot check a real IGC-Santé
chain offline.  So the bench makes a small CA (``segur-bench pki init``), issues the vendor's test
certificates with the key usages IGC-Santé profiles give them (``pki issue``: server, client/ORG
authentication, signing), and a driver call may carry one run's credentials (``services.pki``,
see :func:`ephemeral_run_pki`) so that an unattended vendor signs its VIHF token and authenticates
with mutual TLS under a CA the bench trusts for that run only.

The CA's common name says, on purpose, that it is *not* IGC-Santé: a certificate issued here must
never be mistaken for a real one.  Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "segur-bench test CA (not IGC-Santé)"
CA_ORGANIZATION = "segur-bench"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
DEFAULT_DIR = Path("segur-bench-pki")

Usage = Literal["server", "client", "signing"]
KeyType = Literal["rsa", "ec"]
USAGES: tuple[Usage, ...] = ("server", "client", "signing")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Leaf certificates live long enough for a CI pipeline cached for a while, not for years: they are
# test credentials.  Backdating absorbs clock skew between the bench and the vendor's machine.
CA_DAYS = 3650
LEAF_DAYS = 825
_BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """A PKI operation that cannot be done (missing or unreadable CA, bad arguments); one line."""


@dataclass(frozen=True)
class Ca:
    """A CA certificate and its key; ``directory`` is where it lives on disk (``None``: memory only)."""

    cert: x509.Certificate
    key: PrivateKey
    directory: Path | None = None

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The CA private key (PKCS#8, unencrypted). A method, not a property, so it is never dumped
        by accident with the object's attributes."""
        return _key_pem(self.key)

    def __repr__(self) -> str:  # never show the key
        return f"Ca(subject={self.cert.subject.rfc4514_string()!r}, directory={self.directory!r})"


@dataclass(frozen=True)
class RunPki:
    """Credentials for one run: a throw-away CA, a client (ORG authentication) certificate that may
    also sign, and a dedicated signing certificate.  Nothing is written to disk."""

    ca: Ca
    cert_pem: bytes
    key_pem: bytes
    signing_cert_pem: bytes
    signing_key_pem: bytes

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    def services(self) -> dict[str, str]:
        """What a driver call's ``services.pki`` carries: ``{"ca_pem", "cert_pem", "key_pem"}``.

        The key is the *run's* throw-away key, handed on purpose to the vendor's test environment so
        it signs and authenticates with credentials the bench trusts; evidence redaction must still
        strip it (it is a private key)."""
        return {
            "ca_pem": self.ca_pem.decode("ascii"),
            "cert_pem": self.cert_pem.decode("ascii"),
            "key_pem": self.key_pem.decode("ascii"),
        }

    def __repr__(self) -> str:
        return f"RunPki(ca={self.ca!r})"


# ---------------------------------------------------------------- keys and names
def _new_key(key_type: KeyType | str) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise PkiError(f"unknown key type {key_type!r} (rsa or ec)")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(cn: str, *, org: str | None = None, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _check_cn(cn: str) -> str:
    cn = cn.strip()
    if not cn:
        raise PkiError("the common name (--cn) must not be empty")
    if len(cn) > 64:  # RFC 5280 upper bound for CN
        raise PkiError(f"the common name must have at most 64 characters, found {len(cn)}")
    if any(ord(c) < 32 for c in cn):
        raise PkiError("the common name must not contain control characters")
    return cn


# ---------------------------------------------------------------- CA
def new_ca(*, key_type: KeyType | str = "rsa", days: int = CA_DAYS) -> Ca:
    """An in-memory CA (nothing written)."""
    key = _new_key(key_type)
    name = _name(CA_COMMON_NAME, org=CA_ORGANIZATION, unit="test PKI")
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Ca(cert, key)


def init_ca(directory: Path | str = DEFAULT_DIR, *, key_type: KeyType | str = "rsa", force: bool = False) -> Ca:
    """Create a CA in ``directory`` (``ca.pem`` 0644, ``ca-key.pem`` 0600).

    Refuses to replace an existing CA unless ``force``: every certificate already issued (and every
    vendor configuration trusting it) would silently stop chaining."""
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not force and (cert_path.exists() or key_path.exists()):
        raise PkiError(f"{directory}: a CA already exists there (use --force to replace it)")
    ca = new_ca(key_type=key_type)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_private(key_path, ca.key_pem())
        write_public(cert_path, ca.cert_pem)
    except OSError as exc:
        raise PkiError(f"cannot write the CA to {directory}: {exc.strerror or exc}") from None
    return Ca(ca.cert, ca.key, directory)


def load_ca(directory: Path | str = DEFAULT_DIR) -> Ca:
    """Read the CA made by :func:`init_ca`."""
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert_path.is_file() or not key_path.is_file():
        raise PkiError(f"{directory}: no CA there (run `segur-bench pki init --dir {directory}` first)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"{directory}: unreadable CA ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: unsupported key type (RSA or EC expected)")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise PkiError(f"{directory}: {CA_KEY_FILE} does not match {CA_CERT_FILE}")
    return Ca(cert, key, directory)


# ---------------------------------------------------------------- leaf certificates
def _key_usage(usage: str, key: PrivateKey) -> x509.KeyUsage:
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=True,
        # Signing certificates of IGC-Santé carry non-repudiation; a VIHF or a document signature
        # made with it commits its holder.
        content_commitment=usage == "signing",
        # TLS with RSA key transport needs keyEncipherment; EC keys agree instead.
        key_encipherment=rsa_key and usage in ("server", "client"),
        data_encipherment=False,
        key_agreement=(not rsa_key) and usage in ("server", "client"),
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sans(sans: Iterable[str], usage: str, cn: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    wanted = list(sans)
    if usage == "server":
        # Simulators and the reference vendor listen on loopback by default.
        wanted = [*wanted, "localhost", "127.0.0.1"]
        if (re.fullmatch(r"[A-Za-z0-9.-]+", cn) and "." in cn) or cn == "localhost":
            wanted.append(cn)
    seen: set[str] = set()
    for value in wanted:
        value = value.strip()
        if not value or value.lower() in seen:
            continue
        seen.add(value.lower())
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*", value):
                raise PkiError(f"subject alternative name {value!r} is neither an IP address nor a DNS name") from None
            names.append(x509.DNSName(value))
    return names


def issue(
    ca: Ca,
    cn: str,
    usage: Usage | str,
    *,
    sans: Sequence[str] = (),
    org: str = "segur-bench vendor",
    unit: str | None = None,
    key_type: KeyType | str | None = None,
    days: int = LEAF_DAYS,
) -> tuple[bytes, bytes]:
    """Issue a certificate for ``cn``; returns ``(cert_pem, key_pem)``.

    - ``server``: serverAuth, SAN DNS ``localhost`` + IP ``127.0.0.1`` (+ ``sans``, + ``cn`` when it
      looks like a host name) — what TLS clients check.
    - ``client``: clientAuth, a subject like an IGC-Santé ORG certificate (O = the structure,
      OU = its unit); digitalSignature so the same key may also sign a VIHF, which is what a driver
      call's single ``services.pki`` pair needs.
    - ``signing``: digitalSignature + nonRepudiation, no TLS usage.

    ``key_type`` defaults to the CA's.
    """
    if usage not in USAGES:
        raise PkiError(f"unknown usage {usage!r} (server, client or signing)")
    cn = _check_cn(cn)
    if key_type is None:
        key_type = "ec" if isinstance(ca.key, ec.EllipticCurvePrivateKey) else "rsa"
    key = _new_key(key_type)
    subject = _name(cn, org=org if usage != "server" else None, unit=unit or ("ORG" if usage == "client" else None))
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usage, key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if usage == "server":
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif usage == "client":
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    alt = _sans(sans, usage, cn)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ephemeral_run_pki(*, key_type: KeyType | str = "rsa", org: str = "segur-bench run") -> RunPki:
    """An in-memory CA plus client and signing credentials for one run (nothing on disk).

    What a driver call's ``services.pki`` carries (see :meth:`RunPki.services`): the vendor signs its
    VIHF with ``key_pem`` and may use the same pair for mutual TLS; the bench trusts ``ca_pem`` for
    this run only, so a leaked key is worthless after the run."""
    ca = new_ca(key_type=key_type)
    cert_pem, key_pem = issue(ca, "segur-bench vendor ORG", "client", org=org)
    signing_cert, signing_key = issue(ca, "segur-bench vendor signature", "signing", org=org)
    return RunPki(ca, cert_pem, key_pem, signing_cert, signing_key)


# ---------------------------------------------------------------- files
def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600), even when the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def slug(cn: str) -> str:
    """A file-name prefix from a common name (``Cabinet Dupont`` → ``cabinet-dupont``)."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", cn).strip("-").lower()
    return s[:48] or "cert"


def issue_to_files(
    directory: Path | str,
    cn: str,
    usage: Usage | str,
    *,
    out: Path | str | None = None,
    sans: Sequence[str] = (),
) -> tuple[Path, Path, x509.Certificate]:
    """Load the CA in ``directory``, issue, and write ``PREFIX.pem`` (0644) and ``PREFIX-key.pem`` (0600).

    ``out`` is the prefix (default: ``directory/<slug of cn>``).  Returns the two paths and the cert."""
    ca = load_ca(directory)
    cert_pem, key_pem = issue(ca, cn, usage, sans=sans)
    prefix = Path(out) if out is not None else Path(directory) / slug(cn)
    cert_path = prefix.with_name(prefix.name + ".pem")
    key_path = prefix.with_name(prefix.name + "-key.pem")
    if cert_path.resolve() in {(Path(directory) / f).resolve() for f in (CA_CERT_FILE, CA_KEY_FILE)} or (
        key_path.resolve() in {(Path(directory) / f).resolve() for f in (CA_CERT_FILE, CA_KEY_FILE)}
    ):
        raise PkiError(f"--out {prefix} would overwrite the CA")
    try:
        if prefix.parent and not prefix.parent.exists():
            prefix.parent.mkdir(parents=True, exist_ok=True)
        write_private(key_path, key_pem)
        write_public(cert_path, cert_pem)
    except OSError as exc:
        raise PkiError(f"cannot write {prefix}: {exc.strerror or exc}") from None
    return cert_path, key_path, x509.load_pem_x509_certificate(cert_pem)


# ---------------------------------------------------------------- verification helpers
def load_certificates(pem: bytes | str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle; ``PkiError`` when there is none or it is unreadable."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"unreadable PEM certificate: {str(exc)[:120]}") from None
    if not certs:
        raise PkiError("no certificate in PEM data")
    return certs


def chain_problem(
    leaf: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    *,
    intermediates: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
    max_depth: int = 4,
) -> str | None:
    """Why ``leaf`` does not chain to one of ``anchors`` (through ``intermediates``), or ``None``.

    Deliberately small: issuer name + signature (``verify_directly_issued_by``), validity dates at
    ``at``, and CA basic constraints on every issuer.  No revocation (the test PKI has no CRL) and no
    policy OIDs — enough to tell "signed with the run's credentials" from "signed with anything else".
    """
    at = at or dt.datetime.now(dt.UTC)
    anchor_fps = {a.fingerprint(hashes.SHA256()) for a in anchors}
    current = leaf
    pool = [*intermediates, *anchors]
    for _ in range(max_depth + 1):
        if not current.not_valid_before_utc <= at <= current.not_valid_after_utc:
            return (
                f"certificate {current.subject.rfc4514_string()!r} is not valid at {at:%Y-%m-%dT%H:%M:%SZ} "
                f"(valid {current.not_valid_before_utc:%Y-%m-%d} to {current.not_valid_after_utc:%Y-%m-%d})"
            )
        if current.fingerprint(hashes.SHA256()) in anchor_fps:
            return None
        issuer = None
        for cand in pool:
            if cand.subject != current.issuer or cand is current:
                continue
            try:
                current.verify_directly_issued_by(cand)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = cand
            break
        if issuer is None:
            return f"certificate {current.subject.rfc4514_string()!r} is not issued by the trusted CA"
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            return f"issuer {issuer.subject.rfc4514_string()!r} is not a CA certificate"
        current = issuer
    return "certificate chain too long"
