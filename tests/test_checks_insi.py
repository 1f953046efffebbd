"""Tests of the ``insi.request`` check: official INSi requests pass, each defect fails its own rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.checks.insi import ACTION_CARTE_VITALE, ACTION_TRAITS, MAX_REQUEST_BYTES, insi_request
from conformance.checks.registry import CHECKS, run_check
from conformance.model import Finding
from conformance.simulators.insi_client import build_carte_vitale_request, build_traits_request
from conformance.simulators.traffic import Received

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
INSI = SHARED / "insi" / "fixtures-extracted"
OFFICIAL_REQUESTS = [
    "request_RECSANSVITALE_ADRTROIS-DOMINIQUE.xml",
    "request_RECSANSVITALE_ADRTROIS-DOMINIQUE_with-assertionPs.xml",
]

LPS = {
    "idam": "SEGURBENCH01",
    "version": "1.0",
    "instance": "test-instance",
    "name": "refvendor",
    "emitter": "a@b.fr",
}
DOMINIQUE = {
    "birth_name": "ADRTROIS",
    "given_names": ["DOMINIQUE"],
    "sex": "F",
    "birth_date": "1997-02-26",
    "birth_place": "2A020",
}
SOAP12_CT = "application/soap+xml; charset=utf-8"


def received(body: bytes, headers: dict[str, str] | None = None) -> Received:
    return Received(
        "insi", "POST", "/lps", {"Content-Type": SOAP12_CT} if headers is None else dict(headers), body, 0.0
    )


def findings(body: bytes, headers: dict[str, str] | None = None, **args: Any) -> list[Finding]:
    return run_check("insi.request", received(body, headers), **args)


def error_rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found if f.severity == "error"}


def traits_request(**kw: Any) -> tuple[bytes, dict[str, str]]:
    return build_traits_request(DOMINIQUE, lps=LPS, **kw)


# -------------------------------------------------------------------------------------------------
# Conformant requests


@pytest.mark.shared
@pytest.mark.parametrize("name", OFFICIAL_REQUESTS)
def test_official_request_fixtures_pass(name: str) -> None:
    path = INSI / name
    if not path.exists():
        pytest.skip("../shared/data/insi is absent")
    body = path.read_bytes()
    expected = {k: v for k, v in DOMINIQUE.items() if k != "birth_place"}
    found = findings(body, operation="traits", expected_traits=expected)
    assert error_rules(found) == set(), found
    # Judged as a file, without HTTP headers, it passes too.
    assert error_rules(list(insi_request(body, operation="traits"))) == set()


def test_self_built_traits_request_passes_without_any_finding() -> None:
    body, headers = traits_request()
    assert findings(body, headers, operation="traits", expected_traits=DOMINIQUE) == []


def test_self_built_carte_vitale_request_passes() -> None:
    body, headers = build_carte_vitale_request(
        {"nir": "297022A02077878", "birth_date": "1997-02-26", "rang": 1}, lps=LPS
    )
    assert findings(body, headers, operation="carte-vitale", expected_traits=DOMINIQUE) == []


VARIANT = b"""<?xml version="1.0" encoding="UTF-8"?>
<E:Envelope xmlns:E="http://www.w3.org/2003/05/soap-envelope">
  <E:Header>
    <wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1" Version="2.0"/>
    </wsse:Security>
    <ContexteLPS xmlns="urn:siram:lps:ctxlps" Version="01_00" Nature="CTXLPS">
      <Id>1</Id>
      <Temps>2024-05-01T08:00:00+02:00</Temps>
      <Emetteur>x@y.fr</Emetteur>
      <LPS>
        <IDAM R="4"> IDAM42 </IDAM>
        <Version>7</Version>
        <Instance>i</Instance>
        <Nom>dpi</Nom>
      </LPS>
    </ContexteLPS>
    <b:ContexteBAM xmlns:b="urn:siram:bam:ctxbam" Version="01_02">
      <b:Id>2</b:Id><b:Temps>2024-05-01T06:00:00Z</b:Temps><b:Emetteur>x@y.fr</b:Emetteur><b:COUVERTURE/>
    </b:ContexteBAM>
    <MessageID xmlns="http://www.w3.org/2005/08/addressing">uuid:1</MessageID>
  </E:Header>
  <E:Body>
    <RECSANSVITALE xmlns="http://www.cnamts.fr/INSiRecSans">
      <NomNaissance>adrtrois</NomNaissance>
      <Prenom>Dominique</Prenom>
      <Sexe>F</Sexe>
      <DateNaissance>1997-02-26</DateNaissance>
      <LieuNaissance>2A020</LieuNaissance>
    </RECSANSVITALE>
  </E:Body>
</E:Envelope>
"""


def test_conformant_variants_pass() -> None:
    """Other prefixes, default namespaces, indentation, an assertion PS and an action carried only in
    the Content-Type are all conformant."""
    ct = f'application/soap+xml;charset=UTF-8;action="{ACTION_TRAITS}"'
    found = findings(VARIANT, {"content-type": ct}, operation="traits", expected_traits=DOMINIQUE)
    assert found == []


def test_lunar_date_and_full_given_name_list_are_accepted() -> None:
    traits = {
        **DOMINIQUE,
        "birth_date": "1950-00-00",
        "first_given_name": "PIERRE PAUL",
        "given_names": ["PIERRE", "PAUL"],
    }
    body, headers = build_traits_request(traits, lps=LPS)
    assert findings(body, headers, operation="traits", expected_traits=traits) == []


# -------------------------------------------------------------------------------------------------
# One defect, one rule


def _replace(body: bytes, old: str, new: str) -> bytes:
    text = body.decode()
    assert re.search(old, text), old
    return re.sub(old, new, text, count=1).encode()


def _defects() -> list[Any]:
    base, headers = traits_request()
    cv, cv_headers = build_carte_vitale_request({"nir": "297022A02077878", "birth_date": "1997-02-26"}, lps=LPS)
    return [
        pytest.param(*traits_request(soap_version="1.1"), {}, "INS.INSI.ENVELOPE", id="soap-1.1"),
        pytest.param(base, {"Content-Type": "text/xml; charset=utf-8"}, {}, "INS.INSI.ENVELOPE", id="text-xml"),
        pytest.param(base, {}, {}, "INS.INSI.ENVELOPE", id="no-content-type"),
        pytest.param(_replace(base, r"<soap:Body>.*</soap:Body>", ""), headers, {}, "INS.INSI.ENVELOPE", id="no-body"),
        pytest.param(
            _replace(base, r"<ctxlps:ContexteLPS.*</ctxlps:ContexteLPS>", ""),
            headers,
            {},
            "INS.INSI.CONTEXT",
            id="no-contexte-lps",
        ),
        pytest.param(*traits_request(include_contexts=False), {}, "INS.INSI.CONTEXT", id="no-contexts"),
        pytest.param(
            _replace(base, r"<ctxlps:IDAM[^>]*>[^<]*</ctxlps:IDAM>", ""),
            headers,
            {},
            "INS.INSI.CONTEXT",
            id="no-idam",
        ),
        pytest.param(
            _replace(base, r"<ctxbam:COUVERTURE></ctxbam:COUVERTURE>", ""),
            headers,
            {},
            "INS.INSI.CONTEXT",
            id="no-couverture",
        ),
        pytest.param(
            _replace(base, r"(<ctxlps:Temps>)[^<]*", r"\g<1>yesterday"),
            headers,
            {},
            "INS.INSI.CONTEXT",
            id="bad-temps",
        ),
        pytest.param(cv, cv_headers, {"operation": "traits"}, "INS.INSI.OPERATION", id="wrong-operation"),
        pytest.param(
            *traits_request(action=ACTION_CARTE_VITALE),
            {},
            "INS.INSI.OPERATION",
            id="wrong-action",
        ),
        pytest.param(*traits_request(action=None), {}, "INS.INSI.OPERATION", id="no-action"),
        pytest.param(
            _replace(base, 'xmlns:rs="http://www.cnamts.fr/INSiRecSans"', 'xmlns:rs="urn:other"'),
            headers,
            {},
            "INS.INSI.OPERATION",
            id="body-namespace",
        ),
        pytest.param(_replace(base, "1997-02-26", "26/02/1997"), headers, {}, "INS.INSI.TRAITS", id="bad-date-format"),
        pytest.param(_replace(base, "1997-02-26", "1997-13-26"), headers, {}, "INS.INSI.TRAITS", id="bad-month"),
        pytest.param(_replace(base, "<rs:Sexe>F", "<rs:Sexe>X"), headers, {}, "INS.INSI.TRAITS", id="bad-sex"),
        pytest.param(_replace(base, "2A020", "PARIS"), headers, {}, "INS.INSI.TRAITS", id="bad-cog"),
        pytest.param(
            _replace(base, r"<rs:Prenom>DOMINIQUE</rs:Prenom>", ""),
            headers,
            {},
            "INS.INSI.TRAITS",
            id="no-prenom",
        ),
        pytest.param(
            _replace(base, r"<rs:NomNaissance>ADRTROIS</rs:NomNaissance>", "<NomNaissance>ADRTROIS</NomNaissance>"),
            headers,
            {},
            "INS.INSI.TRAITS",
            id="unqualified-element",
        ),
        pytest.param(
            _replace(
                base,
                r"(<rs:NomNaissance>ADRTROIS</rs:NomNaissance>)(<rs:Prenom>DOMINIQUE</rs:Prenom>)",
                r"\2\1",
            ),
            headers,
            {},
            "INS.INSI.TRAITS",
            id="out-of-order",
        ),
        pytest.param(
            _replace(cv, "<rv:Cle>78</rv:Cle>", "<rv:Cle>77</rv:Cle>"),
            cv_headers,
            {"operation": "carte-vitale"},
            "INS.INSI.TRAITS",
            id="carte-vitale-bad-key",
        ),
    ]


@pytest.mark.parametrize(("body", "headers", "args", "rule"), _defects())
def test_single_defect_triggers_exactly_its_rule(
    body: bytes, headers: dict[str, str], args: dict[str, Any], rule: str
) -> None:
    found = findings(body, headers, **args)
    assert error_rules(found) == {rule}, found


def test_used_name_instead_of_birth_name_is_a_traits_error() -> None:
    patient = {**DOMINIQUE, "used_name": "MARTIN"}
    body, headers = build_traits_request({**DOMINIQUE, "birth_name": "MARTIN"}, lps=LPS)
    found = findings(body, headers, operation="traits", expected_traits=patient)
    assert error_rules(found) == {"INS.INSI.TRAITS"}
    [finding] = found
    assert "used name" in finding.message
    assert finding.location == "/soap:Envelope/soap:Body/recsans:RECSANSVITALE/recsans:NomNaissance"


@pytest.mark.parametrize(
    ("key", "value"),
    [("first_given_name", "BELLA"), ("sex", "M"), ("birth_date", "1997-02-27"), ("birth_place", "2B020")],
)
def test_expected_traits_mismatch(key: str, value: str) -> None:
    body, headers = build_traits_request({**DOMINIQUE, key: value}, lps=LPS)
    assert error_rules(findings(body, headers, expected_traits=DOMINIQUE)) == {"INS.INSI.TRAITS"}


def test_optional_software_fields_missing_are_warnings() -> None:
    body, headers = build_traits_request(DOMINIQUE, lps={"idam": "X"})
    found = findings(body, headers)
    assert error_rules(found) == set()
    assert {(f.location or "").rsplit("/", 1)[-1] for f in found} == {
        "ctxlps:Version",
        "ctxlps:Instance",
        "ctxlps:Nom",
        "ctxlps:Emetteur",
        "ctxbam:Emetteur",
    }
    assert all(f.rule == "INS.INSI.CONTEXT" and f.severity == "warning" for f in found)


def test_locations_are_xpaths() -> None:
    body, headers = traits_request(include_contexts=False)
    found = findings(body, headers)
    assert "/soap:Envelope/soap:Header/ctxlps:ContexteLPS" in {f.location for f in found}


# -------------------------------------------------------------------------------------------------
# Hostile input


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>&x;</soap:Body></soap:Envelope>"""
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)


def _hostile() -> list[Any]:
    base, _ = traits_request()
    big = base.replace(b"<soap:Body>", b"<soap:Body><!--" + b"x" * (6 * 1024 * 1024) + b"-->", 1)
    return [
        pytest.param(XXE, id="xxe"),
        pytest.param(LAUGHS, id="billion-laughs"),
        pytest.param(base[: len(base) // 2], id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="blank"),
        pytest.param(big, id="6MB"),
        pytest.param(b'<?xml version="1.0" encoding="utf-8"?><a>\xff\xfe\xfa</a>', id="not-utf8"),
        pytest.param(b"\x00\x01\x02binary", id="binary"),
        pytest.param(b"<a>" * 5000, id="deep-unclosed"),
    ]


@pytest.mark.parametrize("body", _hostile())
def test_hostile_body_gives_input_finding(body: bytes) -> None:
    found = findings(body, operation="traits", expected_traits=DOMINIQUE)
    assert found and all(f.rule.startswith("INPUT.") for f in found), found
    assert not any("root:" in f.message for f in found)


def test_size_cap_matches_the_double() -> None:
    assert MAX_REQUEST_BYTES == 5 * 1024 * 1024


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    for finding in insi_request(received(body)):
        assert finding.rule.startswith(("INPUT.", "INS.INSI."))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(["M", "F", "", "x"]))
def test_arbitrary_trait_values_never_raise(name: str, given_name: str, sex: str) -> None:
    traits = {**DOMINIQUE, "birth_name": name, "first_given_name": given_name, "sex": sex}
    body, headers = build_traits_request(traits, lps=LPS)
    list(insi_request(received(body, headers), expected_traits=DOMINIQUE))


def test_check_is_registered_with_its_rules() -> None:
    info = CHECKS["insi.request"]
    assert info.kind == "soap-request"
    assert set(info.rules) == {
        "INS.INSI.ENVELOPE",
        "INS.INSI.OPERATION",
        "INS.INSI.CONTEXT",
        "INS.INSI.TRAITS",
    }
