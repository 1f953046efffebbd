"""``--ans-pack``: ANS's CDA_extended.xsd (lxml, imports confined to the pack) and volet schematrons (saxonche)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree

from conformance.checks import anspack
from conformance.validate import cda_root, validate_file
from tests.conftest import run_cli

pytestmark = pytest.mark.shared

V3 = "urn:hl7-org:v3"
NS = {"c": V3}
needs_saxon = pytest.mark.skipif(not anspack.saxon_available(), reason="saxonche (extra 'schematron') absent")


@pytest.fixture
def pack(shared_data: Path) -> Path:
    return shared_data / "cda" / "ans-pack"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEGUR_BENCH_CACHE", str(tmp_path / "cache"))
    anspack._executable.cache_clear()
    return tmp_path / "cache"


def _doc(shared_data: Path, name: str) -> etree._Element:
    return cda_root((shared_data / "cda" / "examples" / name).read_bytes())


def test_official_example_is_xsd_valid(shared_data: Path, pack: Path) -> None:
    assert anspack.xsd_findings(_doc(shared_data, "VSM_1.4_2022.01.xml"), pack) == []


def test_xsd_error_is_ans_xsd(shared_data: Path, pack: Path) -> None:
    doc = _doc(shared_data, "VSM_1.4_2022.01.xml")
    etree.SubElement(doc, f"{{{V3}}}bogus")
    found = anspack.xsd_findings(doc, pack)
    assert found and {f.rule for f in found} == {"ANS.XSD"} and all(f.severity == "error" for f in found)


def test_xsd_imports_cannot_leave_the_pack(tmp_path: Path) -> None:
    """A pack whose schema imports a file outside it (or a URL) does not read it."""
    fake = tmp_path / "pack" / "infrastructure" / "cda"
    fake.mkdir(parents=True)
    outside = tmp_path / "outside.xsd"
    outside.write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="x"/></xs:schema>')
    (fake / "CDA_extended.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<xs:include schemaLocation="{outside}"/><xs:element name="ClinicalDocument"/></xs:schema>'
    )
    anspack.load_xsd.cache_clear()
    with pytest.raises(anspack.PackError):
        anspack.load_xsd(str(tmp_path / "pack"))


def test_schematron_is_chosen_by_volet(shared_data: Path, pack: Path) -> None:
    chosen = anspack.choose_schematron(_doc(shared_data, "VSM_1.4_2022.01.xml"), pack)
    assert chosen.name.startswith("CI-SIS_VSM_")
    n1 = anspack.choose_schematron(_doc(shared_data, "TLM-CR_2022.01.xml"), pack)
    assert n1.name == "CI-SIS_ModelesDeContenusCDA.sch"
    ep = anspack.choose_schematron(_doc(shared_data, "eP-MED-DM_2024.01_PosoNonStruct.xml"), pack)
    assert ep.name.startswith("CI-SIS_EP-MED-DM_")


@needs_saxon
def test_schematron_runs_cached_and_reports_failed_asserts(shared_data: Path, pack: Path, cache: Path) -> None:
    doc = _doc(shared_data, "VSM_1.4_2022.01.xml")
    found = anspack.pack_findings(doc, pack)
    assert [f.rule for f in found if f.severity == "error"] == [], found
    assert any(f.rule == "ANS.PACK" and "CI-SIS_VSM_" in f.message for f in found)
    assert list(cache.rglob("*.xsl")), "compiled schematron not cached on disk"
    body = doc.find("c:component/c:structuredBody", NS)
    section = body.xpath("c:component[c:section/c:templateId/@root='1.2.250.1.213.1.1.2.29']", namespaces=NS)[0]
    body.remove(section)
    errors = [f for f in anspack.pack_findings(doc, pack) if f.severity == "error"]
    assert errors and all(f.rule.startswith("ANS.SCH.") for f in errors)
    assert any("1.2.250.1.213.1.1.2.29" in f.message for f in errors)


@needs_saxon
def test_broken_schematron_is_a_warning_not_a_crash(shared_data: Path, pack: Path) -> None:
    doc = _doc(shared_data, "BIO-CR-BIO_2023.01_Electrophorese.xml")
    with pytest.raises(anspack.PackError):
        anspack.run_schematron(doc, pack / "schematrons" / "CI-SIS_BIO-CR-BIO_2023.01.sch")


def test_without_saxon_a_single_info_says_so(shared_data: Path, pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anspack, "saxon_available", lambda: False)
    found = anspack.pack_findings(_doc(shared_data, "VSM_1.4_2022.01.xml"), pack)
    assert [(f.rule, f.severity) for f in found] == [("ANS.PACK", "info")]


@needs_saxon
def test_validate_with_ans_pack(shared_data: Path, pack: Path) -> None:
    entry = validate_file(str(shared_data / "cda" / "examples" / "VSM_1.4_2022.01.xml"), ans_pack=str(pack))
    assert entry["status"] == "passed", entry["findings"]
    assert any(f["rule"] == "ANS.PACK" for f in entry["findings"])


@needs_saxon
def test_cli_ans_pack(shared_data: Path, pack: Path, tmp_path: Path) -> None:
    copy = tmp_path / "vsm.xml"
    shutil.copy(shared_data / "cda" / "examples" / "VSM_1.4_2022.01.xml", copy)
    proc = run_cli(
        "validate", str(copy), "--ans-pack", str(pack), "-f", "json", env={"SEGUR_BENCH_CACHE": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert any(f["rule"] == "ANS.PACK" for f in json.loads(proc.stdout)["files"][0]["findings"])
