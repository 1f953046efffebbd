"""Ed25519 signatures over results/v1 files and their verification.

Why this shape: an auditor receives ``results.json`` (and reports rebuilt from it) and must know it is
the file the bench wrote. Every evidence item already carries the sha256 of its redacted exchange
(``engine/evidence.py``); the signature covers a canonical form of the whole document *without* the
signature block — sorted-key compact UTF-8 JSON — so it binds statuses, findings, every evidence hash
and the tool/profile versions at once. ``verify`` recomputes each evidence hash (to name the item that
was altered) and then checks the signature (to catch anything else).

Pure functions: keys and documents in, values out; file I/O is limited to reading/writing key files.
The private key never leaves :func:`sign_results`: nothing it returns or raises contains it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from conformance.engine.evidence import evidence_hash
from conformance.model import Evidence

ALGORITHM = "Ed25519"
SIGNATURE_KEY = "signature"
PASSPHRASE_ENV = "SEGUR_BENCH_KEY_PASSPHRASE"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line and never contains key material."""


# ---------------------------------------------------------------- canonical form


def canonical_bytes(results: Mapping[str, Any]) -> bytes:
    """Sorted-key compact UTF-8 JSON of the document without its signature block.

    The document goes through a JSON round trip first so that the form signed in memory (tuples,
    non-string keys) is byte-identical to the form recomputed later from the file.
    """
    data = {k: v for k, v in results.items() if k != SIGNATURE_KEY}
    data = json.loads(json.dumps(data, ensure_ascii=False))
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def canonical_sha256(results: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(results)).hexdigest()


# ---------------------------------------------------------------- keys


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """sha256 fingerprint (hex) of the raw 32-byte public key: short enough to compare by eye."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_keypair(path: Path, key: Ed25519PrivateKey, *, force: bool = False) -> Path:
    """Write the private key (0600, created so, never world-readable even briefly) and ``PATH.pub``.

    Returns the public key path. Refuses to overwrite unless ``force``: losing a signing key silently
    would make every earlier signature unverifiable against the key an auditor was given.
    """
    pub_path = path.with_name(path.name + ".pub")
    if not force:
        for p in (path, pub_path):
            if p.exists():
                raise FileExistsError(f"{p} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem(key))
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file (--force)
    pub_path.write_bytes(public_pem(key.public_key()))
    return pub_path


def load_private_key(path: Path, passphrase: str | None = None) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; an encrypted one needs ``passphrase`` (or $SEGUR_BENCH_KEY_PASSPHRASE)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"signing key {path}: no such file") from None
    except OSError as exc:
        raise KeyFileError(f"signing key {path}: cannot read: {exc.strerror or exc}") from None
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:
        raise KeyFileError(f"signing key {path}: encrypted; set {PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"signing key {path}: not a PEM private key (or wrong passphrase)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path}: not an Ed25519 key (segur-bench keygen makes one)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key: PEM (what keygen writes), or the base64 raw key found in a results file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"public key {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY" in data:
            raise KeyFileError(f"public key {path}: this is a private key; give the .pub file")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(f"public key {path}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"public key {path}: not an Ed25519 key")
        return key
    try:
        return public_from_b64(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"public key {path}: neither PEM nor base64 raw Ed25519") from None


def public_from_b64(text: str) -> Ed25519PublicKey:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


# ---------------------------------------------------------------- sign / verify


def sign_results(results: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, str]:
    """The signature block to store as ``results["signature"]`` (any existing block is ignored)."""
    canon = canonical_bytes(results)
    pub = key.public_key()
    return {
        "algorithm": ALGORITHM,
        "public_key": base64.b64encode(raw_public(pub)).decode("ascii"),
        "key_id": key_id(pub),
        "signed": hashlib.sha256(canon).hexdigest(),
        "value": base64.b64encode(key.sign(canon)).decode("ascii"),
    }


@dataclass
class Verification:
    """Outcome of :func:`verify_results`; ``problems`` empty means intact (and signed, if required)."""

    problems: list[str] = field(default_factory=list)
    evidence_checked: int = 0
    signed: bool = False
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_evidence(results: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Recompute every evidence hash; returns (items checked, one problem line per altered item)."""
    problems: list[str] = []
    items = results.get("evidence")
    if not isinstance(items, list):
        return 0, ["evidence: missing or not a list"]
    seen: set[str] = set()
    for index, item in enumerate(items):
        eid = str(item.get("id")) if isinstance(item, dict) else f"#{index}"
        if eid in seen:
            problems.append(f"evidence {eid}: duplicate id")
        seen.add(eid)
        try:
            ev = Evidence.model_validate(item)
        except ValidationError as exc:
            problems.append(f"evidence {eid}: malformed ({exc.errors()[0]['msg']})")
            continue
        extra = sorted(set(item) - set(Evidence.model_fields)) if isinstance(item, dict) else []
        if extra:
            problems.append(f"evidence {eid}: unexpected field(s) {', '.join(extra)}")
        if not ev.sha256:
            problems.append(f"evidence {eid}: no sha256")
        elif evidence_hash(ev) != ev.sha256:
            problems.append(f"evidence {eid}: content altered (sha256 mismatch)")
    return len(items), problems


def verify_results(
    results: Mapping[str, Any], *, public_key: Ed25519PublicKey | None = None, require_signature: bool = True
) -> Verification:
    """Check every evidence hash and the signature.

    ``public_key``: the key the auditor trusts (from the vendor, out of band). Without it the key
    embedded in the file is used, which proves integrity since signing but not *who* signed: the
    CLI says so.
    """
    out = Verification()
    out.evidence_checked, out.problems = check_evidence(results)
    sig = results.get(SIGNATURE_KEY)
    if not sig:
        if require_signature:
            out.problems.append("not signed (run with --sign KEY)")
        return out
    out.signed = True
    if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM:
        out.problems.append("signature invalid: unknown algorithm or malformed signature block")
        return out
    try:
        embedded = public_from_b64(str(sig.get("public_key", "")))
        value = base64.b64decode(str(sig.get("value", "")), validate=True)
    except ValueError:
        out.problems.append("signature invalid: malformed public key or value")
        return out
    out.key_id = key_id(embedded)
    if sig.get("key_id") != out.key_id:
        out.problems.append("signature invalid: key_id does not match the embedded public key")
    if public_key is not None and raw_public(public_key) != raw_public(embedded):
        out.problems.append(
            f"signature invalid: signed by key {out.key_id[:16]}…, not by the trusted key {key_id(public_key)[:16]}…"
        )
        return out
    canon = canonical_bytes(results)
    if hashlib.sha256(canon).hexdigest() != sig.get("signed"):
        out.problems.append("content altered since signing (canonical sha256 differs)")
    try:
        embedded.verify(value, canon)
    except InvalidSignature:
        out.problems.append("signature invalid")
    return out
