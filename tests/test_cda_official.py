"""ANS's official CDA examples: accepted, except exactly the ones whose INS key ANS got wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.validate import validate_file, validate_paths
from tests.conftest import run_cli

pytestmark = pytest.mark.shared

# ANS's examples whose INS matricule has a wrong check key: the bench must flag exactly these.
WRONG_INS_KEY = {
    "CSE-CS8_2024.01.xml",
    "OBP-SEM_2024.01.xml",
    "CSE-CS9_2025.01.xml",
    "SDM-MR_2024.01_nouveau-ne.xml",
}


def _terminology(shared: Path) -> list[Path]:
    return [shared / "cda" / "ans-pack" / "jeuxDeValeurs", shared / "nos"]


def test_every_official_example_is_accepted_except_wrong_ins_keys(shared_data: Path) -> None:
    examples = shared_data / "cda" / "examples"
    report = validate_paths([examples], terminology=_terminology(shared_data))
    assert report["summary"]["files"] == len(list(examples.glob("*.xml")))
    for entry in report["files"]:
        name = Path(entry["path"]).name
        errs = [f for f in entry["findings"] if f["severity"] == "error"]
        assert entry["kind"] == "cda"
        if name in WRONG_INS_KEY:
            assert entry["status"] == "failed", name
            assert {f["rule"] for f in errs} == {"INS.MATRICULE.KEY"}, (name, errs)
        else:
            assert entry["status"] == "passed", (name, errs)


def test_auto_presentable_document_is_validated_through_its_embedded_document(shared_data: Path) -> None:
    path = shared_data / "cda" / "examples" / "BIO-CR-BIO_2021.01_Auto-Presentable_avec-image.xml"
    entry = validate_file(str(path))
    assert entry["status"] == "passed"
    assert any(f["location"] and f["location"].startswith("//ClinicalDocument") for f in entry["findings"])


@pytest.mark.parametrize("name", ["VSM_1.4_2022.01.xml", "CSE-CS8_2024.01.xml", "TLM-CR_2022.01.xml"])
@pytest.mark.parametrize("variant", ["declared-utf-16", "kept-utf-8-declaration", "utf-16-be"])
def test_utf16_bom_copy_gets_the_same_verdict(shared_data: Path, tmp_path: Path, name: str, variant: str) -> None:
    original = shared_data / "cda" / "examples" / name
    text = original.read_bytes().decode("utf-8-sig")
    if variant != "kept-utf-8-declaration":
        text = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').replace('encoding="utf-8"', 'encoding="UTF-16"')
    copy = tmp_path / name
    if variant == "utf-16-be":
        copy.write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    else:
        copy.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    a, b = validate_file(str(original)), validate_file(str(copy))
    assert b["kind"] == "cda"
    assert b["status"] == a["status"], b["findings"][:3]
    assert [f["rule"] for f in b["findings"]] == [f["rule"] for f in a["findings"]]


def test_official_examples_through_the_cli_in_one_call(shared_data: Path) -> None:
    examples = shared_data / "cda" / "examples"
    args = ["validate", str(examples), "--format", "json"]
    for t in _terminology(shared_data):
        args += ["--terminology", str(t)]
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr  # the four wrong INS keys
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    failed = {Path(f["path"]).name for f in report["files"] if f["status"] != "passed"}
    assert failed == WRONG_INS_KEY


def test_cli_refuses_a_missing_terminology_folder(tmp_path: Path, shared_data: Path) -> None:
    proc = run_cli("validate", str(shared_data / "cda" / "examples"), "--terminology", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
