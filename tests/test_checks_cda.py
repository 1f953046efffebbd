"""CI-SIS header rules (``cda.header``): a minimal conformant document passes, each single defect fails."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from conformance.checks.cda import cda_header, luhn_ok, ts_problem
from conformance.checks.registry import RULES, run_check
from conformance.model import Finding
from conformance.terminology import Terminology, ValueSet, builtin

V3 = "urn:hl7-org:v3"
NS = {"c": V3}

MINIMAL = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="1.2.250.1.213.1.1.1.13"/>
  <id root="1.2.250.1.999.1.2.3" extension="DOC-1"/>
  <code code="SYNTH" codeSystem="1.2.250.1.213.1.1.4.12" displayName="Synthèse"/>
  <title>Synthèse médicale</title>
  <effectiveTime value="20240102103000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="1.2.250.1.999.1.2"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole><id root="1.2.250.1.999.7" extension="P1"/><patient/></patientRole></recordTarget>
  <author>
    <time value="20240102103000+0100"/>
    <assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810001234565"/><assignedPerson/></assignedAuthor>
  </author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="1750000010"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <legalAuthenticator>
    <time value="20240102103000+0100"/>
    <signatureCode code="S"/>
    <assignedEntity><id root="1.2.250.1.71.4.2.1" extension="810001234565"/></assignedEntity>
  </legalAuthenticator>
  <documentationOf><serviceEvent><effectiveTime><low value="20240102"/></effectiveTime></serviceEvent></documentationOf>
  <componentOf><encompassingEncounter>
    <effectiveTime><low value="202401021000+0100"/></effectiveTime>
    <location><healthCareFacility><code code="SA01" codeSystem="1.2.250.1.71.4.2.4"/></healthCareFacility></location>
  </encompassingEncounter></componentOf>
  <component><structuredBody/></component>
</ClinicalDocument>
"""


def parse() -> etree._Element:
    return etree.fromstring(MINIMAL.encode())


def findings(root: etree._Element, terminology: Terminology | None = None) -> list[Finding]:
    return run_check("cda.header", root, terminology=terminology)


def errors(fs: list[Finding]) -> set[str]:
    return {f.rule for f in fs if f.severity == "error"}


def warnings(fs: list[Finding]) -> set[str]:
    return {f.rule for f in fs if f.severity == "warning"}


def el(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, NS)
    assert found is not None, path
    return found


def remove(path: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        for e in root.findall(path, NS):
            e.getparent().remove(e)

    return mutate


def setattr_(path: str, name: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        el(root, path).set(name, value)

    return mutate


def test_minimal_document_is_conformant() -> None:
    fs = findings(parse())
    assert fs == [], fs


def test_luhn_and_identifiers_of_the_minimal_document_are_valid() -> None:
    assert luhn_ok("10001234565") and luhn_ok("750000010")
    assert not luhn_ok("10001234564")


DEFECTS: list[tuple[str, Callable[[etree._Element], None], str]] = [
    ("no realmCode", remove("c:realmCode"), "CDA.REALM"),
    ("realm DE", setattr_("c:realmCode", "code", "DE"), "CDA.REALM"),
    ("no typeId", remove("c:typeId"), "CDA.TYPEID"),
    ("wrong typeId", setattr_("c:typeId", "extension", "POCD_HD000041"), "CDA.TYPEID"),
    ("no HL7 France templateId", remove("c:templateId[@root='2.16.840.1.113883.2.8.2.1']"), "CDA.TEMPLATE"),
    ("no CI-SIS templateId", remove("c:templateId[@root='1.2.250.1.213.1.1.1.1']"), "CDA.TEMPLATE"),
    ("no id", remove("c:id"), "CDA.ID"),
    ("id root not an OID", setattr_("c:id", "root", "1.2.250.01.x"), "CDA.OID"),
    ("no code", remove("c:code"), "CDA.CODE"),
    ("code without system", lambda r: el(r, "c:code").attrib.pop("codeSystem"), "CDA.CODE"),
    ("no title", remove("c:title"), "CDA.TITLE"),
    ("no effectiveTime", remove("c:effectiveTime"), "CDA.EFFECTIVE-TIME"),
    ("effectiveTime not a TS", setattr_("c:effectiveTime", "value", "2024-01-02T10:30"), "CDA.EFFECTIVE-TIME"),
    ("effectiveTime month 13", setattr_("c:effectiveTime", "value", "20241302103000+0100"), "CDA.EFFECTIVE-TIME"),
    ("confidentiality X", setattr_("c:confidentialityCode", "code", "X"), "CDA.CONFIDENTIALITY"),
    ("confidentiality system", setattr_("c:confidentialityCode", "codeSystem", "1.2.3"), "CDA.CONFIDENTIALITY"),
    ("no confidentiality", remove("c:confidentialityCode"), "CDA.CONFIDENTIALITY"),
    ("language en-US", setattr_("c:languageCode", "code", "en-US"), "CDA.LANGUAGE"),
    ("no setId", remove("c:setId"), "CDA.SETID"),
    ("setId root", setattr_("c:setId", "root", "not-an-oid"), "CDA.OID"),
    ("version 0", setattr_("c:versionNumber", "value", "0"), "CDA.VERSION"),
    ("version text", setattr_("c:versionNumber", "value", "v2"), "CDA.VERSION"),
    ("no recordTarget", remove("c:recordTarget"), "CDA.RECORD-TARGET"),
    ("no patient id", remove("c:recordTarget/c:patientRole/c:id"), "CDA.RECORD-TARGET"),
    ("no author", remove("c:author"), "CDA.AUTHOR"),
    ("no author id", remove("c:author/c:assignedAuthor/c:id"), "CDA.AUTHOR.ID"),
    ("author without person", remove("c:author/c:assignedAuthor/c:assignedPerson"), "CDA.AUTHOR"),
    ("author time invalid", setattr_("c:author/c:time", "value", "20240231"), "CDA.TS"),
    ("no author time", remove("c:author/c:time"), "CDA.TS"),
    ("no custodian", remove("c:custodian"), "CDA.CUSTODIAN"),
    (
        "no custodian id",
        remove("c:custodian/c:assignedCustodian/c:representedCustodianOrganization/c:id"),
        "CDA.CUSTODIAN",
    ),
    ("no legalAuthenticator", remove("c:legalAuthenticator"), "CDA.LEGAL-AUTHENTICATOR"),
    ("signatureCode X", setattr_("c:legalAuthenticator/c:signatureCode", "code", "X"), "CDA.LEGAL-AUTHENTICATOR"),
    ("no legal time", remove("c:legalAuthenticator/c:time"), "CDA.LEGAL-AUTHENTICATOR"),
    ("no legal id", remove("c:legalAuthenticator/c:assignedEntity/c:id"), "CDA.LEGAL-AUTHENTICATOR"),
    ("no serviceEvent", remove("c:documentationOf"), "CDA.SERVICE-EVENT"),
    ("serviceEvent no time", remove("c:documentationOf/c:serviceEvent/c:effectiveTime"), "CDA.SERVICE-EVENT"),
    ("no encounter", remove("c:componentOf"), "CDA.ENCOUNTER"),
    ("encounter no time", remove("c:componentOf/c:encompassingEncounter/c:effectiveTime"), "CDA.ENCOUNTER"),
    (
        "encounter no facility",
        remove("c:componentOf/c:encompassingEncounter/c:location"),
        "CDA.ENCOUNTER",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "rule"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_single_defect_fails_its_rule(name: str, mutate: Callable[[etree._Element], None], rule: str) -> None:
    root = parse()
    mutate(root)
    fs = findings(root)
    assert rule in errors(fs), (name, fs)
    assert all(f.rule.startswith("CDA.") for f in fs)
    assert all(f.location and f.location.startswith("/ClinicalDocument") for f in fs)


WARNINGS: list[tuple[str, Callable[[etree._Element], None], str]] = [
    ("RPPS key", setattr_("c:author/c:assignedAuthor/c:id", "extension", "810001234564"), "CDA.RPPS"),
    ("RPPS length", setattr_("c:legalAuthenticator/c:assignedEntity/c:id", "extension", "81234"), "CDA.RPPS"),
    (
        "FINESS key",
        setattr_("c:custodian/c:assignedCustodian/c:representedCustodianOrganization/c:id", "extension", "1750000011"),
        "CDA.FINESS",
    ),
    ("timezone +100", setattr_("c:legalAuthenticator/c:time", "value", "20240106113623+100"), "CDA.TS.TZ"),
    ("no timezone", setattr_("c:effectiveTime", "value", "20240102103000"), "CDA.EFFECTIVE-TIME.PRECISION"),
    ("day precision", setattr_("c:effectiveTime", "value", "20240102"), "CDA.EFFECTIVE-TIME.PRECISION"),
    ("no volet templateId", remove("c:templateId[@root='1.2.250.1.213.1.1.1.13']"), "CDA.TEMPLATE.VOLET"),
    ("code outside built-in subset", setattr_("c:code", "code", "ZZZ"), "CDA.CODE.VALUESET"),
    (
        "facility outside built-in subset",
        setattr_("c:componentOf/c:encompassingEncounter/c:location/c:healthCareFacility/c:code", "code", "SA99"),
        "CDA.ENCOUNTER.FACILITY",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "rule"), WARNINGS, ids=[d[0] for d in WARNINGS])
def test_soft_defects_only_warn(name: str, mutate: Callable[[etree._Element], None], rule: str) -> None:
    """Check digits, odd timezones and subsets of value sets warn: the CI-SIS does not make them errors."""
    root = parse()
    mutate(root)
    fs = findings(root)
    assert rule in warnings(fs), (name, fs)
    assert not errors(fs), fs


def _official(oid: str, name: str, *pairs: tuple[str, str]) -> Terminology:
    term = builtin().merged(Terminology())
    vs = ValueSet(oid=oid, name=name, official=True)
    for system, code in pairs:
        vs.add(system, code)
    term.add(vs)
    return term


def test_code_outside_official_value_set_is_an_error() -> None:
    term = _official("1.2.250.1.213.1.1.5.471", "JDV_J07", ("1.2.250.1.213.1.1.4.12", "SYNTH"))
    assert findings(parse(), term) == []
    root = parse()
    el(root, "c:code").set("code", "REMB")
    assert errors(findings(root, term)) == {"CDA.CODE.VALUESET"}


def test_facility_outside_official_value_set_is_an_error() -> None:
    term = _official("1.2.250.1.213.1.1.5.466", "JDV_J02", ("1.2.250.1.71.4.2.4", "SA02"))
    assert errors(findings(parse(), term)) == {"CDA.ENCOUNTER.FACILITY"}


def test_embedded_document_is_located_with_double_slash() -> None:
    wrapper = (
        '<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/">'
        + MINIMAL.split("?>", 1)[1].replace('<realmCode code="FR"/>', "")
        + "</xsl:template></xsl:stylesheet>"
    )
    fs = list(cda_header(wrapper.encode()))
    assert [(f.rule, f.location) for f in fs] == [("CDA.REALM", "//ClinicalDocument/realmCode")]


def test_bytes_input_hostile_gives_input_finding() -> None:
    fs = list(cda_header(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'))
    assert [f.rule for f in fs] == ["INPUT.DTD"]
    assert [f.rule for f in cda_header(b"<notcda/>")] == ["CDA.DOCUMENT"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024", True),
        ("20240229", True),
        ("20230229", False),
        ("202401021030+0100", True),
        ("20240102103000.123-0500", True),
        ("291812011200+0100", True),
        ("2024010", False),
        ("20240102+0100", False),
        ("20240102253000", False),
        ("abc", False),
    ],
)
def test_ts_syntax(value: str, ok: bool) -> None:
    error, _ = ts_problem(value)
    assert (error is None) is ok, (value, error)


def test_every_declared_rule_is_registered() -> None:
    from conformance.checks.cda import RULES as CDA_RULES

    for rule in CDA_RULES:
        assert rule in RULES
