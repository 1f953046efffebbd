"""Tests of the INSi double: real HTTP on loopback, answers compared with the official fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conformance.parsing import InputError
from conformance.simulators.insi import (
    ACTION_ID_HEADER,
    OID_INS_NIA,
    build_fault,
    build_response,
    create_insi_app,
    identity_facts,
    load_identities,
    match,
    parse_request,
)
from conformance.simulators.insi_client import (
    build_carte_vitale_request,
    build_traits_request,
    parse_response,
)
from conformance.simulators.server import BackgroundServer
from conformance.simulators.traffic import Received, TrafficLog

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
INSI = SHARED / "insi"
LPS = {"idam": "SEGURBENCH01", "version": "1.0", "instance": "t", "name": "refvendor", "emitter": "a@b.fr"}
IDENTITIES = {i["key"]: i for i in load_identities()}


def shared_file(*parts: str) -> Path:
    path = INSI.joinpath(*parts)
    if not path.exists():
        pytest.skip("../shared/data/insi is absent")
    return path


def traits_of(key: str, **override: Any) -> dict[str, Any]:
    i = IDENTITIES[key]
    base = {k: i[k] for k in ("birth_name", "given_names", "sex", "birth_date", "birth_place")}
    return base | override


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[str, TrafficLog]]:
    traffic = TrafficLog()
    with BackgroundServer(create_insi_app(traffic), name="insi") as server:
        yield server.url, traffic


def post(url: str, body: bytes, headers: dict[str, str], path: str = "/lps") -> requests.Response:
    return requests.post(url + path, data=body, headers=headers, timeout=30)


def last(traffic: TrafficLog) -> Received:
    items = traffic.items("insi")
    assert items
    return items[-1]


# -------------------------------------------------------------------------------------------------
# Identities


def test_identities_have_valid_keys_and_shape() -> None:
    for identity in load_identities():
        for m in [identity["matricule"], *(h["matricule"] for h in identity["history"])]:
            if m is None:
                continue
            assert len(m) == 15
            n = int(m[:13].replace("2A", "19").replace("2B", "18"))
            assert int(m[13:]) == 97 - n % 97, identity["key"]
    keys = set(IDENTITIES)
    assert {
        "ADRUN-ZOE",
        "ADRTROIS-DOMINIQUE",
        "ADRTROIS-TOUSSAINT",
        "CORSE-ANTHONY",
        "ECETINSI-PIERRE-ALAIN",
        "NESSI-MICHELANGELO",
        "TCHITCHI-CATARINA",
        "PROVISOIRE-MATRICULE",
        "HOUILLES-PIERRE",
        "DE-VINCI-LEONARDO",
    } <= keys
    assert "HERMANN-GATIEN" not in keys
    hermann = {i["key"]: i for i in load_identities(include_known_bad=True)}["HERMANN-GATIEN"]
    assert hermann["known_bad_key"] is True
    assert IDENTITIES["PROVISOIRE-MATRICULE"]["oid"] == OID_INS_NIA


def test_load_identities_returns_copies() -> None:
    first = load_identities()
    first[0]["birth_name"] = "CHANGED"
    assert load_identities()[0]["birth_name"] != "CHANGED"


# -------------------------------------------------------------------------------------------------
# Pure functions


@pytest.mark.parametrize(
    ("key", "override", "cr"),
    [
        ("ADRTROIS-DOMINIQUE", {}, "00"),
        ("ADRTROIS-DOMINIQUE", {"birth_place": None}, "00"),
        ("ADRTROIS-DOMINIQUE", {"birth_place": "2B020"}, "01"),
        ("ADRTROIS-DOMINIQUE", {"birth_name": "adrtrois", "given_names": ["Dominique"]}, "00"),
        ("ECETINSI-PIERRE-ALAIN", {}, "00"),  # first given name PIERRE-ALAIN
        ("ECETINSI-PIERRE-ALAIN", {"first_given_name": "PIERRE-ALAIN MURIEL FLORIANT"}, "00"),
        ("ECETINSI-PIERRE-ALAIN", {"first_given_name": "MURIEL"}, "01"),
        ("TCHITCHI-CATARINA", {"first_given_name": "CATARINA"}, "00"),
        ("TCHITCHI-CATARINA", {"first_given_name": "OLA"}, "01"),
        ("TCHITCHI-CATARINA", {"sex": "M"}, "01"),
        ("TCHITCHI-CATARINA", {"birth_date": "1936-06-22"}, "01"),
        ("HOUILLES-PIERRE", {"first_given_name": "PIERRE"}, "01"),
        ("HOUILLES-PIERRE", {"first_given_name": "PAUL"}, "01"),
        ("HOUILLES-PIERRE", {"first_given_name": "JACQUES"}, "01"),
        ("HOUILLES-PIERRE", {"first_given_name": "PIERRE PAUL JACQUES"}, "01"),
        ("DE-VINCI-LEONARDO", {}, "02"),
        ("PROVISOIRE-MATRICULE", {}, "00"),
        ("CORSE-ANTHONY", {}, "00"),
    ],
)
def test_match_follows_the_published_cases(key: str, override: dict[str, Any], cr: str) -> None:
    body, headers = build_traits_request(traits_of(key, **override), lps=LPS)
    request = parse_request(body, headers["Content-Type"])
    got, found = match(request, load_identities())
    assert got == cr
    if cr == "00":
        assert [i["key"] for i in found] == [key]


def test_two_identical_entries_give_cr_02() -> None:
    ids = load_identities()
    twin = dict(IDENTITIES["NESSI-MICHELANGELO"], key="TWIN", matricule="100000000000000")
    body, headers = build_traits_request(traits_of("NESSI-MICHELANGELO"), lps=LPS)
    cr, found = match(parse_request(body, headers["Content-Type"]), [*ids, twin])
    assert cr == "02" and len(found) == 2


def test_parse_request_reads_contexts_and_action() -> None:
    body, headers = build_traits_request(traits_of("ADRUN-ZOE"), lps=LPS, message_id="uuid:42")
    req = parse_request(body, headers["Content-Type"])
    assert req.soap_version == "1.2" and req.operation == "traits"
    assert req.action == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert req.message_id == "uuid:42"
    assert req.traits["birth_name"] == "ADRUN" and req.traits["given_name"] == "ZOE"
    lps = req.contexts["lps"]
    assert lps is not None
    assert (lps["idam"], lps["idam_r"], lps["version"], lps["instance"], lps["nom"]) == (
        "SEGURBENCH01",
        "4",
        "1.0",
        "t",
        "refvendor",
    )
    assert req.contexts["bam"] is not None and req.contexts["bam"]["emetteur"] == "a@b.fr"


def test_parse_request_is_lenient_on_soap_11_and_raises_on_hostile() -> None:
    body, headers = build_traits_request(traits_of("ADRUN-ZOE"), lps=LPS, soap_version="1.1", include_contexts=False)
    req = parse_request(body, headers["Content-Type"], soap_action=headers["SOAPAction"])
    assert req.soap_version == "1.1" and req.operation == "traits"
    assert req.contexts == {"lps": None, "bam": None}
    with pytest.raises(InputError):
        parse_request(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', None)


OFFICIAL_RESPONSES = [
    ("fixtures-extracted/response_CR00_ADRTROIS-DOMINIQUE.xml", "00", "ADRTROIS-DOMINIQUE"),
    ("fixtures-extracted/response_CR00_ADRTROIS-TOUSSAINT.xml", "00", "ADRTROIS-TOUSSAINT"),
    ("fixtures-extracted/response_CR00_TCHITCHI-CATARINA.xml", "00", "TCHITCHI-CATARINA"),
    ("fixtures-extracted/response_CR00_ECETINSI-PIERRE-ALAIN_live.xml", "00", "ECETINSI-PIERRE-ALAIN"),
    ("fixtures/TEST_2.05.xml", "00", "PROVISOIRE-MATRICULE"),
    ("fixtures/TEST_2.08_cas1.xml", "00", "CORSE-ANTHONY"),
    ("fixtures/REP_CR01.xml", "01", None),
    ("fixtures-extracted/response_CR02_plusieurs-identites.xml", "02", None),
]


@pytest.mark.shared
@pytest.mark.parametrize(("name", "cr", "key"), OFFICIAL_RESPONSES)
def test_build_response_equals_official_fixture(name: str, cr: str, key: str | None) -> None:
    official = parse_response(shared_file(*name.split("/")).read_bytes())
    ours = parse_response(build_response(cr, IDENTITIES[key] if key else None))
    assert ours == official


@pytest.mark.shared
def test_build_fault_equals_official_siram_fault() -> None:
    official = parse_response(
        shared_file("fixtures-extracted", "response_SOAPFault_siram_100_desir_550.xml").read_bytes()
    )
    ours = parse_response(
        build_fault(
            "siram_100",
            official["fault"]["reason"],
            detail_code="desir_550",
            detail_text="Numéro d'autorisation du logiciel inconnu.",
            message_id="uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f",
        )
    )
    assert ours == official
    assert official["fault"]["subcode"] == "soap:siram_100"


def test_build_response_without_shared_data() -> None:
    parsed = parse_response(build_response("00", IDENTITIES["ADRTROIS-DOMINIQUE"]))
    assert parsed["cr"] == "00" and parsed["label"] == "OK"
    assert parsed["identity"] == {
        "matricule": "297022A02077878",
        "oid": "1.2.250.1.213.1.4.8",
        "birth_name": "ADRTROIS",
        "given_names": ["DOMINIQUE"],
        "first_given_name": "DOMINIQUE",
        "sex": "F",
        "birth_date": "1997-02-26",
        "birth_place": "2A020",
        "history": [],
    }
    assert parse_response(build_response("01")) == {
        "cr": "01",
        "label": "Aucune identite trouvee",
        "identity": None,
        "fault": None,
    }


# -------------------------------------------------------------------------------------------------
# Over HTTP


@pytest.mark.shared
def test_official_request_fixture_over_http(sim: tuple[str, TrafficLog]) -> None:
    url, traffic = sim
    body = shared_file(
        "fixtures-extracted", "request_RECSANSVITALE_ADRTROIS-DOMINIQUE_with-assertionPs.xml"
    ).read_bytes()
    r = post(url, body, {"Content-Type": "application/soap+xml; charset=utf-8"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/soap+xml")
    answer = parse_response(r.content)
    assert answer["cr"] == "00"
    assert answer["identity"]["matricule"] == "297022A02077878"
    rec = last(traffic)
    assert rec.facts["cr"] == "00"
    assert rec.facts["message_id"] == "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
    assert rec.facts["contexts"]["lps"]["idam"] == "PDP17NF21DD0"


@pytest.mark.parametrize("key", [k for k, i in IDENTITIES.items() if i["cr"] == "00"])
def test_every_cr00_identity_over_http(sim: tuple[str, TrafficLog], key: str) -> None:
    url, traffic = sim
    body, headers = build_traits_request(traits_of(key), lps=LPS, action_id=f"act-{key}")
    r = post(url, body, headers)
    assert r.status_code == 200
    answer = parse_response(r.content)
    assert answer["cr"] == "00"
    identity = IDENTITIES[key]
    got = answer["identity"]
    assert (got["matricule"], got["oid"]) == (identity["matricule"], identity["oid"])
    assert (got["birth_name"], got["given_names"], got["sex"], got["birth_date"], got["birth_place"]) == (
        identity["birth_name"],
        identity["given_names"],
        identity["sex"],
        identity["birth_date"],
        identity["birth_place"],
    )
    assert [h["matricule"] for h in got["history"]] == [h["matricule"] for h in identity["history"]]
    rec = traffic.wait(lambda i: i.facts.get("action_id") == f"act-{key}", timeout=5)
    assert rec is not None
    assert rec.service == "insi" and rec.method == "POST" and rec.response_status == 200
    assert rec.response_body == r.content
    assert rec.facts["operation"] == "traits"
    assert rec.facts["identity"] == identity_facts(identity)
    assert rec.facts["traits"]["birth_name"] == identity["birth_name"]


@pytest.mark.parametrize(
    ("key", "given", "cr"),
    [
        ("HOUILLES-PIERRE", "PIERRE", "01"),
        ("HOUILLES-PIERRE", "PIERRE PAUL JACQUES", "01"),
        ("DE-VINCI-LEONARDO", "LEONARDO", "02"),
        ("TCHITCHI-CATARINA", "OLA", "01"),
    ],
)
def test_not_found_and_several_over_http(sim: tuple[str, TrafficLog], key: str, given: str, cr: str) -> None:
    url, traffic = sim
    body, headers = build_traits_request(traits_of(key, first_given_name=given), lps=LPS)
    r = post(url, body, headers)
    assert r.status_code == 200
    answer = parse_response(r.content)
    assert answer["cr"] == cr and answer["identity"] is None
    assert last(traffic).facts["cr"] == cr
    assert last(traffic).facts["identity"] is None


def test_carte_vitale_over_http(sim: tuple[str, TrafficLog]) -> None:
    url, traffic = sim
    body, headers = build_carte_vitale_request(
        {"nir": "160012B02077713", "birth_date": "1960-01-01", "rang": 1}, lps=LPS, action_id="cv-1"
    )
    r = post(url, body, headers, path="/")
    answer = parse_response(r.content)
    assert answer["cr"] == "00" and answer["identity"]["birth_name"] == "ADRTROIS"
    assert answer["identity"]["given_names"] == ["TOUSSAINT"]
    rec = last(traffic)
    assert rec.facts["operation"] == "carte-vitale" and rec.facts["action_id"] == "cv-1"
    assert rec.facts["carte_vitale"]["nir"] == "160012B02077713"
    # Same card, wrong birth date / unknown NIR: not found.
    for cv in (
        {"nir": "160012B02077713", "birth_date": "1960-01-02"},
        {"od_nir": "1999999999999", "birth_date": "1960-01-01"},
    ):
        body, headers = build_carte_vitale_request(cv, lps=LPS)
        assert parse_response(post(url, body, headers).content)["cr"] == "01"


@pytest.mark.parametrize("path", ["/", "/lps", "/some/vendor/path"])
def test_any_path_is_served(sim: tuple[str, TrafficLog], path: str) -> None:
    url, traffic = sim
    body, headers = build_traits_request(traits_of("NESSI-MICHELANGELO"), lps=LPS)
    assert parse_response(post(url, body, headers, path=path).content)["cr"] == "00"
    assert last(traffic).path == path


def test_lenient_on_soap11_and_missing_contexts(sim: tuple[str, TrafficLog]) -> None:
    url, traffic = sim
    body, headers = build_traits_request(traits_of("ADRUN-ZOE"), lps=LPS, soap_version="1.1", include_contexts=False)
    r = post(url, body, headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert parse_response(r.content)["cr"] == "00"
    rec = last(traffic)
    assert rec.facts["soap_version"] == "1.1" and rec.facts["contexts"] == {"lps": None, "bam": None}


def test_get_is_refused_and_recorded(sim: tuple[str, TrafficLog]) -> None:
    url, traffic = sim
    r = requests.get(url + "/lps", timeout=10)
    assert r.status_code == 405 and "POST" in r.text
    assert last(traffic).method == "GET" and last(traffic).response_status == 405


HOSTILE = {
    "xxe": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
    "billion-laughs": b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;&c;&c;</l>',
    "truncated": b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><RECSANSVIT',
    "empty": b"",
    "not-utf8": b'<?xml version="1.0" encoding="utf-8"?><a>\xff\xfe</a>',
    "no-operation": b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><x/></soap:Body>'
    b"</soap:Envelope>",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_body_gets_a_fault_and_is_recorded(sim: tuple[str, TrafficLog], name: str) -> None:
    url, traffic = sim
    r = post(url, HOSTILE[name], {"Content-Type": "application/soap+xml", ACTION_ID_HEADER: f"bad-{name}"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/soap+xml")
    assert b"root:" not in r.content
    fault = parse_response(r.content)["fault"]
    assert fault is not None and fault["code"] == "soap:Sender"
    rec = traffic.wait(lambda i: i.facts.get("action_id") == f"bad-{name}", timeout=5)
    assert rec is not None and rec.response_status == 500 and rec.facts["cr"] is None
    assert rec.facts["error"]["rule"].startswith("INPUT." if name != "no-operation" else "INS.INSI.OPERATION")
    # Still alive.
    body, headers = build_traits_request(traits_of("ADRUN-ZOE"), lps=LPS)
    assert parse_response(post(url, body, headers).content)["cr"] == "00"


def test_oversized_body_gets_413(sim: tuple[str, TrafficLog]) -> None:
    url, traffic = sim
    r = post(url, b"<a>" + b"x" * (6 * 1024 * 1024) + b"</a>", {"Content-Type": "application/soap+xml"})
    assert r.status_code == 413
    assert parse_response(r.content)["fault"]["subcode"] == "soap:INPUT.TOO-LARGE"
    rec = last(traffic)
    assert rec.response_status == 413 and rec.facts["error"]["rule"] == "INPUT.TOO-LARGE"
    assert len(rec.body) <= 5 * 1024 * 1024


def test_custom_identities() -> None:
    traffic = TrafficLog()
    only = [IDENTITIES["CORSE-ANTHONY"]]
    with BackgroundServer(create_insi_app(traffic, only), name="insi-custom") as server:
        body, headers = build_traits_request(traits_of("ADRUN-ZOE"), lps=LPS)
        assert parse_response(post(server.url, body, headers).content)["cr"] == "01"
        body, headers = build_traits_request(traits_of("CORSE-ANTHONY"), lps=LPS)
        assert parse_response(post(server.url, body, headers).content)["cr"] == "00"
    assert len(traffic.items("insi")) == 2
