"""XDS.b ITI-41 metadata checks: the builder's output passes, each single defect fails its rule.

The defect matrix runs on a small synthetic CDA written here (no official material needed); the
official CDA examples and NOS files are exercised by the ``shared`` tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conformance.checks.dmp_metadata import (
    CONFIDENTIALITY_OID,
    RPPS_OID,
    cda_facts,
    cda_ts_utc,
    expected_formats,
    load_terminology,
    shipped_terminology,
)
from conformance.checks.registry import RULES, run_check
from conformance.checks.xds import XDS_CDA_RULES, XDS_RULES, parse_submission
from conformance.model import Finding
from conformance.parsing import parse_xml
from conformance.simulators.xds_builder import build_submit_objects, provide_and_register

INS = "180017505600103"
INS_OID = "1.2.250.1.213.1.4.10"
RPPS = "10000123454"  # Luhn-valid
OTHER_RPPS = "10000999994"
A03 = "1.2.250.1.213.1.1.4.1"
A01 = "1.2.250.1.213.1.1.4.9"
R02 = "1.2.250.1.71.4.2.4"
A06 = "1.2.250.1.213.1.1.4.2.282"

CDA = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="1.2.250.1.213.1.1.1.29"/>
  <id root="1.2.250.1.999.1.2" extension="DOC42"/>
  <code code="11490-0" codeSystem="2.16.840.1.113883.6.1" displayName="Lettre de liaison"/>
  <title>Lettre de liaison de sortie</title>
  <effectiveTime value="20240115103000+0100"/>
  <confidentialityCode code="N" codeSystem="{CONFIDENTIALITY_OID}"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole>
    <id root="{INS_OID}" extension="{INS}"/>
    <id root="1.2.250.1.999.2" extension="IPP123"/>
    <patient><name><family qualifier="BR">MARTIN</family><given>CLAIRE</given></name>
      <administrativeGenderCode code="M"/><birthTime value="19800115"/></patient>
  </patientRole></recordTarget>
  <author><time value="20240115103000+0100"/><assignedAuthor>
    <id root="{RPPS_OID}" extension="8{RPPS}"/>
    <code code="G15_10/SM26" codeSystem="1.2.250.1.213.1.1.4.5" displayName="Qualifié en médecine générale"/>
    <assignedPerson><name><family>DUPONT</family><given>JEAN</given></name></assignedPerson>
    <representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1750803447"/><name>Hôpital</name>
    </representedOrganization>
  </assignedAuthor></author>
  <custodian/>
  <legalAuthenticator><time value="20240115103000+0100"/><signatureCode code="S"/><assignedEntity>
    <id root="{RPPS_OID}" extension="8{RPPS}"/>
    <assignedPerson><name><family>DUPONT</family><given>JEAN</given></name></assignedPerson>
  </assignedEntity></legalAuthenticator>
  <documentationOf><serviceEvent>
    <effectiveTime><low value="20240110080000+0100"/><high value="20240115100000+0100"/></effectiveTime>
    <performer typeCode="PRF"><assignedEntity><id root="{RPPS_OID}" extension="8{RPPS}"/>
      <representedOrganization><standardIndustryClassCode code="ETABLISSEMENT" codeSystem="{A01}"/>
      </representedOrganization></assignedEntity></performer>
  </serviceEvent></documentationOf>
  <componentOf><encompassingEncounter><effectiveTime><low value="20240110"/></effectiveTime>
    <location><healthCareFacility><code code="SA01" codeSystem="{R02}"/></healthCareFacility></location>
  </encompassingEncounter></componentOf>
  <component><structuredBody/></component>
</ClinicalDocument>
""".encode()

PREVIOUS = "urn:uuid:0b5a3c1e-8e4f-4a55-9d7a-2f1e3c4b5a69"


def build(document: bytes = CDA, *, replaces: str | None = None, **overrides: Any) -> bytes:
    return build_submit_objects(
        document,
        parse_xml(document),
        patient_ins=INS,
        ins_oid=INS_OID,
        author={},
        replaces=replaces,
        overrides=overrides,
    )


def meta_findings(xml: bytes, **args: Any) -> list[Finding]:
    # run_check enforces that every finding's rule is declared by the check.
    return run_check("xds.metadata", xml, **args)


def cda_findings(xml: bytes, document: bytes = CDA) -> list[Finding]:
    return run_check("xds.cda", xml, cda_root=parse_xml(document), document=document)


def errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity == "error"}


def test_conformant_submission_passes() -> None:
    xml = build()
    assert meta_findings(xml) == []
    assert cda_findings(xml) == []


def test_builder_derives_the_ci_sis_correspondence() -> None:
    sub = parse_submission(parse_xml(build()))
    de = sub.documents[0]
    assert de.unique_id == "1.2.250.1.999.1.2^DOC42"
    assert de.creation_time == "20240115093000"  # UTC
    assert (de.service_start, de.service_stop) == ("20240110070000", "20240115090000")
    assert de.class_code is not None and de.class_code.code == "10"
    assert de.format_code is not None and de.format_code.code == "urn:asip:ci-sis:ldl-ses:2017"
    assert sub.submission_set is not None and sub.submission_set.content_type is not None


def test_rules_are_registered() -> None:
    for rid in (*XDS_RULES, *XDS_CDA_RULES):
        assert rid in RULES


# --- Metadata defects: one defect, one rule ------------------------------------------------------------

BAD_INS = INS[:13] + "00"

META_DEFECTS: list[tuple[str, dict[str, Any], str]] = [
    ("no creationTime", {"creationTime": None}, "XDS.SLOT.MISSING"),
    ("no languageCode", {"languageCode": None}, "XDS.SLOT.MISSING"),
    ("no sourcePatientId", {"sourcePatientId": None}, "XDS.SLOT.MISSING"),
    ("no sourcePatientInfo", {"sourcePatientInfo": None}, "XDS.SLOT.MISSING"),
    ("no serviceStartTime", {"serviceStartTime": None}, "XDS.SLOT.MISSING"),
    ("no submissionTime", {"ss.submissionTime": None}, "XDS.SLOT.MISSING"),
    ("ISO creationTime", {"creationTime": "2024-01-15T09:30:00Z"}, "XDS.SLOT.FORMAT"),
    ("impossible date", {"serviceStartTime": "20241340"}, "XDS.SLOT.FORMAT"),
    ("two creationTimes", {"creationTime": ["20240115093000", "20240115093001"]}, "XDS.SLOT.FORMAT"),
    ("bad sourcePatientId", {"sourcePatientId": "IPP123"}, "XDS.SLOT.FORMAT"),
    ("no classCode", {"classCode": None}, "XDS.CLASSIFICATION"),
    ("no typeCode", {"typeCode": None}, "XDS.CLASSIFICATION"),
    ("no formatCode", {"formatCode": None}, "XDS.CLASSIFICATION"),
    ("no facility", {"healthcareFacilityTypeCode": None}, "XDS.CLASSIFICATION"),
    ("no practice", {"practiceSettingCode": None}, "XDS.CLASSIFICATION"),
    ("no confidentiality", {"confidentialityCode": None}, "XDS.CLASSIFICATION"),
    ("no contentType", {"ss.contentTypeCode": None}, "XDS.CLASSIFICATION"),
    ("no codingScheme", {"classCode": ("10", None)}, "XDS.CLASSIFICATION"),
    ("no patientId", {"patientId": None}, "XDS.EXTID"),
    ("no uniqueId", {"uniqueId": None}, "XDS.EXTID"),
    ("no ss sourceId", {"ss.sourceId": None}, "XDS.EXTID"),
    ("ss sourceId not an OID", {"ss.sourceId": "SRC-01"}, "XDS.EXTID"),
    ("no ss uniqueId", {"ss.uniqueId": None}, "XDS.EXTID"),
    ("no HasMember", {"hasMember": None}, "XDS.ASSOCIATION"),
    ("bad SubmissionSetStatus", {"submissionSetStatus": "Reference"}, "XDS.ASSOCIATION"),
    ("no mimeType", {"mimeType": None}, "XDS.MIMETYPE"),
    ("no title", {"title": None}, "XDS.TITLE"),
    ("hash not hex", {"hash": "not-a-sha1"}, "XDS.HASH"),
    ("size not a number", {"size": "12 octets"}, "XDS.SIZE"),
    ("class not in J57", {"classCode": ("99", A03)}, "XDS.VS.CLASS"),
    ("type not in J66", {"typeCode": ("00000-0", "2.16.840.1.113883.6.1")}, "XDS.VS.TYPE"),
    ("type under a wrong scheme", {"typeCode": ("11490-0", "1.2.250.1.213.1.1.4.12")}, "XDS.VS.TYPE"),
    ("confidentiality not in J58", {"confidentialityCode": [("X", CONFIDENTIALITY_OID)]}, "XDS.VS.CONFIDENTIALITY"),
    ("format ended, not in J60", {"formatCode": ("urn:asip:ci-sis:cva:2017", A06)}, "XDS.VS.FORMAT"),
    ("facility not in J61", {"healthcareFacilityTypeCode": ("SA99", R02)}, "XDS.VS.FACILITY"),
    ("practice not in J62", {"practiceSettingCode": ("HOPITAL", A01)}, "XDS.VS.PRACTICE"),
    ("contentType not in J59", {"ss.contentTypeCode": ("ZZ", R02)}, "XDS.VS.CONTENTTYPE"),
    ("specialty not in J56", {"authorSpecialty": "ZZZ^x^1.2.250.1.213.1.1.4.5"}, "XDS.VS.SPECIALTY"),
    ("class does not follow type", {"classCode": ("11", A03)}, "XDS.CLASS-TYPE"),
    ("author without XCN.9", {"authorPerson": f"8{RPPS}^DUPONT^JEAN"}, "XDS.AUTHOR"),
    ("author 8+RPPS too short", {"authorPerson": f"8012^DUPONT^JEAN^^^^^^&{RPPS_OID}&ISO^D^^^IDNPS"}, "XDS.AUTHOR"),
    ("author without person", {"authorPerson": None}, "XDS.AUTHOR"),
    ("ss author missing", {"ss.authorPerson": None, "authorInstitution": None}, "XDS.AUTHOR"),
    ("specialty not CE", {"authorSpecialty": "G15_10/SM26"}, "XDS.AUTHOR"),
    ("uniqueId extension too long", {"uniqueId": "1.2.250.1.999.1.2^" + "X" * 17}, "XDS.UNIQUEID"),
    ("uniqueId root not an OID", {"uniqueId": "DOC-42"}, "XDS.UNIQUEID"),
    (
        "INS key wrong",
        {"patientId": f"{BAD_INS}^^^&{INS_OID}&ISO^NH", "ss.patientId": f"{BAD_INS}^^^&{INS_OID}&ISO^NH"},
        "DMP.PATIENTID",
    ),
    (
        "not an INS OID",
        {"patientId": f"{INS}^^^&1.2.3.4&ISO^NH", "ss.patientId": f"{INS}^^^&1.2.3.4&ISO^NH"},
        "DMP.PATIENTID",
    ),
    (
        "NIR under the NIA OID",
        {"patientId": f"{INS}^^^&1.2.250.1.213.1.4.9&ISO^NH", "ss.patientId": f"{INS}^^^&1.2.250.1.213.1.4.9&ISO^NH"},
        "DMP.PATIENTID",
    ),
    (
        "CX.5 not NH",
        {"patientId": f"{INS}^^^&{INS_OID}&ISO^PI", "ss.patientId": f"{INS}^^^&{INS_OID}&ISO^PI"},
        "DMP.PATIENTID",
    ),
    ("CX without authority", {"patientId": INS, "ss.patientId": INS}, "DMP.PATIENTID"),
    (
        "short matricule",
        {"patientId": f"1800175^^^&{INS_OID}&ISO^NH", "ss.patientId": f"1800175^^^&{INS_OID}&ISO^NH"},
        "DMP.PATIENTID",
    ),
    ("other patient in ss", {"ss.patientId": f"277076322082910^^^&{INS_OID}&ISO^NH"}, "XDS.PATIENT-MATCH"),
]


@pytest.mark.parametrize(
    ("overrides", "rule"), [(o, r) for _, o, r in META_DEFECTS], ids=[i for i, _, _ in META_DEFECTS]
)
def test_metadata_defect_fails_its_rule(overrides: dict[str, Any], rule: str) -> None:
    assert errors(meta_findings(build(**overrides))) == {rule}


CDA_DEFECTS: list[tuple[str, dict[str, Any], str]] = [
    ("other patient", {"patientId": f"277076322082910^^^&{INS_OID}&ISO^NH"}, "XDS.CDA.PATIENT"),
    ("other type", {"typeCode": ("34133-9", "2.16.840.1.113883.6.1")}, "XDS.CDA.TYPE"),
    ("other confidentiality", {"confidentialityCode": [("R", CONFIDENTIALITY_OID)]}, "XDS.CDA.CONFIDENTIALITY"),
    (
        "N and V together",
        {"confidentialityCode": [("N", CONFIDENTIALITY_OID), ("V", CONFIDENTIALITY_OID)]},
        "XDS.CDA.CONFIDENTIALITY",
    ),
    ("other author", {"authorPerson": f"8{OTHER_RPPS}^X^Y^^^^^^&{RPPS_OID}&ISO^D^^^IDNPS"}, "XDS.CDA.AUTHOR"),
    ("local time, not UTC", {"creationTime": "20240115103000"}, "XDS.CDA.DATES"),
    ("other service start", {"serviceStartTime": "20240111070000"}, "XDS.CDA.DATES"),
    ("other service stop", {"serviceStopTime": "20240116"}, "XDS.CDA.DATES"),
    ("service stop dropped", {"serviceStopTime": None}, "XDS.CDA.DATES"),
    ("root only although extension", {"uniqueId": "1.2.250.1.999.1.2"}, "XDS.CDA.UNIQUEID"),
    ("other uniqueId", {"uniqueId": "1.2.250.1.999.1.3^DOC42"}, "XDS.CDA.UNIQUEID"),
    ("other language", {"languageCode": "en-US"}, "XDS.CDA.LANGUAGE"),
    ("other facility", {"healthcareFacilityTypeCode": ("SA03", R02)}, "XDS.CDA.FACILITY"),
    ("other practice", {"practiceSettingCode": ("AMBULATOIRE", A01)}, "XDS.CDA.PRACTICE"),
    ("format of another volet", {"formatCode": ("urn:asip:ci-sis:vsm:2012", A06)}, "XDS.FORMAT-MODEL"),
    ("wrong hash", {"hash": "0" * 40}, "XDS.HASH"),
    ("wrong size", {"size": "1"}, "XDS.SIZE"),
]


@pytest.mark.parametrize(("overrides", "rule"), [(o, r) for _, o, r in CDA_DEFECTS], ids=[i for i, _, _ in CDA_DEFECTS])
def test_cda_inconsistency_fails_its_rule(overrides: dict[str, Any], rule: str) -> None:
    assert errors(cda_findings(build(**overrides))) == {rule}


def test_truncated_times_are_accepted() -> None:
    xml = build(creationTime="20240115", serviceStartTime="202401100700")
    assert errors(meta_findings(xml)) == set()
    assert errors(cda_findings(xml)) == set()


def test_dmp_visibility_codes_are_accepted_with_the_cda_confidentiality() -> None:
    conf = [("N", CONFIDENTIALITY_OID), ("MASQUE_PS", "1.2.250.1.213.1.1.4.13")]
    xml = build(confidentialityCode=conf)
    assert meta_findings(xml) == []
    assert cda_findings(xml) == []


def test_uniqueid_is_the_root_when_the_cda_id_has_no_extension() -> None:
    doc = CDA.replace(b' extension="DOC42"', b"")
    xml = build(doc)
    assert parse_submission(parse_xml(xml)).documents[0].unique_id == "1.2.250.1.999.1.2"
    assert cda_findings(xml, doc) == []


def test_luhn_failure_is_a_warning() -> None:
    xml = build(authorPerson=f"8{RPPS[:-1]}5^DUPONT^JEAN^^^^^^&{RPPS_OID}&ISO^D^^^IDNPS")
    found = meta_findings(xml)
    assert errors(found) == set()
    assert [f.severity for f in found if f.rule == "XDS.AUTHOR"] == ["warning"]


def test_device_author_with_structure_scoped_id_is_accepted() -> None:
    person = f"3750100125/9762^Automate^waralab1000^^^^^^&{RPPS_OID}&ISO^U^^^RI"
    assert meta_findings(build(authorPerson=person)) == []


# --- Replacement ---------------------------------------------------------------------------------------


def test_replacement_with_rplc_passes() -> None:
    assert meta_findings(build(replaces=PREVIOUS), replaces=PREVIOUS) == []


def test_expected_replacement_missing_fails_rplc() -> None:
    assert errors(meta_findings(build(), replaces=PREVIOUS)) == {"DMP.RPLC"}


def test_replacement_of_another_entry_fails_rplc() -> None:
    other = "urn:uuid:11111111-2222-4333-8444-555555555555"
    assert errors(meta_findings(build(replaces=other), replaces=PREVIOUS)) == {"DMP.RPLC"}


def test_rplc_target_must_be_an_entry_uuid() -> None:
    assert errors(meta_findings(build(replaces="Document-old"))) == {"DMP.RPLC"}


def test_rplc_association_type_must_be_ihe() -> None:
    xml = build(replaces=PREVIOUS, rplcType="urn:oasis:names:tc:ebxml-regrep:AssociationType:RPLC")
    assert errors(meta_findings(xml, replaces=PREVIOUS)) == {"DMP.RPLC"}


# --- ProvideAndRegister: inline document -----------------------------------------------------------------


def test_provide_and_register_with_inline_document_passes() -> None:
    xml = provide_and_register(build(), CDA)
    assert meta_findings(xml) == []
    assert run_check("xds.cda", xml, cda_root=parse_xml(CDA)) == []


def test_inline_document_that_is_not_the_described_one_fails_hash_and_size() -> None:
    xml = provide_and_register(build(), CDA + b"\n<!-- changed -->\n")
    assert errors(meta_findings(xml)) == {"XDS.HASH", "XDS.SIZE"}


def test_provide_and_register_without_its_document_fails() -> None:
    xml = (
        provide_and_register(build(), CDA)
        .replace(b"<xdsb:Document", b"<xdsb:Other")
        .replace(b"</xdsb:Document", b"</xdsb:Other")
    )
    assert errors(meta_findings(xml)) == {"XDS.DOCUMENT"}


# --- Accepted spellings ---------------------------------------------------------------------------------


def _variant(xml: bytes) -> bytes:
    """Symbolic ids, other prefixes, reversed children, top-level classifications stay valid."""
    sub = parse_submission(parse_xml(xml))
    assert sub.submission_set is not None
    text = xml.decode()
    text = text.replace(sub.documents[0].id, "Document01").replace(sub.submission_set.id, "SubmissionSet01")
    for old, new in (("rim", "r"), ("lcm", "l")):
        text = re.sub(rf"(</?){old}:", rf"\1{new}:", text).replace(f"xmlns:{old}=", f"xmlns:{new}=")
    root = parse_xml(text.encode())
    for obj in root.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}ExtrinsicObject"):
        children = list(obj)
        for child in children:
            obj.remove(child)
        for child in reversed(children):
            obj.append(child)
    from lxml import etree

    return etree.tostring(root)


def test_conformant_spellings_are_accepted() -> None:
    xml = _variant(build())
    assert meta_findings(xml) == []
    assert cda_findings(xml) == []


def test_uuid_ids_compare_case_insensitively() -> None:
    xml = build()
    sub = parse_submission(parse_xml(xml))
    upper = xml.decode().replace(sub.documents[0].id, sub.documents[0].id.upper(), 1).encode()
    assert meta_findings(upper) == []


# --- Hostile input ----------------------------------------------------------------------------------------

HOSTILE = [
    (b"", "INPUT.EMPTY"),
    (b"not xml at all", "INPUT.XML"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "INPUT.DTD"),
    (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><l>&b;</l>',
        "INPUT.DTD",
    ),
    (b"<lcm:SubmitObjectsRequest xmlns:lcm='urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0'>", "INPUT.XML"),
    (b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>", "INPUT.XDS"),
]


@pytest.mark.parametrize(("data", "rule"), HOSTILE)
def test_hostile_input_is_an_input_finding(data: bytes, rule: str) -> None:
    found = meta_findings(data)
    assert [f.rule for f in found] == [rule]
    assert run_check("xds.cda", data, cda_root=parse_xml(CDA))[0].rule == rule


def test_empty_submit_objects_request_is_a_structure_error() -> None:
    xml = b"<lcm:SubmitObjectsRequest xmlns:lcm='urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0'/>"
    assert errors(meta_findings(xml)) == {"XDS.STRUCTURE"}


# --- Terminology --------------------------------------------------------------------------------------


def test_shipped_subsets_carry_their_source() -> None:
    term = shipped_terminology()
    for vs in term.valuesets.values():
        assert vs.source and vs.codes
    assert term.type_to_class["11488-4"] == frozenset({"10"})
    assert term.media_to_format["application/pdf"] == "urn:ihe:iti:xds-sd:pdf:2008"
    assert "SA01" in term.valuesets["J61"].codes


@pytest.mark.shared
def test_shipped_subsets_equal_the_official_files(shared_data: Path) -> None:
    official = load_terminology(shared_data / "nos", shared_data / "cda/ans-pack/jeuxDeValeurs")
    shipped = shipped_terminology()
    assert not [s for s in official.sources if "shipped" in s]
    for vid, vs in official.valuesets.items():
        assert vs.codes == shipped.valuesets[vid].codes, vid
    assert official.type_to_class == shipped.type_to_class
    assert official.template_to_format == shipped.template_to_format
    assert official.media_to_format == shipped.media_to_format


def _examples(shared: Path) -> list[Path]:
    return sorted((shared / "cda/examples").glob("*.xml"))


# Examples whose CDA model has no ASS_A11 correspondence (BIO-TROD, templateId 1.2.250.1.213.1.1.1.59):
# the formatCode cannot be derived and must be supplied.
NO_FORMAT_CORRESPONDENCE = {"BIO-TROD_2024.01_Angine.xml", "BIO-TROD_2024.01_Cystite.xml"}
# Official examples whose INS matricule has a wrong key (DMP.PATIENTID must say so).
WRONG_INS_KEY = {"CSE-CS8_2024.01.xml", "CSE-CS9_2025.01.xml", "OBP-SEM_2024.01.xml", "SDM-MR_2024.01_nouveau-ne.xml"}


@pytest.mark.shared
def test_official_examples_get_conformant_metadata(shared_data: Path) -> None:
    """Metadata built from each official CDA passes, except the examples' own known defects."""
    seen_bad_keys = set()
    for path in _examples(shared_data):
        data = path.read_bytes()
        root = parse_xml(data)
        facts = cda_facts(root)
        assert facts is not None and facts.ins, path.name
        oid, matricule = facts.ins[0]
        overrides: dict[str, Any] = {}
        if path.name in NO_FORMAT_CORRESPONDENCE:
            with pytest.raises(ValueError):
                build_submit_objects(data, root, patient_ins=matricule or "", ins_oid=oid, author={})
            overrides["formatCode"] = ("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3")
        xml = build_submit_objects(data, root, patient_ins=matricule or "", ins_oid=oid, author={}, overrides=overrides)
        found = run_check("xds.metadata", provide_and_register(xml, data)) + run_check(
            "xds.cda", xml, cda_root=root, document=data
        )
        bad = errors(found)
        if bad == {"DMP.PATIENTID"}:
            seen_bad_keys.add(path.name)
            assert all("key" in f.message for f in found if f.rule == "DMP.PATIENTID"), path.name
        else:
            assert bad == set(), (path.name, [f.message for f in found if f.severity == "error"])
        assert {f.rule for f in found if f.severity == "warning"} <= {"XDS.AUTHOR"}
        info = [f for f in found if f.severity == "info"]
        assert bool(info) == (path.name in NO_FORMAT_CORRESPONDENCE), path.name
    assert seen_bad_keys == WRONG_INS_KEY


@pytest.mark.shared
def test_value_sets_cover_the_official_examples(shared_data: Path) -> None:
    """Every code the official examples put in the header is in the DMP value sets, by name."""
    term = shipped_terminology()
    gaps: set[str] = set()
    for path in _examples(shared_data):
        facts = cda_facts(parse_xml(path.read_bytes()))
        assert facts is not None
        checks = [
            ("J66", facts.code),
            ("J58", facts.confidentiality),
            ("J61", facts.facility[0] if facts.facility else None),
            *[("J62", code) for code, _ in facts.practice],
            ("J56", facts.author_specialty[0] if facts.author_specialty else None),
        ]
        for vid, code in checks:
            if code is not None and code not in term.valuesets[vid].codes:
                gaps.add(f"{vid}:{code}")
        classes = term.type_to_class.get(facts.code or "")
        if not classes or not classes & set(term.valuesets["J57"].codes):
            gaps.add(f"X04:{facts.code}")
        formats = expected_formats(facts, term)
        if formats and not formats & set(term.valuesets["J60"].codes):
            gaps.add(f"J60:{sorted(formats)}")
        assert cda_ts_utc(facts.effective_time) is not None, path.name
    # Known: the CNAM-HR example's author is the AMO system (TRE_A00 ALIM_AM), which is in J56.
    assert gaps == set(), gaps


def test_uuid_constants_are_well_formed() -> None:
    from conformance.checks import xds

    uuids = [v for k, v in vars(xds).items() if k.isupper() and isinstance(v, str) and v.startswith("urn:uuid:")]
    assert len(uuids) >= 18
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", u) for u in uuids)
