"""INS rules on CDA R2 headers: same rule ids and logic as FHIR, CI-SIS encoding, official examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from conformance.checks.cda_ins import identities_from_cda
from conformance.checks.ins import nir_key
from conformance.checks.registry import CHECKS, run_check
from conformance.model import Finding
from conformance.parsing import parse_xml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EXAMPLES = SHARED / "cda" / "examples"
needs_shared = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/data is absent")

BODY = "297022A020778"
INS = f"{BODY}{nir_key(BODY):02d}"
RT = "/ClinicalDocument/recordTarget/patientRole"

DEFAULTS: dict[str, str] = {
    "ids": f'<id root="1.2.250.1.213.1.4.8" extension="{INS}"/><id root="1.2.3.4.5" extension="IPP-1"/>',
    "names": (
        "<!-- nom de naissance --><family qualifier='BR'>ADRTROIS</family>"
        "<given>DOMINIQUE MARIE</given><given qualifier='BR'>DOMINIQUE</given>"
        "<family qualifier='CL'>MARTIN</family><given qualifier='CL'>DOM</given>"
    ),
    "gender": '<administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>',
    "birth": '<birthTime value="19970226"/>',
    "place": ("<birthplace><place><addr><county>2A020</county><city>AJACCIO</city></addr></place></birthplace>"),
}


def cda(**parts: str) -> bytes:
    p = {**DEFAULTS, **parts}
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><realmCode code="FR"/>'
        f"<recordTarget><patientRole>{p['ids']}<addr/>"
        f"<patient classCode='PSN'><name>{p['names']}</name>{p['gender']}{p['birth']}"
        "<guardian><id root='1.2.250.1.213.1.4.8' extension='277076322082910'/></guardian>"
        f"{p['place']}</patient></patientRole></recordTarget>"
        "<author><assignedAuthor><id root='1.2.250.1.71.4.2.1' extension='801234567897'/>"
        "</assignedAuthor></author>"
        "</ClinicalDocument>"
    ).encode()


def findings(doc: bytes | Any) -> list[Finding]:
    root = parse_xml(doc) if isinstance(doc, bytes) else doc
    return run_check("ins.cda", root)


def rules(doc: bytes) -> set[str]:
    return {f.rule for f in findings(doc)}


def test_conformant_document() -> None:
    assert findings(cda()) == []


def test_identity_is_read_from_the_header() -> None:
    [ident] = identities_from_cda(parse_xml(cda()))
    assert ident.matricule == INS and ident.oid == "1.2.250.1.213.1.4.8"
    assert ident.birth_name == "ADRTROIS" and ident.used_name == "MARTIN" and ident.used_given_name == "DOM"
    assert ident.given_names == ["DOMINIQUE", "MARIE"] and ident.first_given_name == "DOMINIQUE"
    assert (ident.sex, ident.birth_date, ident.birth_place) == ("F", "1997-02-26", "2A020")
    assert not ident.status_applicable


def test_registration_shares_rule_ids_with_fhir() -> None:
    cda_rules = set(CHECKS["ins.cda"].rules)
    assert CHECKS["ins.cda"].kind == "cda" and CHECKS["ins.cda"].service == "INS"
    assert cda_rules <= set(CHECKS["ins.patient"].rules)
    assert not any(r.startswith(("INS.STATUS", "INS.QUALIFIED", "INS.FHIR")) for r in cda_rules)


def test_used_name_sp_variant() -> None:
    names = DEFAULTS["names"].replace("qualifier='CL'>MARTIN", "qualifier='SP'>MARTIN")
    [ident] = identities_from_cda(parse_xml(cda(names=names)))
    assert ident.used_name == "MARTIN"
    assert findings(cda(names=names)) == []


def test_birth_time_with_time_and_timezone() -> None:
    assert findings(cda(birth='<birthTime value="199702261230+0100"/>')) == []


def test_split_name_elements_are_gathered() -> None:
    names = "<family qualifier='BR'>ADRTROIS</family><given qualifier='BR'>DOMINIQUE</given></name><name>"
    names += "<given>DOMINIQUE</given><given>MARIE</given>"
    [ident] = identities_from_cda(parse_xml(cda(names=names)))
    assert ident.given_names_list == "DOMINIQUE MARIE"
    assert findings(cda(names=names)) == []


@pytest.mark.parametrize(
    ("parts", "rule", "location"),
    [
        (
            {"ids": f'<id root="1.2.250.1.213.1.4.8" extension="{BODY}00"/>'},
            "INS.MATRICULE.KEY",
            f"{RT}/id[1]/@extension",
        ),
        (
            {"ids": '<id root="1.2.3"/><id root="1.2.250.1.213.1.4.8" extension="29702 2A020778"/>'},
            "INS.MATRICULE.FORMAT",
            f"{RT}/id[2]/@extension",
        ),
        ({"ids": '<id root="1.2.250.1.213.1.4.8"/>'}, "INS.MATRICULE.FORMAT", f"{RT}/id[1]"),
        # An NIA (first digit 8) under the INS-NIR OID.
        ({"ids": '<id root="1.2.250.1.213.1.4.8" extension="897022A02077869"/>'}, "INS.OID", f"{RT}/id[1]/@root"),
        ({"gender": '<administrativeGenderCode code="M"/>'}, "INS.NIR.SEX", f"{RT}/id[1]/@extension"),
        ({"birth": '<birthTime value="19980226"/>'}, "INS.NIR.BIRTHDATE", f"{RT}/id[1]/@extension"),
        ({"birth": '<birthTime value="199702"/>'}, "INS.TRAITS.FORMAT", f"{RT}/patient/birthTime/@value"),
        ({"birth": '<birthTime value="19970230"/>'}, "INS.TRAITS.FORMAT", f"{RT}/patient/birthTime/@value"),
        (
            {"gender": '<administrativeGenderCode code="U"/>'},
            "INS.TRAITS.FORMAT",
            f"{RT}/patient/administrativeGenderCode/@code",
        ),
        (
            {"gender": '<administrativeGenderCode code="X"/>'},
            "INS.TRAITS.FORMAT",
            f"{RT}/patient/administrativeGenderCode/@code",
        ),
        ({"gender": ""}, "INS.TRAITS.MISSING", f"{RT}/patient/administrativeGenderCode"),
        (
            {"gender": '<administrativeGenderCode nullFlavor="UNK"/>'},
            "INS.TRAITS.MISSING",
            f"{RT}/patient/administrativeGenderCode",
        ),
        ({"birth": ""}, "INS.TRAITS.MISSING", f"{RT}/patient/birthTime"),
        ({"place": ""}, "INS.TRAITS.MISSING", f"{RT}/patient/birthplace/place/addr/county"),
        (
            {"place": "<birthplace><place><addr><city>AJACCIO</city></addr></place></birthplace>"},
            "INS.TRAITS.MISSING",
            f"{RT}/patient/birthplace/place/addr/county",
        ),
        (
            {"place": "<birthplace><place><addr><county>20004</county></addr></place></birthplace>"},
            "INS.TRAITS.BIRTHPLACE",
            f"{RT}/patient/birthplace/place/addr/county",
        ),
        (
            {"names": "<family qualifier='BR'>ADRTROIS</family><given qualifier='BR'>DOMINIQUE</given>"},
            "INS.TRAITS.MISSING",
            f"{RT}/patient/name",
        ),
        (
            {
                "names": "<family qualifier='CL'>ADRTROIS</family><given>DOMINIQUE</given>"
                "<given qualifier='BR'>DOMINIQUE</given>"
            },
            "INS.TRAITS.MISSING",
            f"{RT}/patient/name",
        ),
        (
            {
                "names": "<family qualifier='BR'>ADRTROIS</family><given>DOMINIQUE MARIE</given>"
                "<given qualifier='BR'>MARIE</given>"
            },
            "INS.TRAITS.FIRST-GIVEN",
            f"{RT}/patient/name/given[@qualifier='BR']",
        ),
        (
            {
                "names": "<family qualifier='BR'> </family><given>DOMINIQUE</given>"
                "<given qualifier='BR'>DOMINIQUE</given>"
            },
            "INS.TRAITS.FORMAT",
            f"{RT}/patient/name/family[@qualifier='BR']",
        ),
    ],
)
def test_each_defect_is_its_rule_only(parts: dict[str, str], rule: str, location: str) -> None:
    [finding] = findings(cda(**parts))
    assert (finding.rule, finding.location, finding.severity) == (rule, location, "error")


def test_without_ins_traits_are_not_required_but_still_checked() -> None:
    no_ins = cda(ids='<id root="1.2.3.4.5" extension="IPP-1"/>', place="", birth="")
    assert findings(no_ins) == []
    bad = cda(ids='<id root="1.2.3.4.5" extension="IPP-1"/>', birth='<birthTime value="1997"/>')
    assert rules(bad) == {"INS.TRAITS.FORMAT"}


def test_undetermined_sex_without_ins_is_fine() -> None:
    assert findings(cda(ids="", gender='<administrativeGenderCode code="U"/>')) == []


@pytest.mark.parametrize("root", ["1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"])
def test_test_and_demo_oids(root: str) -> None:
    assert findings(cda(ids=f'<id root="{root}" extension="{INS}"/>')) == []


def test_nss_and_guardian_ids_are_not_the_patient_ins() -> None:
    ids = f'<id root="1.2.250.1.213.1.4.8" extension="{INS}"/><id root="1.2.250.1.213.1.4.13" extension="1"/>'
    assert findings(cda(ids=ids)) == []


def test_several_record_targets_are_located() -> None:
    doc = cda().replace(b"</ClinicalDocument>", b"")
    start = doc.index(b"<recordTarget>")
    end = doc.index(b"</recordTarget>") + len(b"</recordTarget>")
    second = doc[start:end].replace(b"19970226", b"19970227")
    doc = doc[:end] + second + b"</ClinicalDocument>"
    assert len(identities_from_cda(parse_xml(doc))) == 2
    assert findings(doc) == []
    doc = doc[:end] + second.replace(INS.encode(), (BODY + "00").encode()) + b"</ClinicalDocument>"
    [finding] = findings(doc)
    assert finding.location == "/ClinicalDocument/recordTarget[2]/patientRole/id[1]/@extension"


def test_embedded_document_is_found() -> None:
    wrapped = (
        b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">'
        b'<xsl:template match="/">'
        + cda(ids=f'<id root="1.2.250.1.213.1.4.8" extension="{BODY}00"/>').split(b"?>", 1)[1]
        + b"</xsl:template></xsl:stylesheet>"
    )
    [finding] = findings(wrapped)
    assert finding.rule == "INS.MATRICULE.KEY"
    assert finding.location == "//ClinicalDocument/recordTarget/patientRole/id[1]/@extension"


def test_bytes_and_trees_are_accepted() -> None:
    assert run_check("ins.cda", cda()) == []
    assert run_check("ins.cda", etree.ElementTree(parse_xml(cda()))) == []


@pytest.mark.parametrize(
    ("doc", "rule"),
    [
        (b"", "INPUT.EMPTY"),
        (b"<ClinicalDocument", "INPUT.XML"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "INPUT.DTD"),
        (b"<Bundle xmlns='http://hl7.org/fhir'/>", "INPUT.XML"),
    ],
)
def test_unreadable_documents(doc: bytes, rule: str) -> None:
    [finding] = run_check("ins.cda", doc)
    assert finding.rule == rule and finding.severity == "error"


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=200)
@given(_TEXT, _TEXT, _TEXT, _TEXT)
def test_arbitrary_values_never_raise(ext: str, code: str, birth: str, county: str) -> None:
    from xml.sax.saxutils import quoteattr

    doc = cda(
        ids=f'<id root="1.2.250.1.213.1.4.8" extension={quoteattr(ext)}/>',
        gender=f"<administrativeGenderCode code={quoteattr(code)}/>",
        birth=f"<birthTime value={quoteattr(birth)}/>",
        place=f"<birthplace><place><addr><county>{etree_escape(county)}</county></addr></place></birthplace>",
    )
    for f in findings(doc):
        assert f.severity == "error" and f.rule.startswith("INS.")


def etree_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- official examples ---------------------------------------------------------------------------------

# Examples whose INS key is wrong (97 − n mod 97): ANS's tools do not check the key.
WRONG_KEYS = {
    "CSE-CS8_2024.01.xml": "223042545611404",
    "CSE-CS9_2025.01.xml": "221042545611404",
    "OBP-SEM_2024.01.xml": "223042545611404",
    "SDM-MR_2024.01_nouveau-ne.xml": "224027511583555",
}


def _examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.xml")) if EXAMPLES.is_dir() else []


@pytest.mark.shared
@needs_shared
def test_official_examples() -> None:
    paths = _examples()
    assert paths, "no official CDA example found"
    flagged: dict[str, list[Finding]] = {}
    for path in paths:
        root = parse_xml(path.read_bytes())
        idents = identities_from_cda(root)
        assert idents and all(i.has_ins for i in idents), path.name
        found = findings(root)
        if found:
            flagged[path.name] = found
    # Only wrong keys, nothing else: every other trait of every example is well formed and coherent.
    assert {name for name in flagged} == {name for name in WRONG_KEYS if (EXAMPLES / name).exists()}
    for name, found in flagged.items():
        [finding] = found
        assert finding.rule == "INS.MATRICULE.KEY" and finding.severity == "error"
        assert finding.location == f"{RT}/id[1]/@extension"
        assert WRONG_KEYS[name][:13] in finding.message


@pytest.mark.shared
@needs_shared
def test_official_auto_presentable_example_is_read() -> None:
    paths = [p for p in _examples() if "Auto-Presentable" in p.name]
    if not paths:
        pytest.skip("no auto-presentable example")
    [ident] = identities_from_cda(parse_xml(paths[0].read_bytes()))
    assert ident.matricule and ident.birth_name and ident.birth_place
