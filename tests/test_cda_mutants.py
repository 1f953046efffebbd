"""Mutants of ANS's valid examples (one injected defect each) and hostile files.

Each mutant must be rejected with a rule of the right family (``CDA.*`` or ``INS.*``); hostile files
must end as ``status: error`` with an ``INPUT.*`` finding, without reading local files or the network,
in bounded time, and without costing the other files of the batch their verdicts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from conformance.validate import validate_file, validate_paths
from tests.conftest import run_cli

pytestmark = pytest.mark.shared

V3 = "urn:hl7-org:v3"
NS = {"c": V3}
INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
# valid official examples (correct INS key) used as mutation seeds
SEEDS = ["VSM_1.4_2022.01.xml", "ANEST-CR-CPA_2022.01.xml", "BIO-CR-BIO_2024.01_Microbiologie_V2.xml"]


def _doc(root: etree._Element) -> etree._Element:
    return root if root.tag == f"{{{V3}}}ClinicalDocument" else root.find(".//c:ClinicalDocument", NS)


def _one(doc: etree._Element, path: str) -> etree._Element:
    found = doc.find(path, NS)
    assert found is not None, path
    return found


def _drop(doc: etree._Element, path: str) -> None:
    found = doc.findall(path, NS)
    assert found, path
    for e in found:
        e.getparent().remove(e)


def _ins(doc: etree._Element) -> etree._Element:
    for idel in doc.findall("c:recordTarget/c:patientRole/c:id", NS):
        if idel.get("root") in INS_OIDS:
            return idel
    raise AssertionError("seed without INS")


def _bad_key(doc: etree._Element) -> None:
    idel = _ins(doc)
    value = idel.get("extension") or ""
    idel.set("extension", value[:13] + f"{(int(value[13:]) + 1) % 97:02d}")


def _nia_under_nir_oid(doc: etree._Element) -> None:
    """Turn the matricule into a well-keyed NIA (first digit 8) kept under the NIR/test OID."""
    idel = _ins(doc)
    body = "8" + (idel.get("extension") or "")[1:13]
    idel.set("extension", body + f"{97 - int(body) % 97:02d}")
    idel.set("root", "1.2.250.1.213.1.4.8")


MUTANTS: dict[str, tuple[Callable[[etree._Element], None], str]] = {
    "ins-key": (_bad_key, "INS."),
    "ins-oid": (_nia_under_nir_oid, "INS.OID"),
    "ins-length": (lambda d: _ins(d).set("extension", (_ins(d).get("extension") or "")[:14]), "INS."),
    "missing-realm": (lambda d: _drop(d, "c:realmCode"), "CDA.REALM"),
    "missing-cisis-template": (lambda d: _drop(d, "c:templateId[@root='1.2.250.1.213.1.1.1.1']"), "CDA.TEMPLATE"),
    "bad-confidentiality": (lambda d: _one(d, "c:confidentialityCode").set("code", "Z"), "CDA.CONFIDENTIALITY"),
    "missing-author-id": (lambda d: _drop(d, "c:author/c:assignedAuthor/c:id"), "CDA.AUTHOR.ID"),
    "bad-language": (lambda d: _one(d, "c:languageCode").set("code", "en-GB"), "CDA.LANGUAGE"),
    "missing-custodian": (lambda d: _drop(d, "c:custodian"), "CDA.CUSTODIAN"),
    "invalid-effective-time": (lambda d: _one(d, "c:effectiveTime").set("value", "2024-13-45"), "CDA.EFFECTIVE-TIME"),
    "missing-document-id": (lambda d: _drop(d, "c:id"), "CDA.ID"),
    "wrong-type-id": (lambda d: _one(d, "c:typeId").set("root", "2.16.840.1.113883.1.4"), "CDA.TYPEID"),
    "code-not-in-value-set": (lambda d: _one(d, "c:code").set("code", "99999-9"), "CDA.CODE.VALUESET"),
    "missing-legal-authenticator": (lambda d: _drop(d, "c:legalAuthenticator"), "CDA.LEGAL-AUTHENTICATOR"),
    "bad-version": (lambda d: _one(d, "c:versionNumber").set("value", "-1"), "CDA.VERSION"),
    "missing-service-event": (lambda d: _drop(d, "c:documentationOf"), "CDA.SERVICE-EVENT"),
}


@pytest.fixture
def terminology(shared_data: Path) -> list[str]:
    return [str(shared_data / "cda" / "ans-pack" / "jeuxDeValeurs"), str(shared_data / "nos")]


@pytest.mark.parametrize("seed", SEEDS)
def test_seeds_are_valid(shared_data: Path, seed: str, terminology: list[str]) -> None:
    entry = validate_file(str(shared_data / "cda" / "examples" / seed), terminology=tuple(terminology))
    assert entry["status"] == "passed", entry["findings"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(MUTANTS))
def test_mutant_is_rejected_with_a_rule_of_its_family(
    shared_data: Path, tmp_path: Path, seed: str, kind: str, terminology: list[str]
) -> None:
    mutate, family = MUTANTS[kind]
    tree = etree.parse(str(shared_data / "cda" / "examples" / seed))
    mutate(_doc(tree.getroot()))
    path = tmp_path / f"{kind}.xml"
    tree.write(str(path), xml_declaration=True, encoding="UTF-8")
    entry = validate_file(str(path), terminology=tuple(terminology))
    assert entry["status"] == "failed", (kind, entry["findings"])
    errors = [f["rule"] for f in entry["findings"] if f["severity"] == "error"]
    assert errors and all(r.startswith(family.split(".")[0] + ".") for r in errors), (kind, errors)
    assert any(r.startswith(family) for r in errors), (kind, errors)


# ------------------------------------------------------------------ hostile files
SECRET = "TOP-SECRET-LOCAL-FILE-CONTENT"


def _hostile(tmp_path: Path) -> dict[str, Path]:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    files = {
        "xxe-file": f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        f'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>',
        "xxe-url": '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/evil">]>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>',
        "entity-bomb": '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + ']><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&i;</title></ClinicalDocument>',
        "truncated": '<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><realmCode code="FR"/><titl',
        "not-xml": "this is not XML at all, just text\n",
        "empty": "",
    }
    out = {}
    for name, text in files.items():
        p = tmp_path / f"{name}.xml"
        p.write_text(text, encoding="utf-8")
        out[name] = p
    bom = tmp_path / "xxe-utf16.xml"
    bom.write_bytes(b"\xff\xfe" + files["xxe-file"].encode("utf-16-le"))
    out["xxe-utf16"] = bom
    big = tmp_path / "huge.xml"
    with big.open("wb") as fh:  # 60 MB, written sparsely: cheap to create, must be refused unread
        fh.write(b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3">')
        fh.seek(60 * 1024 * 1024)
        fh.write(b"</ClinicalDocument>")
    out["huge"] = big
    return out


def test_hostile_files_are_input_errors(tmp_path: Path) -> None:
    for name, path in _hostile(tmp_path).items():
        start = time.monotonic()
        entry = validate_file(str(path))
        assert time.monotonic() - start < 5, name
        assert entry["status"] == "error", (name, entry)
        assert entry["findings"] and all(f["rule"].startswith("INPUT.") for f in entry["findings"]), (name, entry)
        assert SECRET not in json.dumps(entry), name
    assert validate_file(str(tmp_path / "huge.xml"))["findings"][0]["rule"] == "INPUT.TOO-LARGE"


def test_hostile_files_in_a_batch_keep_other_verdicts(shared_data: Path, tmp_path: Path) -> None:
    hostile = _hostile(tmp_path)
    examples = shared_data / "cda" / "examples"
    good = [examples / s for s in SEEDS]
    wrong_key = examples / "CSE-CS8_2024.01.xml"
    report = validate_paths([*hostile.values(), *good, wrong_key], jobs=2)
    by_name = {Path(e["path"]).name: e for e in report["files"]}
    for p in hostile.values():
        assert by_name[p.name]["status"] == "error"
    for p in good:
        assert by_name[p.name]["status"] == "passed"
    assert by_name[wrong_key.name]["status"] == "failed"
    assert report["summary"]["error"] == len(hostile)


def test_hostile_files_through_the_cli(tmp_path: Path) -> None:
    hostile = _hostile(tmp_path)
    proc = run_cli("validate", *map(str, hostile.values()), "--format", "json", timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert all(f["status"] == "error" for f in report["files"])
    assert SECRET not in proc.stdout
