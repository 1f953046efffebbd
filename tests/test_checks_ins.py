"""INS checks over FHIR Patients: key arithmetic, each rule alone, both status encodings, coherence.

The quality bar is "one defect → exactly its rule": most tests build a conformant patient, inject a
single defect and assert the *set* of rules found, so a check that fires too widely fails as surely
as one that does not fire.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.checks import ins
from conformance.checks.ins import (
    CS_IDENTITY_STATUS,
    CS_V2_0203,
    CS_V2_0445,
    EXT_ADDRESS_INSEE_CODE,
    EXT_BIRTH_LIST_GIVEN_NAME,
    EXT_BIRTH_PLACE,
    EXT_BIRTH_PLACE_FR,
    EXT_IDENTITY_RELIABILITY,
    identity_from_patient,
    key_is_valid,
    matricule_problem,
    nir_key,
    parse_matricule,
)
from conformance.checks.registry import CHECKS, rule_matches, run_check
from conformance.model import Finding

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROFILE = Path(__file__).resolve().parents[1] / "conformance" / "profiles" / "segur-v2-ins.yaml"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")

NIR, NIA, TEST, DEMO = ins.INS_NIR_OID, ins.INS_NIA_OID, ins.INS_TEST_OID, ins.INS_DEMO_OID


# --- builders ---------------------------------------------------------------------------------------


def matricule(body: str) -> str:
    return f"{body}{nir_key(body):02d}"


# CORSE ANTHONY, one of INSi's published test identities (born in 2B020, Corsica).
BODY = "180032B020401"
INS_VALUE = matricule(BODY)


def patient(
    *,
    value: str = INS_VALUE,
    oid: str | None = NIR,
    type_code: str | None = "auto",
    status: tuple[str | None, str] | None = (CS_IDENTITY_STATUS, "QUAL"),
    birth_name: str | None = "CORSE",
    given_list: str | None = "ANTHONY JEAN",
    first_given: str | None = "ANTHONY",
    gender: str | None = "male",
    birth_date: str | None = "1980-03-02",
    birth_place: str | None = "2B020",
) -> dict[str, Any]:
    """A conformant FR Core Patient INS (later identity-status encoding) unless told otherwise."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "extension": []}
    if birth_place is not None:
        resource["extension"].append(
            {
                "url": EXT_BIRTH_PLACE,
                "valueAddress": {
                    "extension": [
                        {
                            "url": EXT_ADDRESS_INSEE_CODE,
                            "valueCoding": {
                                "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                                "code": birth_place,
                            },
                        }
                    ]
                },
            }
        )
    if status is not None:
        system, code = status
        coding = {"code": code} if system is None else {"system": system, "code": code}
        resource["extension"].append(
            {"url": EXT_IDENTITY_RELIABILITY, "extension": [{"url": "identityStatus", "valueCoding": coding}]}
        )
    identifiers: list[dict[str, Any]] = [
        {"use": "usual", "system": "urn:oid:1.2.3.4.5", "value": "IPP-1"},
    ]
    if oid is not None:
        idf: dict[str, Any] = {"use": "official", "system": f"urn:oid:{oid}", "value": value}
        type_ = ins.OID_TYPE_CODE.get(oid) if type_code == "auto" else type_code
        if type_ is not None:
            idf["type"] = {"coding": [{"system": CS_V2_0203, "code": type_}]}
        identifiers.insert(0, idf)
    resource["identifier"] = identifiers
    name: dict[str, Any] = {"use": "official"}
    if given_list is not None:
        name["extension"] = [{"url": EXT_BIRTH_LIST_GIVEN_NAME, "valueString": given_list}]
    if birth_name is not None:
        name["family"] = birth_name
    if first_given is not None:
        name["given"] = [first_given]
    resource["name"] = [name, {"use": "usual", "family": "MARTIN", "given": ["TONY"]}]
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date
    return resource


def findings(resource: Any, **kwargs: Any) -> list[Finding]:
    """Through the registry, so that an undeclared rule id fails the test."""
    return run_check("ins.patient", resource, **kwargs)


def rules(resource: Any, **kwargs: Any) -> set[str]:
    return {f.rule for f in findings(resource, **kwargs)}


def errors(resource: Any) -> set[str]:
    return {f.rule for f in findings(resource) if f.severity == "error"}


# --- key and matricule helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        # Published INSi test identities (insi/README.md); Corsica ones exercise 2A→19 / 2B→18.
        ("2751263220749", 74),
        ("297022A020778", 78),
        ("160012B020777", 13),
        ("180032B020401", 23),
        ("1090763220834", 89),
        ("2360663220836", 56),
        # FR Core's dummy 123456789012244 keys to 12, not 44.
        ("1234567890122", 12),
    ],
)
def test_nir_key_known_answers(body: str, key: int) -> None:
    assert nir_key(body) == key


_BODY = st.builds(
    lambda head, dept, tail: head + dept + tail,
    st.text("0123456789", min_size=5, max_size=5),
    st.one_of(st.text("0123456789", min_size=2, max_size=2), st.sampled_from(["2A", "2B"])),
    st.text("0123456789", min_size=6, max_size=6),
)


@given(_BODY)
def test_computed_key_validates(body: str) -> None:
    key = nir_key(body)
    assert 1 <= key <= 97
    assert parse_matricule(f"{body}{key:02d}") == (body, key)
    assert key_is_valid(f"{body}{key:02d}")


@given(_BODY, st.integers(0, 99))
def test_any_other_key_fails(body: str, key: int) -> None:
    if key == nir_key(body):
        return
    assert not key_is_valid(f"{body}{key:02d}")


@given(_BODY)
def test_corsica_codes_key_like_19_and_18(body: str) -> None:
    if body[5:7] == "2A":
        assert nir_key(body) == nir_key(body[:5] + "19" + body[7:])
    elif body[5:7] == "2B":
        assert nir_key(body) == nir_key(body[:5] + "18" + body[7:])


@pytest.mark.parametrize("body", ["", "12345", "1800320B20401", "18003 2B02040", "180032a020401", "1800322C20401"])
def test_nir_key_refuses_malformed_bodies(body: str) -> None:
    with pytest.raises(ValueError):
        nir_key(body)


@pytest.mark.parametrize(
    "value",
    [
        None,
        180032,
        "",
        "18003",
        "1800322B020401230",
        "18003 2B020401 23",
        "180032b02040123",
        "1800320A0204012",
        "180032B0204012X",
        "380032B02040123",
        "0800322B0204012",
    ],
)
def test_matricule_problem_explains_malformed_values(value: object) -> None:
    assert matricule_problem(value) is not None
    if not isinstance(value, str) or len(value) != 15:
        assert parse_matricule(value) is None


def test_matricule_problem_accepts_nir_and_nia() -> None:
    assert matricule_problem(INS_VALUE) is None
    assert matricule_problem(matricule("7800363220401")) is None
    assert matricule_problem(matricule("8800363220401")) is None


# --- conformant patients, both status encodings -----------------------------------------------------


def test_conformant_patient_has_no_finding_at_all() -> None:
    assert findings(patient()) == []


def test_identity_is_normalised() -> None:
    ident = identity_from_patient(patient())
    assert ident.matricule == INS_VALUE and ident.oid == NIR
    assert ident.birth_name == "CORSE"
    assert ident.given_names == ["ANTHONY", "JEAN"] and ident.first_given_name == "ANTHONY"
    assert ident.used_name == "MARTIN" and ident.used_given_name == "TONY"
    assert ident.sex == "M" and ident.birth_date == "1980-03-02" and ident.birth_place == "2B020"
    assert (ident.status, ident.status_system, ident.qualified) == ("QUAL", CS_IDENTITY_STATUS, True)


def test_frcore_220_vali_with_ins_is_qualified() -> None:
    resource = patient(status=(CS_V2_0445, "VALI"))
    assert findings(resource) == []
    ident = identity_from_patient(resource)
    assert ident.qualified and ident.status == "QUAL" and ident.status_code == "VALI"


def test_frcore_220_vali_without_ins_is_not_qualified_but_fine() -> None:
    resource = patient(oid=None, status=(CS_V2_0445, "VALI"))
    assert findings(resource) == []
    ident = identity_from_patient(resource)
    assert not ident.qualified and ident.status == "VALI"


def test_fiabilite_identite_code_system_reads_like_0445() -> None:
    assert findings(patient(status=(ins.CS_FIABILITE_IDENTITE, "VALI"))) == []


@pytest.mark.parametrize(
    "status",
    [
        (CS_IDENTITY_STATUS, "RECUP"),
        (CS_IDENTITY_STATUS, "VALI"),
        (CS_IDENTITY_STATUS, "PROV"),
        (CS_V2_0445, "PROV"),
        (CS_V2_0445, "VIDE"),
        (CS_V2_0445, "DOUT"),
    ],
)
def test_ins_of_an_unqualified_identity(status: tuple[str, str]) -> None:
    resource = patient(status=status)
    assert rules(resource) == {"INS.QUALIFIED"}
    assert not identity_from_patient(resource).qualified
    [finding] = findings(resource)
    assert finding.location == "Patient.identifier[0]"


@pytest.mark.parametrize("code", ["PROV", "RECUP", "VALI", "QUAL"])
def test_no_ins_no_qualification_needed(code: str) -> None:
    assert findings(patient(oid=None, status=(CS_IDENTITY_STATUS, code))) == []


def test_status_as_codeable_concept_is_read() -> None:
    resource = patient()
    resource["extension"][1]["extension"][0] = {
        "url": "identityStatus",
        "valueCodeableConcept": {"coding": [{"system": CS_IDENTITY_STATUS, "code": "RECUP"}]},
    }
    assert rules(resource) == {"INS.QUALIFIED"}


def test_status_among_other_reliability_sub_extensions() -> None:
    resource = patient()
    subs = resource["extension"][1]["extension"]
    subs.insert(0, {"url": "methodCollection", "valueCoding": {"code": "INSI"}})
    subs.append({"url": "validationDate", "valueDate": "2024-01-01"})
    assert findings(resource) == []


# --- status rules --------------------------------------------------------------------------------------


def test_no_status_is_status_missing_only() -> None:
    resource = patient(status=None)
    assert rules(resource) == {"INS.STATUS.MISSING"}  # not INS.QUALIFIED too


def test_reliability_without_identity_status_is_missing() -> None:
    resource = patient()
    resource["extension"][1]["extension"] = [{"url": "methodCollection", "valueCoding": {"code": "INSI"}}]
    assert rules(resource) == {"INS.STATUS.MISSING"}


def test_identity_status_without_code_is_missing() -> None:
    resource = patient()
    resource["extension"][1]["extension"][0]["valueCoding"] = {"system": CS_IDENTITY_STATUS}
    assert rules(resource) == {"INS.STATUS.MISSING"}


@pytest.mark.parametrize(
    "status",
    [
        (CS_IDENTITY_STATUS, "NOPE"),
        (CS_IDENTITY_STATUS, "qual"),
        (CS_V2_0445, "QUAL"),
        (CS_V2_0445, "RECUP"),
        ("http://example.org/status", "QUAL"),
        (None, "QUAL"),
    ],
)
def test_status_code_outside_its_system(status: tuple[str | None, str]) -> None:
    assert rules(patient(status=status)) == {"INS.STATUS.CODE"}


# --- identifier rules ---------------------------------------------------------------------------------


def test_wrong_key_is_key_only() -> None:
    bad = BODY + f"{(nir_key(BODY) % 97) + 1:02d}"
    [finding] = findings(patient(value=bad))
    assert finding.rule == "INS.MATRICULE.KEY" and finding.severity == "error"
    assert finding.location == "Patient.identifier[0].value"


@pytest.mark.parametrize(
    "value",
    [
        "18003 2B020401 23",
        "180032B0204012",
        "1800322B02040123",
        "180032b02040123",
        "180032B02040X23",
        "380032B02040123",
        " " + INS_VALUE[1:],
    ],
)
def test_malformed_matricule_is_format_only(value: str) -> None:
    assert rules(patient(value=value)) == {"INS.MATRICULE.FORMAT"}


def test_identifier_without_value_is_format() -> None:
    resource = patient()
    del resource["identifier"][0]["value"]
    assert rules(resource) == {"INS.MATRICULE.FORMAT"}


@pytest.mark.parametrize("oid", [NIR, TEST, DEMO])
def test_nir_accepted_oids(oid: str) -> None:
    assert findings(patient(oid=oid)) == []


NIA_VALUE = matricule("7800363220401")


@pytest.mark.parametrize("oid", [NIA, DEMO])
def test_nia_accepted_oids(oid: str) -> None:
    assert findings(patient(value=NIA_VALUE, oid=oid, birth_place="63220")) == []


@pytest.mark.parametrize(("value", "oid"), [(NIA_VALUE, NIR), (NIA_VALUE, TEST)])
def test_number_kind_inconsistent_with_oid(value: str, oid: str) -> None:
    [finding] = findings(patient(value=value, oid=oid))
    assert finding.rule == "INS.OID" and finding.location == "Patient.identifier[0].system"
    assert finding.severity == "error"


def test_nir_shaped_number_under_nia_oid_is_only_a_warning() -> None:
    # INSi's own test base returns NIA 109076322088835 (first digit 1) under .9 (CNDA test 2.05).
    [finding] = findings(patient(value=INS_VALUE, oid=NIA))
    assert finding.rule == "INS.OID" and finding.severity == "warning"


def test_unknown_ins_oid() -> None:
    resource = patient()
    resource["identifier"][0]["system"] = "urn:oid:1.2.250.1.213.1.4.99"
    assert rules(resource) == {"INS.OID"}


def test_other_identifiers_of_the_oid_arc_are_not_ins() -> None:
    resource = patient()
    resource["identifier"].append({"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.13", "value": "X"})
    assert findings(resource) == []


def test_bare_oid_system_is_fhir_identifier() -> None:
    resource = patient()
    resource["identifier"][0]["system"] = NIR
    [finding] = findings(resource)
    assert finding.rule == "INS.FHIR.IDENTIFIER" and finding.severity == "error"
    assert finding.location == "Patient.identifier[0].system"


def test_ins_typed_identifier_without_urn_system() -> None:
    resource = patient()
    resource["identifier"][0]["system"] = "https://example.org/ins"
    assert errors(resource) == {"INS.FHIR.IDENTIFIER"}
    del resource["identifier"][0]["system"]
    assert errors(resource) == {"INS.FHIR.IDENTIFIER"}


@pytest.mark.parametrize("code", ["INS-NIA", "INS-NIR-TEST", "PI"])
def test_type_system_mismatch(code: str) -> None:
    [finding] = findings(patient(type_code=code))
    assert finding.rule == "INS.FHIR.IDENTIFIER" and finding.severity == "error"
    assert finding.location == "Patient.identifier[0].type.coding[0].code"


def test_ins_type_code_from_another_code_system() -> None:
    resource = patient()
    resource["identifier"][0]["type"]["coding"][0]["system"] = "http://terminology.hl7.org/CodeSystem/v2-0203"
    [finding] = findings(resource)
    assert finding.rule == "INS.FHIR.IDENTIFIER" and finding.severity == "error"
    assert finding.location == "Patient.identifier[0].type.coding[0].system"


def test_missing_type_and_use_are_warnings() -> None:
    resource = patient(type_code=None)
    del resource["identifier"][0]["use"]
    found = findings(resource)
    assert {f.rule for f in found} == {"INS.FHIR.IDENTIFIER"}
    assert {f.severity for f in found} == {"warning"} and len(found) == 2


def test_wrong_use_is_error() -> None:
    resource = patient()
    resource["identifier"][0]["use"] = "usual"
    [finding] = findings(resource)
    assert finding.rule == "INS.FHIR.IDENTIFIER" and finding.severity == "error"


def test_old_ins_is_checked_but_not_matched_against_traits() -> None:
    resource = patient()
    # History with the other sex digit (as INSi's INSHISTO can carry): not the current INS.
    resource["identifier"].append(
        {
            "use": "old",
            "system": f"urn:oid:{NIR}",
            "value": matricule("2800363220401"),
            "type": {"coding": [{"system": CS_V2_0203, "code": "INS-NIR"}]},
        }
    )
    assert findings(resource) == []
    resource["identifier"][-1]["value"] = "2800363220401" + "00"
    assert rules(resource) == {"INS.MATRICULE.KEY"}


def test_two_current_ins_is_identifier_error() -> None:
    resource = patient()
    resource["identifier"].append(
        {
            "use": "official",
            "system": f"urn:oid:{NIR}",
            "value": matricule("1800363220401"),
            "type": {"coding": [{"system": CS_V2_0203, "code": "INS-NIR"}]},
        }
    )
    assert rules(resource) == {"INS.FHIR.IDENTIFIER"}


# --- strict traits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"birth_name": None}, "Patient.name[0].family"),
        ({"first_given": None}, "Patient.name[0].given[0]"),
        ({"given_list": None}, "Patient.name[0]"),
        ({"birth_date": None}, "Patient.birthDate"),
        ({"gender": None}, "Patient.gender"),
        ({"birth_place": None}, "Patient.extension"),
    ],
)
def test_each_missing_trait_is_missing_only(change: dict[str, Any], location: str) -> None:
    [finding] = findings(patient(**change))
    assert finding.rule == "INS.TRAITS.MISSING" and finding.location == location


def test_no_official_name_is_birth_name_and_first_given_missing() -> None:
    resource = patient()
    resource["name"] = [n for n in resource["name"] if n["use"] != "official"]
    found = findings(resource)
    assert {f.rule for f in found} == {"INS.TRAITS.MISSING"} and len(found) == 3


def test_birth_list_only_required_with_an_ins() -> None:
    resource = patient(oid=None, given_list=None, status=(CS_IDENTITY_STATUS, "PROV"))
    assert findings(resource) == []
    ident = identity_from_patient(resource)
    assert ident.given_names == ["ANTHONY"] and ident.given_names_list is None


def test_birth_place_without_insee_code_is_missing() -> None:
    resource = patient()
    resource["extension"][0]["valueAddress"] = {"city": "BASTIA"}
    [finding] = findings(resource)
    assert finding.rule == "INS.TRAITS.MISSING" and finding.location == "Patient.extension[0]"


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"birth_date": "1980-03"}, "Patient.birthDate"),
        ({"birth_date": "1980"}, "Patient.birthDate"),
        ({"birth_date": "1980-02-30"}, "Patient.birthDate"),
        ({"birth_date": "02/03/1980"}, "Patient.birthDate"),
        ({"gender": "unknown"}, "Patient.gender"),
        ({"gender": "other"}, "Patient.gender"),
        ({"gender": "M"}, "Patient.gender"),
        ({"birth_name": ""}, "Patient.name[0].family"),
        ({"birth_name": "   "}, "Patient.name[0].family"),
        ({"first_given": ""}, "Patient.name[0].given[0]"),
        ({"given_list": " "}, "Patient.name[0].extension[0].valueString"),
    ],
)
def test_each_malformed_trait_is_format_only(change: dict[str, Any], location: str) -> None:
    [finding] = findings(patient(**change))
    assert finding.rule == "INS.TRAITS.FORMAT" and finding.location == location


def test_undetermined_sex_is_fine_without_ins() -> None:
    assert findings(patient(oid=None, gender="unknown")) == []


def test_wrongly_typed_traits_are_format() -> None:
    resource = patient()
    resource["birthDate"] = 19800302
    resource["gender"] = 1
    assert rules(resource) == {"INS.TRAITS.FORMAT"}


@pytest.mark.parametrize(
    "cog", ["63220", "2A004", "2B020", "97411", "97502", "98735", "98818", "99100", "99999", "01006", "95018"]
)
def test_valid_birth_places(cog: str) -> None:
    value = INS_VALUE if cog[:2] == "2B" else matricule("18003" + cog + "401")
    assert findings(patient(value=value, birth_place=cog)) == []


@pytest.mark.parametrize(
    "cog",
    ["6322", "632200", "20020", "2a020", "2C020", "96001", "00123", "97901", "98201", "ABCDE", "63 22", ""],
)
def test_invalid_birth_places(cog: str) -> None:
    [finding] = findings(patient(birth_place=cog))
    assert finding.rule == "INS.TRAITS.BIRTHPLACE"
    assert finding.location == "Patient.extension[0].valueAddress.extension[0].valueCoding.code"


def test_draft_birth_place_extension_district() -> None:
    resource = patient(birth_place=None)
    resource["extension"].append({"url": EXT_BIRTH_PLACE_FR, "valueAddress": {"district": "2B020"}})
    assert findings(resource) == []
    resource["extension"][-1]["valueAddress"]["district"] = "BASTIA"
    [finding] = findings(resource)
    assert finding.rule == "INS.TRAITS.BIRTHPLACE"
    assert finding.location == "Patient.extension[1].valueAddress.district"


def test_first_given_not_first_of_list() -> None:
    [finding] = findings(patient(first_given="JEAN"))
    assert finding.rule == "INS.TRAITS.FIRST-GIVEN" and finding.location == "Patient.name[0].given[0]"


@pytest.mark.parametrize(
    ("first", "listed"),
    [
        ("anthony", "ANTHONY JEAN"),
        ("ANTHONY", "ANTHONY   JEAN"),
        ("JEAN PIERRE", "JEAN PIERRE MARC"),
        ("PIERRE-ALAIN", "PIERRE-ALAIN MURIEL FLORIANT"),
        ("ANTHONY", "ANTHONY"),
    ],
)
def test_first_given_matches(first: str, listed: str) -> None:
    assert findings(patient(first_given=first, given_list=listed)) == []


@pytest.mark.parametrize(
    ("first", "listed"),
    [("JEAN", "JEANNE MARIE"), ("PIERRE", "PIERRE-ALAIN MURIEL"), ("D'ARC", "DARC JEANNE")],
)
def test_first_given_prefix_is_not_enough(first: str, listed: str) -> None:
    assert rules(patient(first_given=first, given_list=listed)) == {"INS.TRAITS.FIRST-GIVEN"}


# --- NIR coherence ------------------------------------------------------------------------------------


def test_sex_contradicting_nir() -> None:
    [finding] = findings(patient(gender="female"))
    assert finding.rule == "INS.NIR.SEX" and finding.location == "Patient.identifier[0].value"


def test_nia_sex_digit() -> None:
    assert findings(patient(value=NIA_VALUE, oid=NIA, birth_place="63220")) == []
    assert rules(patient(value=NIA_VALUE, oid=NIA, gender="female", birth_place="63220")) == {"INS.NIR.SEX"}
    female_nia = matricule("8800363220401")
    assert findings(patient(value=female_nia, oid=NIA, gender="female", birth_place="63220")) == []


@pytest.mark.parametrize("birth_date", ["1981-03-02", "1980-04-02", "1979-03-02", "2081-03-02"])
def test_birth_date_contradicting_nir(birth_date: str) -> None:
    [finding] = findings(patient(birth_date=birth_date))
    assert finding.rule == "INS.NIR.BIRTHDATE"


@pytest.mark.parametrize("month", ["20", "30", "42", "50", "99"])
def test_fictitious_nir_month_skips_birth_date(month: str) -> None:
    value = matricule("180" + month + "2B020401")
    assert findings(patient(value=value, birth_date="1980-07-14")) == []


@pytest.mark.parametrize("month", ["00", "13", "43", "49"])
def test_non_fictitious_odd_month_is_compared(month: str) -> None:
    value = matricule("180" + month + "2B020401")
    assert rules(patient(value=value)) == {"INS.NIR.BIRTHDATE"}


def test_wrong_key_does_not_also_trigger_nir_rules() -> None:
    bad = BODY + f"{(nir_key(BODY) % 97) + 1:02d}"
    assert rules(patient(value=bad, gender="female", birth_date="1990-01-01")) == {"INS.MATRICULE.KEY"}


def test_missing_or_malformed_traits_do_not_trigger_nir_rules() -> None:
    assert rules(patient(gender=None)) == {"INS.TRAITS.MISSING"}
    assert rules(patient(birth_date="1990")) == {"INS.TRAITS.FORMAT"}


@st.composite
def identities(draw: st.DrawFn) -> dict[str, Any]:
    sex = draw(st.sampled_from("MF"))
    nia = draw(st.booleans())
    year = draw(st.integers(1900, 2099))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    dept = draw(st.one_of(st.sampled_from(["2A", "2B", "01", "63", "75", "95"]), st.just("99")))
    commune = draw(st.text("0123456789", min_size=3, max_size=3))
    order = draw(st.text("0123456789", min_size=3, max_size=3))
    digit = ("7" if sex == "M" else "8") if nia else ("1" if sex == "M" else "2")
    body = f"{digit}{year % 100:02d}{month:02d}{dept}{commune}{order}"
    place = f"{dept}{commune}"  # a well-formed COG code: commune, Corsica, or 99xxx abroad
    return {
        "value": matricule(body),
        "oid": draw(st.sampled_from(sorted(ins.NIA_OIDS if nia else ins.NIR_OIDS))),
        "gender": "male" if sex == "M" else "female",
        "birth_date": f"{year:04d}-{month:02d}-{day:02d}",
        "birth_place": place,
    }


@settings(max_examples=300)
@given(identities())
def test_generated_coherent_identities_pass(traits: dict[str, Any]) -> None:
    assert findings(patient(**traits)) == []


@settings(max_examples=200)
@given(identities())
def test_flipped_sex_is_nir_sex_only(traits: dict[str, Any]) -> None:
    traits["gender"] = "female" if traits["gender"] == "male" else "male"
    assert rules(patient(**traits)) == {"INS.NIR.SEX"}


@settings(max_examples=200)
@given(identities(), st.integers(1, 11))
def test_shifted_birth_month_is_nir_birthdate_only(traits: dict[str, Any], shift: int) -> None:
    year, month, day = traits["birth_date"].split("-")
    traits["birth_date"] = f"{year}-{(int(month) - 1 + shift) % 12 + 1:02d}-{day}"
    assert rules(patient(**traits)) == {"INS.NIR.BIRTHDATE"}


# --- robustness ------------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_FIELDS = ["extension", "identifier", "name", "gender", "birthDate"]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=5))
def test_hostile_json_never_raises(fields: dict[str, Any]) -> None:
    resource = {"resourceType": "Patient", **fields}
    for f in findings(resource):
        assert f.severity in ("error", "warning", "info")


@settings(max_examples=200)
@given(st.sampled_from(_FIELDS), _JSON)
def test_hostile_json_inside_a_conformant_patient_never_raises(field: str, value: Any) -> None:
    resource = patient()
    resource[field] = value
    findings(resource)
    resource = patient()
    resource["identifier"][0] = {"system": f"urn:oid:{NIR}", "value": value, "type": value, "use": value}
    findings(resource)
    resource = patient()
    resource["extension"][1]["extension"] = [{"url": "identityStatus", "valueCoding": value}]
    findings(resource)
    resource = patient()
    resource["extension"][1]["extension"] = [{"url": "identityStatus", "valueCodeableConcept": {"coding": value}}]
    findings(resource)
    resource = patient()
    resource["extension"][1]["extension"] = [
        {"url": "identityStatus", "valueCodeableConcept": {"coding": [{"system": value, "code": value}]}}
    ]
    findings(resource)
    resource = patient()
    resource["identifier"][0]["type"] = {"coding": [{"system": value, "code": value}]}
    resource["identifier"][0]["system"] = value
    findings(resource)
    resource = patient()
    resource["name"][0]["given"] = value
    resource["name"][0]["extension"][0]["valueString"] = value
    resource["extension"][0]["valueAddress"] = value
    findings(resource)
    resource = patient()
    resource["extension"][0]["valueAddress"]["extension"][0]["valueCoding"] = value
    resource["extension"][0]["valueAddress"]["district"] = value
    resource["extension"][0]["url"] = ins.EXT_BIRTH_PLACE_FR
    findings(resource)


@pytest.mark.parametrize("resource", [None, [], "Patient", {"resourceType": "Bundle"}, {}])
def test_not_a_patient_is_input_error(resource: Any) -> None:
    [finding] = findings(resource)
    assert finding.rule == "INPUT.JSON" and finding.severity == "error"


def test_location_prefix_is_carried() -> None:
    [finding] = findings(patient(gender="female"), location="Bundle.entry[2].resource")
    assert finding.location == "Bundle.entry[2].resource.identifier[0].value"


def test_throughput() -> None:
    resource = patient()
    start = time.perf_counter()
    for _ in range(2000):
        list(ins.ins_patient(resource))
    # Thousands of patients per second on any machine; generous bound against noisy CI.
    assert time.perf_counter() - start < 4.0


# --- coherence with INSi ------------------------------------------------------------------------------

EXPECTED: dict[str, Any] = {
    "matricule": INS_VALUE,
    "oid": NIR,
    "birth_name": "CORSE",
    "given_names": ["ANTHONY", "JEAN"],
    "sex": "M",
    "birth_date": "1980-03-02",
    "birth_place": "2B020",
}


def coherence(resource: Any, expected: dict[str, Any] | None = None) -> list[Finding]:
    return run_check("ins.coherence", resource, expected=EXPECTED if expected is None else expected)


def test_coherent_patient() -> None:
    assert coherence(patient()) == []


def test_case_and_spaces_are_not_differences() -> None:
    resource = patient(birth_name=" Corse ", given_list="anthony   jean", first_given="anthony")
    assert coherence(resource) == []
    assert coherence(patient(), {**EXPECTED, "oid": f"urn:oid:{NIR}", "given_names": "ANTHONY JEAN"}) == []


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"value": matricule("180032B020402")}, "Patient.identifier[0].value"),
        ({"oid": TEST}, "Patient.identifier[0].system"),
        ({"birth_name": "MARTIN"}, "Patient.name[0].family"),
        ({"birth_name": "CORSE-MARTIN"}, "Patient.name[0].family"),
        ({"given_list": "ANTHONY-JEAN"}, "Patient.name[0].extension[0].valueString"),
        ({"given_list": "ANTHONY"}, "Patient.name[0].extension[0].valueString"),
        ({"gender": "female"}, "Patient.gender"),
        ({"birth_date": "1980-03-03"}, "Patient.birthDate"),
        ({"birth_place": "2B021"}, "Patient.extension[0].valueAddress.extension[0].valueCoding.code"),
    ],
)
def test_each_difference_is_one_coherence_finding(change: dict[str, Any], location: str) -> None:
    [finding] = coherence(patient(**change))
    assert finding.rule == "INS.INSI.COHERENCE" and finding.location == location


def test_apostrophes_are_significant() -> None:
    assert len(coherence(patient(birth_name="D'ARC"), {**EXPECTED, "birth_name": "DARC"})) == 1


def test_first_given_name_and_absent_traits_are_not_compared() -> None:
    assert coherence(patient(first_given="JEAN")) == []
    absent = patient(oid=None, birth_name=None, given_list=None, gender=None, birth_date=None, birth_place=None)
    assert coherence(absent) == []


def test_coherence_with_partial_expectation() -> None:
    assert coherence(patient(gender="female"), {"birth_name": "CORSE"}) == []


def test_coherence_uses_lunar_date_when_insi_answers_one() -> None:
    resource = patient(birth_date="1980-03-01")
    resource["extension"].append({"url": ins.EXT_LUNAR_DATE, "valueString": "1980-03-00"})
    assert coherence(resource, {**EXPECTED, "birth_date": "1980-03-00"}) == []


# --- registry, profile and the reference vendor's faults -----------------------------------------------


def test_registered_checks_declare_the_profile_rules() -> None:
    assert CHECKS["ins.patient"].kind == "fhir-patient" and CHECKS["ins.patient"].service == "INS"
    declared = set(CHECKS["ins.patient"].rules) | set(CHECKS["ins.coherence"].rules)
    profile = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    used = {r for req in profile["requirements"] for r in req["rules"]}
    mine = {r for r in used if (r.startswith("INS.") and not r.startswith("INS.INSI.")) or r == "INS.INSI.COHERENCE"}
    assert mine <= declared


def _requirements_failed(found: list[Finding]) -> set[str]:
    profile = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    failed = set()
    for req in profile["requirements"]:
        if any(f.severity == "error" and rule_matches(f.rule, req["rules"]) for f in found):
            failed.add(req["id"])
    return failed


def _flip_oid(r: dict[str, Any]) -> None:
    r["identifier"][0]["system"] = "urn:oid:1.2.250.1.213.1.4.2"  # obsolete INS-C OID, as ins.bad-oid does


def _drop_birth_place(r: dict[str, Any]) -> None:
    del r["extension"][0]


def _drop_status(r: dict[str, Any]) -> None:
    del r["extension"][1]


def _recup(r: dict[str, Any]) -> None:
    r["extension"][1]["extension"][0]["valueCoding"]["code"] = "RECUP"


FAULT_MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ins.bad-key": lambda r: r["identifier"][0].update(value=BODY + "00"),
    "ins.bad-oid": _flip_oid,
    "ins.missing-birth-place": _drop_birth_place,
    "ins.sex-mismatch": lambda r: r.update(gender="female"),
    "ins.first-given-mismatch": lambda r: r["name"][0].update(given=["JEAN"]),
    "ins.used-name-as-birth-name": lambda r: r["name"][0].update(family="MARTIN"),
    "ins.no-status": _drop_status,
    "ins.unqualified-ins": _recup,
}


@pytest.mark.parametrize("fault", sorted(FAULT_MUTATIONS))
def test_each_vendor_fault_fails_exactly_its_requirements(fault: str) -> None:
    """Mirror of the reference vendor's faults at check level: the requirements failed by the INS
    checks on the faulty Patient are exactly those ``simulators/faults.py`` declares."""
    faults = pytest.importorskip("conformance.simulators.faults")
    resource = patient()
    FAULT_MUTATIONS[fault](resource)
    found = findings(resource) + coherence(resource)
    expected = set(faults.FAULTS[fault].requirements)
    assert _requirements_failed(found) == expected, [f.as_dict() for f in found]


def test_conformant_patient_fails_no_requirement() -> None:
    resource = patient()
    assert _requirements_failed(findings(resource) + coherence(resource)) == set()


# --- official FR Core examples -----------------------------------------------------------------------


FRCORE_EXAMPLES = [
    "frcore-2.1.0__Patient-ExampleFRCorePatient001.json",
    "frcore-2.2.0__Patient-FRCorePatientExample.json",
    "frcore-ci__Patient-FRCorePatientINSExample.json",
]


@pytest.mark.shared
@needs_shared
@pytest.mark.parametrize("name", FRCORE_EXAMPLES)
def test_frcore_examples_dummy_ins_key_is_flagged(name: str) -> None:
    resource = json.loads((SHARED / "fhir" / "examples" / name).read_text(encoding="utf-8"))
    found = findings(copy.deepcopy(resource))
    # 123456789012244 is a dummy: key 44 where 97 − n mod 97 gives 12; nothing else is wrong.
    assert [(f.rule, f.location) for f in found] == [("INS.MATRICULE.KEY", "Patient.identifier[0].value")]
    ident = identity_from_patient(resource)
    assert ident.qualified and ident.status_code == "VALI" and ident.status_system == CS_V2_0445
    assert ident.birth_place == "01006" and ident.given_names == ["Pierre", "Yves"]
    assert ident.sex == "M" and ident.birth_date == "1974-12-25" and ident.birth_name == "Durand"


def test_legacy_identifier_type_system_is_a_warning() -> None:
    resource = patient()
    resource["identifier"][0]["type"]["coding"][0]["system"] = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
    [finding] = findings(resource)
    assert (finding.rule, finding.severity) == ("INS.FHIR.IDENTIFIER", "warning")
    resource["identifier"][0]["type"]["coding"][0]["system"] = "http://example.org/other"
    [finding] = findings(resource)
    assert (finding.rule, finding.severity) == ("INS.FHIR.IDENTIFIER", "error")
