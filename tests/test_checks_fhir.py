"""Generic FHIR API checks on recorded HTTP exchanges: status, content type, resource type, Bundle, search."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from conformance.checks.fhir import header, patients_in
from conformance.checks.registry import CHECKS, run_check
from conformance.model import Finding

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
INS_A = "180032B02040123"
INS_B = "275126322074974"


@dataclass
class Exchange:
    status: int = 200
    headers: Any = field(default_factory=lambda: {"Content-Type": "application/fhir+json"})
    body: bytes = b""


def exchange(payload: Any, *, status: int = 200, content_type: str | None = "application/fhir+json") -> Exchange:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return Exchange(status, headers, body)


def pat(ins: str | None = INS_A, pid: str = "p1") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid, "identifier": []}
    if ins:
        resource["identifier"].append({"use": "official", "system": INS_SYSTEM, "value": ins})
    resource["identifier"].append({"use": "usual", "system": "urn:oid:1.2.3", "value": f"IPP-{pid}"})
    return resource


def searchset(*resources: dict[str, Any], total: Any = "auto", **extra: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": f"http://x/fhir/Patient/{r.get('id')}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
        **extra,
    }
    if total == "auto":
        bundle["total"] = len(resources)
    elif total is not None:
        bundle["total"] = total
    return bundle


def read(ex: Any, **kw: Any) -> list[Finding]:
    return run_check("fhir.read", ex, **kw)


def search(ex: Any, **kw: Any) -> list[Finding]:
    return run_check("fhir.search", ex, **kw)


def rules(found: list[Finding]) -> set[str]:
    return {f.rule for f in found}


# --- header helper ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "x"},
        {"content-type": "x"},
        {"CONTENT-TYPE": "x"},
        CaseInsensitiveDict({"content-TYPE": "x"}),
    ],
)
def test_header_is_case_insensitive(headers: Any) -> None:
    assert header(headers, "Content-Type") == "x"


@pytest.mark.parametrize("headers", [None, {}, [], "Content-Type: x", 42])
def test_header_tolerates_no_or_odd_headers(headers: Any) -> None:
    assert header(headers, "Content-Type") is None


# --- fhir.read -------------------------------------------------------------------------------------


def test_conformant_read() -> None:
    assert read(exchange(pat())) == []
    assert read(exchange(pat(), content_type="application/fhir+json; charset=utf-8")) == []
    assert read(exchange(pat(), content_type='application/fhir+json;charset="UTF-8";fhirVersion=4.0')) == []
    assert read(exchange({"resourceType": "Organization"}), resource_type="Organization") == []


@pytest.mark.parametrize("status", [201, 204, 302, 404, 500])
def test_status_other_than_200_is_status_only(status: int) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    assert rules(read(exchange(outcome, status=status, content_type="text/html"))) == {"FHIR.STATUS"}


@pytest.mark.parametrize("ct", ["application/json", "application/json+fhir", "APPLICATION/JSON; charset=utf-8"])
def test_legacy_json_content_types_are_warnings(ct: str) -> None:
    [finding] = read(exchange(pat(), content_type=ct))
    assert finding.rule == "FHIR.CONTENT-TYPE" and finding.severity == "warning"


@pytest.mark.parametrize(
    "ct",
    [
        None,
        "",
        "text/html",
        "application/fhir+xml",
        "text/plain",
        "application/fhir+json; charset=iso-8859-1",
    ],
)
def test_wrong_content_types_are_errors(ct: str | None) -> None:
    [finding] = read(exchange(pat(), content_type=ct))
    assert finding.rule == "FHIR.CONTENT-TYPE" and finding.severity == "error"


def test_content_type_with_lowercase_header_name() -> None:
    ex = Exchange(200, {"content-type": "application/fhir+json"}, json.dumps(pat()).encode())
    assert read(ex) == []


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"", "INPUT.EMPTY"),
        (b"   ", "INPUT.EMPTY"),
        (b"<html>oops</html>", "INPUT.JSON"),
        (b'{"resourceType": "Patient"', "INPUT.JSON"),
        (b'{"resourceType": "Patient", "name": "\xff"}', "INPUT.ENCODING"),
        (b"[" * 100000 + b"]" * 100000, "INPUT.JSON"),
    ],
)
def test_unreadable_bodies_are_input_findings(body: bytes, rule: str) -> None:
    assert rules(read(exchange(body))) == {rule}


@pytest.mark.parametrize("payload", [[pat()], "Patient", 42, None, {"id": "x"}, {"resourceType": "Bundle"}])
def test_wrong_resource_type(payload: Any) -> None:
    assert rules(read(exchange(payload))) == {"FHIR.RESOURCE-TYPE"}


def test_read_registration() -> None:
    info = CHECKS["fhir.read"]
    assert info.kind == "http" and set(info.rules) == {
        "FHIR.STATUS",
        "FHIR.CONTENT-TYPE",
        "FHIR.RESOURCE-TYPE",
    }


# --- fhir.search ----------------------------------------------------------------------------------------


def test_conformant_search() -> None:
    body = searchset(pat())
    assert search(exchange(body)) == []
    assert search(exchange(body), identifier=f"{INS_SYSTEM}|{INS_A}") == []
    assert search(exchange(body), identifier=INS_A) == []


def test_empty_searchset_is_a_valid_bundle() -> None:
    assert search(exchange(searchset())) == []
    assert search(exchange({"resourceType": "Bundle", "type": "searchset"})) == []


def test_paging_total_above_page_size() -> None:
    assert search(exchange(searchset(pat(), total=40, link=[{"relation": "next", "url": "http://x"}]))) == []


def test_included_and_outcome_entries_are_not_matches() -> None:
    body = searchset(pat())
    body["entry"].append({"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}})
    body["entry"].append({"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}})
    assert search(exchange(body), identifier=f"{INS_SYSTEM}|{INS_A}") == []


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda b: b.update(type="collection"), "Bundle.type"),
        (lambda b: b.pop("type"), "Bundle.type"),
        (lambda b: b.update(entry={"resource": {}}), "Bundle.entry"),
        (lambda b: b["entry"].append("x"), "Bundle.entry[1]"),
        (lambda b: b["entry"].append({"fullUrl": "x"}), "Bundle.entry[1].resource"),
        (lambda b: b["entry"].append({"resource": {"id": "no-type"}}), "Bundle.entry[1].resource"),
        (lambda b: b["entry"][0].update(search={"mode": "hit"}), "Bundle.entry[0].search.mode"),
        (lambda b: b.update(total=0), "Bundle.total"),
        (lambda b: b.update(total=-1), "Bundle.total"),
        (lambda b: b.update(total="1"), "Bundle.total"),
        (lambda b: b.update(total=True), "Bundle.total"),
    ],
)
def test_malformed_bundles(mutate: Any, location: str) -> None:
    body = searchset(pat())
    mutate(body)
    [finding] = search(exchange(body))
    assert finding.rule == "FHIR.BUNDLE" and finding.location == location


@pytest.mark.parametrize("payload", [pat(), [], {"resourceType": "OperationOutcome"}])
def test_search_answering_no_bundle(payload: Any) -> None:
    found = search(exchange(payload), identifier=f"{INS_SYSTEM}|{INS_A}")
    assert rules(found) == {"FHIR.BUNDLE"}  # no SEARCH finding on top: one defect, one rule


def test_search_status_and_content_type() -> None:
    assert rules(search(exchange(searchset(), status=500))) == {"FHIR.STATUS"}
    [finding] = search(exchange(searchset(), content_type="text/html"))
    assert finding.rule == "FHIR.CONTENT-TYPE"


def test_search_that_ignores_the_identifier() -> None:
    body = searchset(pat(INS_A, "a"), pat(INS_B, "b"), pat(None, "c"))
    found = search(exchange(body), identifier=f"{INS_SYSTEM}|{INS_A}")
    assert rules(found) == {"FHIR.SEARCH"}
    assert sorted(f.location or "" for f in found) == ["Bundle.entry[1].resource", "Bundle.entry[2].resource"]
    assert INS_B in next(f.message for f in found if f.location == "Bundle.entry[1].resource")


def test_search_without_the_wanted_patient() -> None:
    [finding] = search(exchange(searchset()), identifier=f"{INS_SYSTEM}|{INS_A}")
    assert finding.rule == "FHIR.SEARCH" and finding.location == "Bundle"


def test_search_system_must_match() -> None:
    body = searchset(pat())
    assert rules(search(exchange(body), identifier=f"urn:oid:1.2.250.1.213.1.4.10|{INS_A}")) == {"FHIR.SEARCH"}


def test_search_with_empty_system_matches_identifiers_without_system() -> None:
    resource = {"resourceType": "Patient", "identifier": [{"value": "X1"}]}
    assert search(exchange(searchset(resource)), identifier="|X1") == []
    assert rules(search(exchange(searchset(pat())), identifier=f"|{INS_A}")) == {"FHIR.SEARCH"}


def test_search_registration() -> None:
    info = CHECKS["fhir.search"]
    assert info.kind == "http"
    assert set(info.rules) == {"FHIR.STATUS", "FHIR.CONTENT-TYPE", "FHIR.BUNDLE", "FHIR.SEARCH"}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "type",
                    "entry",
                    "resource",
                    "search",
                    "mode",
                    "total",
                    "identifier",
                    "system",
                    "value",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300)
@given(_JSON)
def test_hostile_bodies_never_raise(payload: Any) -> None:
    search(exchange(payload), identifier=f"{INS_SYSTEM}|{INS_A}")
    read(exchange(payload))
    patients_in(payload)


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_hostile_bytes_never_raise(body: bytes) -> None:
    for f in search(exchange(body), identifier="x") + read(exchange(body)):
        assert f.severity in ("error", "warning")


# --- patients_in -----------------------------------------------------------------------------------------


def test_patients_in_a_patient_and_a_bundle() -> None:
    p = pat()
    assert patients_in(p) == [("Patient", p)]
    body = searchset(pat(INS_A, "a"), pat(INS_B, "b"))
    body["entry"].insert(1, {"resource": {"resourceType": "Organization"}})
    body["entry"].append("junk")
    found = patients_in(body)
    assert [loc for loc, _ in found] == ["Bundle.entry[0].resource", "Bundle.entry[2].resource"]
    assert [r["id"] for _, r in found] == ["a", "b"]


@pytest.mark.parametrize("payload", [None, [], "x", {"resourceType": "Organization"}, {"resourceType": "Bundle"}])
def test_patients_in_nothing(payload: Any) -> None:
    assert patients_in(payload) == []


def test_patients_in_feeds_ins_patient_with_locations() -> None:
    """How the engine chains the two: findings point into the Bundle."""
    body = searchset(pat("180032B02040100", "a"))
    ((loc, resource),) = patients_in(body)
    found = run_check("ins.patient", resource, location=loc)
    key = next(f for f in found if f.rule == "INS.MATRICULE.KEY")
    assert key.location == "Bundle.entry[0].resource.identifier[0].value"


@pytest.mark.shared
@needs_shared
def test_official_searchset_example_is_a_valid_bundle() -> None:
    path = SHARED / "fhir" / "examples" / "pdsm4dmp__Bundle-example-annexe-searchset-documentreferences.json"
    body = path.read_bytes()
    assert (
        search(Exchange(200, {"Content-Type": "application/fhir+json"}, body), resource_type="DocumentReference") == []
    )
    assert patients_in(json.loads(body)) == []


@pytest.mark.shared
@needs_shared
def test_official_patient_example_reads_as_a_patient() -> None:
    body = (SHARED / "fhir" / "examples" / "frcore-2.2.0__Patient-FRCorePatientExample.json").read_bytes()
    assert read(Exchange(200, {"Content-Type": "application/fhir+json"}, body)) == []
    assert [loc for loc, _ in patients_in(json.loads(body))] == ["Patient"]
