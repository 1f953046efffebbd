"""Signing and verify: any alteration of a signed results file is detected, and says what changed.

The module-scoped fixture runs the real demo once with ``--sign``; each test alters a copy.
"""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from conformance.engine.evidence import evidence_hash
from conformance.model import Evidence
from conformance.trust import signing
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def signed_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("signed")
    key = tmp / "bench.pem"
    env = {"SEGUR_BENCH_DB": str(tmp / "history.sqlite3")}
    proc = run_cli("keygen", "--out", str(key), env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("demo", "--out", str(tmp / "out"), "--sign", str(key), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"dir": tmp, "key": key, "pub": tmp / "bench.pem.pub", "results": tmp / "out" / "results.json", "env": env}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_altered(tmp_path: Path, data: dict[str, Any]) -> Path:
    out = tmp_path / "altered.json"
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def test_keygen_writes_private_key_0600_and_public_key(signed_demo: dict[str, Any]) -> None:
    mode = stat.S_IMODE(signed_demo["key"].stat().st_mode)
    assert mode == 0o600
    assert b"PRIVATE KEY" in signed_demo["key"].read_bytes()
    assert b"PUBLIC KEY" in signed_demo["pub"].read_bytes()
    again = run_cli("keygen", "--out", str(signed_demo["key"]))
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_signature_block_and_private_key_absent_from_outputs(signed_demo: dict[str, Any]) -> None:
    data = _load(signed_demo["results"])
    sig = data["signature"]
    assert set(sig) == {"algorithm", "public_key", "key_id", "signed", "value"}
    assert sig["algorithm"] == "Ed25519"
    assert sig["signed"] == signing.canonical_sha256(data)
    key = signing.load_private_key(signed_demo["key"])
    assert sig["key_id"] == signing.key_id(key.public_key())
    pem_body = "".join(signed_demo["key"].read_text().splitlines()[1:-1])
    for f in (signed_demo["results"].parent).iterdir():
        assert pem_body not in f.read_text(encoding="utf-8", errors="replace"), f
    # the canonical form carries every evidence hash and the versions
    canon = signing.canonical_bytes(data).decode()
    assert all(ev["sha256"] in canon for ev in data["evidence"])
    assert '"tool":{' in canon and '"profile":{' in canon


def test_verify_intact_exits_0(signed_demo: dict[str, Any]) -> None:
    proc = run_cli("verify", str(signed_demo["results"]), "--public-key", str(signed_demo["pub"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "intact" in proc.stdout
    proc = run_cli("verify", str(signed_demo["results"]))  # embedded key: integrity, says who is unproven
    assert proc.returncode == 0 and "--public-key" in proc.stdout


def test_one_byte_of_evidence_body_altered_names_the_evidence(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    ev = next(e for e in data["evidence"] if (e.get("response") or {}).get("body"))
    body = ev["response"]["body"]
    ev["response"]["body"] = body[:-1] + ("x" if body[-1] != "x" else "y")
    proc = run_cli("verify", str(_write_altered(tmp_path, data)), "--public-key", str(signed_demo["pub"]))
    assert proc.returncode == 1, proc.stdout
    assert f"evidence {ev['id']}" in proc.stdout
    assert "signature invalid" in proc.stdout


def test_evidence_altered_and_rehashed_still_caught_by_signature(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    ev = data["evidence"][0]
    ev["request"]["url"] = ev["request"].get("url", "") + "?x"
    ev["sha256"] = evidence_hash(Evidence.model_validate(ev))
    proc = run_cli("verify", str(_write_altered(tmp_path, data)))
    assert proc.returncode == 1 and "signature invalid" in proc.stdout
    assert "evidence ev-" not in proc.stdout


def test_one_requirement_status_altered(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    data["requirements"][0]["status"] = "waived"
    proc = run_cli("verify", str(_write_altered(tmp_path, data)), "--public-key", str(signed_demo["pub"]))
    assert proc.returncode == 1 and "signature invalid" in proc.stdout


def test_tool_version_altered(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    data["tool"]["version"] = "9.9.9"
    proc = run_cli("verify", str(_write_altered(tmp_path, data)), "--public-key", str(signed_demo["pub"]))
    assert proc.returncode == 1 and "signature invalid" in proc.stdout


def test_wrong_public_key_exits_1(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    assert run_cli("keygen", "--out", str(other)).returncode == 0
    proc = run_cli("verify", str(signed_demo["results"]), "--public-key", str(tmp_path / "other.pem.pub"))
    assert proc.returncode == 1 and "signature invalid" in proc.stdout


def test_resigned_with_attacker_key_fails_against_trusted_key(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    data["requirements"][0]["status"] = "passed"
    data["signature"] = signing.sign_results(data, signing.generate_key())
    path = _write_altered(tmp_path, data)
    assert run_cli("verify", str(path)).returncode == 0  # self-consistent …
    proc = run_cli("verify", str(path), "--public-key", str(signed_demo["pub"]))
    assert proc.returncode == 1 and "not by the trusted key" in proc.stdout  # … but not ours


def test_unsigned_and_unreadable_inputs(signed_demo: dict[str, Any], tmp_path: Path) -> None:
    data = _load(signed_demo["results"])
    del data["signature"]
    path = _write_altered(tmp_path, data)
    proc = run_cli("verify", str(path))
    assert proc.returncode == 1 and "not signed" in proc.stdout
    assert run_cli("verify", str(path), "--allow-unsigned").returncode == 0
    for content in ("{not json", '{"schema": "other"}', ""):
        bad = tmp_path / "bad.json"
        bad.write_text(content, encoding="utf-8")
        proc = run_cli("verify", str(bad))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert run_cli("verify", str(tmp_path / "missing.json")).returncode == 2
    proc = run_cli("verify", str(signed_demo["results"]), "--public-key", str(signed_demo["key"]))
    assert proc.returncode == 2 and "private key" in proc.stderr


def test_bad_signing_key_is_exit_2_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "k.pem"
    bad.write_text("not a key", encoding="utf-8")
    proc = run_cli("demo", "--out", str(tmp_path / "o"), "--sign", str(bad), "--no-db")
    assert proc.returncode == 2 and "signing key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "results.json").exists()


# ---------------------------------------------------------------- pure functions, no process


def test_pure_sign_verify_round_trip_and_tamper_kinds() -> None:
    from tests.test_report import synthetic_run

    data = synthetic_run(20)
    for ev in data["evidence"]:  # the synthetic run carries placeholder hashes
        ev["sha256"] = evidence_hash(Evidence.model_validate(ev))
    key = signing.generate_key()
    data["signature"] = signing.sign_results(data, key)
    assert signing.verify_results(data, public_key=key.public_key()).ok
    for mutate in (
        lambda d: d["evidence"][3]["response"].__setitem__("body", d["evidence"][3]["response"]["body"] + " "),
        lambda d: d["requirements"][1].__setitem__("status", "passed"),
        lambda d: d["profile"].__setitem__("version", "2"),
        lambda d: d["evidence"].pop(),
        lambda d: d["signature"].__setitem__("signed", "0" * 64),
    ):
        altered = copy.deepcopy(data)
        mutate(altered)
        assert not signing.verify_results(altered, public_key=key.public_key()).ok
